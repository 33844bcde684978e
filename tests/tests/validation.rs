//! Bad input to the Dataplane: each operation fails with its typed error
//! and leaves every map exactly as it was.

use std::net::Ipv4Addr;

use overlay_testkit::{PinDir, assert_no_failures, require_root};
use overlay_user::{
    dataplane::{
        Dataplane, DataplaneError, Guard, LocalEndpoint, Network, RemoteEndpoint, RouteTarget,
        Underlay,
    },
    model::{MacAddr, RuleError},
};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn net(vni: u32, subnet: &str, gateway: Option<&str>) -> Network {
    Network {
        vni,
        subnet: subnet.parse().expect("test subnet"),
        gateway: gateway.map(ip),
        internal: false,
    }
}

fn local(vni: u32, addr: &str, ifindex: u32) -> LocalEndpoint {
    LocalEndpoint {
        vni,
        ip: ip(addr),
        mac: MacAddr::from_ipv4(ip(addr)),
        host_ifindex: ifindex,
        host_mac: MacAddr([0x02, 0xee, 0, 0, 0, 1]),
    }
}

fn remote(vni: u32, addr: &str, host: &str) -> RemoteEndpoint {
    RemoteEndpoint {
        vni,
        ip: ip(addr),
        mac: MacAddr::from_ipv4(ip(addr)),
        host: ip(host),
    }
}

type Op = Box<dyn Fn(&mut Dataplane) -> Result<(), DataplaneError>>;
type Expected = fn(&DataplaneError) -> bool;

