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

/// DNS queries from containers: answered in the kernel, or left to the
/// daemon's resolver on the gateway untouched.
fn dns_cases() -> Vec<Case> {
    let a = ip("10.0.1.2");
    let gw = ip("10.0.1.1");
    // From A's port 33333 to `dst:dport` over `proto` (UDP unless 6).
    let to = |dst: Ipv4Addr, proto: u8, dport: u16, dns: &[u8]| {
        let l4 = if proto == 6 {
            let mut t = vec![0u8; 20];
            t[..2].copy_from_slice(&33333u16.to_be_bytes());
            t[2..4].copy_from_slice(&dport.to_be_bytes());
            t[12] = 5 << 4;
            t.extend_from_slice(dns);
            t
        } else {
            udp(33333, dport, dns)
        };
        let mut f = eth(HOST_MAC, MAC_A, ETH_P_IP);
        f.extend(Ipv4::new(a, dst, proto).build(&l4));
        f
    };
    let query = |dns: &[u8]| to(gw, 17, 53, dns);
    let reply = |dns: Vec<u8>| {
        let mut f = eth(MAC_A, HOST_MAC, ETH_P_IP);
        f.extend(
            Ipv4 {
                id: 0,
                frags: 0x4000,
                ..Ipv4::new(gw, a, 17)
            }
            .build(&udp(53, 33333, &dns)),
        );
        f
    };
    let answered = |what, q: Vec<u8>, addrs: &[&str]| Case {
        what,
        prog: Prog::Endpoint,
        dev: "ep1",
        input: query(&q),
        action: TC_ACT_REDIRECT,
        counter: Expect::Ok(Counter::DnsAnswered),
        out: Out::Bytes(reply(dns_answer(&q, addrs))),
    };
    let passed = |what, input| Case {
        what,
        prog: Prog::Endpoint,
        dev: "ep1",
        input,
        action: TC_ACT_OK,
        counter: Expect::Ok(Counter::ToHost),
        out: Out::Unchanged,
    };
    let db = wire("db");
    let compressed = dns_query(&[0xc0, 12], A, IN, RD, 0);
    let long_name = wire(&["x"; 32].join("."));
    assert!(long_name.len() > DNS_NAME_MAX);
    let mut trailing = dns_query(&db, A, IN, RD, 0);
    trailing.extend_from_slice(&[0; 4]);
    let mut cut = dns_query(&db, A, IN, RD, 0);
    cut.truncate(cut.len() - 3);
    let mut no_end = dns_query(&db, A, IN, RD, 0);
    no_end.truncate(12 + 3);
    // I, alone on the internal network 300, asks its gateway.
    let internal_query = dns_query(&wire("probe"), A, IN, RD, 0);
    let from_i = |src, dst, dns: &[u8], src_mac, dst_mac, sport, dport, id, frags| {
        let mut f = eth(dst_mac, src_mac, ETH_P_IP);
        f.extend(
            Ipv4 {
                id,
                frags,
                ..Ipv4::new(src, dst, 17)
            }
            .build(&udp(sport, dport, dns)),
        );
        f
    };
    let (i, i_gw) = (ip("10.0.3.2"), ip("10.0.3.1"));
    let internal = Case {
        what: "dns: answered on an internal network too",
        prog: Prog::Endpoint,
        dev: "ep2",
        input: from_i(
            i,
            i_gw,
            &internal_query,
            MAC_I,
            HOST_MAC,
            40000,
            53,
            0x1234,
            0,
        ),
        action: TC_ACT_REDIRECT,
        counter: Expect::Ok(Counter::DnsAnswered),
        out: Out::Bytes(from_i(
            i_gw,
            i,
            &dns_answer(&internal_query, &["10.0.3.2"]),
            HOST_MAC,
            MAC_I,
            53,
            40000,
            0,
            0x4000,
        )),
    };
    vec![
        internal,
        answered(
            "dns: A of a name on its network",
            dns_query(&db, A, IN, RD, 0),
            &["10.0.1.3"],
        ),
        answered(
            "dns: any case",
            dns_query(&wire("dB"), A, IN, RD, 0),
            &["10.0.1.3"],
        ),
        answered(
            "dns: two labels, two addresses",
            dns_query(&wire("WEB.app"), A, IN, RD, 0),
            &["10.0.1.3", "10.0.1.4"],
        ),
        answered(
            "dns: AAAA of a known name: an empty answer",
            dns_query(&db, AAAA, IN, RD, 0),
            &[],
        ),
        answered(
            "dns: MX of a known name: an empty answer",
            dns_query(&db, 15, IN, RD, 0),
            &[],
        ),
        passed(
            "dns: unknown name to the daemon",
            query(&dns_query(&wire("nope"), A, IN, RD, 0)),
        ),
        passed(
            "dns: another network's name to the daemon",
            query(&dns_query(&wire("probe"), A, IN, RD, 0)),
        ),
        passed(
            "dns: a prefix of a name is not the name",
            query(&dns_query(&wire("web"), A, IN, RD, 0)),
        ),
        passed("dns: compressed name to the daemon", query(&compressed)),
        passed(
            "dns: name over 64 bytes to the daemon",
            query(&dns_query(&long_name, A, IN, RD, 0)),
        ),
        passed(
            "dns: EDNS record to the daemon",
            query(&dns_query(&db, A, IN, RD, 1)),
        ),
        passed(
            "dns: a response is not answered",
            query(&dns_query(&db, A, IN, 0x8000, 0)),
        ),
        passed(
            "dns: an update is not answered",
            query(&dns_query(&db, A, IN, 5 << 11, 0)),
        ),
        passed(
            "dns: class CH to the daemon",
            query(&dns_query(&db, A, 3, RD, 0)),
        ),
        passed("dns: bytes after the question", query(&trailing)),
        passed("dns: question cut short", query(&cut)),
        passed("dns: name without its end", query(&no_end)),
        passed(
            "dns: header only",
            query(&dns_query(&db, A, IN, RD, 0)[..12]),
        ),
        passed(
            "dns: to port 5353",
            to(gw, 17, 5353, &dns_query(&db, A, IN, RD, 0)),
        ),
        passed(
            "dns: over TCP",
            to(gw, 6, 53, &dns_query(&db, A, IN, RD, 0)),
        ),
        passed(
            "dns: to another resolver",
            to(ip("192.0.2.53"), 17, 53, &dns_query(&db, A, IN, RD, 0)),
        ),
    ]
}

