//! Endpoints and peers: local endpoints (keyed by their host-side veth),
//! routes ((VNI, IP) -> local veth or remote host) and the hosts allowed
//! to send each VNI.

use std::net::Ipv4Addr;

use overlay_common::{EndpointInfo, PeerKey, ROUTE_LOCAL, ROUTE_REMOTE, RouteKey, RouteValue};

use super::{
    Dataplane, DataplaneError, LocalEndpoint, Network, RemoteEndpoint, RouteTarget, be, not_found,
};
use crate::model::rules;

fn target(r: &RouteValue) -> RouteTarget {
    if r.kind == ROUTE_LOCAL {
        RouteTarget::Local(r.ifindex)
    } else {
        RouteTarget::Remote(Ipv4Addr::from(u32::from_be(r.remote_ip)))
    }
}

impl Dataplane {
    fn check_endpoint_address(&self, vni: u32, ip: Ipv4Addr) -> Result<Network, DataplaneError> {
        rules::check_vni(vni)?;
        let net = self.network(vni)?;
        rules::check_endpoint_address(net.subnet, net.gateway, ip)?;
        Ok(net)
    }

    /// Every route: (VNI, address, where it leads).
    pub fn routes(&self) -> Result<Vec<(u32, Ipv4Addr, RouteTarget)>, DataplaneError> {
        self.routes
            .iter()
            .map(|r| {
                r.map(|(k, v)| {
                    let ip = Ipv4Addr::from(u32::from_be(k.ip));
                    (k.vni, ip, target(&v))
                })
            })
            .collect::<Result<_, _>>()
            .map_err(DataplaneError::map("listing routes"))
    }

    /// Every (peer host, VNI) allowed to send.
    pub fn peers(&self) -> Result<Vec<(Ipv4Addr, u32)>, DataplaneError> {
        self.peers
            .keys()
            .map(|k| k.map(|k| (Ipv4Addr::from(u32::from_be(k.ip)), k.vni)))
            .collect::<Result<_, _>>()
            .map_err(DataplaneError::map("listing peers"))
    }

    /// Where `(vni, ip)` is routed, if anywhere.
    pub fn route_target(
        &self,
        vni: u32,
        ip: Ipv4Addr,
    ) -> Result<Option<RouteTarget>, DataplaneError> {
        Ok(self.route(vni, ip)?.as_ref().map(target))
    }

    fn route(&self, vni: u32, ip: Ipv4Addr) -> Result<Option<RouteValue>, DataplaneError> {
        match self.routes.get(&RouteKey { vni, ip: be(ip) }, 0) {
            Ok(v) => Ok(Some(v)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(DataplaneError::map("reading a route")(e)),
        }
    }

    /// Adds an endpoint on this host (its veth must already exist).
    pub fn add_local_endpoint(&mut self, ep: &LocalEndpoint) -> Result<(), DataplaneError> {
        self.check_endpoint_address(ep.vni, ep.ip)?;
        rules::check_mac(ep.mac)?;
        rules::check_mac(ep.host_mac)?;
        if ep.host_ifindex == 0 {
            return Err(DataplaneError::InvalidIfindex);
        }
        if self.route(ep.vni, ep.ip)?.is_some() {
            return Err(DataplaneError::AddressInUse {
                ip: ep.ip,
                vni: ep.vni,
            });
        }
        if self.endpoints.get(&ep.host_ifindex, 0).is_ok() {
            return Err(DataplaneError::EndpointExists(ep.host_ifindex));
        }
        let key = RouteKey {
            vni: ep.vni,
            ip: be(ep.ip),
        };
        let counter_slot = self.counter_slot(ep.vni)?;
        let route = RouteValue {
            kind: ROUTE_LOCAL,
            _pad0: 0,
            mac: ep.mac.0,
            ifindex: ep.host_ifindex,
            remote_ip: 0,
            counter_slot,
            host_slot: 0,
        };
        let info = EndpointInfo {
            vni: ep.vni,
            ip: be(ep.ip),
            mac: ep.mac.0,
            host_mac: ep.host_mac.0,
            flags: 0,
            counter_slot,
        };
        // The endpoint's own entry first: the route makes it reachable, and
        // whatever it sends back must find its entry.
        self.put_endpoint(ep.host_ifindex, &info)
            .map_err(DataplaneError::map(format!("adding endpoint {}", ep.ip)))?;
        if let Err(e) = self.put_route(&key, &route) {
            let _ = self.delete_endpoint(ep.host_ifindex);
            return Err(DataplaneError::map(format!("adding route for {}", ep.ip))(
                e,
            ));
        }
        Ok(())
    }

    /// Removes the endpoint on host-side veth `host_ifindex`.
    pub fn remove_local_endpoint(&mut self, host_ifindex: u32) -> Result<(), DataplaneError> {
        let info = match self.endpoints.get(&host_ifindex, 0) {
            Ok(info) => info,
            Err(e) if not_found(&e) => {
                return Err(DataplaneError::UnknownEndpoint(host_ifindex));
            }
            Err(e) => return Err(DataplaneError::map("reading an endpoint")(e)),
        };
        self.delete_endpoint(host_ifindex)
            .map_err(DataplaneError::map("removing an endpoint"))?;
        let key = RouteKey {
            vni: info.vni,
            ip: info.ip,
        };
        match self.delete_route(&key) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(DataplaneError::map("removing an endpoint route")(e)),
        }
    }

