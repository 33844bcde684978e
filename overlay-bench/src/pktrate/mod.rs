//! Packet rate: UDP frames of fixed sizes from the XDP live-frames
//! generator (`xdp_gen`, run with BPF_PROG_RUN and
//! `BPF_F_TEST_XDP_LIVE_FRAMES`, as xdp-trafficgen does; this kernel has no
//! pktgen), counted where they arrive: a sink program (`sink_tc`) at the far
//! container's `eth0` ingress counts and drops them, so the receiver's own
//! UDP stack is not part of what is measured.
//!
//! - Encap direction: frames leave the client container's `eth0` (XDP_TX),
//!   so they cross its host's forwarding (encap), the underlay switch and
//!   the server's host (decap) into the server container.
//! - Decap direction: ready-made VXLAN frames (raw frames for limit (a),
//!   which has no encapsulation) leave the client host's underlay NIC, so
//!   only the switch and the server's host (decap) are on the way.
//!
//! XDP_TX out of a veth lands in its peer's NAPI queue, which exists only
//! while the peer has GRO on: the setup turns it on for the peers the
//! generator sends to. CPU per packet is all CPUs' busy time (from
//! /proc/stat, generator included) over the frames delivered: a ratio
//! between paths, not an absolute cost.

mod generator;
pub(crate) mod pair;
mod search;

use std::{borrow::Cow, time::Duration};

use overlay_bench_ebpf::GEN_PORT_BASE;
use serde::Serialize;

use self::{
    generator::{Generator, udp_frame},
    search::{
        Injection, flat_out, injection, iteration_ns, measure, no_drop_rate, prepare, restore,
        sample, split_cpus, steer,
    },
};
use crate::{
    BenchError,
    traffic::{CLIENT_IP, PathKind, SERVER_IP, Topology, build_all, median},
};

/// Which half of the path the frames cross.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Encap,
    Decap,
}

/// Sizes of a run.
#[derive(Clone, Debug)]
pub struct RateOptions {
    pub rounds: usize,
    /// Frames per measurement.
    pub frames: u32,
    /// UDP source ports the generator cycles through.
    pub flows: u32,
    /// Frame sizes (Ethernet header included, FCS not) of the inner frame.
    pub sizes: Cow<'static, [usize]>,
    /// Offered rate of the packet-rate table, frames/s; `None`: flat out.
    pub rate_pps: Option<f64>,
    /// Steps of the no-drop rate search (0: no search).
    pub search_steps: u32,
    /// Length of one trial of the search.
    pub trial: Duration,
}

/// Frame sizes the generator accepts: a minimal Ethernet frame up to what
/// the overlay MTU (1450) carries, Ethernet header included.
pub const FRAME_SIZES: std::ops::RangeInclusive<usize> = 60..=1464;
/// Flows the generator can make (source ports from `GEN_PORT_BASE` up).
pub const MAX_FLOWS: u32 = 65535 - GEN_PORT_BASE as u32;

impl RateOptions {
    pub const FULL: Self = Self {
        // Five, not three: the no-drop search's medians over three rounds
        // moved 0.73-1.04x of limit (a) between runs; over five, 0.9-1.06x.
        rounds: 5,
        frames: 200_000,
        flows: 64,
        sizes: Cow::Borrowed(&[64, 512, 1450]),
        rate_pps: None,
        search_steps: 8,
        trial: Duration::from_millis(150),
    };
    pub const QUICK: Self = Self {
        rounds: 1,
        frames: 5_000,
        flows: 4,
        sizes: Cow::Borrowed(&[64]),
        rate_pps: None,
        search_steps: 2,
        trial: Duration::from_millis(20),
    };

    /// Checks sizes, flows and rate, so a bad option fails before any
    /// topology is built.
    pub fn validate(&self) -> Result<(), BenchError> {
        if self.sizes.is_empty() {
            return Err(BenchError::Tool("no frame size given".into()));
        }
        if let Some(bad) = self.sizes.iter().find(|s| !FRAME_SIZES.contains(s)) {
            return Err(BenchError::Tool(format!(
                "frame size {bad} B is outside {}..={} B",
                FRAME_SIZES.start(),
                FRAME_SIZES.end()
            )));
        }
        if self.flows == 0 || self.flows > MAX_FLOWS {
            return Err(BenchError::Tool(format!(
                "flows must be 1..={MAX_FLOWS}, not {}",
                self.flows
            )));
        }
        if let Some(pps) = self.rate_pps
            && !(pps.is_finite() && pps >= 1000.0)
        {
            return Err(BenchError::Tool(format!(
                "rate must be at least 0.001 Mpps, not {}",
                pps / 1e6
            )));
        }
        Ok(())
    }
}

