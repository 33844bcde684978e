//! The real `overlay` binary, driven as a user would, on a simulated host
//! (a network namespace entered with `--netns`, state under `--root`).

mod common;

use std::{os::unix::process::CommandExt as _, process::Command};

use common::{Host, Switch, host, require_root};
use overlay_testkit::{NetNs, Reaped, traffic::tcp_transfer};

#[test]
fn docker_network_tutorial_walkthrough() {
    if !require_root("docker_network_tutorial_walkthrough") {
        return;
    }
    let h = host();
    let (db, web) = (h.name("db"), h.name("web"));
    // The default bridge network exists from the first start.
    let ls = h.ok(&["network", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.contains(" bridge ") && l.ends_with("local")),
        "{ls}"
    );

    let id = h.ok(&["network", "create", "my-network"]);
    assert_eq!(id.len(), 64, "create prints the network ID: {id}");
    h.ok(&[
        "run",
        "-d",
        "--name",
        &db,
        "--network",
        "my-network",
        "--",
        "sleep",
        "300",
    ]);
    h.ok(&["run", "-d", "--name", &web, "--", "sleep", "300"]);
    let ps = h.ok(&["ps"]);
    assert!(
        ps.contains(&db) && ps.contains(&web) && ps.contains("running"),
        "{ps}"
    );

    let db_ip = h.ip_of("my-network", &db);
    let web_ip = h.ip_of("bridge", &web);
    assert!(
        !h.pings(&web, &db_ip),
        "web (bridge) must not reach db (my-network)"
    );
    assert!(!h.pings(&db, &web_ip), "nor the other way");

    h.ok(&["network", "connect", "my-network", &web]);
    assert!(h.pings(&web, &db_ip), "after connect web reaches db");
    let names: Vec<String> = h.inspect("my-network")["Containers"]
        .as_object()
        .expect("containers")
        .values()
        .map(|c| c["Name"].as_str().expect("name").to_owned())
        .collect();
    assert_eq!(names.len(), 2, "inspect lists db and web: {names:?}");
    assert!(names.contains(&db) && names.contains(&web));
    let web_eth1 = h.ok(&[
        "exec", &web, "--", "ip", "-o", "-4", "addr", "show", "dev", "eth1",
    ]);
    assert!(
        web_eth1.contains(&h.ip_of("my-network", &web)),
        "web got eth1 on my-network: {web_eth1}"
    );

    h.ok(&["network", "disconnect", "my-network", &web]);
    assert!(
        !h.pings(&web, &db_ip),
        "after disconnect web no longer reaches db"
    );
    let net = h.inspect("my-network");
    assert_eq!(
        net["Containers"].as_object().expect("containers").len(),
        1,
        "{net}"
    );
    assert_eq!(net["Scope"], "local");
    assert_eq!(net["Driver"], "bridge");

    h.ok(&["rm", "-f", &db, &web]);
    h.ok(&["network", "rm", "my-network"]);
    assert!(
        !std::path::Path::new("/run/netns").join(&db).exists(),
        "rm deletes the namespace"
    );
}

#[test]
fn bad_input_is_one_line_nonzero_and_changes_nothing() {
    if !require_root("bad_input_is_one_line_nonzero_and_changes_nothing") {
        return;
    }
    let h = host();
    let (c1, c2) = (h.name("c1"), h.name("c2"));
    h.ok(&[
        "network",
        "create",
        "--subnet",
        "10.50.0.0/24",
        "--ip-range",
        "10.50.0.128/25",
        "front",
    ]);
    h.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.60.0.0/24",
        "--vni",
        "5000",
        "ov",
    ]);
    h.ok(&["network", "create", "--subnet", "10.70.0.0/30", "tiny"]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        &c1,
        "--network",
        "front",
        "--network",
        "tiny",
        "--",
        "sleep",
        "300",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        &c2,
        "--network",
        "front",
        "--",
        "sleep",
        "300",
    ]);
    let c1_ip = h.ip_of("front", &c1);
    let c1_tiny = h.ip_of("tiny", &c1);
    assert!(
        c1_ip.starts_with("10.50.0.1"),
        "--ip-range limits dynamic addresses: {c1_ip}"
    );

    let before = h.observable();
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "invalid CIDR",
            &["network", "create", "--subnet", "10.0.0.0/33", "x"],
            "invalid",
        ),
        (
            "host bits set",
            &["network", "create", "--subnet", "10.80.0.1/24", "x"],
            "host bits",
        ),
        (
            "overlapping CIDR",
            &["network", "create", "--subnet", "10.50.0.0/16", "x"],
            "overlaps",
        ),
        (
            "gateway outside subnet",
            &[
                "network",
                "create",
                "--subnet",
                "10.81.0.0/24",
                "--gateway",
                "10.82.0.1",
                "x",
            ],
            "gateway",
        ),
        (
            "ip range outside subnet",
            &[
                "network",
                "create",
                "--subnet",
                "10.81.0.0/24",
                "--ip-range",
                "10.83.0.0/25",
                "x",
            ],
            "ip range",
        ),
        (
            "duplicate network name",
            &["network", "create", "front"],
            "already exists",
        ),
        (
            "VNI out of range",
            &[
                "network", "create", "-d", "overlay", "--vni", "16777215", "x",
            ],
            "VNI",
        ),
        (
            "VNI in use",
            &["network", "create", "-d", "overlay", "--vni", "5000", "x"],
            "VNI 5000",
        ),
        (
            "VNI on a bridge network",
            &["network", "create", "--vni", "7", "x"],
            "--vni",
        ),
        (
            "invalid name",
            &["network", "create", "bad/name"],
            "invalid name",
        ),
        (
            "unknown driver option",
            &["network", "create", "-o", "color=blue", "x"],
            "option",
        ),
        (
            "unknown network (connect)",
            &["network", "connect", "nope", &c2],
            "nope",
        ),
        ("unknown network (rm)", &["network", "rm", "nope"], "nope"),
        (
            "unknown network (inspect)",
            &["network", "inspect", "nope"],
            "nope",
        ),
        (
            "unknown container",
            &["network", "connect", "front", "no-such-container"],
            "no-such-container",
        ),
        (
            "--ip taken",
            &["network", "connect", "--ip", &c1_tiny, "tiny", &c2],
            "already in use",
        ),
        (
            "--ip outside subnet",
            &["network", "connect", "--ip", "10.99.9.9", "ov", &c2],
            "not a usable address",
        ),
        (
            "--ip is the gateway",
            &["network", "connect", "--ip", "10.60.0.1", "ov", &c2],
            "not a usable address",
        ),
        (
            "connecting twice",
            &["network", "connect", "front", &c1],
            "already connected",
        ),
        (
            "address pool exhausted",
            &["network", "connect", "tiny", &c2],
            "no free address",
        ),
        (
            "removing a network in use",
            &["network", "rm", "ov", "front"],
            "in use",
        ),
        (
            "removing the default network",
            &["network", "rm", "bridge"],
            "pre-defined",
        ),
        ("removing a running container", &["rm", &c1], "running"),
        (
            "disconnecting what is not connected",
            &["network", "disconnect", "ov", &c1],
            "not connected",
        ),
        (
            "subnet pool exhausted",
            &[
                "network",
                "create",
                "-d",
                "overlay",
                "--subnet",
                "10.0.0.0/8",
                "x",
            ],
            "overlaps",
        ),
    ];
    let mut failures = Vec::new();
    for (what, args, needle) in cases {
        let out = h.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        if out.status.success() {
            failures.push(format!("{what}: accepted"));
        } else if !first.contains(needle) {
            failures.push(format!(
                "{what}: first line {first:?} does not name {needle:?}"
            ));
        } else if first.starts_with("overlay:") && stderr.trim().lines().count() != 1 {
            failures.push(format!("{what}: not one line: {stderr:?}"));
        }
        if h.observable() != before {
            failures.push(format!("{what}: state changed"));
        }
    }
    // A non-root caller is refused before anything happens. The build tree
    // may sit in a directory only root can enter (a mktemp -d clone), so the
    // unprivileged caller runs a copy from a world-readable directory.
    use std::os::unix::fs::PermissionsExt as _;
    let bin_dir = std::env::temp_dir().join(h.name("bin"));
    std::fs::create_dir_all(&bin_dir).expect("bin dir");
    std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let bin = bin_dir.join("overlay");
    std::fs::copy(env!("CARGO_BIN_EXE_overlay"), &bin).expect("copy binary");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod binary");
    let out = Command::new(&bin)
        .arg("--root")
        .arg(&h.root)
        .args(["--netns", h.ns.name(), "network", "create", "x"])
        .uid(65534)
        .output()
        .expect("spawn");
    let _ = std::fs::remove_dir_all(&bin_dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || !stderr.contains("root") {
        failures.push(format!("non-root caller: {stderr:?}"));
    }
    assert!(h.observable() == before, "non-root caller changed state");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len() + 1,
        failures.join("\n")
    );
}

