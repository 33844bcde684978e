//! Table-driven BPF_PROG_RUN cases: every verdict and counter of the
//! endpoint, XDP underlay and TC underlay programs, with exact output bytes.
//!
//! Runs inside a private namespace that has an underlay device (`ul0`) with
//! a permanent neighbour, so the FIB lookup in the encap path is
//! deterministic, and veths standing in for endpoint veths.

use std::net::Ipv4Addr;

use aya::programs::{TestRun, TestRunOptions};
use overlay_common::{
    Counter, DNS_ADDRS_MAX, DNS_NAME_MAX, DropEvent, DropReason, EndpointInfo, EndpointSlot,
    NameKey, NameValue, PeerKey, PeerSlot, RouteKey, RouteSlot, RouteValue, SLOT_SEQ_WRITING,
    VXLAN_ENCAP_LEN, VXLAN_PORT, endpoint_slot,
    events::{
        EVENT_FLAG_INNER, EVENTS_BURST, EVENTS_PER_SEC, HOOK_ENDPOINT, HOOK_UNDERLAY_TC,
        HOOK_UNDERLAY_XDP,
    },
    maps::names,
    peer_slot, route_slot,
};
use overlay_testkit::{
    PinDir, assert_no_failures,
    packet::{
        ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, Ipv4, arp, eth, icmp_frag_needed, ipv4_udp_frame, udp,
        vxlan_frame,
    },
    prog_run::ProgRunHost,
    require_root,
};
use overlay_user::{
    dataplane::{
        Dataplane, Guard, LocalEndpoint, Network, RemoteEndpoint, Underlay, events::DropEvents,
    },
    model::{DecapMode, MacAddr},
};

mod encap;
mod events;
mod slots;
mod table;
mod verdicts;

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

const MAC_A: [u8; 6] = [0x02, 0x42, 10, 0, 1, 2];
const MAC_B: [u8; 6] = [0x02, 0x42, 10, 0, 1, 3];
const MAC_C: [u8; 6] = [0x02, 0x42, 10, 0, 1, 4];
const MAC_D: [u8; 6] = [0x02, 0x42, 10, 0, 1, 5];
const MAC_F: [u8; 6] = [0x02, 0x42, 10, 0, 1, 7];
const MAC_I: [u8; 6] = [0x02, 0x42, 10, 0, 3, 2];
/// The neighbour MAC of F's host (`ProgRunHost::NARROW_IP`).
const NARROW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x03];
const HOST_MAC: [u8; 6] = [0x02, 0xee, 0, 0, 0, 1];
const NEIGH_MAC: [u8; 6] = ProgRunHost::NEIGH_MAC;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

/// What a case expects of the output frame.
enum Out {
    /// Not checked (drops).
    Any,
    /// Byte-identical to the input.
    Unchanged,
    /// Exactly these bytes.
    Bytes(Vec<u8>),
    /// VXLAN encapsulation of the input: checked field by field.
    Encap {
        dst_mac: [u8; 6],
        remote: Ipv4Addr,
        vni: u32,
        inner_dst_mac: [u8; 6],
    },
}

/// What the underlay programs must do with a frame, whichever of the two.
#[derive(Clone, Copy, Debug)]
enum UnderlayVerdict {
    Pass,
    /// Passed on, after the path MTU was learned from it.
    Learned,
    Drop(DropReason),
    Decap,
}

/// The counter slot a case must bump by exactly one.
#[derive(Clone, Copy, Debug)]
enum Expect {
    Ok(Counter),
    Drop(DropReason),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Prog {
    Endpoint,
    Xdp,
    Tc,
}

struct Case {
    what: &'static str,
    prog: Prog,
    /// Sender device for the endpoint program (skb ifindex).
    dev: &'static str,
    input: Vec<u8>,
    action: u32,
    counter: Expect,
    out: Out,
}

struct Env {
    host: ProgRunHost,
    underlay_mac: [u8; 6],
}

impl Env {
    fn new() -> Self {
        let host = ProgRunHost::new().expect("prog-run namespace");
        let underlay_mac = host.underlay_mac.0;
        Self { host, underlay_mac }
    }

