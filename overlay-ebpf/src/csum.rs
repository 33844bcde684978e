//! Checksums (RFC 1071) over fixed-size headers: the loops have constant
//! bounds, so the compiler unrolls them and the verifier sees no loop.

use network_types::ip::Ipv4Hdr;

/// One's-complement sum of `N` big-endian 16-bit words, not yet folded.
#[inline(always)]
pub fn sum<const N: usize>(words: &[[u8; 2]; N]) -> u32 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < N {
        sum += u32::from(u16::from_be_bytes(words[i]));
        i += 1;
    }
    sum
}

/// Folds a sum to 16 bits and complements it: the checksum field's bytes.
#[inline(always)]
pub fn fold(mut sum: u32) -> [u8; 2] {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_be_bytes()
}

/// Checksum of a 20-byte IPv4 header whose `check` field is zero.
#[inline(always)]
pub fn ipv4_header(ip: &Ipv4Hdr) -> [u8; 2] {
    // SAFETY: Ipv4Hdr is 20 bytes of plain data (alignment 1), readable
    // as 10 words.
    let words: &[[u8; 2]; 10] = unsafe { &*(core::ptr::from_ref(ip).cast()) };
    fold(sum(words))
}

/// Checksum of the outer IPv4 header the encap path writes: version 4,
/// 20 bytes, TOS 0, ID 0, DF, TTL `ttl`, UDP, addresses as stored (network
/// order). Only the length and the addresses vary, so the sum is taken in
/// little-endian 16-bit words straight from the values (a one's-complement
/// sum is the same in either byte order, RFC 1071 2(B)) instead of
/// byte-swapping ten header words. Little-endian BPF (`bpfel`) only, as
/// this crate is built.
#[inline(always)]
pub fn vxlan_outer_ipv4(tot_len: u16, ttl: u8, src: u32, dst: u32) -> [u8; 2] {
    // The constant words, as the header's bytes read little-endian:
    // 45 00 | 40 00 | ttl 11.
    let fixed = 0x0045 + 0x0040 + ((u32::from(17u8) << 8) | u32::from(ttl));
    let mut sum = fixed
        + u32::from(tot_len.swap_bytes())
        + (src & 0xffff)
        + (src >> 16)
        + (dst & 0xffff)
        + (dst >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_le_bytes()
}
