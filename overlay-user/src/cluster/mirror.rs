//! A local copy of the cluster store's prefix, kept current by a watch.

use std::collections::BTreeMap;

use super::{PREFIX, parse};
use crate::model::{Claim, HostInfo, NetworkRecord};

/// A claim as stored, with the revision it was last written at (so a
/// cleanup deletes exactly the version it saw, never a newer claim).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredClaim {
    pub claim: Claim,
    pub mod_revision: i64,
    pub lease: i64,
}

/// Everything under [`PREFIX`] at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub networks: Vec<NetworkRecord>,
    pub claims: Vec<StoredClaim>,
    pub hosts: Vec<HostInfo>,
    /// Keys whose value this version cannot read (not JSON of the record
    /// its place calls for).
    pub unreadable: Vec<String>,
}

/// A key's value and metadata, as a watch mirror holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) value: Vec<u8>,
    pub(crate) mod_revision: i64,
    pub(crate) lease: i64,
}

/// A local copy of the prefix, kept current by a watch: list once, then
/// apply every event from the listed revision on.
#[derive(Clone, Debug, Default)]
pub struct Mirror {
    pub(crate) entries: BTreeMap<String, Entry>,
    /// Revision the mirror reflects.
    pub revision: i64,
}

impl Mirror {
    /// The records in the mirror; unparsable ones are named in
    /// [`ClusterView::unreadable`].
    pub fn view(&self) -> ClusterView {
        let mut view = ClusterView::default();
        for (key, e) in &self.entries {
            let Some(rest) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let ok = if rest.starts_with("networks/") {
                parse(key, &e.value).map(|n| view.networks.push(n)).is_ok()
            } else if rest.starts_with("addresses/") {
                parse(key, &e.value)
                    .map(|claim| {
                        view.claims.push(StoredClaim {
                            claim,
                            mod_revision: e.mod_revision,
                            lease: e.lease,
                        });
                    })
                    .is_ok()
            } else if rest.starts_with("hosts/") {
                parse(key, &e.value).map(|h| view.hosts.push(h)).is_ok()
            } else {
                true
            };
            if !ok {
                view.unreadable.push(key.clone());
            }
        }
        view
    }
}
