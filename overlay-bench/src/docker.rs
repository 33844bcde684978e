//! Docker's own default bridge next to this plugin's network: two
//! containers on one host, started by a real dockerd with `docker run`.
//!
//! - `docker0`: Docker's default `bridge` network as a stock install runs
//!   it: veth pairs on a Linux bridge, iptables rules (NAT, the DOCKER and
//!   isolation chains) and conntrack, in the simulated host's namespace.
//! - plugin: a `docker network create -d ebpf-overlay` network of this
//!   dataplane on the same dockerd, served by `overlay daemon`.
//!
//! TCP and request/response run in the containers' namespaces with the
//! host's tools (the image is busybox); the 64-byte packet rate uses the
//! XDP generator out of the client container's `eth0` and the sink at the
//! server container's `eth0` (see [`crate::pktrate`]). The paths alternate
//! round by round in one run: compare them as ratios.

use std::{net::Ipv4Addr, path::Path};

use overlay_testkit::{NetNs, cli::Host, docker::Dockerd};
use serde::Serialize;

use crate::{
    BenchError,
    pktrate::{
        RateOptions,
        pair::{Pair, PairMeter},
    },
    traffic::{Ends, TrafficOptions, iperf, median, ping_pong},
};

/// The frame size of the packet rate here.
pub const FRAME_SIZE: usize = 64;

/// One of the two same-host paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DockerPath {
    /// Docker's default bridge network.
    Docker0,
    /// A network of this plugin.
    Plugin,
}

impl DockerPath {
    pub const ALL: [Self; 2] = [Self::Docker0, Self::Plugin];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Docker0 => "docker0 (bridge + iptables)",
            Self::Plugin => "ebpf-overlay plugin",
        }
    }

    /// The `docker run --network` value.
    fn network(self) -> &'static str {
        match self {
            Self::Docker0 => "bridge",
            Self::Plugin => PLUGIN_NETWORK,
        }
    }
}

const PLUGIN_NETWORK: &str = "bench";

/// Medians over the rounds for one path.
#[derive(Clone, Debug, Serialize)]
pub struct DockerResult {
    pub path: DockerPath,
    pub name: &'static str,
    pub tcp1_gbps: f64,
    pub tcp1_retransmits: u64,
    pub rr_median_us: f64,
    pub rr_p99_us: f64,
    /// 64 B frames delivered flat out, millions per second.
    pub mpps: f64,
    /// Busy CPU of the whole machine per delivered frame, ns.
    pub cpu_ns_per_packet: f64,
    /// The no-drop rate of 64 B frames (None: one CPU, no search).
    pub no_drop_mpps: Option<f64>,
    /// The path carried all the generator sent: its own rate is higher.
    pub no_drop_generator_bound: bool,
}

/// What the Docker part measured, and how the host was set up.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DockerRun {
    pub results: Vec<DockerResult>,
    /// `net.bridge.bridge-nf-call-iptables` in the host's namespace while
    /// measuring: 1 when bridged traffic crosses iptables, as on a stock
    /// Docker host.
    pub bridge_nf_call_iptables: String,
    /// `docker version` of the engine measured.
    pub engine: String,
}

/// The host, its dockerd and the containers; drops in order (the
/// namespaces' names, Docker's containers, the plugin socket, the host).
struct Setup {
    containers: Vec<Container>,
    docker: Dockerd,
    socket: std::path::PathBuf,
    host: Host,
}

