//! Networks: the VNI -> network entry, its subnet in the LPM map that
//! tells isolation drops from the gateway path, and its counters.

use aya::{
    maps::{PerCpuValues, lpm_trie::Key},
    util::nr_cpus,
};
use ipnet::Ipv4Net;
use overlay_common::{
    NETWORK_FLAG_INTERNAL, NetworkInfo, PeerKey, ROUTE_LOCAL, RouteKey, RouteValue, capacity,
};

use super::{Dataplane, DataplaneError, Network, be, not_found, v4};
use crate::model::{ipam, rules};

impl Dataplane {
    /// Adds a network. Fails without writing if the VNI is taken or the
    /// subnet overlaps another network.
    pub fn add_network(&mut self, net: &Network) -> Result<(), DataplaneError> {
        rules::check_vni(net.vni)?;
        let subnet = net.subnet;
        rules::check_subnet(subnet)?;
        if let Some(gw) = net.gateway {
            rules::check_gateway(subnet, gw)?;
        }
        let mut slots_used = std::collections::BTreeSet::new();
        for item in self.networks.iter() {
            let (_, info) = item.map_err(DataplaneError::map("listing networks"))?;
            slots_used.insert(info.counter_slot);
        }
        for (vni, other) in self.networks()? {
            if vni == net.vni {
                return Err(DataplaneError::NetworkExists(vni));
            }
            if ipam::overlaps(other.subnet, subnet) {
                return Err(DataplaneError::SubnetOverlap {
                    subnet,
                    other: other.subnet,
                    other_vni: vni,
                });
            }
        }
        // The lowest free counter slot; none left: host totals only.
        let counter_slot = (1..capacity::NET_COUNTERS)
            .find(|s| !slots_used.contains(s))
            .unwrap_or(0);
        if counter_slot != 0 {
            // Counting for this network starts from zero (the slot may
            // have served a removed network).
            self.zero_net_counters(counter_slot)?;
        }
        let info = NetworkInfo {
            subnet: be(subnet.network()),
            mask: be(subnet.netmask()),
            gateway: net.gateway.map_or(0, be),
            flags: if net.internal {
                NETWORK_FLAG_INTERNAL
            } else {
                0
            },
            counter_slot,
        };
        let key = Key::new(u32::from(subnet.prefix_len()), be(subnet.network()));
        self.subnets
            .insert(&key, &net.vni, 0)
            .map_err(DataplaneError::map(format!("adding subnet {subnet}")))?;
        if let Err(e) = self.networks.insert(&net.vni, &info, 0) {
            // Keep the two maps consistent: undo the subnet.
            let _ = self.subnets.remove(&key);
            return Err(DataplaneError::map(format!("adding network {}", net.vni))(
                e,
            ));
        }
        Ok(())
    }

    /// Zeroes network counter slot `slot` on every CPU.
    fn zero_net_counters(&mut self, slot: u32) -> Result<(), DataplaneError> {
        let cpus = nr_cpus().map_err(|(_, source)| DataplaneError::Io {
            op: "count CPUs",
            path: "/sys/devices/system/cpu/possible".into(),
            source,
        })?;
        let zero = PerCpuValues::try_from(vec![
            overlay_common::NetCounters::default();
            cpus.get() as usize
        ])
        .map_err(|source| DataplaneError::Io {
            op: "size per-CPU counters",
            path: "/sys/devices/system/cpu/possible".into(),
            source,
        })?;
        self.net_counters
            .set(slot, zero, 0)
            .map_err(DataplaneError::map(format!(
                "zeroing network counter slot {slot}"
            )))
    }

    /// The counter slot of network `vni` (0: it has none).
    pub(super) fn counter_slot(&self, vni: u32) -> Result<u32, DataplaneError> {
        match self.networks.get(&vni, 0) {
            Ok(info) => Ok(info.counter_slot),
            Err(e) if not_found(&e) => Err(DataplaneError::UnknownNetwork(vni)),
            Err(e) => Err(DataplaneError::map(format!("reading network {vni}"))(e)),
        }
    }

    /// Removes a network with its remote routes and peers. Refused while
    /// local endpoints are attached to it.
    pub fn remove_network(&mut self, vni: u32) -> Result<(), DataplaneError> {
        let net = self.network(vni)?;
        let routes: Vec<(RouteKey, RouteValue)> = self
            .routes
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| k.vni == vni)
            .collect();
        if routes.iter().any(|(_, v)| v.kind == ROUTE_LOCAL) {
            return Err(DataplaneError::NetworkInUse(vni));
        }
        for (key, _) in routes {
            self.delete_route(&key)
                .map_err(DataplaneError::map("removing a route"))?;
        }
        let peers: Vec<PeerKey> = self
            .peers
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.vni == vni)
            .collect();
        for key in peers {
            self.delete_peer(&key)
                .map_err(DataplaneError::map("removing a peer"))?;
        }
        self.networks
            .remove(&vni)
            .map_err(DataplaneError::map(format!("removing network {vni}")))?;
        let key = Key::new(u32::from(net.subnet.prefix_len()), be(net.subnet.network()));
        self.subnets
            .remove(&key)
            .map_err(DataplaneError::map(format!(
                "removing subnet {}",
                net.subnet
            )))?;
        // Hosts that served only this network give their slots back.
        self.release_unused_hosts().map(drop)
    }

    /// One network by VNI.
    pub fn network(&self, vni: u32) -> Result<Network, DataplaneError> {
        match self.networks.get(&vni, 0) {
            Ok(info) => Ok(network_from(vni, &info)),
            Err(e) if not_found(&e) => Err(DataplaneError::UnknownNetwork(vni)),
            Err(e) => Err(DataplaneError::map(format!("reading network {vni}"))(e)),
        }
    }

    /// All networks, by VNI.
    pub fn networks(&self) -> Result<Vec<(u32, Network)>, DataplaneError> {
        self.networks
            .iter()
            .map(|r| {
                r.map(|(vni, info)| (vni, network_from(vni, &info)))
                    .map_err(DataplaneError::map("listing networks"))
            })
            .collect()
    }
}

fn network_from(vni: u32, info: &NetworkInfo) -> Network {
    let prefix = u32::from_be(info.mask).leading_ones() as u8;
    Network {
        vni,
        subnet: Ipv4Net::new(v4(info.subnet), prefix).unwrap_or_default(),
        gateway: (info.gateway != 0).then(|| v4(info.gateway)),
        internal: info.flags & NETWORK_FLAG_INTERNAL != 0,
    }
}