/// Medians over the rounds for one path, direction and size.
#[derive(Clone, Debug, Serialize)]
pub struct RateResult {
    pub path: PathKind,
    pub name: &'static str,
    pub direction: Direction,
    pub size: usize,
    /// Frames delivered into the far container, millions per second.
    pub mpps: f64,
    /// Share of generated frames that arrived.
    pub delivered: f64,
    /// Busy CPU time of the whole machine per delivered frame, ns.
    pub cpu_ns_per_packet: f64,
}

/// Where the CPU time of one delivered 64 B packet goes on a path that
/// runs our programs (measured in a pass of its own, with the kernel's
/// program run-time statistics on, which cost a little per run).
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub path: PathKind,
    pub name: &'static str,
    pub direction: Direction,
    /// Busy CPU of the whole machine per delivered packet, ns.
    pub cpu_ns_per_packet: f64,
    /// Of that, time inside the programs on the path, ns.
    pub program_ns_per_packet: f64,
    /// (host/program, ns per run, runs per delivered packet).
    pub programs: Vec<(String, f64, f64)>,
}

/// The no-drop rate of one path and direction (64 B frames): the highest
/// paced rate that one forwarding CPU carried with at most `LOSS_LIMIT`
/// lost, the generator running on another CPU (median over rounds).
#[derive(Clone, Debug, Serialize)]
pub struct NoDropResult {
    pub path: PathKind,
    pub name: &'static str,
    pub direction: Direction,
    /// Frame size, bytes (the smallest of the run's sizes).
    pub size: usize,
    /// Millions of frames per second offered (and delivered).
    pub mpps: f64,
    /// Loss at that rate.
    pub loss: f64,
    /// The path carried everything the generator could send: the rate is
    /// the generator's, and the path's own is higher.
    pub generator_bound: bool,
    /// Each round's rate, in round order (paths take turns within a round,
    /// so equal indices are measured minutes apart at most).
    pub rounds: Vec<f64>,
}

/// Loss a no-drop trial may show (veth queues on a busy VM drop the odd
/// frame that a real no-drop rate would not).
pub const LOSS_LIMIT: f64 = 0.001;

/// Packet rate with `overlay monitor` reading the drop events and without,
/// side by side in each round (medians over rounds), 64 B frames from the
/// client container, flat out.
#[derive(Clone, Debug, Serialize)]
pub struct MonitorResult {
    pub path: PathKind,
    pub name: &'static str,
    /// `forwarded`: ordinary encap traffic, delivered (the monitor never
    /// sees it); `dropped`: a forged source address, every frame dropped
    /// (as spoofed) by the client host's endpoint program.
    pub traffic: &'static str,
    /// Frames handled, millions per second (delivered, or sent and
    /// dropped): monitor off, on.
    pub mpps: (f64, f64),
    /// Busy CPU of the machine per frame, ns: monitor off, on.
    pub cpu_ns_per_packet: (f64, f64),
    /// Over the `on` runs: drops counted by the programs, and of those the
    /// ones reported and rate-limited.
    pub drops: u64,
    pub reported: u64,
    pub rate_limited: u64,
}

/// What a packet-rate run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RateRun {
    pub rates: Vec<RateResult>,
    pub no_drop: Vec<NoDropResult>,
    pub profiles: Vec<Profile>,
    pub monitor: Vec<MonitorResult>,
}

/// A source address no container has: every frame with it is dropped.
const FORGED_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 10, 0, 250);

/// One flat-out sample of `inj`: (Mpps handled, CPU ns per frame), counting
/// delivered frames for traffic that arrives and sent frames for traffic
/// that is dropped on the way.
fn handled(
    generator: &mut Generator,
    inj: &Injection<'_>,
    frames: u32,
    dropped: bool,
) -> Result<(f64, f64), BenchError> {
    let s = sample(generator, inj, flat_out(frames), None)?;
    let n = if dropped { s.sent } else { s.got }.max(1);
    // USER_HZ is 100: a jiffy is 10 ms.
    Ok((
        n as f64 / s.seconds / 1e6,
        s.cpu_jiffies as f64 * 1e7 / n as f64,
    ))
}

