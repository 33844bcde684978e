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

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use aya::{
    Ebpf, EbpfLoader, TestRun as _,
    programs::{TestRunAttrs, TestRunOptions, Xdp},
};
use overlay_common::benchkit::{GEN_FLOWS, GEN_PORT_BASE, SINK_COUNT, SINK_TC, XDP_GEN};
use serde::Serialize;

use super::{
    BENCHKIT_OBJECT, BenchError,
    traffic::{CLIENT_IP, PathKind, SERVER_IP, Topology, build_all, median},
};
use crate::{
    netns::{self, NetNs},
    packet::{ETH_P_IP, Ipv4, eth, udp, vxlan},
    sim::SimError,
};

/// Which half of the path the frames cross.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Encap,
    Decap,
}

/// Sizes of a run.
#[derive(Clone, Copy, Debug)]
pub struct RateOptions {
    pub rounds: usize,
    /// Frames per measurement.
    pub frames: u32,
    /// UDP source ports the generator cycles through.
    pub flows: u32,
    /// Frame sizes (Ethernet header included, FCS not) of the inner frame.
    pub sizes: &'static [usize],
}

impl RateOptions {
    pub const FULL: Self = Self {
        rounds: 3,
        frames: 200_000,
        flows: 64,
        sizes: &[64, 512, 1450],
    };
    pub const QUICK: Self = Self {
        rounds: 1,
        frames: 5_000,
        flows: 4,
        sizes: &[64],
    };
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

/// What a packet-rate run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RateRun {
    pub rates: Vec<RateResult>,
    pub profiles: Vec<Profile>,
}

/// The live-frames generator and the sinks.
struct Generator {
    ebpf: Ebpf,
}

fn tool<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> BenchError {
    move |e| BenchError::Tool(format!("{what}: {e}"))
}

impl Generator {
    fn new(flows: u32) -> Result<Self, BenchError> {
        let mut ebpf = EbpfLoader::new()
            .override_global(GEN_FLOWS, &flows, true)
            .load(BENCHKIT_OBJECT)
            .map_err(|e| BenchError::Tool(format!("loading the generator: {e}")))?;
        let prog: &mut Xdp = ebpf
            .program_mut(XDP_GEN)
            .ok_or_else(|| BenchError::Tool("xdp_gen missing".into()))?
            .try_into()
            .map_err(|e| BenchError::Tool(format!("xdp_gen: {e}")))?;
        prog.load()
            .map_err(|e| BenchError::Tool(format!("loading xdp_gen: {e}")))?;
        let sink: &mut aya::programs::SchedClassifier = ebpf
            .program_mut(SINK_TC)
            .ok_or_else(|| BenchError::Tool("sink_tc missing".into()))?
            .try_into()
            .map_err(tool("sink_tc"))?;
        sink.load().map_err(tool("loading sink_tc"))?;
        Ok(Self { ebpf })
    }

    /// Attaches the sink at tcx ingress of `eth0` in `ns`; the link lives
    /// as long as the generator.
    fn attach_sink(&mut self, ns: &NetNs) -> Result<(), BenchError> {
        let ifindex = ns.ifindex("eth0").map_err(SimError::from)?;
        let sink: &mut aya::programs::SchedClassifier = self
            .ebpf
            .program_mut(SINK_TC)
            .ok_or_else(|| BenchError::Tool("sink_tc missing".into()))?
            .try_into()
            .map_err(tool("sink_tc"))?;
        ns.run(|| sink.attach(ifindex, aya::programs::TcAttachType::Ingress))
            .map_err(SimError::from)?
            .map_err(tool("attaching sink_tc"))?;
        Ok(())
    }

    /// Frames every sink has counted so far.
    fn sunk(&self) -> Result<u64, BenchError> {
        let map: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(
            self.ebpf
                .map(SINK_COUNT)
                .ok_or_else(|| BenchError::Tool("SINK_COUNT missing".into()))?,
        )
        .map_err(tool("SINK_COUNT"))?;
        Ok(map
            .get(&0, 0)
            .map_err(tool("reading SINK_COUNT"))?
            .iter()
            .sum())
    }

    /// Sends `frames` copies of `frame` out of `ifindex` (calling thread's
    /// namespace), as fast as one CPU can.
    fn send(&self, ifindex: u32, frame: &[u8], frames: u32) -> Result<(), BenchError> {
        let prog: &Xdp = self
            .ebpf
            .program(XDP_GEN)
            .ok_or_else(|| BenchError::Tool("xdp_gen missing".into()))?
            .try_into()
            .map_err(|e| BenchError::Tool(format!("xdp_gen: {e}")))?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...;
        // the kernel wants data_end to be the frame's length.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat: frames,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..TestRunOptions::default()
        })
        .map_err(|e| {
            BenchError::Tool(format!(
                "live-frames run: {e}: {:?}",
                std::error::Error::source(&e)
            ))
        })?;
        Ok(())
    }
}

/// An Ethernet + IPv4 + UDP frame of `size` bytes.
fn udp_frame(size: usize, dst: [u8; 6], src: [u8; 6], from: Ipv4Addr, to: Ipv4Addr) -> Vec<u8> {
    let payload = vec![0u8; size.saturating_sub(14 + 20 + 8)];
    let mut f = eth(dst, src, ETH_P_IP);
    f.extend(Ipv4::new(from, to, 17).build(&udp(GEN_PORT_BASE, 9, &payload)));
    f
}

