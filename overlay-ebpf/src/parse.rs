//! Bounds-checked access to packet bytes for both XDP and TC (direct packet
//! access through `data`/`data_end`), and the TC path's header writes.

use core::mem;

use aya_ebpf::programs::TcContext;
use network_types::{eth::EthHdr, ip::Ipv4Hdr};
use overlay_common::DropReason;

/// EtherType values in network byte order, as read from the header.
pub const ETH_P_IP: u16 = 0x0800u16.to_be();
pub const ETH_P_ARP: u16 = 0x0806u16.to_be();
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;

/// `*const T` at `start + offset`, or `Err` when `T` would pass `end`.
/// The explicit comparison against `end` is what the verifier needs to see
/// before any dereference.
#[inline(always)]
pub fn ptr_at<T>(start: usize, end: usize, offset: usize) -> Result<*const T, ()> {
    let len = mem::size_of::<T>();
    if start + offset + len > end {
        return Err(());
    }
    Ok((start + offset) as *const T)
}

/// Mutable variant of [`ptr_at`].
#[inline(always)]
pub fn ptr_at_mut<T>(start: usize, end: usize, offset: usize) -> Result<*mut T, ()> {
    ptr_at::<T>(start, end, offset).map(|p| p.cast_mut())
}

/// IPv4 address field as the `u32` the maps use (network order kept).
#[inline(always)]
pub fn addr(bytes: [u8; 4]) -> u32 {
    u32::from_ne_bytes(bytes)
}

/// Header length in bytes, or `None` when version/IHL are invalid.
#[inline(always)]
pub fn ipv4_header_len(ip: &Ipv4Hdr) -> Option<usize> {
    if ip.vihl >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip.vihl & 0x0f);
    if ihl < 5 {
        return None;
    }
    Some(ihl * 4)
}

/// More-fragments flag or a non-zero fragment offset.
#[inline(always)]
pub fn is_fragment(ip: &Ipv4Hdr) -> bool {
    u16::from_be_bytes(ip.frags) & 0x3fff != 0
}

/// First fragment (MF set, offset zero): the only fragment with an L4 header.
#[inline(always)]
pub fn is_first_fragment(ip: &Ipv4Hdr) -> bool {
    u16::from_be_bytes(ip.frags) & 0x1fff == 0
}

/// A header kept 8-byte aligned on the stack, so it moves to and from the
/// packet in words (see [`copy_words`]).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub struct Words<T>(pub T);

/// Copies `size_of::<T>()` bytes from `src` to `dst` as u64 words and a
/// u32/u16/u8 tail.
///
/// Why words: the network headers are align-1 structs, and LLVM's BPF
/// backend splits every copy it cannot prove aligned into single bytes (a
/// load and a store per byte: 128 instructions for the 64-byte encap
/// header). Packet pointers are never provably aligned, yet BPF allows
/// misaligned packet access (the verifier enforces alignment only under
/// `BPF_F_STRICT_ALIGNMENT`, and the JITs emit plain moves), so the packet
/// side is accessed through word-typed pointers, as Cilium's C does; the
/// stack side is a [`Words`], aligned for real.
///
/// # Safety
/// `src` and `dst` must each be valid for `size_of::<T>()` bytes; one of
/// them is a [`Words`], the other bounds-checked packet memory.
#[inline(always)]
unsafe fn copy_words<T>(src: *const u8, dst: *mut u8) {
    let len = mem::size_of::<T>();
    let mut at = 0;
    // SAFETY (all below): within `len` bytes of both, as the caller
    // guarantees; alignment as explained above.
    unsafe {
        while at + 8 <= len {
            dst.add(at)
                .cast::<u64>()
                .write(src.add(at).cast::<u64>().read());
            at += 8;
        }
        if at + 4 <= len {
            dst.add(at)
                .cast::<u32>()
                .write(src.add(at).cast::<u32>().read());
            at += 4;
        }
        if at + 2 <= len {
            dst.add(at)
                .cast::<u16>()
                .write(src.add(at).cast::<u16>().read());
            at += 2;
        }
        if at < len {
            dst.add(at).write(src.add(at).read());
        }
    }
}

/// The `T` at `start + offset`, copied out of the packet in words, or
/// `Err` when it would pass `end`.
#[inline(always)]
pub fn read_at<T: Copy>(start: usize, end: usize, offset: usize) -> Result<T, ()> {
    let src: *const T = ptr_at(start, end, offset)?;
    let mut out = mem::MaybeUninit::<Words<T>>::uninit();
    // SAFETY: bounds checked by ptr_at; `out` is a Words of T, and T is
    // plain bytes, so every bit pattern copied in is a valid T.
    unsafe {
        copy_words::<T>(src.cast(), out.as_mut_ptr().cast());
        Ok(out.assume_init().0)
    }
}

/// Ethernet header copied out of the packet.
#[inline(always)]
pub fn load_eth(start: usize, end: usize) -> Result<EthHdr, ()> {
    read_at(start, end, 0)
}

/// Writes `hdr` over the first bytes of the packet: directly where they
/// are in the linear part (always, after `adjust_room` pushed them there),
/// in words, else through `bpf_skb_store_bytes`. The direct write is what
/// pays: the helper cost 40 ns for the 64-byte encap header under
/// BPF_PROG_RUN. (A direct write makes the verifier give the program a
/// prologue that unclones a shared skb first, so it never writes into
/// another's data.)
#[inline(always)]
pub fn write_front<T>(ctx: &TcContext, hdr: &Words<T>) -> Result<(), DropReason> {
    match ptr_at_mut::<T>(ctx.data(), ctx.data_end(), 0) {
        // SAFETY: bounds checked by ptr_at_mut; hdr is a Words of T.
        Ok(out) => unsafe { copy_words::<T>((&raw const hdr.0).cast(), out.cast()) },
        Err(()) => ctx
            .store(0, &hdr.0, 0)
            .map_err(|_| DropReason::HelperFailed)?,
    }
    Ok(())
}
