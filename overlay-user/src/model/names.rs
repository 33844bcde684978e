//! Names containers resolve, with the semantics of Docker's embedded DNS
//! server on user-defined networks: a container finds the containers that
//! share a network with it by name, by alias (`--network-alias`, `--alias`)
//! and by short ID, on this host and on other hosts of the cluster; names
//! on networks it is not on do not exist for it. Built from the state, so
//! it is exactly what the records say at that moment.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use overlay_common::{DNS_ADDRS_MAX, DNS_NAME_MAX, NameKey, NameValue};

use super::{Snapshot, ids};

/// The container name on claims of Docker's endpoints (the sandbox is not
/// known when the address is claimed). Docker answers their names itself.
pub const DOCKER_CLAIMANT: &str = "docker";

/// What to answer a query with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A records (at least one address).
    Addresses(Vec<Ipv4Addr>),
    /// A PTR record.
    Pointer(String),
    /// The name exists, with no record of the type asked (AAAA of a
    /// container): an empty NOERROR answer, not a timeout.
    NoData,
    /// No such name here, and nothing to ask upstream (internal networks).
    NxDomain,
    /// Not one of ours: the host's upstream resolvers answer.
    Forward,
    /// The asker is not an endpoint of the network whose gateway it asked.
    Refused,
}

/// The record type asked, as far as the answer depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryType {
    A,
    Ptr,
    Other,
}

/// Every name on every network of this host's view, and who may ask.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameTable {
    /// Network ID -> lower-case name -> addresses (sorted, no repeats).
    names: BTreeMap<String, BTreeMap<String, BTreeSet<Ipv4Addr>>>,
    /// Network ID -> address -> the container's name (PTR).
    reverse: BTreeMap<String, BTreeMap<Ipv4Addr, String>>,
    /// Gateway address -> network ID, for networks with endpoints here.
    gateways: BTreeMap<Ipv4Addr, String>,
    /// (network ID, local endpoint address) -> the networks of that
    /// endpoint's container, that network first.
    askers: BTreeMap<(String, Ipv4Addr), Vec<String>>,
    /// Networks whose containers reach nothing outside.
    internal: BTreeSet<String>,
}

/// The first line of every resolv.conf this program writes: what tells
/// ours from one a user put there.
pub const RESOLV_CONF_MARKER: &str = "# Written by overlay:";

/// Name servers a resolv.conf holds at most (glibc's MAXNS).
const MAX_NAMESERVERS: usize = 3;

/// A container's resolv.conf: the resolver on its network's `gateway`, then
/// `fallbacks` (the host's resolvers: used only when the first does not
/// answer, i.e. while no daemon runs), names tried as given first
/// (`ndots:0`, as Docker writes it).
pub fn resolv_conf(gateway: Ipv4Addr, fallbacks: &[Ipv4Addr]) -> String {
    let mut text = format!(
        "{RESOLV_CONF_MARKER} the container resolver of its first network.\nnameserver {gateway}\n"
    );
    for ip in fallbacks
        .iter()
        .filter(|ip| **ip != gateway)
        .take(MAX_NAMESERVERS - 1)
    {
        text.push_str(&format!("nameserver {ip}\n"));
    }
    text.push_str("options ndots:0\n");
    text
}

/// The IPv4 `nameserver`s of a resolv.conf, in order.
pub fn nameservers(resolv_conf: &str) -> Vec<Ipv4Addr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("nameserver")).then_some(())?;
            words.next()?.parse().ok()
        })
        .collect()
}

/// `name` as it is compared: lower case, without the root's trailing dot.
pub fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// `name` in DNS wire form, lower case: length-prefixed labels and the
/// root's zero byte; `None` when a label is empty or longer than 63 bytes.
pub fn wire_name(name: &str) -> Option<Vec<u8>> {
    let name = normalize(name);
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return None;
        }
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    Some(out)
}

/// The address of an `in-addr.arpa` name (`4.3.2.1.in-addr.arpa` ->
/// 1.2.3.4), if it is one.
pub fn reverse_address(name: &str) -> Option<Ipv4Addr> {
    let name = normalize(name);
    let octets = name.strip_suffix(".in-addr.arpa")?;
    let mut parts: Vec<u8> = Vec::with_capacity(4);
    for p in octets.split('.') {
        // No leading zeros, signs or spaces: exactly what an address
        // prints as.
        let n: u8 = p.parse().ok()?;
        if n.to_string() != p {
            return None;
        }
        parts.push(n);
    }
    let [d, c, b, a] = parts.as_slice() else {
        return None;
    };
    Some(Ipv4Addr::new(*a, *b, *c, *d))
}

