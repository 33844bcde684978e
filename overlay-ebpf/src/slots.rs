//! Endpoint, route and peer lookups: the direct-mapped slot arrays first
//! (an array lookup the JIT inlines), the hash maps, which hold every
//! entry, when the slot is another key's or is being rewritten.

use core::{mem, ptr};

use overlay_common::{
    EndpointInfo, PeerKey, RouteKey, RouteValue, SLOT_SEQ_WRITING, endpoint_slot, peer_slot,
    route_slot,
};

use crate::maps::{
    OVL_ENDPOINTS, OVL_EP_SLOTS, OVL_PEER_SLOTS, OVL_PEERS, OVL_ROUTE_SLOTS, OVL_ROUTES,
};

/// The reader's half of the slots' sequence lock (see
/// [`overlay_common::RouteSlot`]): `seq`, then the copy, then `seq` again,
/// as volatile reads so the compiler keeps them in this order (x86 keeps
/// loads in order; the writer's updates are separate syscalls). The copy
/// counts only when both reads saw the same even value.
///
/// The copy is read in u64 words: a volatile read of the struct itself is
/// lowered field by field, its MAC a byte at a time (30 loads and as many
/// stack spills for a route slot).
///
/// # Safety
/// `slot` points to a map value of type `S` whose first byte is its `seq`.
#[inline(always)]
unsafe fn read_stable<S: Copy>(slot: *const S) -> Option<S> {
    const {
        assert!(mem::align_of::<S>() == 8 && mem::size_of::<S>().is_multiple_of(8));
    }
    let mut copy = mem::MaybeUninit::<S>::uninit();
    // SAFETY: as the caller guarantees; S is 8-aligned and a whole number
    // of words, and plain data, so any bits copied in are a valid S.
    unsafe {
        let seq = slot.cast::<u8>();
        let before = ptr::read_volatile(seq);
        let mut at = 0;
        while at < mem::size_of::<S>() / 8 {
            let word = ptr::read_volatile(slot.cast::<u64>().add(at));
            copy.as_mut_ptr().cast::<u64>().add(at).write(word);
            at += 1;
        }
        let after = ptr::read_volatile(seq);
        (before & SLOT_SEQ_WRITING == 0 && before == after).then(|| copy.assume_init())
    }
}

/// The endpoint on host-side interface `ifindex`, if it is one.
#[inline(always)]
pub fn endpoint(ifindex: u32) -> Option<EndpointInfo> {
    if let Some(slot) = OVL_EP_SLOTS.get_ptr(endpoint_slot(ifindex))
        // SAFETY: an EndpointSlot value of the map, `seq` first.
        && let Some(copy) = unsafe { read_stable(slot) }
        && copy.ifindex == ifindex
    {
        return Some(copy.info);
    }
    // SAFETY: copied out at once.
    unsafe { OVL_ENDPOINTS.get(&ifindex) }.copied()
}

/// The route of `key`, if it has one.
#[inline(always)]
pub fn route(key: &RouteKey) -> Option<RouteValue> {
    if let Some(slot) = OVL_ROUTE_SLOTS.get_ptr(route_slot(key))
        // SAFETY: a RouteSlot value of the map, `seq` first.
        && let Some(copy) = unsafe { read_stable(slot) }
        && copy.key == *key
    {
        return Some(copy.route);
    }
    // SAFETY: copied out at once.
    unsafe { OVL_ROUTES.get(key) }.copied()
}

/// Whether remote host and VNI `key` may send us VXLAN.
#[inline(always)]
pub fn peer_allowed(key: &PeerKey) -> bool {
    if let Some(slot) = OVL_PEER_SLOTS.get_ptr(peer_slot(key))
        // SAFETY: a PeerSlot value of the map, `seq` first.
        && let Some(copy) = unsafe { read_stable(slot) }
        && copy.key == *key
    {
        return true;
    }
    OVL_PEERS.get_ptr(key).is_some()
}