#[test]
fn default_pools_and_overlay_vnis() {
    if !require_root("default_pools_and_overlay_vnis") {
        return;
    }
    let h = host();
    // Prefixes the host already routes (a LAN, a VPN) are skipped.
    for argv in [
        &[
            "ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1",
        ][..],
        &["ip", "link", "set", "lan0", "up"],
        &["ip", "addr", "add", "172.18.5.1/16", "dev", "lan0"],
        &["ip", "route", "add", "10.0.0.0/24", "dev", "lan0"],
    ] {
        let out = h.ns.exec(argv).expect("ip");
        assert!(out.status.success(), "{argv:?}: {out:?}");
    }
    h.ok(&["network", "create", "b1"]);
    h.ok(&["network", "create", "-d", "overlay", "o1"]);
    h.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--internal",
        "--label",
        "team=x",
        "-o",
        "mtu=1400",
        "o2",
    ]);
    let b1 = h.inspect("b1");
    let (o1, o2) = (h.inspect("o1"), h.inspect("o2"));
    assert_eq!(
        h.inspect("bridge")["IPAM"]["Config"][0]["Subnet"],
        "172.19.0.0/16",
        "172.17.0.0/16 is left to docker0, 172.18.0.0/16 is routed"
    );
    assert_eq!(b1["IPAM"]["Config"][0]["Subnet"], "172.20.0.0/16");
    assert_eq!(b1["IPAM"]["Config"][0]["Gateway"], "172.20.0.1");
    assert_eq!(o1["IPAM"]["Config"][0]["Subnet"], "10.0.1.0/24");
    assert_eq!(o2["IPAM"]["Config"][0]["Subnet"], "10.0.2.0/24");
    assert_eq!(o1["Scope"], "global");
    assert_eq!(
        o1["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
        "4096"
    );
    assert_eq!(
        o2["Options"]["com.docker.network.driver.overlay.vxlanid_list"],
        "4097"
    );
    assert_eq!(o2["Options"]["com.docker.network.driver.mtu"], "1400");
    assert_eq!(o2["Internal"], true);
    assert_eq!(o2["Labels"]["team"], "x");
    let quiet = h.ok(&["network", "ls", "-q", "--filter", "driver=overlay"]);
    assert_eq!(quiet.lines().count(), 2, "{quiet}");
    let pruned = h.ok(&["network", "prune", "-f"]);
    assert!(
        pruned.contains("b1") && pruned.contains("o1") && !pruned.contains("bridge"),
        "{pruned}"
    );
    assert_eq!(
        h.ok(&["network", "ls", "-q"]).lines().count(),
        1,
        "only the default network is left"
    );
}

