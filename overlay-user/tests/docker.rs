//! Docker Engine on this dataplane: a real `dockerd` per simulated host,
//! driven with the `docker` CLI, talking to `overlay daemon` through the
//! network and IPAM plugin protocol.

mod common;

use std::path::PathBuf;

use common::{Host, SWITCH_IP, Switch, eventually, host, require_root};
use overlay_testkit::docker::Dockerd;

/// A simulated host running `overlay daemon` (serving the plugin under a
/// name of its own, so tests in parallel do not share one) and a dockerd.
/// Fields drop in order: Docker's containers and networks first.
/// Where the first test's daemon serves metrics, in its host's namespace.
const METRICS: &str = "127.0.0.1:9466";

struct DockerHost {
    docker: Dockerd,
    host: Host,
    /// The driver's name: Docker finds it as `/run/docker/plugins/NAME.sock`.
    driver: String,
    socket: PathBuf,
}

impl DockerHost {
    fn new() -> Self {
        Self::on(host(), &[])
    }

    /// `host`, a dockerd, and the host's daemon started with `flags` too
    /// (after dockerd: it asks dockerd's API for network names).
    fn on(mut host: Host, flags: &[&str]) -> Self {
        let driver = format!("ebpf-overlay-{}", host.tag);
        let socket = PathBuf::from(format!("/run/docker/plugins/{driver}.sock"));
        let socket_arg = socket.display().to_string();
        let docker = Dockerd::start(&host.ns).expect("dockerd");
        let docker_socket = docker.socket().display().to_string();
        // Frequent repair passes: they must never race Docker.
        let mut args = vec![
            "--interval",
            "1",
            "--plugin-socket",
            &socket_arg,
            "--docker-socket",
            &docker_socket,
        ];
        args.extend(flags);
        host.start_daemon(&args);
        docker.build_busybox();
        Self {
            docker,
            host,
            driver,
            socket,
        }
    }

    /// `docker network create` with this driver and IPAM driver.
    fn network(&self, name: &str, flags: &[&str]) -> String {
        let mut args = vec![
            "network",
            "create",
            "-d",
            &self.driver,
            "--ipam-driver",
            &self.driver,
        ];
        args.extend(flags);
        args.push(name);
        self.docker.ok(&args)
    }

    /// A counter of `overlay stats`.
    fn counter(&self, name: &str) -> u64 {
        self.host.counter(name)
    }
}

impl Drop for DockerHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

