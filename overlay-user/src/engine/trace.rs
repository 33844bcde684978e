//! `overlay trace`: the packets a container would send to reach an
//! address (the ARP request for the next hop, then the packet itself), run
//! through the live endpoint program with BPF_PROG_RUN, and each verdict
//! explained from the state: forwarded to which container, encapsulated to
//! which host, or dropped, and why, in words.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{Engine, EngineError};
use crate::{
    dataplane::ProgRun,
    model::{ContainerRecord, EndpointRecord, MacAddr, NetworkRecord, packet::checksum},
};

/// The protocol of the traced packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceProto {
    Icmp,
    Tcp,
    Udp,
}

/// One packet and what the program did with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceStep {
    /// The packet, e.g. `arp who-has 10.0.0.3` or `tcp 10.0.0.2:40000 -> 10.0.0.3:80`.
    pub packet: String,
    /// `answered`, `forwarded`, `encapsulated`, `to the host` or `dropped`.
    pub verdict: String,
    /// Why, in words.
    pub detail: String,
    /// The counters the run moved (outcome or drop reason).
    pub counters: Vec<String>,
}

/// A whole trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceView {
    pub container: String,
    pub network: String,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// The endpoint's host-side interface, where the program runs.
    pub interface: String,
    pub steps: Vec<TraceStep>,
}

/// Source port of traced TCP and UDP packets.
const TRACE_SPORT: u16 = 40_000;
const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_ARP: [u8; 2] = [0x08, 0x06];

/// An ARP request from `mac`/`ip` for `target`.
fn arp_request(mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ETH_P_ARP);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// An IPv4 packet in an Ethernet frame: an ICMP echo request, a UDP
/// datagram or a TCP SYN, checksums included.
fn ipv4_frame(
    (src_mac, dst_mac): (MacAddr, [u8; 6]),
    (src, dst): (Ipv4Addr, Ipv4Addr),
    proto: TraceProto,
    port: u16,
) -> Vec<u8> {
    let (number, l4) = match proto {
        TraceProto::Icmp => {
            let mut l4 = vec![8, 0, 0, 0, 0x7a, 0xce, 0, 1];
            l4.extend(std::iter::repeat_n(0x5a, 56));
            let c = checksum(&l4);
            l4[2..4].copy_from_slice(&c.to_be_bytes());
            (1u8, l4)
        }
        TraceProto::Udp | TraceProto::Tcp => {
            let mut l4 = Vec::new();
            l4.extend_from_slice(&TRACE_SPORT.to_be_bytes());
            l4.extend_from_slice(&port.to_be_bytes());
            let number = if proto == TraceProto::Udp {
                l4.extend_from_slice(&[0, 12, 0, 0]);
                l4.extend_from_slice(b"trac");
                17u8
            } else {
                // Sequence 1, no ack, 20-byte header, SYN, window 64240.
                l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]);
                6u8
            };
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&src.octets());
            pseudo.extend_from_slice(&dst.octets());
            pseudo.extend_from_slice(&[0, number]);
            pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            pseudo.extend_from_slice(&l4);
            let c = checksum(&pseudo);
            let at = if number == 17 { 6 } else { 16 };
            l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
            (number, l4)
        }
    };
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0x7a, 0xce, 0x40, 0, 64, number, 0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut f = Vec::with_capacity(14 + ip.len() + l4.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac.0);
    f.extend_from_slice(&ETH_P_IP);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&l4);
    f
}

