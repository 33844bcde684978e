//! Name lookups from a container, for a known name, four ways on one host:
//!
//! - kernel: this dataplane's endpoint program answers from its map;
//! - daemon: the same query with an EDNS record, which the program leaves
//!   to `overlay daemon`'s resolver on the gateway;
//! - docker: Docker's embedded resolver (127.0.0.11 in the container, a
//!   real dockerd, a user-defined bridge network);
//! - dnsmasq: a plain local resolver on the host (Debian's dnsmasq).
//!
//! Each path: request/response latency (one query at a time) and queries
//! per second with a window of queries in flight, the paths alternating
//! round by round in one run. The client is this process, in the asking
//! container's namespace: compare the paths as ratios.

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    path::Path,
    time::{Duration, Instant},
};

use overlay_testkit::{NetNs, cli::Host, dnsmasq::Dnsmasq, docker::Dockerd};
use serde::Serialize;

use crate::{BenchError, traffic::median};

/// One way of answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Resolver {
    Kernel,
    Daemon,
    Docker,
    Dnsmasq,
}

impl Resolver {
    pub const ALL: [Self; 4] = [Self::Kernel, Self::Daemon, Self::Docker, Self::Dnsmasq];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Kernel => "in-kernel (endpoint program)",
            Self::Daemon => "overlay daemon resolver",
            Self::Docker => "Docker embedded resolver",
            Self::Dnsmasq => "dnsmasq on the host",
        }
    }
}

/// Sizes of a run.
#[derive(Clone, Copy, Debug)]
pub struct DnsOptions {
    pub rounds: usize,
    /// Queries per latency measurement.
    pub queries: usize,
    /// Length of a throughput measurement.
    pub seconds: f64,
    /// Queries in flight during the throughput measurement.
    pub window: usize,
}

impl DnsOptions {
    pub const FULL: Self = Self {
        rounds: 3,
        queries: 5000,
        seconds: 3.0,
        window: 32,
    };
    pub const QUICK: Self = Self {
        rounds: 1,
        queries: 200,
        seconds: 0.3,
        window: 8,
    };
}

/// Medians over the rounds for one resolver.
#[derive(Clone, Debug, Serialize)]
pub struct DnsResult {
    pub resolver: Resolver,
    pub name: &'static str,
    pub median_us: f64,
    pub p99_us: f64,
    pub qps: f64,
}

/// What the DNS part measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DnsRun {
    pub results: Vec<DnsResult>,
    /// Queries the endpoint program answered during the kernel path's
    /// measurements, and during the daemon path's (which must be none).
    pub kernel_answered_on_kernel_path: u64,
    pub kernel_answered_on_daemon_path: u64,
}

/// A DNS query for `name`'s A record with ID `id`, recursion desired, and
/// with `edns` an OPT record (RFC 6891, 1232-byte UDP size).
pub fn query(id: u16, name: &str, edns: bool) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    if edns {
        m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
    }
    m
}

/// True when `reply` answers query `id` with NOERROR and at least one
/// record.
fn answers(reply: &[u8], id: u16) -> bool {
    reply.len() >= 12
        && reply[..2] == id.to_be_bytes()
        && reply[2] & 0x80 != 0
        && reply[3] & 0x0f == 0
        && u16::from_be_bytes([reply[6], reply[7]]) >= 1
}

fn tool(what: &str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Tool(format!("{what}: {e}"))
}

/// Where a path's queries go, and what they ask.
struct Target<'a> {
    ns: &'a NetNs,
    server: SocketAddrV4,
    name: String,
    edns: bool,
}

/// One query at a time: round-trip times in µs (a tenth more are sent
/// first to warm up).
fn latency(t: &Target<'_>, n: usize) -> Result<Vec<f64>, BenchError> {
    t.ns.run(|| {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| tool("bind", e))?;
        sock.connect(t.server).map_err(|e| tool("connect", e))?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| tool("timeout", e))?;
        let mut rtts = Vec::with_capacity(n);
        let mut buf = [0u8; 512];
        for i in 0..n + n / 10 {
            let id = i as u16;
            let q = query(id, &t.name, t.edns);
            let start = Instant::now();
            sock.send(&q).map_err(|e| tool("send", e))?;
            loop {
                let len = sock
                    .recv(&mut buf)
                    .map_err(|e| tool(&format!("no answer from {}", t.server), e))?;
                if buf[..2] == id.to_be_bytes() {
                    if !answers(&buf[..len], id) {
                        return Err(BenchError::Tool(format!(
                            "{} did not answer {}: {:02x?}",
                            t.server,
                            t.name,
                            &buf[..len.min(16)]
                        )));
                    }
                    break;
                }
            }
            if i >= n / 10 {
                rtts.push(start.elapsed().as_secs_f64() * 1e6);
            }
        }
        Ok(rtts)
    })?
}

/// Queries per second with `window` in flight for `seconds`; a query
/// lost (no answer within 200 ms) is replaced and not counted.
fn throughput(t: &Target<'_>, window: usize, seconds: f64) -> Result<f64, BenchError> {
    t.ns.run(|| {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(|e| tool("bind", e))?;
        sock.connect(t.server).map_err(|e| tool("connect", e))?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| tool("timeout", e))?;
        let mut next: u16 = 0;
        let mut send = |sock: &UdpSocket| {
            next = next.wrapping_add(1);
            sock.send(&query(next, &t.name, t.edns)).map(drop)
        };
        for _ in 0..window {
            send(&sock).map_err(|e| tool("send", e))?;
        }
        let mut buf = [0u8; 512];
        let mut answered = 0u64;
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < seconds {
            match sock.recv(&mut buf) {
                Ok(len) if len >= 12 && buf[2] & 0x80 != 0 => answered += 1,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(tool("recv", e)),
            }
            send(&sock).map_err(|e| tool("send", e))?;
        }
        Ok(answered as f64 / start.elapsed().as_secs_f64())
    })?
}