#[test]
fn docker_containers_on_plugin_networks() {
    if !require_root("docker_containers_on_plugin_networks") {
        return;
    }
    let d = DockerHost::on(host(), &["--metrics-address", METRICS]);
    let docker = &d.docker;
    let id = d.network("front", &[]);
    docker.container("web", "front", &[]);
    docker.container("db", "front", &[]);
    // Docker's calls, as the metrics count them.
    let (status, page) = d
        .host
        .ns
        .run(|| overlay_testkit::prometheus::get(METRICS, "/metrics"))
        .expect("enter the host")
        .expect("a scrape");
    assert_eq!(status, 200, "{page}");
    for (call, at_least) in [
        ("/NetworkDriver.CreateNetwork", 1),
        ("/IpamDriver.RequestAddress", 2),
        ("/NetworkDriver.Join", 2),
    ] {
        let series = format!(
            "overlay_requests_total{{interface=\"plugin\",command=\"{call}\",result=\"ok\"}} "
        );
        let count: u64 = page
            .lines()
            .find_map(|l| l.strip_prefix(&series)?.trim().parse().ok())
            .unwrap_or(0);
        assert!(count >= at_least, "{call}: {count} in\n{page}");
    }
    let web_ip = docker.ip_of("web", "front");
    let forwarded = d.counter("forward_local");
    assert!(docker.pings("db", &web_ip), "db reaches web by address");
    assert!(docker.pings("db", "web"), "and by name (Docker's resolver)");
    assert!(
        d.counter("forward_local") > forwarded,
        "through the endpoint program"
    );
    // The same network, seen by overlay: under Docker's name, learned from
    // Docker's API (Docker's calls carry only its ID).
    let short = &id[..12];
    let ls = d.host.ok(&["network", "ls"]);
    assert!(ls.contains(short), "{ls}");
    assert!(
        eventually(10, || d
            .host
            .ok(&["network", "ls"])
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some("front")))
        .is_some(),
        "Docker's name: {}",
        d.host.ok(&["network", "ls"])
    );
    assert_eq!(d.host.inspect("front")["Id"], id.as_str(), "found by it");
    let stats = d.host.ok(&["stats", "--network", "front"]);
    assert!(stats.contains("forward_local"), "{stats}");
    let err = d.host.fails(&["network", "rm", short]);
    assert!(err.contains("Docker's"), "{err}");
    let stats = d.host.ok(&["stats", "--network", short]);
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("forward_local") && !l.contains(" 0 ")),
        "{stats}"
    );

    // Another network is isolated from it.
    d.network("back", &["--subnet", "10.66.0.0/24"]);
    docker.container("cache", "back", &["--ip", "10.66.0.50"]);
    assert_eq!(docker.ip_of("cache", "back"), "10.66.0.50", "--ip");
    let dropped = d.counter("drop_isolation");
    assert!(!docker.pings("cache", &web_ip), "back cannot reach front");
    assert!(d.counter("drop_isolation") > dropped, "counted");

    // Connect and disconnect a running container.
    docker.ok(&["network", "connect", "back", "web"]);
    assert!(
        docker.pings("web", "10.66.0.50"),
        "web reaches cache once connected"
    );
    docker.ok(&["network", "disconnect", "back", "web"]);
    assert!(!docker.pings("web", "10.66.0.50"), "and not after");
    assert!(docker.pings("db", &web_ip), "web stays on front");

    // Internal: no way out.
    d.network("inner", &["--internal"]);
    docker.container("inside", "inner", &[]);
    let routes = docker.ok(&["exec", "inside", "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");

    // Published ports: reachable from the LAN at the host's address, the
    // container's own address is not.
    let lan = overlay_testkit::NetNs::new(&overlay_testkit::unique_name("ovllan")).expect("LAN");
    d.host.uplink(&lan, "10.64.0.1/24", "10.64.0.2/24");
    docker.ok(&[
        "run",
        "-d",
        "--name",
        "published",
        "--network",
        "front",
        "-p",
        "8080:80",
        overlay_testkit::docker::IMAGE,
        "sh",
        "-c",
        "echo hello > /index.html && httpd -f -p 80 -h /",
    ]);
    let published_ip = docker.ip_of("published", "front");
    lan.sh(&format!("ip route add {published_ip}/32 via 10.64.0.1"))
        .expect("LAN route");
    // An HTTP GET with socat (busybox's static wget crashes here).
    let get = |to: &str| {
        let out = lan
            .command("sh")
            .args([
                "-c",
                &format!(
                    "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | socat - TCP:{to},connect-timeout=2"
                ),
            ])
            .output()
            .expect("socat");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        common::eventually(10, || get("10.64.0.1:8080").ends_with("hello\n")).is_some(),
        "-p 8080:80 from the LAN: {:?}",
        get("10.64.0.1:8080")
    );
    assert_eq!(
        get(&format!("{published_ip}:80")),
        "",
        "the container's address is not reachable from outside"
    );

    // Removed through Docker, gone here too.
    docker.ok(&["rm", "-f", "web", "db", "cache", "inside", "published"]);
    docker.ok(&["network", "rm", "front", "back", "inner"]);
    assert!(!d.host.ok(&["network", "ls"]).contains(short));
    assert_eq!(
        d.host.ok(&["ps", "-a", "--format", "json"]),
        "[]",
        "no sandboxes left"
    );
    let links = d.host.stdout_of(&["ip", "-o", "link"]);
    assert!(
        !links.lines().any(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|n| n.starts_with("ovl"))),
        "no veths left: {links}"
    );
}

