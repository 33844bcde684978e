//! Hosts sharing overlay networks through etcd: each simulated host runs its
//! own `overlay daemon --store etcd://...` in its namespace, and etcd runs in
//! the switch namespace, reached over the underlay like any other service.

mod common;

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    process::Stdio,
    time::{Duration, Instant},
};

use common::{Host, SWITCH_IP, Switch, eventually, host, require_root};
use overlay_testkit::{NetNs, etcd::Etcd};

/// Lease time to live of the test agents, seconds: short, so expiry is quick.
const TTL: &str = "4";

/// Hosts on one switch, etcd on the switch. Dropped in field order: the
/// hosts (their containers release their addresses), then etcd, then the
/// switch.
struct Cluster {
    hosts: Vec<Host>,
    etcd: Etcd,
    _switch: Switch,
    /// More daemon flags for every host.
    flags: Vec<String>,
}

impl Cluster {
    fn new(decaps: &[&str]) -> Self {
        Self::with_flags(decaps, &[])
    }

    fn with_flags(decaps: &[&str], flags: &[&str]) -> Self {
        let hosts: Vec<Host> = decaps.iter().map(|_| host()).collect();
        let mut switch = Switch::new(&hosts[0].tag);
        for (h, decap) in hosts.iter().zip(decaps) {
            switch.plug(h);
            // A real wire: the sender finishes checksums and segments (see
            // overlay_testkit::lab on veth underlays).
            h.ns.run(|| overlay_user::host::ethtool::disable_tx_checksum_offload("eth0"))
                .expect("host namespace")
                .expect("tx checksum offload off");
            h.ok(&["attach", "--iface", "eth0", "--decap", decap]);
        }
        let ip: Ipv4Addr = SWITCH_IP.parse().expect("switch address");
        let etcd = Etcd::in_netns(switch.ns.name(), ip).expect("etcd in the switch namespace");
        let mut cluster = Self {
            hosts,
            etcd,
            _switch: switch,
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
        };
        for i in 0..decaps.len() {
            cluster.start_agent(i);
        }
        let n = decaps.len();
        for h in &cluster.hosts {
            assert!(
                eventually(15, || h
                    .ok(&["status"])
                    .contains(&format!("cluster hosts: {n} ")))
                .is_some(),
                "{} never saw all {n} hosts:\n{}\n{}",
                h.tag,
                h.ok(&["status"]),
                h.log()
            );
        }
        cluster
    }

    /// The version (etcd mod revision) of the claim on `ip`, read from
    /// the store itself (in the switch namespace, where etcd listens).
    fn claim_revision(&self, ip: &str) -> Option<i64> {
        self._switch
            .ns
            .run(|| {
                let mut store = self.etcd.connect().expect("etcd");
                let view = store.mirror().expect("read the store").view();
                view.claims
                    .iter()
                    .find(|c| c.claim.ip.to_string() == ip)
                    .map(|c| c.mod_revision)
            })
            .expect("switch namespace")
    }

    /// Starts host `i`'s agent; host 3 takes its settings from a config
    /// file, the others from flags.
    fn start_agent(&mut self, i: usize) {
        let store = format!("etcd://{SWITCH_IP}:2379");
        let name = format!("host{}", i + 1);
        let h = &mut self.hosts[i];
        if i == 2 {
            let config = h.root.join("daemon.toml");
            std::fs::create_dir_all(&h.root).expect("root");
            std::fs::write(
                &config,
                format!(
                    "store = \"{store}\"\nlease-ttl = {TTL}\ninterval = 2\nhost-name = \"{name}\"\n"
                ),
            )
            .expect("config file");
            let mut args = vec!["--config", config.to_str().expect("utf-8 path")];
            args.extend(self.flags.iter().map(String::as_str));
            h.start_daemon(&args);
        } else {
            let mut args = vec![
                "--store",
                &store,
                "--lease-ttl",
                TTL,
                "--interval",
                "2",
                "--host-name",
                &name,
            ];
            args.extend(self.flags.iter().map(String::as_str));
            h.start_daemon(&args);
        }
    }

