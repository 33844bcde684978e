//! Running the verdict table: each case through its program with
//! BPF_PROG_RUN, its action, counter, output bytes and drop event checked.

use super::{
    table::{cases, dns_cases},
    *,
};

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
