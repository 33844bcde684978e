//! Metrics: a real Prometheus server scrapes the daemon's `/metrics`
//! (`--metrics-address`), and its query API shows the dataplane's counters
//! moving with traffic and drops, the endpoints and maps, and the CLI's
//! requests.

mod common;

use std::net::SocketAddr;

use common::{eventually, host, require_root};
use overlay_testkit::prometheus::Prometheus;

/// Where the daemon serves metrics, inside the host's namespace.
const METRICS: &str = "127.0.0.1:9464";

/// Waits (up to 20 s: scrapes are a second apart) until `promql` selects
/// one series whose value satisfies `ok`; panics with what it saw.
fn wait_for(prom: &Prometheus, promql: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let mut last = None;
    let met = eventually(20, || {
        last = prom.value(promql);
        last.is_some_and(&ok)
    });
    assert!(met.is_some(), "{promql}: last value {last:?}");
    last.expect("a value")
}

#[test]
fn prometheus_sees_traffic_drops_endpoints_and_requests() {
    if !require_root("prometheus_sees_traffic_drops_endpoints_and_requests") {
        return;
    }
    let mut h = host();
    h.start_daemon(&["--interval", "1", "--metrics-address", METRICS]);
    h.ok(&["network", "create", "front"]);
    h.ok(&["network", "create", "back"]);
    // A request that fails: the name is taken.
    h.fails(&["network", "create", "front"]);
    let a = h.container("a", "front");
    let b = h.container("b", "front");
    let c = h.container("c", "back");
    let b_ip = h.ip_of("front", &b);

    let target: SocketAddr = METRICS.parse().expect("address");
    let prom = Prometheus::start(&h.ns, target).expect("a Prometheus server");
    wait_for(&prom, r#"up{job="overlay"}"#, |v| v == 1.0);
    wait_for(&prom, "overlay_dataplane_up", |v| v == 1.0);
    wait_for(&prom, "overlay_build_info", |v| v == 1.0);

    // Endpoints per network and location, and the maps holding them.
    wait_for(
        &prom,
        r#"overlay_endpoints{network="front",location="local"}"#,
        |v| v == 2.0,
    );
    wait_for(
        &prom,
        r#"overlay_endpoints{network="back",location="local"}"#,
        |v| v == 1.0,
    );
    wait_for(&prom, r#"overlay_map_entries{map="endpoints"}"#, |v| {
        v == 3.0
    });
    wait_for(
        &prom,
        r#"overlay_map_capacity_entries{map="endpoints"}"#,
        |v| v >= 3.0,
    );

    // The CLI's requests, by command and result.
    wait_for(
        &prom,
        r#"overlay_requests_total{interface="cli",command="network-create",result="ok"}"#,
        |v| v == 2.0,
    );
    wait_for(
        &prom,
        r#"overlay_requests_total{interface="cli",command="network-create",result="error"}"#,
        |v| v == 1.0,
    );

    // Traffic on front: its local forwards grow, back's do not.
    let forwards = r#"overlay_network_packets_total{network="front",outcome="forward_local"}"#;
    let before = prom.value(forwards).unwrap_or(0.0);
    for _ in 0..3 {
        assert!(h.pings(&a, &b_ip), "a reaches b");
    }
    // Three echo requests and three replies, at least (ARP is answered
    // apart, as arp_reply).
    wait_for(&prom, forwards, |v| v >= before + 6.0);
    let bytes = r#"overlay_network_bytes_total{network="front",outcome="forward_local"}"#;
    wait_for(&prom, bytes, |v| v >= 6.0 * 98.0);
    assert_eq!(
        prom.value(r#"overlay_network_packets_total{network="back",outcome="forward_local"}"#),
        Some(0.0),
        "back forwarded nothing"
    );

    // An isolation drop: c (back) tries b (front). Counted for the
    // sender's network and host-wide, with the reason as a label.
    assert!(!h.pings(&c, &b_ip), "networks are isolated");
    wait_for(
        &prom,
        r#"overlay_network_drops_total{network="back",reason="isolation"}"#,
        |v| v >= 1.0,
    );
    wait_for(
        &prom,
        r#"overlay_host_drops_total{reason="isolation"}"#,
        |v| v >= 1.0,
    );
    assert_eq!(
        prom.value(r#"overlay_network_drops_total{network="front",reason="isolation"}"#),
        Some(0.0),
        "front dropped nothing for isolation"
    );

    // Reconcile passes run every second.
    wait_for(
        &prom,
        r#"overlay_reconcile_passes_total{result="ok"}"#,
        |v| v >= 2.0,
    );
    // No label holds an address: the series are per network, not per
    // container.
    let series = prom.query(r#"{__name__=~"overlay_.*"}"#);
    assert!(!series.is_empty(), "overlay series");
    for (labels, _) in &series {
        let text = labels.to_string();
        assert!(!text.contains(&b_ip), "an address in labels: {text}");
    }
}
