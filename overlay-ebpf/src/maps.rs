//! Every map of the dataplane. All are pinned by name, so the userspace agent
//! can reopen them after a restart and forwarding never depends on it running.
//! Names, layouts and capacities come from `overlay_common`.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use overlay_common::{
    COUNTER_SLOTS, Config, CounterValue, EndpointInfo, EndpointSlot, GuardKey, GuardValue,
    HostSlot, MonitorState, NameKey, NameValue, NetCounters, NetworkInfo, NextHop, PathMtu,
    PeerKey, PeerSlot, PeerValue, RouteKey, RouteSlot, RouteValue, capacity,
    events::EVENTS_RING_BYTES,
};

/// host-side veth ifindex -> local endpoint. Written by userspace on connect.
#[map]
pub static OVL_ENDPOINTS: HashMap<u32, EndpointInfo> = HashMap::pinned(capacity::ENDPOINTS, 0);

/// `endpoint_slot(ifindex)` -> the endpoint on that ifindex, if it holds
/// the slot: the endpoint program's first, inlined lookup; `OVL_ENDPOINTS`
/// for the rest (see [`crate::slots`]). Written by userspace with
/// `OVL_ENDPOINTS`, through a mapping like `OVL_ROUTE_SLOTS`.
#[map]
pub static OVL_EP_SLOTS: Array<EndpointSlot> =
    Array::pinned(capacity::ENDPOINT_SLOTS, BPF_F_MMAPABLE);

/// (VNI, IPv4) -> local or remote endpoint. Written by userspace for every
/// endpoint of every network this host serves.
#[map]
pub static OVL_ROUTES: HashMap<RouteKey, RouteValue> = HashMap::pinned(capacity::ROUTES, 0);

/// `route_slot(key)` -> the route of `key`, if it holds the slot: the hot
/// paths' first, inlined lookup; `OVL_ROUTES` for the rest (see
/// [`crate::slots`]). Written by userspace with `OVL_ROUTES`, through a
/// mapping of the array (mmapable: no syscall per slot).
#[map]
pub static OVL_ROUTE_SLOTS: Array<RouteSlot> = Array::pinned(capacity::ROUTE_SLOTS, BPF_F_MMAPABLE);

/// `peer_slot(key)` -> peer `key`, if it holds the slot: the decap path's
/// first, inlined lookup; `OVL_PEERS` for the rest. Written by userspace
/// with `OVL_PEERS`, through a mapping like `OVL_ROUTE_SLOTS`.
#[map]
pub static OVL_PEER_SLOTS: Array<PeerSlot> = Array::pinned(capacity::PEER_SLOTS, BPF_F_MMAPABLE);

/// (remote underlay IPv4, VNI) -> allowed. Written by userspace per peer host.
#[map]
pub static OVL_PEERS: HashMap<PeerKey, PeerValue> = HashMap::pinned(capacity::PEERS, 0);

/// VNI -> network (subnet, gateway, flags). Written by userspace.
#[map]
pub static OVL_NETWORKS: HashMap<u32, NetworkInfo> = HashMap::pinned(capacity::NETWORKS, 0);

/// Longest-prefix IPv4 -> VNI of the network whose subnet holds it. Written by
/// userspace with each network; tells isolation drops from gateway traffic.
#[map]
pub static OVL_SUBNETS: LpmTrie<u32, u32> = LpmTrie::pinned(capacity::SUBNETS, 0);

/// 0 -> host config (underlay address, NIC, VXLAN port). Written by userspace
/// when the host attaches to its underlay.
#[map]
pub static OVL_CONFIG: Array<Config> = Array::pinned(1, 0);

/// counter slot -> per-CPU packets/bytes. Written by the programs only.
#[map]
pub static OVL_COUNTERS: PerCpuArray<CounterValue> = PerCpuArray::pinned(COUNTER_SLOTS, 0);

/// network counter slot -> per-CPU counters of that network. Userspace
/// zeroes a slot when it gives it to a network; the programs only add. An
/// array, not a hash by VNI: the slot travels in the endpoint and route
/// entries the hot paths read anyway, and an array lookup is inlined (a
/// per-CPU hash lookup cost 25-30 ns a packet under BPF_PROG_RUN).
#[map]
pub static OVL_NET_COUNTERS: PerCpuArray<NetCounters> =
    PerCpuArray::pinned(capacity::NET_COUNTERS, 0);

/// Remote host slot -> per-CPU next hop (egress device, MACs, path MTU,
/// expiry). Written by the encap path after a FIB lookup that found a
/// resolved neighbour, so later packets to that host skip the lookup until
/// the entry expires. Per CPU, and an array: each CPU writes only its own
/// copy, and the lookup is inlined (the LRU hash by address it replaced
/// cost 40 ns a packet under BPF_PROG_RUN). Userspace only reads it.
#[map]
pub static OVL_NEXTHOPS: PerCpuArray<NextHop> = PerCpuArray::pinned(capacity::NEXTHOPS, 0);

/// Remote underlay IPv4 (network order) -> its slot. Written by userspace
/// with the remote routes; read here only by the ICMP path-MTU learning,
/// to void that host's cached next hops.
#[map]
pub static OVL_HOSTS: HashMap<u32, HostSlot> = HashMap::pinned(capacity::NEXTHOPS, 0);

/// Remote host slot -> generation of its cached next hops: bumping it voids
/// them on every CPU. Bumped by the underlay programs when they learn a
/// path MTU to that host, and by userspace when the underlay changes.
#[map]
pub static OVL_HOST_GENS: Array<u32> = Array::pinned(capacity::NEXTHOPS, 0);

/// Remote underlay IPv4 (network order) -> path MTU learned from an ICMP
/// "fragmentation needed" a router sent about our VXLAN to that host.
/// Written by the underlay programs (which also drop that host's cached
/// next hop, so the encap path picks the new MTU up at once); userspace
/// reads it and flushes it when the underlay changes.
#[map]
pub static OVL_PATH_MTUS: LruHashMap<u32, PathMtu> = LruHashMap::pinned(capacity::PATH_MTUS, 0);

/// (IPv4, protocol, port) -> guarded: destinations containers may not reach
/// through their host (the cluster store's endpoints). Written by
/// userspace from the host's cluster settings; read on the gateway path.
#[map]
pub static OVL_GUARDS: HashMap<GuardKey, GuardValue> = HashMap::pinned(capacity::GUARDS, 0);

/// (VNI, query name in wire form) -> addresses: the names containers on
/// that network resolve, answered by the endpoint program. Written by
/// userspace with every change to containers, aliases and other hosts'
/// claims; names it cannot hold here are answered by the daemon.
#[map]
pub static OVL_NAMES: HashMap<NameKey, NameValue> = HashMap::pinned(capacity::NAMES, 0);

/// Ring buffer of drop events ([`overlay_common::DropEvent`]). Written by
/// the programs on their drop path (within `OVL_MONITOR`'s budget); read by
/// `overlay monitor`.
#[map]
pub static OVL_EVENTS: RingBuf = RingBuf::pinned(EVENTS_RING_BYTES, 0);

/// 0 -> per-CPU reporting budget and tallies of the drop events. Written by
/// the programs only; userspace reads the tallies.
#[map]
pub static OVL_MONITOR: PerCpuArray<MonitorState> = PerCpuArray::pinned(1, 0);

/// 0 -> PID of the `overlay monitor` reading `OVL_EVENTS` (0: none: nothing
/// is reported). Written by the monitor, and cleared by the daemon when
/// that process is gone.
#[map]
pub static OVL_MONITOR_ON: Array<u32> = Array::pinned(1, 0);
