//! The encap path beyond single verdicts: the flow's source port, the
//! next-hop cache, path MTUs learned from the underlay.

use super::*;

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
