//! Docker-style networks and containers on one host: the store, the
//! dataplane and the host's network, changed together.
//!
//! Commands run without a daemon: each one opens the store exclusively,
//! checks its input against the loaded state before touching anything,
//! makes its kernel changes while recording how to undo them (`undo.rs`),
//! and commits the store last. Any failure undoes the kernel changes and
//! writes nothing.
//!
//! By concern: `networks.rs`, `containers.rs`, `endpoints.rs` (connect and
//! disconnect), `underlay.rs` (attach, static peers, cluster membership),
//! `cluster_sync.rs` (the cluster store's view applied here), `reconcile.rs`
//! (repairing drift). The dataplane and the host sit behind [`ports`].

mod cluster_sync;
mod conflicts;
mod containers;
mod endpoints;
mod networks;
mod plugin;
pub mod ports;
mod reconcile;
mod trace;
mod underlay;
mod undo;

#[cfg(test)]
mod tests;

use std::{net::Ipv4Addr, path::PathBuf, time::Duration};

use ipnet::Ipv4Net;

use self::undo::Undo;
pub use self::{
    cluster_sync::ClusterSync,
    conflicts::ClusterHost,
    endpoints::ConnectOptions,
    networks::CreateNetwork,
    plugin::{JoinInfo, PluginNetwork},
    ports::{ContainerIface, Datapath, DefaultRoute, HostNet, Nic, System},
    reconcile::Repairs,
    trace::{TraceProto, TraceStep, TraceView},
    underlay::Attached,
};
use crate::{
    cluster::{ClusterError, ClusterOptions, ClusterStore},
    dataplane::{Dataplane, DataplaneError},
    host::{
        HostError,
        filter::{FilteredNetwork, Published, Ruleset},
    },
    model::{
        ContainerRecord, NetworkRecord, ProcessRef, RuleError, Snapshot, names::NameTable,
        rules::DEFAULT_NETWORK,
    },
    store::{Store, StoreError},
};

/// How long a command waits for the cluster store before calling it
/// unreachable.
pub const CLUSTER_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a command waits for another one to release the store.
pub const STORE_WAIT: Duration = Duration::from_secs(30);

/// A user-facing failure: one line naming the problem.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Rule(#[from] RuleError),
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
    #[error("subnet {0} overlaps network {1} ({2})")]
    Overlap(Ipv4Net, String, Ipv4Net),
    #[error("no free subnet left in the default address pools")]
    PoolExhausted,
    #[error("VNI {0} is already used by network {1}")]
    VniInUse(u32, String),
    #[error("no free VNI left")]
    VnisExhausted,
    #[error("network {0} is in use by containers: {1}")]
    NetworkInUse(String, String),
    #[error("{0} is a pre-defined network and cannot be removed")]
    Predefined(String),
    #[error("address {0} is already in use on network {1}")]
    AddressInUse(Ipv4Addr, String),
    #[error(
        "container {container}: address {ip} on network {network} is claimed by {holder} in the cluster store (address conflict); disconnect and connect it again for another address"
    )]
    AddressConflict {
        container: String,
        ip: Ipv4Addr,
        network: String,
        holder: String,
    },
    #[error("{0} is this host: only another host's addresses can be released")]
    RemoveSelf(Ipv4Addr),
    #[error("{0} is Docker's (made through the plugin): use docker network or docker run")]
    DockerOwned(String),
    #[error("address pool {0} not found")]
    NoSuchPool(String),
    #[error(
        "network {0}: -o network=NAME binds to a cluster network: run the daemon with --store etcd://..."
    )]
    NotInCluster(String),
    #[error(
        "cluster network {0} has subnet {1}: create the Docker network with --subnet {1} (not {2})"
    )]
    BindSubnet(String, Ipv4Net, Ipv4Net),
    #[error("endpoint {0} not found")]
    NoSuchEndpoint(String),
    #[error(
        "container {0} has no route to {1}: none of its networks holds that address, and none is routable"
    )]
    NoPath(String, Ipv4Addr),
    #[error("endpoint {0} already exists")]
    EndpointExists(String),
    #[error("container {0} has no endpoint on a routable network to publish ports on")]
    NothingToPublishOn(String),
    #[error("port {0} is already published (to {1})")]
    PortPublished(String, String),
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
    Host(#[from] HostError),
}

