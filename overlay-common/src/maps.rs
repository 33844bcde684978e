//! Map names, capacities and the `#[repr(C)]` keys and values.

/// Map names as the eBPF object declares them (the static's identifier).
/// `Dataplane::load` fails when one is missing, so every test that loads
/// the object checks them.
pub mod names {
    /// host-side veth ifindex -> [`super::EndpointInfo`].
    pub const ENDPOINTS: &str = "OVL_ENDPOINTS";
    /// [`super::RouteKey`] -> [`super::RouteValue`].
    pub const ROUTES: &str = "OVL_ROUTES";
    /// [`super::PeerKey`] -> [`super::PeerValue`].
    pub const PEERS: &str = "OVL_PEERS";
    /// VNI -> [`super::NetworkInfo`].
    pub const NETWORKS: &str = "OVL_NETWORKS";
    /// LPM (prefix, IPv4 address) -> VNI of the network owning that subnet.
    pub const SUBNETS: &str = "OVL_SUBNETS";
    /// index 0 -> [`super::Config`].
    pub const CONFIG: &str = "OVL_CONFIG";
    /// [`crate::Counter`] index -> per-CPU [`crate::CounterValue`].
    pub const COUNTERS: &str = "OVL_COUNTERS";
    /// network counter slot ([`super::NetworkInfo::counter_slot`]) ->
    /// per-CPU [`crate::NetCounters`].
    pub const NET_COUNTERS: &str = "OVL_NET_COUNTERS";
    /// Remote host slot -> per-CPU [`super::NextHop`] (the encap path's
    /// cache).
    pub const NEXTHOPS: &str = "OVL_NEXTHOPS";
    /// Remote underlay IPv4 -> [`super::HostSlot`]: the slot of each remote
    /// host the routes name.
    pub const HOSTS: &str = "OVL_HOSTS";
    /// Remote host slot -> generation (`u32`) of its cached next hops.
    pub const HOST_GENERATIONS: &str = "OVL_HOST_GENS";
    /// Remote underlay IPv4 -> [`super::PathMtu`] learned from ICMP (LRU).
    pub const PATH_MTUS: &str = "OVL_PATH_MTUS";
    /// [`super::GuardKey`] -> [`super::GuardValue`]: destinations containers
    /// may not reach through their host.
    pub const GUARDS: &str = "OVL_GUARDS";
    /// [`super::NameKey`] -> [`super::NameValue`]: container names the
    /// endpoint program answers DNS queries for.
    pub const NAMES: &str = "OVL_NAMES";
    /// `ifindex & (ENDPOINT_SLOTS - 1)` -> [`super::EndpointSlot`]: the
    /// endpoint program's direct-mapped copy of `OVL_ENDPOINTS`.
    pub const ENDPOINT_SLOTS: &str = "OVL_EP_SLOTS";
    /// Ring buffer of [`crate::DropEvent`]s, read by `overlay monitor`.
    pub const EVENTS: &str = "OVL_EVENTS";
    /// index 0 -> per-CPU [`crate::MonitorState`]: the programs' reporting
    /// budget and tallies.
    pub const MONITOR: &str = "OVL_MONITOR";
    /// index 0 -> PID (`u32`) of the `overlay monitor` reading the events;
    /// 0: none, and the programs report nothing.
    pub const MONITOR_ON: &str = "OVL_MONITOR_ON";
    /// [`super::route_slot`] -> [`super::RouteSlot`]: the hot paths'
    /// direct-mapped copy of `OVL_ROUTES`.
    pub const ROUTE_SLOTS: &str = "OVL_ROUTE_SLOTS";
    /// [`super::peer_slot`] -> [`super::PeerSlot`]: the decap path's
    /// direct-mapped copy of `OVL_PEERS`.
    pub const PEER_SLOTS: &str = "OVL_PEER_SLOTS";

