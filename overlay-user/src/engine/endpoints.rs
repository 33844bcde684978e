//! Connecting containers to networks: the one path that makes an endpoint
//! (address, veth pair, container interface, program, maps, host route),
//! used by `run`, `network connect`, repairs and the test lab alike.

use std::net::Ipv4Addr;

use super::{ContainerIface, DefaultRoute, Engine, EngineError, undo::Undo};
use crate::{
    cluster::ClusterError,
    dataplane::{DataplaneError, LocalEndpoint, RouteTarget},
    model::{Claim, ContainerRecord, EndpointRecord, MacAddr, PublishedPort, ids, ipam, rules},
};

/// What `network connect` may ask for besides the network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// A fixed address (`--ip`); allocated when `None`.
    pub ip: Option<Ipv4Addr>,
    /// Docker's `gw-priority` (`--gw-priority`).
    pub gw_priority: i32,
    /// More names on this network (`--alias`, `--network-alias`).
    pub aliases: Vec<String>,
}

impl ConnectOptions {
    pub fn at(ip: Option<Ipv4Addr>) -> Self {
        Self {
            ip,
            ..Self::default()
        }
    }
}

impl Engine {
    /// `network connect`: a veth into the container, an address, the
    /// dataplane programmed. Returns the endpoint.
    pub fn connect(
        &mut self,
        network: &str,
        container: &str,
        options: ConnectOptions,
    ) -> Result<EndpointRecord, EngineError> {
        let ip = options.ip;
        let net = self.network(network)?.clone();
        let name = self.container_or_adopt(container)?;
        let c = self.state.containers[&name].clone();
        super::containers::refuse_docker(&c)?;
        if c.endpoints.iter().any(|e| e.network_id == net.id) {
            return Err(EngineError::AlreadyConnected(c.name, net.name));
        }
        for alias in &options.aliases {
            rules::check_name(alias)?;
        }
        let used = self.state.used_addresses(&net.id);
        let want = ip;
        let mut ip = match ip {
            Some(ip) => {
                rules::check_endpoint_address(net.subnet, Some(net.gateway), ip)?;
                if used.contains(&ip) {
                    return Err(EngineError::AddressInUse(ip, net.name));
                }
                ip
            }
            None => ipam::allocate(net.subnet, net.ip_range, net.gateway, &used)
                .ok_or_else(|| EngineError::AddressesExhausted(net.name.clone()))?,
        };
        let id = ids::new_id();
        if self.state.is_global(&net) {
            // The cluster store decides: its claims cover every host.
            ip = self.claim_in_cluster(
                &net,
                (want, &used),
                &c.name,
                |_| id.clone(),
                &options.aliases,
            )?;
        }
        let ifname = (0..)
            .map(|n| format!("eth{n}"))
            .find(|n| !c.endpoints.iter().any(|e| &e.ifname == n))
            .expect("unbounded");
        let host_ifname = format!("{}{}", rules::HOST_VETH_PREFIX, &id[..8]);
        let mac = MacAddr::from_ipv4(ip);
        let mtu = self.interface_mtu(&net);
        self.host.add_veth(&host_ifname, &ifname, &c.netns, mtu)?;
        self.undo.push(Undo::Link(host_ifname.clone()));
        self.host.configure_container_iface(
            &c.netns,
            &ContainerIface {
                ifname: ifname.clone(),
                mac,
                ip,
                prefix_len: net.subnet.prefix_len(),
            },
        )?;
        self.plumb_endpoint(&net, ip, mac, &host_ifname)?;
        let endpoint = EndpointRecord {
            id,
            network_id: net.id.clone(),
            ip,
            mac,
            ifname,
            host_ifname,
            gw_priority: options.gw_priority,
            conflict: None,
            published: Vec::new(),
            aliases: options.aliases,
        };
        self.state
            .containers
            .get_mut(&name)
            .expect("present")
            .endpoints
            .push(endpoint.clone());
        self.sync_default_route(&name)?;
        self.sync_resolv_conf(&name)?;
        Ok(endpoint)
    }

