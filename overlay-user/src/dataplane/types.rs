//! The dataplane's own view of what it is programmed with: plain values
//! that the map layouts in `overlay-common` are built from.

use std::{collections::BTreeMap, net::Ipv4Addr};

use ipnet::Ipv4Net;
use overlay_common::{
    Config, Counter, CounterValue, DropReason, EndpointInfo, GuardKey, NetworkInfo, PeerKey,
    RouteKey, RouteValue, VXLAN_PORT,
};

use crate::model::MacAddr;

/// A network this host serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    pub vni: u32,
    pub subnet: Ipv4Net,
    pub gateway: Option<Ipv4Addr>,
    /// No gateway path: nothing outside the subnet is reachable.
    pub internal: bool,
}

/// An endpoint (container interface) on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalEndpoint {
    pub vni: u32,
    pub ip: Ipv4Addr,
    /// MAC of the container-side interface.
    pub mac: MacAddr,
    /// ifindex of the host-side veth (in the host's namespace).
    pub host_ifindex: u32,
    /// MAC of the host-side veth (answers ARP for the gateway).
    pub host_mac: MacAddr,
}

/// An endpoint on another host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteEndpoint {
    pub vni: u32,
    pub ip: Ipv4Addr,
    pub mac: MacAddr,
    /// Underlay address of the host that owns it.
    pub host: Ipv4Addr,
}

/// Where the route of an overlay address leads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteTarget {
    /// An endpoint here, by host-side ifindex.
    Local(u32),
    /// An endpoint on the host at this underlay address.
    Remote(Ipv4Addr),
}

/// This host's underlay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Underlay {
    pub ifindex: u32,
    pub ip: Ipv4Addr,
    pub vxlan_port: u16,
    /// Outer UDP source port range (inclusive), for ECMP entropy.
    pub src_ports: (u16, u16),
}

impl Underlay {
    /// The kernel's defaults: port 4789, sources from the local port range.
    pub const fn new(ifindex: u32, ip: Ipv4Addr) -> Self {
        Self {
            ifindex,
            ip,
            vxlan_port: VXLAN_PORT,
            src_ports: (32768, 60999),
        }
    }
}

/// Counter totals over all CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub outcomes: BTreeMap<&'static str, CounterValue>,
    pub drops: BTreeMap<&'static str, CounterValue>,
}

impl Counters {
    pub fn outcome(&self, c: Counter) -> CounterValue {
        self.outcomes.get(c.name()).copied().unwrap_or_default()
    }

    pub fn drop(&self, r: DropReason) -> CounterValue {
        self.drops.get(r.name()).copied().unwrap_or_default()
    }

    /// Per-slot difference `self - earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        let diff = |now: &BTreeMap<&'static str, CounterValue>,
                    then: &BTreeMap<&'static str, CounterValue>| {
            now.iter()
                .map(|(k, v)| {
                    let t = then.get(k).copied().unwrap_or_default();
                    (
                        *k,
                        CounterValue {
                            packets: v.packets - t.packets,
                            bytes: v.bytes - t.bytes,
                        },
                    )
                })
                .collect()
        };
        Self {
            outcomes: diff(&self.outcomes, &earlier.outcomes),
            drops: diff(&self.drops, &earlier.drops),
        }
    }
}

/// Every map entry except counters, sorted: what the dataplane is
/// programmed with. Equal snapshots mean nothing was written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    pub config: Option<Config>,
    pub networks: Vec<(u32, NetworkInfo)>,
    /// (prefix length, address in network order) -> VNI.
    pub subnets: Vec<((u32, u32), u32)>,
    pub endpoints: Vec<(u32, EndpointInfo)>,
    pub routes: Vec<(RouteKey, RouteValue)>,
    pub peers: Vec<PeerKey>,
    pub guards: Vec<GuardKey>,
}
