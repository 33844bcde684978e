//! Docker-style networks and containers on one host: the store, the
//! dataplane and the namespaces, changed together.
//!
//! Commands run without a daemon: each one opens the store exclusively,
//! checks its input against the loaded state before touching anything,
//! makes its kernel changes while recording how to undo them, and commits
//! the store last. Any failure undoes the kernel changes and writes nothing.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use ipnet::Ipv4Net;

use crate::{
    Dataplane, DataplaneError, LocalEndpoint, MacAddr, Network, RemoteEndpoint, Underlay,
    cluster::{Claim, ClusterError, ClusterOptions, ClusterStore, ClusterView, StoredClaim},
    gateway, ipam,
    netns::{self, NetnsError},
    store::{
        ContainerRecord, Driver, EndpointRecord, HostRecord, LearnedEndpoint, NetworkRecord,
        RemoteRecord, Snapshot, Store, StoreError,
    },
};

/// Name of the default network, present from the first start.
pub const DEFAULT_NETWORK: &str = "bridge";
/// First VNI handed to overlay networks without `--vni`.
pub const OVERLAY_VNI_BASE: u32 = 4096;
/// Host-local networks (bridge driver) get identifiers from here up; they
/// never leave the host. Overlay VNIs must stay below.
pub const LOCAL_VNI_BASE: u32 = 0x00f0_0000;
/// MTU of overlay networks (underlay 1500 minus VXLAN) and bridge networks.
pub const OVERLAY_MTU: u32 = 1450;
pub const BRIDGE_MTU: u32 = 1500;
/// How long a command waits for the cluster store before calling it
/// unreachable.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(3);

/// A user-facing failure: one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "invalid name {0:?}: use letters, digits, '_', '.', '-' (max 64), starting with a letter or digit"
    )]
    InvalidName(String),
    #[error("network with name {0} already exists")]
    DuplicateNetwork(String),
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    #[error("container {0} not found (not an overlay container, netns name or PID)")]
    NoSuchContainer(String),
    #[error("container name {0:?} is already in use")]
    DuplicateContainer(String),
    #[error("{0}")]
    Invalid(String),
    #[error("invalid subnet {0}: host bits are set (did you mean {1}?)")]
    HostBits(Ipv4Net, Ipv4Net),
    #[error("subnet {0} overlaps network {1} ({2})")]
    Overlap(Ipv4Net, String, Ipv4Net),
    #[error("no free subnet left in the default address pools")]
    PoolExhausted,
    #[error("gateway {0} is not a usable address of {1}")]
    GatewayOutside(Ipv4Addr, Ipv4Net),
    #[error("ip range {0} is not inside subnet {1}")]
    RangeOutside(Ipv4Net, Ipv4Net),
    #[error("VNI {0} is out of range (1-{max})", max = LOCAL_VNI_BASE - 1)]
    VniRange(u32),
    #[error("VNI {0} is already used by network {1}")]
    VniInUse(u32, String),
    #[error("--vni applies to overlay networks only")]
    VniOnBridge,
    #[error("network {0} is in use by containers: {1}")]
    NetworkInUse(String, String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("address {0} is not a usable address of {1}")]
    AddressOutside(Ipv4Addr, Ipv4Net),
    #[error("address {0} is already in use on network {1}")]
    AddressInUse(Ipv4Addr, String),
    #[error("no free address left in network {0}")]
    AddressesExhausted(String),
    #[error("container {0} is already connected to network {1}")]
    AlreadyConnected(String, String),
    #[error("container {0} is not connected to network {1}")]
    NotConnected(String, String),
    #[error("container {0} is running: stop it first or use --force")]
    Running(String),
    #[error(
        "this host has no underlay address to advertise: run `overlay attach` first or pass --advertise-addr"
    )]
    NoAdvertiseAddress,
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// Where this host keeps its state.
#[derive(Clone, Debug)]
pub struct Paths {
    /// The store (`store.redb`) and container logs.
    pub state_dir: PathBuf,
    /// Pinned maps and links.
    pub pin_dir: PathBuf,
}

/// Options of `network create`.
#[derive(Clone, Debug, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: Option<Driver>,
    pub subnets: Vec<Ipv4Net>,
    pub gateway: Option<Ipv4Addr>,
    pub ip_range: Option<Ipv4Net>,
    pub vni: Option<u32>,
    pub internal: bool,
    pub mtu: Option<u32>,
    pub labels: BTreeMap<String, String>,
}

/// A kernel change made by the running command, and how to take it back.
enum Undo {
    Network(u32),
    /// A removed network, re-added on rollback.
    RemovedNetwork(Network),
    Endpoint(u32),
    Link(String),
    Netns(String),
    Peer(Ipv4Addr, u32),
    Remote(u32, Ipv4Addr),
    /// The gateway address added to `lo`.
    GatewayAddr(Ipv4Addr),
    /// A network created in the cluster store.
    ClusterNetwork(NetworkRecord),
    /// A network removed from the cluster store, re-created on rollback.
    ClusterRemovedNetwork(NetworkRecord),
    /// An address claimed in the cluster store.
    ClusterClaim(String, Ipv4Addr),
    /// An address released in the cluster store, claimed again on rollback.
    ClusterReleased(Claim),
}

/// What a reconcile pass repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Containers whose namespace vanished: records and addresses released.
    pub containers_gone: Vec<String>,
    /// Endpoints whose veth vanished while the namespace stayed: recreated.
    pub endpoints_recreated: Vec<String>,
    /// Endpoints whose map entry or program link was missing or wrong.
    pub endpoints_reprogrammed: Vec<String>,
    /// Map entries for interfaces no endpoint owns any more.
    pub stale_entries: usize,
    /// Host-side veths no endpoint owns.
    pub stale_veths: Vec<String>,
    /// Networks in the maps that the store does not know.
    pub stale_networks: usize,
    /// The underlay program was re-attached.
    pub underlay_reattached: bool,
}

impl Repairs {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One command's view: the store (held), its snapshot and the dataplane.
pub struct Engine {
    store: Store,
    before: Snapshot,
    pub state: Snapshot,
    dp: Dataplane,
    paths: Paths,
    undo: Vec<Undo>,
    /// Connected on first use, and only for global networks: local
    /// commands work while etcd is unreachable.
    cluster: Option<ClusterStore>,
}

/// What applying the cluster's view changed here, and what the agent has to
/// fix in the cluster store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterSync {
    pub networks_added: Vec<String>,
    pub networks_removed: Vec<String>,
    pub endpoints_added: usize,
    pub endpoints_removed: usize,
    /// Local endpoints on global networks whose claim is missing or sits
    /// on another lease: the agent (re-)claims them.
    pub claims_missing: Vec<Claim>,
    /// Claims under this host's address that no local endpoint owns.
    pub claims_stale: Vec<StoredClaim>,
    /// Problems that need an operator; named, never fatal.
    pub conflicts: Vec<String>,
}

