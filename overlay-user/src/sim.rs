//! Simulated hosts and containers in network namespaces: the topology the
//! demo, the integration tests and the benchmarks run on.
//!
//! Every host is a namespace whose `eth0` is a port of the underlay switch
//! (a bridge in a namespace of its own, MTU 1500) and has its own
//! [`Dataplane`] pinned under its own directory. Every container is a namespace with one veth per
//! network (`eth0`, `eth1`, ...), MTU 1450. Everything is removed on drop.
//!
//! A veth "wire" differs from a real one: it hands the next namespace
//! checksum-partial GSO super-packets. TC decap keeps that skb state intact,
//! so TC labs leave the offloads on. XDP sees no skb metadata, so XDP labs
//! turn TX checksum offload off on the host ends, and the sending kernel
//! completes checksums and segments in software as NIC hardware would.

use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use ipnet::Ipv4Net;

use crate::{
    Dataplane, DataplaneError, DecapMode, LocalEndpoint, MacAddr, Network, RemoteEndpoint,
    Underlay,
    dataplane::AttachedMode,
    netns::{self, NetNs, NetnsError},
};

/// Failure while building a simulated topology.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("{0}")]
    Invalid(String),
    #[error("benchmark harness program: {0}")]
    Harness(String),
}

/// The underlay subnet the simulated hosts share.
pub const UNDERLAY_PREFIX: &str = "10.100.0";
/// Container interface MTU: underlay 1500 minus VXLAN overhead.
pub const CONTAINER_MTU: u32 = overlay_common::DEFAULT_OVERLAY_MTU;

/// How a simulated host forwards overlay traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// This project's dataplane with the given decap mode.
    Ebpf(DecapMode),
    /// The kernel's own path, the way Docker's overlay driver builds it: per
    /// network a vxlan device (`nolearning proxy`) enslaved to a bridge,
    /// static FDB and neighbour entries for remote endpoints.
    Kernel,
    /// Limit (a) of the benchmarks: the same veths with only a minimal
    /// program that redirects by ingress device (container <-> underlay
    /// NIC), no lookup by address, no encapsulation. One container per host.
    Redirect,
}

/// How the simulated underlay veths treat offloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnderlayKind {
    /// Veth defaults: checksum-partial GSO super-packets cross to the next
    /// namespace unsegmented (no real NIC does this).
    Offload,
    /// TX checksum offload off on the hosts' ends: the sender completes
    /// checksums and segments, as NIC hardware does on a real wire.
    Wire,
}

/// One simulated host.
pub struct Host {
    pub ns: NetNs,
    pub underlay_ip: Ipv4Addr,
    pub kind: HostKind,
    /// Present on [`HostKind::Ebpf`] hosts.
    pub dataplane: Option<Dataplane>,
    pub decap: Option<AttachedMode>,
    pin_dir: Option<PathBuf>,
    /// The redirect program of a [`HostKind::Redirect`] host (its links
    /// go with it).
    redirect: Option<aya::Ebpf>,
}

impl Host {
    /// The dataplane of an eBPF host.
    pub fn dp(&self) -> &Dataplane {
        self.dataplane.as_ref().expect("not an eBPF host")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(pin_dir) = &self.pin_dir {
            let _ = Dataplane::destroy(pin_dir);
        }
    }
}

/// One interface of a container.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub vni: u32,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// Name inside the container (`eth0`, ...).
    pub ifname: String,
    /// Host-side veth name and index (in the host namespace).
    pub host_ifname: String,
    pub host_ifindex: u32,
}

/// A simulated container.
pub struct Container {
    pub ns: NetNs,
    pub host: usize,
    pub attachments: Vec<Attachment>,
}

impl Container {
    /// Address on network `vni`.
    pub fn ip_on(&self, vni: u32) -> Option<Ipv4Addr> {
        self.attachments.iter().find(|a| a.vni == vni).map(|a| a.ip)
    }
}

/// Hosts, networks and containers. Drop order: containers, hosts, switch.
pub struct Lab {
    pub containers: Vec<Container>,
    pub hosts: Vec<Host>,
    pub networks: Vec<Network>,
    /// The underlay switch: a bridge in its own namespace, one port per host.
    /// Like a real switch it receives each frame before forwarding it, which
    /// clears skb state (the "redirected" bit) that a bare veth pair would
    /// carry from one host's stack into the next.
    switch: Option<NetNs>,
    tag: String,
}

