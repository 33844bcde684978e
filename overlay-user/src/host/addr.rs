//! IPv4 addresses on interfaces.

use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressMessage},
};

use super::{
    HostError,
    netlink::{Create, Netlink},
};

/// An address on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// `IFA_LABEL` (`lo:overlay`), when it has one.
    pub label: Option<String>,
}

fn message(index: u32, ip: Ipv4Addr, prefix_len: u8) -> AddressMessage {
    let mut m = AddressMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.prefix_len = prefix_len;
    m.header.index = index;
    m.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
    m.attributes.push(AddressAttribute::Address(IpAddr::V4(ip)));
    if prefix_len < 31 {
        let broadcast = u32::from(ip) | (u32::MAX >> prefix_len);
        m.attributes
            .push(AddressAttribute::Broadcast(Ipv4Addr::from(broadcast)));
    }
    m
}

impl Netlink {
    /// Adds `ip/prefix_len` to interface `index`; false when it was there
    /// already (EEXIST).
    pub fn add_address(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<bool, HostError> {
        self.add_labelled_address(index, ip, prefix_len, None)
    }

    /// As [`Self::add_address`], with an `IFA_LABEL` (the interface's name,
    /// a colon, a tag: how `ip addr` shows whose address it is).
    pub fn add_labelled_address(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        prefix_len: u8,
        label: Option<&str>,
    ) -> Result<bool, HostError> {
        let mut m = message(index, ip, prefix_len);
        if let Some(l) = label {
            m.attributes.push(AddressAttribute::Label(l.to_owned()));
        }
        self.create(RouteNetlinkMessage::NewAddress(m), Create::New, || {
            format!("adding address {ip}/{prefix_len} to interface {index}")
        })
    }

    /// Removes `ip/prefix_len` from interface `index`; false when it was
    /// not there (EADDRNOTAVAIL).
    pub fn delete_address(
        &mut self,
        index: u32,
        ip: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<bool, HostError> {
        match self.change(
            RouteNetlinkMessage::DelAddress(message(index, ip, prefix_len)),
            || format!("removing address {ip}/{prefix_len} from interface {index}"),
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::EADDRNOTAVAIL) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every IPv4 address of the socket's namespace.
    pub fn addresses(&mut self) -> Result<Vec<Address>, HostError> {
        let mut query = AddressMessage::default();
        query.header.family = AddressFamily::Inet;
        let replies = self.dump(RouteNetlinkMessage::GetAddress(query), || {
            "listing addresses".into()
        })?;
        Ok(replies
            .iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(m) => {
                    let ip = m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    })?;
                    let label = m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Label(l) => Some(l.clone()),
                        _ => None,
                    });
                    Some(Address {
                        index: m.header.index,
                        ip,
                        prefix_len: m.header.prefix_len,
                        label,
                    })
                }
                _ => None,
            })
            .collect())
    }
}
