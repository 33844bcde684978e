//! The single place packets are counted: each entry point calls `finish`
//! once on its exit path with the outcome or drop reason, and the network
//! the packet belonged to once it was known. Drops are also reported to
//! `overlay monitor` from here ([`crate::events`]).

use overlay_common::{Counter, DropReason};

use crate::{
    events::{self, Seen},
    maps::{OVL_COUNTERS, OVL_NET_COUNTERS, OVL_NETWORKS},
};

/// The network a packet belongs to, as far as the program got: nothing,
/// its VNI (read from a VXLAN header), or its counter slot (from the
/// endpoint or route entry the hot paths read anyway).
#[derive(Clone, Copy, Default)]
pub struct NetRef {
    pub vni: u32,
    /// 0 until an entry names it.
    pub counter_slot: u32,
}

impl NetRef {
    /// The counter slot, looked up by VNI only when no entry named it: on
    /// drop paths, which can afford the lookup.
    #[inline(always)]
    fn slot(self) -> u32 {
        if self.counter_slot != 0 || self.vni == 0 {
            return self.counter_slot;
        }
        // SAFETY: copied out at once.
        unsafe { OVL_NETWORKS.get(&self.vni) }.map_or(0, |n| n.counter_slot)
    }
}

#[inline(always)]
fn add(index: u32, net: NetRef, bytes: u32) {
    if let Some(value) = OVL_COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe {
            (*value).packets += 1;
            (*value).bytes += u64::from(bytes);
        }
    }
    let slot = net.slot();
    if slot == 0 {
        return;
    }
    if let Some(counters) = OVL_NET_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU value, only this CPU writes it while we run; the
        // index is checked against the array (the verifier needs the bound).
        unsafe {
            if let Some(value) = (*counters).slots.get_mut(index as usize) {
                value.packets += 1;
                value.bytes += u64::from(bytes);
            }
        }
    }
}

/// Exit path of every entry point: counts the outcome or the drop reason
/// exactly once, for the host and for network `net`, reports a drop as
/// `seen()` describes it, and returns the program's action (`drop_action`
/// on a drop).
#[inline(always)]
pub fn finish<A>(
    bytes: u32,
    net: NetRef,
    result: Result<(A, Counter), DropReason>,
    drop_action: A,
    seen: impl FnOnce() -> Seen,
) -> A {
    match result {
        Ok((action, outcome)) => {
            add(outcome.index(), net, bytes);
            action
        }
        Err(reason) => {
            add(reason.index(), net, bytes);
            events::report(&seen(), reason, net.vni, bytes);
            drop_action
        }
    }
}
