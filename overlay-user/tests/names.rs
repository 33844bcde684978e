//! Names: containers find each other by name and alias on the networks
//! they share, through the resolver `overlay daemon` runs at each network's
//! gateway, and reach everything else through the host's upstream
//! resolvers (here a dnsmasq on the LAN). Queried as a user would: `getent
//! hosts` and `ping NAME` inside `overlay exec`.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, TcpStream},
    time::Duration,
};

use common::{Host, eventually, host, require_root};
use overlay_testkit::{NetNs, dnsmasq::Dnsmasq};

const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 53);
const UPSTREAM_NAME: &str = "upstream.test";
const UPSTREAM_ANSWER: &str = "198.51.100.7";

/// `getent hosts NAME` in container `from`: the address, or None.
fn lookup(h: &Host, from: &str, name: &str) -> Option<String> {
    let out = h.run(&["exec", from, "--", "getent", "hosts", name]);
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    })
}

#[test]
fn containers_resolve_names_on_their_networks() {
    if !require_root("containers_resolve_names_on_their_networks") {
        return;
    }
    let mut h = host();
    let lan = NetNs::new(&h.name("lan")).expect("lan namespace");
    h.uplink(&lan, "192.0.2.1/24", &format!("{UPSTREAM_IP}/24"));
    let answer: Ipv4Addr = UPSTREAM_ANSWER.parse().expect("address");
    let _upstream =
        Dnsmasq::start(&lan, UPSTREAM_IP, &[(UPSTREAM_NAME, answer)]).expect("the LAN's resolver");
    let upstream = UPSTREAM_IP.to_string();
    let daemon_args = ["--interval", "1", "--dns-upstream", upstream.as_str()];
    h.start_daemon(&daemon_args);
    h.ok(&["network", "create", "mynet"]);
    h.ok(&["network", "create", "othernet"]);
    h.ok(&["network", "create", "--internal", "lab"]);
    let db = h.name("db");
    h.ok(&[
        "run",
        "-d",
        "--name",
        &db,
        "--network",
        "mynet",
        "--network-alias",
        "database",
        "--",
        "sleep",
        "600",
    ]);
    let web = h.container("web", "mynet");
    let other = h.container("other", "othernet");
    let probe = h.container("probe", "lab");
    let db_ip = h.ip_of("mynet", &db);
    // The resolver binds a new network's gateway within a moment.
    assert!(
        eventually(5, || lookup(&h, &web, &db).as_deref()
            == Some(db_ip.as_str()))
        .is_some(),
        "web resolves db:\n{}",
        h.log()
    );
    assert_eq!(lookup(&h, &web, "database"), Some(db_ip.clone()), "alias");
    assert_eq!(
        lookup(&h, &web, "DataBase"),
        Some(db_ip.clone()),
        "any case"
    );
    let ping = h.run(&["exec", &web, "--", "ping", "-c", "1", "-W", "1", &db]);
    assert!(ping.status.success(), "ping by name: {ping:?}");
    let reverse = h.run(&["exec", &web, "--", "getent", "hosts", &db_ip]);
    assert!(
        String::from_utf8_lossy(&reverse.stdout).contains(&db),
        "PTR: {reverse:?}"
    );

    // Over TCP too (the daemon's resolver; length-prefixed messages).
    let gateway = h.inspect("mynet")["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .expect("gateway")
        .to_owned();
    let reply = NetNs::existing(&web)
        .run(|| -> std::io::Result<Vec<u8>> {
            let mut conn = TcpStream::connect((gateway.as_str(), 53))?;
            conn.set_read_timeout(Some(Duration::from_secs(5)))?;
            let q = overlay_bench::dns::query(0x7777, &db, false);
            conn.write_all(&(q.len() as u16).to_be_bytes())?;
            conn.write_all(&q)?;
            let mut len = [0u8; 2];
            conn.read_exact(&mut len)?;
            let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
            conn.read_exact(&mut reply)?;
            Ok(reply)
        })
        .expect("enter the container")
        .expect("a reply over TCP");
    assert_eq!(reply[..2], [0x77, 0x77], "the query's ID");
    assert_eq!(u16::from_be_bytes([reply[6], reply[7]]), 1, "one answer");
    let db_octets: Ipv4Addr = db_ip.parse().expect("address");
    assert_eq!(reply[reply.len() - 4..], db_octets.octets(), "db's address");

    // Known names are answered by the endpoint program: also while the
    // daemon is down.
    let answered = h.counter("dns_answered");
    h.stop_daemon();
    assert_eq!(lookup(&h, &web, &db), Some(db_ip.clone()), "daemon stopped");
    assert_eq!(lookup(&h, &web, "database"), Some(db_ip.clone()));
    assert!(
        h.counter("dns_answered") > answered,
        "answered in the kernel"
    );
    h.start_daemon(&daemon_args);

    // Names stay on their networks.
    assert_eq!(lookup(&h, &other, &db), None, "othernet does not see db");
    assert_eq!(lookup(&h, &other, "database"), None);

    // The rest of the world comes from upstream, except on internal
    // networks.
    assert_eq!(
        lookup(&h, &web, UPSTREAM_NAME),
        Some(UPSTREAM_ANSWER.to_owned()),
        "forwarded upstream"
    );
    assert_eq!(
        lookup(&h, &probe, &h.name("probe")),
        Some(h.ip_of("lab", &probe)),
        "an internal network has names"
    );
    assert_eq!(lookup(&h, &probe, UPSTREAM_NAME), None, "but no upstream");

    // Connect with an alias, disconnect, rm: answers change at once.
    h.ok(&["network", "connect", "--alias", "cache", "othernet", &db]);
    let db_other = h.ip_of("othernet", &db);
    assert_eq!(lookup(&h, &other, "cache"), Some(db_other.clone()));
    assert_eq!(lookup(&h, &other, &db), Some(db_other), "and by name");
    h.ok(&["network", "disconnect", "othernet", &db]);
    assert_eq!(lookup(&h, &other, "cache"), None, "gone with the endpoint");
    let renamed = h.name("db2");
    h.ok(&["rename", &db, &renamed]);
    assert_eq!(lookup(&h, &web, &db), None, "the old name is gone");
    assert_eq!(lookup(&h, &web, &renamed), Some(db_ip.clone()), "renamed");
    assert_eq!(
        lookup(&h, &web, "database"),
        Some(db_ip.clone()),
        "aliases stay"
    );
    h.ok(&["rm", "-f", &renamed]);
    assert_eq!(lookup(&h, &web, &renamed), None, "gone with the container");
    assert_eq!(lookup(&h, &web, "database"), None);

    // Bad aliases are refused, and change nothing.
    let before = h.observable();
    let err = h.fails(&[
        "network", "connect", "--alias", "no/slash", "othernet", &web,
    ]);
    assert!(err.contains("no/slash"), "{err}");
    assert_eq!(h.observable(), before);
}

/// The DNS benchmark's machinery (`./x bench` runs it with full sizes):
/// every resolver answers, and the in-kernel path is answered in the
/// kernel while the daemon's is not; checks it measures, not how fast.
#[test]
fn dns_benchmark_measures_every_resolver() {
    if !require_root("dns_benchmark_measures_every_resolver") {
        return;
    }
    use overlay_bench::dns::{self, DnsOptions, Resolver};
    let run = dns::run(
        std::path::Path::new(env!("CARGO_BIN_EXE_overlay")),
        DnsOptions::QUICK,
        |_| {},
    )
    .expect("benchmark runs");
    let resolvers: Vec<Resolver> = run.results.iter().map(|r| r.resolver).collect();
    assert_eq!(resolvers, Resolver::ALL);
    for r in &run.results {
        assert!(
            r.qps > 0.0 && r.median_us > 0.0 && r.p99_us >= r.median_us,
            "{r:?}"
        );
    }
    assert!(run.kernel_answered_on_kernel_path > 0, "{run:?}");
    assert_eq!(run.kernel_answered_on_daemon_path, 0, "{run:?}");
}
