//! This host's place among hosts: its underlay NIC, static peers and
//! remote endpoints (hosts without a cluster store, kernel-VXLAN hosts),
//! and its membership in a cluster.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr, ToSocketAddrs as _},
};

use super::{Engine, EngineError, undo::Undo};
use crate::{
    dataplane::{
        DataplaneError, Guard, RemoteEndpoint, Underlay,
        features::{self, AutoDecap},
    },
    model::{
        AttachedMode, ClusterRecord, DecapMode, DecapRequest, Driver, HostRecord, MacAddr,
        NetworkRecord, RemoteRecord, rules, state::remote_key,
    },
};

/// What an attach did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Attached {
    pub ip: Ipv4Addr,
    pub mode: AttachedMode,
    /// The mode was chosen by `auto`.
    pub auto: bool,
    /// Why `auto` chose it, or why the mode asked for is wrong here.
    pub reason: Option<String>,
}

impl Engine {
    /// `attach`: binds the host to its underlay NIC, at `underlay_ip` or
    /// the NIC's first IPv4 address, decapsulating as `request` says
    /// (`auto`: what is correct on that NIC).
    pub fn attach(
        &mut self,
        iface: &str,
        underlay_ip: Option<Ipv4Addr>,
        request: DecapRequest,
    ) -> Result<Attached, EngineError> {
        let nic = self
            .host
            .nic(iface)?
            .ok_or_else(|| EngineError::Invalid(format!("no interface named {iface}")))?;
        let underlay_ip = match underlay_ip {
            Some(ip) => ip,
            None => self.host.first_ipv4(iface)?.ok_or_else(|| {
                EngineError::Invalid(format!("{iface} has no IPv4 address: pass --underlay-ip"))
            })?,
        };
        // Validate before touching anything; the program goes in before the
        // config, so a NIC that refuses it leaves the old config in place.
        rules::check_host_address(underlay_ip)?;
        // Attaching again replaces the link on that NIC: keep a way back.
        if let Some(prev) = self.previous_underlay()?
            && prev.0.ifindex == nic.index
        {
            self.undo.push(Undo::DetachedUnderlay {
                underlay: prev.0,
                mode: prev.1,
            });
        }
        let driver = nic.driver.as_deref();
        let (mode, reason) = match request.explicit() {
            Some(mode) => {
                let mode = self.dp.attach_underlay(nic.index, mode)?;
                let warning = if mode.is_xdp() {
                    features::xdp_warning(driver)
                } else {
                    None
                };
                (mode, warning)
            }
            None => self.attach_auto(nic.index, driver)?,
        };
        self.undo.push(Undo::AttachedUnderlay(nic.index));
        self.dp
            .set_underlay(&Underlay::new(nic.index, underlay_ip))?;
        self.state.host = Some(HostRecord {
            iface: iface.to_owned(),
            underlay_ip,
            decap: mode,
            requested: Some(request),
            decap_reason: reason.clone(),
            mtu: nic.mtu,
        });
        Ok(Attached {
            ip: underlay_ip,
            mode,
            auto: request == DecapRequest::Auto,
            reason,
        })
    }