#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    if !require_root("bad_input_is_rejected_and_changes_nothing") {
        return;
    }
    let pins = PinDir::new("val");
    let mut dp = Dataplane::load(&pins.0).expect("load");
    dp.set_underlay(&Underlay::new(1, ip("192.0.2.1")))
        .expect("underlay");
    dp.add_network(&net(100, "10.0.1.0/24", Some("10.0.1.1")))
        .expect("net 100");
    dp.add_local_endpoint(&local(100, "10.0.1.2", 7))
        .expect("local");
    dp.add_remote_endpoint(&remote(100, "10.0.1.3", "192.0.2.2"))
        .expect("remote");
    dp.add_peer(ip("192.0.2.2"), 100).expect("peer");

    let cases: Vec<(&str, Op, Expected)> = vec![
        (
            "vni 0",
            Box::new(|dp| dp.add_network(&net(0, "10.0.9.0/24", None))),
            |e| matches!(e, DataplaneError::Rule(RuleError::InvalidVni(0))),
        ),
        (
            "vni over 24 bits",
            Box::new(|dp| dp.add_network(&net(1 << 24, "10.0.9.0/24", None))),
            |e| matches!(e, DataplaneError::Rule(RuleError::InvalidVni(_))),
        ),
        (
            "subnet /31",
            Box::new(|dp| dp.add_network(&net(9, "10.0.9.0/31", None))),
            |e| {
                matches!(
                    e,
                    DataplaneError::Rule(RuleError::HostBits(..) | RuleError::SubnetTooSmall(_))
                )
            },
        ),
        (
            "subnet with host bits",
            Box::new(|dp| dp.add_network(&net(9, "10.0.9.5/24", None))),
            |e| {
                matches!(
                    e,
                    DataplaneError::Rule(RuleError::HostBits(..) | RuleError::SubnetTooSmall(_))
                )
            },
        ),
        (
            "gateway outside subnet",
            Box::new(|dp| dp.add_network(&net(9, "10.0.9.0/24", Some("10.0.8.1")))),
            |e| matches!(e, DataplaneError::Rule(RuleError::GatewayOutside(..))),
        ),
        (
            "gateway is the network address",
            Box::new(|dp| dp.add_network(&net(9, "10.0.9.0/24", Some("10.0.9.0")))),
            |e| matches!(e, DataplaneError::Rule(RuleError::GatewayOutside(..))),
        ),
        (
            "gateway is the broadcast address",
            Box::new(|dp| dp.add_network(&net(9, "10.0.9.0/24", Some("10.0.9.255")))),
            |e| matches!(e, DataplaneError::Rule(RuleError::GatewayOutside(..))),
        ),
        (
            "duplicate vni",
            Box::new(|dp| dp.add_network(&net(100, "10.0.9.0/24", None))),
            |e| matches!(e, DataplaneError::NetworkExists(100)),
        ),
        (
            "subnet inside another",
            Box::new(|dp| dp.add_network(&net(9, "10.0.1.128/25", None))),
            |e| matches!(e, DataplaneError::SubnetOverlap { other_vni: 100, .. }),
        ),
        (
            "subnet containing another",
            Box::new(|dp| dp.add_network(&net(9, "10.0.0.0/16", None))),
            |e| matches!(e, DataplaneError::SubnetOverlap { other_vni: 100, .. }),
        ),
        (
            "endpoint in unknown network",
            Box::new(|dp| dp.add_local_endpoint(&local(5, "10.0.1.9", 8))),
            |e| matches!(e, DataplaneError::UnknownNetwork(5)),
        ),
        (
            "endpoint outside subnet",
            Box::new(|dp| dp.add_local_endpoint(&local(100, "10.0.2.9", 8))),
            |e| matches!(e, DataplaneError::Rule(RuleError::AddressOutside(..))),
        ),
        (
            "endpoint on the gateway address",
            Box::new(|dp| dp.add_local_endpoint(&local(100, "10.0.1.1", 8))),
            |e| matches!(e, DataplaneError::Rule(RuleError::AddressOutside(..))),
        ),
        (
            "endpoint on the broadcast address",
            Box::new(|dp| dp.add_local_endpoint(&local(100, "10.0.1.255", 8))),
            |e| matches!(e, DataplaneError::Rule(RuleError::AddressOutside(..))),
        ),
        (
            "endpoint address taken (local)",
            Box::new(|dp| dp.add_local_endpoint(&local(100, "10.0.1.2", 8))),
            |e| matches!(e, DataplaneError::AddressInUse { .. }),
        ),
        (
            "endpoint address taken (remote)",
            Box::new(|dp| dp.add_local_endpoint(&local(100, "10.0.1.3", 8))),
            |e| matches!(e, DataplaneError::AddressInUse { .. }),
        ),
        (
            "interface already an endpoint",
            Box::new(|dp| dp.add_local_endpoint(&local(100, "10.0.1.9", 7))),
            |e| matches!(e, DataplaneError::EndpointExists(7)),
        ),
        (
            "interface index 0",
            Box::new(|dp| dp.add_local_endpoint(&local(100, "10.0.1.9", 0))),
            |e| matches!(e, DataplaneError::InvalidIfindex),
        ),
        (
            "multicast endpoint mac",
            Box::new(|dp| {
                dp.add_local_endpoint(&LocalEndpoint {
                    mac: MacAddr([1, 0, 0x5e, 0, 0, 1]),
                    ..local(100, "10.0.1.9", 8)
                })
            }),
            |e| matches!(e, DataplaneError::Rule(RuleError::InvalidMac(_))),
        ),
        (
            "zero host mac",
            Box::new(|dp| {
                dp.add_local_endpoint(&LocalEndpoint {
                    host_mac: MacAddr::default(),
                    ..local(100, "10.0.1.9", 8)
                })
            }),
            |e| matches!(e, DataplaneError::Rule(RuleError::InvalidMac(_))),
        ),
        (
            "remote on a local address",
            Box::new(|dp| dp.add_remote_endpoint(&remote(100, "10.0.1.2", "192.0.2.2"))),
            |e| matches!(e, DataplaneError::AddressInUse { .. }),
        ),
        (
            "remote host 0.0.0.0",
            Box::new(|dp| dp.add_remote_endpoint(&remote(100, "10.0.1.9", "0.0.0.0"))),
            |e| matches!(e, DataplaneError::Rule(RuleError::InvalidHostAddress(_))),
        ),
        (
            "remote host multicast",
            Box::new(|dp| dp.add_remote_endpoint(&remote(100, "10.0.1.9", "239.1.1.1"))),
            |e| matches!(e, DataplaneError::Rule(RuleError::InvalidHostAddress(_))),
        ),
        (
            "peer for unknown network",
            Box::new(|dp| dp.add_peer(ip("192.0.2.3"), 5)),
            |e| matches!(e, DataplaneError::UnknownNetwork(5)),
        ),
        (
            "peer on loopback",
            Box::new(|dp| dp.add_peer(ip("127.0.0.1"), 100)),
            |e| matches!(e, DataplaneError::Rule(RuleError::InvalidHostAddress(_))),
        ),
        (
            "remove network in use",
            Box::new(|dp| dp.remove_network(100)),
            |e| matches!(e, DataplaneError::NetworkInUse(100)),
        ),
        (
            "remove unknown network",
            Box::new(|dp| dp.remove_network(5)),
            |e| matches!(e, DataplaneError::UnknownNetwork(5)),
        ),
        (
            "remove unknown endpoint",
            Box::new(|dp| dp.remove_local_endpoint(99)),
            |e| matches!(e, DataplaneError::UnknownEndpoint(99)),
        ),
        (
            "remove local endpoint as remote",
            Box::new(|dp| dp.remove_remote_endpoint(100, ip("10.0.1.2"))),
            |e| matches!(e, DataplaneError::UnknownAddress { .. }),
        ),
        (
            "underlay ifindex 0",
            Box::new(|dp| dp.set_underlay(&Underlay::new(0, ip("192.0.2.9")))),
            |e| matches!(e, DataplaneError::InvalidIfindex),
        ),
        (
            "underlay address 0.0.0.0",
            Box::new(|dp| dp.set_underlay(&Underlay::new(1, ip("0.0.0.0")))),
            |e| matches!(e, DataplaneError::Rule(RuleError::InvalidHostAddress(_))),
        ),
        (
            "vxlan port 0",
            Box::new(|dp| {
                dp.set_underlay(&Underlay {
                    vxlan_port: 0,
                    ..Underlay::new(1, ip("192.0.2.9"))
                })
            }),
            |e| matches!(e, DataplaneError::InvalidUnderlay(_)),
        ),
        (
            "inverted source port range",
            Box::new(|dp| {
                dp.set_underlay(&Underlay {
                    src_ports: (5000, 4000),
                    ..Underlay::new(1, ip("192.0.2.9"))
                })
            }),
            |e| matches!(e, DataplaneError::InvalidUnderlay(_)),
        ),
        (
            "guarded address 0.0.0.0",
            Box::new(|dp| dp.add_guard(Guard("0.0.0.0:2379".parse().expect("addr")))),
            |e| matches!(e, DataplaneError::Rule(RuleError::InvalidHostAddress(_))),
        ),
        (
            "guarded port 0",
            Box::new(|dp| dp.add_guard(Guard("192.0.2.9:0".parse().expect("addr")))),
            |e| matches!(e, DataplaneError::InvalidUnderlay(_)),
        ),
    ];

    let before = dp.state().expect("state");
    let mut failures = Vec::new();
    for (what, op, expected) in &cases {
        match op(&mut dp) {
            Ok(()) => failures.push(format!("{what}: accepted")),
            Err(e) if !expected(&e) => failures.push(format!("{what}: wrong error {e:?}")),
            Err(e) => {
                // The message is what a user sees: it must name something.
                assert!(!e.to_string().is_empty(), "{what}: empty message");
            }
        }
        if dp.state().expect("state") != before {
            failures.push(format!("{what}: maps changed"));
        }
    }
    assert_no_failures(&failures, cases.len());
}