    /// The host end of a new endpoint, whoever made the veth (`connect`,
    /// or Docker's `Join`): up, its program attached, the maps and the
    /// host route programmed, each step undoable.
    pub(super) fn plumb_endpoint(
        &mut self,
        net: &crate::model::NetworkRecord,
        ip: Ipv4Addr,
        mac: MacAddr,
        host_ifname: &str,
    ) -> Result<(), EngineError> {
        let (host_ifindex, host_mac) = self.host.link_up(host_ifname)?;
        // The program goes on before the maps make the endpoint reachable:
        // the container answers the first packet that reaches it (an ARP
        // request, a reply), and meeting no program there would leave its
        // ARP unanswered until the kernel's 1 s retry.
        self.remove_leftover_route(net.vni, ip)?;
        self.undo.push(Undo::Endpoint(host_ifindex));
        self.dp.attach_endpoint(host_ifindex)?;
        self.dp.add_local_endpoint(&LocalEndpoint {
            vni: net.vni,
            ip,
            mac,
            host_ifindex,
            host_mac,
        })?;
        self.host.endpoint_route(ip, mac, host_ifname)?;
        Ok(())
    }

    /// Clears the maps' route for an address the store has just handed
    /// out: the entry can only be a leftover (a command that crashed
    /// before its commit, an endpoint whose veth vanished, an address that
    /// moved here from another host), and would refuse the new endpoint.
    pub(super) fn remove_leftover_route(
        &mut self,
        vni: u32,
        ip: Ipv4Addr,
    ) -> Result<(), EngineError> {
        match self.dp.route_target(vni, ip)? {
            Some(RouteTarget::Local(ifindex)) => {
                self.dp.detach_endpoint(ifindex)?;
                match self.dp.remove_local_endpoint(ifindex) {
                    // A route that outlived its endpoint entry.
                    Err(DataplaneError::UnknownEndpoint(_)) => self.dp.remove_route(vni, ip)?,
                    other => other?,
                }
            }
            Some(RouteTarget::Remote(_)) => self.dp.remove_route(vni, ip)?,
            None => {}
        }
        Ok(())
    }

    /// `-p`: publishes `ports` of this host to container `name`, on its
    /// first endpoint on a routable network (replies leave through the
    /// host; an internal network has no way back). A host port may be
    /// published once per protocol.
    pub fn publish_ports(
        &mut self,
        name: &str,
        ports: &[PublishedPort],
    ) -> Result<(), EngineError> {
        let c = self.container(name)?.clone();
        let pos = c
            .endpoints
            .iter()
            .position(|e| {
                self.state
                    .networks
                    .get(&e.network_id)
                    .is_some_and(|n| !n.internal)
            })
            .ok_or_else(|| EngineError::NothingToPublishOn(c.name.clone()))?;
        self.add_published(&c.name, pos, ports)
    }

    /// Adds `ports` to endpoint `pos` of container `name`, refusing host
    /// ports already published (or twice in `ports`).
    pub(super) fn add_published(
        &mut self,
        name: &str,
        pos: usize,
        ports: &[PublishedPort],
    ) -> Result<(), EngineError> {
        let mut taken: Vec<(PublishedPort, String)> = self
            .state
            .containers
            .values()
            .flat_map(|c| {
                c.endpoints
                    .iter()
                    .flat_map(move |e| e.published.iter().map(move |p| (*p, c.name.clone())))
            })
            .collect();
        for p in ports {
            let clash = taken.iter().find(|(q, _)| {
                q.proto == p.proto
                    && q.host_port == p.host_port
                    && (q.host_ip.is_none() || p.host_ip.is_none() || q.host_ip == p.host_ip)
            });
            if let Some((q, owner)) = clash {
                return Err(EngineError::PortPublished(q.to_string(), owner.clone()));
            }
            taken.push((*p, name.to_owned()));
        }
        self.state
            .containers
            .get_mut(name)
            .expect("present")
            .endpoints[pos]
            .published
            .extend_from_slice(ports);
        Ok(())
    }

    /// `network disconnect`: removes the interface and frees the address.
    pub fn disconnect(&mut self, network: &str, container: &str) -> Result<(), EngineError> {
        let net = self.network(network)?.clone();
        let name = self.container(container)?.name.clone();
        super::containers::refuse_docker(&self.state.containers[&name])?;
        let c = self.state.containers.get_mut(&name).expect("present");
        let Some(pos) = c.endpoints.iter().position(|e| e.network_id == net.id) else {
            return Err(EngineError::NotConnected(name, net.name));
        };
        let ep = c.endpoints.remove(pos);
        self.release_claim(&name, &ep)?;
        self.release_endpoint(&ep)?;
        self.sync_default_route(&name)?;
        self.sync_resolv_conf(&name)?;
        Ok(())
    }

