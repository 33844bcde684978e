//! Everything one host knows, as one value: what the store holds, what a
//! command changes, and what the read-only commands show.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use super::{
    ClusterRecord, ContainerRecord, Driver, EndpointRecord, HostRecord, IpamPool, LearnedEndpoint,
    NetworkRecord, PluginEndpoint, RemoteRecord,
};

/// The host's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub networks: BTreeMap<String, NetworkRecord>,
    pub containers: BTreeMap<String, ContainerRecord>,
    /// key `vni/ip`.
    pub remotes: BTreeMap<String, RemoteRecord>,
    /// (host underlay IP, network id).
    pub peers: BTreeSet<(Ipv4Addr, String)>,
    pub host: Option<HostRecord>,
    /// Set in cluster mode: overlay networks then live in etcd.
    pub cluster: Option<ClusterRecord>,
    /// Other hosts' endpoints on global networks, key `<network id>/<ip>`.
    pub learned: BTreeMap<String, LearnedEndpoint>,
    /// Live cluster hosts: underlay address -> host name.
    pub cluster_hosts: BTreeMap<Ipv4Addr, String>,
    /// Hosts that hold claims but are not registered: underlay address ->
    /// when this host first saw them so (Unix seconds, this host's clock,
    /// so no two clocks are compared). After the claim grace their claims
    /// are released.
    pub cluster_down_since: BTreeMap<Ipv4Addr, u64>,
    /// Address pools the IPAM driver handed to Docker, by pool ID.
    pub ipam_pools: BTreeMap<String, IpamPool>,
    /// Endpoints Docker created on plugin networks, by Docker's ID.
    pub plugin_endpoints: BTreeMap<String, PluginEndpoint>,
    /// Docker networks bound to a cluster network (`-o network=NAME`):
    /// Docker's network ID -> the cluster network's ID.
    pub docker_bindings: BTreeMap<String, String>,
    /// Cluster-store records skipped in the last view: key -> why (at most
    /// [`REJECTED_SAMPLES`] of them).
    pub rejected: BTreeMap<String, String>,
    /// How many records were skipped in the last view.
    pub rejected_count: u64,
    /// Namespaces a `run` is creating: recorded (and made durable) before
    /// the namespace exists, dropped when the container is recorded, so
    /// one left by a crash is known as ours and removed.
    pub pending_netns: BTreeSet<String>,
}

/// Skipped cluster records kept by name; the rest are only counted.
pub const REJECTED_SAMPLES: usize = 32;