impl NameTable {
    pub fn from_snapshot(s: &Snapshot) -> Self {
        let mut t = Self::default();
        for c in s.containers.values().filter(|c| !c.docker) {
            let short_id = &c.id[..c.id.len().min(ids::SHORT_LEN)];
            let nets: Vec<&str> = c
                .endpoints
                .iter()
                .filter(|e| e.conflict.is_none())
                .map(|e| e.network_id.as_str())
                .collect();
            for e in c.endpoints.iter().filter(|e| e.conflict.is_none()) {
                let mut names = vec![c.name.as_str(), short_id];
                names.extend(e.aliases.iter().map(String::as_str));
                t.add(&e.network_id, &names, e.ip, &c.name);
                let mut order = vec![e.network_id.clone()];
                order.extend(
                    nets.iter()
                        .filter(|n| **n != e.network_id)
                        .map(|n| (*n).to_owned()),
                );
                t.askers.insert((e.network_id.clone(), e.ip), order);
            }
        }
        for claim in s.learned.values() {
            if claim.container == DOCKER_CLAIMANT {
                continue;
            }
            let mut names = vec![claim.container.as_str()];
            names.extend(claim.aliases.iter().map(String::as_str));
            t.add(&claim.network_id, &names, claim.ip, &claim.container);
        }
        let served: BTreeSet<&String> = t.askers.keys().map(|(n, _)| n).collect();
        for n in s.networks.values() {
            if served.contains(&n.id) {
                t.gateways.insert(n.gateway, n.id.clone());
            }
            if n.internal {
                t.internal.insert(n.id.clone());
            }
        }
        t
    }

    /// `names` of address `ip` on network `net`; `ptr` is what the
    /// address resolves back to.
    fn add(&mut self, net: &str, names: &[&str], ip: Ipv4Addr, ptr: &str) {
        let by_name = self.names.entry(net.to_owned()).or_default();
        for n in names {
            by_name.entry(normalize(n)).or_default().insert(ip);
        }
        self.reverse
            .entry(net.to_owned())
            .or_default()
            .insert(ip, ptr.to_owned());
    }

    /// The entries of the kernel's names map (`s` is the state this table
    /// was built from): every name on a network with endpoints here whose
    /// wire form fits [`DNS_NAME_MAX`] and that has at most
    /// [`DNS_ADDRS_MAX`] addresses (the daemon answers the others).
    pub fn kernel_entries(&self, s: &Snapshot) -> BTreeMap<NameKey, NameValue> {
        let mut out = BTreeMap::new();
        for (net_id, names) in &self.names {
            if !self.gateways.values().any(|g| g == net_id) {
                continue;
            }
            let Some(net) = s.networks.get(net_id) else {
                continue;
            };
            for (name, ips) in names {
                let Some(wire) = wire_name(name).filter(|w| w.len() <= DNS_NAME_MAX) else {
                    continue;
                };
                if ips.len() > DNS_ADDRS_MAX {
                    continue;
                }
                let mut key = NameKey {
                    vni: net.vni,
                    len: wire.len() as u32,
                    name: [0; DNS_NAME_MAX],
                };
                key.name[..wire.len()].copy_from_slice(&wire);
                let mut value = NameValue {
                    count: ips.len() as u32,
                    ..NameValue::default()
                };
                for (slot, ip) in value.addrs.iter_mut().zip(ips) {
                    *slot = u32::from_ne_bytes(ip.octets());
                }
                out.insert(key, value);
            }
        }
        out
    }

    /// The gateway addresses containers ask (one resolver socket each).
    pub fn gateways(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.gateways.keys().copied()
    }

    /// The answer to `qname` of type `qtype`, asked by `source` at
    /// `gateway`.
    pub fn answer(
        &self,
        gateway: Ipv4Addr,
        source: Ipv4Addr,
        qname: &str,
        qtype: QueryType,
    ) -> Answer {
        let Some(net) = self.gateways.get(&gateway) else {
            return Answer::Refused;
        };
        let Some(nets) = self.askers.get(&(net.clone(), source)) else {
            return Answer::Refused;
        };
        let outside = if nets.iter().all(|n| self.internal.contains(n)) {
            Answer::NxDomain
        } else {
            Answer::Forward
        };
        if let Some(ip) = reverse_address(qname) {
            for n in nets {
                if let Some(name) = self.reverse.get(n).and_then(|r| r.get(&ip)) {
                    return match qtype {
                        QueryType::Ptr => Answer::Pointer(name.clone()),
                        _ => Answer::NoData,
                    };
                }
            }
            return outside;
        }
        let qname = normalize(qname);
        for n in nets {
            if let Some(ips) = self.names.get(n).and_then(|m| m.get(&qname)) {
                return match qtype {
                    QueryType::A => Answer::Addresses(ips.iter().copied().collect()),
                    _ => Answer::NoData,
                };
            }
        }
        outside
    }
}

