//! Every input rule, once: the engine checks a command against them before
//! it changes anything, and the dataplane checks each map entry against the
//! same rules before it writes it.

use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnet::Ipv4Net;
use overlay_common::VNI_MAX;

use super::{MacAddr, Proto, PublishedPort, ipam};

/// Name of the default network, present from the first start.
pub const DEFAULT_NETWORK: &str = "bridge";
/// How every host-side veth of an endpoint is named: this prefix and 8 hex
/// digits. The host filter tells our containers' traffic by it.
pub const HOST_VETH_PREFIX: &str = "ovl";
/// First VNI handed to overlay networks without `--vni`.
pub const OVERLAY_VNI_BASE: u32 = 4096;
/// Host-local networks (bridge driver) get identifiers from here up; they
/// never leave the host. Overlay VNIs must stay below.
pub const LOCAL_VNI_BASE: u32 = 0x00f0_0000;
/// MTU of overlay networks (underlay 1500 minus VXLAN) and bridge networks.
pub const OVERLAY_MTU: u32 = overlay_common::DEFAULT_OVERLAY_MTU;
pub const BRIDGE_MTU: u32 = 1500;
/// Interface MTUs a network may ask for.
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 576..=9000;
/// Longest network or container name.
pub const NAME_MAX: usize = 64;
/// Longest prefix a network may have: a /30 holds a gateway and one
/// endpoint.
pub const PREFIX_MAX: u8 = 30;

/// Input that breaks a rule. The text is what the user reads.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error(
        "invalid name {0:?}: use letters, digits, '_', '.', '-' (max 64), starting with a letter or digit"
    )]
    InvalidName(String),
    #[error("invalid subnet {0}: host bits are set (did you mean {1}?)")]
    HostBits(Ipv4Net, Ipv4Net),
    #[error("subnet {0} is too small: use /30 or larger")]
    SubnetTooSmall(Ipv4Net),
    #[error("gateway {0} is not a usable address of {1}")]
    GatewayOutside(Ipv4Addr, Ipv4Net),
    #[error("ip range {0} is not inside subnet {1}")]
    RangeOutside(Ipv4Net, Ipv4Net),
    #[error("--port applies to --proto tcp and udp only")]
    PortWithoutTransport,
    #[error("invalid VNI {0}: must be between 1 and {VNI_MAX}")]
    InvalidVni(u32),
    #[error("VNI {0} is out of range for overlay networks (1-{max})", max = LOCAL_VNI_BASE - 1)]
    VniRange(u32),
    #[error("--vni applies to overlay networks only")]
    VniOnBridge,
    #[error("mtu {0} is out of range (576-9000)")]
    Mtu(u32),
    #[error("address {0} is not a usable address of {1}")]
    AddressOutside(Ipv4Addr, Ipv4Net),
    #[error("invalid MAC {0}: must be unicast and non-zero")]
    InvalidMac(MacAddr),
    #[error("invalid host address {0}: must be a unicast IPv4 address")]
    InvalidHostAddress(Ipv4Addr),
    #[error("only one IPv4 --subnet per network is supported")]
    OneSubnet,
    #[error("invalid {what} {text:?}: expected KEY=VALUE")]
    KeyValue { what: &'static str, text: String },
    #[error("unknown driver option {0:?} (supported: mtu)")]
    UnknownOption(String),
    #[error("invalid published port {0:?}: use [HOST_IP:]HOST_PORT:PORT[/tcp|/udp], ports 1-65535")]
    Publish(String),
    #[error("invalid mtu {0:?}")]
    MtuText(String),
    #[error("subnet {0} overlaps the reserved range {1}")]
    ReservedSubnet(Ipv4Net, Ipv4Net),
    #[error("invalid ID {0:?}: expected 64 lowercase hex digits")]
    InvalidId(String),
    #[error("invalid host name {0:?}: use letters, digits, '_', '.', '-' (max 64)")]
    InvalidHostName(String),
    #[error("network {0} is not an overlay network")]
    NotOverlay(String),
    #[error(
        "mtu {mtu} does not fit the underlay: {iface} carries {underlay} bytes, so an overlay network takes at most {max}",
        max = underlay.saturating_sub(overlay_common::VXLAN_ENCAP_LEN)
    )]
    MtuTooBig {
        mtu: u32,
        iface: String,
        underlay: u32,
    },
}

/// Ranges no network may use: "this network", loopback, link-local and
/// multicast/reserved (a gateway there would take the host's own traffic).
pub const RESERVED: [(Ipv4Addr, u8); 4] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(224, 0, 0, 0), 3),
];