    /// Creates an overlay network on host `on` and waits until every host
    /// lists it.
    fn create(&self, on: usize, name: &str, subnet: &str) -> String {
        let id = self.hosts[on].ok(&[
            "network", "create", "-d", "overlay", "--subnet", subnet, name,
        ]);
        for h in &self.hosts {
            assert!(
                eventually(10, || h
                    .ok(&["network", "ls", "-q", "--filter", "scope=global"])
                    .lines()
                    .any(|l| id.starts_with(l)))
                .is_some(),
                "{} never listed {name}:\n{}",
                h.tag,
                h.log()
            );
        }
        id
    }
}

fn containers(net: &serde_json::Value) -> Vec<(String, String)> {
    net["Containers"]
        .as_object()
        .expect("containers")
        .values()
        .map(|c| {
            (
                c["Name"].as_str().expect("name").to_owned(),
                c["IPv4Address"].as_str().expect("address").to_owned(),
            )
        })
        .collect()
}

fn peer_ips(net: &serde_json::Value) -> BTreeSet<String> {
    net["Peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["IP"].as_str().expect("ip").to_owned())
        .collect()
}

/// Sends `len` bytes from container `from` to `to_ip` in container `to`
/// over TCP; true when every byte arrived intact.
fn transfer(from: &str, to: &str, to_ip: &str, len: usize) -> bool {
    let (sent, got, n) = overlay_testkit::traffic::tcp_transfer(
        &NetNs::existing(from),
        &NetNs::existing(to),
        to_ip.parse().expect("address"),
        5001,
        len,
    );
    n == len && sent == got
}

#[test]
fn three_hosts_share_overlay_networks_through_etcd() {
    if !require_root("three_hosts_share_overlay_networks_through_etcd") {
        return;
    }
    let c = Cluster::new(&["tc", "tc", "xdp-generic"]);
    let [h1, h2, h3] = &c.hosts[..] else {
        unreachable!("three hosts")
    };
    let status = h1.ok(&["status"]);
    assert!(
        status.contains("host3 (10.100.0.3)"),
        "host 3's name came from its config file: {status}"
    );
    // Created on host 1, used on hosts 2 and 3 without any command there
    // but `run`.
    c.create(0, "front", "10.210.0.0/24");
    let (a, b) = (h2.container("a", "front"), h3.container("b", "front"));
    let (a_ip, b_ip) = (h2.ip_of("front", &a), h3.ip_of("front", &b));
    assert_ne!(a_ip, b_ip, "distinct addresses across hosts");
    let took = eventually(10, || h2.pings(&a, &b_ip));
    assert!(took.is_some(), "a (host 2) never reached b (host 3)");
    assert!(h3.pings(&b, &a_ip), "and back");
    assert!(
        transfer(&a, &b, &b_ip, 4 << 20),
        "4 MiB over TCP arrive intact"
    );

    // Names too: host 2's resolver answers with host 3's claim.
    let out = h2.run(&["exec", &a, "--", "getent", "hosts", &b]);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with(&format!("{b_ip} ")),
        "a (host 2) resolves b (host 3): {out:?}"
    );

    // Any host's inspect shows every host's containers and the hosts taking
    // part.
    let net = h1.inspect("front");
    let names: Vec<String> = containers(&net).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&a) && names.contains(&b),
        "host 1 lists both: {net}"
    );
    assert_eq!(net["Scope"], "global");
    let peers = peer_ips(&net);
    assert!(
        peers.contains("10.100.0.2") && peers.contains("10.100.0.3"),
        "hosts 2 and 3 are peers: {peers:?}"
    );

    // Isolation between overlay networks, across hosts and on one host.
    c.create(0, "back", "10.211.0.0/24");
    let (d, e) = (h2.container("d", "back"), h3.container("e", "back"));
    let e_ip = h3.ip_of("back", &e);
    assert!(
        eventually(10, || h2.pings(&d, &e_ip)).is_some(),
        "d reaches e on back"
    );
    assert!(
        !h2.pings(&a, &e_ip),
        "front (host 2) cannot reach back (host 3)"
    );
    assert!(!h3.pings(&b, &e_ip), "nor on one host");
    assert!(!h3.pings(&e, &b_ip), "nor the other way");

    // An alias given on host 3 resolves on host 2, on that network only.
    h3.ok(&["network", "connect", "--alias", "api", "back", &b]);
    let b_back = h3.ip_of("back", &b);
    let resolves = |h: &Host, from: &str, name: &str| {
        let out = h.run(&["exec", from, "--", "getent", "hosts", name]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .map(str::to_owned)
    };
    assert!(
        eventually(10, || resolves(h2, &d, "api").as_deref()
            == Some(b_back.as_str()))
        .is_some(),
        "d (host 2, back) resolves b's alias from host 3"
    );
    assert_eq!(resolves(h2, &a, "api"), None, "a (front) does not");
    // A rename on host 3 reaches host 2 through b's rewritten claims.
    let renamed = h3.name("b2");
    h3.ok(&["rename", &b, &renamed]);
    assert!(
        eventually(10, || resolves(h2, &d, &renamed).as_deref()
            == Some(b_back.as_str()))
        .is_some(),
        "d (host 2) resolves b's new name"
    );
    assert_eq!(resolves(h2, &d, &b), None, "and not the old one");
    let b = renamed;

    // Names are cluster-wide; a network in use anywhere stays.
    let dup = h3.fails(&["network", "create", "-d", "overlay", "front"]);
    assert!(dup.contains("already exists"), "{dup}");
    let busy = h1.fails(&["network", "rm", "front"]);
    assert!(busy.contains("in use") && busy.contains(&a), "{busy}");
    // Removing it once nothing uses it removes it everywhere.
    h2.ok(&["rm", "-f", &a]);
    h3.ok(&["rm", "-f", &b]);
    h1.ok(&["network", "rm", "front"]);
    for h in [h2, h3] {
        assert!(
            eventually(10, || !h.ok(&["network", "ls"]).contains(" front ")).is_some(),
            "{} still lists front",
            h.tag
        );
    }
}