/// Neither side's restart breaks the other: containers keep talking while
/// the overlay daemon is down, Docker's calls work once it is back, and
/// after dockerd restarts its containers come back on the plugin network.
#[test]
fn restarts_of_either_daemon() {
    if !require_root("restarts_of_either_daemon") {
        return;
    }
    let mut d = DockerHost::new();
    d.network("front", &[]);
    for name in ["web", "db"] {
        d.docker.container(name, "front", &["--restart", "always"]);
    }
    let web_ip = d.docker.ip_of("web", "front");
    assert!(d.docker.pings("db", &web_ip));

    d.host.stop_daemon(); // kill -9
    assert!(
        d.docker.pings("db", &web_ip),
        "forwarding does not need the daemon"
    );
    d.host.start_daemon(&[
        "--interval",
        "1",
        "--plugin-socket",
        &d.socket.display().to_string(),
    ]);
    d.docker.container("cache", "front", &[]);
    assert!(
        d.docker.pings("cache", &web_ip),
        "Docker's calls work again:\n{}",
        d.host.log()
    );
    d.docker.ok(&["rm", "-f", "cache"]);

    d.docker.restart(&d.host.ns).expect("dockerd back");
    let back = common::eventually(30, || d.docker.ok(&["ps", "-q"]).lines().count() == 2);
    assert!(back.is_some(), "containers restarted:\n{}", d.docker.log());
    let web_ip = d.docker.ip_of("web", "front");
    assert!(
        common::eventually(10, || d.docker.pings("db", &web_ip)).is_some(),
        "on the plugin network again:\n{}",
        d.host.log()
    );
    // One sandbox per running container: none left from before.
    let ps = d.host.ok(&["ps", "-a", "--format", "json"]);
    let sandboxes: Vec<serde_json::Value> = serde_json::from_str(&ps).expect("json");
    assert_eq!(sandboxes.len(), 2, "{ps}");
}

/// Two hosts, each with its own dockerd, share a cluster network through
/// etcd: every host binds its Docker network to the same name
/// (`-o network=NAME`, the cluster network's subnet), addresses are
/// claimed cluster-wide by the IPAM driver, and containers on different
/// hosts reach each other over VXLAN.
#[test]
fn docker_networks_across_hosts_through_etcd() {
    if !require_root("docker_networks_across_hosts_through_etcd") {
        return;
    }
    let (h1, h2) = (host(), host());
    let mut switch = Switch::new(&h1.tag);
    for h in [&h1, &h2] {
        switch.plug(h);
        h.ok(&["attach", "--iface", "eth0"]);
    }
    let ip: std::net::Ipv4Addr = SWITCH_IP.parse().expect("switch address");
    let etcd = overlay_testkit::etcd::Etcd::in_netns(switch.ns.name(), ip).expect("etcd");
    let store = format!("etcd://{SWITCH_IP}:2379");
    let cluster = ["--store", store.as_str(), "--lease-ttl", "4"];
    let (d1, d2) = (DockerHost::on(h1, &cluster), DockerHost::on(h2, &cluster));
    for d in [&d1, &d2] {
        assert!(
            eventually(15, || d.host.ok(&["status"]).contains("cluster hosts: 2 ")).is_some(),
            "{}",
            d.host.log()
        );
    }
    let shared = ["--subnet", "10.81.0.0/24", "-o", "network=shared"];
    d1.network("shared", &shared);
    // The second host binds once it has learned the cluster network.
    assert!(
        eventually(10, || d2.host.ok(&["network", "ls"]).contains(" shared ")).is_some(),
        "{}",
        d2.host.log()
    );
    let err = d2.docker.fails(&[
        "network",
        "create",
        "-d",
        &d2.driver,
        "--ipam-driver",
        &d2.driver,
        "--subnet",
        "10.82.0.0/24",
        "-o",
        "network=shared",
        "wrong",
    ]);
    assert!(err.contains("has subnet 10.81.0.0/24"), "{err}");
    d2.network("shared", &shared);

    d1.docker.container("web1", "shared", &[]);
    d2.docker.container("web2", "shared", &[]);
    let (ip1, ip2) = (
        d1.docker.ip_of("web1", "shared"),
        d2.docker.ip_of("web2", "shared"),
    );
    assert_ne!(ip1, ip2, "addresses are claimed cluster-wide");
    assert!(
        eventually(10, || d2.docker.pings("web2", &ip1)).is_some(),
        "host 2's container reaches host 1's:\n{}\n{}",
        d2.host.log(),
        d1.host.log()
    );
    assert!(d1.docker.pings("web1", &ip2), "and back");
    assert!(
        d1.counter("encap") > 0 && d1.counter("decap_tc") > 0,
        "over VXLAN"
    );

    // Gone from Docker, gone from the cluster: host 1 no longer lists it.
    d2.docker.ok(&["rm", "-f", "web2"]);
    assert!(
        eventually(10, || !d1
            .host
            .ok(&["network", "inspect", "shared"])
            .contains(&ip2))
        .is_some(),
        "web2's address released"
    );
    drop((d1, d2));
    drop(etcd);
}

