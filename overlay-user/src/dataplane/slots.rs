//! The direct-mapped slot arrays in front of `OVL_ENDPOINTS`, `OVL_ROUTES`
//! and `OVL_PEERS` (see [`RouteSlot`]). Every endpoint, route and peer goes
//! into and out of its hash map through here, so a slot never names an entry its hash map lacks and
//! never holds a value the hash map has replaced, and every rewrite of a
//! slot follows the sequence lock the programs read it under.
//!
//! A key whose slot another key holds lives in the hash map only (found
//! there, one hash lookup slower); a slot freed by a removal goes to the
//! next key written that maps to it.
//!
//! The slot arrays are `BPF_F_MMAPABLE` and mapped into this process
//! ([`SlotTable`]): a slot is read and written with plain loads and stores,
//! so keeping a route in its slot costs no syscall beyond the hash map's.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    ptr::{self, NonNull},
    sync::atomic::{Ordering, fence},
};

use aya::{
    Pod,
    maps::{MapData, MapError},
};
use overlay_common::{
    EndpointInfo, EndpointSlot, PeerKey, PeerSlot, PeerValue, RouteKey, RouteSlot, RouteValue,
    SLOT_SEQ_WRITING, endpoint_slot, peer_slot, route_slot,
};

use super::Dataplane;

/// A slot value: its sequence byte and the key it holds.
pub(super) trait Slot: Pod + PartialEq {
    type Key: PartialEq + Copy;
    const FREE: Self;
    fn seq(&self) -> u8;
    fn with_seq(self, seq: u8) -> Self;
    fn key(&self) -> Self::Key;
    /// Whether it holds no key.
    fn is_free(&self) -> bool {
        self.key() == Self::FREE.key()
    }
    /// The slot index of `key`.
    fn index(key: &Self::Key) -> u32;
}

/// A [`Slot`] impl: every slot type has its `seq` byte and `FREE`; the key
/// is the field `$key`, placed by `$index`.
macro_rules! impl_slot {
    ($slot:ident, $key:ident: $key_ty:ty, $index:expr) => {
        impl Slot for $slot {
            type Key = $key_ty;
            const FREE: Self = $slot::FREE;
            fn seq(&self) -> u8 {
                self.seq
            }
            fn with_seq(self, seq: u8) -> Self {
                Self { seq, ..self }
            }
            fn key(&self) -> $key_ty {
                self.$key
            }
            fn index(key: &$key_ty) -> u32 {
                $index(key)
            }
        }
    };
}

// Free slots hold ifindex 0 and VNI 0, which no endpoint or network has.
impl_slot!(EndpointSlot, ifindex: u32, |ifindex: &u32| endpoint_slot(*ifindex));
impl_slot!(RouteSlot, key: RouteKey, route_slot);
impl_slot!(PeerSlot, key: PeerKey, peer_slot);

/// A slot array mapped into this process. Written by one process at a
/// time (the engine's state lock), read by the programs concurrently.
pub(super) struct SlotTable<S> {
    base: NonNull<S>,
    len: u32,
    bytes: usize,
    /// The map the mapping shows (the mapping would outlive the fd; kept
    /// so the table is plainly the map's).
    _map: MapData,
}

// SAFETY: the mapping is process-wide memory, valid until Drop unmaps it;
// the table is only ever used through &self/&mut self.
unsafe impl<S: Send> Send for SlotTable<S> {}