/// Names of networks and containers: letters, digits, `_.-`, at most 64,
/// starting with a letter or digit (Docker's rule).
pub fn check_name(name: &str) -> Result<(), RuleError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= NAME_MAX
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RuleError::InvalidName(name.to_owned()))
    }
}

/// A network's subnet: the network address itself, room for a gateway and
/// an endpoint, and none of the reserved ranges.
pub fn check_subnet(subnet: Ipv4Net) -> Result<(), RuleError> {
    if subnet.trunc() != subnet {
        return Err(RuleError::HostBits(subnet, subnet.trunc()));
    }
    if subnet.prefix_len() > PREFIX_MAX {
        return Err(RuleError::SubnetTooSmall(subnet));
    }
    for (addr, len) in RESERVED {
        let reserved = Ipv4Net::new(addr, len).expect("valid reserved range");
        if ipam::overlaps(reserved, subnet) {
            return Err(RuleError::ReservedSubnet(subnet, reserved));
        }
    }
    Ok(())
}

/// Object IDs: 64 lowercase hex digits, as [`super::ids::new_id`] makes them.
pub fn check_id(id: &str) -> Result<(), RuleError> {
    if id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(RuleError::InvalidId(id.chars().take(80).collect()))
    }
}

/// A host's name as other hosts show it.
pub fn check_host_name(name: &str) -> Result<(), RuleError> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(RuleError::InvalidHostName(name.chars().take(80).collect()))
    }
}

/// A network record, wherever it comes from (the CLI builds one that
/// passes; the cluster store may hold anything): every field by the rules
/// `network create` applies.
pub fn check_network(n: &super::NetworkRecord) -> Result<(), RuleError> {
    check_id(&n.id)?;
    check_name(&n.name)?;
    check_subnet(n.subnet)?;
    check_gateway(n.subnet, n.gateway)?;
    if let Some(range) = n.ip_range {
        check_ip_range(n.subnet, range)?;
    }
    if n.driver == super::Driver::Overlay {
        check_requested_vni(true, n.vni)?;
    } else {
        check_vni(n.vni)?;
    }
    check_mtu(n.mtu)
}

/// An address claim of network `net`, as another host wrote it.
pub fn check_claim(c: &super::Claim, net: &super::NetworkRecord) -> Result<(), RuleError> {
    check_endpoint_address(net.subnet, Some(net.gateway), c.ip)?;
    check_mac(c.mac)?;
    check_host_address(c.host)?;
    check_name(&c.container)?;
    for alias in &c.aliases {
        check_name(alias)?;
    }
    check_id(&c.endpoint_id)
}

/// A gateway is a usable host address of its subnet.
pub fn check_gateway(subnet: Ipv4Net, gateway: Ipv4Addr) -> Result<(), RuleError> {
    if ipam::is_host(subnet, gateway) {
        Ok(())
    } else {
        Err(RuleError::GatewayOutside(gateway, subnet))
    }
}

/// The gateway a subnet gets when none is given: its first host address.
pub fn default_gateway(subnet: Ipv4Net) -> Option<Ipv4Addr> {
    subnet.hosts().next()
}

/// `--ip-range` lies inside the subnet.
pub fn check_ip_range(subnet: Ipv4Net, range: Ipv4Net) -> Result<(), RuleError> {
    if subnet.contains(&range.network()) && subnet.contains(&range.broadcast()) {
        Ok(())
    } else {
        Err(RuleError::RangeOutside(range, subnet))
    }
}

/// Any VNI the 24-bit field carries (0 is reserved).
pub fn check_vni(vni: u32) -> Result<(), RuleError> {
    if vni == 0 || vni > VNI_MAX {
        return Err(RuleError::InvalidVni(vni));
    }
    Ok(())
}

/// A VNI asked for by `network create --vni`: overlay networks only, below
/// the range host-local networks use.
pub fn check_requested_vni(overlay: bool, vni: u32) -> Result<(), RuleError> {
    if !overlay {
        return Err(RuleError::VniOnBridge);
    }
    if vni == 0 || vni >= LOCAL_VNI_BASE {
        return Err(RuleError::VniRange(vni));
    }
    Ok(())
}

/// The VNIs a driver allocates from when none is asked for.
pub const fn vni_pool(overlay: bool) -> std::ops::Range<u32> {
    if overlay {
        OVERLAY_VNI_BASE..LOCAL_VNI_BASE
    } else {
        LOCAL_VNI_BASE..VNI_MAX + 1
    }
}

