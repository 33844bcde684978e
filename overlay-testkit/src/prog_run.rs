//! A namespace to run the dataplane's programs in with BPF_PROG_RUN.

use std::net::Ipv4Addr;

use overlay_user::model::MacAddr;

use crate::{
    LabError,
    netns::{NetNs, unique_name},
};

/// A namespace for BPF_PROG_RUN: an underlay `ul0` (10.99.0.1/24, IPv4
/// forwarding on so `bpf_fib_lookup` answers) with a permanent neighbour
/// 10.99.0.2 at [`ProgRunHost::NEIGH_MAC`], a neighbour 10.99.0.3 behind a locked
/// route of MTU [`ProgRunHost::NARROW_MTU`], a route to 10.98.0.0/16 via
/// 10.99.0.254 that has no neighbour entry, and veths `ep1`..`ep3` that
/// stand in for endpoint host sides (no dummy driver in this kernel).
pub struct ProgRunHost {
    pub ns: NetNs,
    pub underlay_mac: MacAddr,
    ifindex: std::collections::HashMap<String, u32>,
}

impl ProgRunHost {
    pub const UNDERLAY_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
    pub const NEIGH_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
    pub const NEIGH_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x02];
    /// A host whose route carries a smaller MTU than the device's.
    pub const NARROW_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 3);
    pub const NARROW_MTU: u32 = 1400;
    pub const ENDPOINT_DEVS: [&str; 3] = ["ep1", "ep2", "ep3"];

    pub fn new() -> Result<Self, LabError> {
        let ns = NetNs::new(&unique_name("ovlpr"))?;
        for cmd in [
            "ip link add ul0 type veth peer name ul0p",
            "ip link set ul0p up",
            "ip link set ul0 up",
            "sysctl -qw net.ipv4.conf.ul0.forwarding=1",
            "ip addr add 10.99.0.1/24 dev ul0",
            "ip neigh replace 10.99.0.2 lladdr 02:00:00:00:99:02 dev ul0 nud permanent",
            "ip route add 10.98.0.0/16 via 10.99.0.254 dev ul0",
            "ip neigh replace 10.99.0.3 lladdr 02:00:00:00:99:03 dev ul0 nud permanent",
            "ip route add 10.99.0.3/32 dev ul0 mtu lock 1400",
        ] {
            ns.sh(cmd)?;
        }
        let mut ifindex = std::collections::HashMap::new();
        for dev in Self::ENDPOINT_DEVS {
            ns.sh(&format!("ip link add {dev} type veth peer name {dev}p"))?;
            ns.sh(&format!("ip link set {dev} up"))?;
        }
        for dev in ["ul0"].into_iter().chain(Self::ENDPOINT_DEVS) {
            ifindex.insert(dev.to_owned(), ns.ifindex(dev)?);
        }
        let underlay_mac = ns.mac("ul0")?;
        Ok(Self {
            ns,
            underlay_mac,
            ifindex,
        })
    }

    /// ifindex of `ul0` or `ep1`..`ep3`.
    pub fn ifindex(&self, dev: &str) -> u32 {
        self.ifindex.get(dev).copied().unwrap_or(0)
    }

    /// A 44-byte `__sk_buff` prefix whose `ifindex` (offset 40) names
    /// `dev`: BPF_PROG_RUN then runs a TC program as if on that device.
    pub fn skb_ctx(&self, dev: &str) -> [u8; 44] {
        let mut ctx = [0u8; 44];
        ctx[40..44].copy_from_slice(&self.ifindex(dev).to_ne_bytes());
        ctx
    }
}
