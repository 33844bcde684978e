//! Address claims across hosts that come and go: which hosts are down (and
//! for how long), and endpoints whose address the cluster store gives to
//! another host.
//!
//! Claims outlive their host's registration, so a host cut off from the
//! store keeps its addresses. They are released only by `overlay host rm`
//! or, once a host has been down for the claim grace, by the live hosts.
//! If a host that lost its claims that way comes back and finds an
//! address of one of its endpoints claimed by another, every host resolves
//! it the same way: the claim wins. Here the endpoint steps aside (out of
//! the maps, its host route gone, the holder's route in), stays marked
//! (`status`, and commands on its container fail), and comes back once
//! its own claim succeeds again.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use super::{ClusterSync, Engine, EngineError, undo::Undo};
use crate::{
    cluster::ClusterView,
    dataplane::LocalEndpoint,
    model::{ContainerRecord, EndpointRecord},
};

/// Now, in Unix seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A cluster host as this host knows it (`overlay host ls`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterHost {
    pub ip: Ipv4Addr,
    /// Registered name; `None` for a host that is down.
    pub name: Option<String>,
    /// Seconds it has been down (seen from here); `None` while registered.
    pub down_for: Option<u64>,
    /// Endpoints it holds addresses for (this host's own included).
    pub endpoints: usize,
}

impl Engine {
    /// Records which hosts holding claims are down, and since when; names
    /// those down longer than the claim grace in `sync.hosts_expired`.
    pub(super) fn track_down_hosts(
        &mut self,
        view: &ClusterView,
        self_ip: Ipv4Addr,
        sync: &mut ClusterSync,
    ) {
        let now = unix_now();
        let grace = self
            .state
            .cluster
            .as_ref()
            .map_or(u64::MAX, |c| c.claim_grace);
        let live: BTreeSet<Ipv4Addr> = view.hosts.iter().map(|h| h.underlay_ip).collect();
        let down: BTreeSet<Ipv4Addr> = view
            .claims
            .iter()
            .map(|sc| sc.claim.host)
            .filter(|h| *h != self_ip && !live.contains(h))
            .collect();
        self.state
            .cluster_down_since
            .retain(|h, _| down.contains(h));
        for h in down {
            let since = *self.state.cluster_down_since.entry(h).or_insert(now);
            if now.saturating_sub(since) >= grace {
                sync.hosts_expired.push(h);
            }
        }
    }

    /// Marks the endpoints whose address `taken` names a holder for (by
    /// endpoint id) and takes the newly marked ones out of the dataplane.
    pub(super) fn mark_conflicts(
        &mut self,
        taken: &BTreeMap<String, String>,
        sync: &mut ClusterSync,
    ) -> Result<(), EngineError> {
        let mut newly: Vec<(String, EndpointRecord)> = Vec::new();
        for c in self.state.containers.values_mut() {
            for ep in &mut c.endpoints {
                let Some(holder) = taken.get(&ep.id) else {
                    continue;
                };
                let new = ep.conflict.is_none();
                ep.conflict = Some(holder.clone());
                if new {
                    newly.push((c.name.clone(), ep.clone()));
                }
            }
        }
        for (container, ep) in newly {
            self.step_aside(&ep)?;
            let net = self
                .state
                .networks
                .get(&ep.network_id)
                .map_or("?", |n| n.name.as_str());
            sync.conflicts.push(format!(
                "{} of {container} on {net} is claimed by {}: taken out of the dataplane here",
                ep.ip,
                ep.conflict.as_deref().unwrap_or("?")
            ));
        }
        Ok(())
    }

    /// Brings back the marked endpoints whose own claim is in `view` now.
    pub(super) fn resolve_conflicts(
        &mut self,
        view: &ClusterView,
        self_ip: Ipv4Addr,
    ) -> Result<(), EngineError> {
        let ours: BTreeSet<&str> = view
            .claims
            .iter()
            .filter(|sc| sc.claim.host == self_ip)
            .map(|sc| sc.claim.endpoint_id.as_str())
            .collect();
        let mut back = Vec::new();
        for c in self.state.containers.values_mut() {
            for ep in &mut c.endpoints {
                if ep.conflict.is_some() && ours.contains(ep.id.as_str()) {
                    ep.conflict = None;
                    back.push(ep.clone());
                }
            }
        }
        for ep in back {
            self.program_endpoint_entry(&ep)?;
        }
        Ok(())
    }