/// [`MonitorResult`]s of the eBPF paths: each round measures every case
/// with the monitor off, then on.
fn monitor_cost(
    tops: &[(PathKind, Topology)],
    generator: &mut Generator,
    opts: &RateOptions,
) -> Result<Vec<MonitorResult>, BenchError> {
    let mut out = Vec::new();
    for (path, top) in tops {
        let Some(lab) = top.lab() else { continue };
        let Some(pin_dir) = lab.hosts[0].paths.as_ref().map(|p| p.pin_dir.clone()) else {
            continue;
        };
        if !matches!(path, PathKind::EbpfXdp | PathKind::EbpfTc) {
            continue;
        }
        let (client_mac, server_mac) = (top.client().mac("eth0")?, top.server().mac("eth0")?);
        for (traffic, from) in [("forwarded", CLIENT_IP), ("dropped", FORGED_IP)] {
            let inj = Injection {
                ns: top.client(),
                frame: udp_frame(64, server_mac.0, client_mac.0, from, SERVER_IP),
            };
            let dropped = traffic == "dropped";
            let (mut off, mut on) = (Vec::new(), Vec::new());
            let dp = lab.hosts[0]
                .dataplane
                .as_ref()
                .ok_or_else(|| BenchError::Tool("the client host has no dataplane".into()))?;
            let read = |what: &str, e: overlay_user::dataplane::DataplaneError| {
                BenchError::Tool(format!("reading {what}: {e}"))
            };
            let drops = || -> Result<u64, BenchError> {
                Ok(dp
                    .counters()
                    .map_err(|e| read("counters", e))?
                    .drops
                    .values()
                    .map(|v| v.packets)
                    .sum())
            };
            let before = dp
                .monitor_tallies()
                .map_err(|e| read("drop event tallies", e))?;
            let mut counted = 0;
            for _ in 0..opts.rounds.max(1) {
                off.push(handled(generator, &inj, opts.frames, dropped)?);
                let mut reader = overlay_user::dataplane::events::DropEvents::open(&pin_dir)
                    .map_err(|e| BenchError::Tool(format!("opening the drop events: {e}")))?;
                let d0 = drops()?;
                on.push(handled(generator, &inj, opts.frames, dropped)?);
                counted += drops()? - d0;
                // The reader's own work (userspace, another CPU in
                // practice) is left out: what is measured is the programs'.
                reader.drain();
            }
            let after = dp
                .monitor_tallies()
                .map_err(|e| read("drop event tallies", e))?;
            let med = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
                median(&mut v.iter().map(f).collect::<Vec<_>>())
            };
            out.push(MonitorResult {
                path: *path,
                name: path.name(),
                traffic,
                mpps: (med(&off, |x| x.0), med(&on, |x| x.0)),
                cpu_ns_per_packet: (med(&off, |x| x.1), med(&on, |x| x.1)),
                drops: counted,
                reported: after.sent - before.sent,
                rate_limited: after.suppressed - before.suppressed,
            });
        }
    }
    Ok(out)
}

/// Builds every path, then measures them round by round: flat out at every
/// size, then the no-drop search at the smallest size.
pub fn run(
    paths: &[PathKind],
    opts: &RateOptions,
    mut progress: impl FnMut(&str),
) -> Result<RateRun, BenchError> {
    progress("building topologies");
    let tops = build_all(paths)?;
    let mut generator = Generator::new(opts.flows)?;
    for (_, top) in &tops {
        prepare(top)?;
        generator.attach_sink(top.server())?;
    }
    let mut keys = Vec::new();
    for (path, _) in &tops {
        for dir in [Direction::Encap, Direction::Decap] {
            for size in opts.sizes.iter() {
                keys.push((*path, dir, *size));
            }
        }
    }
    let search_size = opts.sizes.iter().copied().min().unwrap_or(64);
    let search = opts.search_steps > 0 && split_cpus();
    let mut iteration = None;
    let mut samples: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); keys.len()];
    let mut no_drop_samples: Vec<Vec<(f64, f64, bool)>> = vec![Vec::new(); keys.len()];
    for round in 0..opts.rounds.max(1) {
        for k in 0..tops.len() {
            let t = (k + round) % tops.len();
            let (path, top) = &tops[t];
            progress(&format!(
                "round {}/{}: {}",
                round + 1,
                opts.rounds,
                path.name()
            ));
            for (i, (p, dir, size)) in keys.iter().enumerate() {
                if p != path {
                    continue;
                }
                let Some(inj) = injection(*path, top, *dir, *size)? else {
                    continue;
                };
                let paced = match opts.rate_pps {
                    None => None,
                    Some(pps) => Some((
                        pps,
                        match iteration {
                            Some(ns) => ns,
                            None => *iteration.insert(iteration_ns(&mut generator, &inj)?),
                        },
                    )),
                };
                samples[i].push(measure(&mut generator, &inj, opts.frames, paced)?);
            }
            if !search {
                continue;
            }
            progress(&format!(
                "round {}/{}: {}: no-drop rate",
                round + 1,
                opts.rounds,
                path.name()
            ));
            let masks = steer(top)?;
            let searched = (|| {
                for (i, (p, dir, size)) in keys.iter().enumerate() {
                    if p != path || *size != search_size {
                        continue;
                    }
                    let Some(inj) = injection(*path, top, *dir, *size)? else {
                        continue;
                    };
                    let per_iteration = match iteration {
                        Some(ns) => ns,
                        None => *iteration.insert(iteration_ns(&mut generator, &inj)?),
                    };
                    no_drop_samples[i].push(no_drop_rate(
                        &mut generator,
                        &inj,
                        opts,
                        per_iteration,
                    )?);
                }
                Ok::<_, BenchError>(())
            })();
            restore(top, &masks)?;
            searched?;
        }
    }
    progress("profile: time inside the programs");
    let profiles = profile(&tops, &mut generator, opts.frames)?;
    progress("with and without a drop monitor");
    let monitor = monitor_cost(&tops, &mut generator, opts)?;
    let no_drop = keys
        .iter()
        .zip(&no_drop_samples)
        .filter(|(_, s)| !s.is_empty())
        .map(|((path, direction, size), s)| NoDropResult {
            path: *path,
            name: path.name(),
            direction: *direction,
            size: *size,
            mpps: median(&mut s.iter().map(|x| x.0).collect::<Vec<_>>()),
            loss: median(&mut s.iter().map(|x| x.1).collect::<Vec<_>>()),
            generator_bound: s.iter().all(|x| x.2),
            rounds: s.iter().map(|x| x.0).collect(),
        })
        .collect();
    let rates = keys
        .iter()
        .zip(samples)
        .filter(|(_, s)| !s.is_empty())
        .map(|((path, direction, size), s)| {
            let med =
                |f: fn(&(f64, f64, f64)) -> f64| median(&mut s.iter().map(f).collect::<Vec<_>>());
            RateResult {
                path: *path,
                name: path.name(),
                direction: *direction,
                size: *size,
                mpps: med(|x| x.0),
                delivered: med(|x| x.1),
                cpu_ns_per_packet: med(|x| x.2),
            }
        })
        .collect();
    Ok(RateRun {
        rates,
        no_drop,
        profiles,
        monitor,
    })
}

