//! Attach points on the underlay NIC. Both see frames arriving from the
//! wire with the outer Ethernet header at `data`:
//! - `underlay_xdp`: XDP (native where the driver supports it, else generic).
//! - `underlay_tc`: tcx ingress, the alternative decap path; it keeps GSO
//!   metadata, so GRO-merged super-packets stay whole.

use aya_ebpf::{
    EbpfContext,
    bindings::{
        __sk_buff, BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_FIXED_GSO, TC_ACT_OK, TC_ACT_SHOT,
        bpf_adj_room_mode, xdp_action,
    },
    helpers::{bpf_redirect, bpf_redirect_peer, bpf_xdp_adjust_head},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use network_types::eth::EthHdr;
use overlay_common::{
    Counter, DropReason, VXLAN_ENCAP_LEN,
    events::{HOOK_UNDERLAY_TC, HOOK_UNDERLAY_XDP},
};

use crate::{
    counters::{NetRef, finish},
    decap::{Underlay, classify},
    events::Seen,
    parse::{ETH_P_IP, Words, ptr_at_mut, write_front},
};

#[xdp]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's program macros hand the context over by value"
)]
pub fn underlay_xdp(ctx: XdpContext) -> u32 {
    // Bytes as the frame arrived, before decap shrinks it.
    let len = (ctx.data_end() - ctx.data()) as u32;
    let mut net = NetRef::default();
    let result = try_underlay_xdp(&ctx, &mut net);
    finish(len, net, result, xdp_action::XDP_DROP, || Seen {
        hook: HOOK_UNDERLAY_XDP,
        // SAFETY: ctx wraps the program's valid xdp_md.
        ifindex: unsafe { (*ctx.ctx).ingress_ifindex },
        start: ctx.data(),
        end: ctx.data_end(),
    })
}

/// `net` is set once the VXLAN header names a network.
fn try_underlay_xdp(ctx: &XdpContext, net: &mut NetRef) -> Result<(u32, Counter), DropReason> {
    let delivery = match classify(ctx.data(), ctx.data_end(), net)? {
        Underlay::Pass => return Ok((xdp_action::XDP_PASS, Counter::UnderlayPass)),
        Underlay::PathMtuLearned => return Ok((xdp_action::XDP_PASS, Counter::PathMtuLearned)),
        Underlay::Decap(delivery) => delivery,
    };
    // Drop outer Ethernet/IPv4/UDP/VXLAN: the inner frame starts at data.
    // SAFETY: plain helper call on our context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, VXLAN_ENCAP_LEN as i32) } != 0 {
        return Err(DropReason::HelperFailed);
    }
    // Pointers are invalidated by adjust_head: bounds-check again.
    let eth: *mut EthHdr =
        ptr_at_mut(ctx.data(), ctx.data_end(), 0).map_err(|()| DropReason::Malformed)?;
    // SAFETY: bounds checked by ptr_at_mut.
    unsafe { (*eth).dst_addr = delivery.mac };
    // Out of the endpoint's host-side veth, into the container. The peer
    // (container) end needs GRO or an XDP program for veth to accept it.
    // SAFETY: plain helper call.
    let action = unsafe { bpf_redirect(delivery.ifindex, 0) };
    Ok((action as u32, Counter::DecapXdp))
}

#[classifier]
#[expect(
    clippy::needless_pass_by_value,
    reason = "aya's program macros hand the context over by value"
)]
pub fn underlay_tc(ctx: TcContext) -> i32 {
    let len = ctx.len();
    let mut net = NetRef::default();
    let result = try_underlay_tc(&ctx, &mut net);
    finish(len, net, result, TC_ACT_SHOT, || Seen {
        hook: HOOK_UNDERLAY_TC,
        // SAFETY: ctx wraps the program's valid __sk_buff.
        ifindex: unsafe { (*ctx.as_ptr().cast::<__sk_buff>()).ifindex },
        start: ctx.data(),
        end: ctx.data_end(),
    })
}

/// Outer headers plus inner Ethernet and IPv4: what classify reads.
const DECAP_HEADERS: u32 = VXLAN_ENCAP_LEN + 14 + 20;

/// `net` is set once the VXLAN header names a network.
fn try_underlay_tc(ctx: &TcContext, net: &mut NetRef) -> Result<(i32, Counter), DropReason> {
    if ((ctx.data_end() - ctx.data()) as u32) < DECAP_HEADERS && ctx.len() >= DECAP_HEADERS {
        ctx.pull_data(DECAP_HEADERS)
            .map_err(|_| DropReason::Malformed)?;
    }
    let delivery = match classify(ctx.data(), ctx.data_end(), net)? {
        Underlay::Pass => return Ok((TC_ACT_OK, Counter::UnderlayPass)),
        Underlay::PathMtuLearned => return Ok((TC_ACT_OK, Counter::PathMtuLearned)),
        Underlay::Decap(delivery) => delivery,
    };
    // Remove the 50 bytes after the outer MAC header (outer IPv4, UDP,
    // VXLAN, inner Ethernet); FIXED_GSO keeps gso_size as the sender set it.
    let flags = u64::from(BPF_F_ADJ_ROOM_FIXED_GSO) | u64::from(BPF_F_ADJ_ROOM_DECAP_L3_IPV4);
    ctx.adjust_room(
        -(VXLAN_ENCAP_LEN as i32),
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
        flags,
    )
    .map_err(|_| DropReason::HelperFailed)?;
    let eth = EthHdr {
        dst_addr: delivery.mac,
        src_addr: delivery.inner_src,
        ether_type: ETH_P_IP,
    };
    write_front(ctx, &Words(eth))?;
    // SAFETY: plain helper call.
    let action = unsafe { bpf_redirect_peer(delivery.ifindex, 0) };
    Ok((action as i32, Counter::DecapTc))
}
