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
    model::{
        Claim, Driver, LearnedEndpoint, NetworkRecord, RuleError, ipam, rules,
        state::{REJECTED_SAMPLES, learned_key},
    },
};

/// Records of one view that were skipped, and why (a sample of them).
#[derive(Default)]
struct Rejected {
    count: usize,
    samples: BTreeMap<String, String>,
}

impl Rejected {
    fn add(&mut self, key: String, why: String) {
        self.count += 1;
        if self.samples.len() < REJECTED_SAMPLES {
            self.samples.insert(key, why);
        }
    }
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
    /// Hosts down longer than the claim grace: the agent releases their
    /// claims.
    pub hosts_expired: Vec<Ipv4Addr>,
    /// Problems that need an operator; named, never fatal.
    pub conflicts: Vec<String>,
    /// Records skipped in this view that were not skipped in the last one:
    /// (cluster-store key, why).
    pub newly_rejected: Vec<(String, String)>,
    /// Records skipped in this view, in all.
    pub rejected: usize,
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
    ///
    /// Every record passes the rules CLI input passes before it touches
    /// the host or the maps; one that does not is skipped and named in
    /// [`ClusterSync::rejected`] (and in `status`), never fatal.
    pub fn apply_cluster_view(&mut self, view: &ClusterView) -> Result<ClusterSync, EngineError> {
        let self_ip = self
            .state
            .advertise_ip()
            .ok_or(EngineError::NoAdvertiseAddress)?;
        let mut sync = ClusterSync::default();
        let mut rejected = Rejected::default();
        for key in &view.unreadable {
            rejected.add(key.clone(), "not a record this version can read".into());
        }
        self.sync_networks(view, self_ip, &mut sync, &mut rejected)?;
        self.sync_endpoints(view, self_ip, &mut sync, &mut rejected)?;
        self.state.cluster_hosts = view
            .hosts
            .iter()
            .filter(|h| {
                let ok = rules::check_host_address(h.underlay_ip)
                    .and_then(|()| rules::check_host_name(&h.name));
                if let Err(e) = &ok {
                    rejected.add(format!("hosts/{}", h.underlay_ip), e.to_string());
                }
                ok.is_ok()
            })
            .map(|h| (h.underlay_ip, h.name.clone()))
            .collect();
        self.own_claims(view, self_ip, &mut sync);
        self.track_down_hosts(view, self_ip, &mut sync);
        sync.rejected = rejected.count;
        sync.newly_rejected = rejected
            .samples
            .iter()
            .filter(|(k, _)| !self.state.rejected.contains_key(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.state.rejected = rejected.samples;
        self.state.rejected_count = rejected.count as u64;
        if sync.endpoints_removed > 0 {
            self.release_unused_hosts();
        }
        Ok(sync)
    }

    /// Addresses no network may cover: the cluster store's and every
    /// host's underlay address (a gateway there would cut hosts off).
    fn underlay_addresses(&self, view: &ClusterView, self_ip: Ipv4Addr) -> BTreeSet<Ipv4Addr> {
        let mut out: BTreeSet<Ipv4Addr> = view.hosts.iter().map(|h| h.underlay_ip).collect();
        out.extend(view.claims.iter().map(|c| c.claim.host));
        out.insert(self_ip);
        if let Some(c) = &self.state.cluster {
            out.extend(
                super::underlay::cluster_guards(&c.endpoints)
                    .into_iter()
                    .map(|g| *g.0.ip()),
            );
        }
        out
    }

    /// Global networks: add the new valid ones, remove the gone (unless in
    /// use here). A network whose record turned unreadable is kept as it
    /// was (a record that fails the rules never replaces a known one).
    fn sync_networks(
        &mut self,
        view: &ClusterView,
        self_ip: Ipv4Addr,
        sync: &mut ClusterSync,
        rejected: &mut Rejected,
    ) -> Result<(), EngineError> {
        let mut in_view: BTreeSet<&str> = view.networks.iter().map(|n| n.id.as_str()).collect();
        in_view.extend(view.unreadable.iter().filter_map(|k| {
            k.strip_prefix(crate::cluster::PREFIX)?
                .strip_prefix("networks/")
        }));
        let underlay = self.underlay_addresses(view, self_ip);
        for n in &view.networks {
            if self.state.networks.contains_key(&n.id) {
                continue;
            }
            let valid = rules::check_network(n).and_then(|()| {
                if n.driver != Driver::Overlay {
                    return Err(RuleError::NotOverlay(n.name.clone()));
                }
                match underlay.iter().find(|ip| n.subnet.contains(*ip)) {
                    Some(ip) => Err(RuleError::AddressOutside(*ip, n.subnet)),
                    None => Ok(()),
                }
            });
            if let Err(e) = valid {
                let why = match e {
                    RuleError::AddressOutside(ip, _) => {
                        format!("subnet {} covers the underlay address {ip}", n.subnet)
                    }
                    other => other.to_string(),
                };
                rejected.add(format!("networks/{}", n.id), why);
                continue;
            }
            if let Some(l) =
                self.state.networks.values().find(|l| {
                    l.name == n.name || l.vni == n.vni || ipam::overlaps(l.subnet, n.subnet)
                })
            {
                let conflict = format!(
                    "global network {} ({}, VNI {}) clashes with network {} ({}, VNI {}) here",
                    n.name, n.subnet, n.vni, l.name, l.subnet, l.vni
                );
                rejected.add(format!("networks/{}", n.id), conflict.clone());
                sync.conflicts.push(conflict);
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

    /// Other hosts' valid endpoints become remote endpoints, their hosts
    /// peers.
    fn sync_endpoints(
        &mut self,
        view: &ClusterView,
        self_ip: Ipv4Addr,
        sync: &mut ClusterSync,
        rejected: &mut Rejected,
    ) -> Result<(), EngineError> {
        let local: BTreeMap<(&str, Ipv4Addr), &str> = self
            .state
            .endpoints()
            .map(|(_, e)| ((e.network_id.as_str(), e.ip), e.id.as_str()))
            .collect();
        let mut want = BTreeMap::new();
        // Local endpoint id -> who holds its address in the store.
        let mut taken: BTreeMap<String, String> = BTreeMap::new();
        for sc in &view.claims {
            let c = &sc.claim;
            let Some(net) = self
                .state
                .networks
                .get(&c.network_id)
                .filter(|n| self.state.is_global(n))
            else {
                continue;
            };
            if c.host == self_ip {
                continue;
            }
            if let Err(e) = rules::check_claim(c, net) {
                rejected.add(
                    format!("addresses/{}/{}", c.network_id, c.ip),
                    e.to_string(),
                );
                continue;
            }
            // The store decides, the same way on every host: the claim
            // wins, and the endpoint here steps aside (see conflicts.rs).
            if let Some(id) = local.get(&(c.network_id.as_str(), c.ip)) {
                taken.insert((*id).to_owned(), format!("{} on {}", c.container, c.host));
            }
            want.insert(learned_key(&c.network_id, c.ip), c.clone());
        }
        // Out of the maps before the holder's route goes in.
        self.mark_conflicts(&taken, sync)?;
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
        self.resolve_conflicts(view, self_ip)?;
        Ok(())
    }

    /// This host's own claims: exactly its endpoints on global networks.
    fn own_claims(&self, view: &ClusterView, self_ip: Ipv4Addr, sync: &mut ClusterSync) {
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
            // A claim on a lease is from before claims outlived leases:
            // written again without one.
            if global && held.is_none_or(|sc| sc.lease != 0) {
                sync.claims_missing.push(Claim {
                    network_id: e.network_id.clone(),
                    ip: e.ip,
                    mac: e.mac,
                    host: self_ip,
                    container: container.to_owned(),
                    endpoint_id: e.id.clone(),
                    aliases: e.aliases.clone(),
                });
            }
        }
        // Docker's endpoints own theirs from CreateEndpoint on (before Join),
        // and this IPAM's addresses from RequestAddress on.
        let pending: BTreeSet<String> = self
            .state
            .ipam_pools
            .values()
            .flat_map(|p| {
                p.addresses
                    .iter()
                    .map(|ip| super::plugin::pending_endpoint_id(*ip))
            })
            .collect();
        let owned: BTreeSet<&str> = self
            .state
            .endpoints()
            .map(|(_, e)| e.id.as_str())
            .chain(self.state.plugin_endpoints.keys().map(String::as_str))
            .chain(pending.iter().map(String::as_str))
            .collect();
        sync.claims_stale = ours
            .iter()
            .filter(|(id, _)| !owned.contains(**id))
            .map(|(_, sc)| (*sc).clone())
            .collect();
    }
}
