//! VXLAN encapsulation (RFC 7348) on the TC path: grow the packet with
//! `bpf_skb_adjust_room` and the ENCAP flags so GSO/TSO super-packets keep
//! their offloads and get segmented as UDP tunnel packets, write the outer
//! headers in one store, and send it to the next hop the kernel FIB picked
//! (cached per remote host for `NEXTHOP_TTL_JIFFIES`). A packet the path to that
//! host cannot carry once encapsulated is answered with an ICMP
//! "fragmentation needed" instead ([`crate::icmp`]).

use core::mem;

use aya_ebpf::{
    EbpfContext,
    bindings::{
        __sk_buff, BPF_ADJ_ROOM_ENCAP_L2_SHIFT, BPF_F_ADJ_ROOM_ENCAP_L2_ETH,
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L4_UDP, BPF_F_ADJ_ROOM_FIXED_GSO,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_OUTPUT,
        bpf_adj_room_mode, bpf_fib_lookup, bpf_redir_neigh,
    },
    helpers::{
        bpf_fib_lookup, bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_redirect, bpf_redirect_neigh,
    },
    programs::TcContext,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr, vxlan::VxlanHdr};
use overlay_common::{
    CONFIG_FLAG_READY, Config, Counter, DropReason, NEXTHOP_TTL_JIFFIES, NextHop, RouteValue,
    VXLAN_ENCAP_LEN, VXLAN_FLAG_I,
};

use crate::{
    csum, icmp,
    maps::{OVL_CONFIG, OVL_HOST_GENS, OVL_NEXTHOPS},
    parse::{
        ETH_P_IP, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, Words, addr, is_fragment, ptr_at,
        write_front,
    },
};

const AF_INET: u8 = 2;
const IP_DF: [u8; 2] = 0x4000u16.to_be_bytes();
const OUTER_TTL: u8 = 64;
/// `tot_len` for the FIB lookup: any nonzero length makes the kernel
/// report the route's MTU (its metric, a learned exception, or the
/// device's) in `mtu_result`; the smallest IPv4 packet never fails it.
const FIB_PROBE_LEN: u16 = 68;

/// Everything in front of the inner IPv4 header after encapsulation.
#[repr(C)]
#[derive(Clone, Copy)]
struct VxlanEncapHdr {
    outer_eth: EthHdr,
    ip: Ipv4Hdr,
    udp: UdpHdr,
    vxlan: VxlanHdr,
    inner_eth: EthHdr,
}
const _: () = assert!(mem::size_of::<VxlanEncapHdr>() == 64);
const _: () = assert!(mem::size_of::<VxlanEncapHdr>() - 14 == VXLAN_ENCAP_LEN as usize);

/// The host config, or `NotReady` until the underlay is attached.
#[inline(always)]
pub fn config() -> Result<Config, DropReason> {
    match OVL_CONFIG.get(0) {
        Some(cfg) if cfg.flags & CONFIG_FLAG_READY != 0 => Ok(*cfg),
        _ => Err(DropReason::NotReady),
    }
}

/// Outer UDP source port from the inner flow hash, spread over the
/// configured range the way the kernel's `udp_flow_src_port` does.
#[inline(always)]
fn source_port(hash: u32, cfg: &Config) -> u16 {
    let min = u32::from(cfg.src_port_min);
    let max = u32::from(cfg.src_port_max);
    if max <= min {
        return cfg.src_port_min;
    }
    (((u64::from(hash) * u64::from(max - min)) >> 32) as u32 + min) as u16
}

/// Where an encapsulated frame leaves: a resolved next hop (from the cache
/// or the FIB), or one whose neighbour the kernel still has to resolve.
enum Route {
    Resolved(NextHop),
    /// Egress device, next-hop address (network order) for
    /// `bpf_redirect_neigh`, and path MTU.
    Unresolved {
        ifindex: u32,
        gateway: u32,
        mtu: u32,
    },
}

impl Route {
    /// Bytes of outer IPv4 packet the path carries.
    #[inline(always)]
    fn mtu(&self) -> u32 {
        match self {
            Self::Resolved(hop) => hop.mtu,
            Self::Unresolved { mtu, .. } => *mtu,
        }
    }
}