pub fn check_mtu(mtu: u32) -> Result<(), RuleError> {
    if MTU_RANGE.contains(&mtu) {
        Ok(())
    } else {
        Err(RuleError::Mtu(mtu))
    }
}

/// An overlay network's MTU once VXLAN adds its 50 bytes must fit the
/// underlay NIC's.
pub fn check_overlay_mtu(mtu: u32, iface: &str, underlay: u32) -> Result<(), RuleError> {
    if mtu + overlay_common::VXLAN_ENCAP_LEN > underlay {
        return Err(RuleError::MtuTooBig {
            mtu,
            iface: iface.to_owned(),
            underlay,
        });
    }
    Ok(())
}

/// An endpoint's address: a host address of the subnet, not the gateway.
pub fn check_endpoint_address(
    subnet: Ipv4Net,
    gateway: Option<Ipv4Addr>,
    ip: Ipv4Addr,
) -> Result<(), RuleError> {
    if !ipam::is_host(subnet, ip) || Some(ip) == gateway {
        return Err(RuleError::AddressOutside(ip, subnet));
    }
    Ok(())
}

/// An endpoint's MAC: unicast and not all-zero.
pub fn check_mac(mac: MacAddr) -> Result<(), RuleError> {
    if mac.is_valid_unicast() {
        Ok(())
    } else {
        Err(RuleError::InvalidMac(mac))
    }
}

/// An underlay address (this host's or a peer's): unicast, not loopback.
pub fn check_host_address(ip: Ipv4Addr) -> Result<(), RuleError> {
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() || ip.is_loopback() {
        return Err(RuleError::InvalidHostAddress(ip));
    }
    Ok(())
}

/// `KEY=VALUE` (labels, driver options).
pub fn parse_key_value(text: &str, what: &'static str) -> Result<(String, String), RuleError> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(RuleError::KeyValue {
            what,
            text: text.to_owned(),
        }),
    }
}

/// Labels given as `KEY=VALUE`.
pub fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>, RuleError> {
    labels.iter().map(|l| parse_key_value(l, "label")).collect()
}

/// `-p [HOST_IP:]HOST_PORT:PORT[/tcp|/udp]`, as Docker writes it.
pub fn parse_publish(text: &str) -> Result<PublishedPort, RuleError> {
    let bad = || RuleError::Publish(text.to_owned());
    let (spec, proto) = match text.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Proto::Tcp),
        Some((spec, "udp")) => (spec, Proto::Udp),
        Some(_) => return Err(bad()),
        None => (text, Proto::Tcp),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host_ip, host_port, port) = match parts.as_slice() {
        [h, p] => (None, *h, *p),
        [ip, h, p] => (Some(ip.parse::<Ipv4Addr>().map_err(|_| bad())?), *h, *p),
        _ => return Err(bad()),
    };
    let port_of = |s: &str| s.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad);
    Ok(PublishedPort {
        proto,
        host_ip,
        host_port: port_of(host_port)?,
        port: port_of(port)?,
    })
}

