//! The cluster store: state that hosts share through etcd (global-scope
//! networks, their address allocations, and which hosts are alive).
//!
//! Layout (prefix `/overlay/v1/`, versioned with the record formats):
//! - `networks/<id>`            -> [`NetworkRecord`] JSON
//! - `names/<name>`             -> network id (one network per name)
//! - `vnis/<vni>`               -> network id (one network per VNI)
//! - `addresses/<id>/<ip>`      -> [`Claim`] JSON, on the owning host's lease
//! - `hosts/<underlay ip>`      -> [`HostInfo`] JSON, on the host's lease
//!
//! Uniqueness comes from etcd transactions that create a key only while it
//! does not exist (`create_revision == 0`): of two hosts claiming the same
//! name, VNI or address at once, exactly one succeeds. Claims and host keys
//! live on the host's lease, so a host that stops renewing it disappears
//! from every other host's view when the lease expires.

use std::{net::Ipv4Addr, time::Duration};

use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::{MacAddr, ipam, store::NetworkRecord};

/// Key prefix of this layout version.
pub const PREFIX: &str = "/overlay/v1/";

/// Failure of the cluster store.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster store unreachable at {endpoints}")]
    Unreachable {
        endpoints: String,
        #[source]
        source: etcd_client::Error,
    },
    #[error("cluster store request failed")]
    Request(#[from] etcd_client::Error),
    #[error("network with name {0} already exists in the cluster")]
    NameTaken(String),
    #[error("VNI {0} is already used in the cluster")]
    VniTaken(u32),
    #[error("address {0} is already in use in the cluster")]
    AddressTaken(Ipv4Addr),
    #[error("no free address left in network {0}")]
    Exhausted(String),
    #[error("corrupt record at {key}")]
    Record {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("starting the cluster client runtime")]
    Runtime(#[source] std::io::Error),
}

/// An address held by an endpoint on some host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// Underlay address of the host the endpoint lives on.
    pub host: Ipv4Addr,
    pub container: String,
    pub endpoint_id: String,
}

/// A live host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostInfo {
    pub underlay_ip: Ipv4Addr,
    pub name: String,
}

/// A connection to etcd, with a small runtime to drive it from the
/// synchronous engine.
pub struct ClusterStore {
    rt: tokio::runtime::Runtime,
    client: Client,
    lease: Option<i64>,
}

fn key_network(id: &str) -> String {
    format!("{PREFIX}networks/{id}")
}

fn key_address(net: &str, ip: Ipv4Addr) -> String {
    format!("{PREFIX}addresses/{net}/{ip}")
}

fn parse<T: for<'de> Deserialize<'de>>(key: &str, value: &[u8]) -> Result<T, ClusterError> {
    serde_json::from_slice(value).map_err(|source| ClusterError::Record {
        key: key.to_owned(),
        source,
    })
}

fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialize")
}

