//! In-memory stand-ins for the dataplane and the host: they keep what a
//! kernel would hold, log every call, and can fail the Nth change, so the
//! engine's logic (validation, undo, cluster sync) is tested without root.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    rc::Rc,
};

use ipnet::Ipv4Net;
use overlay_common::{EndpointInfo, NameKey, NameValue, NextHop, PathMtu};

use crate::{
    dataplane::{
        Counters, DataplaneError, Guard, LocalEndpoint, Network, RemoteEndpoint, RouteTarget,
        Underlay,
    },
    engine::{ContainerIface, Datapath, DefaultRoute, HostNet, ports::Nic},
    host::{HostError, filter::Ruleset},
    model::{AttachedMode, DecapMode, MacAddr, ProcessRef},
};

/// What a kernel would hold: compared before and after a failed command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kernel {
    pub networks: BTreeMap<u32, Network>,
    pub endpoints: BTreeMap<u32, LocalEndpoint>,
    pub remotes: BTreeMap<(u32, Ipv4Addr), RemoteEndpoint>,
    pub peers: BTreeSet<(Ipv4Addr, u32)>,
    pub endpoint_links: BTreeSet<u32>,
    pub underlay: Option<Underlay>,
    pub underlay_links: BTreeSet<u32>,
    pub guards: BTreeSet<Guard>,
    /// Names the endpoint program answers.
    pub names: BTreeMap<NameKey, NameValue>,
    /// The underlay NIC's MTU and driver, as `nic` reports them.
    pub nic_mtu: u32,
    pub nic_driver: Option<String>,
    pub netns: BTreeSet<String>,
    /// Host-side links: name -> (ifindex, MAC).
    pub links: BTreeMap<String, (u32, MacAddr)>,
    /// Container ends of veths: host-side name -> (netns, name).
    pub container_links: BTreeMap<String, (String, String)>,
    /// Veth MTUs by host-side name.
    pub veth_mtus: BTreeMap<String, u32>,
    pub configured: BTreeMap<(String, String), ContainerIface>,
    pub gateway_addrs: BTreeSet<Ipv4Addr>,
    pub forwarding: bool,
    pub filter: Ruleset,
    /// /32 routes to endpoints: address -> host-side veth.
    pub host_routes: BTreeMap<Ipv4Addr, String>,
    pub running: BTreeSet<ProcessRef>,
    /// Prefixes the host routes.
    pub routed: Vec<Ipv4Net>,
    /// Default routes by container namespace.
    pub default_routes: BTreeMap<String, DefaultRoute>,
    /// resolv.conf text by container namespace.
    pub resolv_confs: BTreeMap<String, String>,
    /// The host's own resolvers.
    pub host_resolvers: Vec<Ipv4Addr>,
}

impl Kernel {
    /// A veth pair goes as a whole, with the routes through it.
    fn remove_link(&mut self, host_end: &str) -> bool {
        let existed = self.links.remove(host_end).is_some();
        self.veth_mtus.remove(host_end);
        if let Some((ns, name)) = self.container_links.remove(host_end) {
            if self
                .default_routes
                .get(&ns)
                .is_some_and(|r| r.ifname == name)
            {
                self.default_routes.remove(&ns);
            }
            self.configured.remove(&(ns, name));
        }
        self.host_routes.retain(|_, dev| dev != host_end);
        existed
    }
}

/// Shared between the two fakes and the test.
#[derive(Debug, Default)]
pub struct World {
    pub kernel: Kernel,
    /// Every call, in order (`name(args)`).
    pub calls: Vec<String>,
    /// Changes made so far; the change numbered `fail_at` fails.
    pub changes: usize,
    pub fail_at: Option<usize>,
    /// A change that cannot be undone (a deleted veth or namespace, a
    /// stopped process) has happened.
    pub irreversible: bool,
    /// `irreversible` as it was when the injected failure struck.
    pub irreversible_before_failure: bool,
    next_ifindex: u32,
}

pub type Shared = Rc<RefCell<World>>;