#[test]
fn external_access_is_masqueraded_and_internal_networks_stay_inside() {
    if !require_root("external_access_is_masqueraded_and_internal_networks_stay_inside") {
        return;
    }
    let h = host();
    // "The internet": a namespace behind the host's uplink that knows no
    // route to any container subnet, so only masqueraded traffic returns.
    let ext = NetNs::new(&h.name("ext")).expect("ext namespace");
    overlay_testkit::netns::ip(&[
        "link",
        "add",
        "up0",
        "netns",
        h.ns.name(),
        "type",
        "veth",
        "peer",
        "name",
        "up0",
        "netns",
        ext.name(),
    ])
    .expect("uplink");
    for (ns, cmd) in [
        (&h.ns, "ip addr add 203.0.113.1/24 dev up0"),
        (&h.ns, "ip link set up0 up"),
        (&h.ns, "ip route add default via 203.0.113.2"),
        (&ext, "ip addr add 203.0.113.2/24 dev up0"),
        (&ext, "ip link set up0 up"),
    ] {
        ns.exec(&cmd.split(' ').collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }
    let (out_c, in_c) = (h.name("pub"), h.name("priv"));
    h.ok(&["network", "create", "--subnet", "10.91.0.0/24", "public"]);
    h.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.92.0.0/24",
        "private",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        &out_c,
        "--network",
        "public",
        "--",
        "sleep",
        "300",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        &in_c,
        "--network",
        "private",
        "--",
        "sleep",
        "300",
    ]);

    assert!(
        h.pings(&out_c, "10.91.0.1"),
        "a container reaches its gateway (the host)"
    );
    assert!(
        h.pings(&out_c, "203.0.113.2"),
        "a container reaches outside, masqueraded"
    );
    assert!(
        !h.pings(&in_c, "203.0.113.2"),
        "an internal network reaches nothing outside"
    );
    let nat =
        h.ns.exec(&["nft", "list", "table", "ip", "overlay"])
            .expect("nat table");
    let nat = String::from_utf8_lossy(&nat.stdout);
    assert!(
        nat.contains("10.91.0.0/24") && nat.contains("masquerade"),
        "{nat}"
    );
    assert!(
        !nat.lines()
            .any(|l| l.contains("masquerade") && l.contains("10.92.0.0/24")),
        "no NAT for the internal network: {nat}"
    );

    h.ok(&["rm", "-f", &out_c, &in_c]);
    h.ok(&["network", "rm", "public", "private"]);
    let nat =
        h.ns.exec(&["nft", "list", "table", "ip", "overlay"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    assert!(
        nat.map_or(true, |t| !t.contains("10.91.0.0/24")),
        "the rule leaves with its network"
    );
}

#[test]
fn daemon_repairs_drift() {
    if !require_root("daemon_repairs_drift") {
        return;
    }
    let h = host();
    let (a, b, c, d) = (h.name("a"), h.name("b"), h.name("c"), h.name("d"));
    h.ok(&["network", "create", "--subnet", "10.93.0.0/24", "net"]);
    for name in [&a, &b, &c] {
        h.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "net",
            "--",
            "sleep",
            "300",
        ]);
    }
    let (b_ip, c_ip) = (h.ip_of("net", &b), h.ip_of("net", &c));
    assert!(h.pings(&a, &b_ip), "baseline");

    // Drift 1: b's map entries vanish behind the agent's back.
    {
        let mut dp =
            overlay_user::dataplane::Dataplane::load(h.root.join("bpf")).expect("open pinned maps");
        let (ifindex, _) = dp
            .state()
            .expect("state")
            .endpoints
            .into_iter()
            .find(|(_, e)| {
                e.ip == u32::from(b_ip.parse::<std::net::Ipv4Addr>().expect("ip")).to_be()
            })
            .expect("b is programmed");
        dp.remove_local_endpoint(ifindex).expect("remove b");
        // Drift 4: a peer and a remote route nobody recorded (what a
        // crash between map writes and the store's commit leaves).
        let net = u32::from("10.93.0.0".parse::<std::net::Ipv4Addr>().expect("ip")).to_be();
        let vni = dp
            .state()
            .expect("state")
            .subnets
            .into_iter()
            .find(|((_, addr), _)| *addr == net)
            .expect("net's subnet")
            .1;
        dp.add_peer("192.0.2.66".parse().expect("ip"), vni)
            .expect("stale peer");
        dp.add_remote_endpoint(&overlay_user::dataplane::RemoteEndpoint {
            vni,
            ip: "10.93.0.77".parse().expect("ip"),
            mac: overlay_user::model::MacAddr::from_ipv4("10.93.0.77".parse().expect("ip")),
            host: "192.0.2.66".parse().expect("ip"),
        })
        .expect("stale route");
    }
    // Drift 5: a gateway address of ours (by its label) for a network
    // that is gone, beside one of the admin's that must stay.
    for argv in [
        &[
            "ip",
            "addr",
            "add",
            "10.66.0.1/32",
            "dev",
            "lo",
            "label",
            "lo:overlay",
        ][..],
        &["ip", "addr", "add", "10.67.0.1/32", "dev", "lo"],
    ] {
        let out = h.ns.exec(argv).expect("ip");
        assert!(out.status.success(), "{argv:?}: {out:?}");
    }
    assert!(
        !h.pings(&a, &b_ip),
        "b unreachable once its entries are gone"
    );
    // Drift 2: a stale host-side veth.
    h.ns.exec(&[
        "ip",
        "link",
        "add",
        "ovldeadbeef",
        "type",
        "veth",
        "peer",
        "name",
        "zz0",
    ])
    .expect("stale veth");
    // Drift 3: c's namespace deleted behind the agent's back (its process,
    // `sleep 300` started by `run`, is still there).
    let c_pids = |c: &str| {
        String::from_utf8_lossy(
            &Command::new("ip")
                .args(["netns", "pids", c])
                .output()
                .expect("ip netns pids")
                .stdout,
        )
        .split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .collect::<Vec<_>>()
    };
    let c_proc = c_pids(&c);
    assert_eq!(c_proc.len(), 1, "c runs one process: {c_proc:?}");
    overlay_testkit::netns::ip(&["netns", "del", &c]).expect("delete c's namespace");

    let out = h.run(&["daemon", "--once"]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "daemon --once: {log}");
    assert!(log.contains("repaired drift"), "{log}");

    assert!(h.pings(&a, &b_ip), "b reachable again after the repair");
    {
        let state = overlay_user::dataplane::Dataplane::load(h.root.join("bpf"))
            .expect("open pinned maps")
            .state()
            .expect("state");
        assert!(
            state.peers.is_empty(),
            "stale peer removed: {:?}",
            state.peers
        );
        assert_eq!(
            state.routes.len(),
            2,
            "only a's and b's routes: {:?}",
            state.routes
        );
    }
    let addrs = h.stdout_of(&["ip", "-4", "-o", "addr", "show", "dev", "lo"]);
    assert!(
        !addrs.contains("10.66.0.1"),
        "our stale gateway removed: {addrs}"
    );
    assert!(
        addrs.contains("10.67.0.1"),
        "the admin's address stays: {addrs}"
    );
    assert!(
        addrs.contains("10.93.0.1/32") && addrs.contains("lo:overlay"),
        "the network's gateway, labelled: {addrs}"
    );
    let links = String::from_utf8_lossy(&h.ns.exec(&["ip", "-o", "link"]).expect("links").stdout)
        .into_owned();
    assert!(
        !links.contains("ovldeadbeef"),
        "stale veth removed: {links}"
    );
    assert!(!h.ok(&["ps", "-a"]).contains(&c), "c's record released");
    assert!(!common::alive(c_proc[0]), "c's process was stopped with it");
    // c's address is free again.
    h.ok(&[
        "run",
        "-d",
        "--name",
        &d,
        "--network",
        "net",
        "--",
        "sleep",
        "300",
    ]);
    h.ok(&["network", "disconnect", "net", &d]);
    h.ok(&["network", "connect", "--ip", &c_ip, "net", &d]);
    // A second pass finds nothing to do.
    let out = h.run(&["daemon", "--once"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("repaired drift"),
        "in sync after repair"
    );
}

#[test]
fn killing_the_daemon_does_not_interrupt_forwarding() {
    if !require_root("killing_the_daemon_does_not_interrupt_forwarding") {
        return;
    }
    let h = host();
    let (a, b) = (h.name("a"), h.name("b"));
    h.ok(&["network", "create", "--subnet", "10.94.0.0/24", "net"]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        &a,
        "--network",
        "net",
        "--",
        "sleep",
        "300",
    ]);
    h.ok(&[
        "run",
        "-d",
        "--name",
        &b,
        "--network",
        "net",
        "--",
        "sleep",
        "300",
    ]);
    let b_ip = h.ip_of("net", &b);
    let spawn_daemon = || {
        h.cmd()
            .args(["daemon", "--interval", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("daemon")
    };
    let mut daemon = spawn_daemon();
    let flood = h
        .cmd()
        .args([
            "exec", &a, "--", "ping", "-q", "-c", "2500", "-i", "0.002", &b_ip,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping flood");
    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(1200));
        daemon.kill().expect("kill -9 the daemon");
        daemon.wait().expect("reap");
        daemon = spawn_daemon();
    }
    let out = flood.wait_with_output().expect("flood result");
    daemon.kill().expect("stop daemon");
    let _ = daemon.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ping flood: {text}");
    assert!(
        text.contains("2500 packets transmitted, 2500 received"),
        "zero loss across kill -9: {text}"
    );
}

#[test]
fn a_running_daemon_serves_the_cli_over_its_socket() {
    if !require_root("a_running_daemon_serves_the_cli_over_its_socket") {
        return;
    }
    let mut h = host();
    h.ok(&["network", "ls"]); // first start: the store exists
    h.start_daemon(&["--interval", "60"]);
    let socket = h.root.join("overlay.sock");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "root-only socket");

    let id = h.ok(&["network", "create", "--subnet", "10.95.0.0/24", "viasock"]);
    let bad = h.run(&["network", "create", "viasock"]);
    let inspect = h.inspect("viasock");
    // The same state named without --root, with a socket nobody serves:
    // the command still goes to the daemon that holds the state.
    let elsewhere = h
        .bare_cmd()
        .arg("--state-dir")
        .arg(h.root.join("state"))
        .arg("--pin-dir")
        .arg(h.root.join("bpf"))
        .arg("--socket")
        .arg(h.root.join("nobody.sock"))
        .args(["--netns", h.ns.name()])
        .args(["network", "create", "--subnet", "10.95.1.0/24", "found"])
        .output()
        .expect("overlay");
    // A second daemon on the same state, serving or not, is refused.
    let second = h.run(&["daemon", "--interval", "60"]);
    let once = h.run(&["daemon", "--once"]);
    // A daemon that holds the state but cannot be reached: commands
    // refuse rather than run beside it.
    std::fs::remove_file(&socket).expect("remove the socket");
    let unreachable = h.run(&["network", "create", "--subnet", "10.95.2.0/24", "never"]);
    h.stop_daemon();
    let served = h.log();

    assert_eq!(
        inspect["Id"],
        id.as_str(),
        "the daemon created it and printed its ID"
    );
    assert!(!bad.status.success(), "errors come back through the socket");
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .starts_with("overlay: network with name viasock already exists")
    );
    assert!(
        elsewhere.status.success(),
        "{}",
        String::from_utf8_lossy(&elsewhere.stderr)
    );
    for (what, out) in [("daemon", &second), ("daemon --once", &once)] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a second {what} started");
        assert!(
            err.contains("another daemon (pid ")
                && err.contains(&format!("socket {}", socket.display())),
            "{what}: {err}"
        );
    }
    let err = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        !unreachable.status.success() && err.contains("does not answer"),
        "{err}"
    );
    assert!(
        served.matches("served").count() >= 4,
        "the daemon served the commands:\n{served}"
    );
    // Without the daemon the same store answers directly.
    assert_eq!(h.inspect("viasock")["Id"], id.as_str());
    assert!(h.inspect("found")["Id"].is_string());
    assert!(
        !h.ok(&["network", "ls"]).contains("never"),
        "nothing changed"
    );
}

