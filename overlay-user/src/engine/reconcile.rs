//! Repairing drift: making the kernel match the store after a reboot, a
//! crash, or changes made behind this program's back.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use overlay_common::EndpointInfo;

use super::{ConnectOptions, Engine, EngineError};
use crate::{
    dataplane::{LocalEndpoint, Underlay},
    model::EndpointRecord,
};

/// What a reconcile pass repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Containers whose namespace vanished: records and addresses released.
    pub containers_gone: Vec<String>,
    /// Namespaces a crashed `run` left half-made: removed.
    pub half_made: Vec<String>,
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
    /// Routes to addresses no endpoint, static entry or cluster record
    /// has (a re-used VNI would inherit them).
    pub stale_routes: usize,
    /// Peers no static entry or cluster record allows.
    pub stale_peers: usize,
    /// Gateway addresses of networks the store does not know: removed.
    pub stale_gateways: Vec<Ipv4Addr>,
    /// Gateway addresses of known networks that were missing: added.
    pub gateways_restored: Vec<Ipv4Addr>,
    /// Containers whose default route was missing or through the wrong
    /// network.
    pub default_routes: Vec<String>,
    /// The underlay program was re-attached.
    pub underlay_reattached: bool,
    /// The names the endpoint program answers differed from the state.
    pub names_synced: bool,
}

impl Repairs {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// How many things the pass repaired.
    pub fn count(&self) -> usize {
        self.containers_gone.len()
            + self.half_made.len()
            + self.endpoints_recreated.len()
            + self.endpoints_reprogrammed.len()
            + self.stale_entries
            + self.stale_veths.len()
            + self.stale_networks
            + self.stale_routes
            + self.stale_peers
            + self.stale_gateways.len()
            + self.gateways_restored.len()
            + self.default_routes.len()
            + usize::from(self.underlay_reattached)
            + usize::from(self.names_synced)
    }
}

impl Engine {
    /// Makes the kernel match the store: the repair a restart (or the
    /// daemon's periodic pass) performs. Safe to run at any time.
    pub fn reconcile(&mut self) -> Result<Repairs, EngineError> {
        let mut repairs = Repairs::default();
        self.remove_stale_networks(&mut repairs)?;
        self.release_vanished_containers(&mut repairs)?;
        self.remove_half_made_containers(&mut repairs)?;
        let owned = self.repair_endpoints(&mut repairs)?;
        let names: Vec<String> = self.state.containers.keys().cloned().collect();
        for name in names {
            if self.sync_default_route(&name)? {
                repairs.default_routes.push(name);
            }
        }
        // Map entries and links of interfaces nobody owns.
        for (ifindex, _) in self.dp.local_endpoints()? {
            if !owned.contains(&ifindex) {
                let _ = self.dp.detach_endpoint(ifindex);
                self.dp.remove_local_endpoint(ifindex)?;
                repairs.stale_entries += 1;
            }
        }
        let owned_names: BTreeSet<String> = self
            .state
            .endpoints()
            .map(|(_, e)| e.host_ifname.clone())
            .collect();
        for name in self.host.endpoint_veths()? {
            if !owned_names.contains(&name) {
                self.host.delete_link(&name)?;
                repairs.stale_veths.push(name);
            }
        }
        self.program_static_entries(None)?;
        self.remove_stale_routes_and_peers(&mut repairs)?;
        self.repair_gateways(&mut repairs)?;
        self.sync_guards()?;
        let names = crate::model::names::NameTable::from_snapshot(&self.state);
        repairs.names_synced = self.sync_names(&names)?;
        // The underlay program, if this host was attached.
        if let Some(h) = self.state.host.clone()
            && let Some((ifindex, _)) = self.host.link(&h.iface)?
            && !self.dp.underlay_linked(ifindex)
        {
            // The mode in effect before (what `auto` chose then).
            self.dp
                .set_underlay(&Underlay::new(ifindex, h.underlay_ip))?;
            self.dp.attach_underlay(ifindex, h.decap.reattach())?;
            repairs.underlay_reattached = true;
        }
        self.host.sync_filter(&super::ruleset(&self.state))?;
        self.release_unused_hosts();
        match self.dp.release_stale_monitor() {
            Ok(true) => tracing::info!("drop events off: their monitor is gone"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "checking the drop events' monitor"),
        }
        Ok(repairs)
    }

