//! ARP answered from the maps: a container's ARP request for an address in
//! its network (or its gateway) is turned into the reply in place and sent
//! back out of the same veth. Nothing floods, nothing is learned.

use aya_ebpf::{helpers::bpf_redirect, programs::TcContext};
use network_types::{arp::ArpHdr, eth::EthHdr};
use overlay_common::{DropReason, EndpointInfo, ROUTE_LOCAL, ROUTE_REMOTE, RouteKey};

use crate::{
    maps::OVL_NETWORKS,
    parse::{ETH_P_ARP, addr, read_at},
    slots,
};

const ARP_HTYPE_ETHER: [u8; 2] = 1u16.to_be_bytes();
const ARP_PTYPE_IPV4: [u8; 2] = 0x0800u16.to_be_bytes();
const ARP_OP_REQUEST: [u8; 2] = 1u16.to_be_bytes();
const ARP_OP_REPLY: [u8; 2] = 2u16.to_be_bytes();

/// Ethernet + ARP for IPv4 over Ethernet, as written back in one store.
#[repr(C)]
#[derive(Clone, Copy)]
struct ArpFrame {
    eth: EthHdr,
    arp: ArpHdr,
}
const _: () = assert!(core::mem::size_of::<ArpFrame>() == 42);

/// Answers the request in `ctx` for endpoint `ep`, sent from `ifindex`.
#[inline(always)]
pub fn answer(ctx: &TcContext, ep: &EndpointInfo, ifindex: u32) -> Result<i32, DropReason> {
    let request: ArpFrame =
        read_at(ctx.data(), ctx.data_end(), 0).map_err(|()| DropReason::Malformed)?;
    let arp = &request.arp;
    if arp.htype != ARP_HTYPE_ETHER
        || arp.ptype != ARP_PTYPE_IPV4
        || arp.hlen != 6
        || arp.plen != 4
        || arp.oper != ARP_OP_REQUEST
    {
        return Err(DropReason::ArpUnsupported);
    }
    if request.eth.src_addr != ep.mac || arp.sha != ep.mac {
        return Err(DropReason::Spoofed);
    }
    let sender_ip = addr(arp.spa);
    let target_ip = addr(arp.tpa);
    // Probes (sender 0.0.0.0) and gratuitous requests for the endpoint's own
    // address must stay unanswered, or the container sees a conflict.
    if sender_ip == 0 || target_ip == ep.ip {
        return Err(DropReason::ArpUnsupported);
    }
    if sender_ip != ep.ip {
        return Err(DropReason::Spoofed);
    }

    let answer_mac = resolve(ep, target_ip)?;
    let reply = ArpFrame {
        eth: EthHdr {
            dst_addr: ep.mac,
            src_addr: answer_mac,
            ether_type: ETH_P_ARP,
        },
        arp: ArpHdr {
            htype: ARP_HTYPE_ETHER,
            ptype: ARP_PTYPE_IPV4,
            hlen: 6,
            plen: 4,
            oper: ARP_OP_REPLY,
            sha: answer_mac,
            spa: arp.tpa,
            tha: ep.mac,
            tpa: arp.spa,
        },
    };
    ctx.store(0, &reply, 0)
        .map_err(|_| DropReason::HelperFailed)?;
    // Back out of the host-side veth: the container receives the reply.
    // SAFETY: plain helper call.
    let action = unsafe { bpf_redirect(ifindex, 0) };
    Ok(action as i32)
}

/// MAC that owns `target` in the endpoint's network.
#[inline(always)]
fn resolve(ep: &EndpointInfo, target: u32) -> Result<[u8; 6], DropReason> {
    let key = RouteKey {
        vni: ep.vni,
        ip: target,
    };
    if let Some(route) = slots::route(&key)
        && (route.kind == ROUTE_LOCAL || route.kind == ROUTE_REMOTE)
    {
        return Ok(route.mac);
    }
    // SAFETY: the value is copied out before the map can change it.
    if let Some(net) = unsafe { OVL_NETWORKS.get(&ep.vni) }
        && net.gateway != 0
        && net.gateway == target
    {
        return Ok(ep.host_mac);
    }
    Err(DropReason::ArpMiss)
}
