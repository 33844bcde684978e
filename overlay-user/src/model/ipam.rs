//! Address management the way Docker does it: subnets from default pools,
//! the gateway on the first address, dynamic addresses from the lowest free
//! one (inside `--ip-range` when given), static ones checked.

use std::{collections::BTreeSet, net::Ipv4Addr};

use ipnet::Ipv4Net;

/// Docker's default local pools but the first: 172.18-31.0.0/16, then
/// 192.168.x.0/20. 172.17.0.0/16 stays Docker's `docker0`: dockerd takes
/// it at start when no route covers it, and our networks have no such route
/// (only a /32 per endpoint), so a host running both would have it twice.
pub const BRIDGE_POOLS: &[(&str, u8)] = &[
    ("172.18.0.0/15", 16),
    ("172.20.0.0/14", 16),
    ("172.24.0.0/13", 16),
    ("192.168.0.0/16", 20),
];
/// Docker's default swarm pool for overlay networks: 10.0.0.0/8 in /24s.
pub const OVERLAY_POOLS: &[(&str, u8)] = &[("10.0.0.0/8", 24)];

/// True when the two subnets share any address.
pub fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first subnet of the pools that overlaps none of `taken`.
pub fn pick_subnet(pools: &[(&str, u8)], taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    pools.iter().find_map(|(pool, size)| {
        let pool: Ipv4Net = pool.parse().ok()?;
        pool.subnets(*size)
            .ok()?
            .find(|candidate| taken.iter().all(|t| !overlaps(*candidate, *t)))
    })
}

/// A usable host address of `subnet`: not the network or broadcast address.
pub fn is_host(subnet: Ipv4Net, ip: Ipv4Addr) -> bool {
    subnet.contains(&ip) && ip != subnet.network() && ip != subnet.broadcast()
}

/// The lowest free host address of `subnet` (within `range` if given) that
/// is neither the gateway nor in `used`.
pub fn allocate(
    subnet: Ipv4Net,
    range: Option<Ipv4Net>,
    gateway: Ipv4Addr,
    used: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    // Every address of the range counts (its own network/broadcast are
    // ordinary hosts of the subnet); only the subnet's are excluded.
    let scope = range.unwrap_or(subnet);
    (u32::from(scope.network())..=u32::from(scope.broadcast()))
        .map(Ipv4Addr::from)
        .filter(|ip| is_host(subnet, *ip))
        .find(|ip| *ip != gateway && !used.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("test subnet")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("test address")
    }

    #[test]
    fn pools_skip_taken_subnets() {
        assert_eq!(pick_subnet(BRIDGE_POOLS, &[]), Some(net("172.18.0.0/16")));
        let taken = [net("172.18.0.0/16"), net("172.19.5.0/24")];
        assert_eq!(
            pick_subnet(BRIDGE_POOLS, &taken),
            Some(net("172.20.0.0/16"))
        );
        assert_eq!(
            pick_subnet(OVERLAY_POOLS, &[net("10.0.0.0/23")]),
            Some(net("10.0.2.0/24"))
        );
        // A taken supernet hides the whole pool.
        assert_eq!(pick_subnet(OVERLAY_POOLS, &[net("10.0.0.0/8")]), None);
    }

    #[test]
    fn allocation_skips_gateway_used_and_special_addresses() {
        let subnet = net("10.1.0.0/29");
        let gw = ip("10.1.0.1");
        let mut used = BTreeSet::new();
        assert_eq!(allocate(subnet, None, gw, &used), Some(ip("10.1.0.2")));
        used.insert(ip("10.1.0.2"));
        used.insert(ip("10.1.0.3"));
        assert_eq!(allocate(subnet, None, gw, &used), Some(ip("10.1.0.4")));
        for a in ["10.1.0.4", "10.1.0.5", "10.1.0.6"] {
            used.insert(ip(a));
        }
        assert_eq!(
            allocate(subnet, None, gw, &used),
            None,
            "exhausted (.7 is broadcast)"
        );
    }

    #[test]
    fn ip_range_limits_dynamic_allocation() {
        let subnet = net("10.1.0.0/24");
        let range = Some(net("10.1.0.128/30"));
        let mut used = BTreeSet::new();
        let got: Vec<_> = (0..5)
            .map_while(|_| {
                let a = allocate(subnet, range, ip("10.1.0.1"), &used)?;
                used.insert(a);
                Some(a)
            })
            .collect();
        assert_eq!(
            got,
            ["10.1.0.128", "10.1.0.129", "10.1.0.130", "10.1.0.131"].map(ip)
        );
    }
}
