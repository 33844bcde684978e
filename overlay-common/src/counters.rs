//! Per-CPU packet counters: one slot per forwarding outcome and one per drop
//! reason, in a single array map (`OVL_COUNTERS`).

/// Packets and bytes seen by one counter slot on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterValue {
    /// Packets (GSO super-packets count once).
    pub packets: u64,
    /// Bytes as seen by the program (`skb->len` or frame length).
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<CounterValue>() == 16);

/// What happened to a packet that was not dropped.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Same host, same network: redirected into the destination's netns.
    ForwardLocal = 0,
    /// VXLAN-encapsulated towards a remote host.
    Encap = 1,
    /// VXLAN-decapsulated by the XDP program.
    DecapXdp = 2,
    /// VXLAN-decapsulated by the TC program.
    DecapTc = 3,
    /// An ARP request answered from the maps.
    ArpReply = 4,
    /// Handed to the host stack: destination outside every network.
    ToHost = 5,
    /// Underlay traffic that is not ours, passed untouched.
    UnderlayPass = 6,
    /// Too big for the path once encapsulated: answered with an ICMP
    /// "fragmentation needed" carrying the overlay's path MTU, and dropped.
    IcmpFragNeeded = 7,
    /// An ICMP "fragmentation needed" about one of our encapsulated
    /// packets: the path MTU to that host learned, the message passed on.
    PathMtuLearned = 8,
    /// A container's DNS query for a name on its network, answered by the
    /// endpoint program from the names map.
    DnsAnswered = 9,
}

impl Counter {
    pub const ALL: [Self; 10] = [
        Self::ForwardLocal,
        Self::Encap,
        Self::DecapXdp,
        Self::DecapTc,
        Self::ArpReply,
        Self::ToHost,
        Self::UnderlayPass,
        Self::IcmpFragNeeded,
        Self::PathMtuLearned,
        Self::DnsAnswered,
    ];

    /// Slot in the counters map.
    pub const fn index(self) -> u32 {
        self as u32
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::ForwardLocal => "forward_local",
            Self::Encap => "encap",
            Self::DecapXdp => "decap_xdp",
            Self::DecapTc => "decap_tc",
            Self::ArpReply => "arp_reply",
            Self::ToHost => "to_host",
            Self::UnderlayPass => "underlay_pass",
            Self::IcmpFragNeeded => "icmp_frag_needed",
            Self::PathMtuLearned => "underlay_path_mtu_learned",
            Self::DnsAnswered => "dns_answered",
        }
    }
}

/// Why a packet was dropped. Each has its own counter slot.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Truncated or invalid Ethernet/IPv4 header (short frame, IHL < 5,
    /// total length beyond the frame).
    Malformed = 0,
    /// Source MAC or IPv4 is not the sending endpoint's own.
    Spoofed = 1,
    /// Destination lies in another network's subnet.
    Isolation = 2,
    /// Destination in the endpoint's own subnet, but no such endpoint.
    NoRoute = 3,
    /// Destination outside the network, and the network is internal.
    Internal = 4,
    /// Packet on an interface that is not a known endpoint.
    UnknownEndpoint = 5,
    /// ARP that is not an Ethernet/IPv4 request (replies, gratuitous...).
    ArpUnsupported = 6,
    /// ARP request for an address nobody in the network owns.
    ArpMiss = 7,
    /// EtherType other than IPv4 or ARP from an endpoint (IPv6, VLAN...).
    UnsupportedProtocol = 8,
    /// VXLAN to our port carried in an IPv4 header with options.
    OuterIpOptions = 9,
    /// First fragment of a fragmented VXLAN packet to our port.
    OuterFragment = 10,
    /// VXLAN header without the I (VNI valid) flag.
    VxlanNoIFlag = 11,
    /// VNI that this host does not serve.
    UnknownVni = 12,
    /// Sender underlay IP is not a peer allowed to send this VNI.
    UnknownPeer = 13,
    /// Inner destination is not a local endpoint of that network.
    UnknownInnerDest = 14,
    /// Inner frame is not Ethernet + IPv4.
    InnerNotIpv4 = 15,
    /// Underlay not configured yet (no config entry).
    NotReady = 16,
    /// The kernel FIB has no usable route to the remote host.
    FibFailed = 17,
    /// A packet-rewriting helper failed (adjust_room, store, ...).
    HelperFailed = 18,
    /// From a container, through its host, to a VXLAN port: a container
    /// must never speak the tunnel protocol to any host (it could inject
    /// frames into networks it is not on).
    ToTunnelPort = 19,
    /// From a container, through its host, to a service of the overlay
    /// itself (the cluster store's client port).
    ToGuarded = 20,
    /// Too big for the path once encapsulated, and no ICMP could be built
    /// for it (IPv4 options in the inner header).
    TooBig = 21,
}

