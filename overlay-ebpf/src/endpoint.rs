//! Attach point: tcx ingress of each endpoint's host-side veth. Sees every
//! frame the container sends (its egress), with the Ethernet header at
//! offset 0. `skb->ifindex` is the host-side veth, the key of the endpoint.

use aya_ebpf::{
    EbpfContext,
    bindings::{__sk_buff, TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_redirect_peer,
    macros::classifier,
    maps::lpm_trie::Key,
    programs::TcContext,
};
use network_types::ip::Ipv4Hdr;
use overlay_common::{
    Counter, DropReason, EndpointInfo, NETWORK_FLAG_INTERNAL, ROUTE_LOCAL, ROUTE_REMOTE, RouteKey,
    events::HOOK_ENDPOINT,
};

use crate::{
    arp,
    counters::{NetRef, finish},
    dns, encap,
    events::Seen,
    guard,
    maps::{OVL_NETWORKS, OVL_SUBNETS},
    parse::{
        ETH_P_ARP, ETH_P_IP, Words, addr, ipv4_header_len, is_fragment, load_eth, read_at,
        write_front,
    },
    slots,
};

/// Ethernet + minimal IPv4, and Ethernet + ARP: what must be linear.
const IPV4_MIN: u32 = 14 + 20;
const ARP_LEN: u32 = 14 + 28;
/// An IPv4 header without options.
const IPV4_HEADER_LEN: usize = 20;

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's program macros hand the context over by value"
)]
pub fn endpoint_ingress(ctx: TcContext) -> i32 {
    // Bytes as the packet arrived, before any encap grows it.
    let len = ctx.len();
    let mut net = NetRef::default();
    let result = try_endpoint_ingress(&ctx, &mut net);
    finish(len, net, result, TC_ACT_SHOT, || Seen {
        hook: HOOK_ENDPOINT,
        // SAFETY: ctx wraps the program's valid __sk_buff.
        ifindex: unsafe { (*ctx.as_ptr().cast::<__sk_buff>()).ifindex },
        start: ctx.data(),
        end: ctx.data_end(),
    })
}

/// `net` is set to the sender's network as soon as it is known.
fn try_endpoint_ingress(ctx: &TcContext, net: &mut NetRef) -> Result<(i32, Counter), DropReason> {
    // SAFETY: ctx wraps the program's valid __sk_buff.
    let ifindex = unsafe { (*ctx.as_ptr().cast::<__sk_buff>()).ifindex };
    let ep = slots::endpoint(ifindex).ok_or(DropReason::UnknownEndpoint)?;
    *net = NetRef {
        vni: ep.vni,
        counter_slot: ep.counter_slot,
    };

    // Headers of locally generated packets are normally linear already; pull
    // when they are not so direct packet access can see them.
    let want = if ctx.len() >= ARP_LEN {
        ARP_LEN
    } else {
        IPV4_MIN
    };
    if ((ctx.data_end() - ctx.data()) as u32) < want {
        ctx.pull_data(want).map_err(|_| DropReason::Malformed)?;
    }
    let eth = load_eth(ctx.data(), ctx.data_end()).map_err(|()| DropReason::Malformed)?;
    if eth.ether_type == ETH_P_ARP {
        let action = arp::answer(ctx, &ep, ifindex)?;
        return Ok((action, Counter::ArpReply));
    }
    if eth.ether_type != ETH_P_IP {
        return Err(DropReason::UnsupportedProtocol);
    }

    let ip: Ipv4Hdr =
        read_at(ctx.data(), ctx.data_end(), 14).map_err(|()| DropReason::Malformed)?;
    let header_len = ipv4_header_len(&ip).ok_or(DropReason::Malformed)?;
    let total_len = usize::from(u16::from_be_bytes(ip.tot_len));
    if total_len < header_len || total_len > ctx.len() as usize - 14 {
        return Err(DropReason::Malformed);
    }
    if eth.src_addr != ep.mac || addr(ip.src_addr) != ep.ip {
        return Err(DropReason::Spoofed);
    }
    let dst = addr(ip.dst_addr);

    let key = RouteKey {
        vni: ep.vni,
        ip: dst,
    };
    if let Some(route) = slots::route(&key) {
        if route.kind == ROUTE_LOCAL {
            // Same host, same network: straight into the destination's
            // namespace, skipping the host stack and the veth backlog.
            write_front(ctx, &Words(route.mac))?;
            // SAFETY: plain helper call.
            let action = unsafe { bpf_redirect_peer(route.ifindex, 0) };
            return Ok((action as i32, Counter::ForwardLocal));
        }
        if route.kind == ROUTE_REMOTE {
            return encap::encapsulate(ctx, &eth, &ip, header_len, ep.vni, &route);
        }
    }
    // A query for a name on its network is answered here; other DNS
    // goes on to the daemon's resolver on the gateway.
    if header_len == IPV4_HEADER_LEN
        && !is_fragment(&ip)
        && let Some(answered) = dns::answer(ctx, &eth, &ip, &ep)?
    {
        return Ok(answered);
    }
    let action = gateway_path(&ep, dst)?;
    guard::check(ctx, &ip, header_len)?;
    Ok(action)
}

/// A destination that is not an endpoint of the sender's network: the
/// host itself (its gateway address) or beyond it, unless the network is
/// internal or the destination is in another network.
#[inline(always)]
fn gateway_path(ep: &EndpointInfo, dst: u32) -> Result<(i32, Counter), DropReason> {
    // SAFETY: copied out at once.
    let net = match unsafe { OVL_NETWORKS.get(&ep.vni) } {
        Some(net) => *net,
        None => return Err(DropReason::NoRoute),
    };
    if net.gateway != 0 && dst == net.gateway {
        return Ok((TC_ACT_OK, Counter::ToHost));
    }
    if dst & net.mask == net.subnet {
        return Err(DropReason::NoRoute);
    }
    // Inside some other network's subnet: that is the isolation boundary,
    // never handed to the host stack to route across.
    if OVL_SUBNETS.get(&Key::new(32, dst)).is_some() {
        return Err(DropReason::Isolation);
    }
    if net.flags & NETWORK_FLAG_INTERNAL != 0 {
        return Err(DropReason::Internal);
    }
    Ok((TC_ACT_OK, Counter::ToHost))
}