    /// Frees the next-hop cache slots of hosts that are gone; a failure
    /// leaves them for the next pass (a slot held too long costs nothing
    /// until all are taken).
    pub(super) fn release_unused_hosts(&mut self) {
        if let Err(e) = self.dp.release_unused_hosts() {
            tracing::warn!(error = %e, "releasing next-hop cache slots");
        }
    }

    /// Networks in the maps that the store does not know, with their
    /// endpoint entries.
    fn remove_stale_networks(&mut self, repairs: &mut Repairs) -> Result<(), EngineError> {
        let known: BTreeSet<u32> = self.state.networks.values().map(|n| n.vni).collect();
        for vni in self.dp.network_vnis()? {
            if known.contains(&vni) {
                continue;
            }
            // Endpoints of it go first, or removal is refused.
            for (ifindex, info) in self.dp.local_endpoints()? {
                if info.vni == vni {
                    let _ = self.dp.detach_endpoint(ifindex);
                    self.dp.remove_local_endpoint(ifindex)?;
                }
            }
            self.dp.remove_network(vni)?;
            repairs.stale_networks += 1;
        }
        Ok(())
    }

    /// Containers whose namespace is gone: their process stopped, their
    /// endpoints released, their record dropped.
    fn release_vanished_containers(&mut self, repairs: &mut Repairs) -> Result<(), EngineError> {
        let gone: Vec<String> = self
            .state
            .containers
            .values()
            // Docker's sandboxes are Docker's: its sandbox file appears only
            // after Join (when the container starts), and Docker calls
            // Leave for each, also for a dead dockerd's on its next start.
            .filter(|c| !c.docker && !self.host.netns_exists(&c.netns))
            .map(|c| c.name.clone())
            .collect();
        for name in gone {
            let c = self.state.containers.remove(&name).expect("listed above");
            // Its process would otherwise outlive the container it belonged to.
            if c.owned_netns {
                self.host.stop(c.process());
                // Its resolv.conf outlived the namespace.
                self.host.set_resolv_conf(&c.netns, None)?;
            }
            for ep in &c.endpoints {
                self.release_endpoint(ep)?;
            }
            repairs.containers_gone.push(name);
        }
        Ok(())
    }

    /// Routes and peers the state does not account for. Local routes go
    /// with their endpoint entries above; what is left here is a route
    /// without an owner.
    fn remove_stale_routes_and_peers(&mut self, repairs: &mut Repairs) -> Result<(), EngineError> {
        let vni = |id: &String| self.state.networks.get(id).map(|n| n.vni);
        let mut routes: BTreeSet<(u32, Ipv4Addr)> = BTreeSet::new();
        let mut peers: BTreeSet<(Ipv4Addr, u32)> = BTreeSet::new();
        for (_, ep) in self.state.endpoints() {
            routes.extend(vni(&ep.network_id).map(|v| (v, ep.ip)));
        }
        for r in self.state.remotes.values() {
            routes.extend(vni(&r.network_id).map(|v| (v, r.ip)));
        }
        for e in self.state.learned.values() {
            routes.extend(vni(&e.network_id).map(|v| (v, e.ip)));
            peers.extend(vni(&e.network_id).map(|v| (e.host, v)));
        }
        for (ip, id) in &self.state.peers {
            peers.extend(vni(id).map(|v| (*ip, v)));
        }
        for (v, ip, _) in self.dp.routes()? {
            if !routes.contains(&(v, ip)) {
                self.dp.remove_route(v, ip)?;
                repairs.stale_routes += 1;
            }
        }
        for (host, v) in self.dp.peers()? {
            if !peers.contains(&(host, v)) {
                self.dp.remove_peer(host, v)?;
                repairs.stale_peers += 1;
            }
        }
        Ok(())
    }