/// Where this host keeps its state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Paths {
    /// The store (`store.redb`) and container logs.
    pub state_dir: PathBuf,
    /// Pinned maps and links.
    pub pin_dir: PathBuf,
}

impl Paths {
    /// `DIR/state` and `DIR/bpf`: one directory for a whole (simulated) host.
    pub fn under(root: &std::path::Path) -> Self {
        Self {
            state_dir: root.join("state"),
            pin_dir: root.join("bpf"),
        }
    }

    /// Directory for container logs (`run -d`).
    pub fn log_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
}

/// One command's view: the store (held), its snapshot, the dataplane and
/// the host.
pub struct Engine {
    store: Store,
    before: Snapshot,
    state: Snapshot,
    dp: Box<dyn Datapath>,
    host: Box<dyn HostNet>,
    undo: Vec<Undo>,
    /// Connected on first use, and only for global networks: local
    /// commands work while etcd is unreachable.
    cluster: Option<ClusterStore>,
    /// Namespaces this command marked pending in the store ahead of its
    /// commit (see [`Snapshot::pending_netns`]).
    marked_netns: Vec<String>,
}

/// Runs `f` as one command on the host at `paths`: opens the store (and
/// dataplane), commits what `f` changed, or undoes all of it on failure.
pub fn transaction<T>(
    paths: &Paths,
    f: impl FnOnce(&mut Engine) -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    Engine::open(paths)?.run(f)
}

impl Engine {
    /// Opens the store (waiting while another command holds it), the
    /// dataplane pinned under `paths.pin_dir` and the host network of the
    /// calling thread's namespace.
    pub fn open(paths: &Paths) -> Result<Self, EngineError> {
        let store = Store::open(&paths.state_dir, STORE_WAIT)?;
        let dp = Dataplane::load(&paths.pin_dir)?;
        Self::with(store, Box::new(dp), Box::new(System::open()?))
    }

    /// An engine over the given parts: creates the default network on the
    /// first start and re-programs networks the maps lost (e.g. after a
    /// reboot).
    pub fn with(
        store: Store,
        dp: Box<dyn Datapath>,
        host: Box<dyn HostNet>,
    ) -> Result<Self, EngineError> {
        let before = store.load()?;
        let mut engine = Self {
            store,
            state: before.clone(),
            before,
            dp,
            host,
            undo: Vec::new(),
            cluster: None,
            marked_netns: Vec::new(),
        };
        let started = engine.restore_networks().and_then(|()| {
            if engine.state.find_network(DEFAULT_NETWORK).is_none() {
                engine.create_network(&CreateNetwork::default_bridge())?;
            }
            Ok(())
        });
        match started {
            Ok(()) => Ok(engine),
            Err(e) => {
                engine.rollback();
                Err(e)
            }
        }
    }

    /// Runs `f` as one command: commits what it changed, or undoes all of
    /// it on failure.
    pub fn run<T>(
        mut self,
        f: impl FnOnce(&mut Self) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        match f(&mut self) {
            Ok(v) => {
                self.commit()?;
                Ok(v)
            }
            Err(e) => {
                self.rollback();
                Err(e)
            }
        }
    }

    /// Makes the command's changes durable; on failure undoes them.
    pub fn commit(mut self) -> Result<(), EngineError> {
        // The kernel's names and the resolver's follow from the same table:
        // the same tables mean neither changed.
        let names = NameTable::from_snapshot(&self.state);
        let names_changed = names != NameTable::from_snapshot(&self.before);
        if names_changed && let Err(e) = self.sync_names(&names) {
            self.rollback();
            return Err(e);
        }
        if self.filter_changed()
            && let Err(e) = self.sync_guards().and_then(|()| {
                self.host
                    .sync_filter(&ruleset(&self.state))
                    .map_err(EngineError::from)
            })
        {
            self.rollback();
            return Err(e);
        }
        match self.store.save(&self.before, &self.state) {
            Ok(()) => {
                if names_changed && let Err(e) = self.store.bump_names_generation() {
                    // The resolver answers from the old names until the
                    // next change; the kernel's map is already current.
                    tracing::warn!(error = %e, "telling the resolver of new names");
                }
                Ok(())
            }
            Err(e) => {
                self.rollback();
                Err(e.into())
            }
        }
    }

