//! Two simulated hosts joined by a veth underlay, each running this
//! dataplane, with containers on one or two overlay networks.

use std::net::Ipv4Addr;

use overlay_common::{Counter, DropReason};
use overlay_testkit::{
    lab::Lab,
    require_root,
    traffic::{tcp_transfer, udp_burst},
};
use overlay_user::model::DecapRequest;

const NET_A: u32 = 100;
const NET_B: u32 = 200;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

/// h1: a1, a2 on NET_A; h2: b1, b2 on NET_A.
fn one_network(mode: DecapRequest) -> Lab {
    let mut lab = Lab::two_hosts(mode).expect("two hosts");
    lab.add_network(NET_A, "10.10.0.0/24").expect("network");
    for (host, name, addr) in [
        (0, "a1", "10.10.0.2"),
        (0, "a2", "10.10.0.3"),
        (1, "b1", "10.10.0.4"),
        (1, "b2", "10.10.0.5"),
    ] {
        lab.add_container(host, name, &[(NET_A, ip(addr))])
            .unwrap_or_else(|e| panic!("container {name}: {e}"));
    }
    lab
}

fn same_and_cross_host(mode: DecapRequest) {
    let lab = one_network(mode);
    let (a1, a2, b1, b2) = (0, 1, 2, 3);
    assert!(lab.ping(a1, ip("10.10.0.3"), 3), "same host a1 -> a2");
    assert!(lab.ping(a2, ip("10.10.0.2"), 3), "same host a2 -> a1");
    assert!(lab.ping(a1, ip("10.10.0.4"), 3), "cross host a1 -> b1");
    assert!(lab.ping(b2, ip("10.10.0.2"), 3), "cross host b2 -> a1");
    assert!(lab.ping(b1, ip("10.10.0.5"), 3), "same host b1 -> b2");

    let local = lab.hosts[0].dp().counters().expect("counters");
    assert!(
        local.outcome(Counter::ForwardLocal).packets >= 6,
        "same-host forwarding counted: {local:?}"
    );

    const MB100: usize = 100 * 1024 * 1024;
    let (sent, got, n) = tcp_transfer(
        &lab.containers[a1].ns,
        &lab.containers[b1].ns,
        ip("10.10.0.4"),
        5001,
        MB100,
    );
    assert_eq!(n, MB100, "cross-host transfer length");
    assert_eq!(sent, got, "cross-host transfer must arrive byte-identical");
    let (sent, got, n) = tcp_transfer(
        &lab.containers[b2].ns,
        &lab.containers[a2].ns,
        ip("10.10.0.3"),
        5002,
        8 * 1024 * 1024,
    );
    assert_eq!(
        (n, sent),
        (8 * 1024 * 1024, got),
        "reverse cross-host transfer"
    );
    let (sent, got, n) = tcp_transfer(
        &lab.containers[a1].ns,
        &lab.containers[a2].ns,
        ip("10.10.0.3"),
        5003,
        8 * 1024 * 1024,
    );
    assert_eq!((n, sent), (8 * 1024 * 1024, got), "same-host transfer");
}

#[test]
fn same_and_cross_host_with_xdp_decap() {
    if require_root("same_and_cross_host_with_xdp_decap") {
        same_and_cross_host(DecapRequest::Xdp);
    }
}

#[test]
fn same_and_cross_host_with_generic_xdp_decap() {
    if require_root("same_and_cross_host_with_generic_xdp_decap") {
        same_and_cross_host(DecapRequest::XdpGeneric);
    }
}

/// The default: `auto` on a veth underlay with its offloads on, as shipped.
#[test]
fn same_and_cross_host_with_default_decap() {
    if require_root("same_and_cross_host_with_default_decap") {
        same_and_cross_host(DecapRequest::Auto);
    }
}

#[test]
fn same_and_cross_host_with_tc_decap() {
    if require_root("same_and_cross_host_with_tc_decap") {
        same_and_cross_host(DecapRequest::Tc);
    }
}