    fn ifindex(&self, dev: &str) -> u32 {
        self.host.ifindex(dev)
    }
}

/// A namespace, a pin directory and a dataplane loaded there with the
/// table's networks and endpoints (dropped in reverse: dataplane, pins,
/// namespace).
fn programmed(tag: &str) -> (Env, PinDir, Dataplane) {
    let env = Env::new();
    let pins = PinDir::new(tag);
    let mut dp = Dataplane::load(&pins.0).expect("load dataplane");
    program(&mut dp, &env);
    (env, pins, dp)
}

fn program(dp: &mut Dataplane, env: &Env) {
    let net = |vni, subnet: &str, gw: &str, internal| Network {
        vni,
        subnet: subnet.parse().expect("subnet"),
        gateway: Some(ip(gw)),
        internal,
    };
    dp.set_underlay(&Underlay::new(env.ifindex("ul0"), ip("10.99.0.1")))
        .expect("underlay");
    dp.add_network(&net(100, "10.0.1.0/24", "10.0.1.1", false))
        .expect("net 100");
    dp.add_network(&net(200, "10.0.2.0/24", "10.0.2.1", false))
        .expect("net 200");
    dp.add_network(&net(300, "10.0.3.0/24", "10.0.3.1", true))
        .expect("net 300");
    let local = |vni, addr: &str, mac, dev: &str| LocalEndpoint {
        vni,
        ip: ip(addr),
        mac: MacAddr(mac),
        host_ifindex: env.ifindex(dev),
        host_mac: MacAddr(HOST_MAC),
    };
    dp.add_local_endpoint(&local(100, "10.0.1.2", MAC_A, "ep1"))
        .expect("A");
    dp.add_local_endpoint(&local(300, "10.0.3.2", MAC_I, "ep2"))
        .expect("I");
    // B is local too, on a veth that is not in this namespace (the index
    // only has to be a redirect target).
    dp.add_local_endpoint(&LocalEndpoint {
        host_ifindex: 4242,
        ..local(100, "10.0.1.3", MAC_B, "ep1")
    })
    .expect("B");
    let remote = |addr: &str, mac, host: &str| RemoteEndpoint {
        vni: 100,
        ip: ip(addr),
        mac: MacAddr(mac),
        host: ip(host),
    };
    dp.add_remote_endpoint(&remote("10.0.1.4", MAC_C, "10.99.0.2"))
        .expect("C");
    dp.add_remote_endpoint(&remote("10.0.1.5", MAC_D, "10.98.1.1"))
        .expect("D");
    dp.add_remote_endpoint(&remote("10.0.1.6", MAC_D, "10.77.0.1"))
        .expect("E");
    // F's host is behind a route of MTU 1400.
    dp.add_remote_endpoint(&remote("10.0.1.7", MAC_F, "10.99.0.3"))
        .expect("F");
    dp.add_peer(ip("10.99.0.2"), 100).expect("peer");
    dp.add_guard(Guard("192.0.2.9:2379".parse().expect("endpoint")))
        .expect("guard");
    for (vni, name, addrs) in [
        (100, "db", &["10.0.1.3"][..]),
        (100, "web.app", &["10.0.1.3", "10.0.1.4"]),
        (300, "probe", &["10.0.3.2"]),
    ] {
        dp.set_name(&name_key(vni, &wire(name)), &name_value(addrs))
            .expect("name");
    }
}

/// `name` in DNS wire form (length-prefixed labels, then the root's 0).
fn wire(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name.split('.') {
        w.push(label.len() as u8);
        w.extend_from_slice(label.as_bytes());
    }
    w.push(0);
    w
}

fn name_key(vni: u32, wire: &[u8]) -> NameKey {
    let mut key = NameKey {
        vni,
        len: wire.len() as u32,
        name: [0; DNS_NAME_MAX],
    };
    key.name[..wire.len()].copy_from_slice(wire);
    key
}

fn name_value(addrs: &[&str]) -> NameValue {
    let mut v = NameValue {
        count: addrs.len() as u32,
        addrs: [0; DNS_ADDRS_MAX],
    };
    for (slot, a) in v.addrs.iter_mut().zip(addrs) {
        *slot = u32::from_ne_bytes(ip(a).octets());
    }
    v
}

/// A DNS message: ID 0x4242, `flags`, one question (`qname` in wire form,
/// `qtype`, `qclass`), `arcount` in the header (records not included).
fn dns_query(qname: &[u8], qtype: u16, qclass: u16, flags: u16, arcount: u16) -> Vec<u8> {
    let mut m = vec![0x42, 0x42];
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0]);
    m.extend_from_slice(&arcount.to_be_bytes());
    m.extend_from_slice(qname);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&qclass.to_be_bytes());
    m
}