#[test]
fn etcd_outage_keeps_forwarding_and_the_agents_resync() {
    if !require_root("etcd_outage_keeps_forwarding_and_the_agents_resync") {
        return;
    }
    let mut c = Cluster::new(&["tc", "tc"]);
    c.create(0, "net", "10.220.0.0/24");
    let (a, b) = (
        c.hosts[0].container("a", "net"),
        c.hosts[1].container("b", "net"),
    );
    let local = c.hosts[0].container("l", "bridge");
    let (a_ip, b_ip) = (c.hosts[0].ip_of("net", &a), c.hosts[1].ip_of("net", &b));
    assert!(
        eventually(10, || c.hosts[0].pings(&a, &b_ip)).is_some(),
        "a reaches b"
    );
    assert!(c.hosts[1].pings(&b, &a_ip));

    // 3300 pings at 10 ms: about 33 s, across the whole outage.
    let flood = c.hosts[0]
        .cmd()
        .args([
            "exec", &a, "--", "ping", "-q", "-c", "3300", "-i", "0.01", &b_ip,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ping flood");
    std::thread::sleep(Duration::from_millis(500));
    c.etcd.stop();
    let down = Instant::now();

    let h1 = &c.hosts[0];
    let before = h1.observable();
    let new = h1.name("new");
    let err = h1.fails(&[
        "run",
        "-d",
        "--name",
        &new,
        "--network",
        "net",
        "--",
        "sleep",
        "60",
    ]);
    assert!(
        err.contains("cluster store unreachable at 10.100.0.254:2379") && err.lines().count() == 1,
        "one clear line: {err}"
    );
    let err = h1.fails(&["network", "connect", "net", &local]);
    assert!(err.contains("unreachable"), "{err}");
    let err = h1.fails(&["network", "create", "-d", "overlay", "other"]);
    assert!(err.contains("unreachable"), "{err}");
    assert_eq!(h1.observable(), before, "failed commands change nothing");
    // Local networks do not need the cluster.
    h1.ok(&["network", "create", "--subnet", "10.221.0.0/24", "loc"]);
    h1.ok(&["network", "rm", "loc"]);

    std::thread::sleep(Duration::from_secs(30).saturating_sub(down.elapsed()));
    c.etcd.resume().expect("etcd back");
    let h1 = &c.hosts[0];
    let h2 = &c.hosts[1];
    // A connect made on host 1 after the outage is reachable from host 2.
    let d = h1.container("d", "net");
    let d_ip = h1.ip_of("net", &d);
    assert!(
        eventually(15, || h2.pings(&b, &d_ip)).is_some(),
        "host 2 learned d after the outage:\n{}",
        h2.log()
    );
    let out = flood.wait_with_output().expect("flood result");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("3300 packets transmitted, 3300 received"),
        "zero loss on the existing flow across a 30 s etcd outage: {text}"
    );
}

#[test]
fn a_dead_agents_containers_keep_their_addresses_until_the_host_is_removed() {
    if !require_root("a_dead_agents_containers_keep_their_addresses_until_the_host_is_removed") {
        return;
    }
    let mut c = Cluster::new(&["tc", "tc", "tc"]);
    c.create(0, "net", "10.230.0.0/24");
    let a = c.hosts[0].container("a", "net");
    let x = c.hosts[2].container("x", "net");
    let (a_ip, x_ip) = (c.hosts[0].ip_of("net", &a), c.hosts[2].ip_of("net", &x));
    assert!(eventually(10, || c.hosts[0].pings(&a, &x_ip)).is_some());

    c.hosts[2].stop_daemon(); // kill -9
    assert!(
        c.hosts[0].pings(&a, &x_ip) && c.hosts[2].pings(&x, &a_ip),
        "forwarding does not depend on the agent"
    );
    // Its lease expires: host 3 is down, but x keeps its address (and the
    // others their route to it).
    assert!(
        eventually(20, || c.hosts[0]
            .ok(&["status"])
            .contains("cluster hosts: 2 "))
        .is_some()
    );
    let hosts = c.hosts[0].ok(&["host", "ls"]);
    let line = hosts
        .lines()
        .find(|l| l.starts_with("10.100.0.3 "))
        .unwrap_or_else(|| panic!("host 3 listed: {hosts}"));
    assert!(line.contains("down") && line.ends_with(" 1"), "{hosts}");
    assert!(
        containers(&c.hosts[1].inspect("net"))
            .iter()
            .any(|(n, _)| *n == x),
        "x is still known"
    );
    assert!(c.hosts[0].pings(&a, &x_ip), "and reachable");
    let y = c.hosts[1].container("y", "net");
    assert_ne!(
        c.hosts[1].ip_of("net", &y),
        x_ip,
        "its address is not reused"
    );

    // Gone for good: an operator releases its addresses.
    let err = c.hosts[0].fails(&["host", "rm", "10.100.0.1"]);
    assert!(err.contains("only another host's"), "{err}");
    let out = c.hosts[0].ok(&["host", "rm", "10.100.0.3"]);
    assert_eq!(out, "10.100.0.3: released 1 addresses");
    let gone = eventually(10, || {
        let net = c.hosts[1].inspect("net");
        !containers(&net).iter().any(|(n, _)| *n == x) && !peer_ips(&net).contains("10.100.0.3")
    });
    assert!(gone.is_some(), "host 2 still lists host 3's container");
    assert!(
        !c.hosts[0].pings(&a, &x_ip),
        "host 1 no longer sends to the removed host"
    );
    // The agent comes back: it registers again and re-claims its addresses.
    c.start_agent(2);
    assert!(
        eventually(15, || c.hosts[0].pings(&a, &x_ip)).is_some(),
        "host 3 is back:\n{}",
        c.hosts[2].log()
    );
}

/// Every container's address on `net` as each host lists them (its own
/// and those it learned), with the host that lists it.
fn addresses(c: &Cluster, net: &str) -> Vec<(String, String, String)> {
    c.hosts
        .iter()
        .flat_map(|h| {
            containers(&h.inspect(net))
                .into_iter()
                .map(|(name, ip)| (h.tag.clone(), name, ip))
        })
        .collect()
}

/// Cuts `h` off from etcd (not from the other hosts): its agent's
/// requests go nowhere until `reconnect`.
fn cut_off(h: &Host) {
    h.ns.sh(&format!("ip route add blackhole {SWITCH_IP}/32"))
        .expect("blackhole route");
}

fn reconnect(h: &Host) {
    h.ns.sh(&format!("ip route del blackhole {SWITCH_IP}/32"))
        .expect("blackhole route");
}

/// A host cut off from etcd for longer than its lease keeps its
/// containers' addresses: containers started elsewhere meanwhile get
/// others, and when it returns no address is in use twice.
#[test]
fn a_partitioned_hosts_addresses_are_not_handed_out_again() {
    if !require_root("a_partitioned_hosts_addresses_are_not_handed_out_again") {
        return;
    }
    let c = Cluster::new(&["tc", "tc"]);
    c.create(0, "net", "10.240.0.0/24");
    let (h1, h2) = (&c.hosts[0], &c.hosts[1]);
    let mine: Vec<String> = (0..3)
        .map(|i| h1.container(&format!("a{i}"), "net"))
        .collect();
    let mine_ips: Vec<String> = mine.iter().map(|n| h1.ip_of("net", n)).collect();
    let b = h2.container("b", "net");
    assert!(eventually(10, || h2.pings(&b, &mine_ips[0])).is_some());

    cut_off(h1);
    assert!(
        eventually(20, || h2.ok(&["status"]).contains("cluster hosts: 1 ")).is_some(),
        "host 1's lease expired"
    );
    let theirs: Vec<String> = (0..3)
        .map(|i| h2.container(&format!("n{i}"), "net"))
        .collect();
    let their_ips: Vec<String> = theirs.iter().map(|n| h2.ip_of("net", n)).collect();
    for ip in &their_ips {
        assert!(
            !mine_ips.contains(ip),
            "{ip} handed out again: {mine_ips:?}"
        );
    }
    reconnect(h1);
    assert!(
        eventually(20, || h1.ok(&["status"]).contains("cluster hosts: 2 ")).is_some(),
        "host 1 registered again:\n{}",
        h1.log()
    );
    // Each host lists each address once, for one container.
    let listed = addresses(&c, "net");
    for (host, name, ip) in &listed {
        let holders: BTreeSet<&str> = listed
            .iter()
            .filter(|(_, _, i)| i == ip)
            .map(|(_, n, _)| n.as_str())
            .collect();
        assert_eq!(
            holders.len(),
            1,
            "{ip} ({name} on {host}) in use twice: {listed:?}"
        );
    }
    assert!(
        h1.ok(&["status"])
            .lines()
            .all(|l| !l.starts_with("address conflict"))
    );
    for ip in &their_ips {
        assert!(
            eventually(10, || h1.pings(&mine[0], ip)).is_some(),
            "host 1 reaches {ip}"
        );
    }
}

/// A host cut off for longer than the claim grace loses its claims; an
/// address of one of its containers goes to a container elsewhere. Back,
/// it finds the conflict and resolves it as every host does: the claim
/// wins. Its container steps aside and says so until it is given another
/// address.
#[test]
fn an_address_conflict_after_the_grace_is_resolved_by_the_claim() {
    if !require_root("an_address_conflict_after_the_grace_is_resolved_by_the_claim") {
        return;
    }
    let c = Cluster::with_flags(&["tc", "tc"], &["--claim-grace", "10"]);
    c.create(0, "net", "10.250.0.0/24");
    let (h1, h2) = (&c.hosts[0], &c.hosts[1]);
    let a = h1.container("a", "net");
    let a_ip = h1.ip_of("net", &a);
    let witness = h1.container("w", "net");

    cut_off(h1);
    let released = eventually(40, || {
        !containers(&h2.inspect("net")).iter().any(|(n, _)| *n == a)
    });
    assert!(
        released.is_some(),
        "host 2 released host 1's claims after the grace:\n{}",
        h2.log()
    );
    // Lowest free first: the new container takes a's address.
    let n = h2.container("n", "net");
    assert_eq!(
        h2.ip_of("net", &n),
        a_ip,
        "a's address was handed out again"
    );
    reconnect(h1);

    let conflict = format!("address conflict: {a_ip} of {a} on net, claimed by {n} on 10.100.0.2");
    assert!(
        eventually(20, || h1.ok(&["status"]).contains(&conflict)).is_some(),
        "host 1 reports the conflict:\n{}\n{}",
        h1.ok(&["status"]),
        h1.log()
    );
    let err = h1.fails(&["exec", &a, "--", "true"]);
    assert!(err.contains("address conflict"), "{err}");
    let ps = h1.ok(&["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.contains(&a) && l.contains("address conflict")),
        "{ps}"
    );
    // On host 1 too the address leads to host 2's container: w's ping is
    // answered although a is out of the dataplane.
    assert!(eventually(10, || h1.pings(&witness, &a_ip)).is_some());

    // Another address resolves it, and gives back nothing of n's: its
    // claim on the old address is untouched (not deleted and put again).
    let n_claim = c.claim_revision(&a_ip);
    assert!(n_claim.is_some(), "n's claim on {a_ip}");
    h1.ok(&["network", "disconnect", "net", &a]);
    h1.ok(&["network", "connect", "net", &a]);
    let new_ip = h1.ip_of("net", &a);
    assert_ne!(new_ip, a_ip);
    assert!(!h1.ok(&["status"]).contains("address conflict"));
    assert_eq!(
        c.claim_revision(&a_ip),
        n_claim,
        "n's claim stays as it was"
    );
    assert!(eventually(10, || h2.pings(&n, &new_ip)).is_some());
    assert!(h1.pings(&a, &a_ip), "a reaches n at its old address");
}

#[test]
fn two_hundred_concurrent_connects_on_two_hosts_get_distinct_addresses() {
    if !require_root("two_hundred_concurrent_connects_on_two_hosts_get_distinct_addresses") {
        return;
    }
    let c = Cluster::new(&["tc", "tc"]);
    c.create(0, "big", "10.240.0.0/23");
    let namespaces: Vec<NetNs> = (0..200)
        .map(|i| NetNs::new(&c.hosts[0].name(&format!("n{i}"))).expect("namespace"))
        .collect();
    let children: Vec<_> = namespaces
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            c.hosts[i % 2]
                .cmd()
                .args(["network", "connect", "big", ns.name()])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("connect")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("connect result");
        assert!(
            out.status.success(),
            "connect failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for h in &c.hosts {
        let mut seen = Vec::new();
        let all = eventually(20, || {
            seen = containers(&h.inspect("big"));
            seen.len() == 200
        });
        assert!(all.is_some(), "{} lists {} of 200", h.tag, seen.len());
        let distinct: BTreeSet<&String> = seen.iter().map(|(_, ip)| ip).collect();
        assert_eq!(distinct.len(), 200, "200 distinct addresses: {seen:?}");
    }
    drop(namespaces);
}

/// The convergence benchmark's machinery (`./x bench` runs it with more
/// rounds); checks it measures, not how fast.
#[test]
fn convergence_benchmark_measures_connects() {
    if !require_root("convergence_benchmark_measures_connects") {
        return;
    }
    let c =
        overlay_bench::cluster::convergence(std::path::Path::new(env!("CARGO_BIN_EXE_overlay")), 2);
    assert_eq!(c.rounds, 2);
    assert!(
        c.median_ms > 0.0 && c.max_ms >= c.median_ms && c.connect_median_ms > 0.0,
        "{c:?}"
    );
}

/// Writes `records` (key under `/overlay/v1/`, raw value) into etcd, from
/// the switch's namespace where it listens: a writer to the cluster store
/// who bypasses every host's checks.
fn plant(switch: &NetNs, records: &[(String, String)]) {
    overlay_user::host::netns::run_in(switch.name(), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut client =
                etcd_client::Client::connect([format!("http://{SWITCH_IP}:2379")], None)
                    .await
                    .expect("etcd");
            for (key, value) in records {
                client
                    .put(format!("/overlay/v1/{key}"), value.as_str(), None)
                    .await
                    .expect("put");
            }
        });
    })
    .expect("switch namespace");
}