    /// The default route a container should have, as Docker picks it:
    /// among its endpoints on routable (not internal) networks, the
    /// highest `gw-priority`, then the network name that sorts first.
    pub(super) fn wanted_default_route(&self, c: &ContainerRecord) -> Option<DefaultRoute> {
        c.endpoints
            .iter()
            .filter_map(|ep| {
                let net = self.state.networks.get(&ep.network_id)?;
                (!net.internal).then_some((ep, net))
            })
            .min_by(|(a, an), (b, bn)| {
                b.gw_priority
                    .cmp(&a.gw_priority)
                    .then_with(|| an.name.cmp(&bn.name))
            })
            .map(|(ep, net)| DefaultRoute {
                gateway: net.gateway,
                ifname: ep.ifname.clone(),
            })
    }

    /// Moves a container's default route to the network that should hold
    /// it, unless someone else's route is there (one not through any of
    /// the container's interfaces from us, e.g. in an adopted namespace):
    /// that one is left alone. Returns whether it changed the route.
    pub(super) fn sync_default_route(&mut self, name: &str) -> Result<bool, EngineError> {
        let Some(c) = self.state.containers.get(name) else {
            return Ok(false);
        };
        // Docker sets its containers' routes itself.
        if c.docker {
            return Ok(false);
        }
        let wanted = self.wanted_default_route(c);
        let netns = c.netns.clone();
        let current = self.host.default_route(&netns)?;
        let foreign = current
            .as_ref()
            .is_some_and(|r| !c.endpoints.iter().any(|ep| ep.ifname == r.ifname));
        if foreign || current == wanted {
            return Ok(false);
        }
        self.host.set_default_route(&netns, wanted.as_ref())?;
        self.undo.push(Undo::DefaultRoute {
            netns,
            previous: current,
        });
        Ok(true)
    }

    /// Points a container's resolv.conf at the resolver on the gateway of
    /// its first network (the daemon answers there; see `daemon::dns`),
    /// then at the host's resolvers for when no daemon runs; or removes it
    /// when the container is on no network. Namespaces that are not ours
    /// keep whatever they have.
    pub(super) fn sync_resolv_conf(&mut self, name: &str) -> Result<(), EngineError> {
        let Some(c) = self.state.containers.get(name) else {
            return Ok(());
        };
        if c.docker || !c.owned_netns {
            return Ok(());
        }
        let wanted = c
            .endpoints
            .iter()
            .find_map(|e| self.state.networks.get(&e.network_id))
            .map(|n| n.gateway);
        let netns = c.netns.clone();
        let wanted =
            wanted.map(|gw| crate::model::names::resolv_conf(gw, &self.host.host_resolvers()));
        let current = self.host.resolv_conf(&netns)?;
        if current == wanted {
            return Ok(());
        }
        self.host.set_resolv_conf(&netns, wanted.as_deref())?;
        self.undo.push(Undo::ResolvConf {
            netns,
            previous: current,
        });
        Ok(())
    }

    /// Claims `want` (or the lowest free address not in `used`) of global
    /// network `net` in the cluster store, for `container`'s endpoint
    /// `endpoint_id(address)`, undoably. The store's verdict covers every
    /// host.
    pub(super) fn claim_in_cluster(
        &mut self,
        net: &crate::model::NetworkRecord,
        (want, used): (Option<Ipv4Addr>, &std::collections::BTreeSet<Ipv4Addr>),
        container: &str,
        endpoint_id: impl Fn(Ipv4Addr) -> String,
        aliases: &[String],
    ) -> Result<Ipv4Addr, EngineError> {
        let host = self
            .state
            .advertise_ip()
            .ok_or(EngineError::NoAdvertiseAddress)?;
        let claim = |ip| Claim {
            network_id: net.id.clone(),
            ip,
            mac: MacAddr::from_ipv4(ip),
            host,
            container: container.to_owned(),
            endpoint_id: endpoint_id(ip),
            aliases: aliases.to_vec(),
        };
        let ip = match self.cluster()?.claim_address(net, want, used, claim) {
            Ok(ip) => ip,
            Err(ClusterError::AddressTaken(ip)) => {
                return Err(EngineError::AddressInUse(ip, net.name.clone()));
            }
            Err(ClusterError::Exhausted(name)) => {
                return Err(EngineError::AddressesExhausted(name));
            }
            Err(e) => return Err(e.into()),
        };
        self.undo.push(Undo::ClusterClaim(net.id.clone(), ip, host));
        Ok(ip)
    }

