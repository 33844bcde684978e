//! DNS answers in the kernel: a container's query to its network's gateway
//! for a name on that network (`OVL_NAMES`) becomes the reply in place and
//! goes straight back into the container, so known names resolve with no
//! trip through the host stack and while the daemon is down. Only the plain
//! case is answered here: one question, no other records (no EDNS), class
//! IN, an uncompressed name of at most `DNS_NAME_MAX` bytes. A names an
//! address list, any other type of a known name gets an empty answer.
//! Everything else (other names, PTR, TCP, anything unusual) goes on to the
//! daemon's resolver on the gateway, untouched.

use core::mem;

use aya_ebpf::programs::TcContext;
use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr};
use overlay_common::{
    Counter, DNS_ADDRS_MAX, DNS_NAME_MAX, DNS_TTL, DropReason, EndpointInfo, NameKey,
};

use crate::{
    csum, icmp,
    maps::{OVL_NAMES, OVL_NETWORKS},
    parse::{ETH_P_IP, IPPROTO_UDP, addr},
};

const DNS_PORT: u16 = 53;
/// Offsets in a frame whose IPv4 header has no options.
const UDP_OFF: usize = mem::size_of::<EthHdr>() + mem::size_of::<Ipv4Hdr>();
const DNS_OFF: usize = UDP_OFF + mem::size_of::<UdpHdr>();
const QNAME_OFF: usize = DNS_OFF + mem::size_of::<DnsHeader>();
/// Header flags: response, authoritative, recursion desired/available;
/// the opcode bits (and QR) of a plain query are zero.
const QR: u16 = 0x8000;
const OPCODE_MASK: u16 = 0x7800;
const AA: u16 = 0x0400;
const RD: u16 = 0x0100;
const RA: u16 = 0x0080;
const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// A compression pointer's top bits; never in a question we answer.
const LABEL_POINTER: u8 = 0xc0;
const REPLY_TTL: u8 = 64;

/// RFC 1035 section 4.1.1, fields in network order.
#[repr(C)]
#[derive(Clone, Copy)]
struct DnsHeader {
    id: [u8; 2],
    flags: [u8; 2],
    qdcount: [u8; 2],
    ancount: [u8; 2],
    nscount: [u8; 2],
    arcount: [u8; 2],
}

/// One A record whose name points back at the question (offset 12).
#[repr(C)]
#[derive(Clone, Copy)]
struct ARecord {
    name: [u8; 2],
    kind: [u8; 2],
    class: [u8; 2],
    ttl: [u8; 4],
    rdlength: [u8; 2],
    addr: [u8; 4],
}
const A_RECORD_LEN: usize = mem::size_of::<ARecord>();
const _: () = assert!(A_RECORD_LEN == 16);

/// The headers of the reply, written over the query's.
#[repr(C)]
#[derive(Clone, Copy)]
struct ReplyHeaders {
    eth: EthHdr,
    ip: Ipv4Hdr,
    udp: UdpHdr,
    dns: DnsHeader,
}