/// Attaches the limit (a) program at tcx ingress of `ifindex` (calling
/// thread's namespace).
fn attach_redirect(ebpf: &mut aya::Ebpf, ifindex: u32) -> Result<(), SimError> {
    let err = |e: &dyn std::fmt::Display| SimError::Harness(e.to_string());
    let prog: &mut aya::programs::SchedClassifier = ebpf
        .program_mut(overlay_common::benchkit::REDIRECT_TC)
        .ok_or_else(|| SimError::Harness("redirect_tc missing".into()))?
        .try_into()
        .map_err(|e| err(&e))?;
    if prog.fd().is_err() {
        prog.load().map_err(|e| err(&e))?;
    }
    prog.attach(ifindex, aya::programs::TcAttachType::Ingress)
        .map_err(|e| err(&e))?;
    Ok(())
}

/// Frames arriving on `from` go to `to` (`flags`: `REDIRECT_PEER` or 0).
fn set_redirect(ebpf: &mut aya::Ebpf, from: u32, to: u32, flags: u32) -> Result<(), SimError> {
    let err = |e: &dyn std::fmt::Display| SimError::Harness(e.to_string());
    let mut map: aya::maps::HashMap<_, u32, overlay_common::RedirectTarget> =
        aya::maps::HashMap::try_from(
            ebpf.map_mut(overlay_common::benchkit::REDIRECT)
                .ok_or_else(|| SimError::Harness("REDIRECT map missing".into()))?,
        )
        .map_err(|e| err(&e))?;
    map.insert(
        &from,
        &overlay_common::RedirectTarget { ifindex: to, flags },
        0,
    )
    .map_err(|e| err(&e))
}

fn sh(ns: &NetNs, cmd: &str) -> Result<(), NetnsError> {
    let argv: Vec<&str> = cmd.split_whitespace().collect();
    ns.exec(&argv).map(drop)
}

impl Lab {
    /// Two hosts on the underlay switch, each running this dataplane with
    /// decap `mode`.
    pub fn two_hosts(mode: DecapMode) -> Result<Self, SimError> {
        Self::new(&[HostKind::Ebpf(mode), HostKind::Ebpf(mode)])
    }

    /// Hosts of the given kinds on one underlay switch (10.100.0.1, .2, ...).
    /// The underlay behaves like a real wire ([`Underlay::Wire`]) when any
    /// host decapsulates with XDP, which needs it.
    pub fn new(kinds: &[HostKind]) -> Result<Self, SimError> {
        let xdp = kinds
            .iter()
            .any(|k| matches!(k, HostKind::Ebpf(m) if *m != DecapMode::Tc));
        Self::with_underlay(
            kinds,
            if xdp {
                UnderlayKind::Wire
            } else {
                UnderlayKind::Offload
            },
        )
    }

