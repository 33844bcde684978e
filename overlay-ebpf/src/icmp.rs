//! ICMP "fragmentation needed" (RFC 792 type 3 code 4, with the next-hop
//! MTU of RFC 1191), both ways:
//! - [`frag_needed`]: a container's packet is too big for the underlay
//!   path once encapsulated. The packet becomes the ICMP error (trimmed,
//!   headers rewritten) and goes straight back into the container, whose
//!   stack lowers its path MTU and resends smaller: path-MTU discovery
//!   across the overlay, where a silent drop would black-hole TCP.
//! - [`learn_path_mtu`]: a router on the underlay sent this host such an
//!   error about one of our VXLAN packets. No socket owns the tunnel's UDP
//!   flow, so the kernel would learn nothing; the path MTU is kept in
//!   `OVL_PATH_MTUS` for the encap path instead.

use core::mem;

use aya_ebpf::{
    EbpfContext,
    bindings::__sk_buff,
    helpers::{bpf_ktime_get_coarse_ns, bpf_redirect_peer},
    programs::TcContext,
};
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr};
use overlay_common::{
    Config, Counter, DropReason, MIN_PATH_MTU, PATH_MTU_TTL_NS, PathMtu, VXLAN_ENCAP_LEN,
};

use crate::{
    csum,
    maps::{OVL_HOST_GENS, OVL_HOSTS, OVL_NETWORKS, OVL_PATH_MTUS},
    parse::{ETH_P_IP, IPPROTO_ICMP, IPPROTO_UDP, addr, read_at},
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
/// TTL and TOS (internetwork control) of the errors we send, as Linux's.
const ICMP_TTL: u8 = 64;
const TOS_INTERNETWORK_CONTROL: u8 = 0xc0;
/// The smallest MTU IPv4 allows (RFC 791): never advertised lower.
const MIN_IPV4_MTU: u32 = 68;

/// ICMP destination unreachable header with the RFC 1191 MTU field.
#[repr(C)]
#[derive(Clone, Copy)]
struct DestUnreach {
    kind: u8,
    code: u8,
    check: [u8; 2],
    unused: [u8; 2],
    /// Next-hop MTU, network order.
    mtu: [u8; 2],
}

/// What the checksum covers: the ICMP header, then the offending packet's
/// IPv4 header and first 8 bytes of payload (RFC 792).
#[repr(C)]
#[derive(Clone, Copy)]
struct IcmpBody {
    icmp: DestUnreach,
    orig_ip: Ipv4Hdr,
    orig_l4: [u8; 8],
}
const ICMP_BODY_LEN: usize = mem::size_of::<IcmpBody>();
const _: () = assert!(ICMP_BODY_LEN == 36);

/// The whole error frame as it goes back to the container.
#[repr(C)]
#[derive(Clone, Copy)]
struct FragNeededFrame {
    eth: EthHdr,
    ip: Ipv4Hdr,
    body: IcmpBody,
}
const FRAME_LEN: usize = mem::size_of::<FragNeededFrame>();
const _: () = assert!(FRAME_LEN == 14 + 20 + ICMP_BODY_LEN);

/// Turns the container's packet in `ctx` (Ethernet `eth`, IPv4 `ip` of
/// `header_len` bytes, on network `vni`) into an ICMP "fragmentation
/// needed" telling it that `path_mtu` bytes of outer packet fit, i.e.
/// `path_mtu - VXLAN_ENCAP_LEN` of its own, and hands that back to it.
#[inline(always)]
pub fn frag_needed(
    ctx: &TcContext,
    eth: &EthHdr,
    ip: &Ipv4Hdr,
    header_len: usize,
    vni: u32,
    path_mtu: u32,
) -> Result<(i32, Counter), DropReason> {
    // The error quotes a 20-byte header; one with options would need a
    // variable-length quote, for a case no stack sends in practice.
    if header_len != mem::size_of::<Ipv4Hdr>() {
        return Err(DropReason::TooBig);
    }
    let orig_l4: [u8; 8] = ctx
        .load(mem::size_of::<EthHdr>() + mem::size_of::<Ipv4Hdr>())
        .map_err(|_| DropReason::Malformed)?;
    let inner_mtu = path_mtu
        .saturating_sub(VXLAN_ENCAP_LEN)
        .max(MIN_IPV4_MTU)
        .min(u32::from(u16::MAX)) as u16;
    // From the network's gateway, the router on the container's path; a
    // network without one answers from the destination itself.
    // SAFETY: copied out at once.
    let source = match unsafe { OVL_NETWORKS.get(&vni) } {
        Some(net) if net.gateway != 0 => net.gateway.to_ne_bytes(),
        _ => ip.dst_addr,
    };

    let mut body = IcmpBody {
        icmp: DestUnreach {
            kind: ICMP_DEST_UNREACH,
            code: ICMP_FRAG_NEEDED,
            check: [0, 0],
            unused: [0, 0],
            mtu: inner_mtu.to_be_bytes(),
        },
        orig_ip: *ip,
        orig_l4,
    };
    // SAFETY: IcmpBody is 36 bytes of plain data (alignment 1), readable
    // as 18 words.
    let words: &[[u8; 2]; ICMP_BODY_LEN / 2] = unsafe { &*(core::ptr::from_ref(&body).cast()) };
    body.icmp.check = csum::fold(csum::sum(words));
    let mut frame = FragNeededFrame {
        eth: EthHdr {
            dst_addr: eth.src_addr,
            src_addr: eth.dst_addr,
            ether_type: ETH_P_IP,
        },
        ip: Ipv4Hdr {
            vihl: 0x45,
            tos: TOS_INTERNETWORK_CONTROL,
            tot_len: ((FRAME_LEN - mem::size_of::<EthHdr>()) as u16).to_be_bytes(),
            id: [0, 0],
            frags: [0, 0],
            ttl: ICMP_TTL,
            proto: IPPROTO_ICMP,
            check: [0, 0],
            src_addr: source,
            dst_addr: ip.src_addr,
        },
        body,
    };
    frame.ip.check = csum::ipv4_header(&frame.ip);

    // Trimming also drops GSO state: the super-packet becomes one small
    // frame. A CHECKSUM_PARTIAL mark from the container's stack survives,
    // which its receive path takes as "verified": harmless for a frame
    // whose checksums we just computed.
    ctx.change_tail(FRAME_LEN as u32, 0)
        .map_err(|_| DropReason::HelperFailed)?;
    ctx.store(0, &frame, 0)
        .map_err(|_| DropReason::HelperFailed)?;
    Ok((back_to_sender(ctx), Counter::IcmpFragNeeded))
}

/// Sends the packet in `ctx`, rewritten into a reply, back out of the
/// host-side veth it came in on: into the container that sent it.
#[inline(always)]
pub fn back_to_sender(ctx: &TcContext) -> i32 {
    // SAFETY: ctx wraps the program's valid __sk_buff.
    let ifindex = unsafe { (*ctx.as_ptr().cast::<__sk_buff>()).ifindex };
    // SAFETY: plain helper call.
    unsafe { bpf_redirect_peer(ifindex, 0) as i32 }
}

/// An ICMP error as it arrives on the underlay (after a 20-byte outer
/// IPv4 header): the header, then the quoted packet's IPv4 and UDP headers.
#[repr(C)]
#[derive(Clone, Copy)]
struct QuotedUdp {
    icmp: DestUnreach,
    ip: Ipv4Hdr,
    udp: UdpHdr,
}

/// Offset of the ICMP header in an underlay frame without IP options.
const ICMP_OFF: usize = 14 + 20;

/// Learns the path MTU from an ICMP "fragmentation needed" (at `start`,
/// IPv4 without options already checked by the caller) when it quotes a
/// VXLAN packet this host sent; true when it did. The value is raised to
/// `MIN_PATH_MTU`, and a claim no smaller than the quoted packet, or
/// zero (routers from before RFC 1191), teaches nothing.
#[inline(always)]
pub fn learn_path_mtu(start: usize, end: usize, cfg: &Config) -> bool {
    let Ok(q) = read_at::<QuotedUdp>(start, end, ICMP_OFF) else {
        return false;
    };
    if q.icmp.kind != ICMP_DEST_UNREACH
        || q.icmp.code != ICMP_FRAG_NEEDED
        || q.ip.vihl != 0x45
        || q.ip.proto != IPPROTO_UDP
        || addr(q.ip.src_addr) != cfg.underlay_ip
        || u16::from_be_bytes(q.udp.dst) != cfg.vxlan_port
    {
        return false;
    }
    let claimed = u32::from(u16::from_be_bytes(q.icmp.mtu));
    let sent = u32::from(u16::from_be_bytes(q.ip.tot_len));
    if claimed == 0 || claimed >= sent {
        return false;
    }
    let remote = addr(q.ip.dst_addr);
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let mut mtu = claimed.max(MIN_PATH_MTU);
    // A smaller value still in force stays (as the kernel's own PMTU).
    // SAFETY: copied out at once.
    if let Some(old) = unsafe { OVL_PATH_MTUS.get(&remote) }.copied()
        && now < old.expires_ns
        && old.mtu < mtu
    {
        mtu = old.mtu;
    }
    let entry = PathMtu {
        mtu,
        _pad0: 0,
        expires_ns: now + PATH_MTU_TTL_NS,
    };
    // A failed insert leaves the old path MTU: the next ICMP tries again.
    let _ = OVL_PATH_MTUS.insert(&remote, &entry, 0);
    // The cached next hops carry the old MTU: a new generation voids them
    // on every CPU, and the next packet to that host asks the FIB again.
    // SAFETY: copied out at once.
    if let Some(host) = unsafe { OVL_HOSTS.get(&remote) }.copied()
        && let Some(generation) = OVL_HOST_GENS.get_ptr_mut(host.slot)
    {
        // SAFETY: a valid array value. Shared by all CPUs, but no atomic
        // is needed (nor does core offer one on this target): two CPUs
        // that both learn at once both write the old value plus one, which
        // voids the old entries all the same.
        unsafe { *generation = (*generation).wrapping_add(1) };
    }
    true
}

/// The path MTU learned for `remote` if still in force.
#[inline(always)]
pub fn learned_path_mtu(remote: u32, now: u64) -> Option<u32> {
    // SAFETY: copied out at once.
    let entry = unsafe { OVL_PATH_MTUS.get(&remote) }.copied()?;
    (now < entry.expires_ns).then_some(entry.mtu)
}
