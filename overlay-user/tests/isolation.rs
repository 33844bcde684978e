//! Isolation tried as an attacker would: a container speaking VXLAN to a
//! host, a machine on the LAN connecting to containers, a local non-root
//! user. Each attack has its positive control beside it.

mod common;

use std::{
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::unix::process::CommandExt as _,
    process::Command,
    time::Duration,
};

use common::{Host, Switch, eventually, host, require_root};
use overlay_testkit::{
    NetNs,
    packet::{ETH_P_IP, Ipv4, eth, udp, vxlan},
};

/// The value of counter `name` in `overlay stats` output.
fn counter(stats: &str, name: &str) -> u64 {
    stats
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} row: {stats}"))
}

/// A VXLAN payload (header + inner frame) carrying a UDP datagram to
/// `to:port`, as someone on network `vni` would address it.
fn vxlan_payload(vni: u32, to: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut inner = eth(
        overlay_user::model::MacAddr::from_ipv4(to).0,
        [0x02, 0x42, 0xde, 0xad, 0xbe, 0xef],
        ETH_P_IP,
    );
    let src = Ipv4Addr::new(to.octets()[0], to.octets()[1], to.octets()[2], 99);
    inner.extend(Ipv4::new(src, to, 17).build(&udp(5555, port, b"injected")));
    let mut payload = vxlan(0x08, vni);
    payload.extend(inner);
    payload
}

/// Datagrams a UDP socket bound in `ns` at `ip:port` receives within
/// `wait` once `send` has run.
fn received(ns: &NetNs, ip: Ipv4Addr, port: u16, send: impl FnOnce()) -> usize {
    let rx = ns
        .run(|| UdpSocket::bind((ip, port)))
        .expect("namespace")
        .expect("bind receiver");
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    send();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while rx.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

/// Host A has containers on `front` and `back`, host B one on `back`. A
/// container on `front` sends host B's VXLAN port a frame of `back`: its
/// own host must never carry it. The host itself still may.
#[test]
fn a_container_cannot_speak_vxlan_through_its_host() {
    if !require_root("a_container_cannot_speak_vxlan_through_its_host") {
        return;
    }
    let (a, b) = (host(), host());
    let mut switch = Switch::new(&a.tag);
    for h in [&a, &b] {
        switch.plug(h);
        h.ok(&["attach", "--iface", "eth0", "--decap", "tc"]);
        for (name, subnet, vni) in [
            ("front", "10.71.1.0/24", "7101"),
            ("back", "10.71.2.0/24", "7102"),
        ] {
            h.ok(&[
                "network", "create", "-d", "overlay", "--subnet", subnet, "--vni", vni, name,
            ]);
        }
    }
    let f = a.container("f", "front");
    let _ab = a.container("ab", "back");
    let bb = b.container("bb", "back");
    let target: Ipv4Addr = b.ip_of("back", &bb).parse().expect("ip");
    for (h, other) in [(&a, "10.100.0.2"), (&b, "10.100.0.1")] {
        for net in ["front", "back"] {
            h.ok(&["peer", "add", "--remote", other, "--network", net]);
        }
    }
    let payload = vxlan_payload(7102, target, 9999);
    let bb_ns = NetNs::existing(&bb);
    let f_ns = NetNs::existing(&f);
    let before = a.ok(&["stats"]);
    let from_container = received(&bb_ns, target, 9999, || {
        f_ns.run(|| {
            let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
            for _ in 0..20 {
                let _ = s.send_to(&payload, "10.100.0.2:4789");
            }
        })
        .expect("f's namespace");
    });
    let after = a.ok(&["stats"]);
    assert_eq!(from_container, 0, "no injected frame reached network back");
    let blocked = counter(&after, "drop_to_tunnel_port") - counter(&before, "drop_to_tunnel_port");
    assert!(blocked >= 20, "the endpoint program counted them: {after}");

    // The host itself is a peer of `back`: its frames are delivered.
    let from_host = received(&bb_ns, target, 9999, || {
        a.ns.run(|| {
            let s = UdpSocket::bind("10.100.0.1:0").expect("bind");
            for _ in 0..20 {
                let _ = s.send_to(&payload, "10.100.0.2:4789");
            }
        })
        .expect("host namespace");
    });
    assert!(
        from_host >= 18,
        "the host's own VXLAN still works: {from_host} of 20"
    );
    // And the container still reaches the outside on other UDP ports.
    assert!(a.pings(&f, "10.100.0.2"), "f reaches host B's address");
}

/// A TCP listener in `ns` on `ip:port`; accepts in the background and
/// echoes one line.
fn serve(ns: &NetNs, ip: Ipv4Addr, port: u16) -> TcpListener {
    let l = ns
        .run(|| TcpListener::bind((ip, port)))
        .expect("namespace")
        .expect("bind");
    let server = l.try_clone().expect("clone");
    std::thread::spawn(move || {
        for mut c in server.incoming().flatten() {
            let _ = c.write_all(b"hello\n");
        }
    });
    l
}

/// Whether a TCP connection from `ns` to `to` gets the server's greeting.
fn connects(ns: &NetNs, to: SocketAddr) -> bool {
    ns.run(|| {
        TcpStream::connect_timeout(&to, Duration::from_secs(1)).and_then(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(1)))?;
            let mut buf = [0u8; 6];
            c.read_exact(&mut buf)
        })
    })
    .expect("namespace")
    .is_ok()
}

