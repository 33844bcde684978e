//! The records this host keeps (in the local store) and shares (in the
//! cluster store). Plain data: the rules they obey are in [`super::rules`].

use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf};

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use super::MacAddr;

/// Network driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// Host-local (scope `local`).
    Bridge,
    /// Spans hosts over VXLAN (scope `global`).
    Overlay,
}

impl Driver {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Bridge => "bridge",
            Self::Overlay => "overlay",
        }
    }

    pub const fn scope(self) -> &'static str {
        match self {
            Self::Bridge => "local",
            Self::Overlay => "global",
        }
    }
}

/// A network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub id: String,
    pub name: String,
    pub driver: Driver,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub ip_range: Option<Ipv4Net>,
    /// VXLAN network identifier (overlay), or the host-local one (bridge).
    pub vni: u32,
    pub internal: bool,
    pub mtu: u32,
    pub labels: BTreeMap<String, String>,
    /// RFC 3339.
    pub created: String,
    /// Made by Docker through the plugin (its ID is Docker's): Docker
    /// removes it, not `network rm`.
    #[serde(default)]
    pub docker: bool,
    /// The name Docker knows it by (learned from Docker's API after it
    /// made the network: the plugin protocol does not carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_name: Option<String>,
}

impl NetworkRecord {
    /// The name users know it by: Docker's for a Docker network whose name
    /// is known, else its own.
    pub fn display_name(&self) -> &str {
        self.docker_name.as_deref().unwrap_or(&self.name)
    }
}

/// A container's interface on one network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    pub id: String,
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// Name inside the container (`eth0`, ...).
    pub ifname: String,
    /// Host-side veth name.
    pub host_ifname: String,
    /// Docker's `gw-priority`: among routable networks the highest gives
    /// the container its default route.
    #[serde(default)]
    pub gw_priority: i32,
    /// Set while the cluster store has this endpoint's address claimed by
    /// another endpoint (`container on host`): the endpoint is taken out
    /// of the dataplane until its own claim succeeds again.
    #[serde(default)]
    pub conflict: Option<String>,
    /// Ports of the host forwarded to this endpoint (`-p`).
    #[serde(default)]
    pub published: Vec<PublishedPort>,
    /// More names of the container on this network (`--network-alias`,
    /// `--alias`), as given.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Transport protocol of a published port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// A host port forwarded to an endpoint: `[HOST_IP:]HOST_PORT:PORT[/PROTO]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublishedPort {
    pub proto: Proto,
    /// Only this host address (`None`: every address of the host).
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub port: u16,
}

impl std::fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(ip) = self.host_ip {
            write!(f, "{ip}:")?;
        }
        write!(f, "{}:{}/{}", self.host_port, self.port, self.proto)
    }
}

/// A container: a network namespace, maybe running a process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    /// `ip netns` name of its namespace.
    pub netns: String,
    /// The namespace was created by `overlay run` (and is deleted by `rm`).
    pub owned_netns: bool,
    /// The `ip netns` name was attached by adopting a PID (and is detached
    /// by `rm`; the namespace itself belongs to the process).
    #[serde(default)]
    pub attached_netns: bool,
    pub command: Vec<String>,
    pub pid: Option<u32>,
    /// When that process started (clock ticks after boot): tells it from a
    /// later process that reuses its PID. Absent in stores from before;
    /// such a PID is never signalled.
    #[serde(default)]
    pub pid_start: Option<u64>,
    pub created: String,
    pub endpoints: Vec<EndpointRecord>,
    /// A Docker container's sandbox, joined through the plugin: `netns` is
    /// Docker's sandbox key (a path), and Docker configures and removes
    /// its interfaces.
    #[serde(default)]
    pub docker: bool,
}

impl ContainerRecord {
    /// The container's main process, if it had one we can tell apart.
    pub fn process(&self) -> Option<ProcessRef> {
        Some(ProcessRef {
            pid: self.pid?,
            start: self.pid_start?,
        })
    }
}

/// A process, told apart from a later one that reuses its PID by when it
/// started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: u32,
    /// Start time, clock ticks after boot (`/proc/PID/stat`, field 22).
    pub start: u64,
}

/// A static endpoint on another host (`overlay endpoint add --remote`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRecord {
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    pub host: Ipv4Addr,
}

/// How the underlay NIC should decapsulate (what `attach --decap` asks for).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecapMode {
    /// XDP, native if the driver has it, else generic (skb) mode.
    Xdp,
    /// XDP in native (driver) mode only: an error where the driver lacks it.
    XdpNative,
    /// XDP in generic (skb) mode only.
    XdpGeneric,
    /// TC (tcx ingress).
    Tc,
}

/// What `attach --decap` asks for: a mode, or the one that is correct on
/// that NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecapRequest {
    /// Native XDP where the driver has it and frames come from a wire; TC
    /// on veth and other virtual devices, and where native XDP is missing.
    Auto,
    Xdp,
    XdpNative,
    XdpGeneric,
    Tc,
}