impl ClusterSync {
    pub fn changed(&self) -> bool {
        !(self.networks_added.is_empty()
            && self.networks_removed.is_empty()
            && self.endpoints_added == 0
            && self.endpoints_removed == 0)
    }
}

/// Runs `f` as one command on the host at `paths`: opens the store (and
/// dataplane), commits what `f` changed, or undoes all of it on failure.
pub fn transaction<T>(
    paths: &Paths,
    f: impl FnOnce(&mut Engine) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    let mut engine = Engine::open(paths)?;
    match f(&mut engine) {
        Ok(v) => {
            engine.commit()?;
            Ok(v)
        }
        Err(e) => {
            engine.rollback();
            Err(e)
        }
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Engine {
    /// Opens the store (waiting while another command holds it) and the
    /// dataplane, creating the default network on the first start and
    /// re-programming networks the maps lost (e.g. after a reboot).
    pub fn open(paths: &Paths) -> Result<Self, EngineError> {
        let store = Store::open(&paths.state_dir, Duration::from_secs(30))?;
        let before = store.load()?;
        let dp = Dataplane::load(&paths.pin_dir)?;
        let mut engine = Self {
            store,
            state: before.clone(),
            before,
            dp,
            paths: paths.clone(),
            undo: Vec::new(),
            cluster: None,
        };
        engine.restore_networks()?;
        if !engine
            .state
            .networks
            .values()
            .any(|n| n.name == DEFAULT_NETWORK)
        {
            engine.create_network(&CreateNetwork {
                name: DEFAULT_NETWORK.into(),
                driver: Some(Driver::Bridge),
                ..CreateNetwork::default()
            })?;
        }
        Ok(engine)
    }

    /// Makes the command's changes durable; on failure undoes them.
    pub fn commit(mut self) -> Result<(), EngineError> {
        if self.state.networks != self.before.networks
            && let Err(e) = gateway::sync_nat(&self.state)
        {
            self.rollback();
            return Err(e.into());
        }
        match self.store.save(&self.before, &self.state) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.rollback();
                Err(e.into())
            }
        }
    }

    /// Takes back every kernel change of this command, newest first.
    pub fn rollback(&mut self) {
        while let Some(undo) = self.undo.pop() {
            // Best effort: the state being restored existed a moment ago.
            let _ = match undo {
                Undo::Network(vni) => self.dp.remove_network(vni).map_err(drop),
                Undo::RemovedNetwork(n) => self.dp.add_network(&n).map_err(drop),
                Undo::Endpoint(ifindex) => {
                    let _ = self.dp.detach_endpoint(ifindex);
                    // Absent when the failure came between attach and map.
                    match self.dp.remove_local_endpoint(ifindex) {
                        Ok(()) | Err(DataplaneError::UnknownEndpoint(_)) => Ok(()),
                        Err(_) => Err(()),
                    }
                }
                Undo::Link(name) => netns::ip(&["link", "del", &name]).map(drop).map_err(drop),
                Undo::Netns(name) => netns::ip(&["netns", "del", &name]).map(drop).map_err(drop),
                Undo::Peer(ip, vni) => self.dp.remove_peer(ip, vni).map_err(drop),
                Undo::Remote(vni, ip) => self.dp.remove_remote_endpoint(vni, ip).map_err(drop),
                Undo::GatewayAddr(gw) => gateway::remove_address(gw).map_err(drop),
                Undo::ClusterNetwork(n) => match self.cluster.as_mut() {
                    Some(c) => c.remove_network(&n).map_err(drop),
                    None => Ok(()),
                },
                Undo::ClusterRemovedNetwork(n) => match self.cluster.as_mut() {
                    Some(c) => c.create_network(&n).map_err(drop),
                    None => Ok(()),
                },
                Undo::ClusterClaim(net, ip) => match self.cluster.as_mut() {
                    Some(c) => c.release_address(&net, ip).map_err(drop),
                    None => Ok(()),
                },
                Undo::ClusterReleased(claim) => match self.cluster.as_mut() {
                    Some(c) => c.put_claim(&claim).map(drop).map_err(drop),
                    None => Ok(()),
                },
            };
        }
        // The NAT table is derived from the networks: put back the old one
        // if this command changed them (commit may have applied the new one).
        if self.state.networks != self.before.networks {
            let _ = gateway::sync_nat(&self.before);
        }
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dp
    }

    /// The cluster store, connected on first use with the stored
    /// configuration.
    fn cluster(&mut self) -> Result<&mut ClusterStore, EngineError> {
        let store = match self.cluster.take() {
            Some(store) => store,
            None => {
                let rec =
                    self.state.cluster.clone().ok_or_else(|| {
                        EngineError::Invalid("this host is not in a cluster".into())
                    })?;
                let mut store =
                    ClusterStore::connect(&ClusterOptions::from_record(&rec, CLUSTER_TIMEOUT)?)?;
                store.set_lease(rec.lease);
                store
            }
        };
        Ok(self.cluster.insert(store))
    }

    /// Enters cluster mode (or changes its settings). Overlay networks
    /// created while this host stood alone would clash with the cluster's,
    /// so they must be gone first.
    pub fn join_cluster(&mut self, record: crate::store::ClusterRecord) -> Result<(), EngineError> {
        if self.state.cluster.is_none() {
            let local: Vec<&str> = self
                .state
                .networks
                .values()
                .filter(|n| n.driver == Driver::Overlay)
                .map(|n| n.name.as_str())
                .collect();
            if !local.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "overlay networks exist on this host ({}): remove them before joining a cluster",
                    local.join(", ")
                )));
            }
        }
        if record.advertise_ip.is_none() && self.state.host.is_none() {
            return Err(EngineError::NoAdvertiseAddress);
        }
        self.state.cluster = Some(record);
        Ok(())
    }

    /// Leaves cluster mode: forgets the global networks (the cluster keeps
    /// them) and everything learned about other hosts.
    pub fn leave_cluster(&mut self) -> Result<(), EngineError> {
        let global: Vec<NetworkRecord> = self
            .state
            .networks
            .values()
            .filter(|n| self.state.is_global(n))
            .cloned()
            .collect();
        for n in &global {
            let users: Vec<&str> = self
                .containers_on(&n.id)
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            if !users.is_empty() {
                return Err(EngineError::NetworkInUse(n.name.clone(), users.join(", ")));
            }
        }
        for n in global {
            self.dp.remove_network(n.vni)?;
            self.undo.push(Undo::RemovedNetwork(dp_network(&n)));
            gateway::remove_address(n.gateway)?;
            self.state.networks.remove(&n.id);
            self.state.peers.retain(|(_, id)| *id != n.id);
            self.state.remotes.retain(|_, r| r.network_id != n.id);
        }
        self.state.learned.clear();
        self.state.cluster_hosts.clear();
        self.state.cluster = None;
        Ok(())
    }

    /// The underlay address other hosts reach this one at.
    pub fn advertise_ip(&self) -> Option<Ipv4Addr> {
        self.state
            .cluster
            .as_ref()
            .and_then(|c| c.advertise_ip)
            .or_else(|| self.state.host.as_ref().map(|h| h.underlay_ip))
    }

    /// Makes this host's cache of the cluster (global networks, other
    /// hosts' endpoints and the peers they imply) equal to `view`, and names
    /// what the agent must fix in etcd so that it lists this host's own
    /// endpoints exactly.
    pub fn apply_cluster_view(&mut self, view: &ClusterView) -> Result<ClusterSync, EngineError> {
        let self_ip = self.advertise_ip().ok_or(EngineError::NoAdvertiseAddress)?;
        let mut sync = ClusterSync::default();
        let in_view: BTreeSet<&str> = view.networks.iter().map(|n| n.id.as_str()).collect();
        for n in &view.networks {
            if self.state.networks.contains_key(&n.id) {
                continue;
            }
            if let Some(l) =
                self.state.networks.values().find(|l| {
                    l.name == n.name || l.vni == n.vni || ipam::overlaps(l.subnet, n.subnet)
                })
            {
                sync.conflicts.push(format!(
                    "global network {} ({}, VNI {}) clashes with network {} ({}, VNI {}) here",
                    n.name, n.subnet, n.vni, l.name, l.subnet, l.vni
                ));
                continue;
            }
            self.dp.add_network(&dp_network(n))?;
            gateway::add_address(n.gateway)?;
            if !n.internal {
                gateway::enable_forwarding()?;
            }
            self.state.networks.insert(n.id.clone(), n.clone());
            sync.networks_added.push(n.name.clone());
        }
        let gone: Vec<NetworkRecord> = self
            .state
            .networks
            .values()
            .filter(|n| self.state.is_global(n) && !in_view.contains(n.id.as_str()))
            .cloned()
            .collect();
        for n in gone {
            if !self.containers_on(&n.id).is_empty() {
                sync.conflicts.push(format!(
                    "network {} left the cluster store but containers here still use it",
                    n.name
                ));
                continue;
            }
            // Takes the network's routes and peers with it.
            self.dp.remove_network(n.vni)?;
            gateway::remove_address(n.gateway)?;
            self.state.networks.remove(&n.id);
            self.state.learned.retain(|_, e| e.network_id != n.id);
            self.state.peers.retain(|(_, id)| *id != n.id);
            self.state.remotes.retain(|_, r| r.network_id != n.id);
            sync.networks_removed.push(n.name);
        }

        // Other hosts' endpoints.
        let local: BTreeMap<(&str, Ipv4Addr), &str> = self
            .state
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter())
            .map(|e| ((e.network_id.as_str(), e.ip), e.id.as_str()))
            .collect();
        let mut want = BTreeMap::new();
        for sc in &view.claims {
            let c = &sc.claim;
            let global = self
                .state
                .networks
                .get(&c.network_id)
                .is_some_and(|n| self.state.is_global(n));
            if c.host == self_ip || !global {
                continue;
            }
            if local.contains_key(&(c.network_id.as_str(), c.ip)) {
                sync.conflicts.push(format!(
                    "{} is claimed by {} on {} but used by an endpoint here",
                    c.ip, c.container, c.host
                ));
                continue;
            }
            want.insert(format!("{}/{}", c.network_id, c.ip), c.clone());
        }
        let old = std::mem::take(&mut self.state.learned);
        for (k, e) in &old {
            if want.get(k) != Some(e)
                && let Some(net) = self.state.networks.get(&e.network_id)
            {
                // Absent already when its network was re-created.
                let _ = self.dp.remove_remote_endpoint(net.vni, e.ip);
                sync.endpoints_removed += 1;
            }
        }
        for (k, e) in &want {
            if old.get(k) != Some(e) {
                let vni = self.state.networks[&e.network_id].vni;
                self.dp.add_remote_endpoint(&RemoteEndpoint {
                    vni,
                    ip: e.ip,
                    mac: e.mac,
                    host: e.host,
                })?;
                sync.endpoints_added += 1;
            }
        }
        // A host may send a network's VNI while it has endpoints on it.
        let peers = |m: &BTreeMap<String, LearnedEndpoint>| -> BTreeSet<(Ipv4Addr, String)> {
            m.values().map(|e| (e.host, e.network_id.clone())).collect()
        };
        let (old_peers, new_peers) = (peers(&old), peers(&want));
        for p in old_peers.difference(&new_peers) {
            if !self.state.peers.contains(p)
                && let Some(net) = self.state.networks.get(&p.1)
            {
                let _ = self.dp.remove_peer(p.0, net.vni);
            }
        }
        // Only the new ones: this runs on every watch event, and the
        // reconcile pass re-writes all of them should the maps lose any.
        for p in new_peers.difference(&old_peers) {
            let vni = self.state.networks[&p.1].vni;
            self.dp.add_peer(p.0, vni)?;
        }
        self.state.learned = want;
        self.state.cluster_hosts = view
            .hosts
            .iter()
            .map(|h| (h.underlay_ip, h.name.clone()))
            .collect();

        // This host's own claims: exactly its endpoints on global networks.
        let lease = self.state.cluster.as_ref().map_or(0, |c| c.lease);
        let ours: BTreeMap<&str, &StoredClaim> = view
            .claims
            .iter()
            .filter(|sc| sc.claim.host == self_ip)
            .map(|sc| (sc.claim.endpoint_id.as_str(), sc))
            .collect();
        for c in self.state.containers.values() {
            for e in &c.endpoints {
                let global = self
                    .state
                    .networks
                    .get(&e.network_id)
                    .is_some_and(|n| self.state.is_global(n));
                let held = ours.get(e.id.as_str());
                if global && held.is_none_or(|sc| sc.lease != lease) {
                    sync.claims_missing.push(Claim {
                        network_id: e.network_id.clone(),
                        ip: e.ip,
                        mac: e.mac,
                        host: self_ip,
                        container: c.name.clone(),
                        endpoint_id: e.id.clone(),
                    });
                }
            }
        }
        let owned: BTreeSet<&str> = local.values().copied().collect();
        sync.claims_stale = ours
            .iter()
            .filter(|(id, _)| !owned.contains(**id))
            .map(|(_, sc)| (*sc).clone())
            .collect();
        Ok(sync)
    }

    fn restore_networks(&mut self) -> Result<(), EngineError> {
        let present: BTreeSet<u32> = self.dp.networks()?.into_iter().map(|(v, _)| v).collect();
        let missing: Vec<NetworkRecord> = self
            .state
            .networks
            .values()
            .filter(|n| !present.contains(&n.vni))
            .cloned()
            .collect();
        for n in missing {
            self.dp.add_network(&dp_network(&n))?;
            gateway::add_address(n.gateway)?;
            self.program_static_entries(Some(&n.id))?;
        }
        Ok(())
    }

    /// (Re-)writes the static peers and remote endpoints of network `only`,
    /// or of every network: upserts, so safe to repeat.
    fn program_static_entries(&mut self, only: Option<&str>) -> Result<(), EngineError> {
        let wanted = |id: &str| only.is_none_or(|o| o == id);
        for (ip, id) in &self.state.peers {
            if let Some(n) = self.state.networks.get(id).filter(|_| wanted(id)) {
                self.dp.add_peer(*ip, n.vni)?;
            }
        }
        // Static remotes, then what the cluster store said last (so
        // forwarding survives a reboot while etcd is unreachable); a learned
        // endpoint's host is also a peer of its network.
        let remotes = self
            .state
            .remotes
            .values()
            .map(|r| (&r.network_id, r.ip, r.mac, r.host, false));
        let learned = self
            .state
            .learned
            .values()
            .map(|e| (&e.network_id, e.ip, e.mac, e.host, true));
        for (id, ip, mac, host, peer) in remotes.chain(learned) {
            let Some(n) = self.state.networks.get(id).filter(|_| wanted(id)) else {
                continue;
            };
            self.dp.add_remote_endpoint(&RemoteEndpoint {
                vni: n.vni,
                ip,
                mac,
                host,
            })?;
            if peer {
                self.dp.add_peer(host, n.vni)?;
            }
        }
        Ok(())
    }

    /// Makes the kernel match the store: the repair a restart (or the
    /// daemon's periodic pass) performs. Safe to run at any time.
    pub fn reconcile(&mut self) -> Result<Repairs, EngineError> {
        let mut repairs = Repairs::default();
        // Networks the store does not know.
        let known: BTreeSet<u32> = self.state.networks.values().map(|n| n.vni).collect();
        for (vni, _) in self.dp.networks()? {
            if !known.contains(&vni) {
                // Endpoints of it go first, or removal is refused.
                for (ifindex, info) in self.dp.state()?.endpoints {
                    if info.vni == vni {
                        let _ = self.dp.detach_endpoint(ifindex);
                        self.dp.remove_local_endpoint(ifindex)?;
                    }
                }
                self.dp.remove_network(vni)?;
                repairs.stale_networks += 1;
            }
        }
        // Containers whose namespace is gone.
        let gone: Vec<String> = self
            .state
            .containers
            .values()
            .filter(|c| !Path::new("/run/netns").join(&c.netns).exists())
            .map(|c| c.name.clone())
            .collect();
        for name in gone {
            let c = self.state.containers.remove(&name).expect("listed above");
            // Its process would otherwise outlive the container it belonged to.
            if c.owned_netns {
                stop_pid(c.pid);
            }
            for ep in &c.endpoints {
                release_endpoint(&mut self.dp, ep)?;
            }
            repairs.containers_gone.push(name);
        }
        // Endpoints: recreate lost veths, re-program lost or wrong entries.
        let endpoints: Vec<(String, EndpointRecord)> = self
            .state
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter().map(|e| (c.name.clone(), e.clone())))
            .collect();
        let programmed: BTreeMap<u32, overlay_common::EndpointInfo> =
            self.dp.state()?.endpoints.into_iter().collect();
        let mut owned = BTreeSet::new();
        for (container, ep) in endpoints {
            let Some(net) = self.state.networks.get(&ep.network_id).cloned() else {
                continue;
            };
            let Ok(ifindex) = netns::ifindex(&ep.host_ifname) else {
                let c = self.state.containers.get_mut(&container).expect("present");
                c.endpoints.retain(|e| e.id != ep.id);
                let new = self.connect(&net.id, &container, Some(ep.ip))?;
                owned.insert(netns::ifindex(&new.host_ifname)?);
                repairs
                    .endpoints_recreated
                    .push(format!("{container}/{}", ep.ifname));
                continue;
            };
            owned.insert(ifindex);
            let host_mac = netns::mac(&ep.host_ifname)?;
            let want = overlay_common::EndpointInfo {
                vni: net.vni,
                ip: u32::from(ep.ip).to_be(),
                mac: ep.mac.0,
                host_mac: host_mac.0,
                flags: 0,
            };
            let linked = self
                .dp
                .pin_dir()
                .join("links")
                .join(format!("endpoint-{ifindex}"))
                .exists();
            if programmed.get(&ifindex) != Some(&want) || !linked {
                if programmed.contains_key(&ifindex) {
                    self.dp.remove_local_endpoint(ifindex)?;
                }
                // A route for the address may survive its endpoint entry.
                self.dp.remove_route(net.vni, ep.ip)?;
                // Program first, then the maps (as in connect).
                self.dp.attach_endpoint(ifindex)?;
                self.dp.add_local_endpoint(&LocalEndpoint {
                    vni: net.vni,
                    ip: ep.ip,
                    mac: ep.mac,
                    host_ifindex: ifindex,
                    host_mac,
                })?;
                repairs
                    .endpoints_reprogrammed
                    .push(format!("{container}/{}", ep.ifname));
            }
            gateway::endpoint_route(ep.ip, ep.mac, &ep.host_ifname)?;
        }
        // Map entries and links of interfaces nobody owns.
        for ifindex in programmed.keys().filter(|i| !owned.contains(i)) {
            let _ = self.dp.detach_endpoint(*ifindex);
            self.dp.remove_local_endpoint(*ifindex)?;
            repairs.stale_entries += 1;
        }
        let owned_names: BTreeSet<String> = self
            .state
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter().map(|e| e.host_ifname.clone()))
            .collect();
        for name in host_veths()? {
            if !owned_names.contains(&name) {
                netns::ip(&["link", "del", &name])?;
                repairs.stale_veths.push(name);
            }
        }
        self.program_static_entries(None)?;
        // The underlay program, if this host was attached.
        if let Some(h) = self.state.host.clone()
            && let Ok(ifindex) = netns::ifindex(&h.iface)
            && !self
                .dp
                .pin_dir()
                .join("links")
                .join(format!("underlay-{ifindex}"))
                .exists()
        {
            let mode = match h.decap.as_str() {
                "tc (tcx ingress)" => crate::DecapMode::Tc,
                "xdp (generic)" => crate::DecapMode::XdpGeneric,
                _ => crate::DecapMode::Xdp,
            };
            self.dp
                .set_underlay(&Underlay::new(ifindex, h.underlay_ip))?;
            self.dp.attach_underlay(ifindex, mode)?;
            repairs.underlay_reattached = true;
        }
        gateway::sync_nat(&self.state)?;
        Ok(repairs)
    }

    // ---- networks ----------------------------------------------------------

    /// Finds a network by name, full ID or unique ID prefix.
    pub fn network(&self, key: &str) -> Result<&NetworkRecord, EngineError> {
        if let Some(n) = self.state.networks.values().find(|n| n.name == key) {
            return Ok(n);
        }
        by_id_prefix(self.state.networks.values(), |n| &n.id, key)
            .ok_or_else(|| EngineError::NoSuchNetwork(key.to_owned()))
    }

    /// Containers attached to network `id`, by name.
    pub fn containers_on(&self, id: &str) -> Vec<&ContainerRecord> {
        self.state
            .containers
            .values()
            .filter(|c| c.endpoints.iter().any(|e| e.network_id == id))
            .collect()
    }

    /// `network create`: returns the new network's ID.
    pub fn create_network(&mut self, opts: &CreateNetwork) -> Result<String, EngineError> {
        if !valid_name(&opts.name) {
            return Err(EngineError::InvalidName(opts.name.clone()));
        }
        let driver = opts.driver.unwrap_or(Driver::Bridge);
        let global = driver == Driver::Overlay && self.state.cluster.is_some();
        // The cluster's networks as they are now, not as last synced.
        let mut known: Vec<NetworkRecord> = self.state.networks.values().cloned().collect();
        if global {
            for n in self.cluster()?.networks()? {
                if !self.state.networks.contains_key(&n.id) {
                    known.push(n);
                }
            }
        }
        if known.iter().any(|n| n.name == opts.name) {
            return Err(EngineError::DuplicateNetwork(opts.name.clone()));
        }
        let taken: Vec<(String, Ipv4Net)> =
            known.iter().map(|n| (n.name.clone(), n.subnet)).collect();
        let subnet = match opts.subnets.as_slice() {
            [] => {
                let pools = match driver {
                    Driver::Bridge => ipam::BRIDGE_POOLS,
                    Driver::Overlay => ipam::OVERLAY_POOLS,
                };
                let used: Vec<Ipv4Net> = taken.iter().map(|(_, s)| *s).collect();
                ipam::pick_subnet(pools, &used).ok_or(EngineError::PoolExhausted)?
            }
            [one] => *one,
            _ => {
                return Err(EngineError::Invalid(
                    "only one IPv4 --subnet per network is supported".into(),
                ));
            }
        };
        if subnet.trunc() != subnet {
            return Err(EngineError::HostBits(subnet, subnet.trunc()));
        }
        if subnet.prefix_len() > 30 {
            return Err(EngineError::Invalid(format!(
                "subnet {subnet} is too small: use /30 or larger"
            )));
        }
        if let Some((name, other)) = taken.iter().find(|(_, s)| ipam::overlaps(*s, subnet)) {
            return Err(EngineError::Overlap(subnet, name.clone(), *other));
        }
        let gateway = match opts.gateway {
            Some(gw) if !ipam::is_host(subnet, gw) => {
                return Err(EngineError::GatewayOutside(gw, subnet));
            }
            Some(gw) => gw,
            None => subnet.hosts().next().ok_or(EngineError::PoolExhausted)?,
        };
        if let Some(range) = opts.ip_range
            && !(subnet.contains(&range.network()) && subnet.contains(&range.broadcast()))
        {
            return Err(EngineError::RangeOutside(range, subnet));
        }
        let mut used_vnis: BTreeMap<u32, String> =
            known.iter().map(|n| (n.vni, n.name.clone())).collect();
        let mut vni = pick_vni(&used_vnis, driver, opts.vni)?;
        let mtu = opts.mtu.unwrap_or(match driver {
            Driver::Bridge => BRIDGE_MTU,
            Driver::Overlay => OVERLAY_MTU,
        });
        if !(576..=9000).contains(&mtu) {
            return Err(EngineError::Invalid(format!(
                "mtu {mtu} is out of range (576-9000)"
            )));
        }
        let mut record = NetworkRecord {
            id: ipam::new_id(),
            name: opts.name.clone(),
            driver,
            subnet,
            gateway,
            ip_range: opts.ip_range,
            vni,
            internal: opts.internal,
            mtu,
            labels: opts.labels.clone(),
            created: now_rfc3339(),
        };
        // Another host may take the same VNI at the same moment: pick again.
        if global {
            loop {
                match self.cluster()?.create_network(&record) {
                    Ok(()) => {
                        self.undo.push(Undo::ClusterNetwork(record.clone()));
                        break;
                    }
                    Err(ClusterError::NameTaken(name)) => {
                        return Err(EngineError::DuplicateNetwork(name));
                    }
                    Err(ClusterError::VniTaken(v)) if opts.vni.is_none() => {
                        used_vnis.insert(v, "another host's network".into());
                        vni = pick_vni(&used_vnis, driver, None)?;
                        record.vni = vni;
                    }
                    Err(ClusterError::VniTaken(v)) => {
                        return Err(EngineError::VniInUse(v, "another host's network".into()));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.dp.add_network(&dp_network(&record))?;
        self.undo.push(Undo::Network(vni));
        if gateway::add_address(gateway)? {
            self.undo.push(Undo::GatewayAddr(gateway));
        }
        if !record.internal {
            gateway::enable_forwarding()?;
        }
        let id = record.id.clone();
        self.state.networks.insert(id.clone(), record);
        Ok(id)
    }

    /// `network rm`: all named networks, or none.
    pub fn remove_networks(&mut self, keys: &[String]) -> Result<Vec<String>, EngineError> {
        let mut ids = Vec::new();
        for key in keys {
            let net = self.network(key)?;
            if net.name == DEFAULT_NETWORK {
                return Err(EngineError::Predefined(net.name.clone()));
            }
            let users: Vec<&str> = self
                .containers_on(&net.id)
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            if !users.is_empty() {
                return Err(EngineError::NetworkInUse(
                    net.name.clone(),
                    users.join(", "),
                ));
            }
            ids.push(net.id.clone());
        }
        // Containers on other hosts count too.
        for id in &ids {
            let net = self.state.networks[id].clone();
            if self.state.is_global(&net) {
                let users: Vec<String> = self
                    .cluster()?
                    .claims(&net.id)?
                    .iter()
                    .map(|c| format!("{} (on {})", c.container, c.host))
                    .collect();
                if !users.is_empty() {
                    return Err(EngineError::NetworkInUse(net.name, users.join(", ")));
                }
            }
        }
        let mut names = Vec::new();
        for id in ids {
            let net = self.state.networks.remove(&id).expect("resolved above");
            if self.state.is_global(&net) {
                self.cluster()?.remove_network(&net)?;
                self.undo.push(Undo::ClusterRemovedNetwork(net.clone()));
                self.state.learned.retain(|_, e| e.network_id != id);
            }
            self.dp.remove_network(net.vni)?;
            self.undo.push(Undo::RemovedNetwork(dp_network(&net)));
            gateway::remove_address(net.gateway)?;
            self.state.peers.retain(|(_, n)| *n != id);
            self.state.remotes.retain(|_, r| r.network_id != id);
            names.push(net.name);
        }
        Ok(names)
    }

    /// `network prune`: every network without containers but the default.
    pub fn prune_networks(&mut self) -> Result<Vec<String>, EngineError> {
        let unused: Vec<String> = self
            .state
            .networks
            .values()
            .filter(|n| n.name != DEFAULT_NETWORK && self.containers_on(&n.id).is_empty())
            .map(|n| n.name.clone())
            .collect();
        self.remove_networks(&unused)
    }

    // ---- containers --------------------------------------------------------

    /// Finds a container by name or unique ID prefix.
    pub fn container(&self, key: &str) -> Result<&ContainerRecord, EngineError> {
        if let Some(c) = self.state.containers.get(key) {
            return Ok(c);
        }
        by_id_prefix(self.state.containers.values(), |c| &c.id, key)
            .ok_or_else(|| EngineError::NoSuchContainer(key.to_owned()))
    }

    /// A known container, or a namespace adopted as one: an `ip netns`
    /// name, or a PID whose namespace is then named `pid<PID>`.
    fn container_or_adopt(&mut self, key: &str) -> Result<String, EngineError> {
        if let Ok(c) = self.container(key) {
            return Ok(c.name.clone());
        }
        let mut attached = false;
        let netns_name = if Path::new("/run/netns").join(key).exists() && valid_name(key) {
            key.to_owned()
        } else if key.parse::<u32>().is_ok() && Path::new("/proc").join(key).join("ns/net").exists()
        {
            let name = format!("pid{key}");
            if !Path::new("/run/netns").join(&name).exists() {
                netns::ip(&["netns", "attach", &name, key])?;
                self.undo.push(Undo::Netns(name.clone()));
                attached = true;
            }
            name
        } else {
            return Err(EngineError::NoSuchContainer(key.to_owned()));
        };
        self.state.containers.insert(
            netns_name.clone(),
            ContainerRecord {
                id: ipam::new_id(),
                name: netns_name.clone(),
                netns: netns_name.clone(),
                owned_netns: false,
                attached_netns: attached,
                command: Vec::new(),
                pid: None,
                created: now_rfc3339(),
                endpoints: Vec::new(),
            },
        );
        Ok(netns_name)
    }

    /// `network connect`: a veth into the container, an address, the
    /// dataplane programmed. Returns the endpoint.
    pub fn connect(
        &mut self,
        network: &str,
        container: &str,
        ip: Option<Ipv4Addr>,
    ) -> Result<EndpointRecord, EngineError> {
        let net = self.network(network)?.clone();
        let name = self.container_or_adopt(container)?;
        let c = self.state.containers[&name].clone();
        if c.endpoints.iter().any(|e| e.network_id == net.id) {
            return Err(EngineError::AlreadyConnected(c.name, net.name));
        }
        let used: BTreeSet<Ipv4Addr> = self
            .state
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter())
            .filter(|e| e.network_id == net.id)
            .map(|e| e.ip)
            .chain(
                self.state
                    .remotes
                    .values()
                    .filter(|r| r.network_id == net.id)
                    .map(|r| r.ip),
            )
            .chain(
                self.state
                    .learned
                    .values()
                    .filter(|e| e.network_id == net.id)
                    .map(|e| e.ip),
            )
            .collect();
        let want = ip;
        let mut ip = match ip {
            Some(ip) if !ipam::is_host(net.subnet, ip) || ip == net.gateway => {
                return Err(EngineError::AddressOutside(ip, net.subnet));
            }
            Some(ip) if used.contains(&ip) => return Err(EngineError::AddressInUse(ip, net.name)),
            Some(ip) => ip,
            None => ipam::allocate(net.subnet, net.ip_range, net.gateway, &used)
                .ok_or_else(|| EngineError::AddressesExhausted(net.name.clone()))?,
        };
        let id = ipam::new_id();
        if self.state.is_global(&net) {
            // The cluster store decides: its claims cover every host.
            let host = self.advertise_ip().ok_or(EngineError::NoAdvertiseAddress)?;
            let claim = |ip| Claim {
                network_id: net.id.clone(),
                ip,
                mac: MacAddr::from_ipv4(ip),
                host,
                container: c.name.clone(),
                endpoint_id: id.clone(),
            };
            ip = match self.cluster()?.claim_address(&net, want, &used, claim) {
                Ok(ip) => ip,
                Err(ClusterError::AddressTaken(ip)) => {
                    return Err(EngineError::AddressInUse(ip, net.name));
                }
                Err(ClusterError::Exhausted(name)) => {
                    return Err(EngineError::AddressesExhausted(name));
                }
                Err(e) => return Err(e.into()),
            };
            self.undo.push(Undo::ClusterClaim(net.id.clone(), ip));
        }
        let ifname = (0..)
            .map(|n| format!("eth{n}"))
            .find(|n| !c.endpoints.iter().any(|e| &e.ifname == n))
            .expect("unbounded");
        let host_ifname = format!("ovl{}", &id[..8]);
        let mac = MacAddr::from_ipv4(ip);
        netns::add_veth(
            netns::VethEnd {
                name: &host_ifname,
                netns: None,
                mtu: Some(net.mtu),
            },
            netns::VethEnd {
                name: &ifname,
                netns: Some(&c.netns),
                mtu: Some(net.mtu),
            },
        )?;
        self.undo.push(Undo::Link(host_ifname.clone()));
        let in_ns = |args: &[&str]| -> Result<(), NetnsError> {
            let mut argv = vec!["-n", c.netns.as_str()];
            argv.extend_from_slice(args);
            netns::ip(&argv).map(drop)
        };
        in_ns(&["link", "set", "lo", "up"])?;
        // The dataplane is IPv4-only: no IPv6 link-local chatter on it.
        let ns_handle = netns::NetNs::existing(&c.netns);
        let sysctl = format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6");
        ns_handle
            .run(|| std::fs::write(&sysctl, "1"))?
            .map_err(|source| NetnsError::Io {
                op: "write",
                name: sysctl.clone(),
                source,
            })?;
        in_ns(&["link", "set", &ifname, "address", &mac.to_string()])?;
        in_ns(&[
            "addr",
            "add",
            &format!("{ip}/{}", net.subnet.prefix_len()),
            "dev",
            &ifname,
        ])?;
        in_ns(&["link", "set", &ifname, "up"])?;
        if c.endpoints.is_empty() && !net.internal {
            in_ns(&[
                "route",
                "add",
                "default",
                "via",
                &net.gateway.to_string(),
                "dev",
                &ifname,
            ])?;
        }
        // XDP-redirected frames reach a veth only when its peer has GRO.
        ns_handle.run(|| netns::enable_gro(&ifname))??;
        netns::ip(&["link", "set", &host_ifname, "up"])?;
        let host_ifindex = netns::ifindex(&host_ifname)?;
        let host_mac = netns::mac(&host_ifname)?;
        // The program goes on before the maps make the endpoint reachable:
        // the container answers the first packet that reaches it (an ARP
        // request, a reply), and meeting no program there would leave its
        // ARP unanswered until the kernel's 1 s retry.
        self.undo.push(Undo::Endpoint(host_ifindex));
        self.dp.attach_endpoint(host_ifindex)?;
        self.dp.add_local_endpoint(&LocalEndpoint {
            vni: net.vni,
            ip,
            mac,
            host_ifindex,
            host_mac,
        })?;
        gateway::endpoint_route(ip, mac, &host_ifname)?;
        let endpoint = EndpointRecord {
            id,
            network_id: net.id.clone(),
            ip,
            mac,
            ifname,
            host_ifname,
        };
        self.state
            .containers
            .get_mut(&name)
            .expect("present")
            .endpoints
            .push(endpoint.clone());
        Ok(endpoint)
    }

    /// `network disconnect`: removes the interface and frees the address.
    pub fn disconnect(&mut self, network: &str, container: &str) -> Result<(), EngineError> {
        let net = self.network(network)?.clone();
        let name = self.container(container)?.name.clone();
        let c = self.state.containers.get_mut(&name).expect("present");
        let Some(pos) = c.endpoints.iter().position(|e| e.network_id == net.id) else {
            return Err(EngineError::NotConnected(name, net.name));
        };
        let ep = c.endpoints.remove(pos);
        self.release_claim(&name, &ep)?;
        release_endpoint(&mut self.dp, &ep)?;
        Ok(())
    }

    /// Gives an endpoint's address back to the cluster store (global
    /// networks only).
    fn release_claim(&mut self, container: &str, ep: &EndpointRecord) -> Result<(), EngineError> {
        let Some(net) = self.state.networks.get(&ep.network_id).cloned() else {
            return Ok(());
        };
        if !self.state.is_global(&net) {
            return Ok(());
        }
        let host = self.advertise_ip().ok_or(EngineError::NoAdvertiseAddress)?;
        self.cluster()?.release_address(&net.id, ep.ip)?;
        self.undo.push(Undo::ClusterReleased(Claim {
            network_id: net.id,
            ip: ep.ip,
            mac: ep.mac,
            host,
            container: container.to_owned(),
            endpoint_id: ep.id.clone(),
        }));
        Ok(())
    }

    /// `run` without the process: a new namespace on `networks`.
    pub fn create_container(
        &mut self,
        name: Option<&str>,
        networks: &[String],
        command: &[String],
    ) -> Result<ContainerRecord, EngineError> {
        let id = ipam::new_id();
        let name = name.map_or_else(|| format!("c{}", &id[..12]), str::to_owned);
        if !valid_name(&name) {
            return Err(EngineError::InvalidName(name));
        }
        if self.state.containers.contains_key(&name) || Path::new("/run/netns").join(&name).exists()
        {
            return Err(EngineError::DuplicateContainer(name));
        }
        let networks: Vec<String> = if networks.is_empty() {
            vec![DEFAULT_NETWORK.to_owned()]
        } else {
            networks.to_vec()
        };
        for n in &networks {
            self.network(n)?;
        }
        netns::ip(&["netns", "add", &name])?;
        self.undo.push(Undo::Netns(name.clone()));
        netns::ip(&["-n", &name, "link", "set", "lo", "up"])?;
        self.state.containers.insert(
            name.clone(),
            ContainerRecord {
                id,
                name: name.clone(),
                netns: name.clone(),
                owned_netns: true,
                attached_netns: false,
                command: command.to_vec(),
                pid: None,
                created: now_rfc3339(),
                endpoints: Vec::new(),
            },
        );
        for n in &networks {
            self.connect(n, &name, None)?;
        }
        Ok(self.state.containers[&name].clone())
    }

    /// Records the container's main process.
    pub fn set_pid(&mut self, name: &str, pid: Option<u32>) {
        if let Some(c) = self.state.containers.get_mut(name) {
            c.pid = pid;
        }
    }

    /// `rm`: stops (with `force`), removes interfaces, addresses and the
    /// namespace it created.
    pub fn remove_container(&mut self, key: &str, force: bool) -> Result<String, EngineError> {
        let c = self.container(key)?.clone();
        if is_running(c.pid) {
            if !force {
                return Err(EngineError::Running(c.name));
            }
            stop_pid(c.pid);
        }
        for ep in &c.endpoints {
            self.release_claim(&c.name, ep)?;
            release_endpoint(&mut self.dp, ep)?;
        }
        if c.owned_netns || c.attached_netns {
            // For an adopted PID this only detaches the name.
            netns::ip(&["netns", "del", &c.netns])?;
        }
        self.state.containers.remove(&c.name);
        Ok(c.name)
    }

    /// Directory for container logs (`run -d`).
    pub fn log_dir(&self) -> PathBuf {
        self.paths.state_dir.join("logs")
    }

    // ---- host and static peers ---------------------------------------------

    /// `attach`: binds the host to its underlay NIC.
    pub fn attach(
        &mut self,
        iface: &str,
        underlay_ip: Ipv4Addr,
        mode: crate::DecapMode,
    ) -> Result<crate::AttachedMode, EngineError> {
        let ifindex = netns::ifindex(iface)?;
        let underlay = Underlay::new(ifindex, underlay_ip);
        // Validate before touching anything; the program goes in before the
        // config, so a NIC that refuses it leaves the old config in place.
        if underlay_ip.is_unspecified() || underlay_ip.is_broadcast() || underlay_ip.is_multicast()
        {
            return Err(EngineError::Invalid(format!(
                "invalid underlay address {underlay_ip}"
            )));
        }
        let mode = self.dp.attach_underlay(ifindex, mode)?;
        self.dp.set_underlay(&underlay)?;
        self.state.host = Some(HostRecord {
            iface: iface.to_owned(),
            underlay_ip,
            decap: mode.to_string(),
        });
        Ok(mode)
    }

    /// `detach`: unbinds the host from its underlay NIC.
    pub fn detach(&mut self) -> Result<String, EngineError> {
        let host = self
            .state
            .host
            .take()
            .ok_or_else(|| EngineError::Invalid("this host is not attached".into()))?;
        let ifindex = netns::ifindex(&host.iface).unwrap_or(0);
        self.dp.detach_underlay(ifindex)?;
        Ok(host.iface)
    }

    /// `peer add`: `host` may send `network`'s VNI.
    pub fn add_peer(&mut self, host: Ipv4Addr, network: &str) -> Result<(), EngineError> {
        let net = self.network(network)?.clone();
        self.dp.add_peer(host, net.vni)?;
        self.undo.push(Undo::Peer(host, net.vni));
        self.state.peers.insert((host, net.id));
        Ok(())
    }

    /// `peer rm`.
    pub fn remove_peer(&mut self, host: Ipv4Addr, network: &str) -> Result<(), EngineError> {
        let net = self.network(network)?.clone();
        if !self.state.peers.remove(&(host, net.id.clone())) {
            return Err(EngineError::Invalid(format!(
                "{host} is not a peer of network {}",
                net.name
            )));
        }
        self.dp.remove_peer(host, net.vni)?;
        Ok(())
    }

    /// `endpoint add --remote`: a static endpoint on another host.
    pub fn add_remote(
        &mut self,
        network: &str,
        ip: Ipv4Addr,
        mac: Option<MacAddr>,
        host: Ipv4Addr,
    ) -> Result<(), EngineError> {
        let net = self.network(network)?.clone();
        let taken = self
            .state
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter())
            .any(|e| e.network_id == net.id && e.ip == ip);
        if taken || ip == net.gateway {
            return Err(EngineError::AddressInUse(ip, net.name));
        }
        let mac = mac.unwrap_or_else(|| MacAddr::from_ipv4(ip));
        self.dp.add_remote_endpoint(&RemoteEndpoint {
            vni: net.vni,
            ip,
            mac,
            host,
        })?;
        self.undo.push(Undo::Remote(net.vni, ip));
        self.state.remotes.insert(
            format!("{}/{ip}", net.vni),
            RemoteRecord {
                network_id: net.id,
                ip,
                mac,
                host,
            },
        );
        Ok(())
    }

    /// `endpoint rm --remote`.
    pub fn remove_remote(&mut self, network: &str, ip: Ipv4Addr) -> Result<(), EngineError> {
        let net = self.network(network)?.clone();
        if self
            .state
            .remotes
            .remove(&format!("{}/{ip}", net.vni))
            .is_none()
        {
            return Err(EngineError::Invalid(format!(
                "no remote endpoint {ip} on network {}",
                net.name
            )));
        }
        self.dp.remove_remote_endpoint(net.vni, ip)?;
        Ok(())
    }
}

/// A VNI for a new network: `wanted` if free, else the lowest free one of
/// the driver's range.
fn pick_vni(
    used: &BTreeMap<u32, String>,
    driver: Driver,
    wanted: Option<u32>,
) -> Result<u32, EngineError> {
    match (driver, wanted) {
        (Driver::Bridge, Some(_)) => Err(EngineError::VniOnBridge),
        (Driver::Overlay, Some(v)) if v == 0 || v >= LOCAL_VNI_BASE => {
            Err(EngineError::VniRange(v))
        }
        (Driver::Overlay, Some(v)) => match used.get(&v) {
            Some(name) => Err(EngineError::VniInUse(v, name.clone())),
            None => Ok(v),
        },
        (driver, None) => {
            let (from, to) = match driver {
                Driver::Overlay => (OVERLAY_VNI_BASE, LOCAL_VNI_BASE),
                Driver::Bridge => (LOCAL_VNI_BASE, overlay_common::VNI_MAX + 1),
            };
            (from..to)
                .find(|v| !used.contains_key(v))
                .ok_or_else(|| EngineError::Invalid("no free VNI left".into()))
        }
    }
}

fn dp_network(n: &NetworkRecord) -> Network {
    Network {
        vni: n.vni,
        subnet: n.subnet,
        gateway: Some(n.gateway),
        internal: n.internal,
    }
}

/// Takes an endpoint out of the dataplane and deletes its veth.
fn release_endpoint(dp: &mut Dataplane, ep: &EndpointRecord) -> Result<(), EngineError> {
    // The veth may be gone already (namespace deleted behind our back).
    if let Ok(ifindex) = netns::ifindex(&ep.host_ifname) {
        let _ = dp.detach_endpoint(ifindex);
        match dp.remove_local_endpoint(ifindex) {
            Ok(()) | Err(DataplaneError::UnknownEndpoint(_)) => {}
            Err(e) => return Err(e.into()),
        }
        netns::ip(&["link", "del", &ep.host_ifname])?;
    }
    Ok(())
}

/// True when `pid` names a live process.
pub fn is_running(pid: Option<u32>) -> bool {
    pid.is_some_and(|p| Path::new("/proc").join(p.to_string()).exists())
}

/// SIGTERM, up to 5 s, then SIGKILL.
pub fn stop_pid(pid: Option<u32>) {
    let Some(pid) = pid else { return };
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a plain pid and signal.
    unsafe { libc::kill(pid_t, libc::SIGTERM) };
    for _ in 0..50 {
        if !is_running(Some(pid)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid_t, libc::SIGKILL) };
}

/// Host-side veths this program names (`ovl` + 8 hex digits).
fn host_veths() -> Result<Vec<String>, EngineError> {
    let out = netns::ip(&["-o", "link", "show"])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .filter(|n| {
            n.len() == 11 && n.starts_with("ovl") && n[3..].chars().all(|c| c.is_ascii_hexdigit())
        })
        .collect())
}

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