/// First counter slot used by drop reasons.
pub const DROP_BASE: u32 = 16;
/// Size of the counters map.
pub const COUNTER_SLOTS: u32 = 48;

impl DropReason {
    pub const ALL: [Self; 22] = [
        Self::Malformed,
        Self::Spoofed,
        Self::Isolation,
        Self::NoRoute,
        Self::Internal,
        Self::UnknownEndpoint,
        Self::ArpUnsupported,
        Self::ArpMiss,
        Self::UnsupportedProtocol,
        Self::OuterIpOptions,
        Self::OuterFragment,
        Self::VxlanNoIFlag,
        Self::UnknownVni,
        Self::UnknownPeer,
        Self::UnknownInnerDest,
        Self::InnerNotIpv4,
        Self::NotReady,
        Self::FibFailed,
        Self::HelperFailed,
        Self::ToTunnelPort,
        Self::ToGuarded,
        Self::TooBig,
    ];

    /// Slot in the counters map.
    pub const fn index(self) -> u32 {
        DROP_BASE + self as u32
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Malformed => "drop_malformed",
            Self::Spoofed => "drop_spoofed",
            Self::Isolation => "drop_isolation",
            Self::NoRoute => "drop_no_route",
            Self::Internal => "drop_internal",
            Self::UnknownEndpoint => "drop_unknown_endpoint",
            Self::ArpUnsupported => "drop_arp_unsupported",
            Self::ArpMiss => "drop_arp_miss",
            Self::UnsupportedProtocol => "drop_unsupported_protocol",
            Self::OuterIpOptions => "drop_outer_ip_options",
            Self::OuterFragment => "drop_outer_fragment",
            Self::VxlanNoIFlag => "drop_vxlan_no_i_flag",
            Self::UnknownVni => "drop_unknown_vni",
            Self::UnknownPeer => "drop_unknown_peer",
            Self::UnknownInnerDest => "drop_unknown_inner_dest",
            Self::InnerNotIpv4 => "drop_inner_not_ipv4",
            Self::NotReady => "drop_not_ready",
            Self::FibFailed => "drop_fib_failed",
            Self::HelperFailed => "drop_helper_failed",
            Self::ToTunnelPort => "drop_to_tunnel_port",
            Self::ToGuarded => "drop_to_guarded_service",
            Self::TooBig => "drop_too_big",
        }
    }
}

const _: () = assert!(Counter::ALL.len() as u32 <= DROP_BASE);
const _: () = assert!(DROP_BASE + DropReason::ALL.len() as u32 <= COUNTER_SLOTS);

/// One network's counters: every slot of [`COUNTER_SLOTS`], indexed like
/// the global array. The value of `OVL_NET_COUNTERS` (a per-CPU array
/// indexed by the network's counter slot): userspace zeroes a slot when it
/// gives it to a network; the programs only add.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetCounters {
    pub slots: [CounterValue; COUNTER_SLOTS as usize],
}
const _: () = assert!(core::mem::size_of::<NetCounters>() == 16 * COUNTER_SLOTS as usize);

impl Default for NetCounters {
    fn default() -> Self {
        Self {
            slots: [CounterValue {
                packets: 0,
                bytes: 0,
            }; COUNTER_SLOTS as usize],
        }
    }
}
