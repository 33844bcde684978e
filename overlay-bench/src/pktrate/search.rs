//! Where frames are injected, how one measurement runs, and the search for
//! the highest rate a path carries without loss.

use std::time::{Duration, Instant};

use overlay_bench_ebpf::{GEN_PORT_BASE, GenPace};
use overlay_testkit::{
    NetNs,
    packet::{ETH_P_IP, Ipv4, eth, udp, vxlan},
};
use overlay_user::host::ethtool;

use super::{
    Direction, LOSS_LIMIT, RateOptions,
    generator::{Generator, cpu_busy, udp_frame},
};
use crate::{
    BenchError,
    traffic::{CLIENT_IP, PathKind, SERVER_IP, Topology},
};

/// Where the generator sends from (`eth0` of `ns`), and what.
pub(super) struct Injection<'a> {
    pub(super) ns: &'a NetNs,
    pub(super) frame: Vec<u8>,
}

pub(super) fn injection<'a>(
    path: PathKind,
    top: &'a Topology,
    dir: Direction,
    size: usize,
) -> Result<Option<Injection<'a>>, BenchError> {
    let (client_mac, server_mac) = (top.client().mac("eth0")?, top.server().mac("eth0")?);
    let inner = udp_frame(size, server_mac.0, client_mac.0, CLIENT_IP, SERVER_IP);
    match (top, dir) {
        (_, Direction::Encap) => Ok(Some(Injection {
            ns: top.client(),
            frame: inner,
        })),
        (Topology::Pair(..), Direction::Decap) => Ok(None),
        (Topology::Lab { lab, .. }, Direction::Decap) if path.is_redirect() => {
            Ok(Some(Injection {
                ns: &lab.hosts[0].ns,
                frame: inner,
            }))
        }
        (Topology::Lab { lab, .. }, Direction::Decap) => {
            let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
            let mut payload = vxlan(0x08, 100);
            payload.extend_from_slice(&inner);
            let mut frame = eth(b.ns.mac("eth0")?.0, a.ns.mac("eth0")?.0, ETH_P_IP);
            frame.extend(Ipv4::new(a.underlay_ip, b.underlay_ip, 17).build(&udp(
                GEN_PORT_BASE,
                overlay_common::VXLAN_PORT,
                &payload,
            )));
            Ok(Some(Injection { ns: &a.ns, frame }))
        }
    }
}

/// The devices that receive the generator's XDP_TX frames.
pub(super) fn first_receivers(top: &Topology) -> Vec<(&NetNs, &str)> {
    match top {
        Topology::Pair(_, b) => vec![(b, "eth0")],
        Topology::Lab { lab, .. } => vec![
            (
                &lab.hosts[0].ns,
                lab.containers[0].attachments[0].host_ifname.as_str(),
            ),
            (lab.switch(), "p1"),
        ],
    }
}

/// Turns on GRO where the generator's XDP_TX frames land.
pub(super) fn prepare(top: &Topology) -> Result<(), BenchError> {
    for (ns, ifname) in first_receivers(top) {
        ns.run(|| ethtool::enable_gro(ifname))??;
    }
    Ok(())
}

/// The CPU the generator runs on in the no-drop search.
pub(super) const GENERATOR_CPU: usize = 0;
/// The CPU that forwards in the no-drop search.
pub(super) const FORWARDING_CPU: usize = 1;

/// Whether the machine has a CPU for the generator and one for the path.
pub(super) fn split_cpus() -> bool {
    std::thread::available_parallelism().map_or(1, usize::from) > FORWARDING_CPU
}

/// Steers what the generator's first receiving devices get to
/// `FORWARDING_CPU` (RPS), so the generator and the path under test run on
/// CPUs of their own. Returns the masks they had, for [`restore`].
pub(super) fn steer(top: &Topology) -> Result<Vec<String>, BenchError> {
    steer_devices(&first_receivers(top))
}

/// Puts back the RPS masks [`steer`] replaced.
pub(super) fn restore(top: &Topology, masks: &[String]) -> Result<(), BenchError> {
    set_rps_masks(&first_receivers(top), masks)
}

fn rps_file(ifname: &str) -> String {
    format!("/sys/class/net/{ifname}/queues/rx-0/rps_cpus")
}

