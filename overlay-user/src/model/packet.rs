//! Packet arithmetic shared by the tracer and the tests that build frames.

/// The Internet checksum (RFC 1071) of `data`: stored as is, it makes the
/// covered bytes sum to zero.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
