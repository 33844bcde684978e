//! TCP throughput, retransmits and request/response latency between two
//! containers on different hosts, for each forwarding path, measured in the
//! same run with the paths alternating round by round (the machine is
//! noisy: compare ratios, not absolute numbers across runs).

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use overlay_testkit::{
    NetNs,
    lab::{CONTAINER_MTU, HostKind, Lab, UnderlayKind},
    unique_name,
};
use overlay_user::{
    host::{link::VethEnd, netlink::Netlink},
    model::DecapRequest,
};
use serde::Serialize;

use crate::{
    BenchError,
    limit::{NicHook, Redirects},
};

/// One way of connecting the two containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PathKind {
    /// This dataplane, XDP decap, on a wire-like underlay.
    EbpfXdp,
    /// This dataplane, TC decap, veth offloads on.
    EbpfTc,
    /// Kernel vxlan + bridge (Docker's overlay driver) on a wire-like underlay.
    KernelWire,
    /// Kernel vxlan + bridge, veth offloads on.
    KernelOffload,
    /// Limit (a) of TC decap: the same hosts and veths, a minimal program
    /// redirecting by ingress device at tcx, no encapsulation (offload
    /// underlay, as `EbpfTc`).
    Redirect,
    /// Limit (a) of XDP decap: the same redirect, the NIC's at XDP (wire
    /// underlay, as `EbpfXdp`).
    RedirectXdp,
    /// Limit (b): the two containers on one plain veth pair: no hosts.
    PlainVeth,
}

impl PathKind {
    pub const ALL: [Self; 7] = [
        Self::EbpfXdp,
        Self::EbpfTc,
        Self::KernelWire,
        Self::KernelOffload,
        Self::RedirectXdp,
        Self::Redirect,
        Self::PlainVeth,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::EbpfXdp => "ebpf-xdp (wire)",
            Self::EbpfTc => "ebpf-tc (offload)",
            Self::KernelWire => "kernel vxlan (wire)",
            Self::KernelOffload => "kernel vxlan (offload)",
            Self::Redirect => "redirect tc (limit a, offload)",
            Self::RedirectXdp => "redirect xdp (limit a, wire)",
            Self::PlainVeth => "plain veth (limit b)",
        }
    }

    /// The kernel path on the same underlay kind, for the ratio.
    pub const fn kernel_peer(self) -> Option<Self> {
        match self {
            Self::EbpfXdp => Some(Self::KernelWire),
            Self::EbpfTc => Some(Self::KernelOffload),
            _ => None,
        }
    }

    /// Limit (a) with the same decap hook and underlay kind, for the ratio.
    pub const fn limit_peer(self) -> Option<Self> {
        match self {
            Self::EbpfXdp => Some(Self::RedirectXdp),
            Self::EbpfTc => Some(Self::Redirect),
            _ => None,
        }
    }

    /// A limit (a) path: bare hosts with redirect programs.
    pub const fn is_redirect(self) -> bool {
        matches!(self, Self::Redirect | Self::RedirectXdp)
    }
}

/// Sizes of a run.
#[derive(Clone, Copy, Debug)]
pub struct TrafficOptions {
    pub rounds: usize,
    /// iperf3 duration per measurement.
    pub seconds: u32,
    /// Request/response round trips per measurement.
    pub rr_iterations: usize,
}

impl TrafficOptions {
    pub const FULL: Self = Self {
        rounds: 3,
        seconds: 5,
        rr_iterations: 5_000,
    };
    pub const QUICK: Self = Self {
        rounds: 1,
        seconds: 1,
        rr_iterations: 500,
    };
}

/// Medians over the rounds for one path.
#[derive(Clone, Debug, Serialize)]
pub struct PathResult {
    pub path: PathKind,
    pub name: &'static str,
    pub tcp1_gbps: f64,
    pub tcp4_gbps: f64,
    /// Retransmitted segments in the 1-stream test.
    pub tcp1_retransmits: u64,
    pub rr_median_us: f64,
    pub rr_p99_us: f64,
    /// Lowest and highest RR median of the passes (`RR_PASSES` a round):
    /// the spread a reader needs before comparing two paths' medians.
    pub rr_median_range_us: (f64, f64),
    /// Each round's 1-stream Gbit/s and retransmits, in round order.
    pub tcp1_rounds: Vec<(f64, f64)>,
}