impl<S: Slot> SlotTable<S> {
    /// Maps `map`, an mmapable array of `len` values of type `S`.
    pub(super) fn new(map: MapData, len: u32) -> io::Result<Self> {
        const {
            assert!(std::mem::align_of::<S>() == 8 && std::mem::size_of::<S>().is_multiple_of(8));
        }
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::other("page size"))?;
        let bytes = (std::mem::size_of::<S>() * len as usize).div_ceil(page) * page;
        // SAFETY: a shared read-write mapping of the map's value area (the
        // kernel allows it for BPF_F_MMAPABLE arrays up to this length); the
        // result is checked before use.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(addr.cast::<S>()).ok_or_else(|| io::Error::other("mmap"))?;
        Ok(Self {
            base,
            len,
            bytes,
            _map: map,
        })
    }

    fn at(&self, index: u32) -> *mut S {
        assert!(index < self.len, "slot {index} of {}", self.len);
        // SAFETY: within the mapping, checked just above.
        unsafe { self.base.as_ptr().add(index as usize) }
    }

    /// Slot `index` as it is now, copied in words (volatile: the programs'
    /// stores are not the compiler's to assume away).
    pub(super) fn get(&self, index: u32) -> S {
        let p = self.at(index).cast::<u64>();
        let mut out = std::mem::MaybeUninit::<S>::uninit();
        for word in 0..std::mem::size_of::<S>() / 8 {
            // SAFETY: within slot `index`; S is 8-aligned plain data.
            unsafe {
                out.as_mut_ptr()
                    .cast::<u64>()
                    .add(word)
                    .write(ptr::read_volatile(p.add(word)));
            }
        }
        // SAFETY: every byte written above; any bits are a valid Pod S.
        unsafe { out.assume_init() }
    }

    /// Writes slot `index` in words, `seq` included.
    fn put(&mut self, index: u32, value: &S) {
        let p = self.at(index).cast::<u64>();
        let words = ptr::from_ref(value).cast::<u64>();
        for word in 0..std::mem::size_of::<S>() / 8 {
            // SAFETY: within slot `index` and `value`; both 8-aligned.
            unsafe { ptr::write_volatile(p.add(word), words.add(word).read()) };
        }
    }

    /// Sets the sequence byte (the slot's first) alone.
    fn put_seq(&mut self, index: u32, seq: u8) {
        // SAFETY: the first byte of slot `index`.
        unsafe { ptr::write_volatile(self.at(index).cast::<u8>(), seq) };
    }

    /// Rewrites slot `index` to `new` under the sequence lock: `seq` made
    /// odd (unless it is), the contents with that odd `seq`, `seq` made
    /// even (+1); release fences keep the stores in this order on every
    /// CPU. A program that copied the slot between the same even `seq`
    /// saw no torn value.
    fn rewrite(&mut self, index: u32, new: S) {
        let writing = self.mark_writing(index);
        self.put(index, &new.with_seq(writing));
        fence(Ordering::Release);
        self.put_seq(index, writing.wrapping_add(1));
    }

    /// Makes slot `index` odd, so the programs leave it for the hash map;
    /// its odd `seq`.
    fn mark_writing(&mut self, index: u32) -> u8 {
        let seq = self.get(index).seq();
        let writing = seq | SLOT_SEQ_WRITING;
        if seq != writing {
            self.put_seq(index, writing);
            fence(Ordering::Release);
        }
        writing
    }

    /// Adds or replaces `new`'s key in its hash map (`write`), then in its
    /// slot if that is free or already the key's. A slot the key holds with
    /// another value is made odd first, so the programs take the hash
    /// entry, never the old value, while it changes; if `write` fails it
    /// stays odd (read by hash) until the key is written or freed again.
    fn put_with<E>(&mut self, new: S, write: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        let index = S::index(&new.key());
        let cur = self.get(index);
        let holds = cur.key() == new.key();
        if holds && cur.seq() & SLOT_SEQ_WRITING == 0 && cur == new.with_seq(cur.seq()) {
            return write();
        }
        if holds {
            self.mark_writing(index);
        }
        write()?;
        if holds || cur.is_free() {
            self.rewrite(index, new);
        }
        Ok(())
    }

    /// Puts `new` in its key's slot if that slot is free; whether it did.
    fn claim_if_free(&mut self, new: S) -> bool {
        let index = S::index(&new.key());
        if !self.get(index).is_free() {
            return false;
        }
        self.rewrite(index, new);
        true
    }

    /// Frees `key`'s slot if `key` holds it.
    fn release(&mut self, key: &S::Key) {
        let index = S::index(key);
        if self.get(index).key() == *key {
            self.rewrite(index, S::FREE);
        }
    }
}

