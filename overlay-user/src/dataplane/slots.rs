//! The direct-mapped slot arrays in front of `OVL_ROUTES` and `OVL_PEERS`
//! (see [`RouteSlot`]). Every route and peer goes into and out of its hash
//! map through here, so a slot never names an entry its hash map lacks and
//! never holds a value the hash map has replaced, and every rewrite of a
//! slot follows the sequence lock the programs read it under.
//!
//! A key whose slot another key holds lives in the hash map only (found
//! there, one hash lookup slower); a slot freed by a removal goes to the
//! next key written that maps to it.

use aya::{
    Pod,
    maps::{Array, MapData, MapError},
};
use overlay_common::{
    PeerKey, PeerSlot, PeerValue, RouteKey, RouteSlot, RouteValue, SLOT_SEQ_WRITING, peer_slot,
    route_slot,
};

use super::Dataplane;

/// A slot value: its sequence byte and the key it holds.
trait Slot: Pod {
    type Key: PartialEq + Copy;
    const FREE: Self;
    fn seq(&self) -> u8;
    fn with_seq(self, seq: u8) -> Self;
    fn key(&self) -> Self::Key;
    /// Whether it holds no key (VNI 0, which no network has).
    fn is_free(&self) -> bool;
    /// The slot index of `key`.
    fn index(key: &Self::Key) -> u32;
}

impl Slot for RouteSlot {
    type Key = RouteKey;
    const FREE: Self = RouteSlot::FREE;
    fn seq(&self) -> u8 {
        self.seq
    }
    fn with_seq(self, seq: u8) -> Self {
        Self { seq, ..self }
    }
    fn key(&self) -> RouteKey {
        self.key
    }
    fn is_free(&self) -> bool {
        self.key.vni == 0
    }
    fn index(key: &RouteKey) -> u32 {
        route_slot(key)
    }
}

impl Slot for PeerSlot {
    type Key = PeerKey;
    const FREE: Self = PeerSlot::FREE;
    fn seq(&self) -> u8 {
        self.seq
    }
    fn with_seq(self, seq: u8) -> Self {
        Self { seq, ..self }
    }
    fn key(&self) -> PeerKey {
        self.key
    }
    fn is_free(&self) -> bool {
        self.key.vni == 0
    }
    fn index(key: &PeerKey) -> u32 {
        peer_slot(key)
    }
}

/// Makes slot `index` (now `cur`) odd, so readers leave it for the hash
/// map; only the sequence byte changes. Returns the slot as it now is.
fn mark_writing<S: Slot>(slots: &mut Array<MapData, S>, index: u32, cur: S) -> Result<S, MapError> {
    let writing = cur.seq() | SLOT_SEQ_WRITING;
    if cur.seq() == writing {
        return Ok(cur);
    }
    let marked = cur.with_seq(writing);
    slots.set(index, &marked, 0)?;
    Ok(marked)
}

/// Rewrites slot `index` from `cur` to `new`: odd (`seq` alone changes),
/// the new contents (`seq` unchanged), even again (`seq` alone). A reader
/// that copied the slot between the same even `seq` saw no torn value.
/// Left odd on an error: readers then use the hash map, which is right.
fn rewrite<S: Slot>(
    slots: &mut Array<MapData, S>,
    index: u32,
    cur: S,
    new: S,
) -> Result<(), MapError> {
    let writing = mark_writing(slots, index, cur)?.seq();
    slots.set(index, &new.with_seq(writing), 0)?;
    slots.set(index, &new.with_seq(writing.wrapping_add(1)), 0)
}

/// Puts `new` in its key's slot if that slot is free; whether it did.
fn claim_if_free<S: Slot>(slots: &mut Array<MapData, S>, new: S) -> Result<bool, MapError> {
    let index = S::index(&new.key());
    let cur = slots.get(&index, 0)?;
    if !cur.is_free() {
        return Ok(false);
    }
    rewrite(slots, index, cur, new)?;
    Ok(true)
}

/// Frees `key`'s slot if `key` holds it.
fn release<S: Slot>(slots: &mut Array<MapData, S>, key: &S::Key) -> Result<(), MapError> {
    let index = S::index(key);
    let cur = slots.get(&index, 0)?;
    if cur.key() == *key {
        rewrite(slots, index, cur, S::FREE)?;
    }
    Ok(())
}

impl Dataplane {
    /// Adds or replaces the route of `key`: the hash map, then the slot if
    /// it is free or already the key's (which readers leave alone while the
    /// hash entry changes).
    pub(super) fn put_route(&mut self, key: &RouteKey, route: &RouteValue) -> Result<(), MapError> {
        let index = route_slot(key);
        let mut cur = self.route_slots.get(&index, 0)?;
        let holds = cur.key == *key;
        if holds && cur.seq & SLOT_SEQ_WRITING == 0 && cur.route == *route {
            return self.routes.insert(key, route, 0);
        }
        if holds {
            cur = mark_writing(&mut self.route_slots, index, cur)?;
        }
        self.routes.insert(key, route, 0)?;
        if holds || cur.is_free() {
            rewrite(
                &mut self.route_slots,
                index,
                cur,
                RouteSlot::holding(*key, *route),
            )?;
        }
        Ok(())
    }

    /// Removes the route of `key`: its slot first, then the hash entry
    /// (whose error, not-found included, is returned).
    pub(super) fn delete_route(&mut self, key: &RouteKey) -> Result<(), MapError> {
        release(&mut self.route_slots, key)?;
        self.routes.remove(key)
    }

    /// Allows peer `key`: the hash map, then the slot if it is free.
    pub(super) fn put_peer(&mut self, key: &PeerKey) -> Result<(), MapError> {
        self.peers.insert(key, &PeerValue::default(), 0)?;
        claim_if_free(&mut self.peer_slots, PeerSlot::holding(*key)).map(drop)
    }

    /// Revokes peer `key`: its slot first, then the hash entry (whose
    /// error, not-found included, is returned).
    pub(super) fn delete_peer(&mut self, key: &PeerKey) -> Result<(), MapError> {
        release(&mut self.peer_slots, key)?;
        self.peers.remove(key)
    }

    /// Gives every route and peer a free slot of its own: for slot maps
    /// made anew beside existing hash maps (a dataplane pinned by a build
    /// without them). Returns how many went into slots.
    pub(super) fn fill_slots(&mut self) -> Result<usize, MapError> {
        let routes: Vec<(RouteKey, RouteValue)> = self.routes.iter().collect::<Result<_, _>>()?;
        let peers: Vec<PeerKey> = self.peers.keys().collect::<Result<_, _>>()?;
        let mut filled = 0;
        for (key, route) in routes {
            filled += usize::from(claim_if_free(
                &mut self.route_slots,
                RouteSlot::holding(key, route),
            )?);
        }
        for key in peers {
            filled += usize::from(claim_if_free(&mut self.peer_slots, PeerSlot::holding(key))?);
        }
        Ok(filled)
    }
}