/// The path MTU towards `remote_ip`: the FIB's, or the one learned from
/// ICMP when smaller.
#[inline(always)]
fn path_mtu(fib_mtu: u16, remote_ip: u32, now: u64) -> u32 {
    // Zero: a kernel that does not report it; the device bounds it then.
    let fib = if fib_mtu == 0 {
        u32::from(u16::MAX)
    } else {
        u32::from(fib_mtu)
    };
    match icmp::learned_path_mtu(remote_ip, now) {
        Some(learned) if learned < fib => learned,
        _ => fib,
    }
}

/// The underlay next hop towards `remote_ip` (whose cache slot is `slot`,
/// 0 for none): this CPU's cached one while it is fresh and of the slot's
/// current generation, else the FIB's (cached when its neighbour is
/// resolved). A route or neighbour change is therefore seen within
/// `NEXTHOP_TTL_JIFFIES`, a learned path MTU at once.
#[inline(always)]
fn next_hop(ctx: &TcContext, cfg: &Config, remote_ip: u32, slot: u32) -> Result<Route, DropReason> {
    // SAFETY: plain helper call (inlined by the verifier: a load of jiffies).
    let now = unsafe { bpf_jiffies64() };
    let generation = OVL_HOST_GENS.get(slot).copied().unwrap_or(0);
    let cached = if slot == 0 {
        None
    } else {
        OVL_NEXTHOPS.get_ptr_mut(slot)
    };
    if let Some(entry) = cached {
        // SAFETY: this CPU's copy; only this CPU writes it while we run.
        let hop = unsafe { *entry };
        if hop.remote_ip == remote_ip && hop.generation == generation && now < hop.expires_jiffies {
            return Ok(Route::Resolved(hop));
        }
    }
    // Past the cache: the clock learned path MTUs expire by.
    // SAFETY: plain helper call.
    let now_ns = unsafe { bpf_ktime_get_coarse_ns() };

    // SAFETY: all-zero is a valid bpf_fib_lookup.
    let mut fib: bpf_fib_lookup = unsafe { mem::zeroed() };
    fib.family = AF_INET;
    fib.l4_protocol = IPPROTO_UDP;
    fib.ifindex = cfg.underlay_ifindex;
    fib.__bindgen_anon_1.tot_len = FIB_PROBE_LEN;
    fib.__bindgen_anon_3.ipv4_src = cfg.underlay_ip;
    fib.__bindgen_anon_4.ipv4_dst = remote_ip;
    // SAFETY: fib is a valid, writable bpf_fib_lookup of the given size.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            &raw mut fib,
            mem::size_of::<bpf_fib_lookup>() as i32,
            BPF_FIB_LOOKUP_OUTPUT,
        )
    } as u32;
    match rc {
        BPF_FIB_LKUP_RET_SUCCESS => {
            // SAFETY: the union holds the MACs after a successful lookup.
            let macs = unsafe { fib.__bindgen_anon_6.__bindgen_anon_2 };
            let hop = NextHop {
                ifindex: fib.ifindex,
                smac: macs.smac,
                dmac: macs.dmac,
                // SAFETY: after a lookup with tot_len set the union holds
                // the route's MTU.
                mtu: path_mtu(
                    unsafe { fib.__bindgen_anon_1.mtu_result },
                    remote_ip,
                    now_ns,
                ),
                remote_ip,
                generation,
                _pad0: 0,
                expires_jiffies: now + NEXTHOP_TTL_JIFFIES,
            };
            if let Some(entry) = cached {
                // SAFETY: as above.
                unsafe { *entry = hop };
            }
            Ok(Route::Resolved(hop))
        }
        // No neighbour entry yet: not cached, so every packet goes through
        // the kernel's resolution (which queues it) until there is one.
        BPF_FIB_LKUP_RET_NO_NEIGH => Ok(Route::Unresolved {
            ifindex: fib.ifindex,
            // SAFETY: after a lookup the union holds the next hop's address.
            gateway: unsafe { fib.__bindgen_anon_4.ipv4_dst },
            // The kernel returns before it reports the MTU (the field
            // still holds our probe length): only a learned one applies
            // until the neighbour resolves and the hop is cached.
            mtu: path_mtu(0, remote_ip, now_ns),
        }),
        _ => Err(DropReason::FibFailed),
    }
}

