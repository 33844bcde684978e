//! Routes and neighbour entries.

use std::net::Ipv4Addr;

use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState},
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    },
};

use super::{
    HostError,
    netlink::{Create, Netlink},
};
use crate::model::MacAddr;

/// An IPv4 route of the main table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index; `None` for multipath and blackhole routes.
    pub oif: Option<u32>,
}

fn route(dst: Ipv4Addr, prefix_len: u8, oif: u32, scope: RouteScope) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = prefix_len;
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Boot;
    m.header.scope = scope;
    m.header.kind = RouteType::Unicast;
    if prefix_len > 0 {
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
    }
    m.attributes.push(RouteAttribute::Oif(oif));
    m
}

impl Netlink {
    /// `ip route replace IP/32 dev OIF scope link`.
    pub fn replace_host_route(&mut self, ip: Ipv4Addr, oif: u32) -> Result<(), HostError> {
        self.create(
            RouteNetlinkMessage::NewRoute(route(ip, 32, oif, RouteScope::Link)),
            Create::Replace,
            || format!("routing {ip}/32 to interface {oif}"),
        )
        .map(drop)
    }

    /// `ip route del IP/32`; false when there was none (ESRCH).
    pub fn delete_host_route(&mut self, ip: Ipv4Addr) -> Result<bool, HostError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.destination_prefix_length = 32;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.scope = RouteScope::NoWhere;
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet(ip)));
        match self.change(RouteNetlinkMessage::DelRoute(m), || {
            format!("removing the route to {ip}/32")
        }) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `ip route replace default via GATEWAY dev OIF`.
    pub fn replace_default_route(&mut self, gateway: Ipv4Addr, oif: u32) -> Result<(), HostError> {
        let mut m = route(Ipv4Addr::UNSPECIFIED, 0, oif, RouteScope::Universe);
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.create(RouteNetlinkMessage::NewRoute(m), Create::Replace, || {
            format!("routing by default via {gateway}")
        })
        .map(drop)
    }

    /// `ip route del default`; false when there was none (ESRCH).
    pub fn delete_default_route(&mut self) -> Result<bool, HostError> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.scope = RouteScope::NoWhere;
        match self.change(RouteNetlinkMessage::DelRoute(m), || {
            "removing the default route".into()
        }) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every IPv4 route of the main table.
    pub fn routes(&mut self) -> Result<Vec<Route>, HostError> {
        let mut query = RouteMessage::default();
        query.header.address_family = AddressFamily::Inet;
        let replies = self.dump(RouteNetlinkMessage::GetRoute(query), || {
            "listing routes".into()
        })?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewRoute(m)
                    if m.header.table == RouteHeader::RT_TABLE_MAIN =>
                {
                    let mut route = Route {
                        dst: Ipv4Addr::UNSPECIFIED,
                        prefix_len: m.header.destination_prefix_length,
                        gateway: None,
                        oif: None,
                    };
                    for a in &m.attributes {
                        match a {
                            RouteAttribute::Destination(RouteAddress::Inet(ip)) => route.dst = *ip,
                            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => {
                                route.gateway = Some(*ip);
                            }
                            RouteAttribute::Oif(i) => route.oif = Some(*i),
                            _ => {}
                        }
                    }
                    Some(route)
                }
                _ => None,
            })
            .collect())
    }

    /// `ip neigh replace IP lladdr MAC dev INDEX nud permanent`.
    pub fn replace_neighbour(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        mac: MacAddr,
    ) -> Result<(), HostError> {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.ifindex = index;
        m.header.state = NeighbourState::Permanent;
        m.header.kind = RouteType::Unspec;
        m.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)));
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        self.create(
            RouteNetlinkMessage::NewNeighbour(m),
            Create::Replace,
            || format!("adding neighbour {ip} at {mac} on interface {index}"),
        )
        .map(drop)
    }
}
