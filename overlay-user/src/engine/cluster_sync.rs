//! The cluster store's view applied to this host: global networks, other
//! hosts' endpoints and the peers they imply; and what this host must fix
//! in the store so that it lists this host's own endpoints exactly.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use super::{Engine, EngineError};
use crate::{
    cluster::{ClusterView, StoredClaim},
    dataplane::RemoteEndpoint,
    model::{Claim, LearnedEndpoint, NetworkRecord, ipam, state::learned_key},
};

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

impl Engine {
    /// Makes this host's cache of the cluster (global networks, other
    /// hosts' endpoints and the peers they imply) equal to `view`, and names
    /// what the agent must fix in etcd so that it lists this host's own
    /// endpoints exactly.
    pub fn apply_cluster_view(&mut self, view: &ClusterView) -> Result<ClusterSync, EngineError> {
        let self_ip = self
            .state
            .advertise_ip()
            .ok_or(EngineError::NoAdvertiseAddress)?;
        let mut sync = ClusterSync::default();
        self.sync_networks(view, &mut sync)?;
        self.sync_endpoints(view, self_ip, &mut sync)?;
        self.state.cluster_hosts = view
            .hosts
            .iter()
            .map(|h| (h.underlay_ip, h.name.clone()))
            .collect();
        self.own_claims(view, self_ip, &mut sync);
        Ok(sync)
    }

    /// Global networks: add the new, remove the gone (unless in use here).
    fn sync_networks(
        &mut self,
        view: &ClusterView,
        sync: &mut ClusterSync,
    ) -> Result<(), EngineError> {
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
            self.add_network_here(n)?;
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
            if !self.state.containers_on(&n.id).is_empty() {
                sync.conflicts.push(format!(
                    "network {} left the cluster store but containers here still use it",
                    n.name
                ));
                continue;
            }
            // Takes the network's routes and peers with it.
            self.remove_network_here(&n)?;
            sync.networks_removed.push(n.name);
        }
        Ok(())
    }

    /// Other hosts' endpoints become remote endpoints, their hosts peers.
    fn sync_endpoints(
        &mut self,
        view: &ClusterView,
        self_ip: Ipv4Addr,
        sync: &mut ClusterSync,
    ) -> Result<(), EngineError> {
        let local: BTreeSet<(&str, Ipv4Addr)> = self
            .state
            .endpoints()
            .map(|(_, e)| (e.network_id.as_str(), e.ip))
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
            if local.contains(&(c.network_id.as_str(), c.ip)) {
                sync.conflicts.push(format!(
                    "{} is claimed by {} on {} but used by an endpoint here",
                    c.ip, c.container, c.host
                ));
                continue;
            }
            want.insert(learned_key(&c.network_id, c.ip), c.clone());
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
        Ok(())
    }

    /// This host's own claims: exactly its endpoints on global networks.
    fn own_claims(&self, view: &ClusterView, self_ip: Ipv4Addr, sync: &mut ClusterSync) {
        let lease = self.state.cluster.as_ref().map_or(0, |c| c.lease);
        let ours: BTreeMap<&str, &StoredClaim> = view
            .claims
            .iter()
            .filter(|sc| sc.claim.host == self_ip)
            .map(|sc| (sc.claim.endpoint_id.as_str(), sc))
            .collect();
        for (container, e) in self.state.endpoints() {
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
                    container: container.to_owned(),
                    endpoint_id: e.id.clone(),
                });
            }
        }
        let owned: BTreeSet<&str> = self.state.endpoints().map(|(_, e)| e.id.as_str()).collect();
        sync.claims_stale = ours
            .iter()
            .filter(|(id, _)| !owned.contains(**id))
            .map(|(_, sc)| (*sc).clone())
            .collect();
    }
}
