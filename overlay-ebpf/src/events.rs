//! Drop events for `overlay monitor`: on a drop, [`crate::counters::finish`]
//! calls [`report`], which (while a monitor reads) re-reads the packet's
//! addresses and ports (the inner ones for VXLAN) and writes a
//! [`DropEvent`] to the ring buffer, as far as this CPU's budget allows.
//! Forwarded packets never come here.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};
use overlay_common::{
    DropEvent, DropReason, VXLAN_ENCAP_LEN,
    events::{EVENT_FLAG_INNER, EVENTS_BURST, EVENTS_PER_SEC, HOOK_ENDPOINT},
};

use crate::{
    maps::{OVL_CONFIG, OVL_EVENTS, OVL_MONITOR, OVL_MONITOR_ON},
    parse::{ETH_P_IP, IPPROTO_TCP, IPPROTO_UDP, addr, is_fragment, read_at},
};

/// Credit one event costs, and the most a CPU can save up.
const EVENT_COST_NS: u64 = 1_000_000_000 / EVENTS_PER_SEC;
const MAX_CREDIT_NS: u64 = EVENTS_BURST * EVENT_COST_NS;

/// Where the dropped packet was, read only when it is reported.
pub struct Seen {
    /// `HOOK_*`.
    pub hook: u8,
    pub ifindex: u32,
    /// The packet's bytes (`data`, `data_end`), as they are at the drop.
    pub start: usize,
    pub end: usize,
}

/// Addresses, protocol and ports of the IPv4 packet at `ip_off`; its
/// header length (0 when it is not IPv4).
#[inline(always)]
fn read_flow(start: usize, end: usize, ip_off: usize, event: &mut DropEvent) -> usize {
    let Ok(ip) = read_at::<Ipv4Hdr>(start, end, ip_off) else {
        return 0;
    };
    if ip.vihl >> 4 != 4 {
        return 0;
    }
    event.src_ip = addr(ip.src_addr);
    event.dst_ip = addr(ip.dst_addr);
    event.proto = ip.proto;
    if (ip.proto == IPPROTO_TCP || ip.proto == IPPROTO_UDP) && !is_fragment(&ip) {
        // IHL bounded to 15 words, which the verifier needs for the offset.
        let at = ip_off + usize::from(ip.vihl & 0x0f) * 4;
        if let Ok(ports) = read_at::<[u8; 4]>(start, end, at & 0x3ff) {
            event.src_port = u16::from_be_bytes([ports[0], ports[1]]);
            event.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
        }
    }
    usize::from(ip.vihl & 0x0f) * 4
}

/// Drops held back in a row before the clock is read again to see whether
/// credit came back: the clock costs as much as the rest of a held-back
/// drop (30-40 ns here), and a flood would read it on every packet.
const RECHECK_EVERY: u64 = 16;

/// The time (CLOCK_MONOTONIC, ns) when this CPU may report one more event
/// now (and charges it); `None` when over the rate.
#[inline(always)]
fn take_credit() -> Option<u64> {
    let state = OVL_MONITOR.get_ptr_mut(0)?;
    // SAFETY: this CPU's copy; only this CPU writes it while we run.
    let state = unsafe { &mut *state };
    if state.credit_ns < EVENT_COST_NS && state.suppressed % RECHECK_EVERY != 0 {
        state.suppressed += 1;
        return None;
    }
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_ns() };
    let earned = now.saturating_sub(state.last_ns);
    state.last_ns = now;
    state.credit_ns = (state.credit_ns + earned).min(MAX_CREDIT_NS);
    if state.credit_ns < EVENT_COST_NS {
        state.suppressed += 1;
        return None;
    }
    state.credit_ns -= EVENT_COST_NS;
    Some(now)
}

/// Reports a drop of `len` bytes for `reason` in network `vni` (0: not
/// known), seen as `at`.
#[inline(always)]
pub fn report(at: &Seen, reason: DropReason, vni: u32, len: u32) {
    // Nobody reading: not even the clock is read.
    if OVL_MONITOR_ON.get(0).copied().unwrap_or(0) == 0 {
        return;
    }
    let Some(now) = take_credit() else {
        return;
    };
    let mut event = DropEvent {
        time_ns: now,
        reason: reason as u32,
        vni,
        ifindex: at.ifindex,
        len,
        hook: at.hook,
        ..DropEvent::default()
    };
    let (start, end) = (at.start, at.end);
    if let Ok(eth) = read_at::<EthHdr>(start, end, 0)
        && eth.ether_type == ETH_P_IP
    {
        let outer_len = read_flow(start, end, 14, &mut event);
        // On the underlay, a VXLAN packet (without outer options: those
        // are dropped as such) is reported by what it carries.
        let vxlan_port = OVL_CONFIG.get(0).map_or(0, |c| c.vxlan_port);
        if at.hook != HOOK_ENDPOINT
            && outer_len == 20
            && event.proto == IPPROTO_UDP
            && vxlan_port != 0
            && event.dst_port == vxlan_port
        {
            let inner_eth = VXLAN_ENCAP_LEN as usize;
            if let Ok(eth) = read_at::<EthHdr>(start, end, inner_eth)
                && eth.ether_type == ETH_P_IP
            {
                let peer = event.src_ip;
                event = DropEvent {
                    peer_ip: peer,
                    flags: EVENT_FLAG_INNER,
                    src_ip: 0,
                    dst_ip: 0,
                    src_port: 0,
                    dst_port: 0,
                    proto: 0,
                    ..event
                };
                read_flow(start, end, inner_eth + 14, &mut event);
            }
        }
    }
    if OVL_EVENTS.output(&event, 0).is_err()
        && let Some(state) = OVL_MONITOR.get_ptr_mut(0)
    {
        // SAFETY: as in take_credit.
        unsafe { (*state).lost += 1 };
    } else if let Some(state) = OVL_MONITOR.get_ptr_mut(0) {
        // SAFETY: as in take_credit.
        unsafe { (*state).sent += 1 };
    }
}
