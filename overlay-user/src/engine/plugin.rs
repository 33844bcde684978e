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

use std::{collections::BTreeSet, net::Ipv4Addr, path::Path};

use ipnet::Ipv4Net;

use super::{CreateNetwork, Engine, EngineError, undo::Undo};
use crate::model::{
    ContainerRecord, Driver, EndpointRecord, IpamPool, MacAddr, PluginEndpoint, Proto,
    PublishedPort, ids, ipam, rules,
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
    /// `-o KEY=VALUE` of `docker network create`.
    pub options: Vec<String>,
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
                if !self.state.ipam_pools.contains_key(&pool_id(p))
                    && let Some(n) = self
                        .state
                        .networks
                        .values()
                        .find(|n| ipam::overlaps(n.subnet, p))
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

    /// `IpamDriver.ReleaseAddress` (absent is fine: Docker may release what
    /// a failed call never got).
    pub fn ipam_release_address(&mut self, id: &str, ip: Ipv4Addr) -> Result<(), EngineError> {
        if let Some(pool) = self.state.ipam_pools.get_mut(id) {
            pool.addresses.remove(&ip);
        }
        Ok(())
    }

    /// `NetworkDriver.CreateNetwork`: a host-local network under Docker's
    /// ID, named after it.
    pub fn plugin_create_network(&mut self, n: &PluginNetwork) -> Result<(), EngineError> {
        rules::check_id(&n.id)?;
        if self.state.networks.contains_key(&n.id) {
            return Err(EngineError::DuplicateNetwork(n.id.clone()));
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

    /// `NetworkDriver.DeleteNetwork`.
    pub fn plugin_delete_network(&mut self, id: &str) -> Result<(), EngineError> {
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

    fn docker_network(&self, id: &str) -> Result<&crate::model::NetworkRecord, EngineError> {
        self.state
            .networks
            .get(id)
            .filter(|n| n.docker)
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
        let net = self.docker_network(network)?.clone();
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

    /// `NetworkDriver.DeleteEndpoint` (absent is fine).
    pub fn plugin_delete_endpoint(&mut self, endpoint: &str) -> Result<(), EngineError> {
        if let Some(ep) = self.state.plugin_endpoints.get(endpoint)
            && ep.sandbox.is_some()
        {
            self.plugin_leave(endpoint)?;
        }
        self.state.plugin_endpoints.remove(endpoint);
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
        let host_ifname = format!("ovl{}", &endpoint[..8]);
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