impl ClusterStore {
    /// Connects to `endpoints` (`host:port`), failing after `timeout`.
    pub fn connect(
        endpoints: &[String],
        user: Option<(String, String)>,
        timeout: Duration,
    ) -> Result<Self, ClusterError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClusterError::Runtime)?;
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout);
        if let Some((name, password)) = user {
            opts = opts.with_user(name, password);
        }
        let mut client = rt
            .block_on(Client::connect(endpoints, Some(opts)))
            .map_err(|source| ClusterError::Unreachable {
                endpoints: endpoints.join(","),
                source,
            })?;
        // Connecting is lazy: make one request so "unreachable" shows here.
        rt.block_on(client.get(
            format!("{PREFIX}hosts/"),
            Some(GetOptions::new().with_count_only()),
        ))
        .map_err(|source| ClusterError::Unreachable {
            endpoints: endpoints.join(","),
            source,
        })?;
        Ok(Self {
            rt,
            client,
            lease: None,
        })
    }

    /// Registers this host under a fresh lease of `ttl` seconds and returns
    /// the lease; keep it alive with [`ClusterStore::keep_alive`].
    pub fn register_host(&mut self, host: &HostInfo, ttl: i64) -> Result<i64, ClusterError> {
        let lease = self.rt.block_on(self.client.lease_grant(ttl, None))?.id();
        let key = format!("{PREFIX}hosts/{}", host.underlay_ip);
        self.rt.block_on(self.client.put(
            key,
            json(host),
            Some(PutOptions::new().with_lease(lease)),
        ))?;
        self.lease = Some(lease);
        Ok(lease)
    }

    /// Renews this host's lease once.
    pub fn keep_alive(&mut self) -> Result<(), ClusterError> {
        let Some(lease) = self.lease else {
            return Ok(());
        };
        let client = &mut self.client;
        self.rt.block_on(async {
            let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            let _ = stream.message().await?;
            Ok::<(), etcd_client::Error>(())
        })?;
        Ok(())
    }

    /// Live hosts.
    pub fn hosts(&mut self) -> Result<Vec<HostInfo>, ClusterError> {
        self.list(&format!("{PREFIX}hosts/"))
    }

    fn list<T: for<'de> Deserialize<'de>>(&mut self, prefix: &str) -> Result<Vec<T>, ClusterError> {
        let resp = self.rt.block_on(
            self.client
                .get(prefix, Some(GetOptions::new().with_prefix())),
        )?;
        resp.kvs()
            .iter()
            .map(|kv| parse(&String::from_utf8_lossy(kv.key()), kv.value()))
            .collect()
    }

    /// Creates a global network; its name and VNI must be free cluster-wide.
    pub fn create_network(&mut self, net: &NetworkRecord) -> Result<(), ClusterError> {
        let name_key = format!("{PREFIX}names/{}", net.name);
        let vni_key = format!("{PREFIX}vnis/{}", net.vni);
        let txn = Txn::new()
            .when([
                Compare::create_revision(name_key.clone(), CompareOp::Equal, 0),
                Compare::create_revision(vni_key.clone(), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(name_key.clone(), net.id.clone(), None),
                TxnOp::put(vni_key, net.id.clone(), None),
                TxnOp::put(key_network(&net.id), json(net), None),
            ]);
        if self.rt.block_on(self.client.txn(txn))?.succeeded() {
            return Ok(());
        }
        let taken = self.rt.block_on(self.client.get(name_key, None))?;
        if taken.kvs().is_empty() {
            Err(ClusterError::VniTaken(net.vni))
        } else {
            Err(ClusterError::NameTaken(net.name.clone()))
        }
    }

    /// Every global network.
    pub fn networks(&mut self) -> Result<Vec<NetworkRecord>, ClusterError> {
        self.list(&format!("{PREFIX}networks/"))
    }

    /// Removes a global network with its name and VNI (its address claims
    /// must be gone).
    pub fn remove_network(&mut self, net: &NetworkRecord) -> Result<(), ClusterError> {
        let txn = Txn::new().and_then([
            TxnOp::delete(format!("{PREFIX}names/{}", net.name), None),
            TxnOp::delete(format!("{PREFIX}vnis/{}", net.vni), None),
            TxnOp::delete(key_network(&net.id), None),
        ]);
        self.rt.block_on(self.client.txn(txn))?;
        Ok(())
    }

    /// Address claims of network `net_id`, from every host.
    pub fn claims(&mut self, net_id: &str) -> Result<Vec<Claim>, ClusterError> {
        self.list(&format!("{PREFIX}addresses/{net_id}/"))
    }

    /// Claims `want`, or the lowest free address, for an endpoint of this
    /// host (on its lease). Retries when another host wins a race.
    pub fn claim_address(
        &mut self,
        net: &NetworkRecord,
        want: Option<Ipv4Addr>,
        claim: impl Fn(Ipv4Addr) -> Claim,
    ) -> Result<Ipv4Addr, ClusterError> {
        let lease = self.lease.unwrap_or(0);
        for _ in 0..64 {
            let used = self.claims(&net.id)?.into_iter().map(|c| c.ip).collect();
            let ip = match want {
                Some(ip) => ip,
                None => ipam::allocate(net.subnet, net.ip_range, net.gateway, &used)
                    .ok_or_else(|| ClusterError::Exhausted(net.name.clone()))?,
            };
            let key = key_address(&net.id, ip);
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key,
                    json(&claim(ip)),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            if self.rt.block_on(self.client.txn(txn))?.succeeded() {
                return Ok(ip);
            }
            if want.is_some() {
                return Err(ClusterError::AddressTaken(ip));
            }
        }
        Err(ClusterError::Exhausted(net.name.clone()))
    }

    /// Releases an address claim.
    pub fn release_address(&mut self, net_id: &str, ip: Ipv4Addr) -> Result<(), ClusterError> {
        self.rt
            .block_on(self.client.delete(key_address(net_id, ip), None))?;
        Ok(())
    }
}