/// The inner flow's hash, for the outer source port. A socket's packets
/// carry one already (`skb->hash`); for anything else, hash the inner
/// addresses, protocol and ports here rather than with
/// `bpf_get_hash_recalc`, whose flow dissector costs about 200 ns a packet.
/// Fragments hash without ports, as the kernel's dissector does, so all of
/// a datagram's pieces take one path.
#[inline(always)]
fn flow_hash(ctx: &TcContext, ip: &Ipv4Hdr, header_len: usize) -> u32 {
    // SAFETY: ctx wraps the program's valid __sk_buff.
    let hash = unsafe { (*ctx.as_ptr().cast::<__sk_buff>()).hash };
    if hash != 0 {
        return hash;
    }
    let ports = if matches!(ip.proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP) && !is_fragment(ip)
    {
        let at = mem::size_of::<EthHdr>() + header_len;
        match ptr_at::<[u8; 4]>(ctx.data(), ctx.data_end(), mem::size_of::<EthHdr>() + 20) {
            // The common case (no IP options) reads the linear part directly.
            // SAFETY: bounds checked by ptr_at.
            Ok(p) if header_len == 20 => u32::from_ne_bytes(unsafe { *p }),
            // Options, or ports past the linear part: bpf_skb_load_bytes,
            // whose variable offset needs no proof for the verifier.
            _ => ctx.load::<u32>(at).unwrap_or(0),
        }
    } else {
        0
    };
    mix(
        addr(ip.src_addr),
        addr(ip.dst_addr),
        ports ^ u32::from(ip.proto),
    )
}

/// Three words to 32 well-spread bits (multiply-xorshift, the murmur3
/// finaliser): `source_port` uses the high bits.
#[inline(always)]
fn mix(a: u32, b: u32, c: u32) -> u32 {
    let mut h = u64::from(a) | (u64::from(b) << 32);
    h ^= u64::from(c).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h as u32
}

/// Bytes of inner IPv4 packet that go on the wire per segment: the whole
/// packet, or for a GSO super-packet one segment (headers plus
/// `gso_size`). Zero when unknown (GSO of another protocol): not checked.
#[inline(always)]
fn segment_len(ctx: &TcContext, ip: &Ipv4Hdr, header_len: usize) -> u32 {
    // SAFETY: ctx wraps the program's valid __sk_buff.
    let gso_size = unsafe { (*ctx.as_ptr().cast::<__sk_buff>()).gso_size };
    if gso_size == 0 {
        return u32::from(u16::from_be_bytes(ip.tot_len));
    }
    let l4_header = match ip.proto {
        IPPROTO_TCP => {
            // Data offset: the high nibble of byte 12, in 32-bit words.
            let at = mem::size_of::<EthHdr>() + header_len + 12;
            match ctx.load::<u8>(at) {
                Ok(b) => u32::from(b >> 4) * 4,
                Err(_) => return 0,
            }
        }
        IPPROTO_UDP => mem::size_of::<UdpHdr>() as u32,
        _ => return 0,
    };
    header_len as u32 + l4_header + gso_size
}