    /// Every map, for pin management and the name check.
    pub const ALL: [&str; 20] = [
        ENDPOINTS,
        ROUTES,
        PEERS,
        NETWORKS,
        SUBNETS,
        CONFIG,
        COUNTERS,
        NET_COUNTERS,
        NEXTHOPS,
        HOSTS,
        HOST_GENERATIONS,
        PATH_MTUS,
        GUARDS,
        NAMES,
        EVENTS,
        MONITOR,
        MONITOR_ON,
        ENDPOINT_SLOTS,
        ROUTE_SLOTS,
        PEER_SLOTS,
    ];
}

/// Capacities (max_entries). Sized for a large host; the control-plane
/// benchmark programs up to 100k remote endpoints.
pub mod capacity {
    pub const ENDPOINTS: u32 = 4096;
    /// Slots of the endpoint program's direct-mapped endpoint table (a
    /// power of two: the slot is the ifindex's low bits).
    pub const ENDPOINT_SLOTS: u32 = 4096;
    pub const ROUTES: u32 = 131_072;
    /// Slots of the direct-mapped route table (a power of two): 2.5 MiB.
    pub const ROUTE_SLOTS: u32 = 65_536;
    /// Slots of the direct-mapped peer table (a power of two): 256 KiB.
    pub const PEER_SLOTS: u32 = 16_384;
    pub const PEERS: u32 = 65_536;
    pub const NETWORKS: u32 = 4096;
    pub const SUBNETS: u32 = 4096;
    /// Networks with counters of their own: slots 1.. of a per-CPU array
    /// (768 bytes per slot and CPU, so 768 KiB per CPU); slot 0 is "none".
    /// A host with more networks counts the rest in the host totals only.
    pub const NET_COUNTERS: u32 = 1024;
    /// Remote hosts with a slot of their own in the next-hop cache (slots
    /// 1..; slot 0 is "none", whose packets ask the FIB every time).
    pub const NEXTHOPS: u32 = 16_384;
    /// Remote hosts with a learned path MTU (LRU, like the next hops).
    pub const PATH_MTUS: u32 = 16_384;
    /// Guarded destinations (the cluster store's endpoints).
    pub const GUARDS: u32 = 256;
    /// (network, name) pairs answered in the kernel.
    pub const NAMES: u32 = 16_384;
}

/// How long the encap path trusts a cached underlay next hop before it asks
/// the FIB again: the longest a route or neighbour change (a peer's MAC
/// moving) goes unnoticed. In jiffies, the kernel's tick, which
/// `bpf_jiffies64` reads from memory: the nanosecond clock cost 30-40 ns a
/// packet under BPF_PROG_RUN, as much as the cache lookup itself. 100 ms at
/// CONFIG_HZ=250 (Debian's), 25 ms at 1000, 250 ms at 100; against the FIB
/// lookup it saves on every packet (about 200 ns here), one lookup per peer
/// per TTL is free.
pub const NEXTHOP_TTL_JIFFIES: u64 = 25;

/// How long a path MTU learned from an ICMP "fragmentation needed" holds
/// before full-size packets are tried again (Linux's `mtu_expires`).
pub const PATH_MTU_TTL_NS: u64 = 600_000_000_000;
/// The smallest path MTU an ICMP message can set (Linux's `min_pmtu`):
/// smaller claims are raised to it, so a forged message cannot shrink
/// the overlay below a usable size.
pub const MIN_PATH_MTU: u32 = 552;

/// The underlay next hop towards one remote host, as `bpf_fib_lookup` found
/// it with the neighbour resolved: one per remote host slot and CPU, so the
/// encap path finds it with an (inlined) array lookup and each CPU writes
/// only its own. Written by the encap path only; userspace reads it
/// (`status`) and voids it by bumping the slot's generation.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// Egress device (host order).
    pub ifindex: u32,
    /// Outer source MAC (the egress device's).
    pub smac: [u8; 6],
    /// Outer destination MAC (the next hop's neighbour entry).
    pub dmac: [u8; 6],
    /// Path MTU towards the remote host (bytes of outer IPv4 packet): the
    /// FIB's (route metric, the kernel's learned exception or the device)
    /// or, when smaller, the one learned from ICMP ([`PathMtu`]).
    pub mtu: u32,
    /// The remote host (underlay IPv4, network order) the entry is for: a
    /// slot given to another host does not reuse it.
    pub remote_ip: u32,
    /// The slot's generation (`OVL_HOST_GENS`) when the entry was made; a
    /// bumped generation voids it.
    pub generation: u32,
    pub _pad0: u32,
    /// `bpf_jiffies64` time (the kernel's `jiffies`) after which the entry
    /// is stale and the FIB is asked again.
    pub expires_jiffies: u64,
}
const _: () = assert!(core::mem::size_of::<NextHop>() == 40);