/// A state with names, for the tests here and the resolver's.
#[cfg(test)]
pub(crate) mod fixture {
    use std::{collections::BTreeMap, net::Ipv4Addr};

    use crate::model::{
        Claim, ContainerRecord, Driver, EndpointRecord, MacAddr, NetworkRecord, Snapshot,
    };

    pub(crate) fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    pub(crate) fn network(id: &str, subnet: &str, internal: bool) -> NetworkRecord {
        let subnet: ipnet::Ipv4Net = subnet.parse().expect("subnet");
        NetworkRecord {
            id: id.into(),
            name: id.into(),
            driver: Driver::Bridge,
            subnet,
            gateway: subnet.hosts().next().expect("a host"),
            ip_range: None,
            vni: 1,
            internal,
            mtu: 1450,
            labels: BTreeMap::new(),
            created: String::new(),
            docker: false,
            docker_name: None,
        }
    }

    /// A container whose ID is its name in hex, zero-padded (distinct
    /// short IDs).
    pub(crate) fn container(name: &str, eps: &[(&str, &str, &[&str])]) -> ContainerRecord {
        let hex: String = name.bytes().map(|b| format!("{b:02x}")).collect();
        ContainerRecord {
            id: format!("{hex:0<64}"),
            name: name.into(),
            netns: name.into(),
            owned_netns: true,
            attached_netns: false,
            command: Vec::new(),
            pid: None,
            pid_start: None,
            created: String::new(),
            endpoints: eps
                .iter()
                .map(|(net, addr, aliases)| EndpointRecord {
                    id: String::new(),
                    network_id: (*net).into(),
                    ip: ip(addr),
                    mac: MacAddr::from_ipv4(ip(addr)),
                    ifname: "eth0".into(),
                    host_ifname: String::new(),
                    gw_priority: 0,
                    conflict: None,
                    published: Vec::new(),
                    aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
                })
                .collect(),
            docker: false,
        }
    }