fn cases(env: &Env) -> Vec<Case> {
    let a = ip("10.0.1.2");
    let frame_to = |dst_mac, dst: &str| ipv4_udp_frame(dst_mac, MAC_A, a, ip(dst), 5555);
    let arp_req = |sha, spa: &str, tpa: &str| {
        let mut f = eth([0xff; 6], sha, ETH_P_ARP);
        f.extend(arp(1, sha, ip(spa), [0; 6], ip(tpa)));
        f
    };
    let arp_reply = |answer: [u8; 6], tpa: &str| {
        let mut f = eth(MAC_A, answer, ETH_P_ARP);
        f.extend(arp(2, answer, ip(tpa), MAC_A, a));
        f
    };
    let with_eth_dst = |mut f: Vec<u8>, mac: [u8; 6]| {
        f[..6].copy_from_slice(&mac);
        f
    };
    let ipv4_custom = |hdr: Ipv4| {
        let mut f = eth(MAC_B, MAC_A, ETH_P_IP);
        f.extend(hdr.build(&udp(1, 2, &[0xab; 16])));
        f
    };
    // From A out of the network: `proto` (6 or 17) to `dst:dport`, with
    // the IPv4 fragment field and header length given.
    let out_to = |dst: &str, proto: u8, dport: u16, frags: u16, ihl: u8| {
        let l4 = if proto == 6 {
            let mut t = vec![0u8; 20];
            t[..2].copy_from_slice(&5555u16.to_be_bytes());
            t[2..4].copy_from_slice(&dport.to_be_bytes());
            t[12] = 5 << 4;
            t[13] = 0x02; // SYN
            t
        } else {
            udp(5555, dport, &[0xab; 16])
        };
        let mut f = eth(HOST_MAC, MAC_A, ETH_P_IP);
        f.extend(
            Ipv4 {
                frags,
                ihl,
                ..Ipv4::new(a, ip(dst), proto)
            }
            .build(&l4),
        );
        f
    };
    let sized_to_f = |tot_len, ihl, frags| sized_from_a(MAC_F, ip("10.0.1.7"), tot_len, ihl, frags);
    // What A gets back for `input`: from its gateway, quoting the header
    // and 8 bytes.
    let frag_needed_reply = |input: &[u8], mtu: u16| {
        let mut f = eth(MAC_A, MAC_F, ETH_P_IP);
        f.extend(
            Ipv4 {
                tos: 0xc0,
                id: 0,
                ..Ipv4::new(ip("10.0.1.1"), a, 1)
            }
            .build(&icmp_frag_needed(mtu, &input[14..42])),
        );
        f
    };
    let icmp_about =
        |from: &str, dport, sent, mtu| router_icmp(ip(from), ip("10.98.1.1"), dport, sent, mtu);
    let inner_to_a = ipv4_udp_frame(MAC_A, MAC_C, ip("10.0.1.4"), a, 7777);
    let vx = |src: &str, dport, flags, vni, inner: &[u8]| {
        vxlan_frame(ip(src), ip("10.99.0.1"), dport, flags, vni, inner)
    };
    let good_vxlan = vx("10.99.0.2", VXLAN_PORT, 0x08, 100, &inner_to_a);
    let decapped_xdp = inner_to_a.clone();
    let decapped_tc = {
        let mut f = eth(MAC_A, MAC_C, ETH_P_IP);
        f.extend_from_slice(&inner_to_a[14..]);
        f
    };
    let outer_custom = |hdr: Ipv4, dport: u16| {
        let mut payload = overlay_testkit::packet::vxlan(0x08, 100);
        payload.extend_from_slice(&inner_to_a);
        let mut f = eth([2, 0, 0, 0, 0x99, 1], NEIGH_MAC, ETH_P_IP);
        f.extend(hdr.build(&udp(40000, dport, &payload)));
        f
    };
    let outer = |frags, ihl| Ipv4 {
        frags,
        ihl,
        ..Ipv4::new(ip("10.99.0.2"), ip("10.99.0.1"), 17)
    };

    use Expect::{Drop, Ok};
    use Prog::{Endpoint, Tc, Xdp};
    let case = |what, prog, dev, input, action, counter, out| Case {
        what,
        prog,
        dev,
        input,
        action,
        counter,
        out,
    };
    let _ = env;
    let mut cases = vec![
        // ---- endpoint: ARP --------------------------------------------------
        case(
            "arp for local endpoint answered",
            Endpoint,
            "ep1",
            arp_req(MAC_A, "10.0.1.2", "10.0.1.3"),
            TC_ACT_REDIRECT,
            Ok(Counter::ArpReply),
            Out::Bytes(arp_reply(MAC_B, "10.0.1.3")),
        ),
        case(
            "arp for remote endpoint answered",
            Endpoint,
            "ep1",
            arp_req(MAC_A, "10.0.1.2", "10.0.1.4"),
            TC_ACT_REDIRECT,
            Ok(Counter::ArpReply),
            Out::Bytes(arp_reply(MAC_C, "10.0.1.4")),
        ),
        case(
            "arp for gateway answered with host mac",
            Endpoint,
            "ep1",
            arp_req(MAC_A, "10.0.1.2", "10.0.1.1"),
            TC_ACT_REDIRECT,
            Ok(Counter::ArpReply),
            Out::Bytes(arp_reply(HOST_MAC, "10.0.1.1")),
        ),
        case(
            "arp for unknown address dropped",
            Endpoint,
            "ep1",
            arp_req(MAC_A, "10.0.1.2", "10.0.1.99"),
            TC_ACT_SHOT,
            Drop(DropReason::ArpMiss),
            Out::Any,
        ),
        case(
            "arp for another network's address dropped",
            Endpoint,
            "ep1",
            arp_req(MAC_A, "10.0.1.2", "10.0.3.2"),
            TC_ACT_SHOT,
            Drop(DropReason::ArpMiss),
            Out::Any,
        ),
        case(
            "arp with spoofed sender mac dropped",
            Endpoint,
            "ep1",
            arp_req(MAC_B, "10.0.1.2", "10.0.1.3"),
            TC_ACT_SHOT,
            Drop(DropReason::Spoofed),
            Out::Any,
        ),
        case(
            "arp with spoofed sender ip dropped",
            Endpoint,
            "ep1",
            arp_req(MAC_A, "10.0.1.9", "10.0.1.3"),
            TC_ACT_SHOT,
            Drop(DropReason::Spoofed),
            Out::Any,
        ),
        case(
            "arp probe (sender 0.0.0.0) unanswered",
            Endpoint,
            "ep1",
            arp_req(MAC_A, "0.0.0.0", "10.0.1.3"),
            TC_ACT_SHOT,
            Drop(DropReason::ArpUnsupported),
            Out::Any,
        ),
        case(
            "gratuitous arp unanswered",
            Endpoint,
            "ep1",
            arp_req(MAC_A, "10.0.1.2", "10.0.1.2"),
            TC_ACT_SHOT,
            Drop(DropReason::ArpUnsupported),
            Out::Any,
        ),
        case(
            "arp reply from container dropped",
            Endpoint,
            "ep1",
            {
                let mut f = eth(MAC_B, MAC_A, ETH_P_ARP);
                f.extend(arp(2, MAC_A, a, MAC_B, ip("10.0.1.3")));
                f
            },
            TC_ACT_SHOT,
            Drop(DropReason::ArpUnsupported),
            Out::Any,
        ),
        case(
            "truncated arp dropped",
            Endpoint,
            "ep1",
            arp_req(MAC_A, "10.0.1.2", "10.0.1.3")[..30].to_vec(),
            TC_ACT_SHOT,
            Drop(DropReason::Malformed),
            Out::Any,
        ),
        // ---- endpoint: IPv4 -------------------------------------------------
        case(
            "same host same network: redirect_peer",
            Endpoint,
            "ep1",
            frame_to([0xaa; 6], "10.0.1.3"),
            TC_ACT_REDIRECT,
            Ok(Counter::ForwardLocal),
            Out::Bytes(with_eth_dst(frame_to([0xaa; 6], "10.0.1.3"), MAC_B)),
        ),
        case(
            "remote endpoint: vxlan encap via resolved neighbour",
            Endpoint,
            "ep1",
            frame_to(MAC_C, "10.0.1.4"),
            TC_ACT_REDIRECT,
            Ok(Counter::Encap),
            Out::Encap {
                dst_mac: NEIGH_MAC,
                remote: ip("10.99.0.2"),
                vni: 100,
                inner_dst_mac: MAC_C,
            },
        ),
        case(
            // The case above filled the next-hop cache: same bytes from it.
            "remote endpoint: vxlan encap via cached next hop",
            Endpoint,
            "ep1",
            frame_to(MAC_C, "10.0.1.4"),
            TC_ACT_REDIRECT,
            Ok(Counter::Encap),
            Out::Encap {
                dst_mac: NEIGH_MAC,
                remote: ip("10.99.0.2"),
                vni: 100,
                inner_dst_mac: MAC_C,
            },
        ),
        case(
            "remote endpoint: encap then redirect_neigh (no neighbour yet)",
            Endpoint,
            "ep1",
            frame_to(MAC_D, "10.0.1.5"),
            TC_ACT_REDIRECT,
            Ok(Counter::Encap),
            Out::Encap {
                dst_mac: [0; 6],
                remote: ip("10.98.1.1"),
                vni: 100,
                inner_dst_mac: MAC_D,
            },
        ),
        case(
            "too big for the path once encapsulated: icmp frag needed back",
            Endpoint,
            "ep1",
            sized_to_f(1351, 5, 0x4000),
            TC_ACT_REDIRECT,
            Ok(Counter::IcmpFragNeeded),
            Out::Bytes(frag_needed_reply(&sized_to_f(1351, 5, 0x4000), 1350)),
        ),
        case(
            "too big without DF: icmp frag needed too (no fragmenting)",
            Endpoint,
            "ep1",
            sized_to_f(1400, 5, 0),
            TC_ACT_REDIRECT,
            Ok(Counter::IcmpFragNeeded),
            Out::Bytes(frag_needed_reply(&sized_to_f(1400, 5, 0), 1350)),
        ),
        case(
            "exactly what the path carries: encapsulated",
            Endpoint,
            "ep1",
            sized_to_f(1350, 5, 0x4000),
            TC_ACT_REDIRECT,
            Ok(Counter::Encap),
            Out::Encap {
                dst_mac: NARROW_MAC,
                remote: ProgRunHost::NARROW_IP,
                vni: 100,
                inner_dst_mac: MAC_F,
            },
        ),
        case(
            "too big with ip options: dropped",
            Endpoint,
            "ep1",
            sized_to_f(1351, 6, 0x4000),
            TC_ACT_SHOT,
            Drop(DropReason::TooBig),
            Out::Any,
        ),
        case(
            "remote host without route dropped unmodified",
            Endpoint,
            "ep1",
            frame_to(MAC_D, "10.0.1.6"),
            TC_ACT_SHOT,
            Drop(DropReason::FibFailed),
            Out::Unchanged,
        ),
        case(
            "spoofed source ip dropped",
            Endpoint,
            "ep1",
            ipv4_udp_frame(MAC_B, MAC_A, ip("10.0.1.77"), ip("10.0.1.3"), 1),
            TC_ACT_SHOT,
            Drop(DropReason::Spoofed),
            Out::Any,
        ),
        case(
            "spoofed source mac dropped",
            Endpoint,
            "ep1",
            ipv4_udp_frame(MAC_B, MAC_C, a, ip("10.0.1.3"), 1),
            TC_ACT_SHOT,
            Drop(DropReason::Spoofed),
            Out::Any,
        ),
        case(
            "destination in another network: isolation drop",
            Endpoint,
            "ep1",
            frame_to(HOST_MAC, "10.0.2.5"),
            TC_ACT_SHOT,
            Drop(DropReason::Isolation),
            Out::Any,
        ),
        case(
            "endpoint of another network: isolation drop",
            Endpoint,
            "ep1",
            frame_to(HOST_MAC, "10.0.3.2"),
            TC_ACT_SHOT,
            Drop(DropReason::Isolation),
            Out::Any,
        ),
        case(
            "unknown address in own subnet dropped",
            Endpoint,
            "ep1",
            frame_to(HOST_MAC, "10.0.1.50"),
            TC_ACT_SHOT,
            Drop(DropReason::NoRoute),
            Out::Any,
        ),
        case(
            "outside every network: gateway path to host",
            Endpoint,
            "ep1",
            frame_to(HOST_MAC, "192.0.2.7"),
            TC_ACT_OK,
            Ok(Counter::ToHost),
            Out::Unchanged,
        ),
        case(
            "to the gateway itself: host",
            Endpoint,
            "ep1",
            frame_to(HOST_MAC, "10.0.1.1"),
            TC_ACT_OK,
            Ok(Counter::ToHost),
            Out::Unchanged,
        ),
        // ---- endpoint: what a container may not reach through its host -----
        case(
            "udp to a vxlan port outside dropped",
            Endpoint,
            "ep1",
            out_to("192.0.2.7", 17, VXLAN_PORT, 0, 5),
            TC_ACT_SHOT,
            Drop(DropReason::ToTunnelPort),
            Out::Any,
        ),
        case(
            "udp to the host's own vxlan port dropped",
            Endpoint,
            "ep1",
            out_to("10.0.1.1", 17, VXLAN_PORT, 0, 5),
            TC_ACT_SHOT,
            Drop(DropReason::ToTunnelPort),
            Out::Any,
        ),
        case(
            "vxlan port behind ip options dropped",
            Endpoint,
            "ep1",
            out_to("192.0.2.7", 17, VXLAN_PORT, 0, 7),
            TC_ACT_SHOT,
            Drop(DropReason::ToTunnelPort),
            Out::Any,
        ),
        case(
            "first fragment to a vxlan port dropped",
            Endpoint,
            "ep1",
            out_to("192.0.2.7", 17, VXLAN_PORT, 0x2000, 5),
            TC_ACT_SHOT,
            Drop(DropReason::ToTunnelPort),
            Out::Any,
        ),
        case(
            "later fragment passes (no ports; useless without the first)",
            Endpoint,
            "ep1",
            out_to("192.0.2.7", 17, VXLAN_PORT, 0x0003, 5),
            TC_ACT_OK,
            Ok(Counter::ToHost),
            Out::Unchanged,
        ),
        case(
            "udp to another port outside passes",
            Endpoint,
            "ep1",
            out_to("192.0.2.7", 17, VXLAN_PORT + 1, 0, 5),
            TC_ACT_OK,
            Ok(Counter::ToHost),
            Out::Unchanged,
        ),
        case(
            "tcp to a guarded endpoint (the cluster store) dropped",
            Endpoint,
            "ep1",
            out_to("192.0.2.9", 6, 2379, 0, 5),
            TC_ACT_SHOT,
            Drop(DropReason::ToGuarded),
            Out::Any,
        ),
        case(
            "tcp to another port of the guarded host passes",
            Endpoint,
            "ep1",
            out_to("192.0.2.9", 6, 2380, 0, 5),
            TC_ACT_OK,
            Ok(Counter::ToHost),
            Out::Unchanged,
        ),
        case(
            "udp to the guarded port passes (the guard is tcp)",
            Endpoint,
            "ep1",
            out_to("192.0.2.9", 17, 2379, 0, 5),
            TC_ACT_OK,
            Ok(Counter::ToHost),
            Out::Unchanged,
        ),
        case(
            "internal network: no gateway path",
            Endpoint,
            "ep2",
            ipv4_udp_frame(HOST_MAC, MAC_I, ip("10.0.3.2"), ip("192.0.2.7"), 1),
            TC_ACT_SHOT,
            Drop(DropReason::Internal),
            Out::Any,
        ),
        case(
            "unknown endpoint interface dropped",
            Endpoint,
            "ep3",
            frame_to(MAC_B, "10.0.1.3"),
            TC_ACT_SHOT,
            Drop(DropReason::UnknownEndpoint),
            Out::Any,
        ),
        case(
            "ipv6 from endpoint dropped",
            Endpoint,
            "ep1",
            {
                let mut f = eth(MAC_B, MAC_A, ETH_P_IPV6);
                f.extend([0x60; 40]);
                f
            },
            TC_ACT_SHOT,
            Drop(DropReason::UnsupportedProtocol),
            Out::Any,
        ),
        // BPF_PROG_RUN refuses an IPv4 skb shorter than 20 bytes of header
        // (EINVAL), so truncation is shown with a header claiming 60 bytes.
        case(
            "ipv4 header longer than the packet dropped",
            Endpoint,
            "ep1",
            ipv4_custom(Ipv4 {
                ihl: 15,
                tot_len: Some(40),
                ..Ipv4::new(a, ip("10.0.1.3"), 17)
            })[..14 + 40]
                .to_vec(),
            TC_ACT_SHOT,
            Drop(DropReason::Malformed),
            Out::Any,
        ),
        case(
            "bad ihl (4) dropped",
            Endpoint,
            "ep1",
            ipv4_custom(Ipv4 {
                ihl: 4,
                ..Ipv4::new(a, ip("10.0.1.3"), 17)
            }),
            TC_ACT_SHOT,
            Drop(DropReason::Malformed),
            Out::Any,
        ),
        case(
            "total length beyond frame dropped",
            Endpoint,
            "ep1",
            ipv4_custom(Ipv4 {
                tot_len: Some(900),
                ..Ipv4::new(a, ip("10.0.1.3"), 17)
            }),
            TC_ACT_SHOT,
            Drop(DropReason::Malformed),
            Out::Any,
        ),
        case(
            "ip options forwarded as is",
            Endpoint,
            "ep1",
            ipv4_custom(Ipv4 {
                ihl: 7,
                ..Ipv4::new(a, ip("10.0.1.3"), 17)
            }),
            TC_ACT_REDIRECT,
            Ok(Counter::ForwardLocal),
            Out::Unchanged,
        ),
        case(
            "fragment forwarded as is",
            Endpoint,
            "ep1",
            ipv4_custom(Ipv4 {
                frags: 0x2000,
                ..Ipv4::new(a, ip("10.0.1.3"), 17)
            }),
            TC_ACT_REDIRECT,
            Ok(Counter::ForwardLocal),
            Out::Unchanged,
        ),
    ];

    // Underlay cases run through both decap programs, XDP and TC, with the
    // verdict translated into each program's action, counter and output.
    let underlay_cases = vec![
        (
            "vxlan from peer to local endpoint",
            good_vxlan.clone(),
            UnderlayVerdict::Decap,
        ),
        (
            "vxlan from unknown host dropped",
            vx("10.99.0.3", VXLAN_PORT, 0x08, 100, &inner_to_a),
            UnderlayVerdict::Drop(DropReason::UnknownPeer),
        ),
        (
            "vxlan with unknown vni dropped",
            vx("10.99.0.2", VXLAN_PORT, 0x08, 999, &inner_to_a),
            UnderlayVerdict::Drop(DropReason::UnknownVni),
        ),
        (
            "vni 0 (no network's) from a peer dropped",
            vx("10.99.0.2", VXLAN_PORT, 0x08, 0, &inner_to_a),
            UnderlayVerdict::Drop(DropReason::UnknownVni),
        ),
        (
            // The key of a free route and peer slot: (VNI 0, 0.0.0.0).
            "vni 0 from 0.0.0.0 to 0.0.0.0 (a free slot's key) dropped",
            vx(
                "0.0.0.0",
                VXLAN_PORT,
                0x08,
                0,
                &ipv4_udp_frame(MAC_A, MAC_C, ip("0.0.0.0"), ip("0.0.0.0"), 7777),
            ),
            UnderlayVerdict::Drop(DropReason::UnknownVni),
        ),
        (
            "vni the peer may not send dropped",
            vx("10.99.0.2", VXLAN_PORT, 0x08, 200, &inner_to_a),
            UnderlayVerdict::Drop(DropReason::UnknownPeer),
        ),
        (
            "vxlan without I flag dropped",
            vx("10.99.0.2", VXLAN_PORT, 0x00, 100, &inner_to_a),
            UnderlayVerdict::Drop(DropReason::VxlanNoIFlag),
        ),
        (
            "inner destination unknown dropped",
            vx(
                "10.99.0.2",
                VXLAN_PORT,
                0x08,
                100,
                &ipv4_udp_frame(MAC_A, MAC_C, ip("10.0.1.4"), ip("10.0.1.77"), 1),
            ),
            UnderlayVerdict::Drop(DropReason::UnknownInnerDest),
        ),
        (
            "inner destination remote dropped",
            vx(
                "10.99.0.2",
                VXLAN_PORT,
                0x08,
                100,
                &ipv4_udp_frame(MAC_D, MAC_C, ip("10.0.1.4"), ip("10.0.1.5"), 1),
            ),
            UnderlayVerdict::Drop(DropReason::UnknownInnerDest),
        ),
        (
            "inner arp dropped",
            vx("10.99.0.2", VXLAN_PORT, 0x08, 100, &{
                let mut f = eth([0xff; 6], MAC_C, ETH_P_ARP);
                f.extend(arp(1, MAC_C, ip("10.0.1.4"), [0; 6], a));
                f
            }),
            UnderlayVerdict::Drop(DropReason::InnerNotIpv4),
        ),
        (
            "truncated inner frame dropped",
            good_vxlan[..60].to_vec(),
            UnderlayVerdict::Drop(DropReason::Malformed),
        ),
        (
            "truncated vxlan header dropped",
            good_vxlan[..46].to_vec(),
            UnderlayVerdict::Drop(DropReason::Malformed),
        ),
        (
            "outer ip options to vxlan port dropped",
            outer_custom(outer(0, 6), VXLAN_PORT),
            UnderlayVerdict::Drop(DropReason::OuterIpOptions),
        ),
        (
            "outer first fragment to vxlan port dropped",
            outer_custom(outer(0x2000, 5), VXLAN_PORT),
            UnderlayVerdict::Drop(DropReason::OuterFragment),
        ),
        (
            "outer later fragment passed",
            outer_custom(outer(0x0010, 5), VXLAN_PORT),
            UnderlayVerdict::Pass,
        ),
        (
            "outer bad ihl passed to the stack",
            outer_custom(outer(0, 3), VXLAN_PORT),
            UnderlayVerdict::Pass,
        ),
        (
            "udp to another port passed",
            vx("10.99.0.2", 4790, 0x08, 100, &inner_to_a),
            UnderlayVerdict::Pass,
        ),
        (
            "vxlan to another address passed",
            vxlan_frame(
                ip("10.99.0.2"),
                ip("10.99.0.9"),
                VXLAN_PORT,
                0x08,
                100,
                &inner_to_a,
            ),
            UnderlayVerdict::Pass,
        ),
        (
            "tcp to the host passed",
            {
                let mut f = eth([2; 6], NEIGH_MAC, ETH_P_IP);
                f.extend(Ipv4::new(ip("10.99.0.2"), ip("10.99.0.1"), 6).build(&[0u8; 20]));
                f
            },
            UnderlayVerdict::Pass,
        ),
        (
            "underlay arp passed",
            {
                let mut f = eth([0xff; 6], NEIGH_MAC, ETH_P_ARP);
                f.extend(arp(1, NEIGH_MAC, ip("10.99.0.2"), [0; 6], ip("10.99.0.1")));
                f
            },
            UnderlayVerdict::Pass,
        ),
        (
            "minimal ethernet frame passed",
            vec![0xff; 14],
            UnderlayVerdict::Pass,
        ),
        (
            "icmp frag needed about our vxlan: path mtu learned, passed on",
            icmp_about("10.99.0.1", VXLAN_PORT, 1500, 1400),
            UnderlayVerdict::Learned,
        ),
        (
            "icmp frag needed about other udp passed",
            icmp_about("10.99.0.1", 53, 1500, 1400),
            UnderlayVerdict::Pass,
        ),
        (
            "icmp frag needed about another host's packet passed",
            icmp_about("10.99.0.7", VXLAN_PORT, 1500, 1400),
            UnderlayVerdict::Pass,
        ),
        (
            "icmp frag needed with an mtu no smaller than the packet passed",
            icmp_about("10.99.0.1", VXLAN_PORT, 1400, 1400),
            UnderlayVerdict::Pass,
        ),
        (
            "icmp frag needed without an mtu (pre-rfc 1191) passed",
            icmp_about("10.99.0.1", VXLAN_PORT, 1500, 0),
            UnderlayVerdict::Pass,
        ),
        (
            "truncated icmp frag needed passed",
            icmp_about("10.99.0.1", VXLAN_PORT, 1500, 1400)[..60].to_vec(),
            UnderlayVerdict::Pass,
        ),
    ];
    for (what, input, verdict) in underlay_cases {
        for prog in [Xdp, Tc] {
            let (action, counter, out) = match (verdict, prog) {
                (UnderlayVerdict::Pass, Xdp) => {
                    (XDP_PASS, Ok(Counter::UnderlayPass), Out::Unchanged)
                }
                (UnderlayVerdict::Pass, _) => {
                    (TC_ACT_OK, Ok(Counter::UnderlayPass), Out::Unchanged)
                }
                (UnderlayVerdict::Learned, Xdp) => {
                    (XDP_PASS, Ok(Counter::PathMtuLearned), Out::Unchanged)
                }
                (UnderlayVerdict::Learned, _) => {
                    (TC_ACT_OK, Ok(Counter::PathMtuLearned), Out::Unchanged)
                }
                (UnderlayVerdict::Drop(r), Xdp) => (XDP_DROP, Drop(r), Out::Any),
                (UnderlayVerdict::Drop(r), _) => (TC_ACT_SHOT, Drop(r), Out::Any),
                (UnderlayVerdict::Decap, Xdp) => (
                    XDP_REDIRECT,
                    Ok(Counter::DecapXdp),
                    Out::Bytes(decapped_xdp.clone()),
                ),
                (UnderlayVerdict::Decap, _) => (
                    TC_ACT_REDIRECT,
                    Ok(Counter::DecapTc),
                    Out::Bytes(decapped_tc.clone()),
                ),
            };
            cases.push(case(what, prog, "", input.clone(), action, counter, out));
        }
    }
    cases
}