/// Busy jiffies of all CPUs (user, nice, system, irq, softirq, steal).
fn cpu_busy() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse::<u64>().ok())
                .enumerate()
                .filter(|(i, _)| [0, 1, 2, 5, 6, 7].contains(i))
                .map(|(_, v)| v)
                .sum()
        })
        .unwrap_or(0)
}

/// Where the generator sends from, and what, for one topology.
struct Injection<'a> {
    ns: &'a NetNs,
    frame: Vec<u8>,
}

fn injection<'a>(
    path: PathKind,
    top: &'a Topology,
    dir: Direction,
    size: usize,
) -> Result<Option<Injection<'a>>, BenchError> {
    let (client_mac, server_mac) = (
        top.client().mac("eth0").map_err(SimError::from)?,
        top.server().mac("eth0").map_err(SimError::from)?,
    );
    let inner = udp_frame(size, server_mac.0, client_mac.0, CLIENT_IP, SERVER_IP);
    match (top, dir) {
        (_, Direction::Encap) => Ok(Some(Injection {
            ns: top.client(),
            frame: inner,
        })),
        (Topology::Pair(..), Direction::Decap) => Ok(None),
        (Topology::Lab(_), Direction::Decap) if path == PathKind::Redirect => {
            let Topology::Lab(lab) = top else {
                unreachable!("matched above")
            };
            Ok(Some(Injection {
                ns: &lab.hosts[0].ns,
                frame: inner,
            }))
        }
        (Topology::Lab(lab), Direction::Decap) => {
            let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
            let mut payload = vxlan(0x08, 100);
            payload.extend_from_slice(&inner);
            let mut frame = eth(
                b.ns.mac("eth0").map_err(SimError::from)?.0,
                a.ns.mac("eth0").map_err(SimError::from)?.0,
                ETH_P_IP,
            );
            frame.extend(Ipv4::new(a.underlay_ip, b.underlay_ip, 17).build(&udp(
                GEN_PORT_BASE,
                overlay_common::VXLAN_PORT,
                &payload,
            )));
            Ok(Some(Injection { ns: &a.ns, frame }))
        }
    }
}

/// Turns on GRO where the generator's XDP_TX frames land.
fn prepare(top: &Topology) -> Result<(), BenchError> {
    let gro = |ns: &NetNs, ifname: &str| -> Result<(), SimError> {
        Ok(ns.run(|| netns::enable_gro(ifname))??)
    };
    match top {
        Topology::Pair(_, b) => gro(b, "eth0")?,
        Topology::Lab(lab) => {
            gro(
                &lab.hosts[0].ns,
                &lab.containers[0].attachments[0].host_ifname,
            )?;
            gro(lab.switch(), "p1")?;
        }
    }
    Ok(())
}

/// The sink count once queues have drained (unchanged for 20 ms).
fn settled(gen_: &Generator) -> Result<u64, BenchError> {
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

/// One measurement: (Mpps delivered, share delivered, CPU ns per packet).
fn measure(
    gen_: &Generator,
    inj: &Injection<'_>,
    frames: u32,
) -> Result<(f64, f64, f64), BenchError> {
    let ifindex = inj.ns.ifindex("eth0").map_err(SimError::from)?;
    // Frames of the previous measurement may still be in flight.
    let before = settled(gen_)?;
    let cpu0 = cpu_busy();
    let t0 = Instant::now();
    inj.ns
        .run(|| gen_.send(ifindex, &inj.frame, frames))
        .map_err(SimError::from)??;
    let elapsed = t0.elapsed().as_secs_f64();
    let got = settled(gen_)?.saturating_sub(before);
    let cpu = cpu_busy().saturating_sub(cpu0);
    if got == 0 {
        return Err(BenchError::Tool(
            "no generated frame reached the sink in the server container".into(),
        ));
    }
    // USER_HZ is 100: a jiffy is 10 ms.
    let cpu_ns = cpu as f64 * 1e7 / got as f64;
    Ok((
        got as f64 / elapsed / 1e6,
        got as f64 / f64::from(frames),
        cpu_ns,
    ))
}

/// Builds every path, then measures them round by round.
pub fn run(
    paths: &[PathKind],
    opts: RateOptions,
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
            for size in opts.sizes {
                keys.push((*path, dir, *size));
            }
        }
    }
    let mut samples: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); keys.len()];
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
                samples[i].push(measure(&generator, &inj, opts.frames)?);
            }
        }
    }
    progress("profile: time inside the programs");
    let profiles = profile(&tops, &generator, opts.frames)?;
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
    Ok(RateRun { rates, profiles })
}

/// One more measurement per direction (64 B) on every path with programs of
/// ours, with run-time statistics on: time in the programs per packet.
fn profile(
    tops: &[(PathKind, Topology)],
    generator: &Generator,
    frames: u32,
) -> Result<Vec<Profile>, BenchError> {
    // Statistics stay on while this descriptor is open.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map_err(|e| BenchError::Tool(format!("enabling BPF run-time statistics: {e}")))?;
    let mut out = Vec::new();
    for (path, top) in tops {
        let Topology::Lab(lab) = top else { continue };
        if matches!(path, PathKind::KernelWire | PathKind::KernelOffload) {
            continue;
        }
        for direction in [Direction::Encap, Direction::Decap] {
            let Some(inj) = injection(*path, top, direction, 64)? else {
                continue;
            };
            let before = lab.program_run_stats()?;
            let (_, share, cpu_ns) = measure(generator, &inj, frames)?;
            let after = lab.program_run_stats()?;
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