const DNSMASQ_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);

/// The host, its resolvers and the asking containers; drops in order.
struct Setup {
    docker_client: NetNs,
    _dnsmasq: Dnsmasq,
    /// Held for its containers; stopped (and they removed) on drop.
    _docker: Dockerd,
    client: String,
    /// The name the overlay paths ask (the container's own).
    db: String,
    gateway: Ipv4Addr,
    docker_server: String,
    host: Host,
}

impl Setup {
    /// Panics with a message when the topology cannot be built (a fixture).
    fn build(binary: &Path) -> Self {
        let mut host = Host::new(binary);
        host.start_daemon(&["--dns-upstream", &DNSMASQ_IP.to_string()]);
        host.ok(&["network", "create", "--subnet", "10.53.0.0/24", "dnsnet"]);
        let db = host.container("db", "dnsnet");
        let client = host.container("client", "dnsnet");
        let db_ip: Ipv4Addr = host.ip_of("dnsnet", &db).parse().expect("address");
        host.ns
            .exec(&[
                "ip",
                "addr",
                "add",
                &format!("{DNSMASQ_IP}/32"),
                "dev",
                "lo",
            ])
            .expect("dnsmasq's address");
        let dnsmasq = Dnsmasq::start(&host.ns, DNSMASQ_IP, &[("db.bench", db_ip)])
            .expect("dnsmasq (apt package dnsmasq-base)");
        let docker = Dockerd::start_with_default_bridge(&host.ns).expect("dockerd");
        docker.build_busybox();
        docker.ok(&["network", "create", "dnsbench"]);
        docker.container("dk-server", "dnsbench", &[]);
        docker.container("dk-client", "dnsbench", &[]);
        let docker_client = docker
            .netns("dk-client")
            .expect("the container's namespace");
        Self {
            docker_client,
            _dnsmasq: dnsmasq,
            _docker: docker,
            gateway: Ipv4Addr::new(10, 53, 0, 1),
            client,
            db,
            docker_server: "dk-server".into(),
            host,
        }
    }

    fn dns_answered(&self) -> u64 {
        self.host.counter("dns_answered")
    }
}

/// Builds the resolvers on one host, then measures them round by round.
pub fn run(
    binary: &Path,
    opts: DnsOptions,
    mut progress: impl FnMut(&str),
) -> Result<DnsRun, BenchError> {
    progress("starting overlay daemon, dnsmasq, dockerd and the containers");
    let setup = Setup::build(binary);
    let client = NetNs::existing(&setup.client);
    let target = |r: Resolver| match r {
        Resolver::Kernel | Resolver::Daemon => Target {
            ns: &client,
            server: SocketAddrV4::new(setup.gateway, 53),
            name: setup.db.clone(),
            edns: r == Resolver::Daemon,
        },
        Resolver::Docker => Target {
            ns: &setup.docker_client,
            server: SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 11), 53),
            name: setup.docker_server.clone(),
            edns: false,
        },
        Resolver::Dnsmasq => Target {
            ns: &client,
            server: SocketAddrV4::new(DNSMASQ_IP, 53),
            name: "db.bench".into(),
            edns: false,
        },
    };
    // The daemon binds the gateway a moment after the network is in use.
    let deadline = Instant::now() + Duration::from_secs(10);
    while latency(&target(Resolver::Daemon), 1).is_err() {
        if Instant::now() > deadline {
            return Err(BenchError::Tool(format!(
                "the daemon's resolver never answered:\n{}",
                setup.host.log()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut samples: Vec<[Vec<f64>; 3]> = vec![Default::default(); Resolver::ALL.len()];
    let (mut on_kernel, mut on_daemon) = (0, 0);
    let rounds = opts.rounds.max(1);
    for round in 0..rounds {
        for k in 0..Resolver::ALL.len() {
            let i = (k + round) % Resolver::ALL.len();
            let r = Resolver::ALL[i];
            progress(&format!("round {}/{rounds}: {}", round + 1, r.name()));
            let t = target(r);
            let before = setup.dns_answered();
            let mut rtts = latency(&t, opts.queries)?;
            let qps = throughput(&t, opts.window, opts.seconds)?;
            let answered = setup.dns_answered() - before;
            match r {
                Resolver::Kernel => on_kernel += answered,
                Resolver::Daemon => on_daemon += answered,
                _ => {}
            }
            rtts.sort_by(f64::total_cmp);
            let p99 = rtts[rtts.len() * 99 / 100];
            samples[i][0].push(median(&mut rtts));
            samples[i][1].push(p99);
            samples[i][2].push(qps);
        }
    }
    let results = Resolver::ALL
        .iter()
        .zip(samples.iter_mut())
        .map(|(r, s)| DnsResult {
            resolver: *r,
            name: r.name(),
            median_us: median(&mut s[0]),
            p99_us: median(&mut s[1]),
            qps: median(&mut s[2]),
        })
        .collect();
    Ok(DnsRun {
        results,
        kernel_answered_on_kernel_path: on_kernel,
        kernel_answered_on_daemon_path: on_daemon,
    })
}
