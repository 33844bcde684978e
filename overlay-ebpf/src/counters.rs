//! The single place packets are counted: each entry point calls `finish`
//! once on its exit path with the outcome or drop reason, and the VNI the
//! packet belonged to once it was known (0 before that).

use overlay_common::{Counter, DropReason};

use crate::maps::{OVL_COUNTERS, OVL_NET_COUNTERS};

#[inline(always)]
fn add(slot: u32, vni: u32, bytes: u32) {
    if let Some(value) = OVL_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe {
            (*value).packets += 1;
            (*value).bytes += u64::from(bytes);
        }
    }
    if vni == 0 {
        return;
    }
    if let Some(net) = OVL_NET_COUNTERS.get_ptr_mut(&vni) {
        // SAFETY: per-CPU value, only this CPU writes it while we run; the
        // index is checked against the array (the verifier needs the bound).
        unsafe {
            if let Some(value) = (*net).slots.get_mut(slot as usize) {
                value.packets += 1;
                value.bytes += u64::from(bytes);
            }
        }
    }
}

/// Exit path of every entry point: counts the outcome or the drop reason
/// exactly once, globally and for network `vni`, and returns the program's
/// action (`drop_action` on a drop).
#[inline(always)]
pub fn finish<A>(
    bytes: u32,
    vni: u32,
    result: Result<(A, Counter), DropReason>,
    drop_action: A,
) -> A {
    match result {
        Ok((action, outcome)) => {
            add(outcome.index(), vni, bytes);
            action
        }
        Err(reason) => {
            add(reason.index(), vni, bytes);
            drop_action
        }
    }
}