/// [`steer`] for the devices given.
pub(super) fn steer_devices(devices: &[(&NetNs, &str)]) -> Result<Vec<String>, BenchError> {
    let mask = format!("{:x}", 1u64 << FORWARDING_CPU);
    let mut before = Vec::new();
    for (ns, ifname) in devices {
        // `ip netns exec` mounts the namespace's own /sys.
        let out = ns
            .exec(&["cat", &rps_file(ifname)])
            .map_err(|e| BenchError::Tool(format!("reading RPS of {ifname}: {e}")))?;
        before.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    }
    set_rps_masks(devices, &vec![mask; devices.len()])?;
    Ok(before)
}

/// Sets each device's RPS mask (also to put back what [`steer_devices`]
/// returned).
pub(super) fn set_rps_masks(
    devices: &[(&NetNs, &str)],
    masks: &[String],
) -> Result<(), BenchError> {
    for ((ns, ifname), mask) in devices.iter().zip(masks) {
        ns.exec(&["sh", "-c", &format!("echo {mask} > {}", rps_file(ifname))])
            .map_err(|e| BenchError::Tool(format!("setting RPS on {ifname}: {e}")))?;
    }
    Ok(())
}

/// Pins the calling thread to `cpu` (best effort: unpinned, the search is
/// only noisier).
pub(super) fn pin_to_cpu(cpu: usize) {
    // SAFETY: cpu_set_t is plain data that CPU_SET writes inside of, and
    // sched_setaffinity(0, ...) only affects the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// The sink count once queues have drained (unchanged for 20 ms).
pub(super) fn settled(gen_: &Generator) -> Result<u64, BenchError> {
    let mut last = gen_.sunk()?;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(20));
        let now = gen_.sunk()?;
        if now == last {
            break;
        }
        last = now;
    }
    Ok(last)
}

/// What one generator run sent and what reached the sink.
pub(super) struct Sample {
    pub(super) sent: u64,
    pub(super) got: u64,
    /// How long the sending took: the wall time of a flat-out run; for a
    /// paced one, `sent` intervals by the generator's own timestamps (the
    /// iterations after its last frame only idle).
    pub(super) seconds: f64,
    /// Busy jiffies of all CPUs meanwhile.
    pub(super) cpu_jiffies: u64,
}

/// Runs the generator with `pace` for `iterations` out of the injection
/// device, on CPU `pin` if given, and counts what arrived once queues have
/// drained.
pub(super) fn sample(
    gen_: &mut Generator,
    inj: &Injection<'_>,
    (pace, iterations): (GenPace, u32),
    pin: Option<usize>,
) -> Result<Sample, BenchError> {
    let ifindex = inj.ns.ifindex("eth0")?;
    gen_.pace(pace)?;
    // Frames of the previous run may still be in flight.
    let before = settled(gen_)?;
    let cpu0 = cpu_busy();
    let t0 = Instant::now();
    inj.ns.run(|| {
        if let Some(cpu) = pin {
            pin_to_cpu(cpu);
        }
        gen_.send(ifindex, &inj.frame, iterations)
    })??;
    let wall = t0.elapsed().as_secs_f64();
    let progress = gen_.progress()?;
    let got = settled(gen_)?.saturating_sub(before);
    let cpu_jiffies = cpu_busy().saturating_sub(cpu0);
    let seconds = if pace.interval_ns == 0 || progress.sent < 2 {
        wall
    } else {
        let span = progress.last_ns.saturating_sub(progress.first_ns).max(1) as f64 / 1e9;
        span * progress.sent as f64 / (progress.sent - 1) as f64
    };
    Ok(Sample {
        sent: progress.sent,
        got,
        seconds,
        cpu_jiffies,
    })
}

/// Flat out: pacing for `frames` frames, all sent.
pub(super) fn flat_out(frames: u32) -> (GenPace, u32) {
    (
        GenPace {
            interval_ns: 0,
            budget: u64::from(frames),
        },
        frames,
    )
}

/// One measurement: (Mpps delivered, share delivered, CPU ns per packet).
/// `paced`: (frames/s, ns per idle generator iteration).
pub(super) fn measure(
    gen_: &mut Generator,
    inj: &Injection<'_>,
    frames: u32,
    paced: Option<(f64, f64)>,
) -> Result<(f64, f64, f64), BenchError> {
    let run = match paced {
        None => flat_out(frames),
        Some((pps, iteration_ns)) => paced_run(pps, f64::from(frames), iteration_ns),
    };
    let s = sample(gen_, inj, run, None)?;
    if s.got == 0 {
        return Err(BenchError::Tool(
            "no generated frame reached the sink in the server container".into(),
        ));
    }
    // USER_HZ is 100: a jiffy is 10 ms.
    let cpu_ns = s.cpu_jiffies as f64 * 1e7 / s.got as f64;
    Ok((
        s.got as f64 / s.seconds / 1e6,
        s.got as f64 / s.sent.max(1) as f64,
        cpu_ns,
    ))
}

