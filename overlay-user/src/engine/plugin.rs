//! What Docker asks of this host through the plugin (`daemon::plugin`),
//! in the engine's terms: networks with Docker's IDs, an IPAM of address
//! pools, and endpoints whose container end Docker moves into its
//! sandbox and configures itself. The host end is plumbed by the same
//! code as `network connect` ([`Engine::plumb_endpoint`]).
//!
//! Order of Docker's calls: `RequestPool`, `RequestAddress` (the
//! gateway), `CreateNetwork`; per container `RequestAddress`,
//! `CreateEndpoint`, `Join`; and back: `Leave`, `DeleteEndpoint`,
//! `ReleaseAddress`; `DeleteNetwork`, `ReleaseAddress`, `ReleasePool`.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    path::Path,
};

use ipnet::Ipv4Net;

use super::{CreateNetwork, Engine, EngineError, undo::Undo};
use crate::model::{
    Claim, ContainerRecord, Driver, EndpointRecord, IpamPool, MacAddr, PluginEndpoint, Proto,
    PublishedPort, ids, ipam, names::DOCKER_CLAIMANT, rules,
};

/// Docker's range for host ports it picks (`-p 80`, `-P`).
const EPHEMERAL_FIRST: u16 = 49153;

/// What `Join` gives Docker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinInfo {
    /// The interface Docker moves into the sandbox.
    pub src_name: String,
    /// The default gateway; `None` on an internal network.
    pub gateway: Option<Ipv4Addr>,
}

/// A Docker network's options, as `CreateNetwork` carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PluginNetwork {
    pub id: String,
    pub subnet: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    pub internal: bool,
    /// `-o KEY=VALUE` of `docker network create` (but `network`).
    pub options: Vec<String>,
    /// `-o network=NAME`: the cluster network this Docker network is on
    /// this host.
    pub bind: Option<String>,
}

/// The endpoint ID of an address this IPAM claimed in the cluster store
/// before Docker named the endpoint (CreateEndpoint adopts it): zeros and
/// the address, never one of Docker's random IDs.
pub(super) fn pending_endpoint_id(ip: Ipv4Addr) -> String {
    format!("{:056x}{:08x}", 0, u32::from(ip))
}

/// The pool ID Docker keeps for a subnet: the subnet itself, so the same
/// pool always has the same ID.
fn pool_id(subnet: Ipv4Net) -> String {
    subnet.to_string()
}

/// The container record of Docker sandbox `key`.
fn sandbox_name(key: &str) -> String {
    let id = Path::new(key)
        .file_name()
        .map_or_else(|| key.to_owned(), |f| f.to_string_lossy().into_owned());
    format!("docker-{id}")
}

impl Engine {
    /// `IpamDriver.RequestPool`: `pool` if it is free (or already this
    /// IPAM's), else a subnet from Docker's default pools that overlaps no
    /// network, pool or route of this host.
    pub fn ipam_request_pool(
        &mut self,
        pool: Option<Ipv4Net>,
    ) -> Result<(String, Ipv4Net), EngineError> {
        let subnet = match pool {
            Some(p) => {
                let p = p.trunc();
                rules::check_subnet(p)?;
                // A cluster network's own subnet is its Docker network's
                // pool on every host.
                if !self.state.ipam_pools.contains_key(&pool_id(p))
                    && let Some(n) = self.state.networks.values().find(|n| {
                        ipam::overlaps(n.subnet, p) && !(n.subnet == p && self.state.is_global(n))
                    })
                {
                    return Err(EngineError::Overlap(p, n.name.clone(), n.subnet));
                }
                p
            }
            None => {
                let mut taken: Vec<Ipv4Net> = self.host.routed_prefixes()?;
                taken.extend(self.state.networks.values().map(|n| n.subnet));
                taken.extend(self.state.ipam_pools.values().map(|p| p.subnet));
                ipam::pick_subnet(ipam::BRIDGE_POOLS, &taken).ok_or(EngineError::PoolExhausted)?
            }
        };
        let id = pool_id(subnet);
        let entry = self.state.ipam_pools.entry(id.clone()).or_insert(IpamPool {
            subnet,
            refs: 0,
            addresses: BTreeSet::new(),
        });
        entry.refs += 1;
        Ok((id, subnet))
    }