/// The one item whose ID starts with `key` (Docker's short IDs).
fn by_id_prefix<'a, T>(
    items: impl Iterator<Item = &'a T>,
    id: impl Fn(&T) -> &str,
    key: &str,
) -> Option<&'a T> {
    if key.is_empty() {
        return None;
    }
    let mut matching = items.filter(|i| id(i).starts_with(key));
    match (matching.next(), matching.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

/// Key of a static remote endpoint in [`Snapshot::remotes`].
pub fn remote_key(vni: u32, ip: Ipv4Addr) -> String {
    format!("{vni}/{ip}")
}

/// Key of a learned endpoint in [`Snapshot::learned`].
pub fn learned_key(network_id: &str, ip: Ipv4Addr) -> String {
    format!("{network_id}/{ip}")
}

impl Snapshot {
    /// True when `net` lives in the cluster store rather than only here.
    pub fn is_global(&self, net: &NetworkRecord) -> bool {
        self.cluster.is_some() && net.driver == Driver::Overlay
    }

    /// A network by name (its own, then Docker's), full ID or unique ID
    /// prefix.
    pub fn find_network(&self, key: &str) -> Option<&NetworkRecord> {
        self.networks
            .values()
            .find(|n| n.name == key)
            .or_else(|| {
                self.networks
                    .values()
                    .find(|n| n.docker_name.as_deref() == Some(key))
            })
            .or_else(|| by_id_prefix(self.networks.values(), |n| &n.id, key))
    }

    /// A container by name or unique ID prefix.
    pub fn find_container(&self, key: &str) -> Option<&ContainerRecord> {
        self.containers
            .get(key)
            .or_else(|| by_id_prefix(self.containers.values(), |c| &c.id, key))
    }

    /// Containers attached to network `id`.
    pub fn containers_on(&self, id: &str) -> Vec<&ContainerRecord> {
        self.containers
            .values()
            .filter(|c| c.endpoints.iter().any(|e| e.network_id == id))
            .collect()
    }

    /// Every local endpoint with its container's name.
    pub fn endpoints(&self) -> impl Iterator<Item = (&str, &EndpointRecord)> {
        self.containers
            .values()
            .flat_map(|c| c.endpoints.iter().map(move |e| (c.name.as_str(), e)))
    }

    /// Addresses of network `id` that this host knows to be taken: its own
    /// endpoints, static remote endpoints and endpoints learned from the
    /// cluster.
    pub fn used_addresses(&self, id: &str) -> BTreeSet<Ipv4Addr> {
        let local = self
            .endpoints()
            .filter(|(_, e)| e.network_id == id)
            .map(|(_, e)| e.ip);
        let remote = self
            .remotes
            .values()
            .filter(|r| r.network_id == id)
            .map(|r| r.ip);
        let learned = self
            .learned
            .values()
            .filter(|e| e.network_id == id)
            .map(|e| e.ip);
        local.chain(remote).chain(learned).collect()
    }

    /// The underlay address other hosts reach this one at.
    pub fn advertise_ip(&self) -> Option<Ipv4Addr> {
        self.cluster
            .as_ref()
            .and_then(|c| c.advertise_ip)
            .or_else(|| self.host.as_ref().map(|h| h.underlay_ip))
    }

    /// Forgets network `id` and everything that hangs off it here (peers,
    /// static and learned remote endpoints).
    pub fn forget_network(&mut self, id: &str) -> Option<NetworkRecord> {
        let net = self.networks.remove(id)?;
        self.peers.retain(|(_, n)| n != id);
        self.remotes.retain(|_, r| r.network_id != id);
        self.learned.retain(|_, e| e.network_id != id);
        Some(net)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MacAddr;

    fn network(id: &str, name: &str) -> NetworkRecord {
        NetworkRecord {
            id: id.into(),
            name: name.into(),
            driver: Driver::Overlay,
            subnet: "10.0.0.0/24".parse().expect("subnet"),
            gateway: "10.0.0.1".parse().expect("gw"),
            ip_range: None,
            vni: 4096,
            internal: false,
            mtu: 1450,
            labels: BTreeMap::new(),
            created: String::new(),
            docker: false,
            docker_name: None,
        }
    }

    #[test]
    fn lookups_by_name_and_unique_prefix() {
        let mut s = Snapshot::default();
        for (id, name) in [("abc123", "front"), ("abd456", "back"), ("ff00", "abc")] {
            s.networks.insert(id.into(), network(id, name));
        }
        assert_eq!(s.find_network("front").map(|n| &n.id[..]), Some("abc123"));
        assert_eq!(
            s.find_network("abc").map(|n| &n.id[..]),
            Some("ff00"),
            "a name wins over an ID prefix"
        );
        assert_eq!(s.find_network("abd").map(|n| &n.id[..]), Some("abd456"));
        assert!(s.find_network("ab").is_none(), "ambiguous prefix");
        assert!(s.find_network("").is_none());
        assert!(s.find_network("zz").is_none());
    }

    #[test]
    fn used_addresses_cover_local_remote_and_learned() {
        let mut s = Snapshot::default();
        s.networks.insert("n".into(), network("n", "net"));
        let ip = |x: &str| x.parse::<Ipv4Addr>().expect("ip");
        s.containers.insert(
            "c".into(),
            ContainerRecord {
                id: "c1".into(),
                name: "c".into(),
                netns: "c".into(),
                owned_netns: true,
                attached_netns: false,
                command: vec![],
                pid: None,
                pid_start: None,
                created: String::new(),
                endpoints: vec![EndpointRecord {
                    gw_priority: 0,
                    conflict: None,
                    published: Vec::new(),
                    aliases: Vec::new(),
                    id: "e".into(),
                    network_id: "n".into(),
                    ip: ip("10.0.0.2"),
                    mac: MacAddr::from_ipv4(ip("10.0.0.2")),
                    ifname: "eth0".into(),
                    host_ifname: "ovl0".into(),
                }],
                docker: false,
            },
        );
        s.remotes.insert(
            remote_key(4096, ip("10.0.0.3")),
            RemoteRecord {
                network_id: "n".into(),
                ip: ip("10.0.0.3"),
                mac: MacAddr::from_ipv4(ip("10.0.0.3")),
                host: ip("192.0.2.2"),
            },
        );
        s.learned.insert(
            learned_key("n", ip("10.0.0.4")),
            LearnedEndpoint {
                network_id: "n".into(),
                ip: ip("10.0.0.4"),
                mac: MacAddr::from_ipv4(ip("10.0.0.4")),
                host: ip("192.0.2.3"),
                container: "x".into(),
                endpoint_id: "e2".into(),
                aliases: Vec::new(),
            },
        );
        let used: Vec<Ipv4Addr> = s.used_addresses("n").into_iter().collect();
        assert_eq!(used, [ip("10.0.0.2"), ip("10.0.0.3"), ip("10.0.0.4")]);
        assert!(s.used_addresses("other").is_empty());
        s.peers.insert((ip("192.0.2.2"), "n".into()));
        assert!(s.forget_network("n").is_some());
        assert!(s.remotes.is_empty() && s.learned.is_empty() && s.peers.is_empty());
    }
}
