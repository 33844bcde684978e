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

    /// `ip route add default via GATEWAY dev OIF`; EEXIST when there is
    /// one already.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr, oif: u32) -> Result<(), HostError> {
        let mut m = route(Ipv4Addr::UNSPECIFIED, 0, oif, RouteScope::Universe);
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        let op = || format!("adding a default route via {gateway}");
        if self.create(RouteNetlinkMessage::NewRoute(m), Create::New, op)? {
            Ok(())
        } else {
            Err(HostError::Netlink {
                op: op(),
                source: std::io::Error::from_raw_os_error(libc::EEXIST),
            })
        }
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