    /// As [`Lab::new`] with the underlay chosen (benchmarks compare paths on
    /// the same kind).
    pub fn with_underlay(kinds: &[HostKind], underlay: UnderlayKind) -> Result<Self, SimError> {
        if !(2..=200).contains(&kinds.len()) {
            return Err(SimError::Invalid("a lab has 2 to 200 hosts".into()));
        }
        let wire = underlay == UnderlayKind::Wire;
        let tag = netns::unique_name("ovl");
        let switch = NetNs::new(&format!("{tag}-sw"))?;
        // No IPv6 chatter (router solicitations, MLD) on the underlay.
        sh(&switch, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1")?;
        sh(&switch, "sysctl -qw net.ipv6.conf.default.disable_ipv6=1")?;
        sh(&switch, "ip link add br0 type bridge")?;
        sh(&switch, "ip link set br0 up")?;
        let mut lab = Self {
            containers: Vec::new(),
            hosts: Vec::new(),
            networks: Vec::new(),
            switch: Some(switch),
            tag: tag.clone(),
        };
        for (i, kind) in kinds.iter().enumerate() {
            let ns = NetNs::new(&format!("{tag}-h{}", i + 1))?;
            sh(&ns, "sysctl -qw net.ipv6.conf.default.disable_ipv6=1")?;
            let sw = lab.switch.as_ref().expect("set above");
            let port = format!("p{}", i + 1);
            netns::add_veth(
                netns::VethEnd {
                    name: "eth0",
                    netns: Some(ns.name()),
                    mtu: None,
                },
                netns::VethEnd {
                    name: &port,
                    netns: Some(sw.name()),
                    mtu: None,
                },
            )?;
            sh(sw, &format!("ip link set {port} master br0"))?;
            sh(sw, &format!("ip link set {port} up"))?;
            let ip = Ipv4Addr::new(10, 100, 0, i as u8 + 1);
            sh(&ns, &format!("ip addr add {ip}/24 dev eth0"))?;
            sh(&ns, "ip link set eth0 up")?;
            sh(&ns, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1")?;
            if wire {
                ns.run(|| netns::disable_tx_checksum_offload("eth0"))??;
            }
            lab.hosts.push(Self::start_host(ns, ip, *kind, &tag, i)?);
        }
        Ok(lab)
    }

    fn start_host(
        ns: NetNs,
        underlay_ip: Ipv4Addr,
        kind: HostKind,
        tag: &str,
        i: usize,
    ) -> Result<Host, SimError> {
        let mut host = Host {
            ns,
            underlay_ip,
            kind,
            dataplane: None,
            decap: None,
            pin_dir: None,
            redirect: None,
        };
        let nic = host.ns.ifindex("eth0")?;
        match kind {
            HostKind::Kernel => {}
            HostKind::Redirect => {
                let mut ebpf = aya::Ebpf::load(crate::bench::BENCHKIT_OBJECT)
                    .map_err(|e| SimError::Harness(e.to_string()))?;
                host.ns.run(|| attach_redirect(&mut ebpf, nic))??;
                host.redirect = Some(ebpf);
            }
            HostKind::Ebpf(mode) => {
                let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{tag}-h{}", i + 1));
                // Set before loading: the drop guard removes the pins even
                // when a later step fails.
                host.pin_dir = Some(pin_dir.clone());
                let mut dataplane = Dataplane::load(&pin_dir)?;
                dataplane.set_underlay(&Underlay::new(nic, underlay_ip))?;
                host.decap = Some(host.ns.run(|| dataplane.attach_underlay(nic, mode))??);
                host.dataplane = Some(dataplane);
            }
        }
        Ok(host)
    }

    /// Adds a network on every host and lets every host send it to every
    /// other.
    pub fn add_network(&mut self, vni: u32, subnet: &str) -> Result<Network, SimError> {
        let subnet: Ipv4Net = subnet
            .parse()
            .map_err(|e| SimError::Invalid(format!("subnet {subnet}: {e}")))?;
        let gateway = subnet.hosts().next();
        let net = Network {
            vni,
            subnet,
            gateway,
            internal: false,
        };
        let ips: Vec<Ipv4Addr> = self.hosts.iter().map(|h| h.underlay_ip).collect();
        for host in &mut self.hosts {
            if host.kind == HostKind::Redirect {
                continue;
            }
            let Some(dp) = host.dataplane.as_mut() else {
                let ul = host.underlay_ip;
                sh(
                    &host.ns,
                    &format!(
                        "ip link add vx{vni} type vxlan id {vni} local {ul} dstport 4789 dev eth0 nolearning proxy"
                    ),
                )?;
                sh(&host.ns, &format!("ip link add br{vni} type bridge"))?;
                sh(&host.ns, &format!("ip link set vx{vni} master br{vni}"))?;
                sh(&host.ns, &format!("ip link set vx{vni} up"))?;
                sh(&host.ns, &format!("ip link set br{vni} up"))?;
                continue;
            };
            dp.add_network(&net)?;
            for peer in ips.iter().filter(|ip| **ip != host.underlay_ip) {
                dp.add_peer(*peer, vni)?;
            }
        }
        self.networks.push(net);
        Ok(net)
    }

    /// A container on host `host` with one interface per `(vni, ip)`; the
    /// first network gets the default route.
    pub fn add_container(
        &mut self,
        host: usize,
        name: &str,
        nets: &[(u32, Ipv4Addr)],
    ) -> Result<usize, SimError> {
        let ns = NetNs::new(&format!("{}-{name}", self.tag))?;
        sh(&ns, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1")?;
        let mut attachments = Vec::new();
        for (n, (vni, ip)) in nets.iter().enumerate() {
            let net = *self
                .networks
                .iter()
                .find(|net| net.vni == *vni)
                .ok_or_else(|| SimError::Invalid(format!("unknown network {vni}")))?;
            let ifname = format!("eth{n}");
            let host_ifname = netns::unique_name("vh");
            let h = &self.hosts[host];
            h.ns.run(|| {
                netns::add_veth(
                    netns::VethEnd {
                        name: &host_ifname,
                        netns: None,
                        mtu: Some(CONTAINER_MTU),
                    },
                    netns::VethEnd {
                        name: &ifname,
                        netns: Some(ns.name()),
                        mtu: Some(CONTAINER_MTU),
                    },
                )
            })??;
            sh(&h.ns, &format!("ip link set {host_ifname} up"))?;
            if h.kind == HostKind::Kernel {
                sh(&h.ns, &format!("ip link set {host_ifname} master br{vni}"))?;
            }
            let mac = MacAddr::from_ipv4(*ip);
            sh(&ns, &format!("ip link set {ifname} address {mac}"))?;
            sh(
                &ns,
                &format!("ip addr add {ip}/{} dev {ifname}", net.subnet.prefix_len()),
            )?;
            sh(&ns, &format!("ip link set {ifname} up"))?;
            ns.run(|| netns::enable_gro(&ifname))??;
            if n == 0
                && let Some(gw) = net.gateway
            {
                sh(&ns, &format!("ip route add default via {gw} dev {ifname}"))?;
            }
            let host_ifindex = h.ns.ifindex(&host_ifname)?;
            let host_mac = h.ns.mac(&host_ifname)?;
            attachments.push(Attachment {
                vni: *vni,
                ip: *ip,
                mac,
                ifname,
                host_ifname,
                host_ifindex,
            });
            self.program_endpoint(host, attachments.last().expect("just pushed"), host_mac)?;
        }
        self.containers.push(Container {
            ns,
            host,
            attachments,
        });
        Ok(self.containers.len() - 1)
    }

    fn program_endpoint(
        &mut self,
        host: usize,
        att: &Attachment,
        host_mac: MacAddr,
    ) -> Result<(), SimError> {
        let owner_ip = self.hosts[host].underlay_ip;
        for (i, h) in self.hosts.iter_mut().enumerate() {
            if h.kind == HostKind::Redirect {
                if i == host {
                    let nic = h.ns.ifindex("eth0")?;
                    let ebpf = h.redirect.as_mut().expect("redirect hosts load it");
                    h.ns.run(|| attach_redirect(ebpf, att.host_ifindex))??;
                    set_redirect(ebpf, att.host_ifindex, nic, 0)?;
                    set_redirect(ebpf, nic, att.host_ifindex, overlay_common::REDIRECT_PEER)?;
                }
                continue;
            }
            let Some(dp) = h.dataplane.as_mut() else {
                if i != host {
                    // Static entries, as Docker's overlay driver installs them.
                    let (vni, mac, ip) = (att.vni, att.mac, att.ip);
                    sh(
                        &h.ns,
                        &format!("bridge fdb add {mac} dev vx{vni} dst {owner_ip} self permanent"),
                    )?;
                    sh(
                        &h.ns,
                        &format!("ip neigh add {ip} lladdr {mac} dev vx{vni} nud permanent"),
                    )?;
                }
                continue;
            };
            if i == host {
                dp.add_local_endpoint(&LocalEndpoint {
                    vni: att.vni,
                    ip: att.ip,
                    mac: att.mac,
                    host_ifindex: att.host_ifindex,
                    host_mac,
                })?;
                h.ns.run(|| dp.attach_endpoint(att.host_ifindex))??;
            } else {
                dp.add_remote_endpoint(&RemoteEndpoint {
                    vni: att.vni,
                    ip: att.ip,
                    mac: att.mac,
                    host: owner_ip,
                })?;
            }
        }
        Ok(())
    }

    /// (program, runs, time) of every program this lab's hosts run:
    /// dataplane programs and limit (a) redirect programs, host by host.
    pub fn program_run_stats(&self) -> Result<Vec<(String, u64, Duration)>, SimError> {
        let mut out = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            if let Some(dp) = &h.dataplane {
                for (name, runs, time) in dp.program_run_stats()? {
                    out.push((format!("h{}/{name}", i + 1), runs, time));
                }
            }
            if let Some(ebpf) = &h.redirect {
                let name = overlay_common::benchkit::REDIRECT_TC;
                let info = ebpf
                    .program(name)
                    .ok_or_else(|| SimError::Harness(format!("{name} missing")))?
                    .info()
                    .map_err(|e| SimError::Harness(e.to_string()))?;
                out.push((
                    format!("h{}/{name}", i + 1),
                    info.run_count(),
                    info.run_time(),
                ));
            }
        }
        Ok(out)
    }

    /// The underlay switch's namespace.
    pub fn switch(&self) -> &NetNs {
        self.switch.as_ref().expect("present until drop")
    }

    /// Runs a command in container `c`.
    pub fn exec(&self, c: usize, argv: &[&str]) -> Result<std::process::Output, NetnsError> {
        self.containers[c].ns.exec(argv)
    }

    /// True when `count` pings from container `from` to `to` all succeed.
    pub fn ping(&self, from: usize, to: Ipv4Addr, count: u32) -> bool {
        self.exec(
            from,
            &[
                "ping",
                "-q",
                "-c",
                &count.to_string(),
                "-i",
                "0.05",
                "-W",
                "1",
                &to.to_string(),
            ],
        )
        .is_ok()
    }

    /// True when a single ping gets no answer within `wait_s` seconds.
    pub fn ping_fails(&self, from: usize, to: Ipv4Addr, wait_s: u32) -> bool {
        self.exec(
            from,
            &[
                "ping",
                "-q",
                "-c",
                "1",
                "-W",
                &wait_s.to_string(),
                &to.to_string(),
            ],
        )
        .is_err()
    }
}

/// A namespace for BPF_PROG_RUN: an underlay `ul0` (10.99.0.1/24, IPv4
/// forwarding on so `bpf_fib_lookup` answers) with a permanent neighbour
/// 10.99.0.2 at [`ProgRunHost::NEIGH_MAC`], a route to 10.98.0.0/16 via
/// 10.99.0.254 that has no neighbour entry, and veths `ep1`..`ep3` that
/// stand in for endpoint host sides (no dummy driver in this kernel).
pub struct ProgRunHost {
    pub ns: NetNs,
    pub underlay_mac: MacAddr,
    ifindex: std::collections::HashMap<String, u32>,
}

impl ProgRunHost {
    pub const UNDERLAY_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    pub const NEIGH_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
    pub const NEIGH_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x02];
    pub const ENDPOINT_DEVS: [&str; 3] = ["ep1", "ep2", "ep3"];

    pub fn new() -> Result<Self, SimError> {
        let ns = NetNs::new(&netns::unique_name("ovlpr"))?;
        for cmd in [
            "ip link add ul0 type veth peer name ul0p",
            "ip link set ul0p up",
            "ip link set ul0 up",
            "sysctl -qw net.ipv4.conf.ul0.forwarding=1",
            "ip addr add 10.99.0.1/24 dev ul0",
            "ip neigh replace 10.99.0.2 lladdr 02:00:00:00:99:02 dev ul0 nud permanent",
            "ip route add 10.98.0.0/16 via 10.99.0.254 dev ul0",
        ] {
            sh(&ns, cmd)?;
        }
        let mut ifindex = std::collections::HashMap::new();
        for dev in Self::ENDPOINT_DEVS {
            sh(
                &ns,
                &format!("ip link add {dev} type veth peer name {dev}p"),
            )?;
            sh(&ns, &format!("ip link set {dev} up"))?;
        }
        for dev in ["ul0"].into_iter().chain(Self::ENDPOINT_DEVS) {
            ifindex.insert(dev.to_owned(), ns.ifindex(dev)?);
        }
        let underlay_mac = ns.mac("ul0")?;
        Ok(Self {
            ns,
            underlay_mac,
            ifindex,
        })
    }

    /// ifindex of `ul0` or `ep1`..`ep3`.
    pub fn ifindex(&self, dev: &str) -> u32 {
        self.ifindex.get(dev).copied().unwrap_or(0)
    }

    /// A 44-byte `__sk_buff` prefix whose `ifindex` (offset 40) names
    /// `dev`: BPF_PROG_RUN then runs a TC program as if on that device.
    pub fn skb_ctx(&self, dev: &str) -> [u8; 44] {
        let mut ctx = [0u8; 44];
        ctx[40..44].copy_from_slice(&self.ifindex(dev).to_ne_bytes());
        ctx
    }
}
