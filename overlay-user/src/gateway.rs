//! The host side of the gateway path. A container's traffic to anything
//! outside every network leaves the endpoint program with TC_ACT_OK into
//! this host's stack, which routes it on and masquerades it:
//! - each network's gateway address lives on `lo`, so the host answers to it;
//! - each endpoint gets a /32 route and a permanent neighbour entry on its
//!   host-side veth (the endpoint program answers ARP itself and drops ARP
//!   replies, so the host could not learn the container's MAC);
//! - one nftables table, `ip overlay`, owned by this program and rebuilt from
//!   the state as a whole: a masquerade rule per non-internal network.

use std::net::Ipv4Addr;

use crate::{
    MacAddr,
    netns::{self, NetnsError},
    store::Snapshot,
};

/// The nftables table this program owns.
pub const NAT_TABLE: &str = "overlay";

/// Adds `gw/32` to `lo`; false when it was there already.
pub fn add_address(gw: Ipv4Addr) -> Result<bool, NetnsError> {
    match netns::ip(&["addr", "add", &format!("{gw}/32"), "dev", "lo"]) {
        Ok(_) => Ok(true),
        Err(NetnsError::Command { stderr, .. }) if stderr.contains("File exists") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes `gw/32` from `lo` (absent is fine).
pub fn remove_address(gw: Ipv4Addr) -> Result<(), NetnsError> {
    match netns::ip(&["addr", "del", &format!("{gw}/32"), "dev", "lo"]) {
        Ok(_) => Ok(()),
        Err(NetnsError::Command { stderr, .. }) if stderr.contains("Cannot assign") => Ok(()),
        Err(e) => Err(e),
    }
}

/// Lets the host route container traffic out (Docker does the same).
pub fn enable_forwarding() -> Result<(), NetnsError> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|source| NetnsError::Io {
        op: "write",
        name: "/proc/sys/net/ipv4/ip_forward".into(),
        source,
    })
}

/// Route and neighbour entry that carry replies back to an endpoint.
pub fn endpoint_route(ip: Ipv4Addr, mac: MacAddr, host_ifname: &str) -> Result<(), NetnsError> {
    let dst = format!("{ip}/32");
    netns::ip(&[
        "route",
        "replace",
        &dst,
        "dev",
        host_ifname,
        "scope",
        "link",
    ])?;
    netns::ip(&[
        "neigh",
        "replace",
        &ip.to_string(),
        "lladdr",
        &mac.to_string(),
        "dev",
        host_ifname,
        "nud",
        "permanent",
    ])?;
    Ok(())
}

/// The ruleset for `state`: masquerade what non-internal networks send
/// outside their subnet.
pub fn nat_ruleset(state: &Snapshot) -> String {
    // Add-then-delete makes the replacement one transaction whether or not
    // the table existed.
    let mut rules = format!("table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\n");
    let nets: Vec<_> = state.networks.values().filter(|n| !n.internal).collect();
    if nets.is_empty() {
        return rules;
    }
    rules.push_str(&format!(
        "table ip {NAT_TABLE} {{\n  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n"
    ));
    for n in nets {
        rules.push_str(&format!(
            "    ip saddr {s} ip daddr != {s} masquerade comment \"{name}\"\n",
            s = n.subnet,
            name = n.name
        ));
    }
    rules.push_str("  }\n}\n");
    rules
}

/// Applies [`nat_ruleset`] atomically with `nft -f -`.
pub fn sync_nat(state: &Snapshot) -> Result<(), NetnsError> {
    netns::run_with_input("nft", &["-f", "-"], Some(nat_ruleset(state).as_bytes())).map(drop)
}