#[test]
fn removing_a_network_removes_its_routes_and_peers() {
    if !require_root("removing_a_network_removes_its_routes_and_peers") {
        return;
    }
    let pins = PinDir::new("rm");
    let mut dp = Dataplane::load(&pins.0).expect("load");
    let empty = dp.state().expect("state");
    dp.add_network(&net(100, "10.0.1.0/24", Some("10.0.1.1")))
        .expect("net");
    dp.add_local_endpoint(&local(100, "10.0.1.2", 7))
        .expect("local");
    dp.add_remote_endpoint(&remote(100, "10.0.1.3", "192.0.2.2"))
        .expect("remote");
    dp.add_peer(ip("192.0.2.2"), 100).expect("peer");
    dp.remove_local_endpoint(7).expect("remove local");
    dp.remove_network(100).expect("remove network");
    assert_eq!(
        dp.state().expect("state"),
        empty,
        "everything of the network is gone"
    );
    // And the same subnet and VNI can be used again.
    dp.add_network(&net(100, "10.0.1.0/24", None))
        .expect("re-add");
}

#[test]
fn route_targets_read_back_as_written() {
    if !require_root("route_targets_read_back_as_written") {
        return;
    }
    let pins = PinDir::new("rt");
    let mut dp = Dataplane::load(&pins.0).expect("load");
    dp.add_network(&net(100, "10.0.1.0/24", Some("10.0.1.1")))
        .expect("net");
    dp.add_local_endpoint(&local(100, "10.0.1.2", 7))
        .expect("local");
    dp.add_remote_endpoint(&remote(100, "10.0.1.3", "192.0.2.2"))
        .expect("remote");
    let target = |dp: &Dataplane, a: &str| dp.route_target(100, ip(a)).expect("read");
    assert_eq!(target(&dp, "10.0.1.2"), Some(RouteTarget::Local(7)));
    assert_eq!(
        target(&dp, "10.0.1.3"),
        Some(RouteTarget::Remote(ip("192.0.2.2")))
    );
    assert_eq!(target(&dp, "10.0.1.4"), None);
    assert_eq!(dp.route_target(101, ip("10.0.1.2")).expect("read"), None);
}

