//! The engine's two seams: what it needs of the dataplane ([`Datapath`])
//! and of the host's network ([`HostNet`]). The real implementations are
//! [`Dataplane`] and [`System`]; the engine's unit tests put fakes here.

use std::{collections::BTreeMap, net::Ipv4Addr, path::Path};

use ipnet::Ipv4Net;
use overlay_common::{EndpointInfo, MonitorState, NameKey, NameValue, NextHop, PathMtu};

use crate::{
    dataplane::{
        Counters, Dataplane, DataplaneError, Guard, LocalEndpoint, Network, ProgRun,
        RemoteEndpoint, RouteTarget, Underlay,
    },
    host::{self, HostError, filter::Ruleset, link::VethEnd, netlink::Netlink},
    model::{AttachedMode, DecapMode, MacAddr, ProcessRef},
};

/// The kernel programs and maps, as the engine uses them.
pub trait Datapath {
    fn add_network(&mut self, net: &Network) -> Result<(), DataplaneError>;
    /// Removes a network with its remote routes and peers.
    fn remove_network(&mut self, vni: u32) -> Result<(), DataplaneError>;
    /// VNIs of the programmed networks.
    fn network_vnis(&self) -> Result<Vec<u32>, DataplaneError>;
    /// Programmed local endpoints by host-side ifindex.
    fn local_endpoints(&self) -> Result<BTreeMap<u32, EndpointInfo>, DataplaneError>;
    fn add_local_endpoint(&mut self, ep: &LocalEndpoint) -> Result<(), DataplaneError>;
    fn remove_local_endpoint(&mut self, host_ifindex: u32) -> Result<(), DataplaneError>;
    fn add_remote_endpoint(&mut self, ep: &RemoteEndpoint) -> Result<(), DataplaneError>;
    fn remove_remote_endpoint(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DataplaneError>;
    /// Removes whatever route `(vni, ip)` has; absent is fine.
    fn remove_route(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DataplaneError>;
    fn route_target(&self, vni: u32, ip: Ipv4Addr) -> Result<Option<RouteTarget>, DataplaneError>;
    /// Every route: (VNI, address, where it leads).
    fn routes(&self) -> Result<Vec<(u32, Ipv4Addr, RouteTarget)>, DataplaneError>;
    /// Every (peer host, VNI).
    fn peers(&self) -> Result<Vec<(Ipv4Addr, u32)>, DataplaneError>;
    fn add_peer(&mut self, host: Ipv4Addr, vni: u32) -> Result<(), DataplaneError>;
    fn remove_peer(&mut self, host: Ipv4Addr, vni: u32) -> Result<(), DataplaneError>;
    fn attach_endpoint(&mut self, ifindex: u32) -> Result<(), DataplaneError>;
    /// Detaches the endpoint program; absent is fine.
    fn detach_endpoint(&mut self, ifindex: u32) -> Result<(), DataplaneError>;
    fn endpoint_linked(&self, ifindex: u32) -> bool;
    fn set_underlay(&mut self, underlay: &Underlay) -> Result<(), DataplaneError>;
    fn attach_underlay(
        &mut self,
        ifindex: u32,
        mode: DecapMode,
    ) -> Result<AttachedMode, DataplaneError>;
    fn detach_underlay(&mut self, ifindex: u32) -> Result<(), DataplaneError>;
    fn underlay_linked(&self, ifindex: u32) -> bool;
    /// Destinations containers may not reach through this host.
    fn guards(&self) -> Result<Vec<Guard>, DataplaneError>;
    fn add_guard(&mut self, guard: Guard) -> Result<(), DataplaneError>;
    fn remove_guard(&mut self, guard: Guard) -> Result<(), DataplaneError>;
    /// Names the endpoint program answers.
    fn names(&self) -> Result<BTreeMap<NameKey, NameValue>, DataplaneError>;
    fn set_name(&mut self, key: &NameKey, value: &NameValue) -> Result<(), DataplaneError>;
    fn remove_name(&mut self, key: &NameKey) -> Result<(), DataplaneError>;
    // Read-only views for `status` and `stats`.
    fn pin_dir(&self) -> &Path;
    fn links(&self) -> Vec<String>;
    fn counters(&self) -> Result<Counters, DataplaneError>;
    fn network_counters(&self, vni: u32) -> Result<Counters, DataplaneError>;
    fn next_hops(&self) -> Result<Vec<(Ipv4Addr, NextHop)>, DataplaneError>;
    fn path_mtus(&self) -> Result<Vec<(Ipv4Addr, PathMtu)>, DataplaneError>;
    /// Drop events reported, held back over the rate, and lost.
    fn monitor_tallies(&self) -> Result<MonitorState, DataplaneError>;
    /// Runs the endpoint program on `frame` as the endpoint on host-side
    /// interface `ifindex` sending it (BPF_PROG_RUN, live maps).
    fn run_endpoint(&mut self, ifindex: u32, frame: &[u8]) -> Result<ProgRun, DataplaneError>;
    /// Turns drop reporting off if its monitor died; true when it did.
    /// Housekeeping, like the next one.
    fn release_stale_monitor(&mut self) -> Result<bool, DataplaneError>;
    /// Gives back the next-hop cache slots of remote hosts no route names
    /// any more; how many. Housekeeping: nothing to undo, and safe to
    /// retry on the next pass.
    fn release_unused_hosts(&mut self) -> Result<usize, DataplaneError>;
}

impl Datapath for Dataplane {
    fn add_network(&mut self, net: &Network) -> Result<(), DataplaneError> {
        Dataplane::add_network(self, net)
    }
    fn remove_network(&mut self, vni: u32) -> Result<(), DataplaneError> {
        Dataplane::remove_network(self, vni)
    }
    fn network_vnis(&self) -> Result<Vec<u32>, DataplaneError> {
        Ok(self.networks()?.into_iter().map(|(vni, _)| vni).collect())
    }
    fn local_endpoints(&self) -> Result<BTreeMap<u32, EndpointInfo>, DataplaneError> {
        Ok(self.state()?.endpoints.into_iter().collect())
    }
    fn add_local_endpoint(&mut self, ep: &LocalEndpoint) -> Result<(), DataplaneError> {
        Dataplane::add_local_endpoint(self, ep)
    }
    fn remove_local_endpoint(&mut self, host_ifindex: u32) -> Result<(), DataplaneError> {
        Dataplane::remove_local_endpoint(self, host_ifindex)
    }
    fn add_remote_endpoint(&mut self, ep: &RemoteEndpoint) -> Result<(), DataplaneError> {
        Dataplane::add_remote_endpoint(self, ep)
    }
    fn remove_remote_endpoint(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        Dataplane::remove_remote_endpoint(self, vni, ip)
    }
    fn remove_route(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        Dataplane::remove_route(self, vni, ip)
    }
    fn route_target(&self, vni: u32, ip: Ipv4Addr) -> Result<Option<RouteTarget>, DataplaneError> {
        Dataplane::route_target(self, vni, ip)
    }
    fn routes(&self) -> Result<Vec<(u32, Ipv4Addr, RouteTarget)>, DataplaneError> {
        Dataplane::routes(self)
    }
    fn peers(&self) -> Result<Vec<(Ipv4Addr, u32)>, DataplaneError> {
        Dataplane::peers(self)
    }
    fn add_peer(&mut self, host: Ipv4Addr, vni: u32) -> Result<(), DataplaneError> {
        Dataplane::add_peer(self, host, vni)
    }
    fn remove_peer(&mut self, host: Ipv4Addr, vni: u32) -> Result<(), DataplaneError> {
        Dataplane::remove_peer(self, host, vni)
    }
    fn attach_endpoint(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        Dataplane::attach_endpoint(self, ifindex)
    }
    fn detach_endpoint(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        Dataplane::detach_endpoint(self, ifindex)
    }
    fn endpoint_linked(&self, ifindex: u32) -> bool {
        Dataplane::endpoint_linked(self, ifindex)
    }
    fn set_underlay(&mut self, underlay: &Underlay) -> Result<(), DataplaneError> {
        Dataplane::set_underlay(self, underlay)
    }
    fn attach_underlay(
        &mut self,
        ifindex: u32,
        mode: DecapMode,
    ) -> Result<AttachedMode, DataplaneError> {
        Dataplane::attach_underlay(self, ifindex, mode)
    }
    fn detach_underlay(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        Dataplane::detach_underlay(self, ifindex)
    }
    fn underlay_linked(&self, ifindex: u32) -> bool {
        Dataplane::underlay_linked(self, ifindex)
    }
    fn guards(&self) -> Result<Vec<Guard>, DataplaneError> {
        Dataplane::guards(self)
    }
    fn add_guard(&mut self, guard: Guard) -> Result<(), DataplaneError> {
        Dataplane::add_guard(self, guard)
    }
    fn remove_guard(&mut self, guard: Guard) -> Result<(), DataplaneError> {
        Dataplane::remove_guard(self, guard)
    }
    fn names(&self) -> Result<BTreeMap<NameKey, NameValue>, DataplaneError> {
        Dataplane::names(self)
    }
    fn set_name(&mut self, key: &NameKey, value: &NameValue) -> Result<(), DataplaneError> {
        Dataplane::set_name(self, key, value)
    }
    fn remove_name(&mut self, key: &NameKey) -> Result<(), DataplaneError> {
        Dataplane::remove_name(self, key)
    }
    fn pin_dir(&self) -> &Path {
        Dataplane::pin_dir(self)
    }
    fn links(&self) -> Vec<String> {
        Dataplane::links(self)
    }
    fn counters(&self) -> Result<Counters, DataplaneError> {
        Dataplane::counters(self)
    }
    fn network_counters(&self, vni: u32) -> Result<Counters, DataplaneError> {
        Dataplane::network_counters(self, vni)
    }
    fn next_hops(&self) -> Result<Vec<(Ipv4Addr, NextHop)>, DataplaneError> {
        Dataplane::next_hops(self)
    }
    fn path_mtus(&self) -> Result<Vec<(Ipv4Addr, PathMtu)>, DataplaneError> {
        Dataplane::path_mtus(self)
    }
    fn monitor_tallies(&self) -> Result<MonitorState, DataplaneError> {
        Dataplane::monitor_tallies(self)
    }
    fn release_stale_monitor(&mut self) -> Result<bool, DataplaneError> {
        Dataplane::release_stale_monitor(self)
    }
    fn run_endpoint(&mut self, ifindex: u32, frame: &[u8]) -> Result<ProgRun, DataplaneError> {
        Dataplane::run_endpoint(self, ifindex, frame)
    }
    fn release_unused_hosts(&mut self) -> Result<usize, DataplaneError> {
        Dataplane::release_unused_hosts(self)
    }
}

/// What the engine needs to know of an underlay NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nic {
    pub index: u32,
    pub mtu: u32,
    /// The driver's name (`None`: the device does not say).
    pub driver: Option<String>,
}

/// A container's interface as the engine sets it up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerIface {
    /// Name inside the container (`eth0`, ...).
    pub ifname: String,
    pub mac: MacAddr,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
}