pub(crate) const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);
pub(crate) const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);

/// A built topology: two container namespaces (client, server).
pub(crate) enum Topology {
    Lab {
        lab: Box<Lab>,
        /// Limit (a)'s programs, on a lab of bare hosts.
        redirects: Option<Redirects>,
    },
    Pair(NetNs, NetNs),
}

impl Topology {
    pub(crate) fn build(path: PathKind) -> Result<Self, BenchError> {
        let (kinds, underlay) = match path {
            PathKind::EbpfXdp => ([HostKind::Ebpf(DecapRequest::Xdp); 2], UnderlayKind::Wire),
            PathKind::EbpfTc => ([HostKind::Ebpf(DecapRequest::Tc); 2], UnderlayKind::Offload),
            PathKind::KernelWire => ([HostKind::Kernel; 2], UnderlayKind::Wire),
            PathKind::KernelOffload => ([HostKind::Kernel; 2], UnderlayKind::Offload),
            PathKind::Redirect => ([HostKind::Bare; 2], UnderlayKind::Offload),
            PathKind::RedirectXdp => ([HostKind::Bare; 2], UnderlayKind::Wire),
            PathKind::PlainVeth => return Self::pair(),
        };
        let mut lab = Lab::with_underlay(&kinds, underlay)?;
        lab.add_network(100, "10.10.0.0/24")?;
        lab.add_container(0, "client", &[(100, CLIENT_IP)])?;
        lab.add_container(1, "server", &[(100, SERVER_IP)])?;
        let redirects = match path {
            PathKind::Redirect => Some(Redirects::attach(&lab, NicHook::Tc)?),
            PathKind::RedirectXdp => Some(Redirects::attach(&lab, NicHook::Xdp)?),
            _ => None,
        };
        Ok(Self::Lab {
            lab: Box::new(lab),
            redirects,
        })
    }

    /// The simulated hosts, unless this is the plain veth pair.
    pub(crate) fn lab(&self) -> Option<&Lab> {
        match self {
            Self::Lab { lab, .. } => Some(lab),
            Self::Pair(..) => None,
        }
    }

    /// (program, runs, time) of every program the hosts run: the
    /// dataplane's and limit (a)'s.
    pub(crate) fn program_run_stats(&self) -> Result<Vec<(String, u64, Duration)>, BenchError> {
        match self {
            Self::Lab { lab, redirects } => {
                let mut stats = lab.program_run_stats()?;
                if let Some(r) = redirects {
                    stats.extend(r.run_stats()?);
                }
                Ok(stats)
            }
            Self::Pair(..) => Ok(Vec::new()),
        }
    }

    fn pair() -> Result<Self, BenchError> {
        let tag = unique_name("ovlb");
        let a = NetNs::new(&format!("{tag}-a"))?;
        let b = NetNs::new(&format!("{tag}-b"))?;
        Netlink::open()?.add_veth(
            VethEnd {
                name: "eth0",
                netns: Some(a.name()),
                mtu: Some(CONTAINER_MTU),
            },
            VethEnd {
                name: "eth0",
                netns: Some(b.name()),
                mtu: Some(CONTAINER_MTU),
            },
        )?;
        for (ns, ip) in [(&a, CLIENT_IP), (&b, SERVER_IP)] {
            ns.sh(&format!("ip addr add {ip}/24 dev eth0"))?;
            ns.sh("ip link set eth0 up")?;
        }
        Ok(Self::Pair(a, b))
    }

    pub(crate) fn client(&self) -> &NetNs {
        match self {
            Self::Lab { lab, .. } => &lab.containers[0].ns,
            Self::Pair(a, _) => a,
        }
    }