/// A remote host's slot in the next-hop cache and generations.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostSlot {
    /// 1..[`capacity::NEXTHOPS`].
    pub slot: u32,
}
const _: () = assert!(core::mem::size_of::<HostSlot>() == 4);

/// A path MTU towards one remote host, learned from an ICMP "fragmentation
/// needed" a router on the underlay sent about an encapsulated packet.
/// Written by the underlay programs; userspace reads it (`status`) and
/// flushes it when the underlay changes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathMtu {
    /// Bytes of outer IPv4 packet (host order), at least [`MIN_PATH_MTU`].
    pub mtu: u32,
    pub _pad0: u32,
    /// `bpf_ktime_get_coarse_ns` time after which it no longer applies.
    pub expires_ns: u64,
}
const _: () = assert!(core::mem::size_of::<PathMtu>() == 16);

/// A container endpoint on this host, keyed by the ifindex of its host-side
/// veth (where the endpoint program runs).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// VXLAN network identifier of the endpoint's network (host order).
    pub vni: u32,
    /// Endpoint IPv4 address (network order).
    pub ip: u32,
    /// MAC of the container-side interface (eth0...).
    pub mac: [u8; 6],
    /// MAC of the host-side veth. ARP for the gateway is answered with it, so
    /// frames to the gateway are addressed to the host and the kernel accepts
    /// them on the gateway path.
    pub host_mac: [u8; 6],
    /// `ENDPOINT_FLAG_*` bits.
    pub flags: u32,
    /// The network's counter slot ([`NetworkInfo::counter_slot`]), copied
    /// here so the endpoint program counts without another lookup.
    pub counter_slot: u32,
}
const _: () = assert!(core::mem::size_of::<EndpointInfo>() == 28);

/// One slot of `OVL_EP_SLOTS`: the endpoint on host-side interface
/// `ifindex`, whose low bits name the slot. An array lookup the JIT inlines
/// instead of a hash lookup (about 25 ns a packet under BPF_PROG_RUN) for
/// every packet a container sends; endpoints whose ifindex shares the low
/// bits with one holding the slot are found in `OVL_ENDPOINTS`, which holds
/// every endpoint. Userspace keeps the two the same: a slot is written after
/// the hash entry and cleared before it is removed, under the sequence lock
/// of [`RouteSlot`] (a slot handed to another interface is never read half
/// written).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointSlot {
    /// Sequence: odd while being rewritten.
    pub seq: u8,
    pub _pad0: [u8; 3],
    /// Host-side ifindex of the endpoint in the slot; 0: free.
    pub ifindex: u32,
    pub info: EndpointInfo,
    pub _pad1: u32,
}
const _: () = assert!(core::mem::size_of::<EndpointSlot>() == 40);

impl EndpointSlot {
    /// A slot that holds no endpoint.
    pub const FREE: Self = Self::holding(
        0,
        EndpointInfo {
            vni: 0,
            ip: 0,
            mac: [0; 6],
            host_mac: [0; 6],
            flags: 0,
            counter_slot: 0,
        },
    );

    /// A slot that holds the endpoint on `ifindex` (`seq` 0: set by the
    /// writer).
    pub const fn holding(ifindex: u32, info: EndpointInfo) -> Self {
        Self {
            seq: 0,
            _pad0: [0; 3],
            ifindex,
            info,
            _pad1: 0,
        }
    }
}

/// The slot of the endpoint on host-side interface `ifindex` in
/// `OVL_EP_SLOTS` (the same on both sides).
#[inline(always)]
pub const fn endpoint_slot(ifindex: u32) -> u32 {
    ifindex & (capacity::ENDPOINT_SLOTS - 1)
}
const _: () = assert!(capacity::ENDPOINT_SLOTS.is_power_of_two());