/// A container's default route: via a network's gateway, out of the
/// container's interface on that network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultRoute {
    pub gateway: Ipv4Addr,
    /// Interface name inside the container.
    pub ifname: String,
}

/// The host's network, as the engine changes it. Host-side operations act
/// in the namespace the implementation was opened in; container-side ones
/// name their namespace.
pub trait HostNet {
    fn netns_exists(&self, name: &str) -> bool;
    /// Creates a named namespace with loopback up.
    fn create_netns(&mut self, name: &str) -> Result<(), HostError>;
    /// Removes a namespace's name (absent is fine), and its resolv.conf.
    fn delete_netns(&mut self, name: &str) -> Result<(), HostError>;
    /// The resolv.conf processes started in namespace `netns` see
    /// (`/etc/netns/NETNS/resolv.conf`), if it has one.
    fn resolv_conf(&mut self, netns: &str) -> Result<Option<String>, HostError>;
    /// Writes that file in place (processes that already run see the new
    /// text), or removes it with `None`.
    fn set_resolv_conf(&mut self, netns: &str, text: Option<&str>) -> Result<(), HostError>;
    /// Names the namespace of process `pid`.
    fn attach_netns(&mut self, name: &str, pid: u32) -> Result<(), HostError>;
    fn pid_has_netns(&self, pid: u32) -> bool;
    /// ifindex and MAC of a host-side interface, `None` when absent.
    fn link(&mut self, name: &str) -> Result<Option<(u32, MacAddr)>, HostError>;
    /// An underlay NIC: ifindex, MTU and driver (`None`: absent).
    fn nic(&mut self, name: &str) -> Result<Option<Nic>, HostError>;
    /// The first IPv4 address of a host-side interface.
    fn first_ipv4(&mut self, name: &str) -> Result<Option<Ipv4Addr>, HostError>;
    /// Host-side veths this program made (`ovl` + 8 hex digits).
    fn endpoint_veths(&mut self) -> Result<Vec<String>, HostError>;
    /// Deletes a host-side interface (absent is fine).
    fn delete_link(&mut self, name: &str) -> Result<(), HostError>;
    /// A veth pair: `host_end` here, `container_end` in `netns`.
    fn add_veth(
        &mut self,
        host_end: &str,
        container_end: &str,
        netns: &str,
        mtu: u32,
    ) -> Result<(), HostError>;
    /// A veth pair with both ends here (Docker moves `peer_end` into its
    /// sandbox), the peer's MAC set.
    fn add_host_veth(
        &mut self,
        host_end: &str,
        peer_end: &str,
        mtu: u32,
        peer_mac: MacAddr,
    ) -> Result<(), HostError>;
    /// Address, MAC, state and routes of a container's interface.
    fn configure_container_iface(
        &mut self,
        netns: &str,
        iface: &ContainerIface,
    ) -> Result<(), HostError>;
    /// Prefixes the host routes (main table, the default route left out):
    /// a VPN, the LAN, another bridge.
    fn routed_prefixes(&mut self) -> Result<Vec<Ipv4Net>, HostError>;
    /// The default route in namespace `netns`, if it has one through a
    /// gateway.
    fn default_route(&mut self, netns: &str) -> Result<Option<DefaultRoute>, HostError>;
    /// Replaces (`Some`) or removes (`None`) the default route in `netns`.
    fn set_default_route(
        &mut self,
        netns: &str,
        route: Option<&DefaultRoute>,
    ) -> Result<(), HostError>;
    /// Brings a host-side interface up; its ifindex and MAC.
    fn link_up(&mut self, name: &str) -> Result<(u32, MacAddr), HostError>;
    /// Adds a gateway address (a /32 on `lo`); false when present.
    fn add_gateway_address(&mut self, ip: Ipv4Addr) -> Result<bool, HostError>;
    /// The gateway addresses this program added (labelled `lo:overlay`).
    fn gateway_addresses(&mut self) -> Result<Vec<Ipv4Addr>, HostError>;
    /// Removes a gateway address (absent is fine).
    fn remove_gateway_address(&mut self, ip: Ipv4Addr) -> Result<(), HostError>;
    fn enable_ip_forward(&mut self) -> Result<(), HostError>;
    /// The host's own resolvers a container can reach (the IPv4
    /// `nameserver`s of /etc/resolv.conf but loopback ones).
    fn host_resolvers(&mut self) -> Vec<Ipv4Addr>;
    /// The /32 route and permanent neighbour that carry replies back to
    /// an endpoint through its host-side veth.
    fn endpoint_route(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        host_ifname: &str,
    ) -> Result<(), HostError>;
    /// Removes that /32 route (absent is fine); the neighbour entry goes
    /// when the route's device does, or stays harmless without a route.
    fn remove_endpoint_route(&mut self, ip: Ipv4Addr) -> Result<(), HostError>;
    /// Replaces the NAT and filter table.
    fn sync_filter(&mut self, ruleset: &Ruleset) -> Result<(), HostError>;
    fn is_running(&self, process: Option<ProcessRef>) -> bool;
    /// Stops a process (SIGTERM, then SIGKILL), unless it is gone.
    fn stop(&mut self, process: Option<ProcessRef>);
}