impl World {
    pub fn new() -> Shared {
        Rc::new(RefCell::new(Self {
            next_ifindex: 100,
            ..Self::default()
        }))
    }

    /// Counts a change; fails it when it is the one to fail.
    fn change(&mut self, call: String) -> Result<(), io::Error> {
        self.calls.push(call);
        self.changes += 1;
        if self.fail_at == Some(self.changes) {
            self.irreversible_before_failure = self.irreversible;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn read(&mut self, call: String) {
        self.calls.push(call);
    }
}

fn dp_err(e: io::Error) -> DataplaneError {
    DataplaneError::Io {
        op: "injected failure",
        path: PathBuf::from("fake"),
        source: e,
    }
}

fn host_err(what: &str) -> impl FnOnce(io::Error) -> HostError + '_ {
    move |source| HostError::Io {
        op: "injected failure",
        what: what.to_owned(),
        source,
    }
}

/// The dataplane fake.
pub struct FakeDatapath(pub Shared);

impl Datapath for FakeDatapath {
    fn add_network(&mut self, net: &Network) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.add_network({})", net.vni))
            .map_err(dp_err)?;
        if w.kernel.networks.contains_key(&net.vni) {
            return Err(DataplaneError::NetworkExists(net.vni));
        }
        w.kernel.networks.insert(net.vni, *net);
        Ok(())
    }

