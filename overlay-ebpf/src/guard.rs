//! What a container may not reach through its host, whatever the host's
//! firewall says: any host's VXLAN port (speaking the tunnel protocol it
//! could inject frames into networks it is not on) and the overlay's own
//! services (the guarded map: the cluster store's client endpoints).
//! Checked on the gateway path only: traffic that stays in the overlay
//! never reaches a host's stack.

use aya_ebpf::programs::TcContext;
use network_types::ip::Ipv4Hdr;
use overlay_common::{CONFIG_FLAG_READY, DropReason, GuardKey, VXLAN_PORT};

use crate::{
    maps::{OVL_CONFIG, OVL_GUARDS},
    parse::{IPPROTO_TCP, IPPROTO_UDP, addr, is_first_fragment},
};

/// Drops what the container may not send out through its host.
/// `header_len`: the IPv4 header's length (the L4 header follows it).
#[inline(always)]
pub fn check(ctx: &TcContext, ip: &Ipv4Hdr, header_len: usize) -> Result<(), DropReason> {
    if !matches!(ip.proto, IPPROTO_TCP | IPPROTO_UDP) {
        return Ok(());
    }
    // Later fragments carry no ports; without their first fragment (which
    // does, and is checked) the receiver never reassembles them.
    if !is_first_fragment(ip) {
        return Ok(());
    }
    // Source and destination port, as in the header. A variable offset
    // (IP options) through bpf_skb_load_bytes needs no proof for the
    // verifier.
    let ports: [u8; 4] = ctx
        .load(14 + header_len)
        .map_err(|_| DropReason::Malformed)?;
    let dport = u16::from_ne_bytes([ports[2], ports[3]]);
    if ip.proto == IPPROTO_UDP {
        let configured = match OVL_CONFIG.get(0) {
            Some(cfg) if cfg.flags & CONFIG_FLAG_READY != 0 => cfg.vxlan_port,
            _ => VXLAN_PORT,
        };
        let port = u16::from_be(dport);
        if port == VXLAN_PORT || port == configured {
            return Err(DropReason::ToTunnelPort);
        }
    }
    let key = GuardKey {
        ip: addr(ip.dst_addr),
        port: dport,
        proto: ip.proto,
        _pad0: 0,
    };
    // SAFETY: only tested for presence.
    if unsafe { OVL_GUARDS.get(&key) }.is_some() {
        return Err(DropReason::ToGuarded);
    }
    Ok(())
}