/// A machine on the host's LAN that routes a container subnet via the host
/// reaches no container; what containers open to it still works.
#[test]
fn the_lan_reaches_containers_only_with_replies() {
    if !require_root("the_lan_reaches_containers_only_with_replies") {
        return;
    }
    let h = host();
    let lan = NetNs::new(&h.name("lan")).expect("lan namespace");
    h.uplink(&lan, "198.51.100.1/24", "198.51.100.2/24");
    // The attacker routes the container subnets via the host.
    lan.sh("ip route add 10.88.0.0/16 via 198.51.100.1")
        .expect("route");
    h.ok(&["network", "create", "--subnet", "10.88.1.0/24", "pub"]);
    h.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.88.2.0/24",
        "priv",
    ]);
    let (p, q) = (h.container("p", "pub"), h.container("q", "priv"));
    let p_ip: Ipv4Addr = h.ip_of("pub", &p).parse().expect("ip");
    let q_ip: Ipv4Addr = h.ip_of("priv", &q).parse().expect("ip");
    let _p_server = serve(&NetNs::existing(&p), p_ip, 8080);
    let _q_server = serve(&NetNs::existing(&q), q_ip, 8080);
    let _lan_server = serve(&lan, "198.51.100.2".parse().expect("ip"), 8081);

    assert!(
        connects(
            &NetNs::existing(&p),
            "198.51.100.2:8081".parse().expect("addr")
        ),
        "a container reaches the LAN, and the reply comes back"
    );
    assert!(
        !connects(&lan, SocketAddr::from((p_ip, 8080))),
        "the LAN cannot open a connection to a container"
    );
    assert!(
        !connects(&lan, SocketAddr::from((q_ip, 8080))),
        "nor to a container of an internal network"
    );
    let table = h.stdout_of(&["nft", "list", "table", "ip", "overlay"]);
    let dropped = table
        .lines()
        .find(|l| l.contains("pub: nothing else in"))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "packets")?;
            words.get(at + 1)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    assert!(dropped >= 1, "the filter counted the attempts:\n{table}");
}

/// A local user without root cannot touch the pins or use the socket;
/// `destroy` never removes what is not this project's.
#[test]
fn local_users_and_foreign_directories_are_refused() {
    if !require_root("local_users_and_foreign_directories_are_refused") {
        return;
    }
    let mut h: Host = host();
    h.ok(&["network", "ls"]);
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let pins = std::fs::metadata(h.root.join("bpf")).expect("pin dir");
    // (The kernel keeps the sticky bit on a bpffs root.)
    assert_eq!(
        pins.mode() & 0o777,
        0o700,
        "the bpffs it mounted is root's only"
    );

    // `destroy` of a directory that is not a bpffs of ours.
    let foreign = std::env::temp_dir().join(h.name("foreign"));
    std::fs::create_dir_all(&foreign).expect("dir");
    std::fs::write(foreign.join("keep"), "data").expect("file");
    let out = h
        .bare_cmd()
        .arg("--pin-dir")
        .arg(&foreign)
        .arg("--state-dir")
        .arg(h.root.join("state"))
        .args(["--netns", h.ns.name(), "destroy"])
        .output()
        .expect("spawn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("refusing to remove"),
        "{stderr}"
    );
    assert!(foreign.join("keep").exists(), "nothing removed");
    let _ = std::fs::remove_dir_all(&foreign);

    // The socket checks who is asking, whatever its file mode says.
    h.start_daemon(&["--interval", "60"]);
    let socket = h.root.join("overlay.sock");
    // The daemon restricts its socket right after binding it: open it up
    // only after that, or the daemon's chmod would undo the test's.
    let mode = || std::fs::metadata(&socket).map(|m| m.permissions().mode() & 0o777);
    assert!(
        eventually(5, || mode().is_ok_and(|m| m == 0o600)).is_some(),
        "the daemon restricts its socket"
    );
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    std::fs::set_permissions(&h.root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let request = format!(
        "{{\"target\":{{\"paths\":{{\"state_dir\":{:?},\"pin_dir\":{:?}}},\"netns\":[0,0]}},\"command\":{{\"command\":\"network-create\",\"name\":\"x\",\"driver\":null,\"subnets\":[],\"gateway\":null,\"ip_range\":null,\"vni\":null,\"internal\":false,\"mtu\":null,\"labels\":{{}}}}}}\n",
        h.root.join("state"),
        h.root.join("bpf"),
    );
    let request_file = h.root.join("request.json");
    std::fs::write(&request_file, &request).expect("request");
    let reply = Command::new("socat")
        .args(["-t", "5", "-"])
        .arg(format!("UNIX-CONNECT:{}", socket.display()))
        .stdin(std::fs::File::open(&request_file).expect("request"))
        .uid(65534)
        .output()
        .expect("socat (apt package socat)");
    let text = String::from_utf8_lossy(&reply.stdout);
    assert!(
        text.contains("permission denied: root only"),
        "a non-root peer is refused: {text} {}",
        String::from_utf8_lossy(&reply.stderr)
    );
    assert!(
        !h.ok(&["network", "ls"]).contains(" x "),
        "and nothing was created"
    );
    assert!(
        eventually(5, || h.log().contains("served")).is_some(),
        "{}",
        h.log()
    );
}