    /// front: web, db (alias "database"), app (on front and back);
    /// back: cache, app; lab (internal): probe; a remote `api` on front.
    pub(crate) fn snapshot() -> Snapshot {
        let mut s = Snapshot::default();
        for n in [
            network("front", "10.1.0.0/24", false),
            network("back", "10.2.0.0/24", false),
            network("lab", "10.3.0.0/24", true),
        ] {
            s.networks.insert(n.id.clone(), n);
        }
        for c in [
            container("web", &[("front", "10.1.0.2", &[])]),
            container("db", &[("front", "10.1.0.3", &["database", "DB-Main"])]),
            container(
                "app",
                &[("back", "10.2.0.4", &[]), ("front", "10.1.0.4", &[])],
            ),
            container("cache", &[("back", "10.2.0.5", &[])]),
            container("probe", &[("lab", "10.3.0.2", &[])]),
        ] {
            s.containers.insert(c.name.clone(), c);
        }
        let claim = Claim {
            network_id: "front".into(),
            ip: ip("10.1.0.9"),
            mac: MacAddr::from_ipv4(ip("10.1.0.9")),
            host: ip("192.0.2.2"),
            container: "api".into(),
            endpoint_id: "e9".into(),
            aliases: vec!["gateway-api".into()],
        };
        s.learned.insert("front/10.1.0.9".into(), claim);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::{fixture::*, *};

    #[test]
    fn names_resolve_per_network() {
        let t = NameTable::from_snapshot(&snapshot());
        let (front_gw, back_gw, lab_gw) = (ip("10.1.0.1"), ip("10.2.0.1"), ip("10.3.0.1"));
        let web = ip("10.1.0.2");
        let a = |name: &str| Answer::Addresses(vec![ip(name)]);
        for (what, gw, from, q, t_, want) in [
            ("by name", front_gw, web, "db", QueryType::A, a("10.1.0.3")),
            (
                "fully qualified",
                front_gw,
                web,
                "db.",
                QueryType::A,
                a("10.1.0.3"),
            ),
            (
                "by alias",
                front_gw,
                web,
                "database",
                QueryType::A,
                a("10.1.0.3"),
            ),
            (
                "any case",
                front_gw,
                web,
                "db-MAIN",
                QueryType::A,
                a("10.1.0.3"),
            ),
            (
                "short ID",
                front_gw,
                web,
                "646200000000",
                QueryType::A,
                a("10.1.0.3"),
            ),
            ("remote", front_gw, web, "api", QueryType::A, a("10.1.0.9")),
            (
                "remote alias",
                front_gw,
                web,
                "gateway-api",
                QueryType::A,
                a("10.1.0.9"),
            ),
            (
                "own network's address",
                front_gw,
                web,
                "app",
                QueryType::A,
                a("10.1.0.4"),
            ),
            (
                "AAAA: empty",
                front_gw,
                web,
                "db",
                QueryType::Other,
                Answer::NoData,
            ),
            (
                "not on front",
                front_gw,
                web,
                "cache",
                QueryType::A,
                Answer::Forward,
            ),
            (
                "elsewhere",
                front_gw,
                web,
                "example.org",
                QueryType::A,
                Answer::Forward,
            ),
            // A dual-homed container sees both networks, the asked one first.
            (
                "app: back first",
                back_gw,
                ip("10.2.0.4"),
                "app",
                QueryType::A,
                a("10.2.0.4"),
            ),
            (
                "app sees front",
                back_gw,
                ip("10.2.0.4"),
                "db",
                QueryType::A,
                a("10.1.0.3"),
            ),
            (
                "internal: no forward",
                lab_gw,
                ip("10.3.0.2"),
                "example.org",
                QueryType::A,
                Answer::NxDomain,
            ),
            (
                "internal: own names",
                lab_gw,
                ip("10.3.0.2"),
                "probe",
                QueryType::A,
                a("10.3.0.2"),
            ),
            (
                "not an endpoint",
                front_gw,
                ip("10.1.0.77"),
                "db",
                QueryType::A,
                Answer::Refused,
            ),
            (
                "wrong gateway",
                back_gw,
                web,
                "db",
                QueryType::A,
                Answer::Refused,
            ),
            (
                "PTR",
                front_gw,
                web,
                "3.0.1.10.in-addr.arpa",
                QueryType::Ptr,
                Answer::Pointer("db".into()),
            ),
            (
                "PTR remote",
                front_gw,
                web,
                "9.0.1.10.IN-ADDR.ARPA.",
                QueryType::Ptr,
                Answer::Pointer("api".into()),
            ),
            (
                "PTR other net",
                front_gw,
                web,
                "5.0.2.10.in-addr.arpa",
                QueryType::Ptr,
                Answer::Forward,
            ),
            (
                "PTR leading zero",
                front_gw,
                web,
                "03.0.1.10.in-addr.arpa",
                QueryType::Ptr,
                Answer::Forward,
            ),
        ] {
            assert_eq!(t.answer(gw, from, q, t_), want, "{what}");
        }
    }

    #[test]
    fn short_ids_and_shared_aliases() {
        let mut s = snapshot();
        s.containers.get_mut("web").expect("web").endpoints[0]
            .aliases
            .push("database".into());
        let t = NameTable::from_snapshot(&s);
        assert_eq!(
            t.answer(ip("10.1.0.1"), ip("10.1.0.4"), "database", QueryType::A),
            Answer::Addresses(vec![ip("10.1.0.2"), ip("10.1.0.3")]),
            "an alias two containers share answers both"
        );
        let db_short = &s.containers["db"].id[..12];
        assert_eq!(
            t.answer(ip("10.1.0.1"), ip("10.1.0.2"), db_short, QueryType::A),
            Answer::Addresses(vec![ip("10.1.0.3")])
        );
    }

    #[test]
    fn a_conflicting_endpoint_has_no_name() {
        let mut s = snapshot();
        s.containers.get_mut("db").expect("db").endpoints[0].conflict = Some("x on h".into());
        let t = NameTable::from_snapshot(&s);
        assert_eq!(
            t.answer(ip("10.1.0.1"), ip("10.1.0.2"), "db", QueryType::A),
            Answer::Forward
        );
    }

    #[test]
    fn resolv_conf_text() {
        let gw = ip("10.1.0.1");
        let hosts = [
            ip("10.1.0.1"),
            ip("192.0.2.1"),
            ip("192.0.2.2"),
            ip("192.0.2.3"),
        ];
        let text = resolv_conf(gw, &hosts);
        assert_eq!(
            nameservers(&text),
            [gw, ip("192.0.2.1"), ip("192.0.2.2")],
            "the gateway once, then at most two more: {text}"
        );
        assert!(text.ends_with("options ndots:0\n"), "{text}");
    }

    #[test]
    fn reverse_names() {
        assert_eq!(reverse_address("4.3.2.1.in-addr.arpa"), Some(ip("1.2.3.4")));
        for bad in [
            "3.2.1.in-addr.arpa",
            "5.4.3.2.1.in-addr.arpa",
            "256.3.2.1.in-addr.arpa",
            "a.3.2.1.in-addr.arpa",
            "4.3.2.1.ip6.arpa",
            "+4.3.2.1.in-addr.arpa",
        ] {
            assert_eq!(reverse_address(bad), None, "{bad}");
        }
    }
}
