//! `overlay monitor`: prints the dataplane's drop events as they come,
//! one line each (or one JSON object), until interrupted or `--count`.
//! It reads the pinned ring buffer directly; a ring has one reading
//! position, so one monitor runs per host (a lock in the state directory).

use std::{
    collections::BTreeMap,
    fs::OpenOptions,
    io::Write as _,
    net::Ipv4Addr,
    path::Path,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use overlay_common::{
    DropEvent, DropReason,
    events::{EVENT_FLAG_INNER, HOOK_ENDPOINT, HOOK_UNDERLAY_TC, HOOK_UNDERLAY_XDP},
};
use serde_json::json;

use super::{args::MonitorArgs, call};
use crate::{
    api::{self, MonitorContext, Response},
    daemon::lock::try_flock,
    dataplane::events::DropEvents,
    engine::Paths,
    host,
    model::ids::rfc3339_micros,
};

/// Set by SIGINT/SIGTERM: the loop ends and reporting is turned off on
/// the way out (a monitor killed harder leaves it to the daemon).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// How often the names are looked up again when an event names a network
/// the monitor does not know (one created since it started).
const NAMES_REFRESH: Duration = Duration::from_secs(1);

/// A drop reason from its `overlay stats` name, with or without `drop_`.
fn reason(name: &str) -> anyhow::Result<DropReason> {
    let want = name.strip_prefix("drop_").unwrap_or(name);
    DropReason::ALL
        .into_iter()
        .find(|r| r.name().strip_prefix("drop_") == Some(want))
        .with_context(|| {
            let known: Vec<&str> = DropReason::ALL
                .iter()
                .filter_map(|r| r.name().strip_prefix("drop_"))
                .collect();
            format!("unknown drop reason {name:?}: one of {}", known.join(", "))
        })
}

fn reason_name(code: u32) -> &'static str {
    DropReason::ALL
        .into_iter()
        .find(|r| *r as u32 == code)
        .and_then(|r| r.name().strip_prefix("drop_"))
        .unwrap_or("unknown")
}

fn hook_name(hook: u8) -> &'static str {
    match hook {
        HOOK_ENDPOINT => "endpoint",
        HOOK_UNDERLAY_XDP => "underlay-xdp",
        HOOK_UNDERLAY_TC => "underlay-tc",
        _ => "unknown",
    }
}

fn proto_name(proto: u8) -> String {
    match proto {
        0 => "-".into(),
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        n => format!("proto-{n}"),
    }
}

fn context(paths: &Paths, socket: &Path) -> anyhow::Result<MonitorContext> {
    match call(paths, socket, api::Command::MonitorContext)? {
        Ok(Response::MonitorContext(c)) => Ok(c),
        Ok(other) => bail!("unexpected answer {other:?}"),
        Err(message) => bail!("{message}"),
    }
}

/// CLOCK_MONOTONIC minus the wall clock's ns: what turns an event's time
/// into a date.
fn wall_offset_ns() -> i128 {
    // SAFETY: clock_gettime fills the timespec it is given.
    let mono = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
    };
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    wall - mono
}

/// An event as the user reads it.
struct Shown<'a> {
    time: String,
    host: &'a str,
    network: String,
    interface: String,
    event: &'a DropEvent,
}

impl Shown<'_> {
    fn endpoint(ip: u32, port: u16, proto: u8) -> String {
        let ip = Ipv4Addr::from(u32::from_be(ip));
        if matches!(proto, 6 | 17) {
            format!("{ip}:{port}")
        } else {
            ip.to_string()
        }
    }

    fn line(&self) -> String {
        let e = self.event;
        let mut out = format!(
            "{} {} drop {} network={} {} {} {} {} -> {} len={}",
            self.time,
            self.host,
            reason_name(e.reason),
            self.network,
            hook_name(e.hook),
            self.interface,
            proto_name(e.proto),
            Self::endpoint(e.src_ip, e.src_port, e.proto),
            Self::endpoint(e.dst_ip, e.dst_port, e.proto),
            e.len,
        );
        if e.flags & EVENT_FLAG_INNER != 0 {
            out.push_str(&format!(
                " (vxlan from {})",
                Ipv4Addr::from(u32::from_be(e.peer_ip))
            ));
        }
        out
    }

    fn json(&self) -> serde_json::Value {
        let e = self.event;
        let ip = |ip: u32| (ip != 0).then(|| Ipv4Addr::from(u32::from_be(ip)).to_string());
        let port = |p: u16| (matches!(e.proto, 6 | 17)).then_some(p);
        json!({
            "time": self.time,
            "host": self.host,
            "type": "drop",
            "reason": reason_name(e.reason),
            "network": self.network,
            "vni": e.vni,
            "hook": hook_name(e.hook),
            "interface": self.interface,
            "proto": proto_name(e.proto),
            "src": ip(e.src_ip),
            "dst": ip(e.dst_ip),
            "src_port": port(e.src_port),
            "dst_port": port(e.dst_port),
            "vxlan_from": (e.flags & EVENT_FLAG_INNER != 0).then(|| ip(e.peer_ip)).flatten(),
            "len": e.len,
        })
    }
}