struct Container {
    ns: NetNs,
    ip: Ipv4Addr,
    /// The host end of its veth.
    host_ifname: String,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Setup {
    /// Panics with a message when the topology cannot be built (a fixture).
    fn build(binary: &Path) -> Self {
        let mut host = Host::new(binary);
        let driver = format!("ebpf-overlay-{}", host.tag);
        let socket = std::path::PathBuf::from(format!("/run/docker/plugins/{driver}.sock"));
        host.start_daemon(&["--plugin-socket", &socket.display().to_string()]);
        let docker =
            Dockerd::start_with_default_bridge(&host.ns).expect("dockerd with its default bridge");
        docker.build_busybox();
        docker.ok(&[
            "network",
            "create",
            "-d",
            &driver,
            "--ipam-driver",
            &driver,
            PLUGIN_NETWORK,
        ]);
        let mut setup = Self {
            containers: Vec::new(),
            docker,
            socket,
            host,
        };
        for path in DockerPath::ALL {
            for role in ["client", "server"] {
                let name = format!("{}-{role}", path.network());
                setup.docker.container(&name, path.network(), &[]);
                let c = setup.container(&name, path.network());
                setup.containers.push(c);
            }
        }
        setup
    }

    fn container(&self, name: &str, network: &str) -> Container {
        let ns = self.docker.netns(name).expect("the container's namespace");
        let ip = self
            .docker
            .ip_of(name, network)
            .parse()
            .expect("an IPv4 address");
        let iflink = ns
            .exec(&["cat", "/sys/class/net/eth0/iflink"])
            .expect("eth0's peer");
        let index: u32 = String::from_utf8_lossy(&iflink.stdout)
            .trim()
            .parse()
            .expect("an ifindex");
        let host_ifname = self
            .host
            .ns
            .run(|| overlay_user::host::link::name_of(index))
            .expect("the host namespace")
            .expect("the veth's host end");
        Container {
            ns,
            ip,
            host_ifname,
        }
    }

    fn pair(&self, path: DockerPath) -> Pair<'_> {
        let i = DockerPath::ALL
            .iter()
            .position(|p| *p == path)
            .expect("a path")
            * 2;
        let (client, server) = (&self.containers[i], &self.containers[i + 1]);
        Pair {
            ends: Ends {
                client: &client.ns,
                server: &server.ns,
                server_ip: server.ip,
            },
            client_ip: client.ip,
            first_receiver: (&self.host.ns, client.host_ifname.clone()),
        }
    }
}

/// Builds both paths on one host, then measures them round by round.
pub fn run(
    binary: &Path,
    traffic: TrafficOptions,
    rate: &RateOptions,
    mut progress: impl FnMut(&str),
) -> Result<DockerRun, BenchError> {
    progress("starting dockerd and the overlay daemon, four containers");
    let setup = Setup::build(binary);
    let pairs: Vec<Pair<'_>> = DockerPath::ALL.iter().map(|p| setup.pair(*p)).collect();
    let mut meter = PairMeter::new(rate.flows, &pairs)?;
    let mut samples: Vec<[Vec<f64>; 7]> = vec![Default::default(); pairs.len()];
    let mut bound = vec![true; pairs.len()];
    let mut port = 16_000;
    let rounds = traffic.rounds.max(1);
    for round in 0..rounds {
        for k in 0..pairs.len() {
            let i = (k + round) % pairs.len();
            let (path, pair) = (DockerPath::ALL[i], &pairs[i]);
            progress(&format!("round {}/{rounds}: {}", round + 1, path.name()));
            port += 1;
            let (g1, r1) = iperf(pair.ends, 1, traffic.seconds, port)?;
            port += 1;
            let (med, p99) = ping_pong(pair.ends, traffic.rr_iterations, port)?;
            let (mpps, _, cpu_ns) = meter.rate(pair, FRAME_SIZE, rate.frames)?;
            let no_drop = meter.no_drop(pair, FRAME_SIZE, rate)?;
            let s = &mut samples[i];
            for (slot, v) in s.iter_mut().zip([g1, r1 as f64, med, p99, mpps, cpu_ns]) {
                slot.push(v);
            }
            if let Some((mpps, _, generator_bound)) = no_drop {
                s[6].push(mpps);
                bound[i] &= generator_bound;
            }
        }
    }
    let results = DockerPath::ALL
        .iter()
        .zip(samples.iter_mut())
        .zip(bound)
        .map(|((path, s), generator_bound)| DockerResult {
            path: *path,
            name: path.name(),
            tcp1_gbps: median(&mut s[0]),
            tcp1_retransmits: median(&mut s[1]) as u64,
            rr_median_us: median(&mut s[2]),
            rr_p99_us: median(&mut s[3]),
            mpps: median(&mut s[4]),
            cpu_ns_per_packet: median(&mut s[5]),
            no_drop_mpps: (!s[6].is_empty()).then(|| median(&mut s[6])),
            no_drop_generator_bound: !s[6].is_empty() && generator_bound,
        })
        .collect();
    let bridge_nf_call_iptables = setup
        .host
        .ns
        .exec(&["cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"])
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unavailable".into());
    let engine = setup.docker.ok(&[
        "version",
        "-f",
        "{{.Server.Version}} (API {{.Server.APIVersion}})",
    ]);
    drop(meter);
    drop(pairs);
    Ok(DockerRun {
        results,
        bridge_nf_call_iptables,
        engine,
    })
}