/// Key of the routes map: a destination inside one network.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteKey {
    /// Network (host order). Lookups always use the *source* endpoint's VNI,
    /// which is what isolates networks.
    pub vni: u32,
    /// Destination IPv4 address (network order).
    pub ip: u32,
}
const _: () = assert!(core::mem::size_of::<RouteKey>() == 8);

/// The destination endpoint is on this host.
pub const ROUTE_LOCAL: u8 = 1;
/// The destination endpoint is behind a remote host's underlay address.
pub const ROUTE_REMOTE: u8 = 2;

/// Where a destination endpoint lives.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteValue {
    /// `ROUTE_LOCAL` or `ROUTE_REMOTE`.
    pub kind: u8,
    pub _pad0: u8,
    /// The destination endpoint's MAC (inner destination MAC, ARP answer).
    pub mac: [u8; 6],
    /// Local: ifindex of the destination's host-side veth. Remote: 0.
    pub ifindex: u32,
    /// Remote: underlay IPv4 of the host that owns the endpoint (network
    /// order). Local: 0.
    pub remote_ip: u32,
    /// Local: the network's counter slot ([`NetworkInfo::counter_slot`]),
    /// so the decap path counts without another lookup. Remote: 0.
    pub counter_slot: u32,
    /// Remote: the remote host's slot ([`HostSlot`]) in the next-hop cache;
    /// 0 for none. Local: 0.
    pub host_slot: u32,
}
const _: () = assert!(core::mem::size_of::<RouteValue>() == 24);

/// Key of the peers map: a remote host and one VNI it may send us.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerKey {
    /// Underlay IPv4 of the remote host (network order).
    pub ip: u32,
    /// VNI it may send (host order).
    pub vni: u32,
}
const _: () = assert!(core::mem::size_of::<PeerKey>() == 8);

/// Value of the peers map (membership is what matters; flags reserved).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerValue {
    /// Reserved, zero.
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<PeerValue>() == 4);

/// A slot's `seq` while a writer rewrites it (odd): readers fall back to
/// the hash map. Even: the slot is stable.
pub const SLOT_SEQ_WRITING: u8 = 1;

/// One slot of `OVL_ROUTE_SLOTS`: the route of `key`, whose hash
/// ([`route_slot`]) names the slot. An array lookup the JIT inlines instead
/// of a hash lookup (20 ns a packet under BPF_PROG_RUN) on the encap,
/// same-host and decap paths; routes whose slot another key holds are found
/// in `OVL_ROUTES`, which holds every route. Userspace writes a slot after
/// the hash entry and clears it before the hash entry goes.
///
/// A reader on another CPU could see a rewrite half done, so every rewrite
/// is three steps that change either `seq` alone or everything but `seq`:
/// `seq` made odd, the new key and route, `seq` made even again (+2 in
/// all); the agent stores them through a mapping of the array, with
/// release fences between. A reader takes the slot only when it read the
/// same even `seq` before and after copying it (a sequence lock; one byte,
/// so `seq` itself is never seen torn).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteSlot {
    /// Sequence: odd while being rewritten.
    pub seq: u8,
    pub _pad0: [u8; 3],
    /// The route's key; VNI 0 (never a network's): free.
    pub key: RouteKey,
    pub route: RouteValue,
    pub _pad1: u32,
}
const _: () = assert!(core::mem::size_of::<RouteSlot>() == 40);

impl RouteSlot {
    /// A slot that holds no route.
    pub const FREE: Self = Self::holding(
        RouteKey { vni: 0, ip: 0 },
        RouteValue {
            kind: 0,
            _pad0: 0,
            mac: [0; 6],
            ifindex: 0,
            remote_ip: 0,
            counter_slot: 0,
            host_slot: 0,
        },
    );

    /// A slot that holds `route` for `key` (`seq` 0: set by the writer).
    pub const fn holding(key: RouteKey, route: RouteValue) -> Self {
        Self {
            seq: 0,
            _pad0: [0; 3],
            key,
            route,
            _pad1: 0,
        }
    }
}
const _: () = assert!(capacity::ROUTE_SLOTS.is_power_of_two());

