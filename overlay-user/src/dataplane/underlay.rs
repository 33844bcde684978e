//! The underlay config (this host's address and NIC) and the encap path's
//! cache of underlay next hops.

use std::net::Ipv4Addr;

use aya::maps::{HashMap, MapData};
use overlay_common::{CONFIG_FLAG_READY, Config, NextHop, PathMtu};

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

    /// The encap path's cache of underlay next hops: (remote host, entry).
    /// Entries may be expired; the programs refresh them on use.
    pub fn next_hops(&self) -> Result<Vec<(Ipv4Addr, NextHop)>, DataplaneError> {
        let mut hops = self
            .nexthops
            .iter()
            .map(|r| r.map(|(ip, hop)| (v4(ip), hop)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(DataplaneError::map("reading the next-hop cache"))?;
        hops.sort_by_key(|(ip, _)| *ip);
        Ok(hops)
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

    /// Empties the next-hop cache, so the next packet to each remote host
    /// asks the FIB again.
    pub fn flush_next_hops(&mut self) -> Result<(), DataplaneError> {
        flush(&mut self.nexthops, "the next-hop cache")
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