    /// `auto`: native XDP on a NIC whose driver has it and is not a virtual
    /// device, else TC; returns the mode and why.
    fn attach_auto(
        &mut self,
        ifindex: u32,
        driver: Option<&str>,
    ) -> Result<(AttachedMode, Option<String>), EngineError> {
        if let AutoDecap::Tc(why) = features::auto_decap(driver) {
            let mode = self.dp.attach_underlay(ifindex, DecapMode::Tc)?;
            return Ok((mode, Some(why)));
        }
        let name = driver.unwrap_or("its driver");
        match self.dp.attach_underlay(ifindex, DecapMode::XdpNative) {
            Ok(mode) => Ok((mode, Some(format!("{name} has native XDP")))),
            Err(DataplaneError::Unsupported { .. }) => {
                let mode = self.dp.attach_underlay(ifindex, DecapMode::Tc)?;
                Ok((mode, Some(format!("{name} has no native XDP"))))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `detach`: unbinds the host from its underlay NIC.
    pub fn detach(&mut self) -> Result<String, EngineError> {
        let host = self
            .state
            .host
            .take()
            .ok_or_else(|| EngineError::Invalid("this host is not attached".into()))?;
        let ifindex = self.host.link(&host.iface)?.map_or(0, |(i, _)| i);
        self.dp.detach_underlay(ifindex)?;
        self.undo.push(Undo::DetachedUnderlay {
            underlay: Underlay::new(ifindex, host.underlay_ip),
            mode: host.decap,
        });
        Ok(host.iface)
    }

    /// The underlay this host is attached to now, with its mode.
    fn previous_underlay(&mut self) -> Result<Option<(Underlay, AttachedMode)>, EngineError> {
        let Some(h) = self.state.host.clone() else {
            return Ok(None);
        };
        Ok(self
            .host
            .link(&h.iface)?
            .map(|(ifindex, _)| (Underlay::new(ifindex, h.underlay_ip), h.decap)))
    }

    /// `peer add`: `host` may send `network`'s VNI.
    pub fn add_peer(&mut self, host: Ipv4Addr, network: &str) -> Result<(), EngineError> {
        let net = self.network(network)?.clone();
        self.dp.add_peer(host, net.vni)?;
        self.undo.push(Undo::Peer(host, net.vni));
        self.state.peers.insert((host, net.id));
        Ok(())
    }

    /// `peer rm`.
    pub fn remove_peer(&mut self, host: Ipv4Addr, network: &str) -> Result<(), EngineError> {
        let net = self.network(network)?.clone();
        if !self.state.peers.remove(&(host, net.id.clone())) {
            return Err(EngineError::Invalid(format!(
                "{host} is not a peer of network {}",
                net.name
            )));
        }
        self.dp.remove_peer(host, net.vni)?;
        self.undo.push(Undo::RemovedPeer(host, net.vni));
        Ok(())
    }

    /// `endpoint add --remote`: a static endpoint on another host.
    pub fn add_remote(
        &mut self,
        network: &str,
        ip: Ipv4Addr,
        mac: Option<MacAddr>,
        host: Ipv4Addr,
    ) -> Result<(), EngineError> {
        let net = self.network(network)?.clone();
        let taken = self
            .state
            .endpoints()
            .any(|(_, e)| e.network_id == net.id && e.ip == ip);
        if taken || ip == net.gateway {
            return Err(EngineError::AddressInUse(ip, net.name));
        }
        let mac = mac.unwrap_or_else(|| MacAddr::from_ipv4(ip));
        self.dp.add_remote_endpoint(&RemoteEndpoint {
            vni: net.vni,
            ip,
            mac,
            host,
        })?;
        self.undo.push(Undo::Remote(net.vni, ip));
        self.state.remotes.insert(
            remote_key(net.vni, ip),
            RemoteRecord {
                network_id: net.id,
                ip,
                mac,
                host,
            },
        );
        Ok(())
    }

    /// `endpoint rm --remote`.
    pub fn remove_remote(&mut self, network: &str, ip: Ipv4Addr) -> Result<(), EngineError> {
        let net = self.network(network)?.clone();
        let Some(old) = self.state.remotes.remove(&remote_key(net.vni, ip)) else {
            return Err(EngineError::Invalid(format!(
                "no remote endpoint {ip} on network {}",
                net.name
            )));
        };
        self.dp.remove_remote_endpoint(net.vni, ip)?;
        self.undo.push(Undo::RemovedRemote(RemoteEndpoint {
            vni: net.vni,
            ip,
            mac: old.mac,
            host: old.host,
        }));
        Ok(())
    }

    /// Enters cluster mode (or changes its settings). Overlay networks
    /// created while this host stood alone would clash with the cluster's,
    /// so they must be gone first.
    pub fn join_cluster(&mut self, record: ClusterRecord) -> Result<(), EngineError> {
        if self.state.cluster.is_none() {
            let local: Vec<&str> = self
                .state
                .networks
                .values()
                .filter(|n| n.driver == Driver::Overlay)
                .map(|n| n.name.as_str())
                .collect();
            if !local.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "overlay networks exist on this host ({}): remove them before joining a cluster",
                    local.join(", ")
                )));
            }
        }
        if record.advertise_ip.is_none() && self.state.host.is_none() {
            return Err(EngineError::NoAdvertiseAddress);
        }
        // The guards follow at commit.
        self.state.cluster = Some(record);
        Ok(())
    }

    /// Makes the guarded destinations (what containers may not reach
    /// through this host) the cluster store's client endpoints, resolved to
    /// IPv4 addresses, and their ports on this host's own addresses (should
    /// the store run here); none outside cluster mode.
    pub(super) fn sync_guards(&mut self) -> Result<(), EngineError> {
        let want = guards(&self.state);
        let have: BTreeSet<Guard> = self.dp.guards()?.into_iter().collect();
        for g in have.difference(&want) {
            self.dp.remove_guard(*g)?;
            self.undo.push(Undo::RemovedGuard(*g));
        }
        for g in want.difference(&have) {
            self.dp.add_guard(*g)?;
            self.undo.push(Undo::Guard(*g));
        }
        Ok(())
    }

    /// Makes the names the endpoint program answers those of the state
    /// (`names`, this state's table), undoably; true when any changed.
    pub(super) fn sync_names(
        &mut self,
        names: &crate::model::names::NameTable,
    ) -> Result<bool, EngineError> {
        let want = names.kernel_entries(&self.state);
        let have = self.dp.names()?;
        let mut changed = false;
        for (key, value) in &have {
            if !want.contains_key(key) {
                self.dp.remove_name(key)?;
                self.undo.push(Undo::Name {
                    key: *key,
                    previous: Some(*value),
                });
                changed = true;
            }
        }
        for (key, value) in &want {
            let previous = have.get(key).copied();
            if previous != Some(*value) {
                self.dp.set_name(key, value)?;
                self.undo.push(Undo::Name {
                    key: *key,
                    previous,
                });
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Records the lease this host's cluster registration lives on.
    pub fn set_cluster_lease(&mut self, lease: i64) {
        if let Some(c) = self.state.cluster.as_mut() {
            c.lease = lease;
        }
    }

    /// Leaves cluster mode: forgets the global networks (the cluster keeps
    /// them) and everything learned about other hosts.
    pub fn leave_cluster(&mut self) -> Result<(), EngineError> {
        let global: Vec<NetworkRecord> = self
            .state
            .networks
            .values()
            .filter(|n| self.state.is_global(n))
            .cloned()
            .collect();
        for n in &global {
            let users = self.containers_on(&n.id);
            if !users.is_empty() {
                return Err(EngineError::NetworkInUse(n.name.clone(), users.join(", ")));
            }
        }
        for n in global {
            self.remove_network_here(&n)?;
        }
        self.state.learned.clear();
        self.state.cluster_hosts.clear();
        self.state.rejected.clear();
        self.state.rejected_count = 0;
        self.state.cluster = None;
        Ok(())
    }
}

/// The IPv4 addresses of the cluster store's `host:port` endpoints. A name
/// that does not resolve guards nothing (and the agent cannot reach it
/// either).
pub(super) fn cluster_guards(endpoints: &[String]) -> BTreeSet<Guard> {
    endpoints
        .iter()
        .filter_map(|e| e.to_socket_addrs().ok())
        .flatten()
        .filter_map(|a| match a {
            SocketAddr::V4(v4) if rules::check_host_address(*v4.ip()).is_ok() => Some(Guard(v4)),
            _ => None,
        })
        .collect()
}

/// What containers may not reach through this host in `state`: the
/// cluster store's endpoints, and the store's ports on this host's
/// underlay and gateway addresses.
pub(super) fn guards(state: &crate::model::Snapshot) -> BTreeSet<Guard> {
    let Some(cluster) = &state.cluster else {
        return BTreeSet::new();
    };
    let store = cluster_guards(&cluster.endpoints);
    let ports: BTreeSet<u16> = store.iter().map(|g| g.0.port()).collect();
    let own = state
        .advertise_ip()
        .into_iter()
        .chain(state.networks.values().map(|n| n.gateway));
    let mut out = store;
    for ip in own {
        for port in &ports {
            out.insert(Guard(std::net::SocketAddrV4::new(ip, *port)));
        }
    }
    out
}
