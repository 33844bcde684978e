//! Networks: create, remove, prune; putting them back in the maps after a
//! reboot.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
};

use ipnet::Ipv4Net;

use super::{Engine, EngineError, undo::Undo};
use crate::{
    cluster::ClusterError,
    dataplane::{Network, RemoteEndpoint},
    model::{
        Driver, NetworkRecord, ids, ipam,
        rules::{self, BRIDGE_MTU, DEFAULT_NETWORK, OVERLAY_MTU, RuleError},
    },
};

/// Options of `network create`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// Docker's network ID, for a network Docker creates through the
    /// plugin (a new one otherwise).
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub docker: bool,
}

impl CreateNetwork {
    /// The default `bridge` network.
    pub fn default_bridge() -> Self {
        Self {
            name: DEFAULT_NETWORK.into(),
            driver: Some(Driver::Bridge),
            ..Self::default()
        }
    }
}

/// The dataplane's view of a network record.
pub(super) fn dp_network(n: &NetworkRecord) -> Network {
    Network {
        vni: n.vni,
        subnet: n.subnet,
        gateway: Some(n.gateway),
        internal: n.internal,
    }
}

/// A VNI for a new network: `wanted` if free, else the lowest free one of
/// the driver's pool.
fn pick_vni(
    used: &BTreeMap<u32, String>,
    driver: Driver,
    wanted: Option<u32>,
) -> Result<u32, EngineError> {
    let overlay = driver == Driver::Overlay;
    match wanted {
        Some(v) => {
            rules::check_requested_vni(overlay, v)?;
            match used.get(&v) {
                Some(name) => Err(EngineError::VniInUse(v, name.clone())),
                None => Ok(v),
            }
        }
        None => rules::vni_pool(overlay)
            .find(|v| !used.contains_key(v))
            .ok_or(EngineError::VnisExhausted),
    }
}

impl Engine {
    /// Containers attached to network `id`, by name.
    pub fn containers_on(&self, id: &str) -> Vec<String> {
        self.state
            .containers_on(id)
            .into_iter()
            .map(|c| c.name.clone())
            .collect()
    }

    /// `network create`: returns the new network's ID.
    pub fn create_network(&mut self, opts: &CreateNetwork) -> Result<String, EngineError> {
        rules::check_name(&opts.name)?;
        let driver = opts.driver.unwrap_or(Driver::Bridge);
        let global = driver == Driver::Overlay && self.state.cluster.is_some();
        // The cluster's networks as they are now, not as last synced.
        let mut known: Vec<NetworkRecord> = self.state.networks.values().cloned().collect();
        if global {
            // Records that break the rules are skipped by every host; they
            // claim nothing here either.
            for n in self.cluster()?.networks()? {
                if !self.state.networks.contains_key(&n.id) && rules::check_network(&n).is_ok() {
                    known.push(n);
                }
            }
        }
        // Docker's names count: `--network NAME` must name one network.
        if known
            .iter()
            .any(|n| n.name == opts.name || n.docker_name.as_deref() == Some(&opts.name))
        {
            return Err(EngineError::DuplicateNetwork(opts.name.clone()));
        }
        let subnet = match opts.subnets.as_slice() {
            [] => {
                let pools = match driver {
                    Driver::Bridge => ipam::BRIDGE_POOLS,
                    Driver::Overlay => ipam::OVERLAY_POOLS,
                };
                // Docker's rule: a subnet the host already routes (the
                // LAN, a VPN) would cut containers off from it.
                let mut used: Vec<Ipv4Net> = self.host.routed_prefixes()?;
                used.extend(known.iter().map(|n| n.subnet));
                ipam::pick_subnet(pools, &used).ok_or(EngineError::PoolExhausted)?
            }
            [one] => *one,
            _ => return Err(RuleError::OneSubnet.into()),
        };
        rules::check_subnet(subnet)?;
        if let Some(other) = known.iter().find(|n| ipam::overlaps(n.subnet, subnet)) {
            return Err(EngineError::Overlap(
                subnet,
                other.name.clone(),
                other.subnet,
            ));
        }
        let gateway = match opts.gateway {
            Some(gw) => {
                rules::check_gateway(subnet, gw)?;
                gw
            }
            None => rules::default_gateway(subnet).ok_or(EngineError::PoolExhausted)?,
        };
        if let Some(range) = opts.ip_range {
            rules::check_ip_range(subnet, range)?;
        }
        let mut used_vnis: BTreeMap<u32, String> =
            known.iter().map(|n| (n.vni, n.name.clone())).collect();
        let vni = pick_vni(&used_vnis, driver, opts.vni)?;
        let mtu = self.network_mtu(driver, opts.mtu)?;
        let mut record = NetworkRecord {
            id: opts.id.clone().unwrap_or_else(ids::new_id),
            name: opts.name.clone(),
            driver,
            subnet,
            gateway,
            ip_range: opts.ip_range,
            vni,
            internal: opts.internal,
            mtu,
            labels: opts.labels.clone(),
            created: ids::now_rfc3339(),
            docker: opts.docker,
            docker_name: None,
        };
        // Another host may take the same VNI at the same moment: pick again.
        if global {
            self.create_in_cluster(&mut record, &mut used_vnis, opts.vni.is_some())?;
        }
        self.add_network_here(&record)?;
        let id = record.id.clone();
        self.state.networks.insert(id.clone(), record);
        Ok(id)
    }