/// One slot of `OVL_PEER_SLOTS`: remote host and VNI `key` may send, kept
/// like [`RouteSlot`] (the same sequence lock), with `OVL_PEERS` for keys
/// whose slot another holds.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSlot {
    /// Sequence: odd while being rewritten.
    pub seq: u8,
    pub _pad0: [u8; 3],
    /// The peer; VNI 0 (never a network's): free.
    pub key: PeerKey,
    pub _pad1: u32,
}
const _: () = assert!(core::mem::size_of::<PeerSlot>() == 16);

impl PeerSlot {
    /// A slot that holds no peer.
    pub const FREE: Self = Self::holding(PeerKey { ip: 0, vni: 0 });

    /// A slot that holds `key` (`seq` 0: set by the writer).
    pub const fn holding(key: PeerKey) -> Self {
        Self {
            seq: 0,
            _pad0: [0; 3],
            key,
            _pad1: 0,
        }
    }
}
const _: () = assert!(capacity::PEER_SLOTS.is_power_of_two());

/// Fibonacci hashing of a VNI and an address (as stored: network order)
/// to `bits` bits: the address's bytes swapped so its host part is in the
/// low bits, one multiply, the high bits kept. Consecutive addresses then
/// land in distinct slots (a /16 fills 89% of 65536 slots, against 63% for
/// random keys); with the address as stored, the host part sat in the high
/// bits and a /16 reached only 12% of them.
#[inline(always)]
const fn slot_hash(vni: u32, ip: u32, bits: u32) -> u32 {
    let x = ((vni as u64) << 32) | ip.swap_bytes() as u64;
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as u32
}

/// The slot of `key` in `OVL_ROUTE_SLOTS` (the same on both sides).
#[inline(always)]
pub const fn route_slot(key: &RouteKey) -> u32 {
    slot_hash(key.vni, key.ip, capacity::ROUTE_SLOTS.trailing_zeros())
}

/// The slot of `key` in `OVL_PEER_SLOTS` (the same on both sides).
#[inline(always)]
pub const fn peer_slot(key: &PeerKey) -> u32 {
    slot_hash(key.vni, key.ip, capacity::PEER_SLOTS.trailing_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many distinct route slots the addresses of a /16 take.
    #[test]
    fn consecutive_addresses_spread_over_the_slots() {
        let mut seen = [false; capacity::ROUTE_SLOTS as usize];
        for host in 0..=u16::MAX {
            let [a, b] = host.to_be_bytes();
            let ip = u32::from_ne_bytes([10, 70, a, b]);
            seen[route_slot(&RouteKey { vni: 700, ip }) as usize] = true;
        }
        let used = seen.iter().filter(|s| **s).count();
        assert!(used > 55_000, "a /16 takes {used} of 65536 slots");
    }
}

/// The network has no gateway path: traffic to outside its subnet is dropped.
pub const NETWORK_FLAG_INTERNAL: u32 = 1;

/// A network served on this host.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkInfo {
    /// Subnet address (network order).
    pub subnet: u32,
    /// Subnet mask (network order).
    pub mask: u32,
    /// Gateway IPv4 (network order); 0 when the network has none.
    pub gateway: u32,
    /// `NETWORK_FLAG_*` bits.
    pub flags: u32,
    /// Index of the network's counters in `OVL_NET_COUNTERS` (host order),
    /// 1..[`capacity::NET_COUNTERS`]; 0: none (the host totals only).
    pub counter_slot: u32,
}
const _: () = assert!(core::mem::size_of::<NetworkInfo>() == 20);

/// Key of the LPM subnets map, laid out as the kernel's `bpf_lpm_trie_key`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubnetKey {
    /// Prefix length in bits.
    pub prefix_len: u32,
    /// IPv4 address (network order).
    pub ip: u32,
}
const _: () = assert!(core::mem::size_of::<SubnetKey>() == 8);