    /// Takes back every kernel change of this command, newest first.
    pub fn rollback(&mut self) {
        while let Some(undo) = self.undo.pop() {
            undo.apply(self.dp.as_mut(), self.host.as_mut(), self.cluster.as_mut());
        }
        // The filter table is derived from the networks and the cluster:
        // put back the old one if this command changed them (commit may
        // have applied the new one).
        if self.filter_changed() {
            let _ = self.host.sync_filter(&ruleset(&self.before));
        }
        // Namespaces marked pending are gone again (undone above).
        if !self.marked_netns.is_empty() {
            let mut disk = self.before.clone();
            for name in self.marked_netns.drain(..) {
                disk.pending_netns.remove(&name);
            }
            if self.store.save(&self.before, &disk).is_ok() {
                self.before = disk;
            }
        }
        self.state = self.before.clone();
    }

    /// Records in the store, now rather than at commit, that namespace
    /// `name` is about to be created: a crash before the commit then
    /// leaves a namespace known to be ours, which reconcile removes.
    fn mark_pending_netns(&mut self, name: &str) -> Result<(), EngineError> {
        let mut disk = self.before.clone();
        if disk.pending_netns.insert(name.to_owned()) {
            self.store.save(&self.before, &disk)?;
            self.before = disk;
            self.marked_netns.push(name.to_owned());
        }
        self.state.pending_netns.insert(name.to_owned());
        Ok(())
    }

    /// The state as this command has changed it so far.
    pub fn state(&self) -> &Snapshot {
        &self.state
    }

    /// The dataplane (for what `status` and `stats` show).
    pub fn dataplane(&self) -> &dyn Datapath {
        self.dp.as_ref()
    }

    /// True when `process` is alive (and its PID not reused).
    pub fn is_running(&self, process: Option<ProcessRef>) -> bool {
        self.host.is_running(process)
    }

    /// Finds a network by name, full ID or unique ID prefix.
    pub fn network(&self, key: &str) -> Result<&NetworkRecord, EngineError> {
        self.state
            .find_network(key)
            .ok_or_else(|| EngineError::NoSuchNetwork(key.to_owned()))
    }

    /// Finds a container by name or unique ID prefix.
    pub fn container(&self, key: &str) -> Result<&ContainerRecord, EngineError> {
        self.state
            .find_container(key)
            .ok_or_else(|| EngineError::NoSuchContainer(key.to_owned()))
    }

    /// True when the inputs of the filter table and the guards (networks,
    /// the underlay address, the cluster store) differ from the committed
    /// ones.
    fn filter_changed(&self) -> bool {
        ruleset(&self.state) != ruleset(&self.before)
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
}

/// The NAT and filter table `state` calls for.
fn ruleset(state: &Snapshot) -> Ruleset {
    Ruleset {
        networks: state
            .networks
            .values()
            .map(|n| FilteredNetwork {
                name: n.name.clone(),
                subnet: n.subnet,
                internal: n.internal,
            })
            .collect(),
        tunnel_ports: vec![overlay_common::VXLAN_PORT],
        guarded: underlay::guards(state).into_iter().map(|g| g.0).collect(),
        published: state
            .containers
            .values()
            .flat_map(|c| c.endpoints.iter().map(move |e| (c, e)))
            .filter(|(_, e)| e.conflict.is_none())
            .filter_map(|(c, e)| {
                let net = state.networks.get(&e.network_id)?;
                Some(e.published.iter().map(move |p| Published {
                    proto: match p.proto {
                        crate::model::Proto::Tcp => "tcp",
                        crate::model::Proto::Udp => "udp",
                    },
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    dest: std::net::SocketAddrV4::new(e.ip, p.port),
                    what: format!("{p} to {} on {}", c.name, net.name),
                }))
            })
            .flatten()
            .collect(),
    }
}
