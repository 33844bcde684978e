//! Observability as a user gets it: a real Prometheus server scrapes the
//! daemon's `/metrics` (`--metrics-address`), and its query API shows the
//! dataplane's counters moving with traffic and drops, the endpoints and
//! maps, and the CLI's requests; `overlay monitor` reports drops with
//! their reason, network and 5-tuple as they happen.

mod common;

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::Stdio,
    sync::mpsc,
    time::Duration,
};

use common::{eventually, host, require_root};
use overlay_testkit::{Reaped, prometheus::Prometheus};

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
    // A client that connects and says nothing holds up no scrape.
    let (silent, scraped) =
        h.ns.run(|| {
            let silent = TcpStream::connect(target).expect("connect");
            let mut scrape = TcpStream::connect(target).expect("connect");
            scrape
                .set_read_timeout(Some(Duration::from_secs(3)))
                .expect("timeout");
            scrape
                .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
                .expect("request");
            let mut reply = String::new();
            let _ = scrape.read_to_string(&mut reply);
            (silent, reply)
        })
        .expect("enter the host");
    assert!(
        scraped.starts_with("HTTP/1.1 200") && scraped.contains("overlay_dataplane_up 1"),
        "a scrape beside a silent client: {scraped}"
    );
    drop(silent);
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

