//! The cluster store: state that hosts share through etcd (global-scope
//! networks, their address allocations, and which hosts are alive).
//!
//! Layout (prefix `/overlay/v1/`, versioned with the record formats):
//! - `networks/<id>`            -> [`NetworkRecord`](crate::model::NetworkRecord) JSON
//! - `names/<name>`             -> network id (one network per name)
//! - `vnis/<vni>`               -> network id (one network per VNI)
//! - `addresses/<id>/<ip>`      -> [`Claim`] JSON, naming the owning host
//! - `hosts/<underlay ip>`      -> [`HostInfo`](crate::model::HostInfo) JSON, on the host's lease
//!
//! Uniqueness comes from etcd transactions that create a key only while it
//! does not exist (`create_revision == 0`): of two hosts claiming the same
//! name, VNI or address at once, exactly one succeeds. A host's key lives
//! on its lease, so a host that stops renewing it shows as down when the
//! lease expires; its claims do not: an address stays claimed while its
//! container may exist, through any partition. Claims of a host that is
//! down are released only by `overlay host rm` or, after the claim grace,
//! by the live hosts ([`ClusterStore::release_host`], which re-checks that
//! the host is still down in the same transaction).

mod etcd;
mod mirror;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    time::Duration,
};

use etcd_client::{Certificate, Identity, TlsOptions};
use serde::{Deserialize, Serialize};

pub use self::{
    etcd::ClusterStore,
    mirror::{ClusterView, Mirror, StoredClaim},
};
use crate::model::{Claim, ClusterRecord};

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
    Request(#[source] etcd_client::Error),
    #[error("network with name {0} already exists in the cluster")]
    NameTaken(String),
    #[error("VNI {0} is already used in the cluster")]
    VniTaken(u32),
    #[error("address {0} is already in use in the cluster")]
    AddressTaken(Ipv4Addr),
    #[error("no free address left in network {0}")]
    Exhausted(String),
    #[error(
        "host {0} is registered (its agent runs): only a down host's addresses can be released"
    )]
    HostAlive(Ipv4Addr),
    #[error("this host's cluster lease {0} expired or was never granted: is the daemon running?")]
    NoLease(i64),
    #[error("the cluster store's watch was cancelled ({0}); resynchronising")]
    WatchLost(String),
    #[error("corrupt record at {key}")]
    Record {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("reading {path}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the cluster client runtime")]
    Runtime(#[source] std::io::Error),
}

/// How to reach etcd (no `Debug`: it holds the password).
#[derive(Clone)]
pub struct ClusterOptions {
    /// `host:port` each.
    pub endpoints: Vec<String>,
    pub user: Option<(String, String)>,
    /// PEM files: CA bundle, client certificate, client key.
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Per request and for connecting.
    pub timeout: Duration,
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, ClusterError> {
    std::fs::read(path).map_err(|source| ClusterError::File {
        path: path.to_path_buf(),
        source,
    })
}

impl ClusterOptions {
    /// The options a host's stored cluster configuration names.
    pub fn from_record(rec: &ClusterRecord, timeout: Duration) -> Result<Self, ClusterError> {
        let user = match (&rec.user, &rec.password_file) {
            (Some(user), Some(file)) => {
                let password = String::from_utf8_lossy(&read(file)?).trim_end().to_owned();
                Some((user.clone(), password))
            }
            (Some(user), None) => Some((user.clone(), String::new())),
            _ => None,
        };
        Ok(Self {
            endpoints: rec.endpoints.clone(),
            user,
            ca_file: rec.ca_file.clone(),
            cert_file: rec.cert_file.clone(),
            key_file: rec.key_file.clone(),
            timeout,
        })
    }

    pub(crate) fn tls(&self) -> Result<Option<TlsOptions>, ClusterError> {
        if self.ca_file.is_none() && self.cert_file.is_none() {
            return Ok(None);
        }
        let mut tls = TlsOptions::new();
        if let Some(ca) = &self.ca_file {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Some(tls))
    }
}

pub(crate) fn key_network(id: &str) -> String {
    format!("{PREFIX}networks/{id}")
}

pub(crate) fn key_address(net: &str, ip: Ipv4Addr) -> String {
    format!("{PREFIX}addresses/{net}/{ip}")
}

pub(crate) fn key_host(ip: Ipv4Addr) -> String {
    format!("{PREFIX}hosts/{ip}")
}

pub(crate) fn parse<T: for<'de> Deserialize<'de>>(
    key: &str,
    value: &[u8],
) -> Result<T, ClusterError> {
    serde_json::from_slice(value).map_err(|source| ClusterError::Record {
        key: key.to_owned(),
        source,
    })
}

pub(crate) fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("records serialize")
}

/// Key of `claim` in the store.
pub(crate) fn key_claim(claim: &Claim) -> String {
    key_address(&claim.network_id, claim.ip)
}