/// The label on the gateway addresses this program puts on `lo`: marks
/// them as ours, so ones left by a crash can be told from the admin's.
pub const GATEWAY_LABEL: &str = "lo:overlay";

/// The host itself: a netlink socket in the namespace it was opened in.
pub struct System {
    nl: Netlink,
}

impl System {
    /// The host network of the calling thread's namespace.
    pub fn open() -> Result<Self, HostError> {
        Ok(Self {
            nl: Netlink::open()?,
        })
    }
}

/// `ovl` + 8 hex digits: the host-side veths this program names.
pub fn is_endpoint_veth(name: &str) -> bool {
    name.len() == 11 && name.starts_with("ovl") && name[3..].chars().all(|c| c.is_ascii_hexdigit())
}

impl HostNet for System {
    fn netns_exists(&self, name: &str) -> bool {
        host::netns::exists(name)
    }

    fn create_netns(&mut self, name: &str) -> Result<(), HostError> {
        host::netns::create(name)?;
        let up = host::netns::run_in(name, || -> Result<(), HostError> {
            let mut nl = Netlink::open()?;
            let lo = nl.require_link("lo")?;
            nl.set_up(lo.index)
        });
        match up {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) | Err(e) => {
                let _ = host::netns::delete(name);
                Err(e)
            }
        }
    }

    fn delete_netns(&mut self, name: &str) -> Result<(), HostError> {
        host::netns::delete(name)?;
        host::netns::remove_own_etc_file(
            name,
            "resolv.conf",
            crate::model::names::RESOLV_CONF_MARKER,
        )
    }

    fn resolv_conf(&mut self, netns: &str) -> Result<Option<String>, HostError> {
        host::netns::etc_file(netns, "resolv.conf")
    }

    fn set_resolv_conf(&mut self, netns: &str, text: Option<&str>) -> Result<(), HostError> {
        host::netns::set_etc_file(netns, "resolv.conf", text)
    }

    fn attach_netns(&mut self, name: &str, pid: u32) -> Result<(), HostError> {
        host::netns::attach(name, pid)
    }

    fn pid_has_netns(&self, pid: u32) -> bool {
        host::netns::pid_has_netns(pid)
    }

    fn link(&mut self, name: &str) -> Result<Option<(u32, MacAddr)>, HostError> {
        Ok(self
            .nl
            .link(name)?
            .map(|l| (l.index, l.mac.unwrap_or_default())))
    }

    fn nic(&mut self, name: &str) -> Result<Option<Nic>, HostError> {
        let Some(link) = self.nl.link(name)? else {
            return Ok(None);
        };
        Ok(Some(Nic {
            index: link.index,
            mtu: link.mtu,
            driver: host::ethtool::driver(name)?,
        }))
    }

    fn first_ipv4(&mut self, name: &str) -> Result<Option<Ipv4Addr>, HostError> {
        let Some(link) = self.nl.link(name)? else {
            return Ok(None);
        };
        Ok(self
            .nl
            .addresses()?
            .into_iter()
            .find(|a| a.index == link.index)
            .map(|a| a.ip))
    }

    fn endpoint_veths(&mut self) -> Result<Vec<String>, HostError> {
        Ok(self
            .nl
            .links()?
            .into_iter()
            .map(|l| l.name)
            .filter(|n| is_endpoint_veth(n))
            .collect())
    }

    fn delete_link(&mut self, name: &str) -> Result<(), HostError> {
        self.nl.delete_link(name).map(drop)
    }

    fn add_veth(
        &mut self,
        host_end: &str,
        container_end: &str,
        netns: &str,
        mtu: u32,
    ) -> Result<(), HostError> {
        self.nl.add_veth(
            VethEnd {
                name: host_end,
                netns: None,
                mtu: Some(mtu),
            },
            VethEnd {
                name: container_end,
                netns: Some(netns),
                mtu: Some(mtu),
            },
        )
    }

    fn add_host_veth(
        &mut self,
        host_end: &str,
        peer_end: &str,
        mtu: u32,
        peer_mac: MacAddr,
    ) -> Result<(), HostError> {
        let end = |name| VethEnd {
            name,
            netns: None,
            mtu: Some(mtu),
        };
        self.nl.add_veth(end(host_end), end(peer_end))?;
        let peer = self.nl.require_link(peer_end)?;
        self.nl.set_mac(peer.index, peer_mac)
    }

    fn configure_container_iface(
        &mut self,
        netns: &str,
        iface: &ContainerIface,
    ) -> Result<(), HostError> {
        host::netns::run_in(netns, || -> Result<(), HostError> {
            let mut nl = Netlink::open()?;
            host::sysctl::disable_ipv6(&iface.ifname)?;
            let link = nl.require_link(&iface.ifname)?;
            nl.set_mac(link.index, iface.mac)?;
            nl.add_address(link.index, iface.ip, iface.prefix_len)?;
            nl.set_up(link.index)?;
            // XDP-redirected frames reach a veth only when its peer has GRO.
            host::ethtool::enable_gro(&iface.ifname)
        })?
    }

    fn routed_prefixes(&mut self) -> Result<Vec<Ipv4Net>, HostError> {
        Ok(self
            .nl
            .routes()?
            .into_iter()
            .filter(|r| r.prefix_len > 0)
            .filter_map(|r| Ipv4Net::new(r.dst, r.prefix_len).ok())
            .collect())
    }

    fn default_route(&mut self, netns: &str) -> Result<Option<DefaultRoute>, HostError> {
        let mut nl = Netlink::open_in(netns)?;
        let Some((gateway, oif)) = nl
            .routes()?
            .into_iter()
            .find_map(|r| (r.prefix_len == 0).then_some(()).and(r.gateway.zip(r.oif)))
        else {
            return Ok(None);
        };
        let ifname = nl
            .links()?
            .into_iter()
            .find(|l| l.index == oif)
            .map(|l| l.name)
            .unwrap_or_default();
        Ok(Some(DefaultRoute { gateway, ifname }))
    }

    fn set_default_route(
        &mut self,
        netns: &str,
        route: Option<&DefaultRoute>,
    ) -> Result<(), HostError> {
        let mut nl = Netlink::open_in(netns)?;
        match route {
            Some(r) => {
                let link = nl.require_link(&r.ifname)?;
                nl.replace_default_route(r.gateway, link.index)
            }
            None => nl.delete_default_route().map(drop),
        }
    }

    fn link_up(&mut self, name: &str) -> Result<(u32, MacAddr), HostError> {
        let link = self.nl.require_link(name)?;
        self.nl.set_up(link.index)?;
        Ok((link.index, link.mac.unwrap_or_default()))
    }

    fn add_gateway_address(&mut self, ip: Ipv4Addr) -> Result<bool, HostError> {
        let lo = self.nl.require_link("lo")?;
        self.nl
            .add_labelled_address(lo.index, ip, 32, Some(GATEWAY_LABEL))
    }

    fn gateway_addresses(&mut self) -> Result<Vec<Ipv4Addr>, HostError> {
        Ok(self
            .nl
            .addresses()?
            .into_iter()
            .filter(|a| a.prefix_len == 32 && a.label.as_deref() == Some(GATEWAY_LABEL))
            .map(|a| a.ip)
            .collect())
    }

    fn remove_gateway_address(&mut self, ip: Ipv4Addr) -> Result<(), HostError> {
        let lo = self.nl.require_link("lo")?;
        self.nl.delete_address(lo.index, ip, 32).map(drop)
    }

    fn host_resolvers(&mut self) -> Vec<Ipv4Addr> {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        crate::model::names::nameservers(&text)
            .into_iter()
            .filter(|ip| !ip.is_loopback())
            .collect()
    }

    fn enable_ip_forward(&mut self) -> Result<(), HostError> {
        host::sysctl::enable_ip_forward()
    }

    fn endpoint_route(
        &mut self,
        ip: Ipv4Addr,
        mac: MacAddr,
        host_ifname: &str,
    ) -> Result<(), HostError> {
        let link = self.nl.require_link(host_ifname)?;
        self.nl.replace_host_route(ip, link.index)?;
        self.nl.replace_neighbour(link.index, ip, mac)
    }

    fn remove_endpoint_route(&mut self, ip: Ipv4Addr) -> Result<(), HostError> {
        self.nl.delete_host_route(ip).map(drop)
    }

    fn sync_filter(&mut self, ruleset: &Ruleset) -> Result<(), HostError> {
        host::filter::apply(ruleset)
    }

    fn is_running(&self, process: Option<ProcessRef>) -> bool {
        host::process::is_running(process)
    }

    fn stop(&mut self, process: Option<ProcessRef>) {
        host::process::stop(process);
    }
}
