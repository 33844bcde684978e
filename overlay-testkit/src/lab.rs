//! Simulated hosts and containers in network namespaces: the topology the
//! demo, the integration tests and the benchmarks run on.
//!
//! Every host is a namespace whose `eth0` is a port of the underlay switch
//! (a bridge in a namespace of its own, MTU 1500). A host of this project
//! ([`HostKind::Ebpf`]) has its own state directory and pins and is driven
//! through the product's engine, exactly as the CLI drives it: attach,
//! overlay networks, static peers and remote endpoints, containers
//! connected by `Engine::connect`. A kernel host is wired the way Docker's
//! overlay driver does it; a bare host has only the veths. Everything is
//! removed on drop.
//!
//! A veth "wire" differs from a real one: it hands the next namespace
//! checksum-partial GSO super-packets. TC decap keeps that skb state intact,
//! so TC labs leave the offloads on. XDP sees no skb metadata, so XDP labs
//! turn TX checksum offload off on the host ends, and the sending kernel
//! completes checksums and segments in software as NIC hardware would.

use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use ipnet::Ipv4Net;
use overlay_user::{
    api::error_chain,
    dataplane::{Dataplane, Network},
    engine::{CreateNetwork, Engine, EngineError, Paths, transaction},
    host::{ethtool, link::VethEnd, netlink::Netlink},
    model::{AttachedMode, DecapRequest, Driver, MacAddr, rules},
};

use crate::{
    LabError,
    netns::{NetNs, unique_name},
};

/// The underlay subnet the simulated hosts share.
pub const UNDERLAY_PREFIX: &str = "10.100.0";
/// Container interface MTU: underlay 1500 minus VXLAN overhead.
pub const CONTAINER_MTU: u32 = overlay_common::DEFAULT_OVERLAY_MTU;

/// How a simulated host forwards overlay traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// This project's dataplane with the given decap mode.
    Ebpf(DecapRequest),
    /// The kernel's own path, the way Docker's overlay driver builds it: per
    /// network a vxlan device (`nolearning proxy`) enslaved to a bridge,
    /// static FDB and neighbour entries for remote endpoints.
    Kernel,
    /// Nothing forwards: the host's underlay NIC and its containers' veths
    /// only (for a benchmark to attach its own programs to).
    Bare,
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
    /// Where an eBPF host keeps its state and pins.
    pub paths: Option<Paths>,
    /// An eBPF host's maps, opened for reading (counters, state).
    pub dataplane: Option<Dataplane>,
    pub decap: Option<AttachedMode>,
}

impl Host {
    /// The dataplane of an eBPF host.
    pub fn dp(&self) -> &Dataplane {
        self.dataplane.as_ref().expect("not an eBPF host")
    }