/// Pacing and iteration count for `frames` frames at `pps`: enough
/// iterations to span the frames' time with a margin; the ones past the
/// budget only cost a drop each.
pub(super) fn paced_run(pps: f64, frames: f64, iteration_ns: f64) -> (GenPace, u32) {
    let frames = frames.max(1000.0);
    let interval = 1e9 / pps;
    let iterations = frames * interval / iteration_ns * 1.25 + frames;
    (
        GenPace {
            interval_ns: interval as u64,
            budget: frames as u64,
        },
        iterations.min(f64::from(u32::MAX)) as u32,
    )
}

/// Wall time of one generator iteration that sends nothing (a paced run's
/// iterations between frames), ns: sizes paced runs.
pub(super) fn iteration_ns(gen_: &mut Generator, inj: &Injection<'_>) -> Result<f64, BenchError> {
    const ITERATIONS: u32 = 1_000_000;
    let ifindex = inj.ns.ifindex("eth0")?;
    // One frame is sent, then none is due again.
    gen_.pace(GenPace {
        interval_ns: u64::MAX / 4,
        budget: 1,
    })?;
    let t0 = Instant::now();
    inj.ns.run(|| {
        pin_to_cpu(GENERATOR_CPU);
        gen_.send(ifindex, &inj.frame, ITERATIONS)
    })??;
    Ok((t0.elapsed().as_nanos() as f64 / f64::from(ITERATIONS)).max(1.0))
}

/// One trial of the search: frames at `pps` (flat out when `None`) for
/// `duration` from the generator CPU. Returns (offered frames/s, loss).
pub(super) fn trial(
    gen_: &mut Generator,
    inj: &Injection<'_>,
    pps: Option<f64>,
    duration: Duration,
    iteration_ns: f64,
) -> Result<(f64, f64), BenchError> {
    const FLAT_OUT_FRAMES: u32 = 100_000;
    let run = match pps {
        None => flat_out(FLAT_OUT_FRAMES),
        Some(pps) => paced_run(pps, pps * duration.as_secs_f64(), iteration_ns),
    };
    let s = sample(gen_, inj, run, Some(GENERATOR_CPU))?;
    if s.sent < 2 {
        return Err(BenchError::Tool("the paced generator sent nothing".into()));
    }
    let loss = (1.0 - s.got as f64 / s.sent as f64).max(0.0);
    Ok((s.sent as f64 / s.seconds, loss))
}

/// The highest rate the path carries with at most `LOSS_LIMIT` loss:
/// first flat out (a path faster than the generator is done there), then
/// a geometric bisection below the generator's rate. Returns (Mpps, loss,
/// whether the generator was the limit).
pub(super) fn no_drop_rate(
    gen_: &mut Generator,
    inj: &Injection<'_>,
    opts: &RateOptions,
    iteration_ns: f64,
) -> Result<(f64, f64, bool), BenchError> {
    let (max, loss) = trial(gen_, inj, None, opts.trial, iteration_ns)?;
    if loss <= LOSS_LIMIT {
        return Ok((max / 1e6, loss, true));
    }
    let (mut lo, mut hi) = (max / 64.0, max);
    let mut best = None;
    for _ in 0..opts.search_steps {
        let mid = (lo * hi).sqrt();
        let (mut offered, mut loss) = trial(gen_, inj, Some(mid), opts.trial, iteration_ns)?;
        if loss > LOSS_LIMIT {
            // A VM's CPU can stall for a few ms (steal, an interrupt storm)
            // and overflow the 1000-frame backlog at any rate near the
            // limit: a rate fails only when a second trial loses too.
            (offered, loss) = trial(gen_, inj, Some(mid), opts.trial, iteration_ns)?;
        }
        if loss <= LOSS_LIMIT {
            lo = mid;
            best = Some((offered, loss));
        } else {
            hi = mid;
        }
    }
    let (offered, loss) = match best {
        Some(b) => b,
        None => trial(gen_, inj, Some(lo), opts.trial, iteration_ns)?,
    };
    Ok((offered / 1e6, loss, false))
}
