//! The typed, validating front of the kernel maps and programs.

use std::{
    collections::BTreeMap,
    fs,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader, include_bytes_aligned,
    maps::{
        Array, HashMap, LpmTrie, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues, lpm_trie::Key,
    },
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
    },
    util::nr_cpus,
};
use ipnet::Ipv4Net;
use overlay_common::{
    CONFIG_FLAG_READY, Config, Counter, CounterValue, DropReason, EndpointInfo,
    NETWORK_FLAG_INTERNAL, NetworkInfo, NextHop, PeerKey, PeerValue, ROUTE_LOCAL, ROUTE_REMOTE,
    RouteKey, RouteValue, VNI_MAX, VXLAN_PORT, maps::names, programs,
};

use crate::{DataplaneError, MacAddr, bpffs};

/// The eBPF object built by `build.rs` (aya-build) for this binary.
pub static EBPF_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/overlay"));

/// A network this host serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    pub vni: u32,
    pub subnet: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// No gateway path: nothing outside the subnet is reachable.
    pub internal: bool,
}

/// An endpoint (container interface) on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalEndpoint {
    pub vni: u32,
    pub ip: Ipv4Addr,
    /// MAC of the container-side interface.
    pub mac: MacAddr,
    /// ifindex of the host-side veth (in the host's namespace).
    pub host_ifindex: u32,
    /// MAC of the host-side veth (answers ARP for the gateway).
    pub host_mac: MacAddr,
}

/// An endpoint on another host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteEndpoint {
    pub vni: u32,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// Underlay address of the host that owns it.
    pub host: Ipv4Addr,
}

/// This host's underlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Underlay {
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    pub vxlan_port: u16,
    /// Outer UDP source port range (inclusive), for ECMP entropy.
    pub src_ports: (u16, u16),
}

impl Underlay {
    /// The kernel's defaults: port 4789, sources from the local port range.
    pub const fn new(ifindex: u32, ip: Ipv4Addr) -> Self {
        Self {
            ifindex,
            ip,
            vxlan_port: VXLAN_PORT,
            src_ports: (32768, 60999),
        }
    }
}

/// How the underlay NIC decapsulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapMode {
    /// XDP, native if the driver has it, else generic (skb) mode.
    Xdp,
    /// XDP in native (driver) mode only: an error where the driver lacks it.
    XdpNative,
    /// XDP in generic (skb) mode only.
    XdpGeneric,
    /// TC (tcx ingress).
    Tc,
}

/// What an attach ended up using.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    XdpNative,
    XdpGeneric,
    Tcx,
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::XdpNative => "xdp (native)",
            Self::XdpGeneric => "xdp (generic)",
            Self::Tcx => "tc (tcx ingress)",
        })
    }
}

/// Counter totals over all CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub outcomes: BTreeMap<&'static str, CounterValue>,
    pub drops: BTreeMap<&'static str, CounterValue>,
}

impl Counters {
    pub fn outcome(&self, c: Counter) -> CounterValue {
        self.outcomes.get(c.name()).copied().unwrap_or_default()
    }

    pub fn drop(&self, r: DropReason) -> CounterValue {
        self.drops.get(r.name()).copied().unwrap_or_default()
    }

    /// Per-slot difference `self - earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        let diff = |now: &BTreeMap<&'static str, CounterValue>,
                    then: &BTreeMap<&'static str, CounterValue>| {
            now.iter()
                .map(|(k, v)| {
                    let t = then.get(k).copied().unwrap_or_default();
                    (
                        *k,
                        CounterValue {
                            packets: v.packets - t.packets,
                            bytes: v.bytes - t.bytes,
                        },
                    )
                })
                .collect()
        };
        Self {
            outcomes: diff(&self.outcomes, &earlier.outcomes),
            drops: diff(&self.drops, &earlier.drops),
        }
    }
}

/// Every map entry except counters, sorted: what the dataplane is
/// programmed with. Equal snapshots mean nothing was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub config: Option<Config>,
    pub networks: Vec<(u32, NetworkInfo)>,
    /// (prefix length, address in network order) -> VNI.
    pub subnets: Vec<((u32, u32), u32)>,
    pub endpoints: Vec<(u32, EndpointInfo)>,
    pub routes: Vec<(RouteKey, RouteValue)>,
    pub peers: Vec<PeerKey>,
}

