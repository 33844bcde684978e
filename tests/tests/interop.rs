//! Interop: host 1 runs this dataplane, host 2 the kernel's vxlan device and
//! bridge with static FDB/neighbour entries (Docker's overlay driver). Both
//! speak RFC 7348 VXLAN on UDP 4789 to each other.

use std::{net::Ipv4Addr, process::Stdio, time::Duration};

use overlay_common::Counter;
use overlay_testkit::{
    lab::{HostKind, Lab},
    require_root,
    traffic::tcp_transfer,
};
use overlay_user::model::DecapRequest;

const VNI: u32 = 4242;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

fn interop(mode: DecapRequest) {
    let mut lab = Lab::new(&[HostKind::Ebpf(mode), HostKind::Kernel]).expect("lab");
    lab.add_network(VNI, "10.30.0.0/24").expect("network");
    let ours = lab
        .add_container(0, "ours", &[(VNI, ip("10.30.0.2"))])
        .expect("ours");
    let theirs = lab
        .add_container(1, "theirs", &[(VNI, ip("10.30.0.3"))])
        .expect("theirs");

    assert!(lab.ping(ours, ip("10.30.0.3"), 3), "ours -> kernel host");
    assert!(lab.ping(theirs, ip("10.30.0.2"), 3), "kernel host -> ours");
    for (from, to, dst, port) in [
        (ours, theirs, "10.30.0.3", 5101),
        (theirs, ours, "10.30.0.2", 5102),
    ] {
        let (sent, got, n) = tcp_transfer(
            &lab.containers[from].ns,
            &lab.containers[to].ns,
            ip(dst),
            port,
            16 << 20,
        );
        assert_eq!(
            (n, sent),
            (16 << 20, got),
            "TCP {from} -> {to} arrives intact"
        );
    }
    let counters = lab.hosts[0].dp().counters().expect("counters");
    assert!(
        counters.outcome(Counter::Encap).packets > 0,
        "our host encapsulated"
    );
    let decap =
        counters.outcome(Counter::DecapXdp).packets + counters.outcome(Counter::DecapTc).packets;
    assert!(decap > 0, "our host decapsulated the kernel's VXLAN");
}

#[test]
fn kernel_vxlan_peer_with_xdp_decap() {
    if require_root("kernel_vxlan_peer_with_xdp_decap") {
        interop(DecapRequest::Xdp);
    }
}

/// The default: `auto` on a veth underlay with its offloads on, as shipped.
#[test]
fn kernel_vxlan_peer_with_default_decap() {
    if require_root("kernel_vxlan_peer_with_default_decap") {
        interop(DecapRequest::Auto);
    }
}

#[test]
fn kernel_vxlan_peer_with_tc_decap() {
    if require_root("kernel_vxlan_peer_with_tc_decap") {
        interop(DecapRequest::Tc);
    }
}

/// The kernel host's NIC sees both directions; tshark must decode them as
/// VXLAN with our VNI, a valid outer IPv4 checksum, and ICMP inside.
#[test]
fn capture_decodes_as_vxlan() {
    if !require_root("capture_decodes_as_vxlan") {
        return;
    }
    let mut lab = Lab::new(&[HostKind::Ebpf(DecapRequest::Xdp), HostKind::Kernel]).expect("lab");
    lab.add_network(VNI, "10.30.0.0/24").expect("network");
    let ours = lab
        .add_container(0, "ours", &[(VNI, ip("10.30.0.2"))])
        .expect("ours");
    lab.add_container(1, "theirs", &[(VNI, ip("10.30.0.3"))])
        .expect("theirs");
    assert!(lab.ping(ours, ip("10.30.0.3"), 1), "warm-up");

    let pcap = std::env::temp_dir().join(format!("{}.pcap", lab.hosts[1].ns.name()));
    let pcap_s = pcap.to_str().expect("utf-8 path").to_owned();
    let mut tcpdump = lab.hosts[1]
        .ns
        .command("tcpdump")
        .args([
            "-i", "eth0", "-U", "-c", "6", "-w", &pcap_s, "udp", "port", "4789",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump (apt package tcpdump)");
    std::thread::sleep(Duration::from_millis(500));
    assert!(lab.ping(ours, ip("10.30.0.3"), 3), "ping during capture");
    let status = tcpdump.wait().expect("tcpdump exit");
    assert!(status.success(), "tcpdump captured 6 packets");

    // Repeated fields (outer and inner IPv4) are joined with ';'.
    let out = std::process::Command::new("tshark")
        .args([
            "-r",
            &pcap_s,
            "-o",
            "ip.check_checksum:TRUE",
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-E",
            "aggregator=;",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "udp.dstport",
            "-e",
            "vxlan.flag_i",
            "-e",
            "vxlan.vni",
            "-e",
            "ip.checksum.status",
            "-e",
            "icmp.type",
        ])
        .output()
        .expect("tshark (apt package tshark)");
    let _ = std::fs::remove_file(&pcap);
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 6, "six packets decoded:\n{text}");
    let vni = VNI.to_string();
    let (mut requests, mut replies) = (0, 0);
    for row in &rows {
        let [src, dst, port, flag_i, row_vni, csum, icmp] = row.as_slice() else {
            panic!("unexpected row {row:?} in\n{text}");
        };
        let vni_ok = *row_vni == vni.as_str();
        assert!(
            *port == "4789" && *flag_i == "1" && vni_ok,
            "VXLAN on 4789 with I flag and VNI {VNI}: {row:?}"
        );
        // Status 1 = good, for the outer and the inner IPv4 header.
        assert_eq!(*csum, "1;1", "IPv4 checksums verify: {row:?}");
        match (*src, *dst, *icmp) {
            ("10.100.0.1;10.30.0.2", "10.100.0.2;10.30.0.3", "8") => requests += 1,
            ("10.100.0.2;10.30.0.3", "10.100.0.1;10.30.0.2", "0") => replies += 1,
            _ => panic!("unexpected addresses/ICMP in {row:?}"),
        }
    }
    assert_eq!(
        (requests, replies),
        (3, 3),
        "echo requests from our host, replies from the kernel's:\n{text}"
    );
}