fn check_encap(
    input: &[u8],
    out: &[u8],
    env: &Env,
    (dst_mac, remote, vni, inner_dst_mac): ([u8; 6], Ipv4Addr, u32, [u8; 6]),
) -> Result<(), String> {
    let want_len = input.len() + 50;
    if out.len() != want_len {
        return Err(format!("length {} != {want_len}", out.len()));
    }
    let src_mac = if dst_mac == [0; 6] {
        [0; 6]
    } else {
        env.underlay_mac
    };
    let mut problems = Vec::new();
    let mut expect = |what: &str, got: &[u8], want: &[u8]| {
        if got != want {
            problems.push(format!("{what}: {got:02x?} != {want:02x?}"));
        }
    };
    expect("outer dst mac", &out[0..6], &dst_mac);
    expect("outer src mac", &out[6..12], &src_mac);
    expect("outer ethertype", &out[12..14], &[0x08, 0x00]);
    let ip_hdr = &out[14..34];
    expect("ip version/ihl", &ip_hdr[0..1], &[0x45]);
    expect(
        "ip total length",
        &ip_hdr[2..4],
        &((want_len - 14) as u16).to_be_bytes(),
    );
    expect("ip flags (DF)", &ip_hdr[6..8], &[0x40, 0]);
    expect("ip ttl/proto", &ip_hdr[8..10], &[64, 17]);
    expect("ip src", &ip_hdr[12..16], &ip("10.99.0.1").octets());
    expect("ip dst", &ip_hdr[16..20], &remote.octets());
    expect(
        "ip checksum verifies",
        &overlay_testkit::packet::csum(ip_hdr).to_be_bytes(),
        &[0, 0],
    );
    let sport = u16::from_be_bytes([out[34], out[35]]);
    let sport_ok = (32768..=60999).contains(&sport);
    expect(
        "udp source port in 32768-60999",
        &[u8::from(sport_ok)],
        &[1],
    );
    expect("udp dst port", &out[36..38], &VXLAN_PORT.to_be_bytes());
    expect(
        "udp length",
        &out[38..40],
        &((want_len - 34) as u16).to_be_bytes(),
    );
    expect("udp checksum (zero)", &out[40..42], &[0, 0]);
    let v = vni.to_be_bytes();
    expect("vxlan", &out[42..50], &[0x08, 0, 0, 0, v[1], v[2], v[3], 0]);
    expect("inner dst mac", &out[50..56], &inner_dst_mac);
    expect("inner src mac + rest", &out[56..], &input[6..]);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The networks `program` creates.
const VNIS: [u32; 3] = [100, 200, 300];

/// Which network a case must be counted for: the endpoint program knows
/// the sender's network from its device; the underlay programs know it once
/// they read a VXLAN header, so either is right for them.
enum NetExpect {
    On(u32),
    Nowhere,
    AtMostOne,
}

fn net_expect(case: &Case) -> NetExpect {
    match (&case.prog, case.dev) {
        (Prog::Endpoint, "ep1") => NetExpect::On(100),
        (Prog::Endpoint, "ep2") => NetExpect::On(300),
        (Prog::Endpoint, _) => NetExpect::Nowhere,
        // Only network 100 has a peer: every decapsulated packet is its.
        _ if matches!(
            case.counter,
            Expect::Ok(Counter::DecapXdp | Counter::DecapTc)
        ) =>
        {
            NetExpect::On(100)
        }
        _ => NetExpect::AtMostOne,
    }
}

/// The drop event a case must report (and nothing else): its reason, where
/// it was seen, and the addresses of the packet (the inner one for VXLAN).
fn check_event(events: &mut DropEvents, env: &Env, case: &Case) -> Result<(), String> {
    let got: Vec<DropEvent> = events.by_ref().collect();
    let Expect::Drop(reason) = case.counter else {
        return match got.as_slice() {
            [] => Ok(()),
            _ => Err(format!("drop events for a packet not dropped: {got:?}")),
        };
    };
    let [event] = got.as_slice() else {
        return Err(format!("{} drop events, want 1: {got:?}", got.len()));
    };
    let (hook, ifindex) = match case.prog {
        Prog::Endpoint => (HOOK_ENDPOINT, env.ifindex(case.dev)),
        // BPF_PROG_RUN's skb and xdp_buff sit on the loopback device.
        Prog::Xdp => (HOOK_UNDERLAY_XDP, 1),
        Prog::Tc => (HOOK_UNDERLAY_TC, 1),
    };
    if (event.reason, event.hook, event.ifindex) != (reason as u32, hook, ifindex) {
        return Err(format!(
            "event {event:?}, want reason {reason:?} hook {hook} ifindex {ifindex}"
        ));
    }
    let input = &case.input;
    let ipv4_at = |at: usize| {
        (input.len() >= at + 20 && input[at - 2..at] == [0x08, 0x00] && input[at] >> 4 == 4)
            .then(|| (&input[at + 12..at + 16], &input[at + 16..at + 20]))
    };
    let addrs = |e: &DropEvent| (e.src_ip.to_ne_bytes(), e.dst_ip.to_ne_bytes());
    let (src, dst) = addrs(event);
    let want = if event.flags & EVENT_FLAG_INNER != 0 {
        if event.peer_ip.to_ne_bytes()[..] != input[26..30] {
            return Err(format!("event {event:?}: peer is not the outer source"));
        }
        ipv4_at(VXLAN_ENCAP_LEN as usize + 14)
    } else {
        ipv4_at(14)
    };
    match want {
        Some((s, d)) if (&src[..], &dst[..]) != (s, d) => {
            Err(format!("event {event:?}: addresses are not the packet's"))
        }
        None if event.proto != 0 => Err(format!("event {event:?} for a packet that is not IPv4")),
        _ => Ok(()),
    }
}

fn run_case(
    dp: &mut Dataplane,
    env: &Env,
    events: &mut DropEvents,
    case: &Case,
) -> Result<(), String> {
    events.drain();
    let before = dp.counters().map_err(|e| e.to_string())?;
    let net_before = VNIS
        .iter()
        .map(|v| dp.network_counters(*v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; case.input.len() + 256];
    // __sk_buff up to and including `ifindex` (offset 40): the sender veth.
    let mut ctx = [0u8; 44];
    let ctx_in;
    let result = {
        let mut opts = TestRunOptions {
            data_in: Some(&case.input),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        };
        match case.prog {
            Prog::Endpoint => {
                ctx[40..44].copy_from_slice(&env.ifindex(case.dev).to_ne_bytes());
                ctx_in = ctx;
                opts.ctx_in = Some(&ctx_in);
                dp.tc_program(overlay_common::programs::ENDPOINT_INGRESS)
                    .map_err(|e| e.to_string())?
                    .test_run(opts)
            }
            Prog::Tc => dp
                .tc_program(overlay_common::programs::UNDERLAY_TC)
                .map_err(|e| e.to_string())?
                .test_run(opts),
            Prog::Xdp => dp.xdp_program().map_err(|e| e.to_string())?.test_run(opts),
        }
    }
    .map_err(|e| format!("test_run: {e:?}"))?;
    if result.return_value != case.action {
        let delta = dp.counters().map_err(|e| e.to_string())?.since(&before);
        let moved: Vec<&str> = delta
            .outcomes
            .iter()
            .chain(delta.drops.iter())
            .filter(|(_, v)| v.packets != 0)
            .map(|(k, _)| *k)
            .collect();
        return Err(format!(
            "action {} != {} (counted: {moved:?})",
            result.return_value, case.action
        ));
    }
    let out = &out[..result.data_size_out as usize];
    match &case.out {
        Out::Any => {}
        Out::Unchanged if out != case.input.as_slice() => {
            return Err(format!("output changed: {out:02x?}"));
        }
        Out::Unchanged => {}
        Out::Bytes(want) if out != want.as_slice() => {
            // Long frames: from the first difference, a bounded window.
            let at = out.iter().zip(want).take_while(|(a, b)| a == b).count();
            let window = |b: &[u8]| b[at.min(b.len())..b.len().min(at + 48)].to_vec();
            return Err(format!(
                "output ({} bytes, want {}) differs from byte {at}\n  got  {:02x?}\n  want {:02x?}",
                out.len(),
                want.len(),
                window(out),
                window(want)
            ));
        }
        Out::Bytes(_) => {}
        Out::Encap {
            dst_mac,
            remote,
            vni,
            inner_dst_mac,
        } => {
            check_encap(
                &case.input,
                out,
                env,
                (*dst_mac, *remote, *vni, *inner_dst_mac),
            )?;
        }
    }
    let delta = dp.counters().map_err(|e| e.to_string())?.since(&before);
    let (name, counted) = match case.counter {
        Expect::Ok(c) => (c.name(), delta.outcome(c)),
        Expect::Drop(r) => (r.name(), delta.drop(r)),
    };
    if counted.packets != 1 {
        return Err(format!(
            "counter {name} moved by {} packets, want 1",
            counted.packets
        ));
    }
    let others: Vec<String> = delta
        .outcomes
        .iter()
        .chain(delta.drops.iter())
        .filter(|(k, v)| **k != name && v.packets != 0)
        .map(|(k, v)| format!("{k}+{}", v.packets))
        .collect();
    if !others.is_empty() {
        return Err(format!("other counters moved: {}", others.join(", ")));
    }
    let mut moved = Vec::new();
    for (vni, b) in VNIS.iter().zip(&net_before) {
        let d = dp
            .network_counters(*vni)
            .map_err(|e| e.to_string())?
            .since(b);
        for (k, v) in d.outcomes.iter().chain(d.drops.iter()) {
            if v.packets != 0 {
                moved.push((*vni, *k, v.packets));
            }
        }
    }
    let ok = match (net_expect(case), moved.as_slice()) {
        (NetExpect::Nowhere | NetExpect::AtMostOne, []) => true,
        (NetExpect::On(want), [(vni, k, 1)]) => *vni == want && *k == name,
        (NetExpect::AtMostOne, [(_, k, 1)]) => *k == name,
        _ => false,
    };
    if !ok {
        return Err(format!("per-network counters moved: {moved:?}"));
    }
    check_event(events, env, case)
}

#[test]
fn verdict_table() {
    if !require_root("verdict_table") {
        return;
    }
    let (env, pins, mut dp) = programmed("pr");
    let mut events = DropEvents::open(&pins.0).expect("drop events");
    let mut cases = cases(&env);
    cases.extend(dns_cases());
    let failures: Vec<String> = env
        .host
        .ns
        .run(|| {
            cases
                .iter()
                .filter_map(|c| {
                    run_case(&mut dp, &env, &mut events, c)
                        .err()
                        .map(|e| format!("{:?} {}: {e}", c.prog, c.what))
                })
                .collect()
        })
        .expect("enter netns");
    assert_no_failures(&failures, cases.len());
}

#[test]
fn encap_source_port_follows_the_flow() {
    if !require_root("encap_source_port_follows_the_flow") {
        return;
    }
    let (env, _pins, mut dp) = programmed("sp");
    // A UDP frame from A to C with source port `sport`, `ihl` header words
    // and the flags/offset field `frags`.
    let frame = |sport: u16, ihl: u8, frags: u16| {
        let mut f = eth(MAC_C, MAC_A, ETH_P_IP);
        let mut ip4 = Ipv4::new(ip("10.0.1.2"), ip("10.0.1.4"), 17);
        ip4.ihl = ihl;
        ip4.frags = frags;
        f.extend(ip4.build(&udp(sport, 5555, &[0u8; 32])));
        f
    };
    let outer_sport = |dp: &mut Dataplane, frame: &[u8]| -> u16 {
        let out = encap_from_a(dp, &env, frame);
        u16::from_be_bytes([out[34], out[35]])
    };
    env.host
        .ns
        .run(|| {
            let flows: Vec<u16> = (1000..1008).collect();
            let plain: Vec<u16> = flows
                .iter()
                .map(|p| outer_sport(&mut dp, &frame(*p, 5, 0)))
                .collect();
            for (p, want) in flows.iter().zip(&plain) {
                assert_eq!(
                    outer_sport(&mut dp, &frame(*p, 5, 0)),
                    *want,
                    "flow {p} keeps its source port"
                );
                // IP options move the ports (read through the helper then);
                // the flow, and so its port, is the same.
                assert_eq!(
                    outer_sport(&mut dp, &frame(*p, 6, 0)),
                    *want,
                    "flow {p} with IP options"
                );
            }
            let distinct: std::collections::BTreeSet<u16> = plain.iter().copied().collect();
            assert!(
                distinct.len() >= 4,
                "8 flows should spread over source ports: {plain:?}"
            );
            // Fragments hash without ports, so all of a datagram's pieces
            // (only the first has ports) take one path.
            let first_fragments: std::collections::BTreeSet<u16> = flows
                .iter()
                .map(|p| outer_sport(&mut dp, &frame(*p, 5, 0x2000)))
                .collect();
            assert_eq!(
                first_fragments.len(),
                1,
                "first fragments of different ports: {first_fragments:?}"
            );
        })
        .expect("enter netns");
}

/// Runs the endpoint program on `frame` sent by A (`ep1`), checks that it
/// was encapsulated and redirected, and returns the output frame.
fn encap_from_a(dp: &mut Dataplane, env: &Env, frame: &[u8]) -> Vec<u8> {
    let run = dp
        .run_endpoint(env.ifindex("ep1"), frame)
        .expect("test_run");
    assert_eq!(run.action, TC_ACT_REDIRECT, "encap");
    run.out
}

/// A network's counters start from zero, also in the counter slot of a
/// network removed before it; the host totals keep counting.
#[test]
fn network_counters_start_from_zero_in_a_reused_slot() {
    if !require_root("network_counters_start_from_zero_in_a_reused_slot") {
        return;
    }
    let (env, _pins, mut dp) = programmed("ns");
    let frame = ipv4_udp_frame(MAC_C, MAC_A, ip("10.0.1.2"), ip("10.0.1.4"), 5555);
    env.host
        .ns
        .run(|| encap_from_a(&mut dp, &env, &frame))
        .expect("enter netns");
    let encaps = |c: &overlay_user::dataplane::Counters| c.outcome(Counter::Encap).packets;
    assert_eq!(encaps(&dp.network_counters(100).expect("100")), 1);
    assert_eq!(encaps(&dp.network_counters(200).expect("200")), 0);

    // Network 200 has no endpoints: remove it and add another, which takes
    // its slot (the lowest free); A's packet counted on 100 only.
    dp.remove_network(200).expect("remove 200");
    dp.add_network(&Network {
        vni: 400,
        subnet: "10.0.4.0/24".parse().expect("subnet"),
        gateway: Some(ip("10.0.4.1")),
        internal: false,
    })
    .expect("add 400");
    // Network 100 goes, and 500 takes its slot: zero, not A's packet.
    for dev in [env.ifindex("ep1"), 4242] {
        dp.remove_local_endpoint(dev).expect("endpoint on 100");
    }
    dp.remove_network(100).expect("remove 100");
    dp.add_network(&Network {
        vni: 500,
        subnet: "10.0.5.0/24".parse().expect("subnet"),
        gateway: Some(ip("10.0.5.1")),
        internal: false,
    })
    .expect("add 500");
    let fresh = dp.network_counters(500).expect("500");
    assert!(
        fresh
            .outcomes
            .values()
            .chain(fresh.drops.values())
            .all(|v| v.packets == 0),
        "a reused slot starts from zero: {fresh:?}"
    );
    assert_eq!(
        encaps(&dp.counters().expect("host")),
        1,
        "host totals keep it"
    );
    assert!(matches!(
        dp.network_counters(100),
        Err(overlay_user::dataplane::DataplaneError::UnknownNetwork(100))
    ));
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

/// Two endpoints whose interfaces share the direct-mapped slot (ifindex
/// low bits) are each known as themselves, the slot passes on when its
/// holder goes, and a removed endpoint's interface is unknown at once.
#[test]
fn endpoints_sharing_a_slot_stay_apart() {
    if !require_root("endpoints_sharing_a_slot_stay_apart") {
        return;
    }
    let (env, pins, mut dp) = programmed("sl");
    let a_if = env.ifindex("ep1");
    let z_if = a_if + overlay_common::capacity::ENDPOINT_SLOTS;
    env.host
        .ns
        .sh(&format!(
            "ip link add epz index {z_if} type veth peer name epzp"
        ))
        .expect("a veth at a colliding ifindex");
    env.host.ns.sh("ip link set epz up").expect("up");
    let mac_z = [0x02, 0x42, 10, 0, 2, 5];
    let z = LocalEndpoint {
        vni: 200,
        ip: ip("10.0.2.5"),
        mac: MacAddr(mac_z),
        host_ifindex: z_if,
        host_mac: MacAddr(HOST_MAC),
    };
    dp.add_local_endpoint(&z).expect("Z");
    // Z is on 200: C (100) is across the isolation boundary; A's own
    // traffic encapsulates to C.
    let z_to_c = ipv4_udp_frame(MAC_C, mac_z, ip("10.0.2.5"), ip("10.0.1.4"), 5555);
    let a_to_c = ipv4_udp_frame(MAC_C, MAC_A, ip("10.0.1.2"), ip("10.0.1.4"), 5555);
    let a_from_z = a_to_c.clone();
    let check = |dp: &mut Dataplane, when: &str| {
        env.host
            .ns
            .run(|| {
                assert_eq!(
                    endpoint_verdict(dp, z_if, &z_to_c),
                    "drop_isolation",
                    "{when}: Z"
                );
                assert_eq!(
                    endpoint_verdict(dp, z_if, &a_from_z),
                    "drop_spoofed",
                    "{when}: A's addresses from Z"
                );
            })
            .expect("enter netns");
    };
    let a_encaps = |dp: &mut Dataplane, when: &str| {
        env.host
            .ns
            .run(|| assert_eq!(endpoint_verdict(dp, a_if, &a_to_c), "encap", "{when}: A"))
            .expect("enter netns");
    };
    check(&mut dp, "A holds the slot");
    a_encaps(&mut dp, "A holds the slot");
    // The program reads A's slot under its sequence lock: a slot being
    // rewritten (odd) is left for the hash map; a stable one is believed,
    // so one poisoned with Z's network and addresses makes A a spoofer.
    let mut ep_slots: aya::maps::Array<_, EndpointSlot> =
        aya::maps::Array::try_from(aya::maps::Map::Array(
            aya::maps::MapData::from_pin(pins.0.join("maps").join(names::ENDPOINT_SLOTS))
                .expect("pinned endpoint slots"),
        ))
        .expect("endpoint slots");
    let index = endpoint_slot(a_if);
    let held = ep_slots.get(&index, 0).expect("A's slot");
    assert_eq!(held.ifindex, a_if, "A holds its slot");
    assert_eq!(held.seq & SLOT_SEQ_WRITING, 0, "A's slot is stable");
    let poisoned = EndpointSlot {
        info: EndpointInfo {
            vni: 200,
            ip: u32::from(ip("10.0.2.5")).to_be(),
            mac: mac_z,
            ..held.info
        },
        ..held
    };
    ep_slots
        .set(
            index,
            &EndpointSlot {
                seq: held.seq | SLOT_SEQ_WRITING,
                ..poisoned
            },
            0,
        )
        .expect("an odd slot");
    a_encaps(&mut dp, "A's slot odd: read by hash");
    ep_slots.set(index, &poisoned, 0).expect("a poisoned slot");
    env.host
        .ns
        .run(|| {
            assert_eq!(
                endpoint_verdict(&mut dp, a_if, &a_to_c),
                "drop_spoofed",
                "a stable slot is what the program reads"
            );
        })
        .expect("enter netns");
    ep_slots.set(index, &held, 0).expect("A's slot back");
    // A goes: Z takes the slot; A's interface is unknown at once.
    dp.remove_local_endpoint(a_if).expect("remove A");
    check(&mut dp, "Z holds the slot");
    env.host
        .ns
        .run(|| {
            assert_eq!(
                endpoint_verdict(&mut dp, a_if, &a_to_c),
                "drop_unknown_endpoint",
                "a removed endpoint"
            );
        })
        .expect("enter netns");
    // A comes back and is found by hash, Z keeps the slot.
    dp.add_local_endpoint(&LocalEndpoint {
        vni: 100,
        ip: ip("10.0.1.2"),
        mac: MacAddr(MAC_A),
        host_ifindex: a_if,
        host_mac: MacAddr(HOST_MAC),
    })
    .expect("A again");
    check(&mut dp, "A back");
    a_encaps(&mut dp, "A back, by hash");
    dp.remove_local_endpoint(z_if).expect("remove Z");
    env.host
        .ns
        .run(|| {
            assert_eq!(
                endpoint_verdict(&mut dp, z_if, &z_to_c),
                "drop_unknown_endpoint",
                "a removed endpoint"
            );
        })
        .expect("enter netns");
    a_encaps(&mut dp, "Z gone, A takes the slot");
}

/// The kernel id of map `name` pinned under `pins`.
fn pinned_map_id(pins: &PinDir, name: &str) -> u32 {
    aya::maps::MapData::from_pin(pins.0.join("maps").join(name))
        .and_then(|m| m.info())
        .map(|i| i.id())
        .unwrap_or_else(|e| panic!("map {name}: {e}"))
}

/// The program pinned link `name` runs: its id and the maps it uses.
fn linked_program(pins: &PinDir, name: &str) -> (u32, Vec<u32>) {
    let link = aya::programs::links::FdLink::from(
        aya::programs::links::PinnedLink::from_pin(pins.0.join("links").join(name))
            .unwrap_or_else(|e| panic!("link {name}: {e}")),
    );
    let id = link.info().expect("link info").program_id();
    let info = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .unwrap_or_else(|| panic!("link {name}'s program {id} is loaded"));
    (id, info.map_ids().expect("map ids").unwrap_or_default())
}

/// An upgrade that replaces slot arrays (a new layout) moves the programs
/// already attached onto the new maps: a program keeps the maps it was
/// loaded with, so otherwise an endpoint's veth would go on reading a slot
/// array nobody writes. Pins of another layout are dropped and made anew,
/// filled from their hash maps; each link keeps its identity (updated in
/// place); a load of the same build moves nothing.
#[test]
fn attached_programs_move_onto_replaced_slot_arrays() {
    if !require_root("attached_programs_move_onto_replaced_slot_arrays") {
        return;
    }
    let (env, pins, mut dp) = programmed("up");
    let (a_if, ul_if, xdp_if) = (env.ifindex("ep1"), env.ifindex("ul0"), env.ifindex("ep2"));
    env.host
        .ns
        .run(|| {
            dp.attach_endpoint(a_if).expect("endpoint program");
            dp.attach_underlay(ul_if, DecapMode::Tc).expect("tc decap");
            dp.attach_underlay(xdp_if, DecapMode::XdpGeneric)
                .expect("xdp decap");
        })
        .expect("enter netns");
    // Each link and the slot arrays its program reads.
    let links = [
        (
            format!("endpoint-{a_if}"),
            &[names::ENDPOINT_SLOTS, names::ROUTE_SLOTS][..],
        ),
        (format!("underlay-{ul_if}"), &[names::ROUTE_SLOTS][..]),
        (format!("underlay-{xdp_if}"), &[names::ROUTE_SLOTS][..]),
    ];
    let replaced = [names::ENDPOINT_SLOTS, names::ROUTE_SLOTS];
    let before: Vec<u32> = replaced.iter().map(|n| pinned_map_id(&pins, n)).collect();
    for (name, uses) in &links {
        let maps = linked_program(&pins, name).1;
        for map in *uses {
            assert!(
                maps.contains(&pinned_map_id(&pins, map)),
                "{name} uses the pinned {map}"
            );
        }
    }
    drop(dp);

    // What an older build left: the slot arrays with another layout (here
    // another map's: 4-byte values, not mmapable) under their names.
    let other = pins.0.join("maps").join(names::HOST_GENERATIONS);
    let other_id = pinned_map_id(&pins, names::HOST_GENERATIONS);
    for name in replaced {
        let pin = pins.0.join("maps").join(name);
        std::fs::remove_file(&pin).expect("unpin a slot array");
        aya::maps::MapData::from_pin(&other)
            .expect("another map")
            .pin(&pin)
            .expect("pin it as the slot array");
    }

    let mut dp = Dataplane::load(&pins.0).expect("load over an older layout");
    let after: Vec<u32> = replaced.iter().map(|n| pinned_map_id(&pins, n)).collect();
    for ((name, old), new) in replaced.iter().zip(&before).zip(&after) {
        assert!(
            new != old && *new != other_id,
            "{name} is made anew: {old} -> {new}"
        );
    }
    let open = |name: &str| {
        aya::maps::Map::Array(
            aya::maps::MapData::from_pin(pins.0.join("maps").join(name)).expect("slot array"),
        )
    };
    let ep_slots: aya::maps::Array<_, EndpointSlot> =
        aya::maps::Array::try_from(open(names::ENDPOINT_SLOTS)).expect("endpoint slots");
    let held = ep_slots.get(&endpoint_slot(a_if), 0).expect("A's slot");
    assert_eq!(
        (held.ifindex, held.seq & SLOT_SEQ_WRITING),
        (a_if, 0),
        "endpoint slots filled from the hash map"
    );
    let route_slots: aya::maps::Array<_, RouteSlot> =
        aya::maps::Array::try_from(open(names::ROUTE_SLOTS)).expect("route slots");
    let c = RouteKey {
        vni: 100,
        ip: u32::from(ip("10.0.1.4")).to_be(),
    };
    assert_eq!(
        route_slots.get(&route_slot(&c), 0).expect("C's slot").key,
        c,
        "route slots filled from the hash map"
    );
    let mut moved = Vec::new();
    for (name, uses) in &links {
        let (id, maps) = linked_program(&pins, name);
        for map in *uses {
            assert!(
                maps.contains(&pinned_map_id(&pins, map)),
                "{name} moved onto the new {map}: {maps:?}"
            );
        }
        assert!(
            !before.iter().any(|old| maps.contains(old)),
            "{name} left the replaced maps: {maps:?}"
        );
        assert!(dp.links().contains(name), "{name} still pinned");
        moved.push(id);
    }
    env.host
        .ns
        .run(|| {
            let a_to_c = ipv4_udp_frame(MAC_C, MAC_A, ip("10.0.1.2"), ip("10.0.1.4"), 5555);
            assert_eq!(endpoint_verdict(&mut dp, a_if, &a_to_c), "encap", "A");
        })
        .expect("enter netns");
    drop(dp);

    // The same build again: every link keeps the program it runs.
    let dp = Dataplane::load(&pins.0).expect("load again");
    for ((name, _), id) in links.iter().zip(&moved) {
        assert_eq!(linked_program(&pins, name).0, *id, "{name} left alone");
    }
    drop(dp);
}

/// The pinned direct-mapped slot arrays, as the programs read them.
fn slot_maps(
    pins: &PinDir,
) -> (
    aya::maps::Array<aya::maps::MapData, RouteSlot>,
    aya::maps::Array<aya::maps::MapData, PeerSlot>,
) {
    let open = |name: &str| {
        aya::maps::Map::Array(
            aya::maps::MapData::from_pin(pins.0.join("maps").join(name)).expect("pinned slots"),
        )
    };
    (
        aya::maps::Array::try_from(open(names::ROUTE_SLOTS)).expect("route slots"),
        aya::maps::Array::try_from(open(names::PEER_SLOTS)).expect("peer slots"),
    )
}

/// Routes and peers behind their direct-mapped slots: a route whose slot
/// another network's route holds is found by hash (its own host and MAC,
/// never the holder's); a slot is taken only while its sequence is even
/// and only for its own key; a freed slot goes to the next route written
/// there; a peer is admitted from its slot or by hash, and a revoked one at
/// once; slot maps made next to older pins are filled on load.
#[test]
fn routes_and_peers_sharing_slots_stay_apart() {
    if !require_root("routes_and_peers_sharing_slots_stay_apart") {
        return;
    }
    let (env, pins, mut dp) = programmed("rs");
    let (mut route_slots, mut peer_slots) = slot_maps(&pins);
    dp.add_network(&Network {
        vni: 700,
        subnet: "10.70.0.0/16".parse().expect("subnet"),
        gateway: Some(ip("10.70.0.1")),
        internal: false,
    })
    .expect("net 700");
    // K (network 700) and Y (A's network 100) share a slot.
    let key = |vni, a: Ipv4Addr| RouteKey {
        vni,
        ip: u32::from(a).to_be(),
    };
    let (k, y) = (10..250u8)
        .flat_map(|last| {
            let y = Ipv4Addr::new(10, 0, 1, last);
            let want = route_slot(&key(100, y));
            (2..=u16::MAX - 1)
                .map(|n| Ipv4Addr::new(10, 70, (n >> 8) as u8, n as u8))
                .find(|k| route_slot(&key(700, *k)) == want)
                .map(|k| (k, y))
        })
        .next()
        .expect("a colliding pair");
    let slot = route_slot(&key(100, y));
    let (mac_k, mac_y) = ([0x02, 0x42, 0x70, 0, 0, 1], [0x02, 0x42, 0x0a, 0, 1, 0x77]);
    let remote = |vni, addr, mac, host: &str| RemoteEndpoint {
        vni,
        ip: addr,
        mac: MacAddr(mac),
        host: ip(host),
    };
    dp.add_remote_endpoint(&remote(700, k, mac_k, "10.98.1.1"))
        .expect("K");
    dp.add_remote_endpoint(&remote(100, y, mac_y, "10.99.0.2"))
        .expect("Y");
    let held = |slots: &aya::maps::Array<aya::maps::MapData, RouteSlot>| {
        let s = slots.get(&slot, 0).expect("slot");
        assert_eq!(s.seq % 2, 0, "a stable slot");
        (s.key.vni != 0).then(|| (s.key.vni, Ipv4Addr::from(u32::from_be(s.key.ip))))
    };
    assert_eq!(
        held(&route_slots),
        Some((700, k)),
        "the first route written holds the slot"
    );
    let to_y = ipv4_udp_frame(MAC_C, MAC_A, ip("10.0.1.2"), y, 5555);
    let y_goes_to = |dp: &mut Dataplane, when: &str| -> ([u8; 6], Ipv4Addr) {
        let out = env
            .host
            .ns
            .run(|| encap_from_a(dp, &env, &to_y))
            .expect("enter netns");
        let inner_dst: [u8; 6] = out[50..56].try_into().expect("mac");
        let outer_dst = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
        assert_eq!(
            u32::from_be_bytes([0, out[46], out[47], out[48]]),
            100,
            "{when}: the sender's VNI"
        );
        (inner_dst, outer_dst)
    };
    assert_eq!(
        y_goes_to(&mut dp, "K holds the slot"),
        (mac_y, ip("10.99.0.2"))
    );

    // K goes: its slot is freed, Y still found by hash, K no longer routed.
    dp.remove_remote_endpoint(700, k).expect("remove K");
    assert_eq!(held(&route_slots), None, "freed with its route");
    assert_eq!(y_goes_to(&mut dp, "slot free"), (mac_y, ip("10.99.0.2")));
    // Y moves (new MAC): written again, it takes the free slot.
    let mac_y2 = [0x02, 0x42, 0x0a, 0, 1, 0x78];
    dp.add_remote_endpoint(&remote(100, y, mac_y2, "10.99.0.2"))
        .expect("Y moves");
    assert_eq!(held(&route_slots), Some((100, y)), "Y takes the free slot");
    assert_eq!(
        y_goes_to(&mut dp, "Y holds the slot"),
        (mac_y2, ip("10.99.0.2"))
    );

    // The programs read the slot under its sequence: a slot being written
    // (odd) is left for the hash map, a stable one is taken as it is.
    let stable = route_slots.get(&slot, 0).expect("slot");
    let poisoned = RouteSlot {
        route: RouteValue {
            mac: [0x02, 0xba, 0xd0, 0, 0, 1],
            ..stable.route
        },
        ..stable
    };
    route_slots
        .set(
            slot,
            &RouteSlot {
                seq: stable.seq + 1,
                ..poisoned
            },
            0,
        )
        .expect("odd");
    assert_eq!(
        y_goes_to(&mut dp, "slot being written"),
        (mac_y2, ip("10.99.0.2")),
        "an odd slot is not read"
    );
    route_slots
        .set(
            slot,
            &RouteSlot {
                seq: stable.seq + 2,
                ..poisoned
            },
            0,
        )
        .expect("even");
    assert_eq!(
        y_goes_to(&mut dp, "stable slot").0,
        poisoned.route.mac,
        "the programs do read the slot"
    );
    // Writing the route again repairs the slot.
    dp.add_remote_endpoint(&remote(100, y, mac_y2, "10.99.0.2"))
        .expect("Y again");
    assert_eq!(y_goes_to(&mut dp, "rewritten"), (mac_y2, ip("10.99.0.2")));

    // Peers: C's host (10.99.0.2) holds its slot; decap to A.
    let from = |host: &str| {
        let inner = ipv4_udp_frame(MAC_A, MAC_C, ip("10.0.1.4"), ip("10.0.1.2"), 7777);
        vxlan_frame(ip(host), ip("10.99.0.1"), VXLAN_PORT, 0x08, 100, &inner)
    };
    let decap = |dp: &mut Dataplane, frame: &[u8]| -> u32 {
        let mut out = vec![0u8; frame.len()];
        env.host
            .ns
            .run(|| {
                dp.xdp_program()
                    .expect("xdp")
                    .test_run(TestRunOptions {
                        data_in: Some(frame),
                        data_out: Some(&mut out),
                        ..TestRunOptions::default()
                    })
                    .expect("test_run")
                    .return_value
            })
            .expect("enter netns")
    };
    let peer = |host: &str| PeerKey {
        ip: u32::from(ip(host)).to_be(),
        vni: 100,
    };
    let c_slot = peer_slot(&peer("10.99.0.2"));
    assert_eq!(
        peer_slots.get(&c_slot, 0).expect("slot").key,
        peer("10.99.0.2")
    );
    assert_eq!(decap(&mut dp, &from("10.99.0.2")), XDP_REDIRECT, "a peer");
    assert_eq!(decap(&mut dp, &from("10.99.0.9")), XDP_DROP, "not a peer");
    // A stable slot is taken for its own key only; an odd one not at all.
    let stray = peer_slot(&peer("10.99.0.9"));
    peer_slots
        .set(
            stray,
            &PeerSlot {
                seq: 1,
                ..PeerSlot::holding(peer("10.99.0.9"))
            },
            0,
        )
        .expect("odd");
    assert_eq!(decap(&mut dp, &from("10.99.0.9")), XDP_DROP, "odd slot");
    peer_slots
        .set(
            stray,
            &PeerSlot {
                seq: 2,
                ..PeerSlot::holding(peer("10.99.0.9"))
            },
            0,
        )
        .expect("even");
    assert_eq!(
        decap(&mut dp, &from("10.99.0.9")),
        XDP_REDIRECT,
        "read from the slot"
    );
    peer_slots.set(stray, &PeerSlot::FREE, 0).expect("free");
    // C's slot taken from it: still a peer, by hash.
    peer_slots.set(c_slot, &PeerSlot::FREE, 0).expect("free");
    assert_eq!(
        decap(&mut dp, &from("10.99.0.2")),
        XDP_REDIRECT,
        "found by hash"
    );
    // A load that makes the slot maps anew fills them from the hash maps.
    drop((route_slots, peer_slots));
    drop(dp);
    for name in [names::ROUTE_SLOTS, names::PEER_SLOTS] {
        std::fs::remove_file(pins.0.join("maps").join(name)).expect("unpin");
    }
    let mut dp = Dataplane::load(&pins.0).expect("reload");
    let (route_slots, peer_slots) = slot_maps(&pins);
    assert_eq!(held(&route_slots), Some((100, y)), "refilled");
    assert_eq!(
        peer_slots.get(&c_slot, 0).expect("slot").key,
        peer("10.99.0.2")
    );
    assert_eq!(y_goes_to(&mut dp, "reloaded"), (mac_y2, ip("10.99.0.2")));
    // Revoked: at once, slot and hash.
    dp.remove_peer(ip("10.99.0.2"), 100).expect("revoke");
    assert_eq!(
        peer_slots.get(&c_slot, 0).expect("slot").key.vni,
        0,
        "slot freed"
    );
    assert_eq!(decap(&mut dp, &from("10.99.0.2")), XDP_DROP, "revoked");
}

/// A drop flood reports at most a burst and then the per-CPU rate; the
/// rest is counted as rate-limited, and what was reported is in the ring.
#[test]
fn drop_reports_are_rate_limited() {
    if !require_root("drop_reports_are_rate_limited") {
        return;
    }
    let (env, pins, mut dp) = programmed("rl");
    // From A's veth with a source address that is not A's.
    let forged = ipv4_udp_frame(MAC_C, MAC_A, ip("10.0.1.99"), ip("10.0.1.4"), 5555);
    let ctx = env.host.skb_ctx("ep1");
    let flood = |dp: &mut Dataplane, n: u64| {
        env.host
            .ns
            .run(|| {
                // The budget is per CPU: one CPU spends it.
                pin_to_current_cpu();
                let started = std::time::Instant::now();
                let mut out = vec![0u8; forged.len() + 64];
                for _ in 0..n {
                    let r = dp
                        .tc_program(overlay_common::programs::ENDPOINT_INGRESS)
                        .expect("program")
                        .test_run(TestRunOptions {
                            data_in: Some(&forged),
                            data_out: Some(&mut out),
                            ctx_in: Some(&ctx),
                            ..TestRunOptions::default()
                        })
                        .expect("test_run");
                    assert_eq!(r.return_value, TC_ACT_SHOT, "spoofed source dropped");
                }
                started.elapsed()
            })
            .expect("enter netns")
    };
    // No monitor: nothing reported, nothing tallied.
    flood(&mut dp, 10);
    assert_eq!(
        dp.monitor_tallies().expect("tallies"),
        overlay_common::MonitorState::default()
    );
    let mut events = DropEvents::open(&pins.0).expect("drop events");
    const FLOOD: u64 = 3000;
    let elapsed = flood(&mut dp, FLOOD);
    let tallies = dp.monitor_tallies().expect("tallies");
    let allowed = EVENTS_BURST + EVENTS_PER_SEC * elapsed.as_micros() as u64 / 1_000_000 + 1;
    assert!(
        (EVENTS_BURST..=allowed).contains(&tallies.sent),
        "{tallies:?} after {FLOOD} drops in {elapsed:?}: reported at most {allowed}"
    );
    assert_eq!(tallies.sent + tallies.suppressed, FLOOD, "{tallies:?}");
    assert_eq!(tallies.lost, 0, "{tallies:?}");
    assert_eq!(
        events.drain() as u64,
        tallies.sent,
        "what was reported is in the ring"
    );
    let total = dp
        .counters()
        .expect("counters")
        .drop(DropReason::Spoofed)
        .packets;
    assert_eq!(total, FLOOD + 10, "every drop is counted all the same");
    // The reader gone, reporting stops.
    drop(events);
    flood(&mut dp, 10);
    assert_eq!(dp.monitor_tallies().expect("tallies"), tallies);
}

/// Encapsulates a frame from A to C (remote host 10.99.0.2) and returns the
/// outer destination MAC.
fn encap_to_c(dp: &mut Dataplane, env: &Env) -> [u8; 6] {
    let frame = ipv4_udp_frame(MAC_C, MAC_A, ip("10.0.1.2"), ip("10.0.1.4"), 5555);
    encap_from_a(dp, env, &frame)[0..6]
        .try_into()
        .expect("6 bytes")
}

/// The encap path caches the next hop per remote host: a neighbour change
/// shows once the entry expires (`NEXTHOP_TTL_JIFFIES`, and not before,
/// which proves the lookup is skipped), a host without a resolved neighbour is never cached, and
/// setting the underlay empties the cache.
#[test]
fn next_hop_cache_follows_neighbour_changes() {
    if !require_root("next_hop_cache_follows_neighbour_changes") {
        return;
    }
    let (env, _pins, mut dp) = programmed("nh");
    let ns = &env.host.ns;
    let jiffies = || overlay_user::host::jiffies().expect("jiffies");
    let new_mac: [u8; 6] = [0x02, 0, 0, 0, 0x99, 0x77];

    ns.run(|| {
        // The cache is per CPU: the within-the-TTL check below needs its
        // runs on the CPU that filled the entry.
        pin_to_current_cpu();
        assert!(dp.next_hops().expect("cache").is_empty(), "starts empty");
        assert_eq!(encap_to_c(&mut dp, &env), NEIGH_MAC);
        let hops = dp.next_hops().expect("cache");
        let [(host, hop)] = hops.as_slice() else {
            panic!("one cached next hop expected: {hops:?}");
        };
        assert_eq!(*host, ip("10.99.0.2"));
        assert_eq!(hop.ifindex, env.ifindex("ul0"));
        assert_eq!(hop.dmac, NEIGH_MAC);
        assert_eq!(hop.smac, env.underlay_mac);
        let first_expiry = hop.expires_jiffies;
        assert!(
            first_expiry > jiffies()
                && first_expiry <= jiffies() + overlay_common::NEXTHOP_TTL_JIFFIES,
            "expires within the TTL"
        );

        // D's host has a route but no neighbour: encapsulated for
        // redirect_neigh, and not cached.
        let frame = ipv4_udp_frame(MAC_D, MAC_A, ip("10.0.1.2"), ip("10.0.1.5"), 5555);
        encap_from_a(&mut dp, &env, &frame);
        assert_eq!(
            dp.next_hops().expect("cache").len(),
            1,
            "unresolved hop cached"
        );

        env.host
            .ns
            .exec(&[
                "ip",
                "neigh",
                "replace",
                "10.99.0.2",
                "lladdr",
                "02:00:00:00:99:77",
                "dev",
                "ul0",
                "nud",
                "permanent",
            ])
            .expect("change neighbour");
        // Checked only while the entry is surely fresh (a slow `ip` on a
        // busy machine may take the whole TTL).
        let before = jiffies();
        let seen = encap_to_c(&mut dp, &env);
        if jiffies() < first_expiry && before < first_expiry {
            assert_eq!(seen, NEIGH_MAC, "within the TTL the cached MAC is used");
        }
        while jiffies() <= first_expiry {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(encap_to_c(&mut dp, &env), new_mac, "after the TTL");
        let hops = dp.next_hops().expect("cache");
        assert_eq!(hops.len(), 1);
        assert_eq!(hops[0].1.dmac, new_mac);
        assert!(hops[0].1.expires_jiffies > first_expiry, "refreshed entry");

        dp.set_underlay(&Underlay::new(env.ifindex("ul0"), ip("10.99.0.1")))
            .expect("underlay");
        assert!(dp.next_hops().expect("cache").is_empty(), "flushed");
    })
    .expect("enter netns");
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

/// A router's ICMP teaches the path MTU to one host: the encap path then
/// answers what no longer fits with ICMP (next-hop MTU 50 less), a claim
/// below `MIN_PATH_MTU` is raised to it, a larger claim does not undo a
/// smaller one in force, and setting the underlay forgets them all.
#[test]
fn a_path_mtu_learned_from_icmp_applies_to_its_host() {
    if !require_root("a_path_mtu_learned_from_icmp_applies_to_its_host") {
        return;
    }
    let (env, _pins, mut dp) = programmed("pm");
    let c = ip("10.0.1.4");
    let host_c = ProgRunHost::NEIGH_IP;
    let to_c = |len| sized_from_a(MAC_C, c, len, 5, 0x4000);
    // The endpoint program's action and output for a frame from A.
    let send = |dp: &mut Dataplane, frame: &[u8]| -> (u32, Vec<u8>) {
        let mut out = vec![0u8; frame.len() + 64];
        let ctx = env.host.skb_ctx("ep1");
        let r = dp
            .tc_program(overlay_common::programs::ENDPOINT_INGRESS)
            .expect("program")
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ctx_in: Some(&ctx),
                ..TestRunOptions::default()
            })
            .expect("test_run");
        out.truncate(r.data_size_out as usize);
        (r.return_value, out)
    };
    // Encapsulated (outer 50 bytes longer), or the advertised ICMP MTU.
    let outcome = |dp: &mut Dataplane, len: usize| -> Result<(), u16> {
        let frame = to_c(len);
        let (action, out) = send(dp, &frame);
        assert_eq!(action, TC_ACT_REDIRECT, "{len} bytes");
        if out.len() == frame.len() + 50 {
            return Ok(());
        }
        assert_eq!(out.len(), 70, "an ICMP error frame");
        assert_eq!(&out[34..36], &[3, 4], "type 3 code 4");
        Err(u16::from_be_bytes([out[40], out[41]]))
    };
    let learn = |dp: &mut Dataplane, mtu: u16| {
        let frame = router_icmp(ip("10.99.0.1"), host_c, VXLAN_PORT, 1500, mtu);
        let mut out = vec![0u8; frame.len()];
        let r = dp
            .xdp_program()
            .expect("xdp")
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                data_out: Some(&mut out),
                ..TestRunOptions::default()
            })
            .expect("test_run");
        assert_eq!(r.return_value, XDP_PASS, "passed on to the kernel");
    };
    let learned = |dp: &Dataplane| -> Vec<(Ipv4Addr, u32)> {
        dp.path_mtus()
            .expect("path mtus")
            .into_iter()
            .map(|(h, m)| (h, m.mtu))
            .collect()
    };
    env.host
        .ns
        .run(|| {
            assert_eq!(
                outcome(&mut dp, 1450),
                Ok(()),
                "the device's 1500 holds 1450"
            );
            assert_eq!(outcome(&mut dp, 1451), Err(1450));
            assert!(
                dp.next_hops()
                    .expect("hops")
                    .iter()
                    .any(|(h, _)| *h == host_c),
                "C's host cached"
            );

            learn(&mut dp, 1300);
            assert_eq!(learned(&dp), [(host_c, 1300)]);
            assert!(
                !dp.next_hops()
                    .expect("hops")
                    .iter()
                    .any(|(h, _)| *h == host_c),
                "its cached next hop dropped, to take the new MTU"
            );
            assert_eq!(outcome(&mut dp, 1400), Err(1250));
            assert_eq!(outcome(&mut dp, 1250), Ok(()));
            // Other hosts keep their own path.
            let (_, out) = send(
                &mut dp,
                &sized_from_a(MAC_F, ip("10.0.1.7"), 1351, 5, 0x4000),
            );
            assert_eq!(u16::from_be_bytes([out[40], out[41]]), 1350, "F's route");

            learn(&mut dp, 100);
            assert_eq!(learned(&dp), [(host_c, overlay_common::MIN_PATH_MTU)]);
            assert_eq!(outcome(&mut dp, 1250), Err(502));
            learn(&mut dp, 1400);
            assert_eq!(
                learned(&dp),
                [(host_c, overlay_common::MIN_PATH_MTU)],
                "a larger claim does not undo a smaller one in force"
            );

            dp.set_underlay(&Underlay::new(env.ifindex("ul0"), ip("10.99.0.1")))
                .expect("underlay");
            assert!(learned(&dp).is_empty(), "forgotten with the underlay");
            assert_eq!(outcome(&mut dp, 1450), Ok(()));
        })
        .expect("enter netns");
}