/// A network record as JSON, with `f` applied to its fields.
fn network_json(id: &str, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut n = serde_json::json!({
        "id": id, "name": "n", "driver": "overlay", "subnet": "10.214.0.0/24",
        "gateway": "10.214.0.1", "ip_range": null, "vni": 9100, "internal": false,
        "mtu": 1450, "labels": {}, "created": "2026-11-30T00:00:00Z",
    });
    f(&mut n);
    n.to_string()
}

/// A writer to the cluster store plants hostile records: every agent skips
/// and names them, keeps serving and forwarding, and still applies a valid
/// record planted beside them. Containers never reach the store through
/// their host, while the host itself does.
#[test]
fn hostile_cluster_records_are_skipped_and_the_store_is_guarded() {
    if !require_root("hostile_cluster_records_are_skipped_and_the_store_is_guarded") {
        return;
    }
    let c = Cluster::new(&["tc", "tc"]);
    let [h1, h2] = &c.hosts[..] else {
        unreachable!("two hosts")
    };
    let good = c.create(0, "good", "10.212.0.0/24");
    let (a, b) = (h1.container("a", "good"), h2.container("b", "good"));
    let b_ip = h2.ip_of("good", &b);
    assert!(eventually(10, || h1.pings(&a, &b_ip)).is_some(), "baseline");

    // The store's client port, from a container: dropped by its host.
    let etcd: SocketAddr = format!("{SWITCH_IP}:2379").parse().expect("addr");
    let other: SocketAddr = format!("{SWITCH_IP}:8082").parse().expect("addr");
    let listener = c
        ._switch
        .ns
        .run(|| TcpListener::bind(other))
        .expect("switch")
        .expect("bind");
    let a_ns = NetNs::existing(&a);
    let connect = |to: SocketAddr| {
        a_ns.run(|| TcpStream::connect_timeout(&to, Duration::from_secs(1)).is_ok())
            .expect("a's namespace")
    };
    let before = h1.ok(&["stats"]);
    assert!(!connect(etcd), "a container cannot reach etcd");
    assert!(connect(other), "it reaches other services there");
    drop(listener);
    let blocked = |stats: &str| {
        stats
            .lines()
            .find(|l| l.starts_with("drop_to_guarded_service "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .expect("counter row")
    };
    assert!(
        blocked(&h1.ok(&["stats"])) > blocked(&before),
        "the drop was counted"
    );

    // The records.
    let hex = |n: u8| format!("{n:064x}");
    let mut records: Vec<(String, String)> = [
        network_json(&hex(1), |n| n["name"] = "x\"; flush ruleset; \"".into()),
        network_json(&hex(2), |n| n["name"] = "line\nbreak".into()),
        network_json(&hex(3), |n| n["name"] = "n".repeat(300).into()),
        network_json(&hex(4), |n| {
            n["subnet"] = "0.0.0.0/0".into();
            n["gateway"] = "0.0.0.1".into();
        }),
        network_json(&hex(5), |n| {
            n["subnet"] = "10.100.0.252/30".into();
            n["gateway"] = SWITCH_IP.into();
        }),
        network_json(&hex(6), |n| n["subnet"] = "10.212.0.0/16".into()),
        network_json(&hex(7), |n| n["vni"] = 16_777_215.into()),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, v)| (format!("networks/{}", hex(i as u8 + 1)), v))
    .collect();
    records.push((
        "networks/short".into(),
        network_json("short", |n| n["name"] = "short".into()),
    ));
    records.push((format!("networks/{}", hex(8)), "{not json".into()));
    records.push((format!("addresses/{good}/10.212.0.200"), "garbage".into()));
    records.push((
        format!("addresses/{good}/10.250.0.7"),
        serde_json::json!({
            "network_id": good, "ip": "10.250.0.7", "mac": "02:42:0a:fa:00:07",
            "host": "10.100.0.9", "container": "evil", "endpoint_id": hex(9),
        })
        .to_string(),
    ));
    // Beside them, a valid network another host could have made.
    records.push((
        format!("networks/{}", hex(10)),
        network_json(&hex(10), |n| {
            n["name"] = "planted".into();
            n["subnet"] = "10.213.0.0/24".into();
            n["gateway"] = "10.213.0.1".into();
        }),
    ));
    plant(&c._switch.ns, &records);

    for h in [h1, h2] {
        assert!(
            eventually(10, || h.ok(&["network", "ls"]).contains(" planted ")).is_some(),
            "{}: the valid record applies:\n{}",
            h.tag,
            h.log()
        );
        let status = h.ok(&["status"]);
        let rejected: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("cluster records rejected: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no rejected count: {status}"));
        assert!(
            rejected >= 11,
            "{}: every bad record named: {status}",
            h.tag
        );
        let lo = h.stdout_of(&["ip", "-4", "addr", "show", "dev", "lo"]);
        assert!(
            !lo.contains(SWITCH_IP) && !lo.contains("0.0.0.1/"),
            "no hostile gateway on lo: {lo}"
        );
        let table = h.stdout_of(&["nft", "list", "table", "ip", "overlay"]);
        assert!(!table.contains("flush"), "{table}");
    }
    // The agents keep serving and forwarding.
    assert!(h1.pings(&a, &b_ip), "a still reaches b");
    let d = h1.container("d", "good");
    assert!(
        eventually(10, || h2.pings(&b, &h1.ip_of("good", &d))).is_some(),
        "a new container is learned by the other host"
    );
    h1.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.215.0.0/24",
        "later",
    ]);
    assert!(
        eventually(10, || h2.ok(&["network", "ls"]).contains(" later ")).is_some(),
        "and new networks still spread"
    );
}
