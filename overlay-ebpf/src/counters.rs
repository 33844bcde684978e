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
pub fn count(outcome: Counter, bytes: u32) {
    add(outcome.index(), bytes);
}

#[inline(always)]
pub fn count_drop(reason: DropReason, bytes: u32) {
    add(reason.index(), bytes);
}