    /// Gateway addresses: each known network's on `lo`, and none of ours
    /// (by label) for networks that are gone.
    fn repair_gateways(&mut self, repairs: &mut Repairs) -> Result<(), EngineError> {
        let wanted: BTreeSet<Ipv4Addr> = self.state.networks.values().map(|n| n.gateway).collect();
        let present: BTreeSet<Ipv4Addr> = self.host.gateway_addresses()?.into_iter().collect();
        for gw in present.difference(&wanted) {
            self.host.remove_gateway_address(*gw)?;
            repairs.stale_gateways.push(*gw);
        }
        for gw in wanted.difference(&present) {
            // False for one there already without our label (from before
            // labels, or the admin's own).
            if self.host.add_gateway_address(*gw)? {
                repairs.gateways_restored.push(*gw);
            }
        }
        Ok(())
    }

    /// Namespaces marked pending whose container was never recorded.
    fn remove_half_made_containers(&mut self, repairs: &mut Repairs) -> Result<(), EngineError> {
        let pending = std::mem::take(&mut self.state.pending_netns);
        for name in pending {
            if !self.state.containers.contains_key(&name) && self.host.netns_exists(&name) {
                self.host.delete_netns(&name)?;
                repairs.half_made.push(name);
            }
        }
        Ok(())
    }

    /// Recreates lost veths and re-programs lost or wrong entries; returns
    /// the host-side ifindexes the endpoints own.
    fn repair_endpoints(&mut self, repairs: &mut Repairs) -> Result<BTreeSet<u32>, EngineError> {
        let endpoints: Vec<(String, EndpointRecord)> = self
            .state
            .endpoints()
            .map(|(c, e)| (c.to_owned(), e.clone()))
            .collect();
        let programmed: BTreeMap<u32, EndpointInfo> = self.dp.local_endpoints()?;
        let mut owned = BTreeSet::new();
        for (container, ep) in endpoints {
            let Some(net) = self.state.networks.get(&ep.network_id).cloned() else {
                continue;
            };
            // Docker made the veth and moved it into its sandbox: a lost
            // one cannot be made again here (Docker's Leave releases it).
            if self.state.containers[&container].docker
                && self.host.link(&ep.host_ifname)?.is_none()
            {
                continue;
            }
            // Stepped aside for another host's claim: stays out of the
            // maps (its entry, not owned, is removed below).
            if ep.conflict.is_some() {
                self.host.remove_endpoint_route(ep.ip)?;
                continue;
            }
            let Some((ifindex, host_mac)) = self.host.link(&ep.host_ifname)? else {
                let c = self.state.containers.get_mut(&container).expect("present");
                c.endpoints.retain(|e| e.id != ep.id);
                let new = self.connect(
                    &net.id,
                    &container,
                    ConnectOptions {
                        ip: Some(ep.ip),
                        gw_priority: ep.gw_priority,
                        aliases: ep.aliases.clone(),
                    },
                )?;
                if let Some((ifindex, _)) = self.host.link(&new.host_ifname)? {
                    owned.insert(ifindex);
                }
                repairs
                    .endpoints_recreated
                    .push(format!("{container}/{}", ep.ifname));
                continue;
            };
            owned.insert(ifindex);
            let want = EndpointInfo {
                vni: net.vni,
                ip: u32::from(ep.ip).to_be(),
                mac: ep.mac.0,
                host_mac: host_mac.0,
                flags: 0,
                // The dataplane copies it from the network's entry, which
                // outlives every endpoint on it: not state to compare.
                counter_slot: programmed.get(&ifindex).map_or(0, |p| p.counter_slot),
            };
            if programmed.get(&ifindex) != Some(&want) || !self.dp.endpoint_linked(ifindex) {
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
            self.host.endpoint_route(ep.ip, ep.mac, &ep.host_ifname)?;
        }
        Ok(owned)
    }
}