/// Encapsulates the frame in `ctx` (whose Ethernet header is `inner_eth`
/// and IPv4 header `inner_ip`, `header_len` bytes) for the remote endpoint
/// of `dest` in `vni`, and redirects it out of the underlay; or, when it
/// would not fit the path, answers it with an ICMP "fragmentation needed".
/// Returns the TC action and outcome.
#[inline(always)]
pub fn encapsulate(
    ctx: &TcContext,
    inner_eth: &EthHdr,
    inner_ip: &Ipv4Hdr,
    header_len: usize,
    vni: u32,
    dest: &RouteValue,
) -> Result<(i32, Counter), DropReason> {
    let cfg = config()?;
    let (dst_mac, remote_ip) = (dest.mac, dest.remote_ip);

    // Resolve the next hop before touching the packet, so a failure drops
    // an unmodified frame.
    let route = next_hop(ctx, &cfg, remote_ip, dest.host_slot)?;
    // DF or not: the overlay cannot fragment, and the outer header has DF
    // set, so a larger packet would only be lost further on.
    let mtu = route.mtu();
    if segment_len(ctx, inner_ip, header_len) + VXLAN_ENCAP_LEN > mtu {
        return icmp::frag_needed(ctx, inner_eth, inner_ip, header_len, vni, mtu);
    }
    let sport = source_port(flow_hash(ctx, inner_ip, header_len), &cfg);

    let flags = u64::from(BPF_F_ADJ_ROOM_FIXED_GSO)
        | u64::from(BPF_F_ADJ_ROOM_ENCAP_L3_IPV4)
        | u64::from(BPF_F_ADJ_ROOM_ENCAP_L4_UDP)
        | u64::from(BPF_F_ADJ_ROOM_ENCAP_L2_ETH)
        | ((mem::size_of::<EthHdr>() as u64) << BPF_ADJ_ROOM_ENCAP_L2_SHIFT);
    ctx.adjust_room(
        VXLAN_ENCAP_LEN as i32,
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
        flags,
    )
    .map_err(|_| DropReason::HelperFailed)?;

    // Outer lengths are those of this skb; for a GSO super-packet the kernel
    // rewrites them per segment, so clamp rather than fail.
    let outer_ip_len = ctx.len().saturating_sub(mem::size_of::<EthHdr>() as u32);
    let ip_len = if outer_ip_len > 0xffff {
        0xffff
    } else {
        outer_ip_len as u16
    };
    let udp_len = ip_len.saturating_sub(mem::size_of::<Ipv4Hdr>() as u16);

    // Unresolved: zero MACs, which bpf_redirect_neigh fills in.
    let (smac, dmac) = match &route {
        Route::Resolved(hop) => (hop.smac, hop.dmac),
        Route::Unresolved { .. } => ([0; 6], [0; 6]),
    };
    let mut hdr = Words(VxlanEncapHdr {
        outer_eth: EthHdr {
            dst_addr: dmac,
            src_addr: smac,
            ether_type: ETH_P_IP,
        },
        ip: Ipv4Hdr {
            vihl: 0x45,
            tos: 0,
            tot_len: ip_len.to_be_bytes(),
            id: [0, 0],
            frags: IP_DF,
            ttl: OUTER_TTL,
            proto: IPPROTO_UDP,
            check: [0, 0],
            src_addr: cfg.underlay_ip.to_ne_bytes(),
            dst_addr: remote_ip.to_ne_bytes(),
        },
        udp: UdpHdr {
            src: sport.to_be_bytes(),
            dst: cfg.vxlan_port.to_be_bytes(),
            len: udp_len.to_be_bytes(),
            // Zero UDP checksum is allowed for VXLAN over IPv4 (RFC 7348).
            check: [0, 0],
        },
        vxlan: VxlanHdr {
            flags: VXLAN_FLAG_I,
            _reserved1: [0; 3],
            vni: vni_bytes(vni),
            _reserved2: 0,
        },
        inner_eth: EthHdr {
            dst_addr: dst_mac,
            src_addr: inner_eth.src_addr,
            ether_type: inner_eth.ether_type,
        },
    });
    hdr.0.ip.check = csum::vxlan_outer_ipv4(ip_len, OUTER_TTL, cfg.underlay_ip, remote_ip);
    write_front(ctx, &hdr)?;

    // SAFETY: plain helper calls; the redirect happens after we return.
    let action = unsafe {
        match route {
            Route::Resolved(hop) => bpf_redirect(hop.ifindex, 0),
            Route::Unresolved {
                ifindex, gateway, ..
            } => {
                // Let the kernel resolve the neighbour (and queue the
                // packet meanwhile) towards the next hop the FIB chose.
                let mut nh: bpf_redir_neigh = mem::zeroed();
                nh.nh_family = u32::from(AF_INET);
                nh.__bindgen_anon_1.ipv4_nh = gateway;
                bpf_redirect_neigh(
                    ifindex,
                    &raw mut nh,
                    mem::size_of::<bpf_redir_neigh>() as i32,
                    0,
                )
            }
        }
    };
    Ok((action as i32, Counter::Encap))
}

/// 24-bit VNI in network order.
#[inline(always)]
pub fn vni_bytes(vni: u32) -> [u8; 3] {
    let b = vni.to_be_bytes();
    [b[1], b[2], b[3]]
}