/// What the endpoint program answers `query` (a message from
/// [`dns_query`] with RD set) with: the same question, authoritative, one
/// A record per address pointing back at the question's name.
fn dns_answer(query: &[u8], addrs: &[&str]) -> Vec<u8> {
    let mut m = query.to_vec();
    m[2..4].copy_from_slice(&0x8580u16.to_be_bytes());
    m[6..8].copy_from_slice(&(addrs.len() as u16).to_be_bytes());
    for a in addrs {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        m.extend_from_slice(&600u32.to_be_bytes());
        m.extend_from_slice(&[0, 4]);
        m.extend_from_slice(&ip(a).octets());
    }
    m
}

const RD: u16 = 0x0100;
const A: u16 = 1;
const AAAA: u16 = 28;
const IN: u16 = 1;

/// Runs the endpoint program on `frame` sent by A (`ep1`), checks that it
/// was encapsulated and redirected, and returns the output frame.
fn encap_from_a(dp: &mut Dataplane, env: &Env, frame: &[u8]) -> Vec<u8> {
    let run = dp
        .run_endpoint(env.ifindex("ep1"), frame)
        .expect("test_run");
    assert_eq!(run.action, TC_ACT_REDIRECT, "encap");
    run.out
}

/// What the endpoint program made of `frame` sent from interface
/// `ifindex`: the one counter that moved.
fn endpoint_verdict(dp: &mut Dataplane, ifindex: u32, frame: &[u8]) -> &'static str {
    let run = dp.run_endpoint(ifindex, frame).expect("test_run");
    assert_eq!(
        run.moved.len(),
        1,
        "one counter per packet: {:?}",
        run.moved
    );
    run.moved[0]
}

/// Keeps the calling thread on the CPU it runs on now.
fn pin_to_current_cpu() {
    // SAFETY: sched_getcpu has no preconditions; cpu_set_t is plain data
    // and sched_setaffinity(0, ..) changes only the calling thread.
    unsafe {
        let cpu = usize::try_from(libc::sched_getcpu()).expect("current CPU");
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pinning the test thread"
        );
    }
}

/// From A to `dst` (MAC `dst_mac`): `tot_len` bytes of IPv4 UDP with `ihl`
/// header words and the flags field `frags`.
fn sized_from_a(dst_mac: [u8; 6], dst: Ipv4Addr, tot_len: usize, ihl: u8, frags: u16) -> Vec<u8> {
    let payload = vec![0x5a; tot_len - usize::from(ihl) * 4 - 8];
    let mut f = eth(dst_mac, MAC_A, ETH_P_IP);
    f.extend(
        Ipv4 {
            ihl,
            frags,
            ..Ipv4::new(ip("10.0.1.2"), dst, 17)
        }
        .build(&udp(5555, 9000, &payload)),
    );
    f
}

/// A router's ICMP "fragmentation needed" to this host (10.99.0.1) about
/// a UDP packet from `from` to `to` port `dport`, `sent` bytes long, of
/// which `mtu` would have fit.
fn router_icmp(from: Ipv4Addr, to: Ipv4Addr, dport: u16, sent: u16, mtu: u16) -> Vec<u8> {
    let mut quoted = Ipv4 {
        tot_len: Some(sent),
        ..Ipv4::new(from, to, 17)
    }
    .build(&[]);
    quoted.extend(udp(40000, dport, &[]));
    let mut f = eth([2, 0, 0, 0, 0x99, 1], NEIGH_MAC, ETH_P_IP);
    f.extend(
        Ipv4::new(ip("10.99.0.254"), ip("10.99.0.1"), 1).build(&icmp_frag_needed(mtu, &quoted)),
    );
    f
}