    pub(crate) fn server(&self) -> &NetNs {
        match self {
            Self::Lab { lab, .. } => &lab.containers[1].ns,
            Self::Pair(_, b) => b,
        }
    }
}

fn tool_error(what: &str, detail: impl std::fmt::Display) -> BenchError {
    BenchError::Tool(format!("{what}: {detail}"))
}

/// Two containers to measure between: any pair of namespaces.
#[derive(Clone, Copy)]
pub(crate) struct Ends<'a> {
    pub client: &'a NetNs,
    pub server: &'a NetNs,
    pub server_ip: Ipv4Addr,
}

impl Topology {
    pub(crate) fn ends(&self) -> Ends<'_> {
        Ends {
            client: self.client(),
            server: self.server(),
            server_ip: SERVER_IP,
        }
    }
}

/// One iperf3 run: (Gbit/s received, retransmits).
pub(crate) fn iperf(
    ends: Ends<'_>,
    streams: u32,
    seconds: u32,
    port: u16,
) -> Result<(f64, u64), BenchError> {
    let mut server = ends
        .server
        .command("iperf3")
        .args(["-s", "-1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| tool_error("iperf3 server (apt package iperf3)", e))?;
    // iperf3 3.12 exits 0 with -J even when it could not connect, so an
    // attempt counts only when its JSON has no error and a result.
    let mut last_error = serde_json::Value::Null;
    let mut result = None;
    for _ in 0..50 {
        let out = ends
            .client
            .command("iperf3")
            .args([
                "-c",
                &ends.server_ip.to_string(),
                "-p",
                &port.to_string(),
                "-J",
            ])
            .args(["-t", &seconds.to_string(), "-P", &streams.to_string()])
            .output()
            .map_err(|e| tool_error("iperf3 client", e))?;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let bps = json["end"]["sum_received"]["bits_per_second"].as_f64();
        match bps {
            Some(bps) if json["error"].is_null() && bps > 0.0 => {
                let retrans = json["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0);
                result = Some((bps / 1e9, retrans));
                break;
            }
            _ => last_error = json["error"].clone(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = server.kill();
    let _ = server.wait();
    result.ok_or_else(|| tool_error("iperf3 gave no result", last_error))
}

/// The CPU the request/response runs on: both ends and (so) every softirq
/// of the path, so a round trip is the path's work plus two context
/// switches, with no cross-CPU wake-up (an IPI, and on a VM a halted
/// vCPU's wake-up, which made the same path read 25 us in one run and
/// 130 us in the next).
const RR_CPU: usize = 1;

/// Restores the calling thread's CPU affinity when dropped.
struct Pinned(Option<libc::cpu_set_t>);

impl Pinned {
    /// Pins the calling thread to `cpu` (if the machine has it; else
    /// leaves it where it is).
    fn to(cpu: usize) -> Self {
        if std::thread::available_parallelism().map_or(1, usize::from) <= cpu {
            return Self(None);
        }
        // SAFETY: cpu_set_t is plain data; sched_{get,set}affinity(0, ..)
        // read and change only the calling thread's mask.
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut old) != 0 {
                return Self(None);
            }
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            Self(Some(old))
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            // SAFETY: as in `to`.
            unsafe {
                libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), old);
            }
        }
    }
}

/// TCP request/response with 64-byte messages, both ends on [`RR_CPU`]:
/// (median, p99) in µs.
pub(crate) fn ping_pong(
    ends: Ends<'_>,
    iterations: usize,
    port: u16,
) -> Result<(f64, f64), BenchError> {
    let listener = ends
        .server
        .run(|| TcpListener::bind((ends.server_ip, port)))?
        .map_err(|e| tool_error("ping-pong bind", e))?;
    std::thread::scope(|s| {
        let server = s.spawn(move || -> std::io::Result<()> {
            let _pinned = Pinned::to(RR_CPU);
            let (mut conn, _) = listener.accept()?;
            conn.set_nodelay(true)?;
            let mut buf = [0u8; 64];
            loop {
                if conn.read_exact(&mut buf).is_err() {
                    return Ok(());
                }
                conn.write_all(&buf)?;
            }
        });
        let _pinned = Pinned::to(RR_CPU);
        let addr = SocketAddr::from((ends.server_ip, port));
        let mut conn = ends
            .client
            .run(|| TcpStream::connect_timeout(&addr, Duration::from_secs(5)))?
            .map_err(|e| tool_error("ping-pong connect", e))?;
        conn.set_nodelay(true)
            .map_err(|e| tool_error("nodelay", e))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| tool_error("timeout", e))?;
        let mut buf = [0x42u8; 64];
        let mut rtts = Vec::with_capacity(iterations);
        for i in 0..iterations + iterations / 10 {
            let t = Instant::now();
            conn.write_all(&buf)
                .map_err(|e| tool_error("ping-pong write", e))?;
            conn.read_exact(&mut buf)
                .map_err(|e| tool_error("ping-pong read", e))?;
            // The first tenth warms caches and neighbour entries.
            if i >= iterations / 10 {
                rtts.push(t.elapsed());
            }
        }
        drop(conn);
        let _ = server.join();
        rtts.sort_unstable();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        Ok((us(rtts[rtts.len() / 2]), us(rtts[rtts.len() * 99 / 100])))
    })
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Every path's topology, built before any is measured.
pub(crate) fn build_all(paths: &[PathKind]) -> Result<Vec<(PathKind, Topology)>, BenchError> {
    paths
        .iter()
        .map(|p| Topology::build(*p).map(|t| (*p, t)))
        .collect()
}

/// Request/response measurements per path and round, interleaved.
const RR_PASSES: usize = 3;

/// Builds every path, then measures them round by round.
pub fn run(
    paths: &[PathKind],
    opts: TrafficOptions,
    mut progress: impl FnMut(&str),
) -> Result<Vec<PathResult>, BenchError> {
    progress("building topologies");
    let tops = build_all(paths)?;
    let mut samples: Vec<[Vec<f64>; 5]> = vec![Default::default(); tops.len()];
    let mut port = 15_000;
    for round in 0..opts.rounds.max(1) {
        // Rotate the order so no path always runs first (or last).
        for k in 0..tops.len() {
            let i = (k + round) % tops.len();
            let (path, top) = &tops[i];
            progress(&format!(
                "round {}/{}: {}",
                round + 1,
                opts.rounds,
                path.name()
            ));
            port += 1;
            let (g1, r1) = iperf(top.ends(), 1, opts.seconds, port)?;
            port += 1;
            let (g4, _) = iperf(top.ends(), 4, opts.seconds, port)?;
            for (slot, v) in samples[i].iter_mut().zip([g1, g4, r1 as f64]) {
                slot.push(v);
            }
        }
        // Round trips are short: several passes over every path, so drift
        // on the machine touches all paths alike.
        for _ in 0..RR_PASSES {
            for k in 0..tops.len() {
                let i = (k + round) % tops.len();
                port += 1;
                let (med, p99) = ping_pong(tops[i].1.ends(), opts.rr_iterations, port)?;
                samples[i][3].push(med);
                samples[i][4].push(p99);
            }
        }
    }
    Ok(tops
        .iter()
        .zip(samples.iter_mut())
        .map(|((path, _), s)| PathResult {
            // Before the medians below sort the samples.
            tcp1_rounds: s[0].iter().copied().zip(s[2].iter().copied()).collect(),
            path: *path,
            name: path.name(),
            tcp1_gbps: median(&mut s[0]),
            tcp4_gbps: median(&mut s[1]),
            tcp1_retransmits: median(&mut s[2]) as u64,
            rr_median_us: median(&mut s[3]),
            rr_p99_us: median(&mut s[4]),
            // Sorted by `median` just above.
            rr_median_range_us: (s[3][0], s[3][s[3].len() - 1]),
        })
        .collect())
}

/// Is iperf3 installed (`cargo xtask setup` installs it)?
pub fn have_iperf3() -> bool {
    Command::new("iperf3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