pub fn run(paths: &Paths, socket: &Path, args: &MonitorArgs) -> anyhow::Result<ExitCode> {
    // Everything is checked before the monitor starts.
    let reasons: Vec<u32> = args
        .reason
        .iter()
        .map(|r| reason(r).map(|r| r as u32))
        .collect::<anyhow::Result<_>>()?;
    let mut ctx = context(paths, socket)?;
    let vni = match &args.network {
        None => None,
        Some(key) => Some(
            ctx.networks
                .iter()
                .find(|(_, name, id)| name == key || (key.len() >= 3 && id.starts_with(key)))
                .map(|(vni, ..)| *vni)
                .with_context(|| format!("no such network: {key}"))?,
        ),
    };
    std::fs::create_dir_all(&paths.state_dir)
        .with_context(|| format!("creating {}", paths.state_dir.display()))?;
    let lock_path = paths.state_dir.join("monitor.lock");
    let mut lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if !try_flock(&lock, libc::LOCK_EX)
        .with_context(|| format!("locking {}", lock_path.display()))?
    {
        let holder = std::fs::read_to_string(&lock_path).unwrap_or_default();
        bail!(
            "another `overlay monitor` (pid {}) is reading this host's drop events: a ring buffer has one reader",
            holder.trim()
        );
    }
    lock.set_len(0)?;
    writeln!(lock, "{}", std::process::id())?;
    let mut events = DropEvents::open(&paths.pin_dir).with_context(|| {
        format!(
            "no dataplane pinned at {} (run a network command or the daemon first)",
            paths.pin_dir.display()
        )
    })?;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    // Live events only: what waited in the ring is from before.
    events.drain();
    eprintln!(
        "overlay: monitoring drops on {} (interrupt to stop)",
        ctx.host
    );
    let offset = wall_offset_ns();
    let mut names: BTreeMap<u32, String> = ctx
        .networks
        .iter()
        .map(|(v, n, _)| (*v, n.clone()))
        .collect();
    let mut refreshed = Instant::now();
    let mut shown = 0u64;
    let mut stdout = std::io::stdout().lock();
    while args.count.is_none_or(|n| shown < n) && !STOP.load(Ordering::Relaxed) {
        let Some(event) = events.wait(Duration::from_millis(500)) else {
            continue;
        };
        if vni.is_some_and(|v| v != event.vni)
            || (!reasons.is_empty() && !reasons.contains(&event.reason))
        {
            continue;
        }
        if event.vni != 0 && !names.contains_key(&event.vni) && refreshed.elapsed() > NAMES_REFRESH
        {
            refreshed = Instant::now();
            if let Ok(c) = context(paths, socket) {
                ctx = c;
                names = ctx
                    .networks
                    .iter()
                    .map(|(v, n, _)| (*v, n.clone()))
                    .collect();
            }
        }
        let network = match event.vni {
            0 => "-".to_owned(),
            v => names.get(&v).cloned().unwrap_or_else(|| format!("vni-{v}")),
        };
        let shown_event = Shown {
            time: rfc3339_micros(
                u64::try_from(i128::from(event.time_ns) + offset).unwrap_or_default(),
            ),
            host: &ctx.host,
            network,
            interface: host::link::name_of(event.ifindex)
                .unwrap_or_else(|_| format!("if{}", event.ifindex)),
            event: &event,
        };
        let text = if args.json {
            shown_event.json().to_string()
        } else {
            shown_event.line()
        };
        // A closed pipe (`| head`) ends the monitor.
        if writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
        shown += 1;
    }
    Ok(ExitCode::SUCCESS)
}