/// Answers the container's UDP packet in `ctx` (Ethernet `eth`, IPv4 `ip`
/// without options, from endpoint `ep`) when it is a query this program can
/// answer; `None` leaves it to the gateway path (and so to the daemon).
#[inline(always)]
pub fn answer(
    ctx: &TcContext,
    eth: &EthHdr,
    ip: &Ipv4Hdr,
    ep: &EndpointInfo,
) -> Result<Option<(i32, Counter)>, DropReason> {
    if ip.proto != IPPROTO_UDP {
        return Ok(None);
    }
    let Ok(udp) = ctx.load::<UdpHdr>(UDP_OFF) else {
        return Ok(None);
    };
    if u16::from_be_bytes(udp.dst) != DNS_PORT {
        return Ok(None);
    }
    // SAFETY: copied out at once.
    let gateway = match unsafe { OVL_NETWORKS.get(&ep.vni) } {
        Some(net) if net.gateway != 0 => net.gateway,
        _ => return Ok(None),
    };
    if addr(ip.dst_addr) != gateway {
        return Ok(None);
    }
    let Ok(query) = ctx.load::<DnsHeader>(DNS_OFF) else {
        return Ok(None);
    };
    let flags = u16::from_be_bytes(query.flags);
    if flags & (QR | OPCODE_MASK) != 0
        || u16::from_be_bytes(query.qdcount) != 1
        || query.ancount != [0, 0]
        || query.nscount != [0, 0]
        || query.arcount != [0, 0]
    {
        return Ok(None);
    }
    let mut key = NameKey {
        vni: ep.vni,
        len: 0,
        name: [0; DNS_NAME_MAX],
    };
    let Some(name_len) = read_name(ctx, &mut key.name) else {
        return Ok(None);
    };
    key.len = name_len as u32;
    let Ok(tail) = ctx.load::<[u8; 4]>(QNAME_OFF + name_len) else {
        return Ok(None);
    };
    let qtype = u16::from_be_bytes([tail[0], tail[1]]);
    // Exactly the question, nothing after it.
    let question_end = QNAME_OFF + name_len + 4;
    if u16::from_be_bytes([tail[2], tail[3]]) != CLASS_IN
        || usize::from(u16::from_be_bytes(udp.len)) != question_end - UDP_OFF
    {
        return Ok(None);
    }
    // SAFETY: copied out at once.
    let Some(found) = (unsafe { OVL_NAMES.get(&key) }).copied() else {
        return Ok(None);
    };
    let count = if qtype == TYPE_A {
        (found.count as usize).min(DNS_ADDRS_MAX)
    } else {
        0
    };
    let reply_len = question_end + count * A_RECORD_LEN;
    let mut headers = ReplyHeaders {
        eth: EthHdr {
            dst_addr: eth.src_addr,
            src_addr: eth.dst_addr,
            ether_type: ETH_P_IP,
        },
        ip: Ipv4Hdr {
            vihl: 0x45,
            tos: 0,
            tot_len: ((reply_len - mem::size_of::<EthHdr>()) as u16).to_be_bytes(),
            id: [0, 0],
            frags: [0x40, 0],
            ttl: REPLY_TTL,
            proto: IPPROTO_UDP,
            check: [0, 0],
            src_addr: ip.dst_addr,
            dst_addr: ip.src_addr,
        },
        udp: UdpHdr {
            src: DNS_PORT.to_be_bytes(),
            dst: udp.src,
            len: ((reply_len - UDP_OFF) as u16).to_be_bytes(),
            // Optional over IPv4 (RFC 768); the container's stack takes
            // zero as "not computed".
            check: [0, 0],
        },
        dns: DnsHeader {
            id: query.id,
            flags: (QR | AA | (flags & RD) | RA).to_be_bytes(),
            qdcount: query.qdcount,
            ancount: (count as u16).to_be_bytes(),
            nscount: [0, 0],
            arcount: [0, 0],
        },
    };
    headers.ip.check = csum::ipv4_header(&headers.ip);
    ctx.change_tail(reply_len as u32, 0)
        .map_err(|_| DropReason::HelperFailed)?;
    ctx.store(0, &headers, 0)
        .map_err(|_| DropReason::HelperFailed)?;
    let mut i = 0;
    while i < DNS_ADDRS_MAX {
        if i < count {
            let record = ARecord {
                name: [LABEL_POINTER, mem::size_of::<DnsHeader>() as u8],
                kind: TYPE_A.to_be_bytes(),
                class: CLASS_IN.to_be_bytes(),
                ttl: DNS_TTL.to_be_bytes(),
                rdlength: 4u16.to_be_bytes(),
                addr: found.addrs[i].to_ne_bytes(),
            };
            ctx.store(question_end + i * A_RECORD_LEN, &record, 0)
                .map_err(|_| DropReason::HelperFailed)?;
        }
        i += 1;
    }
    Ok(Some((icmp::back_to_sender(ctx), Counter::DnsAnswered)))
}

/// Copies the question's name (wire form) into `name`, ASCII letters in
/// lower case; its length with the root's zero byte, or `None` for a name
/// that is too long, compressed or cut off.
#[inline(always)]
fn read_name(ctx: &TcContext, name: &mut [u8; DNS_NAME_MAX]) -> Option<usize> {
    // The offset of the next length byte.
    let mut label_at = 0;
    // A bounded loop: the verifier follows it to DNS_NAME_MAX steps.
    for (i, slot) in name.iter_mut().enumerate() {
        let b: u8 = ctx.load(QNAME_OFF + i).ok()?;
        if i == label_at {
            if b == 0 {
                return Some(i + 1);
            }
            if b & LABEL_POINTER != 0 {
                return None;
            }
            label_at = i + 1 + usize::from(b);
            *slot = b;
        } else {
            *slot = b.to_ascii_lowercase();
        }
    }
    None
}