impl<S> Drop for SlotTable<S> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

impl Dataplane {
    /// Adds or replaces the route of `key`: the hash map, then the slot if
    /// it is free or already the key's (which the programs leave alone
    /// while the hash entry changes).
    pub(super) fn put_route(&mut self, key: &RouteKey, route: &RouteValue) -> Result<(), MapError> {
        let routes = &mut self.routes;
        self.route_slots
            .put_with(RouteSlot::holding(*key, *route), || {
                routes.insert(key, route, 0)
            })
    }

    /// Removes the route of `key`: its slot first, then the hash entry
    /// (whose error, not-found included, is returned).
    pub(super) fn delete_route(&mut self, key: &RouteKey) -> Result<(), MapError> {
        self.route_slots.release(key);
        self.routes.remove(key)
    }

    /// Adds the endpoint on host-side interface `ifindex`: the hash map,
    /// then the slot if it is free or already the interface's.
    pub(super) fn put_endpoint(
        &mut self,
        ifindex: u32,
        info: &EndpointInfo,
    ) -> Result<(), MapError> {
        let endpoints = &mut self.endpoints;
        self.ep_slots
            .put_with(EndpointSlot::holding(ifindex, *info), || {
                endpoints.insert(&ifindex, info, 0)
            })
    }

    /// Removes the endpoint on `ifindex`: its slot first (the ifindex may
    /// come back as another's), then the hash entry (whose error, not-found
    /// included, is returned). A freed slot goes to another endpoint whose
    /// ifindex maps there, if any.
    pub(super) fn delete_endpoint(&mut self, ifindex: u32) -> Result<(), MapError> {
        let index = endpoint_slot(ifindex);
        let held = self.ep_slots.get(index).ifindex == ifindex;
        self.ep_slots.release(&ifindex);
        self.endpoints.remove(&ifindex)?;
        if held {
            let next = self
                .endpoints
                .iter()
                .filter_map(Result::ok)
                .find(|(i, _)| endpoint_slot(*i) == index);
            if let Some((other, info)) = next {
                self.ep_slots
                    .claim_if_free(EndpointSlot::holding(other, info));
            }
        }
        Ok(())
    }

    /// Allows peer `key`: the hash map, then the slot if it is free.
    pub(super) fn put_peer(&mut self, key: &PeerKey) -> Result<(), MapError> {
        self.peers.insert(key, &PeerValue::default(), 0)?;
        self.peer_slots.claim_if_free(PeerSlot::holding(*key));
        Ok(())
    }

    /// Revokes peer `key`: its slot first, then the hash entry (whose
    /// error, not-found included, is returned).
    pub(super) fn delete_peer(&mut self, key: &PeerKey) -> Result<(), MapError> {
        self.peer_slots.release(key);
        self.peers.remove(key)
    }

    /// Gives every endpoint, route and peer a free slot of its own: for
    /// slot maps made anew beside existing hash maps (a dataplane pinned by
    /// a build without them, or with another slot layout). Returns how many
    /// went into slots.
    pub(super) fn fill_slots(&mut self) -> Result<usize, MapError> {
        let endpoints: Vec<(u32, EndpointInfo)> =
            self.endpoints.iter().collect::<Result<_, _>>()?;
        let routes: Vec<(RouteKey, RouteValue)> = self.routes.iter().collect::<Result<_, _>>()?;
        let peers: Vec<PeerKey> = self.peers.keys().collect::<Result<_, _>>()?;
        let mut filled = 0;
        for (ifindex, info) in endpoints {
            filled += usize::from(
                self.ep_slots
                    .claim_if_free(EndpointSlot::holding(ifindex, info)),
            );
        }
        for (key, route) in routes {
            filled += usize::from(
                self.route_slots
                    .claim_if_free(RouteSlot::holding(key, route)),
            );
        }
        for key in peers {
            filled += usize::from(self.peer_slots.claim_if_free(PeerSlot::holding(key)));
        }
        Ok(filled)
    }
}