/// The Docker benchmark's machinery (`./x bench` runs it with full sizes):
/// both paths move TCP and request/response traffic and deliver generated
/// frames; checks it measures, not how fast.
#[test]
fn docker_benchmark_measures_both_paths() {
    if !require_root("docker_benchmark_measures_both_paths") {
        return;
    }
    use overlay_bench::{
        docker::{self, DockerPath},
        pktrate::RateOptions,
        traffic::TrafficOptions,
    };
    let run = docker::run(
        std::path::Path::new(env!("CARGO_BIN_EXE_overlay")),
        TrafficOptions::QUICK,
        &RateOptions::QUICK,
        |_| {},
    )
    .expect("benchmark runs");
    let paths: Vec<DockerPath> = run.results.iter().map(|r| r.path).collect();
    assert_eq!(paths, DockerPath::ALL);
    let two_cpus = std::thread::available_parallelism().map_or(1, usize::from) >= 2;
    for r in &run.results {
        assert!(r.tcp1_gbps > 0.0 && r.mpps > 0.0, "{r:?}");
        assert!(
            r.rr_median_us > 0.0 && r.rr_p99_us >= r.rr_median_us,
            "{r:?}"
        );
        assert_eq!(r.no_drop_mpps.is_some(), two_cpus, "{r:?}");
    }
    assert!(
        run.engine.contains("API"),
        "the engine measured: {}",
        run.engine
    );
}

/// Docker's user-defined bridge networks do not look at host routes, so
/// one can get a subnet an overlay network already uses on the host. Our
/// filter applies to our containers' veths only: Docker's network keeps
/// working (its bridged traffic crosses netfilter, br_netfilter on).
#[test]
fn a_docker_bridge_network_on_one_of_our_subnets_keeps_working() {
    if !require_root("a_docker_bridge_network_on_one_of_our_subnets_keeps_working") {
        return;
    }
    let mut h = host();
    h.start_daemon(&[]);
    h.ok(&["network", "create", "--subnet", "172.30.7.0/24", "ours"]);
    let c = h.container("c", "ours");
    let docker = Dockerd::start_with_default_bridge(&h.ns).expect("dockerd");
    docker.build_busybox();
    docker.ok(&["network", "create", "--subnet", "172.30.7.0/24", "theirs"]);
    docker.container("d1", "theirs", &[]);
    docker.container("d2", "theirs", &[]);
    let d2 = docker.ip_of("d2", "theirs");
    assert!(
        docker.pings("d1", &d2),
        "Docker's network on the same subnet works"
    );
    // Ours is still closed to anything but replies from outside.
    let nft = h.stdout_of(&["nft", "list", "table", "ip", "overlay"]);
    assert!(nft.contains("oifname \"ovl*\""), "{nft}");
    assert!(
        h.pings(&c, "172.30.7.1"),
        "our container reaches its gateway"
    );
}