/// One more measurement per direction (64 B) on every path with programs of
/// ours, with run-time statistics on: time in the programs per packet.
fn profile(
    tops: &[(PathKind, Topology)],
    generator: &mut Generator,
    frames: u32,
) -> Result<Vec<Profile>, BenchError> {
    // Statistics stay on while this descriptor is open.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| BenchError::Tool(format!("enabling BPF run-time statistics: {e}")))?;
    let mut out = Vec::new();
    for (path, top) in tops {
        if top.lab().is_none() {
            continue;
        }
        if matches!(path, PathKind::KernelWire | PathKind::KernelOffload) {
            continue;
        }
        for direction in [Direction::Encap, Direction::Decap] {
            let Some(inj) = injection(*path, top, direction, 64)? else {
                continue;
            };
            let before = top.program_run_stats()?;
            let (_, share, cpu_ns) = measure(generator, &inj, frames, None)?;
            let after = top.program_run_stats()?;
            let delivered = share * f64::from(frames);
            let programs: Vec<(String, f64, f64)> = after
                .iter()
                .zip(&before)
                .filter(|(a, b)| a.1 > b.1)
                .map(|((name, runs, time), (_, runs0, time0))| {
                    let n = (runs - runs0) as f64;
                    (
                        name.clone(),
                        (*time - *time0).as_nanos() as f64 / n,
                        n / delivered,
                    )
                })
                .collect();
            out.push(Profile {
                path: *path,
                name: path.name(),
                direction,
                cpu_ns_per_packet: cpu_ns,
                program_ns_per_packet: programs.iter().map(|(_, ns, per)| ns * per).sum(),
                programs,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_options_are_checked() {
        let with = |f: fn(&mut RateOptions)| {
            let mut o = RateOptions::FULL;
            f(&mut o);
            o.validate().map_err(|e| e.to_string())
        };
        assert!(with(|_| {}).is_ok(), "defaults");
        assert!(with(|o| o.sizes = vec![60, 1464].into()).is_ok(), "bounds");
        assert!(with(|o| o.rate_pps = Some(250_000.0)).is_ok(), "paced");
        for (what, f, want) in [
            (
                "no size",
                (|o| o.sizes = vec![].into()) as fn(&mut RateOptions),
                "no frame size",
            ),
            ("tiny", |o| o.sizes = vec![64, 59].into(), "frame size 59 B"),
            (
                "jumbo",
                |o| o.sizes = vec![1465].into(),
                "frame size 1465 B",
            ),
            ("no flows", |o| o.flows = 0, "flows must be"),
            (
                "too many flows",
                |o| o.flows = MAX_FLOWS + 1,
                "flows must be",
            ),
            ("zero rate", |o| o.rate_pps = Some(0.0), "rate must be"),
            ("NaN rate", |o| o.rate_pps = Some(f64::NAN), "rate must be"),
        ] {
            let err = with(f).expect_err(what);
            assert!(err.contains(want), "{what}: {err}");
        }
    }
}