/// A destination containers may not reach through their host: an IPv4
/// address, an IP protocol and a port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GuardKey {
    /// Destination IPv4 (network order, as in the header).
    pub ip: u32,
    /// Destination port (network order, as in the header).
    pub port: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    pub _pad0: u8,
}
const _: () = assert!(core::mem::size_of::<GuardKey>() == 8);

/// Why a destination is guarded.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardValue {
    /// `GUARD_*` bits.
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<GuardValue>() == 4);
/// [`GuardValue::flags`]: a client endpoint of the cluster store.
pub const GUARD_CLUSTER_STORE: u32 = 1;

/// Longest query name the endpoint program answers, in DNS wire form
/// (length-prefixed labels and the root's zero byte); longer ones go to the
/// daemon's resolver.
pub const DNS_NAME_MAX: usize = 64;
/// Addresses one name answers from the map; a name with more is left to
/// the daemon's resolver.
pub const DNS_ADDRS_MAX: usize = 4;
/// TTL of the answers, seconds (as Docker's embedded resolver).
pub const DNS_TTL: u32 = 600;

/// A name on one network, as a DNS query carries it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NameKey {
    /// Network (host order).
    pub vni: u32,
    /// Bytes of `name` in use (wire form, the root's zero byte included).
    pub len: u32,
    /// The name in DNS wire form, ASCII letters in lower case, zero-padded.
    pub name: [u8; DNS_NAME_MAX],
}
const _: () = assert!(core::mem::size_of::<NameKey>() == 8 + DNS_NAME_MAX);

/// The addresses a name resolves to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameValue {
    /// Addresses in use in `addrs`, 1..=[`DNS_ADDRS_MAX`].
    pub count: u32,
    /// IPv4 addresses (network order).
    pub addrs: [u32; DNS_ADDRS_MAX],
}
const _: () = assert!(core::mem::size_of::<NameValue>() == 4 + 4 * DNS_ADDRS_MAX);

/// `Config::flags`: the underlay is configured; encap and decap may run.
pub const CONFIG_FLAG_READY: u32 = 1;

/// Host-wide settings, the single entry of the config array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// This host's underlay IPv4 (network order): outer source address, and
    /// the only outer destination the decap path accepts.
    pub underlay_ip: u32,
    /// ifindex of the underlay NIC (FIB lookups start from it).
    pub underlay_ifindex: u32,
    /// VXLAN UDP destination port (host order), normally 4789.
    pub vxlan_port: u16,
    /// Lowest outer UDP source port (host order), for flow entropy.
    pub src_port_min: u16,
    /// Highest outer UDP source port (host order).
    pub src_port_max: u16,
    pub _pad0: u16,
    /// `CONFIG_FLAG_*` bits.
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<Config>() == 20);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], Copy, contain only integers and
    // byte arrays, and have explicit padding fields, so every bit pattern is
    // valid and there are no uninitialised bytes.
    unsafe impl aya::Pod for super::EndpointInfo {}
    unsafe impl aya::Pod for super::EndpointSlot {}
    unsafe impl aya::Pod for super::RouteSlot {}
    unsafe impl aya::Pod for super::PeerSlot {}
    unsafe impl aya::Pod for super::RouteKey {}
    unsafe impl aya::Pod for super::RouteValue {}
    unsafe impl aya::Pod for super::PeerKey {}
    unsafe impl aya::Pod for super::PeerValue {}
    unsafe impl aya::Pod for super::NetworkInfo {}
    unsafe impl aya::Pod for super::SubnetKey {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::NextHop {}
    unsafe impl aya::Pod for super::HostSlot {}
    unsafe impl aya::Pod for super::PathMtu {}
    unsafe impl aya::Pod for super::GuardKey {}
    unsafe impl aya::Pod for super::GuardValue {}
    unsafe impl aya::Pod for super::NameKey {}
    unsafe impl aya::Pod for super::NameValue {}
    unsafe impl aya::Pod for crate::CounterValue {}
    unsafe impl aya::Pod for crate::NetCounters {}
    unsafe impl aya::Pod for crate::DropEvent {}
    unsafe impl aya::Pod for crate::MonitorState {}
}