#[test]
fn networks_are_isolated_and_dual_homed_container_reaches_both() {
    if !require_root("networks_are_isolated") {
        return;
    }
    let mut lab = Lab::two_hosts(DecapRequest::Xdp).expect("two hosts");
    lab.add_network(NET_A, "10.10.0.0/24").expect("net A");
    lab.add_network(NET_B, "10.20.0.0/24").expect("net B");
    let a1 = lab
        .add_container(0, "a1", &[(NET_A, ip("10.10.0.2"))])
        .expect("a1");
    let x1 = lab
        .add_container(0, "x1", &[(NET_B, ip("10.20.0.2"))])
        .expect("x1");
    let b1 = lab
        .add_container(1, "b1", &[(NET_A, ip("10.10.0.3"))])
        .expect("b1");
    let y1 = lab
        .add_container(1, "y1", &[(NET_B, ip("10.20.0.3"))])
        .expect("y1");
    let dual = lab
        .add_container(
            0,
            "dual",
            &[(NET_A, ip("10.10.0.9")), (NET_B, ip("10.20.0.9"))],
        )
        .expect("dual");

    // Positive controls first, so a failure below is isolation, not breakage.
    assert!(lab.ping(a1, ip("10.10.0.3"), 2), "a1 -> b1 (same network)");
    assert!(lab.ping(x1, ip("10.20.0.3"), 2), "x1 -> y1 (same network)");

    let before: Vec<_> = lab
        .hosts
        .iter()
        .map(|h| h.dp().counters().expect("counters"))
        .collect();
    for (from, to, what) in [
        (a1, "10.20.0.2", "same host A -> B"),
        (x1, "10.10.0.2", "same host B -> A"),
        (a1, "10.20.0.3", "cross host A -> B"),
        (y1, "10.10.0.2", "cross host B -> A"),
        (b1, "10.20.0.9", "cross host A -> dual's B address"),
    ] {
        assert!(
            lab.ping_fails(from, ip(to), 1),
            "{what} must not get through"
        );
    }
    let isolation: u64 = lab
        .hosts
        .iter()
        .zip(&before)
        .map(|(h, b)| {
            h.dp()
                .counters()
                .expect("counters")
                .since(b)
                .drop(DropReason::Isolation)
                .packets
        })
        .sum();
    assert!(
        isolation >= 5,
        "every blocked ping is an isolation drop, got {isolation}"
    );

    for (to, what) in [
        ("10.10.0.2", "a1"),
        ("10.10.0.3", "b1"),
        ("10.20.0.2", "x1"),
        ("10.20.0.3", "y1"),
    ] {
        assert!(
            lab.ping(dual, ip(to), 2),
            "dual-homed container reaches {what}"
        );
    }
    assert!(lab.ping(y1, ip("10.20.0.9"), 2), "y1 reaches dual on B");
    assert!(lab.ping(a1, ip("10.10.0.9"), 2), "a1 reaches dual on A");
}

#[test]
fn counters_match_what_was_sent() {
    if !require_root("counters_match_what_was_sent") {
        return;
    }
    let lab = one_network(DecapRequest::Xdp);
    let (a1, b1) = (0, 2);
    // Resolve ARP first so only the datagrams below cross the overlay.
    assert!(lab.ping(a1, ip("10.10.0.4"), 1), "warm-up ping");
    let h1 = lab.hosts[0].dp().counters().expect("counters");
    let h2 = lab.hosts[1].dp().counters().expect("counters");
    const N: u32 = 500;
    let got = udp_burst(
        &lab.containers[a1].ns,
        &lab.containers[b1].ns,
        ip("10.10.0.4"),
        7000,
        N,
        1000,
    );
    assert_eq!(got, N, "every datagram arrives");
    let d1 = lab.hosts[0].dp().counters().expect("counters").since(&h1);
    let d2 = lab.hosts[1].dp().counters().expect("counters").since(&h2);
    let encap = d1.outcome(Counter::Encap);
    assert_eq!(
        encap.packets,
        u64::from(N),
        "h1 encapsulated each datagram once: {d1:?}"
    );
    // Frame as the container sent it: 14 + 20 + 8 + 1000.
    assert_eq!(
        encap.bytes,
        u64::from(N) * 1042,
        "encap bytes are the inner frames"
    );
    assert_eq!(
        d2.outcome(Counter::DecapXdp).packets,
        u64::from(N),
        "h2 decapsulated each: {d2:?}"
    );
    assert_eq!(
        d2.outcome(Counter::DecapXdp).bytes,
        u64::from(N) * (1042 + 50),
        "decap bytes are outer frames"
    );
    let drops: u64 = d1
        .drops
        .values()
        .chain(d2.drops.values())
        .map(|v| v.packets)
        .sum();
    assert_eq!(drops, 0, "nothing dropped: {d1:?} {d2:?}");
}
