//! The underlay config (this host's address and NIC) and the encap path's
//! cache of underlay next hops.

use std::net::Ipv4Addr;

use aya::maps::{HashMap, MapData};
use overlay_common::{
    CONFIG_FLAG_READY, Config, HostSlot, NextHop, PathMtu, ROUTE_REMOTE, capacity,
};

use super::{Dataplane, DataplaneError, Underlay, be, not_found, v4};
use crate::model::rules;

impl Dataplane {
    /// Sets the host's underlay address and NIC; encap/decap start working.
    pub fn set_underlay(&mut self, underlay: &Underlay) -> Result<(), DataplaneError> {
        if underlay.ifindex == 0 {
            return Err(DataplaneError::InvalidIfindex);
        }
        rules::check_host_address(underlay.ip)?;
        if underlay.vxlan_port == 0 {
            return Err(DataplaneError::InvalidUnderlay("VXLAN port 0"));
        }
        let (min, max) = underlay.src_ports;
        if min == 0 || min > max {
            return Err(DataplaneError::InvalidUnderlay(
                "source port range must be non-empty and start above 0",
            ));
        }
        let cfg = Config {
            underlay_ip: be(underlay.ip),
            underlay_ifindex: underlay.ifindex,
            vxlan_port: underlay.vxlan_port,
            src_port_min: min,
            src_port_max: max,
            _pad0: 0,
            flags: CONFIG_FLAG_READY,
        };
        self.config
            .set(0, &cfg, 0)
            .map_err(DataplaneError::map("writing the underlay config"))?;
        // Next hops found from the old NIC or address are void, and so
        // are path MTUs learned on the old paths.
        self.flush_next_hops()?;
        flush(&mut self.path_mtus, "the path-MTU cache")
    }

    /// The encap path's cache of underlay next hops: (remote host, the
    /// freshest of its CPUs' entries). Entries may be expired; the programs
    /// refresh them on use. Voided ones (another generation) are left out.
    pub fn next_hops(&self) -> Result<Vec<(Ipv4Addr, NextHop)>, DataplaneError> {
        let mut hops = Vec::new();
        for item in self.hosts.iter() {
            let (ip, host) = item.map_err(DataplaneError::map("reading the host slots"))?;
            let generation = self.host_generation(host.slot)?;
            let per_cpu = self
                .nexthops
                .get(&host.slot, 0)
                .map_err(DataplaneError::map("reading the next-hop cache"))?;
            if let Some(hop) = per_cpu
                .iter()
                .filter(|h| h.remote_ip == ip && h.generation == generation)
                .max_by_key(|h| h.expires_jiffies)
            {
                hops.push((v4(ip), *hop));
            }
        }
        hops.sort_by_key(|(ip, _)| *ip);
        Ok(hops)
    }

    fn host_generation(&self, slot: u32) -> Result<u32, DataplaneError> {
        self.host_gens
            .get(&slot, 0)
            .map_err(DataplaneError::map("reading a host generation"))
    }

    /// The next-hop cache slot of remote host `host`: its own, or the
    /// lowest free one (0 when all are taken: its packets then ask the FIB
    /// every time).
    pub(super) fn host_slot(&mut self, host: Ipv4Addr) -> Result<u32, DataplaneError> {
        match self.hosts.get(&be(host), 0) {
            Ok(h) => return Ok(h.slot),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(DataplaneError::map("reading a host slot")(e)),
        }
        let used = self
            .hosts
            .iter()
            .map(|r| r.map(|(_, h)| h.slot))
            .collect::<Result<std::collections::BTreeSet<u32>, _>>()
            .map_err(DataplaneError::map("reading the host slots"))?;
        let Some(slot) = (1..capacity::NEXTHOPS).find(|s| !used.contains(s)) else {
            return Ok(0);
        };
        self.hosts
            .insert(&be(host), &HostSlot { slot }, 0)
            .map_err(DataplaneError::map(format!("adding host {host}")))?;
        Ok(slot)
    }

    /// Gives back the slots of remote hosts no route names any more.
    /// Returns how many.
    pub fn release_unused_hosts(&mut self) -> Result<usize, DataplaneError> {
        let named: std::collections::BTreeSet<u32> = self
            .routes
            .iter()
            .filter_map(|r| match r {
                Ok((_, v)) if v.kind == ROUTE_REMOTE => Some(Ok(v.remote_ip)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .map_err(DataplaneError::map("listing routes"))?;
        let unused: Vec<u32> = self
            .hosts
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(DataplaneError::map("reading the host slots"))?
            .into_iter()
            .filter(|ip| !named.contains(ip))
            .collect();
        for ip in &unused {
            match self.hosts.remove(ip) {
                Err(e) if !not_found(&e) => {
                    return Err(DataplaneError::map("releasing a host slot")(e));
                }
                _ => {}
            }
        }
        Ok(unused.len())
    }

    /// Path MTUs learned from ICMP: (remote host, entry). Entries may be
    /// expired; the encap path ignores those.
    pub fn path_mtus(&self) -> Result<Vec<(Ipv4Addr, PathMtu)>, DataplaneError> {
        let mut mtus = self
            .path_mtus
            .iter()
            .map(|r| r.map(|(ip, m)| (v4(ip), m)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(DataplaneError::map("reading the path-MTU cache"))?;
        mtus.sort_by_key(|(ip, _)| *ip);
        Ok(mtus)
    }

    /// Voids the next-hop cache (a new generation for every host), so the
    /// next packet to each remote host asks the FIB again.
    pub fn flush_next_hops(&mut self) -> Result<(), DataplaneError> {
        let slots = self
            .hosts
            .iter()
            .map(|r| r.map(|(_, h)| h.slot))
            .collect::<Result<Vec<u32>, _>>()
            .map_err(DataplaneError::map("reading the host slots"))?;
        for slot in slots {
            let next = self.host_generation(slot)?.wrapping_add(1);
            self.host_gens
                .set(slot, &next, 0)
                .map_err(DataplaneError::map("voiding cached next hops"))?;
        }
        Ok(())
    }

    /// The configured underlay, if any.
    pub fn underlay(&self) -> Result<Option<Underlay>, DataplaneError> {
        let cfg = self
            .config
            .get(&0, 0)
            .map_err(DataplaneError::map("reading the underlay config"))?;
        if cfg.flags & CONFIG_FLAG_READY == 0 {
            return Ok(None);
        }
        Ok(Some(Underlay {
            ifindex: cfg.underlay_ifindex,
            ip: v4(cfg.underlay_ip),
            vxlan_port: cfg.vxlan_port,
            src_ports: (cfg.src_port_min, cfg.src_port_max),
        }))
    }
}

/// Removes every entry of a cache the programs fill.
fn flush<V: aya::Pod>(
    map: &mut HashMap<MapData, u32, V>,
    what: &'static str,
) -> Result<(), DataplaneError> {
    let keys = map
        .keys()
        .collect::<Result<Vec<_>, _>>()
        .map_err(DataplaneError::map(format!("reading {what}")))?;
    for key in keys {
        match map.remove(&key) {
            // The programs may evict or replace it meanwhile.
            Err(e) if !not_found(&e) => {
                return Err(DataplaneError::map(format!("flushing {what}"))(e));
            }
            _ => {}
        }
    }
    Ok(())
}