#[test]
fn pinned_state_survives_reloading() {
    if !require_root("pinned_state_survives_reloading") {
        return;
    }
    let pins = PinDir::new("pin");
    let state = {
        let mut dp = Dataplane::load(&pins.0).expect("load");
        dp.add_network(&net(100, "10.0.1.0/24", Some("10.0.1.1")))
            .expect("net");
        dp.add_remote_endpoint(&remote(100, "10.0.1.3", "192.0.2.2"))
            .expect("remote");
        dp.state().expect("state")
    };
    let dp = Dataplane::load(&pins.0).expect("reload");
    assert_eq!(
        dp.state().expect("state"),
        state,
        "a second load reuses the pinned maps"
    );
}

/// Maps pinned by an incompatible version (here another map pinned under
/// a map's name: another type and layout) are refused with the way out,
/// and left as they were.
#[test]
fn incompatible_pins_are_refused_with_the_way_out() {
    if !require_root("incompatible_pins_are_refused_with_the_way_out") {
        return;
    }
    let pins = PinDir::new("inc");
    let mut dp = Dataplane::load(&pins.0).expect("load");
    dp.add_network(&net(100, "10.0.1.0/24", Some("10.0.1.1")))
        .expect("net");
    drop(dp);
    let maps = pins.0.join("maps");
    let networks = maps.join(overlay_common::maps::names::NETWORKS);
    std::fs::remove_file(&networks).expect("unpin the networks map");
    aya::maps::MapData::from_pin(maps.join(overlay_common::maps::names::CONFIG))
        .expect("config map")
        .pin(&networks)
        .expect("pin it under the networks map's name");

    let err = Dataplane::load(&pins.0).err().expect("refused");
    assert!(
        matches!(err, DataplaneError::IncompatiblePins { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("overlay destroy"), "{err}");
    assert!(networks.exists(), "the pins are left as they were");

    // The way out: destroy, then a fresh load works.
    Dataplane::destroy(&pins.0).expect("destroy");
    let dp = Dataplane::load(&pins.0).expect("load after destroy");
    assert!(dp.networks().expect("networks").is_empty());
}

/// A remote host holds a next-hop cache slot while some route names it;
/// removing its last route frees it for the next housekeeping pass, and
/// removing a network frees those of its hosts at once.
#[test]
fn host_slots_follow_the_routes() {
    if !require_root("host_slots_follow_the_routes") {
        return;
    }
    let pins = PinDir::new("hs");
    let mut dp = Dataplane::load(&pins.0).expect("load");
    dp.add_network(&net(100, "10.0.1.0/24", Some("10.0.1.1")))
        .expect("net");
    dp.add_remote_endpoint(&remote(100, "10.0.1.3", "192.0.2.2"))
        .expect("remote on .2");
    dp.add_remote_endpoint(&remote(100, "10.0.1.4", "192.0.2.3"))
        .expect("remote on .3");
    dp.add_remote_endpoint(&remote(100, "10.0.1.5", "192.0.2.3"))
        .expect("another on .3");
    assert_eq!(dp.release_unused_hosts().expect("gc"), 0, "all in use");
    dp.remove_remote_endpoint(100, ip("10.0.1.4"))
        .expect("remove one");
    assert_eq!(dp.release_unused_hosts().expect("gc"), 0, ".3 still named");
    dp.remove_remote_endpoint(100, ip("10.0.1.5"))
        .expect("remove the other");
    assert_eq!(dp.release_unused_hosts().expect("gc"), 1, ".3 freed");
    dp.remove_network(100).expect("remove network");
    assert_eq!(
        dp.release_unused_hosts().expect("gc"),
        0,
        ".2 went with the network"
    );
}
