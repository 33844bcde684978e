//! The programs' drop events: the ring buffer `overlay monitor` reads, the
//! switch that makes the programs report (on while a reader holds it), and
//! the tallies of what was reported, held back and lost.

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    path::Path,
    time::Duration,
};

use aya::maps::{Array, Map, MapData, RingBuf};
use overlay_common::{DropEvent, MonitorState, maps::names};

use super::{Dataplane, DataplaneError};

/// The reading end of the drop events' ring buffer; the programs report
/// while one is open. A ring has one reading position: two readers would
/// each see part of the events (the CLI allows one per host).
pub struct DropEvents {
    ring: RingBuf<MapData>,
    on: Array<MapData, u32>,
}

impl DropEvents {
    /// Opens the ring pinned under `pin_dir` (by a loaded dataplane) and
    /// turns reporting on, under this process's PID.
    pub fn open(pin_dir: &Path) -> Result<Self, DataplaneError> {
        let maps = pin_dir.join("maps");
        let pinned = |name: &str| {
            let path = maps.join(name);
            MapData::from_pin(&path)
                .map_err(DataplaneError::map(format!("opening {}", path.display())))
        };
        let ring = RingBuf::try_from(Map::RingBuf(pinned(names::EVENTS)?))
            .map_err(DataplaneError::map("opening the drop events"))?;
        let mut on = Array::try_from(Map::Array(pinned(names::MONITOR_ON)?))
            .map_err(DataplaneError::map("opening the drop events' switch"))?;
        on.set(0, &std::process::id(), 0)
            .map_err(DataplaneError::map("turning drop events on"))?;
        Ok(Self { ring, on })
    }

    /// The next event, waiting up to `timeout` for one.
    pub fn wait(&mut self, timeout: Duration) -> Option<DropEvent> {
        if let Some(e) = self.next() {
            return Some(e);
        }
        let mut pfd = libc::pollfd {
            fd: self.ring.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&raw mut pfd, 1, ms) };
        self.next()
    }

    /// Reads and discards every event waiting.
    pub fn drain(&mut self) -> usize {
        self.by_ref().count()
    }
}

/// The events waiting, without blocking.
impl Iterator for DropEvents {
    type Item = DropEvent;

    fn next(&mut self) -> Option<DropEvent> {
        let item = self.ring.next()?;
        // SAFETY: the programs write whole DropEvents (Pod); the read is
        // unaligned-safe.
        (item.len() == size_of::<DropEvent>())
            .then(|| unsafe { item.as_ptr().cast::<DropEvent>().read_unaligned() })
    }
}

impl Drop for DropEvents {
    /// Reporting off, unless another reader took over meanwhile.
    fn drop(&mut self) {
        if self
            .on
            .get(&0, 0)
            .is_ok_and(|pid| pid == std::process::id())
        {
            let _ = self.on.set(0, &0, 0);
        }
    }
}

impl Dataplane {
    /// Turns drop reporting off when the monitor that turned it on is gone
    /// (killed before it could); true when it did.
    pub fn release_stale_monitor(&mut self) -> Result<bool, DataplaneError> {
        let pid = self
            .monitor_on
            .get(&0, 0)
            .map_err(DataplaneError::map("reading the drop events' switch"))?;
        if pid == 0 || Path::new(&format!("/proc/{pid}")).exists() {
            return Ok(false);
        }
        self.monitor_on
            .set(0, &0, 0)
            .map_err(DataplaneError::map("turning drop events off"))?;
        Ok(true)
    }

    /// What the programs reported, held back over the rate and lost to a
    /// full ring, summed over CPUs.
    pub fn monitor_tallies(&self) -> Result<MonitorState, DataplaneError> {
        let per_cpu = self
            .monitor
            .get(&0, 0)
            .map_err(DataplaneError::map("reading the drop event tallies"))?;
        Ok(per_cpu
            .iter()
            .fold(MonitorState::default(), |acc, s| MonitorState {
                sent: acc.sent + s.sent,
                suppressed: acc.suppressed + s.suppressed,
                lost: acc.lost + s.lost,
                ..MonitorState::default()
            }))
    }
}