fn mac_text(m: &[u8]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl Engine {
    /// The container's endpoint a packet to `to` leaves by: the one on the
    /// network that holds `to`, else the one holding the default route,
    /// else (an internal network gives none) the first on an internal
    /// network, whose verdict says why nothing leaves it.
    fn trace_endpoint(
        &self,
        c: &ContainerRecord,
        to: Ipv4Addr,
    ) -> Result<(EndpointRecord, NetworkRecord), EngineError> {
        let on = |ep: &EndpointRecord| {
            let net = self.state.networks.get(&ep.network_id)?;
            Some((ep.clone(), net.clone()))
        };
        if let Some(found) = c
            .endpoints
            .iter()
            .filter_map(on)
            .find(|(_, net)| net.subnet.contains(&to))
        {
            return Ok(found);
        }
        let routed = self.wanted_default_route(c).and_then(|route| {
            c.endpoints
                .iter()
                .filter(|ep| ep.ifname == route.ifname)
                .find_map(on)
        });
        routed
            .or_else(|| {
                c.endpoints
                    .iter()
                    .filter_map(on)
                    .find(|(_, net)| net.internal)
            })
            .ok_or_else(|| EngineError::NoPath(c.name.clone(), to))
    }

    /// The network whose subnet holds `ip`, if any.
    fn network_holding(&self, ip: Ipv4Addr) -> Option<&NetworkRecord> {
        self.state
            .networks
            .values()
            .find(|n| n.subnet.contains(&ip))
    }

    /// The container on this host with `ip` on network `net_id`.
    fn container_at(&self, net_id: &str, ip: Ipv4Addr) -> Option<(&str, &str)> {
        self.state.containers.values().find_map(|c| {
            c.endpoints
                .iter()
                .find(|e| e.network_id == net_id && e.ip == ip)
                .map(|e| (c.name.as_str(), e.ifname.as_str()))
        })
    }

    /// A drop reason in words, for a packet from network `net` to `to`.
    fn why_dropped(&self, reason: &str, net: &NetworkRecord, to: Ipv4Addr, port: u16) -> String {
        let reason = reason.strip_prefix("drop_").unwrap_or(reason);
        let why = match reason {
            "isolation" => match self.network_holding(to) {
                Some(other) => format!("{to} is on network {}", other.name),
                None => format!("{to} is on another network"),
            },
            "no_route" => format!("no container has {to} on network {}", net.name),
            "arp_miss" => format!(
                "nobody has {to} on network {}: the container's ARP goes unanswered",
                net.name
            ),
            "internal" => format!(
                "network {} is internal: nothing outside {} is reachable",
                net.name, net.subnet
            ),
            "to_tunnel_port" => format!("{to}:{port} is the overlay's VXLAN port on a host"),
            "to_guarded_service" => {
                format!("{to}:{port} is the cluster store, which containers may not reach")
            }
            "spoofed" => "the source address or MAC is not the container's".to_owned(),
            other => other.replace('_', " "),
        };
        format!("{reason}: {why}")
    }

    /// What the run of the IPv4 packet did, in words.
    fn explain(
        &self,
        run: &ProgRun,
        net: &NetworkRecord,
        to: Ipv4Addr,
        port: u16,
    ) -> (String, String) {
        let outcome = |name: &str| run.moved.contains(&name);
        if let Some(reason) = run.moved.iter().find(|n| n.starts_with("drop_")) {
            return ("dropped".into(), self.why_dropped(reason, net, to, port));
        }
        if outcome("forward_local") {
            let whom = self.container_at(&net.id, to).map_or_else(
                || format!("{to}"),
                |(name, ifname)| format!("container {name} ({ifname}, {to})"),
            );
            return (
                "forwarded".into(),
                format!(
                    "on this host, straight into the namespace of {whom} on network {}",
                    net.name
                ),
            );
        }
        if outcome("encap") && run.out.len() >= 64 {
            let o = &run.out;
            let remote = Ipv4Addr::new(o[30], o[31], o[32], o[33]);
            let vni = u32::from_be_bytes([0, o[46], o[47], o[48]]);
            let sport = u16::from_be_bytes([o[34], o[35]]);
            let dport = u16::from_be_bytes([o[36], o[37]]);
            let host = self
                .state
                .cluster_hosts
                .get(&remote)
                .map_or_else(|| remote.to_string(), |name| format!("{name} ({remote})"));
            return (
                "encapsulated".into(),
                format!(
                    "VXLAN VNI {vni} to host {host}, UDP {sport} -> {dport}, next hop {}; that host's underlay program delivers it",
                    mac_text(&o[0..6])
                ),
            );
        }
        if outcome("to_host") {
            let detail = if to == net.gateway {
                format!("to the host itself, at network {}'s gateway", net.name)
            } else {
                format!(
                    "to the host stack through gateway {}, which routes it on (masqueraded)",
                    net.gateway
                )
            };
            return ("to the host".into(), detail);
        }
        if outcome("dns_answered") {
            return (
                "answered".into(),
                "a name on the network, answered by the endpoint program".into(),
            );
        }
        if outcome("icmp_frag_needed") {
            return (
                "dropped".into(),
                "too big for the path once encapsulated: answered with ICMP fragmentation needed"
                    .into(),
            );
        }
        (
            format!("action {}", run.action),
            format!("counted as {}", run.moved.join(", ")),
        )
    }

    /// Traces a packet from container `from` to `to` (`port` for TCP and
    /// UDP) through this host's endpoint program.
    pub fn trace(
        &mut self,
        from: &str,
        to: Ipv4Addr,
        proto: TraceProto,
        port: u16,
    ) -> Result<TraceView, EngineError> {
        let c = self.container(from)?.clone();
        let (ep, net) = self.trace_endpoint(&c, to)?;
        let want_ip = u32::from(ep.ip).to_be();
        let (ifindex, info) = self
            .dp
            .local_endpoints()?
            .into_iter()
            .find(|(_, i)| i.vni == net.vni && i.ip == want_ip)
            .ok_or_else(|| EngineError::NoSuchEndpoint(format!("{} on {}", c.name, net.name)))?;
        let mut view = TraceView {
            container: c.name.clone(),
            network: net.name.clone(),
            src: ep.ip,
            dst: to,
            interface: ep.host_ifname.clone(),
            steps: Vec::new(),
        };
        // The container's kernel first asks for the next hop's MAC.
        let next_hop = if net.subnet.contains(&to) {
            to
        } else {
            net.gateway
        };
        let arp = self
            .dp
            .run_endpoint(ifindex, &arp_request(MacAddr(info.mac), ep.ip, next_hop))?;
        let counters = |run: &ProgRun| run.moved.iter().map(|s| (*s).to_owned()).collect();
        let answered = arp.moved.contains(&"arp_reply") && arp.out.len() >= 28;
        view.steps.push(TraceStep {
            packet: format!("arp who-has {next_hop}"),
            verdict: if answered { "answered" } else { "dropped" }.into(),
            detail: if answered {
                format!("{next_hop} is at {}", mac_text(&arp.out[22..28]))
            } else {
                let reason = arp.moved.first().copied().unwrap_or("unanswered");
                self.why_dropped(reason, &net, next_hop, port)
            },
            counters: counters(&arp),
        });
        if !answered {
            return Ok(view);
        }
        let dst_mac: [u8; 6] = arp.out[22..28].try_into().expect("six bytes");
        let frame = ipv4_frame((MacAddr(info.mac), dst_mac), (ep.ip, to), proto, port);
        let run = self.dp.run_endpoint(ifindex, &frame)?;
        let (verdict, detail) = self.explain(&run, &net, to, port);
        let packet = match proto {
            TraceProto::Icmp => format!("icmp echo {} -> {to}", ep.ip),
            TraceProto::Tcp => format!("tcp syn {}:{TRACE_SPORT} -> {to}:{port}", ep.ip),
            TraceProto::Udp => format!("udp {}:{TRACE_SPORT} -> {to}:{port}", ep.ip),
        };
        view.steps.push(TraceStep {
            packet,
            verdict,
            detail,
            counters: counters(&run),
        });
        Ok(view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let f = ipv4_frame(
            (MacAddr([2, 0, 0, 0, 0, 1]), [2, 0, 0, 0, 0, 2]),
            (
                "10.0.0.2".parse().expect("ip"),
                "10.0.0.3".parse().expect("ip"),
            ),
            TraceProto::Tcp,
            80,
        );
        // A header with its checksum in sums to zero.
        assert_eq!(checksum(&f[14..34]), 0);
        let mut pseudo = f[26..34].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        pseudo.extend_from_slice(&f[34..]);
        assert_eq!(checksum(&pseudo), 0);
        let icmp = ipv4_frame(
            (MacAddr([2, 0, 0, 0, 0, 1]), [2, 0, 0, 0, 0, 2]),
            (
                "10.0.0.2".parse().expect("ip"),
                "10.0.0.3".parse().expect("ip"),
            ),
            TraceProto::Icmp,
            0,
        );
        assert_eq!(checksum(&icmp[34..]), 0);
        assert_eq!(
            arp_request(
                MacAddr([2; 6]),
                "10.0.0.2".parse().expect("ip"),
                "10.0.0.3".parse().expect("ip")
            )
            .len(),
            42
        );
    }
}