/// What `-o KEY=VALUE` driver options set: so far the MTU, under its short
/// name or Docker's.
pub fn parse_driver_options(opts: &[String]) -> Result<Option<u32>, RuleError> {
    let mut mtu = None;
    for o in opts {
        let (k, v) = parse_key_value(o, "option")?;
        match k.as_str() {
            "mtu" | "com.docker.network.driver.mtu" => {
                mtu = Some(v.parse().map_err(|_| RuleError::MtuText(v.clone()))?);
            }
            _ => return Err(RuleError::UnknownOption(k)),
        }
    }
    Ok(mtu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test subnet")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    #[test]
    fn reserved_ranges_and_records() {
        for bad in [
            "0.0.0.0/0",
            "127.0.0.0/8",
            "127.1.0.0/16",
            "169.254.0.0/24",
            "224.0.0.0/24",
            "240.0.0.0/8",
            "0.0.0.0/30",
        ] {
            assert!(
                matches!(check_subnet(net(bad)), Err(RuleError::ReservedSubnet(..))),
                "{bad}"
            );
        }
        assert_eq!(check_id(&"a".repeat(64)), Ok(()));
        for bad in ["abc", &"A".repeat(64), &"g".repeat(64), &"a".repeat(65)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        assert_eq!(check_host_name("host-1.lab"), Ok(()));
        for bad in ["", "a b", "a\nb", "x\"y", &"h".repeat(65)] {
            assert!(check_host_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names() {
        for good in ["a", "web-1", "db_2.x", &"n".repeat(64)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "-a", ".a", "bad/name", "a b", &"n".repeat(65), "é"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn subnets_gateways_and_ranges() {
        assert_eq!(check_subnet(net("10.0.0.0/24")), Ok(()));
        assert_eq!(check_subnet(net("10.0.0.0/30")), Ok(()));
        assert_eq!(
            check_subnet(net("10.0.0.1/24")),
            Err(RuleError::HostBits(net("10.0.0.1/24"), net("10.0.0.0/24")))
        );
        assert_eq!(
            check_subnet(net("10.0.0.0/31")),
            Err(RuleError::SubnetTooSmall(net("10.0.0.0/31")))
        );
        let s = net("10.0.0.0/24");
        assert_eq!(check_gateway(s, ip("10.0.0.1")), Ok(()));
        for bad in ["10.0.0.0", "10.0.0.255", "10.0.1.1"] {
            assert!(check_gateway(s, ip(bad)).is_err(), "{bad}");
        }
        assert_eq!(default_gateway(s), Some(ip("10.0.0.1")));
        assert_eq!(check_ip_range(s, net("10.0.0.128/25")), Ok(()));
        assert!(check_ip_range(s, net("10.0.0.0/23")).is_err());
        assert!(check_ip_range(s, net("10.1.0.0/25")).is_err());
    }

    #[test]
    fn vnis_and_mtus() {
        assert_eq!(check_vni(1), Ok(()));
        assert_eq!(check_vni(VNI_MAX), Ok(()));
        assert!(check_vni(0).is_err() && check_vni(VNI_MAX + 1).is_err());
        assert_eq!(check_requested_vni(true, 4242), Ok(()));
        assert_eq!(
            check_requested_vni(true, LOCAL_VNI_BASE),
            Err(RuleError::VniRange(LOCAL_VNI_BASE))
        );
        assert_eq!(check_requested_vni(false, 7), Err(RuleError::VniOnBridge));
        assert!(vni_pool(true).end <= vni_pool(false).start);
        assert_eq!(check_mtu(1450), Ok(()));
        assert!(check_mtu(575).is_err() && check_mtu(9001).is_err());
    }

    #[test]
    fn endpoint_addresses_and_hosts() {
        let s = net("10.0.0.0/24");
        let gw = Some(ip("10.0.0.1"));
        assert_eq!(check_endpoint_address(s, gw, ip("10.0.0.2")), Ok(()));
        for bad in ["10.0.0.1", "10.0.0.0", "10.0.0.255", "10.9.0.2"] {
            assert!(check_endpoint_address(s, gw, ip(bad)).is_err(), "{bad}");
        }
        assert_eq!(check_host_address(ip("192.0.2.1")), Ok(()));
        for bad in ["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255"] {
            assert!(check_host_address(ip(bad)).is_err(), "{bad}");
        }
        assert!(check_mac(MacAddr([1, 0, 0, 0, 0, 0])).is_err());
        assert!(check_mac(MacAddr::default()).is_err());
    }

    #[test]
    fn options_and_labels() {
        assert_eq!(parse_driver_options(&["mtu=1400".into()]), Ok(Some(1400)));
        assert_eq!(
            parse_driver_options(&["com.docker.network.driver.mtu=1300".into()]),
            Ok(Some(1300))
        );
        assert_eq!(
            parse_driver_options(&["color=blue".into()]),
            Err(RuleError::UnknownOption("color".into()))
        );
        assert!(parse_driver_options(&["mtu".into()]).is_err());
        assert!(parse_driver_options(&["mtu=big".into()]).is_err());
        let labels = parse_labels(&["team=x".into(), "empty=".into()]).expect("labels");
        assert_eq!(labels["team"], "x");
        assert_eq!(labels["empty"], "");
        assert!(parse_labels(&["=x".into()]).is_err());
    }

    #[test]
    fn published_ports_as_docker_writes_them() {
        let p = |t: &str| parse_publish(t).map(|p| p.to_string());
        assert_eq!(p("8080:80").expect("valid"), "8080:80/tcp");
        assert_eq!(p("53:53/udp").expect("valid"), "53:53/udp");
        assert_eq!(
            p("192.0.2.1:8443:443/tcp").expect("valid"),
            "192.0.2.1:8443:443/tcp"
        );
        for bad in [
            "80",
            "0:80",
            "8080:0",
            "8080:80/sctp",
            "x:8080:80",
            "1:2:3:4",
            "70000:80",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }
}
