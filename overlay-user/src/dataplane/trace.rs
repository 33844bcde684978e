//! One run of the endpoint program, with BPF_PROG_RUN, on a frame a
//! container would send, against the live maps: what `overlay trace`
//! shows. The run counts like a real packet (and reaches a monitor).

use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions};
use overlay_common::{COUNTER_SLOTS, Counter, DropReason, programs};

use super::{Dataplane, DataplaneError, program};

/// What the program did with the frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgRun {
    /// The TC action (`TC_ACT_*`).
    pub action: u32,
    /// The frame as the program left it.
    pub out: Vec<u8>,
    /// Outcome or drop counters (by name) that moved during the run on
    /// the CPU it ran on: one, unless other traffic ran there too.
    pub moved: Vec<&'static str>,
}

/// `__sk_buff` up to and including `ifindex` (offset 40).
const SKB_CTX_LEN: usize = 44;

/// The counter's name for a slot of the counters map.
fn slot_name(slot: u32) -> Option<&'static str> {
    Counter::ALL
        .iter()
        .map(|c| (c.index(), c.name()))
        .chain(DropReason::ALL.iter().map(|r| (r.index(), r.name())))
        .find_map(|(i, n)| (i == slot).then_some(n))
}

/// Keeps the calling thread on one CPU until dropped, so the run and the
/// counters read around it are that CPU's.
struct OnOneCpu {
    cpu: usize,
    before: libc::cpu_set_t,
}

impl OnOneCpu {
    fn pin() -> Option<Self> {
        // SAFETY: sched_getcpu has no preconditions; cpu_set_t is plain
        // data; the affinity calls change only the calling thread.
        unsafe {
            let cpu = usize::try_from(libc::sched_getcpu()).ok()?;
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            if libc::sched_getaffinity(0, size, &mut before) != 0 {
                return None;
            }
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            (libc::sched_setaffinity(0, size, &one) == 0).then_some(Self { cpu, before })
        }
    }
}

impl Drop for OnOneCpu {
    fn drop(&mut self) {
        // SAFETY: as in pin.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.before);
        }
    }
}

impl Dataplane {
    /// Packets counted on `cpu`, per counter slot.
    fn cpu_counts(&self, cpu: usize) -> Result<Vec<u64>, DataplaneError> {
        (0..COUNTER_SLOTS)
            .map(|slot| {
                self.counters
                    .get(&slot, 0)
                    .map(|per_cpu| per_cpu.get(cpu).map_or(0, |v| v.packets))
                    .map_err(DataplaneError::map("reading counters"))
            })
            .collect()
    }

    /// Runs the endpoint program on `frame` as if the endpoint on host-side
    /// interface `ifindex` had sent it.
    pub fn run_endpoint(&mut self, ifindex: u32, frame: &[u8]) -> Result<ProgRun, DataplaneError> {
        let pinned = OnOneCpu::pin();
        let cpu = pinned.as_ref().map_or(0, |p| p.cpu);
        let before = self.cpu_counts(cpu)?;
        let mut ctx = [0u8; SKB_CTX_LEN];
        ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
        // Room for encapsulation or an ICMP answer.
        let mut out = vec![0u8; frame.len() + 256];
        let prog: &mut SchedClassifier = program(&mut self.ebpf, programs::ENDPOINT_INGRESS)?;
        let result = prog
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .map_err(|source| DataplaneError::Program {
                op: "running (BPF_PROG_RUN)",
                name: programs::ENDPOINT_INGRESS,
                source,
            })?;
        let after = self.cpu_counts(cpu)?;
        drop(pinned);
        out.truncate(result.data_size_out as usize);
        let moved = (0..COUNTER_SLOTS)
            .filter(|&slot| before[slot as usize] != after[slot as usize])
            .filter_map(slot_name)
            .collect();
        Ok(ProgRun {
            action: result.return_value,
            out,
            moved,
        })
    }
}