    /// Adds (or moves) an endpoint that lives on another host.
    pub fn add_remote_endpoint(&mut self, ep: &RemoteEndpoint) -> Result<(), DataplaneError> {
        self.check_endpoint_address(ep.vni, ep.ip)?;
        rules::check_mac(ep.mac)?;
        rules::check_host_address(ep.host)?;
        if let Some(existing) = self.route(ep.vni, ep.ip)?
            && existing.kind == ROUTE_LOCAL
        {
            return Err(DataplaneError::AddressInUse {
                ip: ep.ip,
                vni: ep.vni,
            });
        }
        let host_slot = self.host_slot(ep.host)?;
        let route = RouteValue {
            kind: ROUTE_REMOTE,
            _pad0: 0,
            mac: ep.mac.0,
            ifindex: 0,
            remote_ip: be(ep.host),
            counter_slot: 0,
            host_slot,
        };
        self.put_route(
            &RouteKey {
                vni: ep.vni,
                ip: be(ep.ip),
            },
            &route,
        )
        .map_err(DataplaneError::map(format!(
            "adding remote endpoint {}",
            ep.ip
        )))
    }

    /// Removes a remote endpoint.
    pub fn remove_remote_endpoint(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        match self.route(vni, ip)? {
            Some(r) if r.kind == ROUTE_REMOTE => self
                .delete_route(&RouteKey { vni, ip: be(ip) })
                .map_err(DataplaneError::map(format!(
                    "removing remote endpoint {ip}"
                ))),
            _ => Err(DataplaneError::UnknownAddress { ip, vni }),
        }
    }

    /// Removes whatever route `(vni, ip)` has (local or remote); absent is
    /// fine. For repairs, where an entry may have outlived its owner.
    pub fn remove_route(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        match self.delete_route(&RouteKey { vni, ip: be(ip) }) {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(DataplaneError::map(format!("removing route {ip}"))(e)),
        }
    }

    /// Allows the host at underlay address `host` to send us `vni`.
    pub fn add_peer(&mut self, host: Ipv4Addr, vni: u32) -> Result<(), DataplaneError> {
        rules::check_host_address(host)?;
        self.network(vni)?;
        self.put_peer(&PeerKey { ip: be(host), vni })
            .map_err(DataplaneError::map(format!("adding peer {host}")))
    }

    /// Revokes `host`'s permission to send `vni`.
    pub fn remove_peer(&mut self, host: Ipv4Addr, vni: u32) -> Result<(), DataplaneError> {
        self.delete_peer(&PeerKey { ip: be(host), vni })
            .map_err(DataplaneError::map(format!("removing peer {host}")))
    }
}
