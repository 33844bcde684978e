//! Network interfaces: veth pairs, names, MACs, MTUs and state.

use std::{ffi::CString, io, os::fd::AsRawFd as _};

use netlink_packet_route::{
    RouteNetlinkMessage,
    link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage},
};

use super::{
    HostError,
    netlink::{Create, Netlink},
    netns,
};
use crate::model::MacAddr;

/// What the kernel reports of an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    pub up: bool,
}

/// One end of a veth pair: its name, the namespace it goes into (`None`:
/// the socket's) and its MTU (`None`: the default).
#[derive(Clone, Copy, Debug)]
pub struct VethEnd<'a> {
    pub name: &'a str,
    pub netns: Option<&'a str>,
    pub mtu: Option<u32>,
}

/// An interface name the kernel accepts: 1-15 bytes, no `/`, `:` or
/// white space (and so safe in `/proc/sys/net/.../NAME` paths).
pub fn check_name(name: &str) -> Result<(), HostError> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if ok {
        Ok(())
    } else {
        Err(HostError::InvalidLinkName(name.to_owned()))
    }
}

/// ifindex of `name` in the calling thread's namespace.
pub fn index_of(name: &str) -> Result<u32, HostError> {
    check_name(name)?;
    let c = CString::new(name).map_err(|_| HostError::InvalidLinkName(name.to_owned()))?;
    // SAFETY: valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        let err = io::Error::last_os_error();
        return Err(if err.raw_os_error() == Some(libc::ENODEV) {
            HostError::NoSuchLink(name.to_owned())
        } else {
            HostError::Io {
                op: "looking up interface",
                what: name.to_owned(),
                source: err,
            }
        });
    }
    Ok(index)
}

/// Name of interface `index` in the calling thread's namespace.
pub fn name_of(index: u32) -> Result<String, HostError> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(HostError::Io {
            op: "looking up interface index",
            what: index.to_string(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

fn from_message(m: &LinkMessage) -> Link {
    let mut link = Link {
        index: m.header.index,
        name: String::new(),
        mac: None,
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
    };
    for attr in &m.attributes {
        match attr {
            LinkAttribute::IfName(n) => link.name.clone_from(n),
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::Address(a) if a.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(a);
                link.mac = Some(MacAddr(mac));
            }
            _ => {}
        }
    }
    link
}

fn links_of(replies: &[RouteNetlinkMessage]) -> Vec<Link> {
    replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewLink(m) => Some(from_message(m)),
            _ => None,
        })
        .collect()
}

impl Netlink {
    /// Every interface of the socket's namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, HostError> {
        let replies = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()), || {
            "listing interfaces".into()
        })?;
        Ok(links_of(&replies))
    }

    /// Interface `name`, or `None` when there is none.
    pub fn link(&mut self, name: &str) -> Result<Option<Link>, HostError> {
        check_name(name)?;
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.get(RouteNetlinkMessage::GetLink(m), || {
            format!("looking up interface {name}")
        }) {
            Ok(replies) => Ok(links_of(&replies).into_iter().next()),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Interface `name`, which must exist.
    pub fn require_link(&mut self, name: &str) -> Result<Link, HostError> {
        self.link(name)?
            .ok_or_else(|| HostError::NoSuchLink(name.to_owned()))
    }

    /// Creates a veth pair with both ends named, placed and sized in one
    /// request. EEXIST when a name is taken.
    pub fn add_veth(&mut self, a: VethEnd<'_>, b: VethEnd<'_>) -> Result<(), HostError> {
        check_name(a.name)?;
        check_name(b.name)?;
        // The namespace files stay open until the request is answered.
        let ns_a = a.netns.map(netns::open).transpose()?;
        let ns_b = b.netns.map(netns::open).transpose()?;
        let end = |e: &VethEnd<'_>, ns: Option<&std::fs::File>| {
            let mut m = LinkMessage::default();
            m.attributes.push(LinkAttribute::IfName(e.name.to_owned()));
            if let Some(mtu) = e.mtu {
                m.attributes.push(LinkAttribute::Mtu(mtu));
            }
            if let Some(f) = ns {
                m.attributes.push(LinkAttribute::NetNsFd(f.as_raw_fd()));
            }
            m
        };
        let mut m = end(&a, ns_a.as_ref());
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(end(&b, ns_b.as_ref())))),
        ]));
        let created = self.create(RouteNetlinkMessage::NewLink(m), Create::New, || {
            format!("creating veth pair {} / {}", a.name, b.name)
        })?;
        if created {
            Ok(())
        } else {
            Err(HostError::Netlink {
                op: format!("creating veth pair {} / {}", a.name, b.name),
                source: io::Error::from_raw_os_error(libc::EEXIST),
            })
        }
    }

    /// Deletes interface `name` (a veth takes its peer with it). False
    /// when there was none.
    pub fn delete_link(&mut self, name: &str) -> Result<bool, HostError> {
        check_name(name)?;
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.change(RouteNetlinkMessage::DelLink(m), || {
            format!("deleting interface {name}")
        }) {
            Ok(()) => Ok(true),
            Err(e) if e.errno() == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Brings interface `index` up.
    pub fn set_up(&mut self, index: u32) -> Result<(), HostError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags |= LinkFlags::Up;
        m.header.change_mask |= LinkFlags::Up;
        self.change(RouteNetlinkMessage::SetLink(m), || {
            format!("bringing interface {index} up")
        })
    }

    /// Sets the MAC address of interface `index`.
    pub fn set_mac(&mut self, index: u32, mac: MacAddr) -> Result<(), HostError> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        self.change(RouteNetlinkMessage::SetLink(m), || {
            format!("setting the MAC of interface {index} to {mac}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        for good in ["eth0", "ovl0123abcd", "a", "x-y_z.1", "123456789012345"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "1234567890123456",
            "../x",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