    /// The claim this host holds in the cluster store for endpoint `ep` of
    /// `container`, with its network: none off global networks, and none
    /// for an endpoint in conflict (its address is another host's).
    fn held_claim(
        &self,
        container: &str,
        ep: &EndpointRecord,
    ) -> Result<Option<(crate::model::NetworkRecord, Claim)>, EngineError> {
        let Some(net) = self.state.networks.get(&ep.network_id) else {
            return Ok(None);
        };
        if !self.state.is_global(net) || ep.conflict.is_some() {
            return Ok(None);
        }
        let host = self
            .state
            .advertise_ip()
            .ok_or(EngineError::NoAdvertiseAddress)?;
        let claim = Claim {
            network_id: net.id.clone(),
            ip: ep.ip,
            mac: ep.mac,
            host,
            container: container.to_owned(),
            endpoint_id: ep.id.clone(),
            aliases: ep.aliases.clone(),
        };
        Ok(Some((net.clone(), claim)))
    }

    /// Writes an endpoint's claim again under the container's new name
    /// (global networks only), undoably.
    pub(super) fn rename_claim(
        &mut self,
        old: &str,
        new: &str,
        ep: &EndpointRecord,
    ) -> Result<(), EngineError> {
        let Some((net, claim)) = self.held_claim(old, ep)? else {
            return Ok(());
        };
        let renamed = Claim {
            container: new.to_owned(),
            ..claim.clone()
        };
        if !self.cluster()?.put_claim(&renamed)? {
            return Err(EngineError::AddressInUse(ep.ip, net.name));
        }
        self.undo.push(Undo::ClusterReleased(claim));
        Ok(())
    }

    /// Gives an endpoint's address back to the cluster store (global
    /// networks only; only what this host holds), undoably.
    pub(super) fn release_claim(
        &mut self,
        container: &str,
        ep: &EndpointRecord,
    ) -> Result<(), EngineError> {
        let Some((net, claim)) = self.held_claim(container, ep)? else {
            return Ok(());
        };
        if self
            .cluster()?
            .release_address(&net.id, ep.ip, claim.host)?
        {
            self.undo.push(Undo::ClusterReleased(claim));
        }
        Ok(())
    }

    /// Takes an endpoint out of the dataplane (undoably) and deletes its
    /// veth (which cannot be undone, so it comes last).
    pub(super) fn release_endpoint(&mut self, ep: &EndpointRecord) -> Result<(), EngineError> {
        self.unprogram_endpoint(ep)?;
        self.host.delete_link(&ep.host_ifname)?;
        Ok(())
    }

    /// Detaches an endpoint's program and removes its map entries,
    /// recording how to put them back. The veth may be gone already (its
    /// namespace deleted behind our back).
    pub(super) fn unprogram_endpoint(&mut self, ep: &EndpointRecord) -> Result<(), EngineError> {
        let Some((ifindex, host_mac)) = self.host.link(&ep.host_ifname)? else {
            return Ok(());
        };
        let linked = self.dp.endpoint_linked(ifindex);
        self.dp.detach_endpoint(ifindex)?;
        match self.remove_entries(ep, ifindex, host_mac, linked) {
            Ok(true) => {}
            Ok(false) if linked => self.undo.push(Undo::Detached(ifindex)),
            Ok(false) => {}
            Err(e) => {
                if linked {
                    let _ = self.dp.attach_endpoint(ifindex);
                }
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Removes an endpoint's map entries on `ifindex`, recording how to add
    /// them back (and attach its program again, when `linked`); false when
    /// there were none.
    pub(super) fn remove_entries(
        &mut self,
        ep: &EndpointRecord,
        ifindex: u32,
        host_mac: MacAddr,
        linked: bool,
    ) -> Result<bool, DataplaneError> {
        let vni = self.state.networks.get(&ep.network_id).map_or(0, |n| n.vni);
        match self.dp.remove_local_endpoint(ifindex) {
            Ok(()) => {
                self.undo.push(Undo::RemovedEndpoint {
                    ep: LocalEndpoint {
                        vni,
                        ip: ep.ip,
                        mac: ep.mac,
                        host_ifindex: ifindex,
                        host_mac,
                    },
                    linked,
                });
                Ok(true)
            }
            Err(DataplaneError::UnknownEndpoint(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