/// `overlay monitor --json` reports an isolation drop (ICMP and UDP, with
/// ports) and a spoofed-source drop as they happen, with the sender's
/// network, the packet's addresses and the interface.
#[test]
fn monitor_reports_isolation_and_spoofed_drops() {
    if !require_root("monitor_reports_isolation_and_spoofed_drops") {
        return;
    }
    let h = host();
    h.ok(&["network", "create", "front"]);
    h.ok(&["network", "create", "back"]);
    let b = h.container("b", "front");
    let c = h.container("c", "back");
    let b_ip = h.ip_of("front", &b);
    let c_ip = h.ip_of("back", &c);

    // Filtered to the two reasons: a container also sends what the
    // dataplane drops for other reasons (IPv6 router solicitations).
    let mut monitor = Reaped(
        h.cmd()
            .args(["monitor", "--json", "--count", "3"])
            .args(["--reason", "isolation", "--reason", "drop_spoofed"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("overlay monitor"),
    );
    let mut ready = String::new();
    BufReader::new(monitor.0.stderr.take().expect("stderr"))
        .read_line(&mut ready)
        .expect("monitor's first line");
    assert!(ready.contains("monitoring drops"), "monitor: {ready}");
    // A second monitor would steal events: refused.
    let second = h.fails(&["monitor"]);
    assert!(second.contains("another `overlay monitor`"), "{second}");

    assert!(!h.pings(&c, &b_ip), "networks are isolated");
    h.ok(&[
        "exec",
        &c,
        "--",
        "bash",
        "-c",
        &format!("echo x > /dev/udp/{b_ip}/5353"),
    ]);
    h.ok(&[
        "exec",
        &c,
        "--",
        "ip",
        "addr",
        "add",
        "10.9.9.9/32",
        "dev",
        "eth0",
    ]);
    let spoofed = h.run(&[
        "exec", &c, "--", "ping", "-c", "1", "-W", "1", "-I", "10.9.9.9", &b_ip,
    ]);
    assert!(!spoofed.status.success(), "a forged source gets nowhere");

    let stdout = monitor.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let lines: Vec<String> = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect();
        let _ = tx.send(lines);
    });
    let lines = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("monitor reports three drops within 20 s");
    assert!(monitor.0.wait().expect("monitor exit").success());
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(events.len(), 3, "{lines:?}");
    for e in &events {
        assert_eq!(e["network"], "back", "{e}");
        assert_eq!(e["hook"], "endpoint", "{e}");
        assert_eq!(e["dst"], b_ip.as_str(), "{e}");
        assert!(
            e["interface"]
                .as_str()
                .is_some_and(|i| i.starts_with("ovl")),
            "{e}"
        );
        assert!(e["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
    }
    let (ping, udp, forged) = (&events[0], &events[1], &events[2]);
    assert_eq!(
        (&ping["reason"], &ping["proto"], &ping["src"]),
        (&"isolation".into(), &"icmp".into(), &c_ip.as_str().into()),
        "{ping}"
    );
    assert_eq!(
        (&udp["reason"], &udp["proto"], &udp["src"], &udp["dst_port"]),
        (
            &"isolation".into(),
            &"udp".into(),
            &c_ip.as_str().into(),
            &5353.into()
        ),
        "{udp}"
    );
    assert!(udp["src_port"].as_u64().is_some_and(|p| p > 0), "{udp}");
    assert_eq!(
        (&forged["reason"], &forged["src"]),
        (&"spoofed".into(), &"10.9.9.9".into()),
        "{forged}"
    );

    // Reporting is off again once the monitor is done; a monitor killed
    // before it could turn it off is found out by the daemon's next pass.
    let switch = || -> u32 {
        let path = h
            .root
            .join("bpf/maps")
            .join(overlay_common::maps::names::MONITOR_ON);
        let map = aya::maps::MapData::from_pin(&path).expect("the switch's pin");
        let array =
            aya::maps::Array::<_, u32>::try_from(aya::maps::Map::Array(map)).expect("an array");
        array.get(&0, 0).expect("index 0")
    };
    assert_eq!(switch(), 0, "off after the monitor");
    let mut killed = Reaped(
        h.cmd()
            .args(["monitor"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("overlay monitor"),
    );
    let mut ready = String::new();
    BufReader::new(killed.0.stderr.take().expect("stderr"))
        .read_line(&mut ready)
        .expect("monitor's first line");
    assert_eq!(switch(), killed.0.id(), "on, under the monitor's PID");
    killed.0.kill().expect("SIGKILL");
    killed.0.wait().expect("reaped");
    assert_eq!(switch(), killed.0.id(), "a killed monitor leaves it on");
    h.ok(&["daemon", "--once"]);
    assert_eq!(switch(), 0, "the daemon's pass turns it off");
}

/// `overlay trace` runs a container's packets through the live endpoint
/// program and explains an allowed path, an isolation drop, a missing
/// route and an internal network's drop.
#[test]
fn trace_explains_allowed_isolated_missing_and_internal() {
    if !require_root("trace_explains_allowed_isolated_missing_and_internal") {
        return;
    }
    let h = host();
    h.ok(&["network", "create", "front"]);
    h.ok(&["network", "create", "back"]);
    h.ok(&["network", "create", "--internal", "lab"]);
    let a = h.container("a", "front");
    let b = h.container("b", "front");
    let c = h.container("c", "back");
    let l = h.container("l", "lab");
    let b_ip = h.ip_of("front", &b);

    let allowed = h.ok(&[
        "trace", "--from", &a, "--to", &b_ip, "--proto", "tcp", "--port", "8080",
    ]);
    assert!(
        allowed.contains(&format!("1. arp who-has {b_ip}: answered: {b_ip} is at")),
        "{allowed}"
    );
    assert!(
        allowed.contains(&format!(":40000 -> {b_ip}:8080: forwarded: on this host")),
        "{allowed}"
    );
    assert!(allowed.contains(&format!("container {b}")), "{allowed}");

    let isolated = h.ok(&["trace", "--from", &c, "--to", &b_ip]);
    assert!(
        isolated.contains(&format!("dropped: isolation: {b_ip} is on network front")),
        "{isolated}"
    );

    // An address of front's subnet that no container has.
    let gateway = h.inspect("front")["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .expect("gateway")
        .to_owned();
    let missing = gateway
        .rsplit_once('.')
        .map(|(net, _)| format!("{net}.250"))
        .expect("ip");
    let unrouted = h.ok(&["trace", "--from", &a, "--to", &missing]);
    assert!(
        unrouted.contains(&format!(
            "1. arp who-has {missing}: dropped: arp_miss: nobody has {missing} on network front"
        )),
        "{unrouted}"
    );

    let internal = h.ok(&[
        "trace",
        "--from",
        &l,
        "--to",
        "198.51.100.1",
        "--proto",
        "udp",
    ]);
    assert!(
        internal.contains("dropped: internal: network lab is internal"),
        "{internal}"
    );

    // JSON for tools; bad input is one line and changes nothing.
    let json: serde_json::Value =
        serde_json::from_str(&h.ok(&["trace", "--from", &c, "--to", &b_ip, "--format", "json"]))
            .expect("json");
    assert_eq!(json["steps"][1]["verdict"], "dropped", "{json}");
    assert_eq!(json["steps"][1]["counters"][0], "drop_isolation", "{json}");
    let err = h.fails(&["trace", "--from", &a, "--to", &b_ip, "--port", "80"]);
    assert!(
        err.contains("--port applies to --proto tcp and udp only"),
        "{err}"
    );
    let err = h.fails(&["trace", "--from", "nobody", "--to", &b_ip]);
    assert!(err.contains("container nobody not found"), "{err}");
}