/// Loaded programs plus typed handles on every (pinned) map.
pub struct Dataplane {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    endpoints: HashMap<MapData, u32, EndpointInfo>,
    routes: HashMap<MapData, RouteKey, RouteValue>,
    peers: HashMap<MapData, PeerKey, PeerValue>,
    networks: HashMap<MapData, u32, NetworkInfo>,
    subnets: LpmTrie<MapData, u32, u32>,
    config: Array<MapData, Config>,
    counters: PerCpuArray<MapData, CounterValue>,
    net_counters: PerCpuHashMap<MapData, u32, overlay_common::NetCounters>,
    nexthops: HashMap<MapData, u32, NextHop>,
}

/// A lookup or delete of an absent key: aya reports lookups as
/// `KeyNotFound` and deletes as the syscall's ENOENT.
fn not_found(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(e) => e.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn take_map(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, DataplaneError> {
    ebpf.take_map(name).ok_or(DataplaneError::MissingMap(name))
}

fn v4(ip: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(ip))
}

fn be(ip: Ipv4Addr) -> u32 {
    u32::from(ip).to_be()
}

fn check_vni(vni: u32) -> Result<(), DataplaneError> {
    if vni == 0 || vni > VNI_MAX {
        return Err(DataplaneError::InvalidVni(vni));
    }
    Ok(())
}

fn check_mac(mac: MacAddr) -> Result<(), DataplaneError> {
    if !mac.is_valid_unicast() {
        return Err(DataplaneError::InvalidMac(mac));
    }
    Ok(())
}

fn check_host(ip: Ipv4Addr) -> Result<(), DataplaneError> {
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() {
        return Err(DataplaneError::InvalidHostAddress(ip));
    }
    Ok(())
}

/// A host address of `subnet` (neither the network nor the broadcast one).
fn is_host_of(subnet: Ipv4Net, ip: Ipv4Addr) -> bool {
    subnet.contains(&ip) && ip != subnet.network() && ip != subnet.broadcast()
}

impl Dataplane {
    /// Loads the programs and opens the maps pinned under `pin_dir`
    /// (creating them on first use). Pinned state from an earlier load is
    /// reused, so this also reopens a running dataplane.
    pub fn load(pin_dir: impl AsRef<Path>) -> Result<Self, DataplaneError> {
        crate::features::check_kernel()?;
        let pin_dir = pin_dir.as_ref().to_path_buf();
        let map_dir = pin_dir.join("maps");
        bpffs::ensure_dir(&pin_dir)?;
        bpffs::ensure_dir(&map_dir)?;
        fs::create_dir_all(pin_dir.join("links")).map_err(|source| DataplaneError::Io {
            op: "create",
            path: pin_dir.join("links"),
            source,
        })?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&map_dir)
            .load(EBPF_OBJECT)
            .map_err(DataplaneError::Load)?;
        for name in [programs::ENDPOINT_INGRESS, programs::UNDERLAY_TC] {
            let prog: &mut SchedClassifier = program(&mut ebpf, name)?;
            prog.load().map_err(|source| DataplaneError::Program {
                op: "loading",
                name,
                source,
            })?;
        }
        let xdp: &mut Xdp = program(&mut ebpf, programs::UNDERLAY_XDP)?;
        xdp.load().map_err(|source| DataplaneError::Program {
            op: "loading",
            name: programs::UNDERLAY_XDP,
            source,
        })?;

        let conv = |name: &'static str| {
            move |source| DataplaneError::Map {
                op: format!("opening map {name}"),
                source,
            }
        };
        let endpoints = HashMap::try_from(take_map(&mut ebpf, names::ENDPOINTS)?)
            .map_err(conv(names::ENDPOINTS))?;
        let routes =
            HashMap::try_from(take_map(&mut ebpf, names::ROUTES)?).map_err(conv(names::ROUTES))?;
        let peers =
            HashMap::try_from(take_map(&mut ebpf, names::PEERS)?).map_err(conv(names::PEERS))?;
        let networks = HashMap::try_from(take_map(&mut ebpf, names::NETWORKS)?)
            .map_err(conv(names::NETWORKS))?;
        let subnets = LpmTrie::try_from(take_map(&mut ebpf, names::SUBNETS)?)
            .map_err(conv(names::SUBNETS))?;
        let config =
            Array::try_from(take_map(&mut ebpf, names::CONFIG)?).map_err(conv(names::CONFIG))?;
        let counters = PerCpuArray::try_from(take_map(&mut ebpf, names::COUNTERS)?)
            .map_err(conv(names::COUNTERS))?;
        let net_counters = PerCpuHashMap::try_from(take_map(&mut ebpf, names::NET_COUNTERS)?)
            .map_err(conv(names::NET_COUNTERS))?;
        let nexthops = HashMap::try_from(take_map(&mut ebpf, names::NEXTHOPS)?)
            .map_err(conv(names::NEXTHOPS))?;
        Ok(Self {
            ebpf,
            pin_dir,
            endpoints,
            routes,
            peers,
            networks,
            subnets,
            config,
            counters,
            net_counters,
            nexthops,
        })
    }

    /// Where maps (`maps/`) and links (`links/`) are pinned.
    pub fn pin_dir(&self) -> &Path {
        &self.pin_dir
    }

    /// Removes every pin under `pin_dir`: maps are freed and pinned links
    /// detach once no process holds them any more.
    pub fn destroy(pin_dir: impl AsRef<Path>) -> Result<(), DataplaneError> {
        bpffs::remove_dir(pin_dir.as_ref())
    }

    /// The loaded program `name`, for attaching or BPF_PROG_RUN tests.
    pub fn tc_program(
        &mut self,
        name: &'static str,
    ) -> Result<&mut SchedClassifier, DataplaneError> {
        program(&mut self.ebpf, name)
    }

    /// The loaded XDP program.
    pub fn xdp_program(&mut self) -> Result<&mut Xdp, DataplaneError> {
        program(&mut self.ebpf, programs::UNDERLAY_XDP)
    }

    // ---- underlay ----------------------------------------------------------

    /// Sets the host's underlay address and NIC; encap/decap start working.
    pub fn set_underlay(&mut self, underlay: &Underlay) -> Result<(), DataplaneError> {
        if underlay.ifindex == 0 {
            return Err(DataplaneError::InvalidIfindex);
        }
        check_host(underlay.ip)?;
        if underlay.vxlan_port == 0 {
            return Err(DataplaneError::InvalidUnderlay("VXLAN port 0"));
        }
        let (min, max) = underlay.src_ports;
        if min == 0 || min > max {
            return Err(DataplaneError::InvalidUnderlay(
                "source port range must be non-empty and start above 0",
            ));
        }
        let cfg = Config {
            underlay_ip: be(underlay.ip),
            underlay_ifindex: underlay.ifindex,
            vxlan_port: underlay.vxlan_port,
            src_port_min: min,
            src_port_max: max,
            _pad0: 0,
            flags: CONFIG_FLAG_READY,
        };
        self.config
            .set(0, &cfg, 0)
            .map_err(DataplaneError::map("writing the underlay config"))?;
        // Next hops found from the old NIC or address are void.
        self.flush_next_hops()
    }

    /// Detaches the decap program from `ifindex` and clears the underlay
    /// config: encap and decap stop (packets are then counted as not ready
    /// or passed). Absent pieces are fine.
    pub fn detach_underlay(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        unpin_link(&self.link_pin(&format!("underlay-{ifindex}")))?;
        self.config
            .set(0, &Config::default(), 0)
            .map_err(DataplaneError::map("clearing the underlay config"))?;
        self.flush_next_hops()
    }

    /// The encap path's cache of underlay next hops: (remote host, entry).
    /// Entries may be expired; the programs refresh them on use.
    pub fn next_hops(&self) -> Result<Vec<(Ipv4Addr, NextHop)>, DataplaneError> {
        let mut hops = self
            .nexthops
            .iter()
            .map(|r| r.map(|(ip, hop)| (v4(ip), hop)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(DataplaneError::map("reading the next-hop cache"))?;
        hops.sort_by_key(|(ip, _)| *ip);
        Ok(hops)
    }

    /// Empties the next-hop cache, so the next packet to each remote host
    /// asks the FIB again.
    pub fn flush_next_hops(&mut self) -> Result<(), DataplaneError> {
        let keys = self
            .nexthops
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(DataplaneError::map("reading the next-hop cache"))?;
        for key in keys {
            match self.nexthops.remove(&key) {
                // The programs may evict or replace it meanwhile.
                Err(e) if !not_found(&e) => {
                    return Err(DataplaneError::map("flushing the next-hop cache")(e));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The configured underlay, if any.
    pub fn underlay(&self) -> Result<Option<Underlay>, DataplaneError> {
        let cfg = self
            .config
            .get(&0, 0)
            .map_err(DataplaneError::map("reading the underlay config"))?;
        if cfg.flags & CONFIG_FLAG_READY == 0 {
            return Ok(None);
        }
        Ok(Some(Underlay {
            ifindex: cfg.underlay_ifindex,
            ip: v4(cfg.underlay_ip),
            vxlan_port: cfg.vxlan_port,
            src_ports: (cfg.src_port_min, cfg.src_port_max),
        }))
    }

    /// Attaches the decap program to the underlay NIC `ifindex` (in the
    /// calling thread's network namespace) and pins the link.
    ///
    /// Also enables IPv4 forwarding on that NIC: the kernel's
    /// `bpf_fib_lookup`, which picks the encap next hop, refuses to answer
    /// for a device that does not forward.
    pub fn attach_underlay(
        &mut self,
        ifindex: u32,
        mode: DecapMode,
    ) -> Result<AttachedMode, DataplaneError> {
        if ifindex == 0 {
            return Err(DataplaneError::InvalidIfindex);
        }
        crate::netns::ifname(ifindex)
            .and_then(|name| crate::netns::enable_ipv4_forwarding(&name))
            .map_err(|e| DataplaneError::Host(e.to_string()))?;
        let pin = self.link_pin(&format!("underlay-{ifindex}"));
        unpin_link(&pin)?;
        let (fd_link, attached) = match mode {
            DecapMode::Tc => (
                self.attach_tcx(programs::UNDERLAY_TC, ifindex)?,
                AttachedMode::Tcx,
            ),
            DecapMode::Xdp | DecapMode::XdpGeneric | DecapMode::XdpNative => {
                let xdp = self.xdp_program()?;
                let native = match mode {
                    DecapMode::Xdp => xdp.attach(ifindex, XdpMode::Driver).ok(),
                    DecapMode::XdpNative => {
                        Some(xdp.attach(ifindex, XdpMode::Driver).map_err(|_| {
                            DataplaneError::Unsupported {
                                feature: "native (driver) XDP",
                                on: crate::netns::ifname(ifindex)
                                    .unwrap_or_else(|_| ifindex.to_string()),
                                hint: "use --decap xdp (native where possible), xdp-generic or tc",
                            }
                        })?)
                    }
                    _ => None,
                };
                let (id, attached) = match native {
                    Some(id) => (id, AttachedMode::XdpNative),
                    None => (
                        xdp.attach(ifindex, XdpMode::Skb).map_err(|source| {
                            DataplaneError::Program {
                                op: "attaching",
                                name: programs::UNDERLAY_XDP,
                                source,
                            }
                        })?,
                        AttachedMode::XdpGeneric,
                    ),
                };
                let link = xdp
                    .take_link(id)
                    .map_err(|source| DataplaneError::Program {
                        op: "taking the link of",
                        name: programs::UNDERLAY_XDP,
                        source,
                    })?;
                let fd_link = FdLink::try_from(link).map_err(|source| DataplaneError::Link {
                    op: "xdp as bpf_link".into(),
                    source,
                })?;
                (fd_link, attached)
            }
        };
        fd_link
            .pin(&pin)
            .map_err(|source| DataplaneError::Pin { path: pin, source })?;
        Ok(attached)
    }

    /// Attaches the endpoint program at tcx ingress of the host-side veth
    /// `ifindex` (calling thread's namespace) and pins the link.
    pub fn attach_endpoint(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        if ifindex == 0 {
            return Err(DataplaneError::InvalidIfindex);
        }
        let pin = self.link_pin(&format!("endpoint-{ifindex}"));
        unpin_link(&pin)?;
        let fd_link = self.attach_tcx(programs::ENDPOINT_INGRESS, ifindex)?;
        fd_link
            .pin(&pin)
            .map_err(|source| DataplaneError::Pin { path: pin, source })?;
        Ok(())
    }

    /// Detaches the endpoint program from `ifindex` (a no-op if absent).
    pub fn detach_endpoint(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        unpin_link(&self.link_pin(&format!("endpoint-{ifindex}")))
    }

    fn link_pin(&self, name: &str) -> PathBuf {
        self.pin_dir.join("links").join(name)
    }

    fn attach_tcx(&mut self, name: &'static str, ifindex: u32) -> Result<FdLink, DataplaneError> {
        let prog: &mut SchedClassifier = program(&mut self.ebpf, name)?;
        let id = prog
            .attach(ifindex, TcAttachType::Ingress)
            .map_err(|source| DataplaneError::Program {
                op: "attaching",
                name,
                source,
            })?;
        let link = prog
            .take_link(id)
            .map_err(|source| DataplaneError::Program {
                op: "taking the link of",
                name,
                source,
            })?;
        FdLink::try_from(link).map_err(|source| DataplaneError::Link {
            op: format!("{name} as bpf_link"),
            source,
        })
    }

    // ---- networks ----------------------------------------------------------

    /// Adds a network. Fails without writing if the VNI is taken or the
    /// subnet overlaps another network.
    pub fn add_network(&mut self, net: &Network) -> Result<(), DataplaneError> {
        check_vni(net.vni)?;
        let subnet = net.subnet;
        if subnet.prefix_len() > 30 {
            return Err(DataplaneError::InvalidSubnet {
                subnet,
                why: "prefix longer than /30 leaves no room for endpoints",
            });
        }
        if subnet.network() != subnet.addr() {
            return Err(DataplaneError::InvalidSubnet {
                subnet,
                why: "host bits are set (use the network address)",
            });
        }
        if let Some(gw) = net.gateway
            && !is_host_of(subnet, gw)
        {
            return Err(DataplaneError::GatewayOutsideSubnet {
                gateway: gw,
                subnet,
            });
        }
        for (vni, other) in self.networks()? {
            if vni == net.vni {
                return Err(DataplaneError::NetworkExists(vni));
            }
            if other.subnet.contains(&subnet.network()) || subnet.contains(&other.subnet.network())
            {
                return Err(DataplaneError::SubnetOverlap {
                    subnet,
                    other: other.subnet,
                    other_vni: vni,
                });
            }
        }
        let info = NetworkInfo {
            subnet: be(subnet.network()),
            mask: be(subnet.netmask()),
            gateway: net.gateway.map_or(0, be),
            flags: if net.internal {
                NETWORK_FLAG_INTERNAL
            } else {
                0
            },
        };
        let key = Key::new(u32::from(subnet.prefix_len()), be(subnet.network()));
        self.subnets
            .insert(&key, &net.vni, 0)
            .map_err(DataplaneError::map(format!("adding subnet {subnet}")))?;
        if let Err(e) = self.networks.insert(&net.vni, &info, 0) {
            // Keep the two maps consistent: undo the subnet.
            let _ = self.subnets.remove(&key);
            return Err(DataplaneError::map(format!("adding network {}", net.vni))(
                e,
            ));
        }
        // Counting for this network starts from zero.
        let cpus = nr_cpus().map_err(|(_, source)| DataplaneError::Io {
            op: "count CPUs",
            path: "/sys/devices/system/cpu/possible".into(),
            source,
        })?;
        let zero = PerCpuValues::try_from(vec![
            overlay_common::NetCounters::default();
            cpus.get() as usize
        ])
        .map_err(|source| DataplaneError::Io {
            op: "size per-CPU counters",
            path: "/sys/devices/system/cpu/possible".into(),
            source,
        })?;
        self.net_counters
            .insert(&net.vni, zero, 0)
            .map_err(DataplaneError::map(format!(
                "adding counters of network {}",
                net.vni
            )))
    }

    /// Removes a network with its remote routes and peers. Refused while
    /// local endpoints are attached to it.
    pub fn remove_network(&mut self, vni: u32) -> Result<(), DataplaneError> {
        let net = self.network(vni)?;
        let routes: Vec<(RouteKey, RouteValue)> = self
            .routes
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| k.vni == vni)
            .collect();
        if routes.iter().any(|(_, v)| v.kind == ROUTE_LOCAL) {
            return Err(DataplaneError::NetworkInUse(vni));
        }
        for (key, _) in routes {
            self.routes
                .remove(&key)
                .map_err(DataplaneError::map("removing a route"))?;
        }
        let peers: Vec<PeerKey> = self
            .peers
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.vni == vni)
            .collect();
        for key in peers {
            self.peers
                .remove(&key)
                .map_err(DataplaneError::map("removing a peer"))?;
        }
        self.networks
            .remove(&vni)
            .map_err(DataplaneError::map(format!("removing network {vni}")))?;
        match self.net_counters.remove(&vni) {
            Ok(()) => {}
            // Pins from before per-network counters have no entry.
            Err(e) if not_found(&e) => {}
            Err(e) => {
                return Err(DataplaneError::map(format!("removing counters of {vni}"))(
                    e,
                ));
            }
        }
        let key = Key::new(u32::from(net.subnet.prefix_len()), be(net.subnet.network()));
        self.subnets
            .remove(&key)
            .map_err(DataplaneError::map(format!(
                "removing subnet {}",
                net.subnet
            )))
    }

    /// One network by VNI.
    pub fn network(&self, vni: u32) -> Result<Network, DataplaneError> {
        match self.networks.get(&vni, 0) {
            Ok(info) => Ok(network_from(vni, &info)),
            Err(e) if not_found(&e) => Err(DataplaneError::UnknownNetwork(vni)),
            Err(e) => Err(DataplaneError::map(format!("reading network {vni}"))(e)),
        }
    }

    /// All networks, by VNI.
    pub fn networks(&self) -> Result<Vec<(u32, Network)>, DataplaneError> {
        self.networks
            .iter()
            .map(|r| {
                r.map(|(vni, info)| (vni, network_from(vni, &info)))
                    .map_err(DataplaneError::map("listing networks"))
            })
            .collect()
    }

    // ---- endpoints ---------------------------------------------------------

    fn check_endpoint_address(&self, vni: u32, ip: Ipv4Addr) -> Result<Network, DataplaneError> {
        check_vni(vni)?;
        let net = self.network(vni)?;
        if !is_host_of(net.subnet, ip) || Some(ip) == net.gateway {
            return Err(DataplaneError::AddressOutsideSubnet {
                ip,
                subnet: net.subnet,
            });
        }
        Ok(net)
    }

    fn route(&self, vni: u32, ip: Ipv4Addr) -> Result<Option<RouteValue>, DataplaneError> {
        match self.routes.get(&RouteKey { vni, ip: be(ip) }, 0) {
            Ok(v) => Ok(Some(v)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(DataplaneError::map("reading a route")(e)),
        }
    }

    /// Adds an endpoint on this host (its veth must already exist).
    pub fn add_local_endpoint(&mut self, ep: &LocalEndpoint) -> Result<(), DataplaneError> {
        self.check_endpoint_address(ep.vni, ep.ip)?;
        check_mac(ep.mac)?;
        check_mac(ep.host_mac)?;
        if ep.host_ifindex == 0 {
            return Err(DataplaneError::InvalidIfindex);
        }
        if self.route(ep.vni, ep.ip)?.is_some() {
            return Err(DataplaneError::AddressInUse {
                ip: ep.ip,
                vni: ep.vni,
            });
        }
        if self.endpoints.get(&ep.host_ifindex, 0).is_ok() {
            return Err(DataplaneError::EndpointExists(ep.host_ifindex));
        }
        let key = RouteKey {
            vni: ep.vni,
            ip: be(ep.ip),
        };
        let route = RouteValue {
            kind: ROUTE_LOCAL,
            _pad0: 0,
            mac: ep.mac.0,
            ifindex: ep.host_ifindex,
            remote_ip: 0,
        };
        let info = EndpointInfo {
            vni: ep.vni,
            ip: be(ep.ip),
            mac: ep.mac.0,
            host_mac: ep.host_mac.0,
            flags: 0,
        };
        // The endpoint's own entry first: the route makes it reachable, and
        // whatever it sends back must find its entry.
        self.endpoints
            .insert(&ep.host_ifindex, &info, 0)
            .map_err(DataplaneError::map(format!("adding endpoint {}", ep.ip)))?;
        if let Err(e) = self.routes.insert(&key, &route, 0) {
            let _ = self.endpoints.remove(&ep.host_ifindex);
            return Err(DataplaneError::map(format!("adding route for {}", ep.ip))(
                e,
            ));
        }
        Ok(())
    }

    /// Removes the endpoint on host-side veth `host_ifindex`.
    pub fn remove_local_endpoint(&mut self, host_ifindex: u32) -> Result<(), DataplaneError> {
        let info = match self.endpoints.get(&host_ifindex, 0) {
            Ok(info) => info,
            Err(e) if not_found(&e) => {
                return Err(DataplaneError::UnknownEndpoint(host_ifindex));
            }
            Err(e) => return Err(DataplaneError::map("reading an endpoint")(e)),
        };
        self.endpoints
            .remove(&host_ifindex)
            .map_err(DataplaneError::map("removing an endpoint"))?;
        let key = RouteKey {
            vni: info.vni,
            ip: info.ip,
        };
        match self.routes.remove(&key) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(DataplaneError::map("removing an endpoint route")(e)),
        }
    }

    /// Adds (or moves) an endpoint that lives on another host.
    pub fn add_remote_endpoint(&mut self, ep: &RemoteEndpoint) -> Result<(), DataplaneError> {
        self.check_endpoint_address(ep.vni, ep.ip)?;
        check_mac(ep.mac)?;
        check_host(ep.host)?;
        if let Some(existing) = self.route(ep.vni, ep.ip)?
            && existing.kind == ROUTE_LOCAL
        {
            return Err(DataplaneError::AddressInUse {
                ip: ep.ip,
                vni: ep.vni,
            });
        }
        let route = RouteValue {
            kind: ROUTE_REMOTE,
            _pad0: 0,
            mac: ep.mac.0,
            ifindex: 0,
            remote_ip: be(ep.host),
        };
        self.routes
            .insert(
                &RouteKey {
                    vni: ep.vni,
                    ip: be(ep.ip),
                },
                &route,
                0,
            )
            .map_err(DataplaneError::map(format!(
                "adding remote endpoint {}",
                ep.ip
            )))
    }

    /// Removes a remote endpoint.
    pub fn remove_remote_endpoint(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        match self.route(vni, ip)? {
            Some(r) if r.kind == ROUTE_REMOTE => self
                .routes
                .remove(&RouteKey { vni, ip: be(ip) })
                .map_err(DataplaneError::map(format!(
                    "removing remote endpoint {ip}"
                ))),
            _ => Err(DataplaneError::UnknownAddress { ip, vni }),
        }
    }

    /// Removes whatever route `(vni, ip)` has (local or remote); absent is
    /// fine. For repairs, where an entry may have outlived its owner.
    pub fn remove_route(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        match self.routes.remove(&RouteKey { vni, ip: be(ip) }) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(DataplaneError::map(format!("removing route {ip}"))(e)),
        }
    }

    /// Allows the host at underlay address `host` to send us `vni`.
    pub fn add_peer(&mut self, host: Ipv4Addr, vni: u32) -> Result<(), DataplaneError> {
        check_host(host)?;
        self.network(vni)?;
        self.peers
            .insert(&PeerKey { ip: be(host), vni }, &PeerValue::default(), 0)
            .map_err(DataplaneError::map(format!("adding peer {host}")))
    }

    /// Revokes `host`'s permission to send `vni`.
    pub fn remove_peer(&mut self, host: Ipv4Addr, vni: u32) -> Result<(), DataplaneError> {
        self.peers
            .remove(&PeerKey { ip: be(host), vni })
            .map_err(DataplaneError::map(format!("removing peer {host}")))
    }

    /// Snapshot of every programmed entry.
    pub fn state(&self) -> Result<State, DataplaneError> {
        let err = DataplaneError::map;
        let config = self.config.get(&0, 0).map_err(err("reading config"))?;
        let mut state = State {
            config: (config.flags & CONFIG_FLAG_READY != 0).then_some(config),
            networks: self
                .networks
                .iter()
                .collect::<Result<_, _>>()
                .map_err(err("listing networks"))?,
            subnets: self
                .subnets
                .iter()
                .map(|r| r.map(|(k, v)| ((k.prefix_len(), k.data()), v)))
                .collect::<Result<_, _>>()
                .map_err(err("listing subnets"))?,
            endpoints: self
                .endpoints
                .iter()
                .collect::<Result<_, _>>()
                .map_err(err("listing endpoints"))?,
            routes: self
                .routes
                .iter()
                .collect::<Result<_, _>>()
                .map_err(err("listing routes"))?,
            peers: self
                .peers
                .keys()
                .collect::<Result<_, _>>()
                .map_err(err("listing peers"))?,
        };
        state.networks.sort_by_key(|(k, _)| *k);
        state.subnets.sort_unstable();
        state.endpoints.sort_by_key(|(k, _)| *k);
        state
            .routes
            .sort_by_key(|(k, _)| (k.vni, u32::from_be(k.ip)));
        state.peers.sort_by_key(|k| (k.vni, u32::from_be(k.ip)));
        Ok(state)
    }

    /// Kernel memory of each pinned map (`memlock` in the map fd's fdinfo).
    pub fn map_memory(&self) -> Result<Vec<(&'static str, u64)>, DataplaneError> {
        names::ALL
            .iter()
            .map(|name| {
                let pin = self.pin_dir.join("maps").join(name);
                let info = aya::maps::MapInfo::from_pin(&pin)
                    .map_err(DataplaneError::map(format!("opening pinned map {name}")))?;
                let fd = info
                    .fd()
                    .map_err(DataplaneError::map(format!("map {name} fd")))?;
                let raw = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(&fd));
                let fdinfo = format!("/proc/self/fdinfo/{raw}");
                let text = fs::read_to_string(&fdinfo).map_err(|source| DataplaneError::Io {
                    op: "read",
                    path: fdinfo.into(),
                    source,
                })?;
                let bytes = text
                    .lines()
                    .find_map(|l| l.strip_prefix("memlock:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                Ok((*name, bytes))
            })
            .collect()
    }

    // ---- counters ----------------------------------------------------------

    /// Counter totals summed over CPUs.
    /// (program, runs, time spent) of every dataplane program of this
    /// instance, as the kernel counts them while run-time statistics are
    /// enabled (`aya::sys::enable_stats`).
    pub fn program_run_stats(
        &self,
    ) -> Result<Vec<(&'static str, u64, std::time::Duration)>, DataplaneError> {
        [
            programs::ENDPOINT_INGRESS,
            programs::UNDERLAY_XDP,
            programs::UNDERLAY_TC,
        ]
        .into_iter()
        .map(|name| {
            let info = self
                .ebpf
                .program(name)
                .ok_or(DataplaneError::MissingProgram(name))?
                .info()
                .map_err(|source| DataplaneError::Program {
                    op: "reading statistics of",
                    name,
                    source,
                })?;
            Ok((name, info.run_count(), info.run_time()))
        })
        .collect()
    }

    /// Totals of network `vni` over all CPUs.
    pub fn network_counters(&self, vni: u32) -> Result<Counters, DataplaneError> {
        let per_cpu = match self.net_counters.get(&vni, 0) {
            Ok(v) => v,
            Err(e) if not_found(&e) => return Err(DataplaneError::UnknownNetwork(vni)),
            Err(e) => return Err(DataplaneError::map("reading network counters")(e)),
        };
        let total = |slot: u32| {
            per_cpu
                .iter()
                .filter_map(|c| c.slots.get(slot as usize))
                .fold(CounterValue::default(), |acc, v| CounterValue {
                    packets: acc.packets + v.packets,
                    bytes: acc.bytes + v.bytes,
                })
        };
        let mut out = Counters::default();
        for c in Counter::ALL {
            out.outcomes.insert(c.name(), total(c.index()));
        }
        for r in DropReason::ALL {
            out.drops.insert(r.name(), total(r.index()));
        }
        Ok(out)
    }

    pub fn counters(&self) -> Result<Counters, DataplaneError> {
        let read = |slot: u32| -> Result<CounterValue, DataplaneError> {
            let per_cpu = self
                .counters
                .get(&slot, 0)
                .map_err(DataplaneError::map("reading counters"))?;
            Ok(per_cpu
                .iter()
                .fold(CounterValue::default(), |acc, v| CounterValue {
                    packets: acc.packets + v.packets,
                    bytes: acc.bytes + v.bytes,
                }))
        };
        let mut out = Counters::default();
        for c in Counter::ALL {
            out.outcomes.insert(c.name(), read(c.index())?);
        }
        for r in DropReason::ALL {
            out.drops.insert(r.name(), read(r.index())?);
        }
        Ok(out)
    }
}

fn network_from(vni: u32, info: &NetworkInfo) -> Network {
    let prefix = u32::from_be(info.mask).leading_ones() as u8;
    Network {
        vni,
        subnet: Ipv4Net::new(v4(info.subnet), prefix).unwrap_or_default(),
        gateway: (info.gateway != 0).then(|| v4(info.gateway)),
        internal: info.flags & NETWORK_FLAG_INTERNAL != 0,
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, DataplaneError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or(DataplaneError::MissingProgram(name))?;
    prog.try_into().map_err(|source| DataplaneError::Program {
        op: "typing",
        name,
        source,
    })
}

/// Removes a pinned link, which detaches it (no process holds its fd).
fn unpin_link(path: &Path) -> Result<(), DataplaneError> {
    if !path.exists() {
        return Ok(());
    }
    let link = PinnedLink::from_pin(path).map_err(|source| DataplaneError::Link {
        op: format!("opening {}", path.display()),
        source,
    })?;
    link.unpin().map(drop).map_err(|source| DataplaneError::Io {
        op: "unpin",
        path: path.to_path_buf(),
        source,
    })
}