    fn remove_network(&mut self, vni: u32) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.remove_network({vni})"))
            .map_err(dp_err)?;
        if w.kernel.endpoints.values().any(|e| e.vni == vni) {
            return Err(DataplaneError::NetworkInUse(vni));
        }
        w.kernel
            .networks
            .remove(&vni)
            .ok_or(DataplaneError::UnknownNetwork(vni))?;
        w.kernel.remotes.retain(|(v, _), _| *v != vni);
        w.kernel.peers.retain(|(_, v)| *v != vni);
        Ok(())
    }

    fn network_vnis(&self) -> Result<Vec<u32>, DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.read("dp.network_vnis".into());
        Ok(w.kernel.networks.keys().copied().collect())
    }

    fn local_endpoints(&self) -> Result<BTreeMap<u32, EndpointInfo>, DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.read("dp.local_endpoints".into());
        Ok(w.kernel
            .endpoints
            .iter()
            .map(|(i, e)| {
                (
                    *i,
                    EndpointInfo {
                        vni: e.vni,
                        ip: u32::from(e.ip).to_be(),
                        mac: e.mac.0,
                        host_mac: e.host_mac.0,
                        flags: 0,
                        counter_slot: 0,
                    },
                )
            })
            .collect())
    }

    fn add_local_endpoint(&mut self, ep: &LocalEndpoint) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.add_local_endpoint({})", ep.ip))
            .map_err(dp_err)?;
        if !w.kernel.networks.contains_key(&ep.vni) {
            return Err(DataplaneError::UnknownNetwork(ep.vni));
        }
        if w.kernel.endpoints.contains_key(&ep.host_ifindex) {
            return Err(DataplaneError::EndpointExists(ep.host_ifindex));
        }
        w.kernel.endpoints.insert(ep.host_ifindex, *ep);
        Ok(())
    }

    fn remove_local_endpoint(&mut self, host_ifindex: u32) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.remove_local_endpoint({host_ifindex})"))
            .map_err(dp_err)?;
        w.kernel
            .endpoints
            .remove(&host_ifindex)
            .map(drop)
            .ok_or(DataplaneError::UnknownEndpoint(host_ifindex))
    }

    fn add_remote_endpoint(&mut self, ep: &RemoteEndpoint) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.add_remote_endpoint({})", ep.ip))
            .map_err(dp_err)?;
        if !w.kernel.networks.contains_key(&ep.vni) {
            return Err(DataplaneError::UnknownNetwork(ep.vni));
        }
        w.kernel.remotes.insert((ep.vni, ep.ip), *ep);
        Ok(())
    }

    fn remove_remote_endpoint(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.remove_remote_endpoint({ip})"))
            .map_err(dp_err)?;
        w.kernel
            .remotes
            .remove(&(vni, ip))
            .map(drop)
            .ok_or(DataplaneError::UnknownAddress { ip, vni })
    }

    fn route_target(&self, vni: u32, ip: Ipv4Addr) -> Result<Option<RouteTarget>, DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.read(format!("dp.route_target({vni}, {ip})"));
        let local = w
            .kernel
            .endpoints
            .iter()
            .find(|(_, e)| e.vni == vni && e.ip == ip)
            .map(|(i, _)| RouteTarget::Local(*i));
        Ok(local.or_else(|| {
            w.kernel
                .remotes
                .get(&(vni, ip))
                .map(|r| RouteTarget::Remote(r.host))
        }))
    }

    fn routes(&self) -> Result<Vec<(u32, Ipv4Addr, RouteTarget)>, DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.read("dp.routes".into());
        let local = w
            .kernel
            .endpoints
            .iter()
            .map(|(i, e)| (e.vni, e.ip, RouteTarget::Local(*i)));
        let remote = w
            .kernel
            .remotes
            .values()
            .map(|r| (r.vni, r.ip, RouteTarget::Remote(r.host)));
        Ok(local.chain(remote).collect())
    }

    fn peers(&self) -> Result<Vec<(Ipv4Addr, u32)>, DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.read("dp.peers".into());
        Ok(w.kernel.peers.iter().copied().collect())
    }

    fn remove_route(&mut self, vni: u32, ip: Ipv4Addr) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.remove_route({ip})")).map_err(dp_err)?;
        w.kernel.remotes.remove(&(vni, ip));
        Ok(())
    }

    fn add_peer(&mut self, host: Ipv4Addr, vni: u32) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.add_peer({host}, {vni})"))
            .map_err(dp_err)?;
        if !w.kernel.networks.contains_key(&vni) {
            return Err(DataplaneError::UnknownNetwork(vni));
        }
        w.kernel.peers.insert((host, vni));
        Ok(())
    }

    fn remove_peer(&mut self, host: Ipv4Addr, vni: u32) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.remove_peer({host}, {vni})"))
            .map_err(dp_err)?;
        w.kernel.peers.remove(&(host, vni));
        Ok(())
    }

    fn attach_endpoint(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.attach_endpoint({ifindex})"))
            .map_err(dp_err)?;
        w.kernel.endpoint_links.insert(ifindex);
        Ok(())
    }

    fn detach_endpoint(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.detach_endpoint({ifindex})"))
            .map_err(dp_err)?;
        w.kernel.endpoint_links.remove(&ifindex);
        Ok(())
    }

    fn endpoint_linked(&self, ifindex: u32) -> bool {
        self.0.borrow().kernel.endpoint_links.contains(&ifindex)
    }

    fn set_underlay(&mut self, underlay: &Underlay) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.set_underlay({})", underlay.ip))
            .map_err(dp_err)?;
        w.kernel.underlay = Some(*underlay);
        Ok(())
    }

    fn attach_underlay(
        &mut self,
        ifindex: u32,
        mode: DecapMode,
    ) -> Result<AttachedMode, DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.attach_underlay({ifindex})"))
            .map_err(dp_err)?;
        w.kernel.underlay_links.insert(ifindex);
        Ok(match mode {
            DecapMode::Tc => AttachedMode::Tcx,
            DecapMode::XdpGeneric => AttachedMode::XdpGeneric,
            DecapMode::Xdp | DecapMode::XdpNative => AttachedMode::XdpNative,
        })
    }

    fn detach_underlay(&mut self, ifindex: u32) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.detach_underlay({ifindex})"))
            .map_err(dp_err)?;
        w.kernel.underlay_links.remove(&ifindex);
        w.kernel.underlay = None;
        Ok(())
    }

    fn underlay_linked(&self, ifindex: u32) -> bool {
        self.0.borrow().kernel.underlay_links.contains(&ifindex)
    }

    fn guards(&self) -> Result<Vec<Guard>, DataplaneError> {
        Ok(self.0.borrow().kernel.guards.iter().copied().collect())
    }

    fn add_guard(&mut self, guard: Guard) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.add_guard({})", guard.0))
            .map_err(dp_err)?;
        w.kernel.guards.insert(guard);
        Ok(())
    }

    fn remove_guard(&mut self, guard: Guard) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.remove_guard({})", guard.0))
            .map_err(dp_err)?;
        w.kernel.guards.remove(&guard);
        Ok(())
    }

    fn names(&self) -> Result<BTreeMap<NameKey, NameValue>, DataplaneError> {
        Ok(self.0.borrow().kernel.names.clone())
    }

    fn set_name(&mut self, key: &NameKey, value: &NameValue) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.set_name({})", key.vni))
            .map_err(dp_err)?;
        w.kernel.names.insert(*key, *value);
        Ok(())
    }

    fn remove_name(&mut self, key: &NameKey) -> Result<(), DataplaneError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("dp.remove_name({})", key.vni))
            .map_err(dp_err)?;
        w.kernel.names.remove(key);
        Ok(())
    }

    fn pin_dir(&self) -> &Path {
        Path::new("/fake/pins")
    }

    fn links(&self) -> Vec<String> {
        let k = &self.0.borrow().kernel;
        k.endpoint_links
            .iter()
            .map(|i| format!("endpoint-{i}"))
            .chain(k.underlay_links.iter().map(|i| format!("underlay-{i}")))
            .collect()
    }

    fn counters(&self) -> Result<Counters, DataplaneError> {
        Ok(Counters::default())
    }

    fn network_counters(&self, vni: u32) -> Result<Counters, DataplaneError> {
        if self.0.borrow().kernel.networks.contains_key(&vni) {
            Ok(Counters::default())
        } else {
            Err(DataplaneError::UnknownNetwork(vni))
        }
    }

    fn path_mtus(&self) -> Result<Vec<(Ipv4Addr, PathMtu)>, DataplaneError> {
        Ok(Vec::new())
    }

    fn release_unused_hosts(&mut self) -> Result<usize, DataplaneError> {
        // The fake kernel keeps no next-hop cache.
        Ok(0)
    }

    fn monitor_tallies(&self) -> Result<overlay_common::MonitorState, DataplaneError> {
        // Nor runs programs that could report.
        Ok(overlay_common::MonitorState::default())
    }

    fn release_stale_monitor(&mut self) -> Result<bool, DataplaneError> {
        Ok(false)
    }

    fn run_endpoint(
        &mut self,
        _ifindex: u32,
        _frame: &[u8],
    ) -> Result<crate::dataplane::ProgRun, DataplaneError> {
        Err(DataplaneError::Unsupported {
            feature: "BPF_PROG_RUN",
            on: "the fake dataplane".into(),
            hint: "it runs no programs",
        })
    }

    fn next_hops(&self) -> Result<Vec<(Ipv4Addr, NextHop)>, DataplaneError> {
        Ok(Vec::new())
    }
}