    /// Takes an endpoint's entries (not its program, which then drops
    /// what the container sends) and host route out, undoably.
    fn step_aside(&mut self, ep: &EndpointRecord) -> Result<(), EngineError> {
        if let Some((ifindex, host_mac)) = self.host.link(&ep.host_ifname)? {
            self.remove_entries(ep, ifindex, host_mac, false)?;
        }
        self.host.remove_endpoint_route(ep.ip)?;
        Ok(())
    }

    /// Puts an endpoint's entries and host route back (its veth and
    /// program are still there).
    pub(super) fn program_endpoint_entry(
        &mut self,
        ep: &EndpointRecord,
    ) -> Result<(), EngineError> {
        let Some(net) = self.state.networks.get(&ep.network_id).cloned() else {
            return Ok(());
        };
        let Some((ifindex, host_mac)) = self.host.link(&ep.host_ifname)? else {
            // The veth is gone: reconcile recreates the endpoint.
            return Ok(());
        };
        self.remove_leftover_route(net.vni, ep.ip)?;
        self.dp.add_local_endpoint(&LocalEndpoint {
            vni: net.vni,
            ip: ep.ip,
            mac: ep.mac,
            host_ifindex: ifindex,
            host_mac,
        })?;
        self.undo.push(Undo::EndpointEntry(ifindex));
        self.host.endpoint_route(ep.ip, ep.mac, &ep.host_ifname)?;
        Ok(())
    }

    /// Refuses to act on a container one of whose addresses another host
    /// holds: it would act on a duplicate.
    pub fn check_no_conflict(&self, c: &ContainerRecord) -> Result<(), EngineError> {
        match c.endpoints.iter().find(|e| e.conflict.is_some()) {
            Some(ep) => Err(EngineError::AddressConflict {
                container: c.name.clone(),
                ip: ep.ip,
                network: self
                    .state
                    .networks
                    .get(&ep.network_id)
                    .map_or_else(|| ep.network_id.clone(), |n| n.name.clone()),
                holder: ep.conflict.clone().unwrap_or_default(),
            }),
            None => Ok(()),
        }
    }

    /// The cluster's hosts as this host knows them: the registered ones,
    /// and those that hold claims while down.
    pub fn cluster_hosts(&self) -> Vec<ClusterHost> {
        let now = unix_now();
        let mut endpoints: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
        for e in self.state.learned.values() {
            *endpoints.entry(e.host).or_default() += 1;
        }
        if let Some(me) = self.state.advertise_ip() {
            let mine = self
                .state
                .endpoints()
                .filter(|(_, e)| {
                    self.state
                        .networks
                        .get(&e.network_id)
                        .is_some_and(|n| self.state.is_global(n))
                })
                .count();
            *endpoints.entry(me).or_default() += mine;
        }
        let mut ips: BTreeSet<Ipv4Addr> = self.state.cluster_hosts.keys().copied().collect();
        ips.extend(self.state.cluster_down_since.keys());
        ips.into_iter()
            .map(|ip| ClusterHost {
                ip,
                name: self.state.cluster_hosts.get(&ip).cloned(),
                down_for: self
                    .state
                    .cluster_down_since
                    .get(&ip)
                    .filter(|_| !self.state.cluster_hosts.contains_key(&ip))
                    .map(|since| now.saturating_sub(*since)),
                endpoints: endpoints.get(&ip).copied().unwrap_or(0),
            })
            .collect()
    }

    /// `host rm`: releases the addresses a down host holds in the cluster
    /// store; refused while it is registered. Returns how many.
    pub fn remove_cluster_host(&mut self, ip: Ipv4Addr) -> Result<usize, EngineError> {
        if self.state.advertise_ip() == Some(ip) {
            return Err(EngineError::RemoveSelf(ip));
        }
        let released = self.cluster()?.release_host(ip)?;
        self.state.cluster_down_since.remove(&ip);
        Ok(released)
    }
}