    /// Claims the network's name and VNI in the cluster store; a VNI another
    /// host took meanwhile is replaced by the next free one unless it was
    /// asked for.
    fn create_in_cluster(
        &mut self,
        record: &mut NetworkRecord,
        used_vnis: &mut BTreeMap<u32, String>,
        vni_asked: bool,
    ) -> Result<(), EngineError> {
        loop {
            match self.cluster()?.create_network(record) {
                Ok(()) => {
                    self.undo.push(Undo::ClusterNetwork(record.clone()));
                    return Ok(());
                }
                Err(ClusterError::NameTaken(name)) => {
                    return Err(EngineError::DuplicateNetwork(name));
                }
                Err(ClusterError::VniTaken(v)) if !vni_asked => {
                    used_vnis.insert(v, "another host's network".into());
                    record.vni = pick_vni(used_vnis, record.driver, None)?;
                }
                Err(ClusterError::VniTaken(v)) => {
                    return Err(EngineError::VniInUse(v, "another host's network".into()));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The MTU of a new network: what `-o mtu` asks for (an overlay network
    /// must fit the underlay once encapsulated), else the underlay NIC's
    /// MTU minus VXLAN's 50 bytes for overlay networks (1450 before any
    /// `attach`) and 1500 for bridge networks, as Docker does.
    fn network_mtu(&self, driver: Driver, asked: Option<u32>) -> Result<u32, EngineError> {
        let underlay = self
            .state
            .host
            .as_ref()
            .filter(|h| h.mtu > 0)
            .map(|h| (h.iface.as_str(), h.mtu));
        let mtu = match (driver, asked) {
            (Driver::Bridge, asked) => asked.unwrap_or(BRIDGE_MTU),
            (Driver::Overlay, Some(mtu)) => {
                if let Some((iface, underlay)) = underlay {
                    rules::check_overlay_mtu(mtu, iface, underlay)?;
                }
                mtu
            }
            (Driver::Overlay, None) => underlay.map_or(OVERLAY_MTU, |(_, u)| {
                u.saturating_sub(overlay_common::VXLAN_ENCAP_LEN)
            }),
        };
        rules::check_mtu(mtu)?;
        Ok(mtu)
    }

    /// The MTU a container's interface on `n` gets here: the network's, but
    /// for an overlay network never more than this host's underlay carries
    /// (a cluster network made on a host with a larger one).
    pub(super) fn interface_mtu(&self, n: &NetworkRecord) -> u32 {
        match (&self.state.host, n.driver) {
            (Some(h), Driver::Overlay) if h.mtu > 0 => n
                .mtu
                .min(h.mtu.saturating_sub(overlay_common::VXLAN_ENCAP_LEN)),
            _ => n.mtu,
        }
    }

    /// Programs a network on this host: maps, gateway address, forwarding.
    pub(super) fn add_network_here(&mut self, n: &NetworkRecord) -> Result<(), EngineError> {
        self.dp.add_network(&dp_network(n))?;
        self.undo.push(Undo::Network(n.vni));
        if self.host.add_gateway_address(n.gateway)? {
            self.undo.push(Undo::GatewayAddr(n.gateway));
        }
        if !n.internal {
            self.host.enable_ip_forward()?;
        }
        Ok(())
    }

    /// Takes a network off this host: maps (with its routes and peers) and
    /// gateway address; the state forgets it and what hangs off it.
    pub(super) fn remove_network_here(&mut self, n: &NetworkRecord) -> Result<(), EngineError> {
        let undo = self.removal_undo(n);
        self.dp.remove_network(n.vni)?;
        self.undo.push(undo);
        self.host.remove_gateway_address(n.gateway)?;
        self.undo.push(Undo::RemovedGatewayAddr(n.gateway));
        self.state.forget_network(&n.id);
        Ok(())
    }

    /// How to put network `n` back as it is programmed now: the network,
    /// its remote endpoints (static and learned) and its peers.
    fn removal_undo(&self, n: &NetworkRecord) -> Undo {
        let static_remotes = self
            .state
            .remotes
            .values()
            .filter(|r| r.network_id == n.id)
            .map(|r| (r.ip, r.mac, r.host));
        let learned = self
            .state
            .learned
            .values()
            .filter(|e| e.network_id == n.id)
            .map(|e| (e.ip, e.mac, e.host));
        let remotes: Vec<RemoteEndpoint> = static_remotes
            .chain(learned)
            .map(|(ip, mac, host)| RemoteEndpoint {
                vni: n.vni,
                ip,
                mac,
                host,
            })
            .collect();
        let mut peers: BTreeSet<Ipv4Addr> = self
            .state
            .peers
            .iter()
            .filter(|(_, id)| *id == n.id)
            .map(|(ip, _)| *ip)
            .collect();
        peers.extend(
            self.state
                .learned
                .values()
                .filter(|e| e.network_id == n.id)
                .map(|e| e.host),
        );
        Undo::RemovedNetwork {
            net: dp_network(n),
            remotes,
            peers: peers.into_iter().collect(),
        }
    }

    /// `network rm`: all named networks, or none.
    pub fn remove_networks(&mut self, keys: &[String]) -> Result<Vec<String>, EngineError> {
        let mut ids = Vec::new();
        for key in keys {
            let net = self.network(key)?;
            if net.name == DEFAULT_NETWORK {
                return Err(EngineError::Predefined(net.name.clone()));
            }
            if net.docker {
                return Err(EngineError::DockerOwned(net.name.clone()));
            }
            let users = self.containers_on(&net.id);
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
                let users = self.cluster()?.claim_holders(&net.id)?;
                if !users.is_empty() {
                    return Err(EngineError::NetworkInUse(net.name, users.join(", ")));
                }
            }
        }
        let mut names = Vec::new();
        for id in ids {
            let net = self.state.networks[&id].clone();
            if self.state.is_global(&net) {
                self.cluster()?.remove_network(&net)?;
                self.undo.push(Undo::ClusterRemovedNetwork(net.clone()));
            }
            self.remove_network_here(&net)?;
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
            .filter(|n| {
                n.name != DEFAULT_NETWORK && !n.docker && self.state.containers_on(&n.id).is_empty()
            })
            .map(|n| n.name.clone())
            .collect();
        self.remove_networks(&unused)
    }

    /// Programs the networks the maps lost (a reboot, `destroy`), with their
    /// gateways and static entries.
    pub(super) fn restore_networks(&mut self) -> Result<(), EngineError> {
        let present: BTreeSet<u32> = self.dp.network_vnis()?.into_iter().collect();
        let missing: Vec<NetworkRecord> = self
            .state
            .networks
            .values()
            .filter(|n| !present.contains(&n.vni))
            .cloned()
            .collect();
        for n in missing {
            self.add_network_here(&n)?;
            self.program_static_entries(Some(&n.id))?;
        }
        Ok(())
    }

    /// (Re-)writes the static peers and remote endpoints of network `only`,
    /// or of every network: upserts, so safe to repeat.
    pub(super) fn program_static_entries(&mut self, only: Option<&str>) -> Result<(), EngineError> {
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
}
