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

/// Ethernet header copied out of the packet.
#[inline(always)]
pub fn load_eth(start: usize, end: usize) -> Result<EthHdr, ()> {
    let eth: *const EthHdr = ptr_at(start, end, 0)?;
    // SAFETY: bounds checked by ptr_at.
    Ok(unsafe { *eth })
}

/// Writes `hdr` over the first bytes of the packet: directly where they
/// are in the linear part (always, after `adjust_room` pushed them there),
/// else through `bpf_skb_store_bytes`. The direct write is what pays: the
/// helper cost 40 ns for the 64-byte encap header under BPF_PROG_RUN. (A
/// direct write makes the verifier give the program a prologue that
/// unclones a shared skb first, so it never writes into another's data.)
#[inline(always)]
pub fn write_front<T>(ctx: &TcContext, hdr: &T) -> Result<(), DropReason> {
    match ptr_at_mut::<T>(ctx.data(), ctx.data_end(), 0) {
        // SAFETY: bounds checked by ptr_at_mut; T is plain bytes.
        Ok(out) => unsafe { out.write_unaligned(core::ptr::read(hdr)) },
        Err(()) => ctx.store(0, hdr, 0).map_err(|_| DropReason::HelperFailed)?,
    }
    Ok(())
}
