//! Drop events: what the programs report, through the `OVL_EVENTS` ring
//! buffer, about each packet they drop (as far as a per-CPU rate limit
//! lets them), for `overlay monitor`. Only while a monitor reads
//! (`OVL_MONITOR_ON`): otherwise a drop costs one array lookup more.

/// Where a packet was dropped ([`DropEvent::hook`]).
pub const HOOK_ENDPOINT: u8 = 1;
/// The underlay NIC's XDP program.
pub const HOOK_UNDERLAY_XDP: u8 = 2;
/// The underlay NIC's TC program.
pub const HOOK_UNDERLAY_TC: u8 = 3;

/// [`DropEvent::flags`]: the addresses and ports are those of the frame
/// inside a VXLAN packet (whose sender is `peer_ip`).
pub const EVENT_FLAG_INNER: u8 = 1;

/// Events each CPU may report per second; drops beyond it are counted
/// ([`MonitorState::suppressed`]), not reported. Reporting one costs a
/// re-parse of the headers and a ring buffer reservation (a few hundred
/// ns), so a drop flood spends at most about 0.1 % of a CPU on reports.
pub const EVENTS_PER_SEC: u64 = 2000;
/// Events a CPU may report at once after a quiet spell.
pub const EVENTS_BURST: u64 = 200;
/// Bytes of the ring buffer (a power of two of pages): about 5000 events
/// waiting for the reader.
pub const EVENTS_RING_BYTES: u32 = 256 * 1024;

/// One dropped packet. 48 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// When, in ns of CLOCK_MONOTONIC (`bpf_ktime_get_ns`).
    pub time_ns: u64,
    /// [`crate::DropReason`] as its `u32` value.
    pub reason: u32,
    /// VNI of the packet's network (host order); 0 when not known.
    pub vni: u32,
    /// ifindex the program ran on: the endpoint's host-side veth or the
    /// underlay NIC.
    pub ifindex: u32,
    /// Bytes of the packet as the program saw it.
    pub len: u32,
    /// IPv4 source and destination (network order); 0 when the packet is
    /// not IPv4 (or too short to tell).
    pub src_ip: u32,
    pub dst_ip: u32,
    /// The VXLAN packet's outer source (network order): the sending host;
    /// 0 unless `EVENT_FLAG_INNER`.
    pub peer_ip: u32,
    /// TCP/UDP ports (host order); 0 for other protocols and fragments.
    pub src_port: u16,
    pub dst_port: u16,
    /// IP protocol number; 0 when not IPv4.
    pub proto: u8,
    /// `HOOK_*`.
    pub hook: u8,
    /// `EVENT_FLAG_*` bits.
    pub flags: u8,
    pub _pad: [u8; 5],
}
const _: () = assert!(core::mem::size_of::<DropEvent>() == 48);

/// One CPU's reporting budget and tallies, the value of `OVL_MONITOR`
/// (a per-CPU array of one). Written by the programs only.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorState {
    /// Reporting credit, ns: grows with time up to
    /// `EVENTS_BURST * 1e9 / EVENTS_PER_SEC`; an event costs
    /// `1e9 / EVENTS_PER_SEC`.
    pub credit_ns: u64,
    /// CLOCK_MONOTONIC of the last drop seen, ns.
    pub last_ns: u64,
    /// Events written to the ring.
    pub sent: u64,
    /// Drops not reported: over the rate.
    pub suppressed: u64,
    /// Drops not reported: the ring was full (nobody reading, or too slow).
    pub lost: u64,
}
const _: () = assert!(core::mem::size_of::<MonitorState>() == 40);
