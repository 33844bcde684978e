//! The verdict table's cases: DNS queries, then every verdict of the
//! endpoint, XDP underlay and TC underlay programs.

use super::*;

/// DNS queries from containers: answered in the kernel, or left to the
/// daemon's resolver on the gateway untouched.
pub(super) fn dns_cases() -> Vec<Case> {
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

pub(super) fn cases(env: &Env) -> Vec<Case> {
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