#[test]
fn attach_and_detach_the_underlay() {
    if !require_root("attach_and_detach_the_underlay") {
        return;
    }
    let h = host();
    for cmd in [
        "ip link add ul0 type veth peer name ul0p",
        "ip addr add 192.0.2.10/24 dev ul0",
        "ip link set ul0 up",
        "ip link set ul0p up",
    ] {
        h.ns.exec(&cmd.split(' ').collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }
    // The default (`auto`) on a veth: TC, and why.
    let out = h.ok(&["attach", "--iface", "ul0"]);
    assert!(
        out.contains("192.0.2.10") && out.contains("tc (tcx ingress) (auto: veth"),
        "the NIC's address and decap mode: {out}"
    );
    let status = h.ok(&["status"]);
    assert!(
        status.contains("underlay: ul0 192.0.2.10 decap tc (tcx ingress) (auto: veth"),
        "{status}"
    );
    // Asking for XDP there works, with a warning that says why not.
    let xdp = h.run(&["attach", "--iface", "ul0", "--decap", "xdp"]);
    let warning = String::from_utf8_lossy(&xdp.stderr);
    assert!(
        xdp.status.success() && warning.contains("warning") && warning.contains("--decap auto"),
        "{warning}"
    );
    assert!(h.ok(&["status"]).contains("(warning: veth"));
    let links = || std::fs::read_dir(h.root.join("bpf/links")).map_or(0, |d| d.count());
    assert_eq!(links(), 1, "the decap link is pinned");
    assert!(h.ok(&["detach"]).contains("ul0"));
    assert!(h.ok(&["status"]).contains("not attached"));
    assert_eq!(links(), 0, "the decap link is gone");
    let again = h.run(&["detach"]);
    assert!(!again.status.success(), "detaching twice is an error");
}

/// Two hosts on a switch, configured only through the CLI with default
/// settings (`attach` picks the decap mode): the same overlay network on
/// both, static peers and remote endpoints (the way hosts without a cluster
/// store, or next to kernel-VXLAN hosts, are wired). TCP crosses the veth
/// underlay with its offloads on, as shipped, and with them off (a wire).
#[test]
fn two_hosts_over_the_cli_with_static_peers() {
    if !require_root("two_hosts_over_the_cli_with_static_peers") {
        return;
    }
    let (h1, h2) = (host(), host());
    let mut switch = Switch::new(&h1.tag);
    for h in [&h1, &h2] {
        switch.plug(h);
        h.ok(&["attach", "--iface", "eth0"]);
        h.ok(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.77.0.0/24",
            "--vni",
            "7777",
            "ov",
        ]);
    }
    let (a, a_ip, b, b_ip) = static_pair(&h1, &h2, "10.100.0.1");
    assert_ne!(a_ip, b_ip, "distinct addresses");
    learn(&h1, "10.100.0.2", &b_ip);
    assert!(
        !h1.pings(&a, &b_ip),
        "no peers yet: the receiving hosts drop unknown senders"
    );
    h1.ok(&["peer", "add", "--remote", "10.100.0.2", "--network", "ov"]);
    h2.ok(&["peer", "add", "--remote", "10.100.0.1", "--network", "ov"]);
    assert!(
        h1.pings(&a, &b_ip),
        "a (host 1) reaches b (host 2) over VXLAN"
    );
    assert!(h2.pings(&b, &a_ip), "and back");
    let (a_ns, b_ns) = (NetNs::existing(&a), NetNs::existing(&b));
    let (a_addr, b_addr) = (a_ip.parse().expect("ip"), b_ip.parse().expect("ip"));
    for (what, port) in [("offloads on", 5101), ("offloads off", 5103)] {
        if what == "offloads off" {
            for h in [&h1, &h2] {
                h.ns.run(|| overlay_user::host::ethtool::disable_tx_checksum_offload("eth0"))
                    .expect("host namespace")
                    .expect("tx checksum off");
            }
        }
        let (sent, got, n) = tcp_transfer(&a_ns, &b_ns, b_addr, port, 8 << 20);
        assert!(n == 8 << 20 && sent == got, "{what}: TCP a -> b intact");
        let (sent, got, n) = tcp_transfer(&b_ns, &a_ns, a_addr, port + 1, 8 << 20);
        assert!(n == 8 << 20 && sent == got, "{what}: TCP b -> a intact");
    }
    let stats = h2.ok(&["stats"]);
    let decap = stats
        .lines()
        .find(|l| l.starts_with("decap_tc"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(decap >= 2, "host 2 decapsulated the traffic: {stats}");
    let peers = h1.ok(&["peer", "ls"]);
    assert!(
        peers.contains("10.100.0.2") && peers.contains("ov"),
        "{peers}"
    );
    // The encap path cached host 2's next hop: its eth0 MAC, out of eth0.
    let h2_mac = h2.ns.mac("eth0").expect("host 2 MAC");
    let status = h1.ok(&["status"]);
    assert!(
        status.contains(&format!("10.100.0.2 via {h2_mac} on eth0")),
        "{status}"
    );
    h1.ok(&["detach"]);
    assert!(
        h1.ok(&["status"])
            .contains("underlay next hops: none cached"),
        "detach flushes the cache"
    );
}

/// Both hosts' NICs carry 1500 bytes, a link between the routers that join
/// them only 1400: the routers' ICMP about the tunnel teaches each host
/// the path MTU, and the containers learn theirs from the dataplane's own
/// ICMP. Bulk TCP gets through both ways with default settings.
#[test]
fn a_path_narrower_than_the_nics_is_discovered() {
    if !require_root("a_path_narrower_than_the_nics_is_discovered") {
        return;
    }
    let (h1, h2) = (host(), host());
    let r1 = NetNs::new(&overlay_testkit::unique_name("ovlr1")).expect("router 1");
    let r2 = NetNs::new(&overlay_testkit::unique_name("ovlr2")).expect("router 2");
    h1.uplink(&r1, "10.61.1.1/24", "10.61.1.254/24");
    h2.uplink(&r2, "10.61.2.1/24", "10.61.2.254/24");
    overlay_testkit::netns::ip(&[
        "link",
        "add",
        "narrow",
        "netns",
        r1.name(),
        "type",
        "veth",
        "peer",
        "name",
        "narrow",
        "netns",
        r2.name(),
    ])
    .expect("router link");
    for (r, mine, other, theirs) in [
        (&r1, "10.61.9.1/30", "10.61.9.2", "10.61.2.0/24"),
        (&r2, "10.61.9.2/30", "10.61.9.1", "10.61.1.0/24"),
    ] {
        for cmd in [
            "ip link set narrow mtu 1400".to_owned(),
            format!("ip addr add {mine} dev narrow"),
            "ip link set narrow up".to_owned(),
            format!("ip route add {theirs} via {other}"),
            "sysctl -qw net.ipv4.ip_forward=1".to_owned(),
        ] {
            r.sh(&cmd).expect("router setup");
        }
    }
    for (h, gw) in [(&h1, "10.61.1.254"), (&h2, "10.61.2.254")] {
        h.ns.sh(&format!("ip route add 10.61.0.0/16 via {gw}"))
            .expect("route to the other host");
        // The uplinks segment tunnel packets in software, as a NIC puts
        // frames on a wire: a veth otherwise hands GSO super-packets whole
        // through the routers, which then never see a frame too big for
        // the narrow link.
        h.ns.sh("ethtool -K up0 tx-udp_tnl-segmentation off tx-udp_tnl-csum-segmentation off")
            .expect("ethtool");
        h.ok(&["attach", "--iface", "up0"]);
        h.ok(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.78.0.0/24",
            "--vni",
            "7778",
            "ov",
        ]);
    }
    let (a, a_ip, b, b_ip) = static_pair(&h1, &h2, "10.61.1.1");
    learn(&h1, "10.61.2.1", &b_ip);
    h1.ok(&["peer", "add", "--remote", "10.61.2.1", "--network", "ov"]);
    h2.ok(&["peer", "add", "--remote", "10.61.1.1", "--network", "ov"]);
    assert!(h1.pings(&a, &b_ip), "small packets pass the narrow link");
    let mtu = h1.ok(&["exec", &a, "--", "cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(
        mtu, "1450",
        "the NIC's MTU minus 50: the narrow link is not known yet"
    );

    let (a_ns, b_ns) = (NetNs::existing(&a), NetNs::existing(&b));
    let (a_addr, b_addr) = (a_ip.parse().expect("ip"), b_ip.parse().expect("ip"));
    let (sent, got, n) = tcp_transfer(&a_ns, &b_ns, b_addr, 5201, 8 << 20);
    assert!(n == 8 << 20 && sent == got, "TCP a -> b intact");
    // a now advertises the smaller MSS it learned; forgotten, b has to
    // discover the narrow link on its own.
    h1.ok(&["exec", &a, "--", "ip", "route", "flush", "cache"]);
    let (sent, got, n) = tcp_transfer(&b_ns, &a_ns, a_addr, 5202, 8 << 20);
    assert!(n == 8 << 20 && sent == got, "TCP b -> a intact");

    for (h, other) in [(&h1, "10.61.2.1"), (&h2, "10.61.1.1")] {
        let stats = h.ok(&["stats"]);
        let count = |name: &str| {
            stats
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        assert!(
            count("underlay_path_mtu_learned") >= 1,
            "{}: {stats}",
            h.tag
        );
        assert!(count("icmp_frag_needed") >= 1, "{}: {stats}", h.tag);
        let status = h.ok(&["status"]);
        assert!(
            status.contains(&format!("path MTUs learned from ICMP: {other} 1400")),
            "{status}"
        );
    }
}

/// `run -p`: a host port reaches the container from the LAN and from the
/// host itself; nothing unpublished gets in, not even straight to the
/// container's address.
#[test]
fn published_ports_and_nothing_else_get_in() {
    if !require_root("published_ports_and_nothing_else_get_in") {
        return;
    }
    let h = host();
    let lan = NetNs::new(&overlay_testkit::unique_name("ovllan")).expect("LAN namespace");
    h.uplink(&lan, "10.62.0.1/24", "10.62.0.2/24");
    lan.sh("ip route add 10.63.0.0/24 via 10.62.0.1")
        .expect("a LAN route to the containers");
    h.ok(&["network", "create", "--subnet", "10.63.0.0/24", "front"]);
    let web = h.name("web");
    h.ok(&[
        "run",
        "-d",
        "--name",
        &web,
        "--network",
        "front",
        "-p",
        "8080:80",
        "--",
        "sh",
        "-c",
        "socat TCP-LISTEN:80,reuseaddr,fork SYSTEM:'echo published' & \
         socat TCP-LISTEN:81,reuseaddr,fork SYSTEM:'echo secret' & wait",
    ]);
    let web_ip = h.ip_of("front", &web);
    let fetch = |ns: &NetNs, to: &str| -> String {
        // Refused or timed out: no output (and a failing status).
        let out = ns
            .command("socat")
            .args(["-u", &format!("TCP:{to},connect-timeout=2"), "-"])
            .output()
            .expect("socat");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert!(
        common::eventually(5, || fetch(&lan, "10.62.0.1:8080") == "published").is_some(),
        "the published port from the LAN"
    );
    assert_eq!(
        fetch(&h.ns, "10.62.0.1:8080"),
        "published",
        "and from the host"
    );
    assert_eq!(
        fetch(&lan, "10.62.0.1:81"),
        "",
        "nothing listens on the host's 81"
    );
    assert_eq!(
        fetch(&lan, &format!("{web_ip}:81")),
        "",
        "the container's own address is not reachable from outside"
    );
    assert_eq!(
        fetch(&lan, &format!("{web_ip}:80")),
        "",
        "not even its published port"
    );

    let err = h.fails(&[
        "run",
        "-d",
        "--network",
        "front",
        "-p",
        "8080:90",
        "--",
        "sleep",
        "60",
    ]);
    assert!(err.contains("8080:80/tcp is already published"), "{err}");
    let err = h.fails(&["run", "-d", "-p", "8080", "--", "sleep", "60"]);
    assert!(err.contains("invalid published port"), "{err}");

    h.ok(&["rm", "-f", &web]);
    assert_eq!(
        fetch(&lan, "10.62.0.1:8080"),
        "",
        "unpublished with the container"
    );
}

/// Container `a` on `h1` and `b` on `h2`, both on overlay network `ov`;
/// `h2` is told of `a` (at `h1_ip`) first, so its own allocation skips
/// `a`'s address. Returns `(a, a_ip, b, b_ip)`.
fn static_pair(h1: &Host, h2: &Host, h1_ip: &str) -> (String, String, String, String) {
    let (a, b) = (h1.name("a"), h2.name("b"));
    h1.ok(&[
        "run",
        "-d",
        "--name",
        &a,
        "--network",
        "ov",
        "--",
        "sleep",
        "300",
    ]);
    let a_ip = h1.ip_of("ov", &a);
    learn(h2, h1_ip, &a_ip);
    h2.ok(&[
        "run",
        "-d",
        "--name",
        &b,
        "--network",
        "ov",
        "--",
        "sleep",
        "300",
    ]);
    let b_ip = h2.ip_of("ov", &b);
    (a, a_ip, b, b_ip)
}

/// Tells `h` of endpoint `ip` on `ov` at host `remote`.
fn learn(h: &Host, remote: &str, ip: &str) {
    h.ok(&[
        "endpoint",
        "add",
        "--remote",
        remote,
        "--network",
        "ov",
        "--ip",
        ip,
    ]);
}

#[test]
fn daemon_settings_are_validated_before_anything_changes() {
    if !require_root("daemon_settings_are_validated_before_anything_changes") {
        return;
    }
    let h = host();
    h.ok(&["network", "ls"]);
    let before = h.observable();
    std::fs::write(h.root.join("bad.toml"), "stor = \"etcd://10.0.0.1:2379\"\n").expect("file");
    let bad = h.root.join("bad.toml");
    let cases: [(&[&str], &str); 5] = [
        (&["--config", bad.to_str().expect("path")], "bad.toml"),
        (
            &["--config", "/nonexistent/daemon.toml"],
            "reading config file",
        ),
        (&["--store", "consul://x:1"], "invalid --store"),
        (&["--store", "etcd://10.0.0.1"], "invalid etcd endpoint"),
        (
            &["--store", "etcd://10.0.0.1:2379", "--lease-ttl", "1"],
            "invalid --lease-ttl",
        ),
    ];
    for (args, want) in cases {
        let mut argv = vec!["daemon", "--once"];
        argv.extend_from_slice(args);
        let err = h.fails(&argv);
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "{args:?}: want {want:?} in one line, got: {err}"
        );
    }
    // Joining a cluster needs an address to advertise.
    let err = h.fails(&["daemon", "--once", "--store", "etcd://10.0.0.1:2379"]);
    assert!(err.contains("advertise"), "{err}");
    assert_eq!(h.observable(), before, "nothing changed");
}

#[test]
fn a_process_is_adopted_by_its_pid() {
    if !require_root("a_process_is_adopted_by_its_pid") {
        return;
    }
    let h = host();
    h.ok(&["network", "create", "--subnet", "10.97.0.0/24", "pidnet"]);
    let db = h.container("db", "pidnet");
    let db_ip = h.ip_of("pidnet", &db);
    // A process in a network namespace of its own, not started by overlay.
    let mut process = Command::new("unshare")
        .args(["--net", "sleep", "300"])
        .spawn()
        .expect("unshare (util-linux)");
    let pid = process.id().to_string();
    let ns_of = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    assert!(
        common::eventually(5, || ns_of(&pid) != ns_of("self")).is_some(),
        "the process got its own namespace"
    );
    let name = format!("pid{pid}");
    h.ok(&["network", "connect", "pidnet", &pid]);
    let ps = h.ok(&["ps", "-a"]);
    assert!(ps.contains(&name), "adopted as {name}: {ps}");
    assert!(
        std::path::Path::new("/run/netns").join(&name).exists(),
        "visible to `ip netns`"
    );
    assert!(h.pings(&name, &db_ip), "the process's namespace reaches db");
    assert!(
        h.ok(&["network", "inspect", "pidnet"]).contains(&name),
        "inspect lists it"
    );
    h.ok(&["rm", &name]);
    assert!(
        !std::path::Path::new("/run/netns").join(&name).exists(),
        "rm detaches the name it attached"
    );
    assert!(
        process.try_wait().expect("status").is_none(),
        "and leaves the process alone"
    );
    let _ = process.kill();
    let _ = process.wait();
}

/// A `sleep` started on a given PID (through `ns_last_pid`), killed and
/// reaped however the test ends.
struct OnPid(Reaped);

impl OnPid {
    /// `None` if other processes kept taking the PID first.
    fn start(pid: u32) -> Option<Self> {
        for _ in 0..200 {
            std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
                .expect("writing ns_last_pid (root in the initial PID namespace)");
            let child = Command::new("sleep").arg("300").spawn().expect("sleep");
            let got = Self(Reaped(child));
            if got.0.0.id() == pid {
                return Some(got);
            }
        }
        None
    }
}

#[test]
fn a_reused_pid_is_never_taken_for_the_container() {
    if !require_root("a_reused_pid_is_never_taken_for_the_container") {
        return;
    }
    let h = host();
    h.ok(&["network", "create", "--subnet", "10.98.0.0/24", "reuse"]);
    let c = h.container("c", "reuse");
    let pids = h.stdout_of(&["ip", "netns", "pids", &c]);
    let pid: u32 = pids.trim().parse().expect("one process in the container");
    // SAFETY: kill(2) with a plain pid and signal.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
    // Its PID is free for reuse only once init has reaped it.
    assert!(
        common::eventually(20, || !proc_dir.exists()).is_some(),
        "the container's process was reaped"
    );
    let stranger = OnPid::start(pid).expect("a new process on the container's PID");

    let ps = h.ok(&["ps", "-a"]);
    let line = ps.lines().find(|l| l.contains(&c)).expect("listed");
    assert!(line.contains("exited"), "{ps}");
    assert!(!h.ok(&["ps"]).contains(&c), "not among the running");
    let err = h.fails(&["exec", &c, "--", "true"]);
    assert!(err.contains("not running"), "{err}");
    h.ok(&["stop", &c]);
    h.ok(&["rm", "-f", &c]);
    let mut stranger = stranger;
    assert!(
        stranger.0.0.try_wait().expect("status").is_none(),
        "the process that reused the PID was left alone"
    );
}

#[test]
fn the_default_route_moves_with_the_networks() {
    if !require_root("the_default_route_moves_with_the_networks") {
        return;
    }
    let h = host();
    h.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.91.0.0/24",
        "inner",
    ]);
    h.ok(&["network", "create", "--subnet", "10.92.0.0/24", "front"]);
    h.ok(&["network", "create", "--subnet", "10.93.0.0/24", "alpha"]);
    let c = h.container("c", "inner");
    let default = |c: &str| {
        h.ok(&["exec", c, "--", "ip", "-4", "route", "show", "default"])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(default(&c), "", "an internal network gives no way out");
    h.ok(&["network", "connect", "front", &c]);
    assert_eq!(
        default(&c),
        "default via 10.92.0.1 dev eth1",
        "the routable one"
    );
    h.ok(&["network", "connect", "alpha", &c]);
    assert_eq!(
        default(&c),
        "default via 10.93.0.1 dev eth2",
        "ties: name order"
    );
    h.ok(&["network", "disconnect", "alpha", &c]);
    assert_eq!(default(&c), "default via 10.92.0.1 dev eth1", "moved back");
    h.ok(&["network", "disconnect", "front", &c]);
    assert_eq!(default(&c), "");

    let d = h.container("d", "front");
    h.ok(&["network", "connect", "--gw-priority", "1", "inner", &d]);
    assert_eq!(
        default(&d),
        "default via 10.92.0.1 dev eth0",
        "internal never routes"
    );
    h.ok(&["network", "connect", "--gw-priority", "-1", "alpha", &d]);
    assert_eq!(
        default(&d),
        "default via 10.92.0.1 dev eth0",
        "lower priority"
    );
    h.ok(&["network", "disconnect", "front", &d]);
    assert_eq!(default(&d), "default via 10.93.0.1 dev eth2");

    // The daemon's repair puts a deleted route back.
    h.ok(&["exec", &d, "--", "ip", "route", "del", "default"]);
    let out = h.run(&["daemon", "--once"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(default(&d), "default via 10.93.0.1 dev eth2", "repaired");
}

#[test]
fn a_missing_kernel_feature_is_one_clear_line_and_changes_nothing() {
    if !require_root("a_missing_kernel_feature_is_one_clear_line_and_changes_nothing") {
        return;
    }
    let h = host();
    // The bridge driver has no native XDP.
    h.ns.exec(&["ip", "link", "add", "d0", "type", "bridge"])
        .expect("bridge device");
    h.ns.exec(&["ip", "link", "set", "d0", "up"]).expect("up");
    h.ok(&["network", "ls"]);
    let before = h.observable();
    let status = h.ok(&["status"]);
    let err = h.fails(&[
        "attach",
        "--iface",
        "d0",
        "--underlay-ip",
        "192.0.2.1",
        "--decap",
        "xdp-native",
    ]);
    assert!(
        err.contains("lacks native (driver) XDP on d0") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(h.observable(), before, "nothing changed");
    assert_eq!(h.ok(&["status"]), status, "still not attached");
    // Where native XDP is missing, plain `xdp` falls back to generic.
    let ok = h.ok(&[
        "attach",
        "--iface",
        "d0",
        "--underlay-ip",
        "192.0.2.1",
        "--decap",
        "xdp",
    ]);
    assert!(ok.contains("xdp (generic)"), "{ok}");
}

/// A reboot loses every kernel object (processes, namespaces, veths, pins,
/// addresses, nftables); the store survives. The daemon's first pass
/// brings the host back: networks in the maps, gateways, NAT, the underlay
/// program; containers whose namespaces died are released.
#[test]
fn the_daemon_restores_a_host_after_a_reboot() {
    if !require_root("the_daemon_restores_a_host_after_a_reboot") {
        return;
    }
    let h = host();
    h.ns.exec(&[
        "ip", "link", "add", "u0", "type", "veth", "peer", "name", "u1",
    ])
    .expect("underlay veth");
    h.ns.exec(&["ip", "link", "set", "u0", "up"]).expect("up");
    h.ok(&[
        "attach",
        "--iface",
        "u0",
        "--underlay-ip",
        "192.0.2.1",
        "--decap",
        "tc",
    ]);
    h.ok(&["network", "create", "--subnet", "10.98.0.0/24", "rnet"]);
    let (a, b) = (h.container("a", "rnet"), h.container("b", "rnet"));
    assert!(h.pings(&a, &h.ip_of("rnet", &b)), "baseline");

    // The reboot.
    let ps: Vec<serde_json::Value> =
        serde_json::from_str(&h.ok(&["ps", "-a", "--format", "json"])).expect("ps json");
    for c in &ps {
        if let Some(pid) = c["Pid"]
            .as_u64()
            .and_then(|p| libc::pid_t::try_from(p).ok())
        {
            // SAFETY: kill(2) with a plain pid and signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        overlay_testkit::netns::ip(&["netns", "del", c["Name"].as_str().expect("name")])
            .expect("namespace gone");
    }
    h.ok(&["destroy"]);
    for gw in ["10.98.0.1/32", "172.18.0.1/32"] {
        h.ns.exec(&["ip", "addr", "del", gw, "dev", "lo"])
            .expect("gateway address gone");
    }
    h.ns.exec(&["nft", "delete", "table", "ip", "overlay"])
        .expect("nat table gone");
    assert!(
        !h.root.join("bpf/maps").exists()
            || std::fs::read_dir(h.root.join("bpf/maps")).map_or(0, |d| d.count()) == 0,
        "no pins left"
    );

    h.ok(&["daemon", "--once"]);
    let status = h.ok(&["status"]);
    assert!(
        status.contains("networks: 2  containers: 0  endpoints: 0"),
        "both networks back, the dead containers released: {status}"
    );
    assert!(
        status.contains("underlay: u0 192.0.2.1 decap tc (tcx ingress)")
            && h.root.join("bpf/links").read_dir().expect("links").count() == 1,
        "the underlay program is attached again: {status}"
    );
    let lo = String::from_utf8_lossy(
        &h.ns
            .exec(&["ip", "-4", "addr", "show", "dev", "lo"])
            .expect("lo")
            .stdout,
    )
    .into_owned();
    assert!(
        lo.contains("10.98.0.1/32") && lo.contains("172.18.0.1/32"),
        "gateways back: {lo}"
    );
    let nat = String::from_utf8_lossy(
        &h.ns
            .exec(&["nft", "list", "table", "ip", "overlay"])
            .expect("nat table back")
            .stdout,
    )
    .into_owned();
    assert!(nat.contains("10.98.0.0/24"), "{nat}");
    // And the network works for new containers, gateway included.
    let (c, d) = (h.container("c", "rnet"), h.container("d", "rnet"));
    assert!(h.pings(&c, &h.ip_of("rnet", &d)), "c reaches d");
    assert!(h.pings(&c, "10.98.0.1"), "c reaches its gateway");
}

#[test]
fn stats_count_per_network() {
    if !require_root("stats_count_per_network") {
        return;
    }
    let h = host();
    h.ok(&["network", "create", "--subnet", "10.99.1.0/24", "one"]);
    h.ok(&["network", "create", "--subnet", "10.99.2.0/24", "two"]);
    let (a, b) = (h.container("a", "one"), h.container("b", "one"));
    let _c = h.container("c", "two");
    let b_ip = h.ip_of("one", &b);
    let forwarded = |args: &[&str]| -> u64 {
        let out = h.ok(args);
        out.lines()
            .find(|l| l.starts_with("forward_local "))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or_else(|| panic!("no forward_local row: {out}"))
    };
    let (one, two, all) = (
        forwarded(&["stats", "--network", "one"]),
        forwarded(&["stats", "--network", "two"]),
        forwarded(&["stats"]),
    );
    let ping = h.ok(&["exec", &a, "--", "ping", "-c", "3", "-i", "0.2", &b_ip]);
    assert!(ping.contains("3 received"), "{ping}");
    let (one2, two2, all2) = (
        forwarded(&["stats", "--network", "one"]),
        forwarded(&["stats", "--network", "two"]),
        forwarded(&["stats"]),
    );
    assert!(
        one2 - one >= 6,
        "3 requests and 3 replies on one: {one} -> {one2}"
    );
    assert_eq!(two2, two, "nothing on two");
    assert_eq!(
        all2 - all,
        one2 - one,
        "the host total moved by the same amount"
    );
    let err = h.fails(&["stats", "--network", "nope"]);
    assert!(err.contains("network nope not found"), "{err}");
}

#[test]
fn joining_and_leaving_a_cluster_is_recorded_and_guarded() {
    if !require_root("joining_and_leaving_a_cluster_is_recorded_and_guarded") {
        return;
    }
    let h = host();
    // Standalone overlay networks would clash with the cluster's.
    h.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.96.0.0/24",
        "solo",
    ]);
    let before = h.observable();
    let join = [
        "daemon",
        "--once",
        "--store",
        "etcd://192.0.2.10:2379",
        "--advertise-addr",
        "192.0.2.1",
        "--lease-ttl",
        "9",
    ];
    let err = h.fails(&join);
    assert!(
        err.contains("overlay networks exist on this host (solo)") && err.lines().count() == 1,
        "{err}"
    );
    assert_eq!(h.observable(), before, "refused join changed nothing");
    assert!(h.ok(&["status"]).contains("cluster: none"));
    // Without them the settings are recorded (--once starts no agent).
    h.ok(&["network", "rm", "solo"]);
    h.ok(&join);
    let status = h.ok(&["status"]);
    assert!(
        status.contains("cluster: etcd 192.0.2.10:2379 as 192.0.2.1") && status.contains("ttl 9s"),
        "{status}"
    );
    // Local networks need no cluster.
    h.ok(&["network", "create", "--subnet", "10.96.1.0/24", "loc"]);
    // Leaving.
    h.ok(&["daemon", "--once", "--store", "embedded"]);
    assert!(h.ok(&["status"]).contains("cluster: none"));
    assert!(h.ok(&["network", "ls"]).contains(" loc "));
}

/// `destroy` removes every pin; the next command puts the networks back in
/// the maps (their gateway addresses are still on `lo`), with or without a
/// daemon, and a reconcile pass re-programs the containers that were there.
#[test]
fn commands_work_after_destroy() {
    if !require_root("commands_work_after_destroy") {
        return;
    }
    let mut h = host();
    h.ok(&["network", "create", "--subnet", "10.89.1.0/24", "n1"]);
    let a = h.container("a", "n1");
    h.ok(&["destroy"]);
    let ls = h.ok(&["network", "ls"]);
    assert!(ls.contains(" n1 ") && ls.contains(" bridge "), "{ls}");
    h.ok(&["network", "create", "--subnet", "10.89.2.0/24", "n2"]);
    let (b, c) = (h.container("b", "n1"), h.container("c", "n1"));
    assert!(
        h.pings(&b, &h.ip_of("n1", &c)),
        "containers made after destroy reach each other"
    );
    h.ok(&["daemon", "--once"]);
    assert!(
        h.pings(&a, &h.ip_of("n1", &b)),
        "the repair pass brings back a container from before"
    );

    // The same with a daemon serving the commands.
    h.start_daemon(&["--interval", "1"]);
    h.ok(&["destroy"]);
    let ls = h.ok(&["network", "ls"]);
    assert!(ls.contains(" n1 ") && ls.contains(" n2 "), "{ls}");
    h.ok(&["network", "create", "--subnet", "10.89.3.0/24", "n3"]);
    let d = h.container("d", "n3");
    let e = h.container("e", "n3");
    assert!(h.pings(&d, &h.ip_of("n3", &e)), "d reaches e");
    assert!(
        common::eventually(10, || h.pings(&a, &h.ip_of("n1", &c))).is_some(),
        "the daemon re-programs the containers from before:\n{}",
        h.log()
    );
    assert!(
        h.log().contains("served"),
        "the daemon served:\n{}",
        h.log()
    );
}

/// A daemon serves only the host it was started for: a command that names
/// other paths or another network namespace is refused, not run against the
/// daemon's host.
#[test]
fn a_daemon_refuses_commands_for_another_host() {
    if !require_root("a_daemon_refuses_commands_for_another_host") {
        return;
    }
    let mut h = host();
    h.ok(&["network", "ls"]);
    h.start_daemon(&["--interval", "60"]);
    let before = h.observable();
    let socket = h.root.join("overlay.sock");
    let other = std::env::temp_dir().join(h.name("other"));
    let other_pins = format!("/sys/fs/bpf/{}", h.name("op"));
    let elsewhere = h
        .bare_cmd()
        .arg("--socket")
        .arg(&socket)
        .arg("--state-dir")
        .arg(&other)
        .args(["--pin-dir", &other_pins, "--netns", h.ns.name()])
        .args(["network", "create", "x"])
        .output()
        .expect("spawn overlay");
    let stderr = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(!elsewhere.status.success(), "accepted: {stderr}");
    assert!(
        stderr.starts_with("overlay: this daemon serves state") && stderr.lines().count() == 1,
        "{stderr}"
    );
    assert!(!other.exists(), "nothing made at the other paths");
    assert!(!std::path::Path::new(&other_pins).exists());
    // Same paths, but the host's own namespace instead of the daemon's.
    let host_netns = h
        .bare_cmd()
        .arg("--root")
        .arg(&h.root)
        .args(["network", "create", "y"])
        .output()
        .expect("spawn overlay");
    let stderr = String::from_utf8_lossy(&host_netns.stderr);
    assert!(
        !host_netns.status.success() && stderr.contains("another network namespace"),
        "{stderr}"
    );
    assert_eq!(h.observable(), before, "nothing changed");
}

/// On a 1400-byte underlay (many cloud VMs, VPNs) a default overlay network
/// takes 1350, so bulk TCP crosses a real wire (offloads off: the sender
/// segments to the MTU) intact; an MTU that cannot fit is refused.
#[test]
fn the_overlay_mtu_follows_a_small_underlay() {
    if !require_root("the_overlay_mtu_follows_a_small_underlay") {
        return;
    }
    let (h1, h2) = (host(), host());
    let mut switch = Switch::new(&h1.tag);
    for (n, h) in [&h1, &h2].into_iter().enumerate() {
        switch.plug(h);
        h.ns.sh("ip link set eth0 mtu 1400").expect("host mtu");
        switch
            .ns
            .sh(&format!("ip link set p{} mtu 1400", n + 1))
            .expect("switch port mtu");
        h.ns.run(|| overlay_user::host::ethtool::disable_tx_checksum_offload("eth0"))
            .expect("host namespace")
            .expect("a real wire");
        h.ok(&["attach", "--iface", "eth0"]);
        h.ok(&[
            "network",
            "create",
            "-d",
            "overlay",
            "--subnet",
            "10.78.0.0/24",
            "--vni",
            "7800",
            "ov",
        ]);
    }
    let net = h1.inspect("ov");
    assert_eq!(
        net["Options"]["com.docker.network.driver.mtu"], "1350",
        "1400 minus VXLAN: {net}"
    );
    let err = h1.fails(&[
        "network",
        "create",
        "-d",
        "overlay",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "big",
    ]);
    assert!(err.contains("does not fit the underlay"), "{err}");
    let (a, a_ip, b, b_ip) = static_pair(&h1, &h2, "10.100.0.1");
    learn(&h1, "10.100.0.2", &b_ip);
    h1.ok(&["peer", "add", "--remote", "10.100.0.2", "--network", "ov"]);
    h2.ok(&["peer", "add", "--remote", "10.100.0.1", "--network", "ov"]);
    let mtu = h1.ok(&["exec", &a, "--", "cat", "/sys/class/net/eth0/mtu"]);
    assert_eq!(mtu, "1350", "the container's interface");
    let (a_ns, b_ns) = (NetNs::existing(&a), NetNs::existing(&b));
    let (sent, got, n) = tcp_transfer(&a_ns, &b_ns, b_ip.parse().expect("ip"), 5201, 8 << 20);
    assert!(n == 8 << 20 && sent == got, "bulk TCP a -> b intact");
    let (sent, got, n) = tcp_transfer(&b_ns, &a_ns, a_ip.parse().expect("ip"), 5202, 8 << 20);
    assert!(n == 8 << 20 && sent == got, "bulk TCP b -> a intact");
}
