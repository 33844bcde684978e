//! The direct-mapped slot arrays: network counters in a reused slot,
//! endpoints, routes and peers sharing slots, and attached programs moved
//! onto slot arrays an upgrade replaced.

use super::*;

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
    let mut ep_slots = slot_array::<EndpointSlot>(&pins, names::ENDPOINT_SLOTS);
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
/// place); a load of the same build moves nothing. A link whose interface
/// is gone (defunct: the kernel refuses to update it) is left as it is and
/// does not fail the load.
#[test]
fn attached_programs_move_onto_replaced_slot_arrays() {
    if !require_root("attached_programs_move_onto_replaced_slot_arrays") {
        return;
    }
    let (env, pins, mut dp) = programmed("up");
    let (a_if, ul_if, xdp_if) = (env.ifindex("ep1"), env.ifindex("ul0"), env.ifindex("ep2"));
    env.host
        .ns
        .sh("ip link add epgone type veth peer name epgonep")
        .expect("a veth to lose");
    let gone_if = env
        .host
        .ns
        .run(|| overlay_user::host::link::index_of("epgone"))
        .expect("enter netns")
        .expect("its ifindex");
    env.host
        .ns
        .run(|| {
            dp.attach_endpoint(gone_if).expect("its endpoint program");
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
    env.host
        .ns
        .sh("ip link del epgone")
        .expect("the interface goes");

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

    let mut dp = Dataplane::load(&pins.0).expect("load over an older layout, a link defunct");
    assert!(
        dp.links().contains(&format!("endpoint-{gone_if}")),
        "the defunct link is left for a repair pass"
    );
    let after: Vec<u32> = replaced.iter().map(|n| pinned_map_id(&pins, n)).collect();
    for ((name, old), new) in replaced.iter().zip(&before).zip(&after) {
        assert!(
            new != old && *new != other_id,
            "{name} is made anew: {old} -> {new}"
        );
    }
    let ep_slots = slot_array::<EndpointSlot>(&pins, names::ENDPOINT_SLOTS);
    let held = ep_slots.get(&endpoint_slot(a_if), 0).expect("A's slot");
    assert_eq!(
        (held.ifindex, held.seq & SLOT_SEQ_WRITING),
        (a_if, 0),
        "endpoint slots filled from the hash map"
    );
    let route_slots = slot_array::<RouteSlot>(&pins, names::ROUTE_SLOTS);
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

/// The pinned slot array `name`, as the programs read it.
fn slot_array<V: aya::Pod>(pins: &PinDir, name: &str) -> aya::maps::Array<aya::maps::MapData, V> {
    let data = aya::maps::MapData::from_pin(pins.0.join("maps").join(name))
        .unwrap_or_else(|e| panic!("pinned {name}: {e}"));
    aya::maps::Array::try_from(aya::maps::Map::Array(data))
        .unwrap_or_else(|e| panic!("{name} as an array: {e}"))
}

/// The pinned route and peer slot arrays.
fn slot_maps(
    pins: &PinDir,
) -> (
    aya::maps::Array<aya::maps::MapData, RouteSlot>,
    aya::maps::Array<aya::maps::MapData, PeerSlot>,
) {
    (
        slot_array(pins, names::ROUTE_SLOTS),
        slot_array(pins, names::PEER_SLOTS),
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
