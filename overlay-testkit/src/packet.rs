//! Building frames byte by byte: BPF_PROG_RUN cases, benchmark inputs.

use std::net::Ipv4Addr;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;

pub fn eth(dst: [u8; 6], src: [u8; 6], ether_type: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(14);
    v.extend_from_slice(&dst);
    v.extend_from_slice(&src);
    v.extend_from_slice(&ether_type.to_be_bytes());
    v
}

/// RFC 1071 checksum (the product's own, which the tracer uses too).
pub use overlay_user::model::packet::checksum as csum;

/// IPv4 header fields a case may want to vary.
#[derive(Clone, Debug)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub tos: u8,
    pub id: u16,
    pub ttl: u8,
    /// Header length in 32-bit words (5 = no options).
    pub ihl: u8,
    /// Flags + fragment offset field.
    pub frags: u16,
    /// Override of the total length field.
    pub tot_len: Option<u16>,
}

impl Ipv4 {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, proto: u8) -> Self {
        Self {
            src,
            dst,
            proto,
            tos: 0,
            id: 0x1234,
            ttl: 64,
            ihl: 5,
            frags: 0,
            tot_len: None,
        }
    }

    /// Header (with options padding for ihl > 5) + payload, checksum valid.
    pub fn build(&self, payload: &[u8]) -> Vec<u8> {
        let hl = usize::from(self.ihl.max(5)) * 4;
        let tot = self.tot_len.unwrap_or((hl + payload.len()) as u16);
        let mut h = vec![0u8; hl];
        h[0] = 0x40 | self.ihl;
        h[1] = self.tos;
        h[2..4].copy_from_slice(&tot.to_be_bytes());
        h[4..6].copy_from_slice(&self.id.to_be_bytes());
        h[6..8].copy_from_slice(&self.frags.to_be_bytes());
        h[8] = self.ttl;
        h[9] = self.proto;
        h[12..16].copy_from_slice(&self.src.octets());
        h[16..20].copy_from_slice(&self.dst.octets());
        // Options: NOPs (type 1).
        for b in &mut h[20..] {
            *b = 1;
        }
        let c = csum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }
}

pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + payload.len());
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(payload);
    v
}

/// ICMP destination unreachable, fragmentation needed (type 3 code 4)
/// with next-hop MTU `mtu`, quoting `quoted`; checksum valid.
pub fn icmp_frag_needed(mtu: u16, quoted: &[u8]) -> Vec<u8> {
    let mut v = vec![3, 4, 0, 0, 0, 0];
    v.extend_from_slice(&mtu.to_be_bytes());
    v.extend_from_slice(quoted);
    let c = csum(&v);
    v[2..4].copy_from_slice(&c.to_be_bytes());
    v
}

pub fn vxlan(flags: u8, vni: u32) -> Vec<u8> {
    let b = vni.to_be_bytes();
    vec![flags, 0, 0, 0, b[1], b[2], b[3], 0]
}

/// ARP for IPv4 over Ethernet.
pub fn arp(oper: u16, sha: [u8; 6], spa: Ipv4Addr, tha: [u8; 6], tpa: Ipv4Addr) -> Vec<u8> {
    let mut v = vec![0, 1, 0x08, 0x00, 6, 4];
    v.extend_from_slice(&oper.to_be_bytes());
    v.extend_from_slice(&sha);
    v.extend_from_slice(&spa.octets());
    v.extend_from_slice(&tha);
    v.extend_from_slice(&tpa.octets());
    v
}

/// A complete Ethernet + IPv4 + UDP frame with a recognisable payload.
pub fn ipv4_udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
) -> Vec<u8> {
    let payload: Vec<u8> = (0..32u8).collect();
    let mut f = eth(dst_mac, src_mac, ETH_P_IP);
    f.extend(Ipv4::new(src, dst, 17).build(&udp(sport, 9000, &payload)));
    f
}

/// `outer eth + IPv4 + UDP(dport) + VXLAN(flags, vni)` around `inner`.
pub fn vxlan_frame(
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    dport: u16,
    flags: u8,
    vni: u32,
    inner: &[u8],
) -> Vec<u8> {
    let mut payload = vxlan(flags, vni);
    payload.extend_from_slice(inner);
    let mut f = eth(
        [0x02, 0, 0, 0, 0x99, 0x01],
        [0x02, 0, 0, 0, 0x99, 0x02],
        ETH_P_IP,
    );
    f.extend(Ipv4::new(outer_src, outer_dst, 17).build(&udp(40000, dport, &payload)));
    f
}
