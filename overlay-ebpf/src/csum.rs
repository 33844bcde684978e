//! Checksums.

use network_types::ip::Ipv4Hdr;

/// RFC 1071 checksum of a 20-byte IPv4 header whose `check` field is zero.
#[inline(always)]
pub fn ipv4_header(ip: &Ipv4Hdr) -> [u8; 2] {
    // SAFETY: Ipv4Hdr is 20 bytes of plain data, readable as 10 words.
    let words: &[[u8; 2]; 10] = unsafe { &*(core::ptr::from_ref(ip).cast()) };
    let mut sum: u32 = 0;
    let mut i = 0;
    // A fixed 10-iteration loop; the compiler unrolls it (no verifier loop).
    while i < 10 {
        sum += u32::from(u16::from_be_bytes(words[i]));
        i += 1;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    (!(sum as u16)).to_be_bytes()
}
