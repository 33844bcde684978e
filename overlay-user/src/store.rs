//! The embedded, crash-safe state store (redb: ACID, copy-on-write B-trees,
//! fsync on commit). Every command opens the database exclusively for its
//! whole run (the file lock serialises concurrent commands), loads a
//! [`Snapshot`], changes it, and writes the difference in one transaction.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::model::Snapshot;

/// key -> JSON record. Keys: `network/<id>`, `container/<name>`,
/// `remote/<vni>/<ip>`, `peer/<ip>/<vni>`, `host`, `meta/schema`, and in
/// cluster mode `cluster`, `learned/<network id>/<ip>`, `cluster-host/<ip>`
/// (a cache of the cluster store, so forwarding state survives restarts
/// while etcd is unreachable), `cluster-down/<ip>` (since when a host with
/// claims is down), `ipam-pool/<id>`, `plugin-endpoint/<docker id>` and
/// `docker-binding/<docker id>` (what Docker was given through the plugin), `rejected/<key>` and `rejected-count`
/// (cluster records skipped in the last view), `pending-netns/<name>` (a
/// namespace being created).
const OBJECTS: TableDefinition<'_, &str, &str> = TableDefinition::new("objects");
/// Version of the key layout and records; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Failure of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path} is busy (another overlay command holds it)")]
    Busy { path: PathBuf },
    #[error("opening state store {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("state store transaction")]
    Txn(#[from] redb::TransactionError),
    #[error("state store table")]
    Table(#[from] redb::TableError),
    #[error("state store access")]
    Access(#[from] redb::StorageError),
    #[error("state store commit")]
    Commit(#[from] redb::CommitError),
    #[error("state store record {key}")]
    Record {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("state store schema {found} is not the supported {SCHEMA_VERSION}")]
    Schema { found: String },
    #[error("creating {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The store's key layout: one JSON object per record.
mod layout {
    use super::*;

    pub(super) fn to_objects(snap: &Snapshot) -> Result<BTreeMap<String, String>, StoreError> {
        fn json<T: Serialize>(key: &str, v: &T) -> Result<String, StoreError> {
            serde_json::to_string(v).map_err(|source| StoreError::Record {
                key: key.to_owned(),
                source,
            })
        }
        let mut out = BTreeMap::new();
        out.insert("meta/schema".to_owned(), SCHEMA_VERSION.to_string());
        for (id, n) in &snap.networks {
            let key = format!("network/{id}");
            out.insert(key.clone(), json(&key, n)?);
        }
        for (name, c) in &snap.containers {
            let key = format!("container/{name}");
            out.insert(key.clone(), json(&key, c)?);
        }
        for (k, r) in &snap.remotes {
            let key = format!("remote/{k}");
            out.insert(key.clone(), json(&key, r)?);
        }
        for (ip, net) in &snap.peers {
            out.insert(format!("peer/{ip}/{net}"), String::new());
        }
        if let Some(h) = &snap.host {
            out.insert("host".to_owned(), json("host", h)?);
        }
        if let Some(c) = &snap.cluster {
            out.insert("cluster".to_owned(), json("cluster", c)?);
        }
        for (k, e) in &snap.learned {
            let key = format!("learned/{k}");
            out.insert(key.clone(), json(&key, e)?);
        }
        for (ip, name) in &snap.cluster_hosts {
            out.insert(format!("cluster-host/{ip}"), name.clone());
        }
        for (ip, since) in &snap.cluster_down_since {
            out.insert(format!("cluster-down/{ip}"), since.to_string());
        }
        for (id, pool) in &snap.ipam_pools {
            let key = format!("ipam-pool/{id}");
            out.insert(key.clone(), json(&key, pool)?);
        }
        for (id, ep) in &snap.plugin_endpoints {
            let key = format!("plugin-endpoint/{id}");
            out.insert(key.clone(), json(&key, ep)?);
        }
        for (docker, net) in &snap.docker_bindings {
            out.insert(format!("docker-binding/{docker}"), net.clone());
        }
        for (key, why) in &snap.rejected {
            out.insert(format!("rejected/{key}"), why.clone());
        }
        if snap.rejected_count > 0 {
            out.insert("rejected-count".to_owned(), snap.rejected_count.to_string());
        }
        for name in &snap.pending_netns {
            out.insert(format!("pending-netns/{name}"), String::new());
        }
        Ok(out)
    }

    pub(super) fn from_objects(objects: &BTreeMap<String, String>) -> Result<Snapshot, StoreError> {
        fn parse<T: for<'de> Deserialize<'de>>(key: &str, v: &str) -> Result<T, StoreError> {
            serde_json::from_str(v).map_err(|source| StoreError::Record {
                key: key.to_owned(),
                source,
            })
        }
        let mut snap = Snapshot::default();
        for (key, value) in objects {
            if key == "meta/schema" {
                if value != &SCHEMA_VERSION.to_string() {
                    return Err(StoreError::Schema {
                        found: value.clone(),
                    });
                }
            } else if let Some(id) = key.strip_prefix("network/") {
                snap.networks.insert(id.to_owned(), parse(key, value)?);
            } else if let Some(name) = key.strip_prefix("container/") {
                snap.containers.insert(name.to_owned(), parse(key, value)?);
            } else if let Some(k) = key.strip_prefix("remote/") {
                snap.remotes.insert(k.to_owned(), parse(key, value)?);
            } else if let Some(rest) = key.strip_prefix("peer/")
                && let Some((ip, net)) = rest.split_once('/')
                && let Ok(ip) = ip.parse()
            {
                snap.peers.insert((ip, net.to_owned()));
            } else if key == "host" {
                snap.host = Some(parse(key, value)?);
            } else if key == "cluster" {
                snap.cluster = Some(parse(key, value)?);
            } else if let Some(k) = key.strip_prefix("learned/") {
                snap.learned.insert(k.to_owned(), parse(key, value)?);
            } else if let Some(ip) = key.strip_prefix("cluster-host/")
                && let Ok(ip) = ip.parse()
            {
                snap.cluster_hosts.insert(ip, value.clone());
            } else if let Some(ip) = key.strip_prefix("cluster-down/")
                && let Ok(ip) = ip.parse()
            {
                snap.cluster_down_since
                    .insert(ip, value.parse().unwrap_or_default());
            } else if let Some(id) = key.strip_prefix("ipam-pool/") {
                snap.ipam_pools.insert(id.to_owned(), parse(key, value)?);
            } else if let Some(id) = key.strip_prefix("plugin-endpoint/") {
                snap.plugin_endpoints
                    .insert(id.to_owned(), parse(key, value)?);
            } else if let Some(id) = key.strip_prefix("docker-binding/") {
                snap.docker_bindings.insert(id.to_owned(), value.clone());
            } else if let Some(k) = key.strip_prefix("rejected/") {
                snap.rejected.insert(k.to_owned(), value.clone());
            } else if key == "rejected-count" {
                snap.rejected_count = value.parse().unwrap_or_default();
            } else if let Some(name) = key.strip_prefix("pending-netns/") {
                snap.pending_netns.insert(name.to_owned());
            }
        }
        Ok(snap)
    }
}

/// The store's file in its directory.
pub const FILE_NAME: &str = "store.redb";

/// A counter in the store's directory, raised by every commit that changes
/// what containers resolve: the resolver reads the state again when it
/// moves. (The store file's own times change with every open, reads too.)
pub const NAMES_GENERATION_FILE: &str = "names.generation";

/// The names generation in `dir` (0 before the first change).
pub fn names_generation(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join(NAMES_GENERATION_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The open database; dropping it releases the lock.
pub struct Store {
    db: Database,
    dir: std::path::PathBuf,
}

impl Store {
    /// Opens (creating) `dir/store.redb`, waiting up to `wait` while
    /// another command holds it.
    pub fn open(dir: &Path, wait: Duration) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let deadline = Instant::now() + wait;
        loop {
            match Database::create(&path) {
                Ok(db) => {
                    return Ok(Self {
                        db,
                        dir: dir.to_path_buf(),
                    });
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                    return Err(StoreError::Busy { path });
                }
                Err(source) => return Err(StoreError::Open { path, source }),
            }
        }
    }

    /// Raises the names generation (while the store is held, so two
    /// commands never raise it to the same value).
    pub fn bump_names_generation(&self) -> std::io::Result<()> {
        let next = names_generation(&self.dir) + 1;
        std::fs::write(self.dir.join(NAMES_GENERATION_FILE), format!("{next}\n"))
    }

    /// Everything in the store.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(OBJECTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Snapshot::default()),
            Err(e) => return Err(e.into()),
        };
        let mut objects = BTreeMap::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            objects.insert(k.value().to_owned(), v.value().to_owned());
        }
        layout::from_objects(&objects)
    }

    /// Writes the difference between `before` and `after` in one durable
    /// transaction: all of it lands, or none.
    pub fn save(&self, before: &Snapshot, after: &Snapshot) -> Result<(), StoreError> {
        let old = layout::to_objects(before)?;
        let new = layout::to_objects(after)?;
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(OBJECTS)?;
            for key in old.keys().filter(|k| !new.contains_key(*k)) {
                table.remove(key.as_str())?;
            }
            for (key, value) in &new {
                if old.get(key) != Some(value) {
                    table.insert(key.as_str(), value.as_str())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::model::{
        AttachedMode, ClusterRecord, DecapRequest, Driver, HostRecord, LearnedEndpoint, MacAddr,
        NetworkRecord,
    };

    fn sample() -> Snapshot {
        let mut snap = Snapshot::default();
        snap.networks.insert(
            "n1".into(),
            NetworkRecord {
                id: "n1".into(),
                name: "front".into(),
                driver: Driver::Overlay,
                subnet: "10.0.0.0/24".parse().expect("subnet"),
                gateway: "10.0.0.1".parse().expect("gw"),
                ip_range: None,
                vni: 4096,
                internal: false,
                mtu: 1450,
                labels: BTreeMap::from([("team".into(), "a".into())]),
                created: "2026-01-01T00:00:00Z".into(),
                docker: false,
                docker_name: None,
            },
        );
        snap.peers
            .insert(("192.0.2.2".parse().expect("ip"), "n1".into()));
        snap.cluster = Some(ClusterRecord {
            endpoints: vec!["192.0.2.9:2379".into()],
            lease: 7,
            ..ClusterRecord::default()
        });
        snap.learned.insert(
            "n1/10.0.0.3".into(),
            LearnedEndpoint {
                network_id: "n1".into(),
                ip: "10.0.0.3".parse().expect("ip"),
                mac: MacAddr::from_ipv4("10.0.0.3".parse().expect("ip")),
                host: "192.0.2.3".parse().expect("ip"),
                container: "web".into(),
                endpoint_id: "e1".into(),
                aliases: Vec::new(),
            },
        );
        snap.cluster_hosts
            .insert("192.0.2.3".parse().expect("ip"), "h3".into());
        snap.host = Some(HostRecord {
            iface: "eth0".into(),
            underlay_ip: Ipv4Addr::new(192, 0, 2, 1),
            decap: AttachedMode::Tcx,
            requested: Some(DecapRequest::Auto),
            decap_reason: Some("veth".into()),
            mtu: 1400,
        });
        snap
    }

    #[test]
    fn round_trips_and_deletes() {
        let dir = std::env::temp_dir().join(format!("ovl-store-{}", crate::model::ids::new_id()));
        {
            let store = Store::open(&dir, Duration::ZERO).expect("open");
            assert_eq!(store.load().expect("load"), Snapshot::default());
            let snap = sample();
            store.save(&Snapshot::default(), &snap).expect("save");
            assert_eq!(store.load().expect("load"), snap);
            store.save(&snap, &Snapshot::default()).expect("delete");
            assert_eq!(store.load().expect("load"), Snapshot::default());
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn second_open_is_refused_while_held() {
        let dir = std::env::temp_dir().join(format!("ovl-store-{}", crate::model::ids::new_id()));
        let first = Store::open(&dir, Duration::ZERO).expect("open");
        let second = Store::open(&dir, Duration::from_millis(50));
        assert!(
            matches!(second, Err(StoreError::Busy { .. })),
            "held store is busy"
        );
        drop(first);
        Store::open(&dir, Duration::ZERO).expect("free again");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