/// The host fake.
pub struct FakeHost(pub Shared);

impl HostNet for FakeHost {
    fn netns_exists(&self, name: &str) -> bool {
        self.0.borrow().kernel.netns.contains(name)
    }

    fn create_netns(&mut self, name: &str) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.create_netns({name})"))
            .map_err(host_err(name))?;
        w.kernel.netns.insert(name.to_owned());
        Ok(())
    }

    fn delete_netns(&mut self, name: &str) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.delete_netns({name})"))
            .map_err(host_err(name))?;
        if w.kernel.netns.remove(name) {
            w.irreversible = true;
            // Its veths die with it, and so do their host ends.
            let gone: Vec<String> = w
                .kernel
                .container_links
                .iter()
                .filter(|(_, (ns, _))| ns == name)
                .map(|(host_end, _)| host_end.clone())
                .collect();
            for host_end in gone {
                w.kernel.remove_link(&host_end);
            }
            w.kernel.configured.retain(|(ns, _), _| ns != name);
            w.kernel.default_routes.remove(name);
        }
        w.kernel.resolv_confs.remove(name);
        Ok(())
    }

    fn resolv_conf(&mut self, netns: &str) -> Result<Option<String>, HostError> {
        let mut w = self.0.borrow_mut();
        w.read(format!("host.resolv_conf({netns})"));
        Ok(w.kernel.resolv_confs.get(netns).cloned())
    }

    fn set_resolv_conf(&mut self, netns: &str, text: Option<&str>) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.set_resolv_conf({netns})"))
            .map_err(host_err(netns))?;
        match text {
            Some(t) => w.kernel.resolv_confs.insert(netns.to_owned(), t.to_owned()),
            None => w.kernel.resolv_confs.remove(netns),
        };
        Ok(())
    }

    fn attach_netns(&mut self, name: &str, pid: u32) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.attach_netns({name}, {pid})"))
            .map_err(host_err(name))?;
        w.kernel.netns.insert(name.to_owned());
        Ok(())
    }

    fn pid_has_netns(&self, pid: u32) -> bool {
        self.0.borrow().kernel.running.iter().any(|p| p.pid == pid)
    }

    fn link(&mut self, name: &str) -> Result<Option<(u32, MacAddr)>, HostError> {
        let mut w = self.0.borrow_mut();
        w.read(format!("host.link({name})"));
        Ok(w.kernel.links.get(name).copied())
    }

    fn nic(&mut self, name: &str) -> Result<Option<Nic>, HostError> {
        let w = self.0.borrow();
        Ok(w.kernel.links.get(name).map(|(index, _)| Nic {
            index: *index,
            mtu: w.kernel.nic_mtu,
            driver: w.kernel.nic_driver.clone(),
        }))
    }

    fn first_ipv4(&mut self, name: &str) -> Result<Option<Ipv4Addr>, HostError> {
        Ok((name == "eth0").then(|| Ipv4Addr::new(192, 0, 2, 1)))
    }

    fn endpoint_veths(&mut self) -> Result<Vec<String>, HostError> {
        Ok(self
            .0
            .borrow()
            .kernel
            .links
            .keys()
            .filter(|n| super::super::ports::is_endpoint_veth(n))
            .cloned()
            .collect())
    }

    fn delete_link(&mut self, name: &str) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.delete_link({name})"))
            .map_err(host_err(name))?;
        if w.kernel.remove_link(name) {
            w.irreversible = true;
        }
        Ok(())
    }

    fn add_veth(
        &mut self,
        host_end: &str,
        container_end: &str,
        netns: &str,
        mtu: u32,
    ) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.add_veth({host_end}, {container_end})"))
            .map_err(host_err(host_end))?;
        w.next_ifindex += 1;
        let index = w.next_ifindex;
        let mac = MacAddr([0x02, 0xee, 0, 0, (index >> 8) as u8, index as u8]);
        w.kernel.links.insert(host_end.to_owned(), (index, mac));
        w.kernel.veth_mtus.insert(host_end.to_owned(), mtu);
        w.kernel.container_links.insert(
            host_end.to_owned(),
            (netns.to_owned(), container_end.to_owned()),
        );
        Ok(())
    }

    fn add_host_veth(
        &mut self,
        host_end: &str,
        peer_end: &str,
        mtu: u32,
        _peer_mac: MacAddr,
    ) -> Result<(), HostError> {
        self.add_veth(host_end, peer_end, "", mtu)
    }

    fn configure_container_iface(
        &mut self,
        netns: &str,
        iface: &ContainerIface,
    ) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.configure({netns}, {})", iface.ifname))
            .map_err(host_err(netns))?;
        w.kernel
            .configured
            .insert((netns.to_owned(), iface.ifname.clone()), iface.clone());
        Ok(())
    }

    fn routed_prefixes(&mut self) -> Result<Vec<Ipv4Net>, HostError> {
        let mut w = self.0.borrow_mut();
        w.read("host.routed_prefixes".into());
        Ok(w.kernel.routed.clone())
    }

    fn default_route(&mut self, netns: &str) -> Result<Option<DefaultRoute>, HostError> {
        let mut w = self.0.borrow_mut();
        w.read(format!("host.default_route({netns})"));
        Ok(w.kernel.default_routes.get(netns).cloned())
    }

    fn set_default_route(
        &mut self,
        netns: &str,
        route: Option<&DefaultRoute>,
    ) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.set_default_route({netns}, {route:?})"))
            .map_err(host_err(netns))?;
        match route {
            // The kernel refuses a route through an interface it lacks.
            Some(r)
                if !w
                    .kernel
                    .configured
                    .contains_key(&(netns.to_owned(), r.ifname.clone())) =>
            {
                return Err(host_err(netns)(io::Error::from_raw_os_error(libc::ENODEV)));
            }
            Some(r) => w.kernel.default_routes.insert(netns.to_owned(), r.clone()),
            None => w.kernel.default_routes.remove(netns),
        };
        Ok(())
    }

    fn link_up(&mut self, name: &str) -> Result<(u32, MacAddr), HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.link_up({name})"))
            .map_err(host_err(name))?;
        w.kernel
            .links
            .get(name)
            .copied()
            .ok_or_else(|| HostError::NoSuchLink(name.to_owned()))
    }

    fn add_gateway_address(&mut self, ip: Ipv4Addr) -> Result<bool, HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.add_gateway_address({ip})"))
            .map_err(host_err("lo"))?;
        Ok(w.kernel.gateway_addrs.insert(ip))
    }

    fn gateway_addresses(&mut self) -> Result<Vec<Ipv4Addr>, HostError> {
        let mut w = self.0.borrow_mut();
        w.read("host.gateway_addresses".into());
        Ok(w.kernel.gateway_addrs.iter().copied().collect())
    }

    fn remove_gateway_address(&mut self, ip: Ipv4Addr) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.remove_gateway_address({ip})"))
            .map_err(host_err("lo"))?;
        w.kernel.gateway_addrs.remove(&ip);
        Ok(())
    }

    fn host_resolvers(&mut self) -> Vec<Ipv4Addr> {
        let mut w = self.0.borrow_mut();
        w.read("host.host_resolvers".into());
        w.kernel.host_resolvers.clone()
    }

    fn enable_ip_forward(&mut self) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change("host.enable_ip_forward".into())
            .map_err(host_err("ip_forward"))?;
        w.kernel.forwarding = true;
        Ok(())
    }

    fn remove_endpoint_route(&mut self, ip: Ipv4Addr) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.remove_endpoint_route({ip})"))
            .map_err(host_err("route"))?;
        w.kernel.host_routes.remove(&ip);
        Ok(())
    }

    fn endpoint_route(
        &mut self,
        ip: Ipv4Addr,
        _mac: MacAddr,
        host_ifname: &str,
    ) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change(format!("host.endpoint_route({ip})"))
            .map_err(host_err(host_ifname))?;
        w.kernel.host_routes.insert(ip, host_ifname.to_owned());
        Ok(())
    }

    fn sync_filter(&mut self, ruleset: &Ruleset) -> Result<(), HostError> {
        let mut w = self.0.borrow_mut();
        w.change("host.sync_filter".into())
            .map_err(host_err("filter"))?;
        w.kernel.filter = ruleset.clone();
        Ok(())
    }

    fn is_running(&self, process: Option<ProcessRef>) -> bool {
        process.is_some_and(|p| self.0.borrow().kernel.running.contains(&p))
    }

    fn stop(&mut self, process: Option<ProcessRef>) {
        let mut w = self.0.borrow_mut();
        w.calls.push(format!("host.stop({process:?})"));
        if let Some(p) = process
            && w.kernel.running.remove(&p)
        {
            w.irreversible = true;
        }
    }
}
