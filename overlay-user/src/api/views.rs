//! What the read-only commands return, as data: the CLI renders it as
//! tables or JSON (the network inspection is shaped like
//! `docker network inspect`).

use std::{collections::BTreeMap, net::Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::model::{AttachedMode, MacAddr};

/// A row of `network ls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSummary {
    pub id: String,
    pub name: String,
    pub driver: String,
    pub scope: String,
}

/// `docker network inspect`'s shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkInspect {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    /// Containers by ID (`ep-<endpoint id>` for those on other hosts).
    pub containers: BTreeMap<String, InspectEndpoint>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// Hosts taking part: this one (`self`), static peers and, in cluster
    /// mode, every host with containers on the network.
    pub peers: Vec<InspectPeer>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Ipam {
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub config: Vec<IpamConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfig {
    pub subnet: String,
    pub gateway: String,
    #[serde(rename = "IPRange", default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectEndpoint {
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
    /// Underlay address of the host it lives on (other hosts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectPeer {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "IP")]
    pub ip: String,
}

/// A row of `ps`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    /// `running`, `exited` (ours, process gone) or `external` (adopted).
    pub status: String,
    pub networks: Vec<String>,
    pub command: Vec<String>,
    pub pid: Option<u32>,
}

/// A static peer (`peer ls`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub host: Ipv4Addr,
    /// The network's name (`?` when unknown).
    pub network: String,
}

/// A cluster host (`host ls`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostView {
    pub ip: Ipv4Addr,
    /// Registered name; `None` while down.
    pub name: Option<String>,
    /// Seconds down, seen from this host; `None` while registered.
    pub down_for: Option<u64>,
    pub endpoints: usize,
}

/// `status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub pin_dir: String,
    pub underlay: Option<UnderlayView>,
    pub next_hops: Vec<NextHopView>,
    /// Path MTUs learned from routers' ICMP, still in force.
    pub path_mtus: Vec<PathMtuView>,
    /// Endpoints stepped aside because another host holds their address:
    /// `ip of container on network, claimed by holder`.
    pub conflicts: Vec<String>,
    pub cluster: Option<ClusterStatus>,
    pub pinned_links: usize,
    pub networks: usize,
    pub containers: usize,
    pub endpoints: usize,
    /// Packets forwarded or handled, and dropped, over all counters.
    pub handled: u64,
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnderlayView {
    pub iface: String,
    pub ip: Ipv4Addr,
    pub decap: AttachedMode,
    /// Chosen by `auto`.
    pub auto: bool,
    /// Why: what `auto` saw, or a warning about the mode asked for.
    pub reason: Option<String>,
}

/// A path MTU towards one remote host, learned from ICMP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathMtuView {
    pub remote: Ipv4Addr,
    /// Bytes of outer IPv4 packet.
    pub mtu: u32,
    /// Seconds until full-size packets are tried again.
    pub expires_in: u64,
}

/// A cached underlay next hop of the encap path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextHopView {
    pub remote: Ipv4Addr,
    /// Path MTU (bytes of outer IPv4 packet) the encap path applies.
    pub mtu: u32,
    pub mac: MacAddr,
    /// Egress device name (its index when it has none here).
    pub device: String,
    /// Still trusted; a stale entry is looked up again on the next packet.
    pub fresh: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub endpoints: Vec<String>,
    pub advertise: Option<Ipv4Addr>,
    pub lease: i64,
    pub lease_ttl: i64,
    /// Live hosts: (name, underlay address).
    pub hosts: Vec<(String, Ipv4Addr)>,
    /// Cluster-store records skipped in the last view, and a sample of
    /// them: (key, why).
    pub rejected: u64,
    pub rejected_samples: Vec<(String, String)>,
}

/// One counter of `stats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterRow {
    pub name: String,
    pub packets: u64,
    pub bytes: u64,
}
