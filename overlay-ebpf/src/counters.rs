//! The single place packets are counted: each entry point calls `count` once
//! on its exit path with the outcome or drop reason.

use overlay_common::{Counter, DropReason};

use crate::maps::OVL_COUNTERS;

#[inline(always)]
fn add(slot: u32, bytes: u32) {
    if let Some(value) = OVL_COUNTERS.get_ptr_mut(slot) {
        // SAFETY: per-CPU slot, only this CPU writes it while we run.
        unsafe {
            (*value).packets += 1;
            (*value).bytes += u64::from(bytes);
        }
    }
}

#[inline(always)]
fn count(outcome: Counter, bytes: u32) {
    add(outcome.index(), bytes);
}

#[inline(always)]
fn count_drop(reason: DropReason, bytes: u32) {
    add(reason.index(), bytes);
}

/// Exit path of every entry point: counts the outcome or the drop reason
/// exactly once and returns the program's action (`drop_action` on a drop).
#[inline(always)]
pub fn finish<A>(bytes: u32, result: Result<(A, Counter), DropReason>, drop_action: A) -> A {
    match result {
        Ok((action, outcome)) => {
            count(outcome, bytes);
            action
        }
        Err(reason) => {
            count_drop(reason, bytes);
            drop_action
        }
    }
}