    /// `IpamDriver.ReleasePool`.
    pub fn ipam_release_pool(&mut self, id: &str) -> Result<(), EngineError> {
        let pool = self
            .state
            .ipam_pools
            .get_mut(id)
            .ok_or_else(|| EngineError::NoSuchPool(id.to_owned()))?;
        pool.refs = pool.refs.saturating_sub(1);
        if pool.refs == 0 {
            self.state.ipam_pools.remove(id);
        }
        Ok(())
    }

    /// `IpamDriver.RequestAddress`: `want`, or for the gateway the first
    /// address, or the lowest free one. Returns it with the pool's prefix.
    pub fn ipam_request_address(
        &mut self,
        id: &str,
        want: Option<Ipv4Addr>,
        gateway: bool,
    ) -> Result<Ipv4Net, EngineError> {
        let pool = self
            .state
            .ipam_pools
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NoSuchPool(id.to_owned()))?;
        let mut used = pool.addresses.clone();
        // Addresses the pool's network (if made yet) has from elsewhere.
        if let Some(n) = self
            .state
            .networks
            .values()
            .find(|n| n.subnet == pool.subnet)
        {
            used.extend(self.state.used_addresses(&n.id));
            used.insert(n.gateway);
        }
        let global = self
            .state
            .networks
            .values()
            .find(|n| n.subnet == pool.subnet && self.state.is_global(n))
            .cloned();
        if let (Some(net), false) = (global, gateway) {
            let ip = self.claim_for_docker(&net, want, &used)?;
            self.state
                .ipam_pools
                .get_mut(id)
                .expect("read above")
                .addresses
                .insert(ip);
            return Ok(Ipv4Net::new(ip, pool.subnet.prefix_len()).expect("a pool's prefix"));
        }
        let ip = match want {
            Some(ip) => {
                if !ipam::is_host(pool.subnet, ip) {
                    return Err(rules::RuleError::AddressOutside(ip, pool.subnet).into());
                }
                if used.contains(&ip) {
                    return Err(EngineError::AddressInUse(ip, pool.subnet.to_string()));
                }
                ip
            }
            None if gateway => {
                rules::default_gateway(pool.subnet).ok_or(EngineError::PoolExhausted)?
            }
            None => {
                let gw = rules::default_gateway(pool.subnet).ok_or(EngineError::PoolExhausted)?;
                ipam::allocate(pool.subnet, None, gw, &used)
                    .ok_or_else(|| EngineError::AddressesExhausted(pool.subnet.to_string()))?
            }
        };
        self.state
            .ipam_pools
            .get_mut(id)
            .expect("read above")
            .addresses
            .insert(ip);
        Ok(Ipv4Net::new(ip, pool.subnet.prefix_len()).expect("a pool's prefix"))
    }

    /// An address of cluster network `net` for a Docker endpoint, claimed
    /// in the cluster store (so no host hands it out again) under a pending
    /// ID until `CreateEndpoint` adopts it.
    fn claim_for_docker(
        &mut self,
        net: &crate::model::NetworkRecord,
        want: Option<Ipv4Addr>,
        used: &BTreeSet<Ipv4Addr>,
    ) -> Result<Ipv4Addr, EngineError> {
        self.claim_in_cluster(net, (want, used), DOCKER_CLAIMANT, pending_endpoint_id, &[])
    }

    /// `IpamDriver.ReleaseAddress` (absent is fine: Docker may release what
    /// a failed call never got). An address of a cluster network is given
    /// back to the cluster store.
    pub fn ipam_release_address(&mut self, id: &str, ip: Ipv4Addr) -> Result<(), EngineError> {
        let Some(pool) = self.state.ipam_pools.get_mut(id) else {
            return Ok(());
        };
        let held = pool.addresses.remove(&ip);
        let subnet = pool.subnet;
        let global = self
            .state
            .networks
            .values()
            .find(|n| n.subnet == subnet && self.state.is_global(n))
            .cloned();
        if let Some(net) = global
            && held
            && ip != net.gateway
        {
            let host = self
                .state
                .advertise_ip()
                .ok_or(EngineError::NoAdvertiseAddress)?;
            self.cluster()?.release_address(&net.id, ip, host)?;
        }
        Ok(())
    }

    /// Records the names Docker knows its networks by (Docker's ID ->
    /// name). Skipped: names that break the network name rules, and names
    /// another network already goes by (its own or Docker's), so a name
    /// always means one network. How many were recorded.
    pub fn name_docker_networks(&mut self, names: &BTreeMap<String, String>) -> usize {
        let mut named = 0;
        for (id, name) in names {
            let taken =
                self.state.networks.values().any(|n| {
                    &n.id != id && (&n.name == name || n.docker_name.as_ref() == Some(name))
                });
            if !taken
                && let Some(net) = self.state.networks.get_mut(id)
                && net.docker
                && rules::check_name(name).is_ok()
            {
                net.docker_name = Some(name.clone());
                named += 1;
            }
        }
        named
    }

    /// `NetworkDriver.CreateNetwork`: a host-local network under Docker's
    /// ID, named after it; or, with `-o network=NAME`, this host's view of
    /// cluster network NAME (made with Docker's subnet if it does not
    /// exist yet; the subnet must be its own if it does). Every host binds
    /// its own Docker network to the name: that is how they agree.
    pub fn plugin_create_network(&mut self, n: &PluginNetwork) -> Result<(), EngineError> {
        rules::check_id(&n.id)?;
        if self.state.networks.contains_key(&n.id) || self.state.docker_bindings.contains_key(&n.id)
        {
            return Err(EngineError::DuplicateNetwork(n.id.clone()));
        }
        if let Some(name) = &n.bind {
            return self.bind_cluster_network(n, name);
        }
        self.create_network(&CreateNetwork {
            name: format!("docker-{}", &n.id[..12]),
            driver: Some(Driver::Bridge),
            subnets: vec![n.subnet],
            gateway: n.gateway,
            internal: n.internal,
            mtu: rules::parse_driver_options(&n.options)?,
            id: Some(n.id.clone()),
            docker: true,
            ..CreateNetwork::default()
        })?;
        Ok(())
    }

    fn bind_cluster_network(&mut self, n: &PluginNetwork, name: &str) -> Result<(), EngineError> {
        if self.state.cluster.is_none() {
            return Err(EngineError::NotInCluster(name.to_owned()));
        }
        let net_id = match self.state.find_network(name).cloned() {
            Some(net) if !self.state.is_global(&net) => {
                return Err(EngineError::NotInCluster(name.to_owned()));
            }
            Some(net) if net.subnet != n.subnet => {
                return Err(EngineError::BindSubnet(
                    name.to_owned(),
                    net.subnet,
                    n.subnet,
                ));
            }
            Some(net) => net.id,
            None => self.create_network(&CreateNetwork {
                name: name.to_owned(),
                driver: Some(Driver::Overlay),
                subnets: vec![n.subnet],
                gateway: n.gateway,
                internal: n.internal,
                mtu: rules::parse_driver_options(&n.options)?,
                ..CreateNetwork::default()
            })?,
        };
        self.state.docker_bindings.insert(n.id.clone(), net_id);
        Ok(())
    }

    /// The record a Docker network is: its own, or the cluster network it
    /// is bound to.
    fn docker_network_id(&self, docker: &str) -> Result<String, EngineError> {
        if let Some(bound) = self.state.docker_bindings.get(docker) {
            return Ok(bound.clone());
        }
        self.docker_network(docker).map(|n| n.id.clone())
    }

    /// `NetworkDriver.DeleteNetwork`. A binding goes; the cluster network
    /// stays (other hosts use it; `overlay network rm` removes it).
    pub fn plugin_delete_network(&mut self, id: &str) -> Result<(), EngineError> {
        if self.state.docker_bindings.remove(id).is_some() {
            return Ok(());
        }
        let net = self.docker_network(id)?.clone();
        let users = self.containers_on(&net.id);
        if !users.is_empty() {
            return Err(EngineError::NetworkInUse(net.name, users.join(", ")));
        }
        self.state
            .plugin_endpoints
            .retain(|_, e| e.network_id != id);
        self.remove_network_here(&net)
    }

    /// A network Docker may use: its own, or one a Docker network is
    /// bound to.
    fn docker_network(&self, id: &str) -> Result<&crate::model::NetworkRecord, EngineError> {
        self.state
            .networks
            .get(id)
            .filter(|n| n.docker || self.state.docker_bindings.values().any(|b| b == id))
            .ok_or_else(|| EngineError::NoSuchNetwork(id.to_owned()))
    }

    /// `NetworkDriver.CreateEndpoint`: records the address Docker's IPAM
    /// gave it (and its MAC, or the one derived from the address).
    /// Returns the MAC when Docker did not give one.
    pub fn plugin_create_endpoint(
        &mut self,
        network: &str,
        endpoint: &str,
        ip: Ipv4Addr,
        mac: Option<MacAddr>,
    ) -> Result<Option<MacAddr>, EngineError> {
        rules::check_id(endpoint)?;
        let net_id = self.docker_network_id(network)?;
        let net = self.docker_network(&net_id)?.clone();
        rules::check_endpoint_address(net.subnet, Some(net.gateway), ip)?;
        if self.state.plugin_endpoints.contains_key(endpoint) {
            return Err(EngineError::EndpointExists(endpoint.to_owned()));
        }
        let taken = self
            .state
            .plugin_endpoints
            .values()
            .any(|e| e.network_id == net.id && e.ip == ip)
            || self.state.used_addresses(&net.id).contains(&ip);
        if taken {
            return Err(EngineError::AddressInUse(ip, net.name));
        }
        if let Some(m) = mac {
            rules::check_mac(m)?;
        }
        if self.state.is_global(&net) {
            // Adopts the claim this IPAM made under a pending ID, or (with
            // Docker's own IPAM) claims the address now.
            let host = self
                .state
                .advertise_ip()
                .ok_or(EngineError::NoAdvertiseAddress)?;
            let claim = Claim {
                network_id: net.id.clone(),
                ip,
                mac: mac.unwrap_or_else(|| MacAddr::from_ipv4(ip)),
                host,
                container: DOCKER_CLAIMANT.into(),
                endpoint_id: endpoint.to_owned(),
                aliases: Vec::new(),
            };
            if !self.cluster()?.put_claim(&claim)? {
                return Err(EngineError::AddressInUse(ip, net.name));
            }
        }
        self.state.plugin_endpoints.insert(
            endpoint.to_owned(),
            PluginEndpoint {
                network_id: net.id,
                ip,
                mac: mac.unwrap_or_else(|| MacAddr::from_ipv4(ip)),
                sandbox: None,
            },
        );
        Ok(mac.is_none().then(|| MacAddr::from_ipv4(ip)))
    }

    /// `NetworkDriver.DeleteEndpoint` (absent is fine). On a cluster
    /// network, an address this IPAM did not hand out (Docker's own IPAM
    /// was used) is given back to the cluster store here.
    pub fn plugin_delete_endpoint(&mut self, endpoint: &str) -> Result<(), EngineError> {
        let Some(ep) = self.state.plugin_endpoints.get(endpoint).cloned() else {
            return Ok(());
        };
        if ep.sandbox.is_some() {
            self.plugin_leave(endpoint)?;
        }
        self.state.plugin_endpoints.remove(endpoint);
        let ours = self
            .state
            .ipam_pools
            .values()
            .any(|p| p.subnet.contains(&ep.ip) && p.addresses.contains(&ep.ip));
        if let Some(net) = self.state.networks.get(&ep.network_id).cloned()
            && self.state.is_global(&net)
            && !ours
        {
            let host = self
                .state
                .advertise_ip()
                .ok_or(EngineError::NoAdvertiseAddress)?;
            self.cluster()?.release_address(&net.id, ep.ip, host)?;
        }
        Ok(())
    }

    /// `NetworkDriver.Join`: the veth pair (both ends here; Docker moves
    /// one into sandbox `key`), plumbed like any endpoint.
    pub fn plugin_join(&mut self, endpoint: &str, key: &str) -> Result<JoinInfo, EngineError> {
        let pe = self
            .state
            .plugin_endpoints
            .get(endpoint)
            .cloned()
            .ok_or_else(|| EngineError::NoSuchEndpoint(endpoint.to_owned()))?;
        if pe.sandbox.is_some() {
            return Err(EngineError::EndpointExists(endpoint.to_owned()));
        }
        let net = self.docker_network(&pe.network_id)?.clone();
        let host_ifname = format!("{}{}", rules::HOST_VETH_PREFIX, &endpoint[..8]);
        let peer = format!("ovd{}", &endpoint[..8]);
        let mtu = self.interface_mtu(&net);
        self.host.add_host_veth(&host_ifname, &peer, mtu, pe.mac)?;
        self.undo.push(Undo::Link(host_ifname.clone()));
        self.plumb_endpoint(&net, pe.ip, pe.mac, &host_ifname)?;
        let name = sandbox_name(key);
        let record = EndpointRecord {
            id: endpoint.to_owned(),
            network_id: net.id.clone(),
            ip: pe.ip,
            mac: pe.mac,
            ifname: peer.clone(),
            host_ifname,
            gw_priority: 0,
            conflict: None,
            published: Vec::new(),
            aliases: Vec::new(),
        };
        self.state
            .containers
            .entry(name.clone())
            .or_insert_with(|| ContainerRecord {
                id: ids::new_id(),
                name,
                netns: key.to_owned(),
                owned_netns: false,
                attached_netns: false,
                command: Vec::new(),
                pid: None,
                pid_start: None,
                created: ids::now_rfc3339(),
                endpoints: Vec::new(),
                docker: true,
            })
            .endpoints
            .push(record);
        self.state
            .plugin_endpoints
            .get_mut(endpoint)
            .expect("read above")
            .sandbox = Some(key.to_owned());
        Ok(JoinInfo {
            src_name: peer,
            gateway: (!net.internal).then_some(net.gateway),
        })
    }

    /// `NetworkDriver.ProgramExternalConnectivity`: the endpoint's
    /// published ports (replacing any it had). A host port of 0 takes the
    /// first free one of Docker's ephemeral range.
    pub fn plugin_publish(
        &mut self,
        endpoint: &str,
        ports: &[PublishedPort],
    ) -> Result<Vec<PublishedPort>, EngineError> {
        let (name, pos) = self.joined(endpoint)?;
        let net = &self.state.networks[&self.state.containers[&name].endpoints[pos].network_id];
        if net.internal && !ports.is_empty() {
            return Err(EngineError::NothingToPublishOn(name));
        }
        self.joined_mut(&name, pos).published.clear();
        let mut chosen = Vec::new();
        for p in ports {
            let mut p = *p;
            if p.host_port == 0 {
                let used: BTreeSet<(Proto, u16)> = self
                    .state
                    .endpoints()
                    .flat_map(|(_, e)| e.published.iter().map(|q| (q.proto, q.host_port)))
                    .chain(
                        chosen
                            .iter()
                            .map(|q: &PublishedPort| (q.proto, q.host_port)),
                    )
                    .collect();
                p.host_port = (EPHEMERAL_FIRST..=u16::MAX)
                    .find(|port| !used.contains(&(p.proto, *port)))
                    .ok_or_else(|| {
                        EngineError::PortPublished("every ephemeral port".into(), "others".into())
                    })?;
            }
            chosen.push(p);
        }
        self.add_published(&name, pos, &chosen)?;
        Ok(chosen)
    }

    /// `NetworkDriver.RevokeExternalConnectivity`.
    pub fn plugin_unpublish(&mut self, endpoint: &str) -> Result<(), EngineError> {
        if let Ok((name, pos)) = self.joined(endpoint) {
            self.joined_mut(&name, pos).published.clear();
        }
        Ok(())
    }

    fn joined_mut(&mut self, name: &str, pos: usize) -> &mut EndpointRecord {
        &mut self
            .state
            .containers
            .get_mut(name)
            .expect("joined")
            .endpoints[pos]
    }

    /// The sandbox container and endpoint index of a joined endpoint.
    fn joined(&self, endpoint: &str) -> Result<(String, usize), EngineError> {
        self.state
            .containers
            .values()
            .find_map(|c| {
                let pos = c.endpoints.iter().position(|e| e.id == endpoint)?;
                Some((c.name.clone(), pos))
            })
            .ok_or_else(|| EngineError::NoSuchEndpoint(endpoint.to_owned()))
    }

    /// `NetworkDriver.Leave`: the endpoint leaves its sandbox; its veth
    /// (back in this namespace by now, or gone with the sandbox) is
    /// deleted.
    pub fn plugin_leave(&mut self, endpoint: &str) -> Result<(), EngineError> {
        let Some(pe) = self.state.plugin_endpoints.get(endpoint).cloned() else {
            return Err(EngineError::NoSuchEndpoint(endpoint.to_owned()));
        };
        let Some(key) = pe.sandbox else {
            return Ok(());
        };
        let name = sandbox_name(&key);
        if let Some(c) = self.state.containers.get_mut(&name)
            && let Some(pos) = c.endpoints.iter().position(|e| e.id == endpoint)
        {
            let ep = c.endpoints.remove(pos);
            let empty = c.endpoints.is_empty();
            self.release_endpoint(&ep)?;
            if empty {
                self.state.containers.remove(&name);
            }
        }
        self.state
            .plugin_endpoints
            .get_mut(endpoint)
            .expect("read above")
            .sandbox = None;
        Ok(())
    }
}