impl DecapRequest {
    /// The mode asked for, unless it is `auto`.
    pub const fn explicit(self) -> Option<DecapMode> {
        match self {
            Self::Auto => None,
            Self::Xdp => Some(DecapMode::Xdp),
            Self::XdpNative => Some(DecapMode::XdpNative),
            Self::XdpGeneric => Some(DecapMode::XdpGeneric),
            Self::Tc => Some(DecapMode::Tc),
        }
    }
}

/// What an attach ended up using.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachedMode {
    // The aliases read stores written before the mode was typed.
    #[serde(rename = "xdp-native", alias = "xdp (native)")]
    XdpNative,
    #[serde(rename = "xdp-generic", alias = "xdp (generic)")]
    XdpGeneric,
    #[serde(rename = "tcx", alias = "tc (tcx ingress)")]
    Tcx,
}

impl AttachedMode {
    /// The mode to ask for when attaching again (after a reboot): native
    /// XDP falls back to generic should the driver have lost it.
    pub const fn reattach(self) -> DecapMode {
        match self {
            Self::XdpNative => DecapMode::Xdp,
            Self::XdpGeneric => DecapMode::XdpGeneric,
            Self::Tcx => DecapMode::Tc,
        }
    }

    /// True for the XDP modes.
    pub const fn is_xdp(self) -> bool {
        matches!(self, Self::XdpNative | Self::XdpGeneric)
    }
}

impl std::fmt::Display for AttachedMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::XdpNative => "xdp (native)",
            Self::XdpGeneric => "xdp (generic)",
            Self::Tcx => "tc (tcx ingress)",
        })
    }
}

/// How this host is bound to its underlay (`overlay attach`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub iface: String,
    pub underlay_ip: Ipv4Addr,
    pub decap: AttachedMode,
    /// What was asked for (absent in stores from before `auto`).
    #[serde(default)]
    pub requested: Option<DecapRequest>,
    /// Why this mode: what `auto` saw, or a warning about an explicit one.
    #[serde(default)]
    pub decap_reason: Option<String>,
    /// The NIC's MTU when attached (0 in stores from before).
    #[serde(default)]
    pub mtu: u32,
}

/// How this host reaches the cluster store (`overlay daemon --store`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// etcd client endpoints, `host:port`.
    pub endpoints: Vec<String>,
    /// Underlay address other hosts send this host's VXLAN traffic to.
    pub advertise_ip: Option<Ipv4Addr>,
    /// This host's etcd lease (0 until the daemon registered).
    pub lease: i64,
    /// Lease time to live, seconds.
    pub lease_ttl: i64,
    /// Seconds a host may stay unregistered (its lease gone) before the
    /// live hosts release its addresses; until then they stay claimed.
    #[serde(default = "default_claim_grace")]
    pub claim_grace: u64,
    /// TLS: CA bundle, client certificate and key (PEM files).
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// etcd user; its password is read from `password_file`.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

impl Default for ClusterRecord {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            advertise_ip: None,
            lease: 0,
            lease_ttl: 0,
            claim_grace: DEFAULT_CLAIM_GRACE,
            ca_file: None,
            cert_file: None,
            key_file: None,
            user: None,
            password_file: None,
        }
    }
}

/// A day: long enough that a host cut off from the cluster store by any
/// ordinary outage finds its addresses still its own when it returns.
pub const DEFAULT_CLAIM_GRACE: u64 = 86_400;

fn default_claim_grace() -> u64 {
    DEFAULT_CLAIM_GRACE
}

/// An address held by an endpoint on some host (in the cluster store;
/// hosts cache other hosts' claims as the endpoints they learned).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// Underlay address of the host the endpoint lives on.
    pub host: Ipv4Addr,
    pub container: String,
    pub endpoint_id: String,
    /// The endpoint's aliases (names other hosts' containers resolve).
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// An endpoint on another host, learned from the cluster store: its
/// address claim, as that host wrote it.
pub type LearnedEndpoint = Claim;

/// A live host of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub underlay_ip: Ipv4Addr,
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attached_modes_read_old_and_new_spellings() {
        for (text, mode) in [
            ("\"xdp (native)\"", AttachedMode::XdpNative),
            ("\"xdp (generic)\"", AttachedMode::XdpGeneric),
            ("\"tc (tcx ingress)\"", AttachedMode::Tcx),
            ("\"xdp-native\"", AttachedMode::XdpNative),
            ("\"tcx\"", AttachedMode::Tcx),
        ] {
            let got: AttachedMode = serde_json::from_str(text).expect(text);
            assert_eq!(got, mode, "{text}");
            let again: AttachedMode =
                serde_json::from_str(&serde_json::to_string(&got).expect("ser")).expect("de");
            assert_eq!(again, mode);
        }
        assert!(serde_json::from_str::<AttachedMode>("\"xdp\"").is_err());
    }
}

/// An address pool handed to Docker by the IPAM driver: the subnet, how
/// many Docker networks requested it, and the addresses handed out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamPool {
    pub subnet: Ipv4Net,
    pub refs: u32,
    pub addresses: std::collections::BTreeSet<Ipv4Addr>,
}

/// An endpoint Docker created on a plugin network; joined to a sandbox,
/// it also has an [`EndpointRecord`] under that sandbox's container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginEndpoint {
    pub network_id: String,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// The sandbox key while joined.
    pub sandbox: Option<String>,
}