    /// Runs one engine command on this host, in its namespace, as the CLI
    /// would: committed, or undone on failure.
    pub fn engine<T: Send>(
        &self,
        f: impl FnOnce(&mut Engine) -> Result<T, EngineError> + Send,
    ) -> Result<T, LabError> {
        let paths = self
            .paths
            .clone()
            .ok_or_else(|| LabError::Invalid("not an eBPF host".into()))?;
        self.ns
            .run(move || transaction(&paths, f).map_err(|e| LabError::Engine(error_chain(&e))))?
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(paths) = &self.paths {
            self.dataplane = None;
            let _ = Dataplane::destroy(&paths.pin_dir);
            let _ = std::fs::remove_dir_all(&paths.state_dir);
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

/// The engine's name for the lab network with VNI `vni`.
fn net_name(vni: u32) -> String {
    format!("n{vni}")
}

impl Lab {
    /// Two hosts on the underlay switch, each running this dataplane with
    /// decap `mode`.
    pub fn two_hosts(mode: DecapRequest) -> Result<Self, LabError> {
        Self::new(&[HostKind::Ebpf(mode), HostKind::Ebpf(mode)])
    }

    /// Hosts of the given kinds on one underlay switch (10.100.0.1, .2, ...).
    /// The underlay behaves like a real wire ([`UnderlayKind::Wire`]) when
    /// any host asks for XDP decap, which needs it; `auto` and TC hosts get
    /// veth defaults (offloads on), as shipped.
    pub fn new(kinds: &[HostKind]) -> Result<Self, LabError> {
        let xdp = kinds.iter().any(|k| {
            matches!(
                k,
                HostKind::Ebpf(
                    DecapRequest::Xdp | DecapRequest::XdpNative | DecapRequest::XdpGeneric
                )
            )
        });
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
    pub fn with_underlay(kinds: &[HostKind], underlay: UnderlayKind) -> Result<Self, LabError> {
        if !(2..=200).contains(&kinds.len()) {
            return Err(LabError::Invalid("a lab has 2 to 200 hosts".into()));
        }
        let tag = unique_name("ovl");
        let switch = NetNs::new(&format!("{tag}-sw"))?;
        // No IPv6 chatter (router solicitations, MLD) on the underlay.
        switch.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1")?;
        switch.sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1")?;
        switch.sh("ip link add br0 type bridge")?;
        switch.sh("ip link set br0 up")?;
        let mut lab = Self {
            containers: Vec::new(),
            hosts: Vec::new(),
            networks: Vec::new(),
            switch: Some(switch),
            tag: tag.clone(),
        };
        for (i, kind) in kinds.iter().enumerate() {
            let ns = NetNs::new(&format!("{tag}-h{}", i + 1))?;
            ns.sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1")?;
            let sw = lab.switch.as_ref().expect("set above");
            let port = format!("p{}", i + 1);
            Netlink::open()?.add_veth(
                VethEnd {
                    name: "eth0",
                    netns: Some(ns.name()),
                    mtu: None,
                },
                VethEnd {
                    name: &port,
                    netns: Some(sw.name()),
                    mtu: None,
                },
            )?;
            sw.sh(&format!("ip link set {port} master br0"))?;
            sw.sh(&format!("ip link set {port} up"))?;
            let ip = Ipv4Addr::new(10, 100, 0, i as u8 + 1);
            ns.sh(&format!("ip addr add {ip}/24 dev eth0"))?;
            ns.sh("ip link set eth0 up")?;
            ns.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1")?;
            if underlay == UnderlayKind::Wire {
                ns.run(|| ethtool::disable_tx_checksum_offload("eth0"))??;
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
    ) -> Result<Host, LabError> {
        let mut host = Host {
            ns,
            underlay_ip,
            kind,
            paths: None,
            dataplane: None,
            decap: None,
        };
        if let HostKind::Ebpf(mode) = kind {
            // Set before anything is made: the drop guard removes the pins
            // and state even when a later step fails.
            host.paths = Some(Paths {
                state_dir: std::env::temp_dir().join(format!("{tag}-h{}", i + 1)),
                pin_dir: PathBuf::from(format!("/sys/fs/bpf/{tag}-h{}", i + 1)),
            });
            let attached = host.engine(move |e| e.attach("eth0", Some(underlay_ip), mode))?;
            host.decap = Some(attached.mode);
            host.dataplane = Some(Dataplane::load(
                &host.paths.as_ref().expect("set above").pin_dir,
            )?);
        }
        Ok(host)
    }

    /// Adds an overlay network on every host and lets every host send it to
    /// every other.
    pub fn add_network(&mut self, vni: u32, subnet: &str) -> Result<Network, LabError> {
        let subnet: Ipv4Net = subnet
            .parse()
            .map_err(|e| LabError::Invalid(format!("subnet {subnet}: {e}")))?;
        let net = Network {
            vni,
            subnet,
            gateway: rules::default_gateway(subnet),
            internal: false,
        };
        let ips: Vec<Ipv4Addr> = self.hosts.iter().map(|h| h.underlay_ip).collect();
        for host in &self.hosts {
            match host.kind {
                HostKind::Bare => {}
                HostKind::Kernel => {
                    let ul = host.underlay_ip;
                    host.ns.sh(&format!(
                        "ip link add vx{vni} type vxlan id {vni} local {ul} dstport 4789 dev eth0 nolearning proxy"
                    ))?;
                    host.ns.sh(&format!("ip link add br{vni} type bridge"))?;
                    host.ns.sh(&format!("ip link set vx{vni} master br{vni}"))?;
                    host.ns.sh(&format!("ip link set vx{vni} up"))?;
                    host.ns.sh(&format!("ip link set br{vni} up"))?;
                }
                HostKind::Ebpf(_) => {
                    let peers: Vec<Ipv4Addr> = ips
                        .iter()
                        .copied()
                        .filter(|ip| *ip != host.underlay_ip)
                        .collect();
                    host.engine(move |e| {
                        e.create_network(&CreateNetwork {
                            name: net_name(vni),
                            driver: Some(Driver::Overlay),
                            subnets: vec![subnet],
                            vni: Some(vni),
                            ..CreateNetwork::default()
                        })?;
                        for peer in peers {
                            e.add_peer(peer, &net_name(vni))?;
                        }
                        Ok(())
                    })?;
                }
            }
        }
        self.networks.push(net);
        Ok(net)
    }

    /// A container on host `host` with one interface per `(vni, ip)`; the
    /// first network gets the default route. Every other host learns its
    /// addresses (static remote endpoints, or the kernel's FDB).
    pub fn add_container(
        &mut self,
        host: usize,
        name: &str,
        nets: &[(u32, Ipv4Addr)],
    ) -> Result<usize, LabError> {
        for (vni, _) in nets {
            if !self.networks.iter().any(|n| n.vni == *vni) {
                return Err(LabError::Invalid(format!("unknown network {vni}")));
            }
        }
        let full = format!("{}-{name}", self.tag);
        let attachments = match self.hosts[host].kind {
            HostKind::Ebpf(_) => self.connect_ebpf(host, &full, nets)?,
            HostKind::Kernel | HostKind::Bare => self.connect_plain(host, &full, nets)?,
        };
        let ns = NetNs::adopt(&full);
        for att in &attachments {
            self.teach_others(host, att)?;
        }
        self.containers.push(Container {
            ns,
            host,
            attachments,
        });
        Ok(self.containers.len() - 1)
    }

    /// The product's path: `run` with the addresses given.
    fn connect_ebpf(
        &self,
        host: usize,
        name: &str,
        nets: &[(u32, Ipv4Addr)],
    ) -> Result<Vec<Attachment>, LabError> {
        let h = &self.hosts[host];
        let wanted: Vec<(String, Option<Ipv4Addr>)> = nets
            .iter()
            .map(|(vni, ip)| (net_name(*vni), Some(*ip)))
            .collect();
        let owned = name.to_owned();
        // On failure the engine has undone what it made.
        let record = h.engine(move |e| e.create_container(Some(&owned), &wanted, &[]))?;
        nets.iter()
            .zip(&record.endpoints)
            .map(|((vni, _), ep)| {
                Ok(Attachment {
                    vni: *vni,
                    ip: ep.ip,
                    mac: ep.mac,
                    ifname: ep.ifname.clone(),
                    host_ifname: ep.host_ifname.clone(),
                    host_ifindex: h.ns.ifindex(&ep.host_ifname)?,
                })
            })
            .collect()
    }

    /// Veths by hand, for hosts that do not run this project.
    fn connect_plain(
        &self,
        host: usize,
        name: &str,
        nets: &[(u32, Ipv4Addr)],
    ) -> Result<Vec<Attachment>, LabError> {
        let h = &self.hosts[host];
        let ns = NetNs::new(name)?;
        ns.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1")?;
        let mut attachments = Vec::new();
        for (n, (vni, ip)) in nets.iter().enumerate() {
            let net = *self
                .networks
                .iter()
                .find(|net| net.vni == *vni)
                .expect("checked by add_container");
            let ifname = format!("eth{n}");
            let host_ifname = unique_name("vh");
            Netlink::open()?.add_veth(
                VethEnd {
                    name: &host_ifname,
                    netns: Some(h.ns.name()),
                    mtu: Some(CONTAINER_MTU),
                },
                VethEnd {
                    name: &ifname,
                    netns: Some(ns.name()),
                    mtu: Some(CONTAINER_MTU),
                },
            )?;
            h.ns.sh(&format!("ip link set {host_ifname} up"))?;
            if h.kind == HostKind::Kernel {
                h.ns.sh(&format!("ip link set {host_ifname} master br{vni}"))?;
            }
            let mac = MacAddr::from_ipv4(*ip);
            ns.sh(&format!("ip link set {ifname} address {mac}"))?;
            ns.sh(&format!(
                "ip addr add {ip}/{} dev {ifname}",
                net.subnet.prefix_len()
            ))?;
            ns.sh(&format!("ip link set {ifname} up"))?;
            ns.run(|| ethtool::enable_gro(&ifname))??;
            if n == 0
                && let Some(gw) = net.gateway
            {
                ns.sh(&format!("ip route add default via {gw} dev {ifname}"))?;
            }
            attachments.push(Attachment {
                vni: *vni,
                ip: *ip,
                mac,
                ifname,
                host_ifindex: h.ns.ifindex(&host_ifname)?,
                host_ifname,
            });
        }
        // The container's namespace is handed to the caller's guard.
        std::mem::forget(ns);
        Ok(attachments)
    }

    /// Every other host learns an endpoint of host `owner`.
    fn teach_others(&self, owner: usize, att: &Attachment) -> Result<(), LabError> {
        let owner_ip = self.hosts[owner].underlay_ip;
        for (i, h) in self.hosts.iter().enumerate() {
            if i == owner {
                continue;
            }
            let (vni, mac, ip) = (att.vni, att.mac, att.ip);
            match h.kind {
                HostKind::Bare => {}
                // Static entries, as Docker's overlay driver installs them.
                HostKind::Kernel => {
                    h.ns.sh(&format!(
                        "bridge fdb add {mac} dev vx{vni} dst {owner_ip} self permanent"
                    ))?;
                    h.ns.sh(&format!(
                        "ip neigh add {ip} lladdr {mac} dev vx{vni} nud permanent"
                    ))?;
                }
                HostKind::Ebpf(_) => {
                    h.engine(move |e| e.add_remote(&net_name(vni), ip, Some(mac), owner_ip))?;
                }
            }
        }
        Ok(())
    }

    /// (program, runs, time) of every dataplane program this lab's hosts
    /// run, host by host.
    pub fn program_run_stats(&self) -> Result<Vec<(String, u64, Duration)>, LabError> {
        let mut out = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            if let Some(dp) = &h.dataplane {
                for (name, runs, time) in dp.program_run_stats()? {
                    out.push((format!("h{}/{name}", i + 1), runs, time));
                }
            }
        }
        Ok(out)
    }

    /// The underlay switch's namespace.
    pub fn switch(&self) -> &NetNs {
        self.switch.as_ref().expect("present until drop")
    }

    /// Runs a command in container `c`.
    pub fn exec(&self, c: usize, argv: &[&str]) -> Result<std::process::Output, LabError> {
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
