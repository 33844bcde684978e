//! Deciding whether an underlay frame is VXLAN for one of our endpoints.
//! Shared by the XDP and TC entry points: both see the outer Ethernet header
//! at `data` and use direct packet access.

use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr, vxlan::VxlanHdr};
use overlay_common::{
    CONFIG_FLAG_READY, DropReason, PeerKey, ROUTE_LOCAL, RouteKey, VXLAN_ENCAP_LEN, VXLAN_FLAG_I,
};

use crate::{
    counters::NetRef,
    icmp::learn_path_mtu,
    maps::{OVL_CONFIG, OVL_NETWORKS},
    parse::{
        ETH_P_IP, IPPROTO_ICMP, IPPROTO_UDP, addr, ipv4_header_len, is_first_fragment, is_fragment,
        ptr_at, read_at,
    },
    slots,
};

/// Offsets of a VXLAN packet whose outer IPv4 header has no options.
const OUTER_IP_OFF: usize = 14;
const OUTER_UDP_OFF: usize = OUTER_IP_OFF + 20;
const VXLAN_OFF: usize = OUTER_UDP_OFF + 8;
const INNER_ETH_OFF: usize = VXLAN_OFF + 8;
const INNER_IP_OFF: usize = INNER_ETH_OFF + 14;
const _: () = assert!(INNER_ETH_OFF == VXLAN_ENCAP_LEN as usize);

/// What to do with an underlay frame.
pub enum Underlay {
    /// Not VXLAN for us: leave it to the kernel untouched.
    Pass,
    /// An ICMP "fragmentation needed" about our VXLAN: path MTU learned,
    /// the message passed on to the kernel untouched.
    PathMtuLearned,
    /// Strip `VXLAN_ENCAP_LEN` bytes and deliver to a local endpoint.
    Decap(Delivery),
}

/// The local endpoint a decapsulated frame goes to.
pub struct Delivery {
    /// Host-side veth of the endpoint.
    pub ifindex: u32,
    /// The endpoint's MAC (inner destination).
    pub mac: [u8; 6],
    /// Inner source MAC, kept for the TC path, which rewrites the outer
    /// Ethernet header instead of exposing the inner one.
    pub inner_src: [u8; 6],
}

/// Sets `net` to the packet's VNI once its VXLAN header is read, and its
/// counter slot once the route names it, so the caller can count the
/// outcome for that network.
#[inline(always)]
pub fn classify(start: usize, end: usize, net: &mut NetRef) -> Result<Underlay, DropReason> {
    let Ok(eth) = ptr_at::<EthHdr>(start, end, 0) else {
        return Ok(Underlay::Pass);
    };
    // SAFETY: bounds checked by ptr_at (same for every deref below).
    if unsafe { (*eth).ether_type } != ETH_P_IP {
        return Ok(Underlay::Pass);
    }
    let Ok(ip) = read_at::<Ipv4Hdr>(start, end, OUTER_IP_OFF) else {
        return Ok(Underlay::Pass);
    };
    // Invalid IPv4 is the stack's to drop; we only claim valid VXLAN.
    let Some(header_len) = ipv4_header_len(&ip) else {
        return Ok(Underlay::Pass);
    };
    if ip.proto != IPPROTO_UDP && ip.proto != IPPROTO_ICMP {
        return Ok(Underlay::Pass);
    }
    let cfg = match OVL_CONFIG.get(0) {
        Some(cfg) if cfg.flags & CONFIG_FLAG_READY != 0 => *cfg,
        _ => return Ok(Underlay::Pass),
    };
    if addr(ip.dst_addr) != cfg.underlay_ip {
        return Ok(Underlay::Pass);
    }
    if ip.proto == IPPROTO_ICMP {
        let learned = header_len == 20 && !is_fragment(&ip) && learn_path_mtu(start, end, &cfg);
        return Ok(if learned {
            Underlay::PathMtuLearned
        } else {
            Underlay::Pass
        });
    }
    // Later fragments carry no UDP header: nothing to match on.
    if is_fragment(&ip) && !is_first_fragment(&ip) {
        return Ok(Underlay::Pass);
    }
    if header_len != 20 {
        // The UDP header sits behind the options; the offset is bounded
        // (IHL <= 15) which the verifier accepts for this one check.
        let Ok(udp) = ptr_at::<UdpHdr>(start, end, OUTER_IP_OFF + (header_len & 0x3c)) else {
            return Ok(Underlay::Pass);
        };
        if u16::from_be_bytes(unsafe { (*udp).dst }) == cfg.vxlan_port {
            return Err(DropReason::OuterIpOptions);
        }
        return Ok(Underlay::Pass);
    }
    let Ok(udp) = ptr_at::<UdpHdr>(start, end, OUTER_UDP_OFF) else {
        return Ok(Underlay::Pass);
    };
    if u16::from_be_bytes(unsafe { (*udp).dst }) != cfg.vxlan_port {
        return Ok(Underlay::Pass);
    }
    if is_fragment(&ip) {
        return Err(DropReason::OuterFragment);
    }

    let vxlan = read_at::<VxlanHdr>(start, end, VXLAN_OFF).map_err(|()| DropReason::Malformed)?;
    if vxlan.flags & VXLAN_FLAG_I == 0 {
        return Err(DropReason::VxlanNoIFlag);
    }
    let vni = u32::from_be_bytes([0, vxlan.vni[0], vxlan.vni[1], vxlan.vni[2]]);
    net.vni = vni;
    let peer = PeerKey {
        ip: addr(ip.src_addr),
        vni,
    };
    // VNI 0 is no network's; it is also the key of a free slot.
    if vni == 0 {
        return Err(DropReason::UnknownVni);
    }
    // Peers exist only for networks this host serves, so one lookup admits
    // the packet; the networks map is asked only to name the drop reason.
    if !slots::peer_allowed(&peer) {
        if OVL_NETWORKS.get_ptr(&vni).is_none() {
            return Err(DropReason::UnknownVni);
        }
        return Err(DropReason::UnknownPeer);
    }

    let inner_eth =
        read_at::<EthHdr>(start, end, INNER_ETH_OFF).map_err(|()| DropReason::Malformed)?;
    if inner_eth.ether_type != ETH_P_IP {
        return Err(DropReason::InnerNotIpv4);
    }
    let inner_ip =
        read_at::<Ipv4Hdr>(start, end, INNER_IP_OFF).map_err(|()| DropReason::Malformed)?;
    if ipv4_header_len(&inner_ip).is_none() {
        return Err(DropReason::Malformed);
    }
    let key = RouteKey {
        vni,
        ip: addr(inner_ip.dst_addr),
    };
    match slots::route(&key) {
        Some(route) if route.kind == ROUTE_LOCAL => {
            net.counter_slot = route.counter_slot;
            Ok(Underlay::Decap(Delivery {
                ifindex: route.ifindex,
                mac: route.mac,
                inner_src: inner_eth.src_addr,
            }))
        }
        _ => Err(DropReason::UnknownInnerDest),
    }
}
