//! The engine's logic without a kernel: every command undone at every
//! failing step, input refused before anything changes, the cluster view
//! applied and re-applied.

mod fakes;

use std::{collections::BTreeMap, net::Ipv4Addr, path::PathBuf, time::Duration};

use self::fakes::{FakeDatapath, FakeHost, Kernel, Shared, World};
use super::{ConnectOptions, CreateNetwork, DefaultRoute, Engine, EngineError};
use crate::{
    cluster::{ClusterView, StoredClaim},
    model::{
        AttachedMode, Claim, ClusterRecord, DecapRequest, Driver, HostInfo, MacAddr, NetworkRecord,
        ProcessRef, RuleError, Snapshot, ids,
    },
    store::Store,
};

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test address")
}

/// A fake host with a store of its own in a temporary directory.
struct Harness {
    world: Shared,
    dir: PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Harness {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ovl-engine-{}", &ids::new_id()[..16]));
        let h = Self {
            world: World::new(),
            dir,
        };
        h.run(|_| Ok(())).expect("first start");
        h
    }

    fn engine(&self) -> Result<Engine, EngineError> {
        let store = Store::open(&self.dir, Duration::ZERO)?;
        Engine::with(
            store,
            Box::new(FakeDatapath(self.world.clone())),
            Box::new(FakeHost(self.world.clone())),
        )
    }

    /// One command, committed or rolled back.
    fn run<T>(
        &self,
        f: impl FnOnce(&mut Engine) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        self.engine()?.run(f)
    }

    fn kernel(&self) -> Kernel {
        self.world.borrow().kernel.clone()
    }

    fn stored(&self) -> Snapshot {
        Store::open(&self.dir, Duration::ZERO)
            .and_then(|s| s.load())
            .expect("store")
    }

    fn changes(&self) -> usize {
        self.world.borrow().changes
    }
}

type Command = fn(&mut Engine) -> Result<(), EngineError>;
type Setup = fn(&Harness);

fn route(gateway: &str, ifname: &str) -> DefaultRoute {
    DefaultRoute {
        gateway: ip(gateway),
        ifname: ifname.into(),
    }
}

fn bridge(name: &str, subnet: &str) -> CreateNetwork {
    CreateNetwork {
        name: name.into(),
        subnets: vec![subnet.parse().expect("subnet")],
        ..CreateNetwork::default()
    }
}

fn overlay(name: &str, subnet: &str, vni: u32) -> CreateNetwork {
    CreateNetwork {
        driver: Some(Driver::Overlay),
        vni: Some(vni),
        ..bridge(name, subnet)
    }
}

/// Two networks (`front` routed, `back` internal overlay with a static
/// peer and remote endpoint), `c1` on front, `c2` on both with a live
/// process, the host attached.
fn populated(h: &Harness) {
    h.world.borrow_mut().kernel.running.insert(PROCESS);
    h.world
        .borrow_mut()
        .kernel
        .links
        .insert("eth0".into(), (2, MacAddr([2, 0, 0, 0, 0, 2])));
    h.run(|e| {
        e.create_network(&bridge("front", "10.1.0.0/24"))?;
        e.create_network(&CreateNetwork {
            internal: true,
            ..overlay("back", "10.2.0.0/24", 5000)
        })?;
        e.attach("eth0", None, DecapRequest::Tc)?;
        e.add_peer(ip("192.0.2.2"), "back")?;
        e.add_remote("back", ip("10.2.0.200"), None, ip("192.0.2.2"))?;
        e.create_container(Some("c1"), &[("front".into(), None)], &["sleep".into()])?;
        e.create_container(
            Some("c2"),
            &[
                ("front".into(), None),
                ("back".into(), Some(ip("10.2.0.9"))),
            ],
            &["sleep".into()],
        )?;
        e.set_process("c2", Some(PROCESS));
        Ok(())
    })
    .expect("setup");
}

/// `c2`'s process in `populated`.
const PROCESS: ProcessRef = ProcessRef {
    pid: 4242,
    start: 77,
};

fn empty(_: &Harness) {}

/// Docker's endpoint in the plugin tests.
const DOCKER_EP: &str = "e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1";

/// What Docker's calls for one container on a new network do, in one
/// command: pool, gateway, network, address, endpoint, join.
fn docker_network_and_join(e: &mut Engine) -> Result<(), EngineError> {
    let (pool, subnet) = e.ipam_request_pool(None)?;
    let gw = e.ipam_request_address(&pool, None, true)?;
    e.plugin_create_network(&super::PluginNetwork {
        id: id("dn"),
        subnet,
        gateway: Some(gw.addr()),
        internal: false,
        options: vec![],
        bind: None,
    })?;
    let ip = e.ipam_request_address(&pool, None, false)?;
    e.plugin_create_endpoint(&id("dn"), DOCKER_EP, ip.addr(), None)?;
    e.plugin_join(DOCKER_EP, "/var/run/docker/netns/0123456789ab")
        .map(drop)
}

fn docker_joined(h: &Harness) {
    h.run(docker_network_and_join).expect("docker setup");
}

/// Runs `command` after `setup`, failing its 1st, 2nd, ... change until it
/// succeeds. Each failure must leave the store as it was and, unless a
/// change that cannot be undone came first, the kernel as it was.
fn undone_at_every_step(what: &str, setup: Setup, command: Command) {
    let mut fully_checked = 0;
    for k in 1.. {
        let h = Harness::new();
        setup(&h);
        let (kernel, stored) = (h.kernel(), h.stored());
        {
            let mut w = h.world.borrow_mut();
            w.fail_at = Some(w.changes + k);
            w.irreversible = false;
            w.irreversible_before_failure = false;
            w.calls.clear();
        }
        let result = h.run(command);
        let (calls, partial) = {
            let mut w = h.world.borrow_mut();
            w.fail_at = None;
            (w.calls.clone(), w.irreversible_before_failure)
        };
        if result.is_ok() {
            assert!(k > 1, "{what}: changed nothing");
            assert!(
                fully_checked > 0,
                "{what}: no failure could be checked in full"
            );
            return;
        }
        assert_eq!(
            h.stored(),
            stored,
            "{what}: failing change {k} wrote the store (calls {calls:?})"
        );
        if !partial {
            assert_eq!(
                h.kernel(),
                kernel,
                "{what}: failing change {k} was not undone (calls {calls:?})"
            );
            fully_checked += 1;
        }
    }
}

#[test]
fn every_command_is_undone_at_every_failing_step() {
    let cases: &[(&str, Setup, Command)] = &[
        (
            "docker: a network, an endpoint, a join",
            empty,
            docker_network_and_join,
        ),
        ("docker: leave and delete", docker_joined, |e| {
            e.plugin_leave(DOCKER_EP)?;
            e.plugin_delete_endpoint(DOCKER_EP)?;
            e.plugin_delete_network(&id("dn"))
        }),
        ("create a bridge network", empty, |e| {
            e.create_network(&bridge("n1", "10.5.0.0/24")).map(drop)
        }),
        ("create an overlay network", populated, |e| {
            e.create_network(&CreateNetwork {
                mtu: Some(1400),
                ..overlay("n2", "10.6.0.0/24", 7000)
            })
            .map(drop)
        }),
        ("run on two networks", populated, |e| {
            e.create_container(
                Some("c3"),
                &[("front".into(), None), ("back".into(), None)],
                &[],
            )
            .map(drop)
        }),
        ("connect", populated, |e| {
            e.connect("back", "c1", ConnectOptions::default()).map(drop)
        }),
        ("disconnect", populated, |e| e.disconnect("back", "c2")),
        ("rename", populated, |e| e.rename_container("c1", "web")),
        ("disconnect the resolver's network", populated, |e| {
            e.disconnect("front", "c2")
        }),
        ("connect with aliases", populated, |e| {
            let options = ConnectOptions {
                aliases: vec!["db".into(), "primary".into()],
                ..ConnectOptions::default()
            };
            e.connect("back", "c1", options).map(drop)
        }),
        ("rm -f", populated, |e| {
            e.remove_container("c2", true).map(drop)
        }),
        ("network rm", populated, |e| {
            e.remove_container("c1", false)?;
            e.remove_container("c2", true)?;
            e.remove_networks(&["front".into(), "back".into()])
                .map(drop)
        }),
        ("network prune", populated, |e| {
            e.create_network(&bridge("spare", "10.7.0.0/24"))?;
            e.prune_networks().map(drop)
        }),
        ("peers and remotes", populated, |e| {
            e.remove_peer(ip("192.0.2.2"), "back")?;
            e.remove_remote("back", ip("10.2.0.200"))?;
            e.add_peer(ip("192.0.2.3"), "back")?;
            e.add_remote("back", ip("10.2.0.201"), None, ip("192.0.2.3"))
        }),
        ("attach and detach", populated, |e| {
            e.detach()?;
            e.attach("eth0", Some(ip("192.0.2.7")), DecapRequest::Xdp)
                .map(drop)
        }),
    ];
    for (what, setup, command) in cases {
        undone_at_every_step(what, *setup, *command);
    }
}

#[test]
fn resolv_conf_points_at_the_first_networks_gateway() {
    let h = Harness::new();
    h.world.borrow_mut().kernel.host_resolvers = vec![ip("192.0.2.53")];
    populated(&h);
    let text = h.kernel().resolv_confs["c1"].clone();
    assert!(
        text.contains("nameserver 10.1.0.1\nnameserver 192.0.2.53\n"),
        "the gateway, then the host's resolver for when no daemon runs: {text}"
    );
    let resolver = |c: &str| {
        h.kernel().resolv_confs.get(c).and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("nameserver "))
                .map(str::to_owned)
        })
    };
    assert_eq!(
        resolver("c2").as_deref(),
        Some("10.1.0.1"),
        "front's gateway"
    );
    h.run(|e| e.disconnect("front", "c2")).expect("disconnect");
    assert_eq!(resolver("c2").as_deref(), Some("10.2.0.1"), "back's now");
    h.run(|e| e.remove_container("c2", true).map(drop))
        .expect("rm");
    assert_eq!(resolver("c2"), None, "gone with the container");
    let err = h
        .run(|e| {
            let options = ConnectOptions {
                aliases: vec!["ok".into(), "not ok".into()],
                ..ConnectOptions::default()
            };
            e.connect("back", "c1", options).map(drop)
        })
        .expect_err("a bad alias");
    assert!(err.to_string().contains("not ok"), "{err}");
}

#[test]
fn names_in_the_kernel_follow_the_state() {
    let h = Harness::new();
    populated(&h);
    let wire = |name: &str| crate::model::names::wire_name(name).expect("a name");
    let answered = |vni: u32, name: &str| -> Option<Vec<Ipv4Addr>> {
        let w = wire(name);
        h.kernel()
            .names
            .iter()
            .find(|(k, _)| k.vni == vni && k.name[..k.len as usize] == w[..])
            .map(|(_, v)| {
                v.addrs[..v.count as usize]
                    .iter()
                    .map(|a| Ipv4Addr::from(a.to_ne_bytes()))
                    .collect()
            })
    };
    let vni = |name: &str| {
        h.stored()
            .networks
            .values()
            .find(|n| n.name == name)
            .expect("network")
            .vni
    };
    let (front, back) = (vni("front"), vni("back"));
    let c2_back = ip("10.2.0.9");
    assert_eq!(answered(back, "c2"), Some(vec![c2_back]));
    assert_eq!(
        answered(back, "C2"),
        Some(vec![c2_back]),
        "stored lower case"
    );
    assert!(answered(front, "c1").is_some() && answered(back, "c1").is_none());
    let options = ConnectOptions {
        aliases: vec!["db".into()],
        ..ConnectOptions::default()
    };
    h.run(|e| e.connect("back", "c1", options).map(drop))
        .expect("connect");
    let c1_back = h.stored().containers["c1"].endpoints[1].ip;
    assert_eq!(answered(back, "db"), Some(vec![c1_back]));
    assert_eq!(answered(back, "c1"), Some(vec![c1_back]));
    h.run(|e| e.disconnect("back", "c1")).expect("disconnect");
    assert_eq!(answered(back, "db"), None, "gone at once");
    // A rename answers at once, under the new name only.
    h.run(|e| e.rename_container("c2", "api")).expect("rename");
    assert_eq!(answered(back, "api"), Some(vec![c2_back]));
    assert_eq!(answered(back, "c2"), None);
    for (what, from, to) in [
        ("taken", "api", "c1"),
        ("the same", "api", "api"),
        ("invalid", "api", "no/slash"),
        ("unknown", "nobody", "x"),
    ] {
        let before = (h.kernel(), h.stored());
        assert!(h.run(|e| e.rename_container(from, to)).is_err(), "{what}");
        assert_eq!((h.kernel(), h.stored()), before, "{what}: nothing changed");
    }
    // Lost from the map (say the pins were removed): the repair puts it
    // back.
    h.world.borrow_mut().kernel.names.clear();
    let repairs = h.run(|e| e.reconcile()).expect("reconcile");
    assert!(repairs.names_synced);
    assert_eq!(answered(back, "api"), Some(vec![c2_back]));
}

#[test]
fn a_committed_command_leaves_kernel_and_store_in_step() {
    let h = Harness::new();
    populated(&h);
    let k = h.kernel();
    let s = h.stored();
    let vnis: Vec<u32> = s.networks.values().map(|n| n.vni).collect();
    assert_eq!(k.networks.keys().copied().collect::<Vec<_>>().len(), 3);
    for vni in vnis {
        assert!(k.networks.contains_key(&vni), "network {vni} programmed");
    }
    let endpoints: usize = s.containers.values().map(|c| c.endpoints.len()).sum();
    assert_eq!(endpoints, 3);
    assert_eq!(k.endpoints.len(), 3);
    assert_eq!(k.endpoint_links.len(), 3, "each endpoint has its program");
    assert_eq!(k.host_routes.len(), 3);
    let c2 = &s.containers["c2"];
    assert_eq!(c2.endpoints[1].ip, ip("10.2.0.9"), "the address asked for");
    assert_eq!(
        k.default_routes["c2"],
        route("10.1.0.1", "eth0"),
        "front routes; back is internal"
    );
    assert!(k.peers.contains(&(ip("192.0.2.2"), 5000)));
    assert!(k.remotes.contains_key(&(5000, ip("10.2.0.200"))));
    let mut routed: Vec<&str> = k
        .filter
        .networks
        .iter()
        .filter(|n| !n.internal)
        .map(|n| n.name.as_str())
        .collect();
    routed.sort_unstable();
    assert_eq!(
        routed,
        ["bridge", "front"],
        "the internal network is marked"
    );
    assert_eq!(k.filter.networks.len(), 3, "every network is filtered");
    assert!(k.gateway_addrs.contains(&ip("10.2.0.1")));
}

#[test]
fn bad_input_changes_nothing() {
    let h = Harness::new();
    populated(&h);
    let net = |f: fn(&mut CreateNetwork)| {
        let mut o = bridge("x", "10.8.0.0/24");
        f(&mut o);
        o
    };
    type Expect = fn(&EngineError) -> bool;
    let cases: Vec<(&str, CreateNetwork, Expect)> = vec![
        ("invalid name", net(|o| o.name = "bad/name".into()), |e| {
            matches!(e, EngineError::Rule(RuleError::InvalidName(_)))
        }),
        (
            "host bits",
            net(|o| o.subnets = vec!["10.8.0.1/24".parse().expect("net")]),
            |e| matches!(e, EngineError::Rule(RuleError::HostBits(..))),
        ),
        (
            "too small",
            net(|o| o.subnets = vec!["10.8.0.0/31".parse().expect("net")]),
            |e| matches!(e, EngineError::Rule(RuleError::SubnetTooSmall(_))),
        ),
        (
            "overlap",
            net(|o| o.subnets = vec!["10.1.0.0/16".parse().expect("net")]),
            |e| matches!(e, EngineError::Overlap(..)),
        ),
        (
            "gateway outside",
            net(|o| o.gateway = Some(ip("10.9.0.1"))),
            |e| matches!(e, EngineError::Rule(RuleError::GatewayOutside(..))),
        ),
        (
            "range outside",
            net(|o| o.ip_range = Some("10.9.0.0/25".parse().expect("net"))),
            |e| matches!(e, EngineError::Rule(RuleError::RangeOutside(..))),
        ),
        ("duplicate", net(|o| o.name = "front".into()), |e| {
            matches!(e, EngineError::DuplicateNetwork(_))
        }),
        ("VNI on a bridge", net(|o| o.vni = Some(7)), |e| {
            matches!(e, EngineError::Rule(RuleError::VniOnBridge))
        }),
        ("VNI in use", overlay("x", "10.8.0.0/24", 5000), |e| {
            matches!(e, EngineError::VniInUse(5000, _))
        }),
        (
            "VNI out of range",
            overlay("x", "10.8.0.0/24", 0x00ff_ffff),
            |e| matches!(e, EngineError::Rule(RuleError::VniRange(_))),
        ),
        ("mtu", net(|o| o.mtu = Some(100)), |e| {
            matches!(e, EngineError::Rule(RuleError::Mtu(100)))
        }),
        (
            "two subnets",
            net(|o| o.subnets.push("10.9.0.0/24".parse().expect("net"))),
            |e| matches!(e, EngineError::Rule(RuleError::OneSubnet)),
        ),
    ];
    let (kernel, stored, changes) = (h.kernel(), h.stored(), h.changes());
    for (what, opts, expect) in &cases {
        let err = h.run(|e| e.create_network(opts)).expect_err(what);
        assert!(expect(&err), "{what}: {err}");
        assert_eq!(h.changes(), changes, "{what}: a change was attempted");
    }
    let connects: Vec<(&str, &str, Option<Ipv4Addr>, Expect)> = vec![
        ("unknown network", "nope", None, |e| {
            matches!(e, EngineError::NoSuchNetwork(_))
        }),
        ("address taken", "back", Some(ip("10.2.0.9")), |e| {
            matches!(e, EngineError::AddressInUse(..))
        }),
        (
            "static remote's address",
            "back",
            Some(ip("10.2.0.200")),
            |e| matches!(e, EngineError::AddressInUse(..)),
        ),
        ("gateway address", "back", Some(ip("10.2.0.1")), |e| {
            matches!(e, EngineError::Rule(RuleError::AddressOutside(..)))
        }),
        ("outside the subnet", "back", Some(ip("10.9.0.9")), |e| {
            matches!(e, EngineError::Rule(RuleError::AddressOutside(..)))
        }),
        ("already connected", "front", None, |e| {
            matches!(e, EngineError::AlreadyConnected(..))
        }),
    ];
    for (what, network, addr, expect) in &connects {
        let err = h
            .run(|e| e.connect(network, "c1", ConnectOptions::at(*addr)))
            .expect_err(what);
        assert!(expect(&err), "{what}: {err}");
        assert_eq!(h.changes(), changes, "{what}: a change was attempted");
    }
    let err = h
        .run(|e| e.remove_container("c2", false))
        .expect_err("running");
    assert!(matches!(err, EngineError::Running(_)), "{err}");
    let err = h
        .run(|e| e.remove_networks(&["front".into()]))
        .expect_err("in use");
    assert!(matches!(err, EngineError::NetworkInUse(..)), "{err}");
    let err = h
        .run(|e| e.remove_networks(&["bridge".into()]))
        .expect_err("default");
    assert!(matches!(err, EngineError::Predefined(_)), "{err}");
    assert_eq!(h.changes(), changes);
    assert_eq!(h.kernel(), kernel);
    assert_eq!(h.stored(), stored);
}

/// A valid object ID made of `tag` (`g1` -> `...0067_0031`).
fn id(tag: &str) -> String {
    let hex: String = tag.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex:0>64}")
}

fn global(tag: &str, name: &str, subnet: &str, vni: u32) -> NetworkRecord {
    NetworkRecord {
        id: id(tag),
        name: name.into(),
        driver: Driver::Overlay,
        subnet: subnet.parse().expect("subnet"),
        gateway: subnet
            .parse::<ipnet::Ipv4Net>()
            .expect("subnet")
            .hosts()
            .next()
            .expect("gateway"),
        ip_range: None,
        vni,
        internal: false,
        mtu: 1450,
        labels: Default::default(),
        created: String::new(),
        docker: false,
        docker_name: None,
    }
}

/// Joins the cluster at 192.0.2.254, advertising 192.0.2.1.
fn join(h: &Harness) {
    h.run(|e| {
        e.join_cluster(ClusterRecord {
            endpoints: vec!["192.0.2.254:2379".into()],
            advertise_ip: Some(ip("192.0.2.1")),
            ..ClusterRecord::default()
        })
    })
    .expect("join");
}

fn claim(net: &str, addr: &str, host: &str, endpoint: &str) -> StoredClaim {
    StoredClaim {
        claim: Claim {
            network_id: id(net),
            ip: ip(addr),
            mac: MacAddr::from_ipv4(ip(addr)),
            host: ip(host),
            container: format!("c-{endpoint}"),
            endpoint_id: id(endpoint),
            aliases: Vec::new(),
        },
        mod_revision: 7,
        lease: 99,
    }
}

#[test]
fn the_cluster_view_is_applied_and_reapplied() {
    let h = Harness::new();
    h.run(|e| {
        e.create_network(&bridge("front", "10.1.0.0/24"))?;
        e.join_cluster(ClusterRecord {
            endpoints: vec!["192.0.2.254:2379".into()],
            advertise_ip: Some(ip("192.0.2.1")),
            lease: 99,
            lease_ttl: 15,
            ..ClusterRecord::default()
        })
    })
    .expect("join");
    let view = ClusterView {
        networks: vec![
            global("g1", "green", "10.9.0.0/24", 6000),
            // Clashes with the local bridge network `front`.
            global("g2", "front", "10.10.0.0/24", 6001),
        ],
        claims: vec![
            claim("g1", "10.9.0.5", "192.0.2.2", "e5"),
            claim("g1", "10.9.0.6", "192.0.2.3", "e6"),
            // This host's claim of an endpoint it no longer has.
            claim("g1", "10.9.0.7", "192.0.2.1", "e7"),
        ],
        hosts: vec![HostInfo {
            underlay_ip: ip("192.0.2.2"),
            name: "h2".into(),
        }],
        unreadable: vec![],
    };
    let sync = h.run(|e| e.apply_cluster_view(&view)).expect("apply");
    assert_eq!(sync.networks_added, ["green"]);
    assert_eq!(sync.endpoints_added, 2);
    assert_eq!(sync.conflicts.len(), 1, "{:?}", sync.conflicts);
    assert!(sync.conflicts[0].contains("front"), "{:?}", sync.conflicts);
    assert_eq!(sync.claims_stale.len(), 1);
    assert_eq!(sync.claims_stale[0].claim.endpoint_id, id("e7"));
    assert!(sync.claims_missing.is_empty());
    let k = h.kernel();
    assert!(k.networks.contains_key(&6000) && !k.networks.contains_key(&6001));
    assert!(k.remotes.contains_key(&(6000, ip("10.9.0.5"))));
    assert!(k.peers.contains(&(ip("192.0.2.2"), 6000)));
    assert!(k.peers.contains(&(ip("192.0.2.3"), 6000)));
    let stored = h.stored();
    assert_eq!(stored.learned.len(), 2, "learned endpoints are cached");
    assert_eq!(stored.cluster_hosts[&ip("192.0.2.2")], "h2");

    // The same view again: nothing to do.
    let again = h.run(|e| e.apply_cluster_view(&view)).expect("again");
    assert!(!again.changed(), "{again:?}");
    assert_eq!(h.kernel(), k);

    // Host 3's endpoint leaves; then the network leaves the cluster.
    let mut fewer = view.clone();
    fewer.claims.retain(|c| c.claim.host != ip("192.0.2.3"));
    let sync = h.run(|e| e.apply_cluster_view(&fewer)).expect("fewer");
    assert_eq!((sync.endpoints_added, sync.endpoints_removed), (0, 1));
    let k = h.kernel();
    assert!(!k.remotes.contains_key(&(6000, ip("10.9.0.6"))));
    assert!(
        !k.peers.contains(&(ip("192.0.2.3"), 6000)),
        "no endpoints, no peer"
    );
    assert!(k.peers.contains(&(ip("192.0.2.2"), 6000)));
    let gone = ClusterView {
        hosts: fewer.hosts.clone(),
        ..ClusterView::default()
    };
    let sync = h.run(|e| e.apply_cluster_view(&gone)).expect("gone");
    assert_eq!(sync.networks_removed, ["green"]);
    let k = h.kernel();
    assert!(!k.networks.contains_key(&6000));
    assert!(k.remotes.is_empty() && k.peers.is_empty());
    assert!(h.stored().learned.is_empty());
}

#[test]
fn leaving_a_cluster_forgets_its_networks_unless_in_use() {
    let h = Harness::new();
    join(&h);
    let view = ClusterView {
        networks: vec![global("g1", "green", "10.9.0.0/24", 6000)],
        claims: vec![claim("g1", "10.9.0.5", "192.0.2.2", "e5")],
        ..ClusterView::default()
    };
    h.run(|e| e.apply_cluster_view(&view)).expect("apply");
    let guarded: Vec<String> = h.kernel().guards.iter().map(|g| g.0.to_string()).collect();
    // The store, and its port on this host's own addresses (the underlay
    // one, each gateway).
    assert_eq!(
        guarded,
        [
            "10.9.0.1:2379",
            "172.18.0.1:2379",
            "192.0.2.1:2379",
            "192.0.2.254:2379"
        ],
        "containers may not reach etcd"
    );
    assert_eq!(
        h.kernel().filter.guarded.len(),
        4,
        "nor does the filter let them"
    );
    h.run(|e| e.leave_cluster()).expect("leave");
    assert!(h.kernel().guards.is_empty() && h.kernel().filter.guarded.is_empty());
    let s = h.stored();
    assert!(s.cluster.is_none() && s.learned.is_empty());
    assert!(!s.networks.values().any(|n| n.name == "green"));
    assert!(!h.kernel().networks.contains_key(&6000));
}

#[test]
fn reconcile_repairs_what_vanished() {
    let h = Harness::new();
    populated(&h);
    let healthy = h.kernel();
    {
        let mut w = h.world.borrow_mut();
        // c1's map entry and program vanish; a stray veth appears; the
        // underlay program is gone.
        let ifindex = *w
            .kernel
            .endpoints
            .iter()
            .find(|(_, e)| e.ip == ip("10.1.0.2"))
            .expect("c1")
            .0;
        w.kernel.endpoints.remove(&ifindex);
        w.kernel.endpoint_links.remove(&ifindex);
        w.kernel
            .links
            .insert("ovldeadbeef".into(), (999, MacAddr([2, 0, 0, 0, 9, 9])));
        w.kernel.underlay_links.clear();
    }
    let repairs = h.run(|e| e.reconcile()).expect("reconcile");
    assert_eq!(repairs.endpoints_reprogrammed, ["c1/eth0"]);
    assert_eq!(repairs.stale_veths, ["ovldeadbeef"]);
    assert!(repairs.underlay_reattached);
    assert_eq!(h.kernel(), healthy, "back as it was");
    let again = h.run(|e| e.reconcile()).expect("again");
    assert!(again.is_empty(), "{again:?}");

    // c2's namespace vanishes: it is released, its process stopped.
    h.world.borrow_mut().kernel.netns.remove("c2");
    let repairs = h.run(|e| e.reconcile()).expect("reconcile");
    assert_eq!(repairs.containers_gone, ["c2"]);
    assert!(!h.kernel().running.contains(&PROCESS));
    assert!(!h.stored().containers.contains_key("c2"));
}

/// Records a writer to the cluster store could plant: each is skipped and
/// named, the valid ones beside them still apply, and nothing fails.
#[test]
fn hostile_cluster_records_are_skipped_and_named() {
    let h = Harness::new();
    join(&h);
    let with = |f: fn(&mut NetworkRecord)| {
        let mut n = global("x", "x", "10.50.0.0/24", 6100);
        f(&mut n);
        n
    };
    let hostile = vec![
        with(|n| n.name = "a\"; flush ruleset; \"".into()),
        with(|n| n.name = "line\nbreak".into()),
        with(|n| n.name = "n".repeat(300)),
        with(|n| n.subnet = "0.0.0.0/0".parse().expect("net")),
        // The gateway is the cluster store's address: it would cut the
        // host off from etcd.
        with(|n| {
            n.subnet = "192.0.2.252/30".parse().expect("net");
            n.gateway = ip("192.0.2.254");
        }),
        with(|n| n.id = "short".into()),
        with(|n| n.vni = 0x00ff_ffff),
        with(|n| n.gateway = ip("10.99.0.1")),
        with(|n| n.driver = Driver::Bridge),
    ];
    let mut networks: Vec<NetworkRecord> = hostile
        .into_iter()
        .enumerate()
        .map(|(i, mut n)| {
            if n.id != "short" {
                n.id = id(&format!("h{i}"));
            }
            n
        })
        .collect();
    networks.push(global("ok", "fine", "10.60.0.0/24", 6200));
    // Overlaps the valid one: a conflict, also skipped.
    networks.push(global("ov", "overlap", "10.60.0.0/23", 6201));
    let mut bad_claim = claim("ok", "10.60.0.9", "192.0.2.2", "eg");
    bad_claim.claim.container = "no/slash".into();
    let view = ClusterView {
        networks,
        claims: vec![
            claim("ok", "10.60.0.5", "192.0.2.2", "e5"),
            // The gateway's address, and an address outside the subnet.
            claim("ok", "10.60.0.1", "192.0.2.2", "e6"),
            claim("ok", "10.61.0.7", "192.0.2.2", "e7"),
            bad_claim,
        ],
        hosts: vec![HostInfo {
            underlay_ip: ip("192.0.2.2"),
            name: "bad name; rm -rf".into(),
        }],
        unreadable: vec!["/overlay/v1/networks/garbage".into()],
    };
    let sync = h.run(|e| e.apply_cluster_view(&view)).expect("never fails");
    assert_eq!(sync.networks_added, ["fine"], "only the valid network");
    assert_eq!(sync.endpoints_added, 1, "only the valid claim");
    let s = h.stored();
    // 9 hostile networks, 1 overlap, 3 bad claims, 1 host, 1 unreadable.
    assert_eq!(s.rejected_count, 15, "{:#?}", s.rejected);
    assert!(s.rejected.keys().any(|k| k.contains("garbage")));
    assert!(
        s.rejected
            .values()
            .any(|why| why.contains("covers the underlay address 192.0.2.254")),
        "{:#?}",
        s.rejected
    );
    assert!(
        s.cluster_hosts.is_empty(),
        "the badly named host is skipped"
    );
    let k = h.kernel();
    assert_eq!(k.networks.len(), 2, "the default bridge and `fine`");
    assert!(!k.gateway_addrs.contains(&ip("192.0.2.254")));
    assert_eq!(k.remotes.len(), 1);
    // The same view again names nothing new.
    let again = h.run(|e| e.apply_cluster_view(&view)).expect("again");
    assert!(again.newly_rejected.is_empty() && again.rejected == 15);
}

/// Overlay networks take the underlay NIC's MTU minus VXLAN's 50 bytes;
/// one that cannot fit is refused; a cluster network made elsewhere with a
/// larger MTU gets interfaces that fit this host's underlay.
#[test]
fn overlay_mtus_follow_the_underlay() {
    let h = Harness::new();
    {
        let mut w = h.world.borrow_mut();
        w.kernel
            .links
            .insert("eth0".into(), (2, MacAddr([2, 0, 0, 0, 0, 2])));
        w.kernel.nic_mtu = 1400;
        w.kernel.nic_driver = Some("veth".into());
    }
    let attached = h
        .run(|e| e.attach("eth0", None, DecapRequest::Auto))
        .expect("attach");
    assert_eq!(attached.mode, AttachedMode::Tcx, "auto on a veth: tc");
    assert!(attached.reason.expect("why").contains("veth"));
    h.run(|e| e.create_network(&overlay("o1", "10.5.0.0/24", 7001)))
        .expect("default mtu");
    let err = h
        .run(|e| {
            e.create_network(&CreateNetwork {
                mtu: Some(1400),
                ..overlay("o2", "10.6.0.0/24", 7002)
            })
        })
        .expect_err("too big");
    assert!(
        err.to_string()
            .contains("eth0 carries 1400 bytes, so an overlay network takes at most 1350"),
        "{err}"
    );
    h.run(|e| {
        e.create_network(&CreateNetwork {
            mtu: Some(1300),
            ..overlay("o3", "10.7.0.0/24", 7003)
        })
    })
    .expect("fits");
    let mtus: BTreeMap<String, u32> = h
        .stored()
        .networks
        .values()
        .map(|n| (n.name.clone(), n.mtu))
        .collect();
    assert_eq!(mtus["o1"], 1350);
    assert_eq!(mtus["o3"], 1300);
    assert_eq!(mtus["bridge"], 1500, "bridge networks do not encapsulate");
    h.run(|e| {
        e.create_container(Some("c"), &[("o1".into(), None), ("o3".into(), None)], &[])
            .map(drop)
    })
    .expect("run");
    let k = h.kernel();
    let mut got: Vec<u32> = k.veth_mtus.values().copied().collect();
    got.sort_unstable();
    assert_eq!(got, [1300, 1350]);
}

#[test]
fn the_default_route_follows_dockers_choice_of_network() {
    let h = Harness::new();
    h.run(|e| {
        e.create_network(&CreateNetwork {
            internal: true,
            ..bridge("inner", "10.3.0.0/24")
        })?;
        e.create_network(&bridge("front", "10.4.0.0/24"))?;
        e.create_network(&bridge("alpha", "10.5.0.0/24"))?;
        e.create_network(&bridge("zz", "10.6.0.0/24"))?;
        e.create_container(Some("c"), &[("inner".into(), None)], &[])
            .map(drop)
    })
    .expect("setup");
    let routes = || h.kernel().default_routes.get("c").cloned();
    assert_eq!(routes(), None, "an internal network gives no way out");

    let connect = |net: &'static str, gw_priority: i32| {
        h.run(|e| {
            e.connect(
                net,
                "c",
                ConnectOptions {
                    gw_priority,
                    ..ConnectOptions::default()
                },
            )
            .map(drop)
        })
        .expect("connect");
    };
    let disconnect = |net: &'static str| {
        h.run(|e| e.disconnect(net, "c")).expect("disconnect");
    };
    connect("front", 0);
    assert_eq!(
        routes(),
        Some(route("10.4.0.1", "eth1")),
        "the first routable"
    );
    connect("alpha", 0);
    assert_eq!(
        routes(),
        Some(route("10.5.0.1", "eth2")),
        "ties: name order"
    );
    connect("zz", 1);
    assert_eq!(
        routes(),
        Some(route("10.6.0.1", "eth3")),
        "gw-priority first"
    );
    disconnect("zz");
    assert_eq!(
        routes(),
        Some(route("10.5.0.1", "eth2")),
        "moved on disconnect"
    );
    disconnect("alpha");
    assert_eq!(routes(), Some(route("10.4.0.1", "eth1")));
    disconnect("front");
    assert_eq!(routes(), None, "only the internal network is left");

    // A route someone else put there (not through our interfaces) stays.
    h.world
        .borrow_mut()
        .kernel
        .default_routes
        .insert("c".into(), route("192.0.2.1", "uplink"));
    connect("front", 0);
    assert_eq!(routes(), Some(route("192.0.2.1", "uplink")));
}

#[test]
fn reconcile_restores_a_lost_default_route() {
    let h = Harness::new();
    populated(&h);
    h.world.borrow_mut().kernel.default_routes.remove("c2");
    let repairs = h.run(|e| e.reconcile()).expect("reconcile");
    assert_eq!(repairs.default_routes, ["c2"]);
    assert_eq!(h.kernel().default_routes["c2"], route("10.1.0.1", "eth0"));
    let again = h.run(|e| e.reconcile()).expect("again");
    assert!(again.is_empty(), "{again:?}");
}

#[test]
fn automatic_subnets_skip_prefixes_the_host_routes() {
    let h = Harness::new();
    h.world.borrow_mut().kernel.routed = ["172.18.0.0/16", "172.19.128.0/17", "10.0.0.0/23"]
        .iter()
        .map(|p| p.parse().expect("prefix"))
        .collect();
    h.run(|e| {
        e.create_network(&CreateNetwork {
            name: "b".into(),
            ..CreateNetwork::default()
        })?;
        e.create_network(&CreateNetwork {
            name: "o".into(),
            driver: Some(Driver::Overlay),
            ..CreateNetwork::default()
        })?;
        // An explicit subnet is the user's call, as in Docker.
        e.create_network(&bridge("mine", "172.19.1.0/24")).map(drop)
    })
    .expect("create");
    let s = h.stored();
    let subnet = |name: &str| {
        s.networks
            .values()
            .find(|n| n.name == name)
            .map(|n| n.subnet.to_string())
            .expect("network")
    };
    assert_eq!(subnet("bridge"), "172.18.0.0/16", "made before the routes");
    assert_eq!(subnet("b"), "172.20.0.0/16");
    assert_eq!(subnet("o"), "10.0.2.0/24");
    assert_eq!(subnet("mine"), "172.19.1.0/24");
}

#[test]
fn a_run_that_crashed_half_way_leaves_nothing_in_the_way() {
    let h = Harness::new();
    // `run` dies between its kernel changes and its commit: the engine
    // is dropped, neither committed nor rolled back.
    let crash = |name: &str| {
        let mut e = h.engine().expect("engine");
        e.create_container(Some(name), &[], &[]).expect("create");
    };
    crash("c");
    assert!(h.kernel().netns.contains("c"), "the namespace was left");
    assert_eq!(h.kernel().endpoints.len(), 1, "and its endpoint's entries");
    assert!(h.stored().pending_netns.contains("c"));
    assert!(!h.stored().containers.contains_key("c"));

    // The name is not blocked, nor the address the crashed run had.
    let c = h
        .run(|e| e.create_container(Some("c"), &[], &[]))
        .expect("the name is free again");
    assert_eq!(c.endpoints[0].ip, ip("172.18.0.2"), "the same address");
    assert_eq!(h.kernel().endpoints.len(), 1, "the leftover entry is gone");
    assert!(h.stored().pending_netns.is_empty());

    // The daemon's pass removes one nobody re-used.
    crash("d");
    let repairs = h.run(|e| e.reconcile()).expect("reconcile");
    assert_eq!(repairs.half_made, ["d"]);
    assert!(!h.kernel().netns.contains("d"));
    assert!(h.stored().pending_netns.is_empty());
    assert_eq!(h.kernel().endpoints.len(), 1, "only c's");

    // A namespace that is not ours keeps its name to itself.
    h.world.borrow_mut().kernel.netns.insert("theirs".into());
    let err = h
        .run(|e| e.create_container(Some("theirs"), &[], &[]).map(drop))
        .expect_err("someone else's namespace");
    assert!(matches!(err, EngineError::DuplicateContainer(_)), "{err}");
    let repairs = h.run(|e| e.reconcile()).expect("reconcile");
    assert!(repairs.half_made.is_empty());
    assert!(h.kernel().netns.contains("theirs"));
}

#[test]
fn reconcile_removes_routes_peers_and_gateways_nobody_owns() {
    let h = Harness::new();
    populated(&h);
    {
        let mut w = h.world.borrow_mut();
        // Left by commands that crashed, or by a network removed while
        // its entries were being written: a VNI re-used later would
        // inherit them.
        w.kernel.peers.insert((ip("192.0.2.66"), 5000));
        w.kernel.remotes.insert(
            (5000, ip("10.2.0.77")),
            crate::dataplane::RemoteEndpoint {
                vni: 5000,
                ip: ip("10.2.0.77"),
                mac: MacAddr::from_ipv4(ip("10.2.0.77")),
                host: ip("192.0.2.66"),
            },
        );
        w.kernel.gateway_addrs.insert(ip("10.9.9.1"));
        w.kernel.gateway_addrs.remove(&ip("10.1.0.1"));
    }
    let repairs = h.run(|e| e.reconcile()).expect("reconcile");
    assert_eq!(repairs.stale_routes, 1, "{repairs:?}");
    assert_eq!(repairs.stale_peers, 1, "{repairs:?}");
    assert_eq!(repairs.stale_gateways, [ip("10.9.9.1")]);
    assert_eq!(repairs.gateways_restored, [ip("10.1.0.1")]);
    let k = h.kernel();
    assert!(!k.peers.contains(&(ip("192.0.2.66"), 5000)));
    assert!(
        k.peers.contains(&(ip("192.0.2.2"), 5000)),
        "the static peer stays"
    );
    assert!(!k.remotes.contains_key(&(5000, ip("10.2.0.77"))));
    assert!(
        k.remotes.contains_key(&(5000, ip("10.2.0.200"))),
        "the static remote stays"
    );
    let again = h.run(|e| e.reconcile()).expect("again");
    assert!(again.is_empty(), "{again:?}");
}

/// A container `c` at 10.9.0.5 on global network `green` (VNI 6000) of a
/// joined host (192.0.2.1). Connecting to a global network claims in etcd,
/// which these tests have not: `c` is made on `bridge`, then its record
/// and the fake kernel are moved to `green` as a connect would have left
/// them. Returns the network's record and the endpoint's id.
fn joined_with_an_endpoint(h: &Harness) -> (NetworkRecord, String) {
    join(h);
    let net = global("g1", "green", "10.9.0.0/24", 6000);
    let view = ClusterView {
        networks: vec![net.clone()],
        ..ClusterView::default()
    };
    h.run(|e| e.apply_cluster_view(&view)).expect("network");
    h.run(|e| e.create_container(Some("c"), &[("bridge".into(), None)], &[]))
        .expect("container");
    let addr = ip("10.9.0.5");
    let store = Store::open(&h.dir, Duration::ZERO).expect("store");
    let before = store.load().expect("load");
    let mut after = before.clone();
    let ep = &mut after.containers.get_mut("c").expect("c").endpoints[0];
    let old_ip = ep.ip;
    ep.network_id = net.id.clone();
    ep.ip = addr;
    ep.mac = MacAddr::from_ipv4(addr);
    let ep = ep.clone();
    store.save(&before, &after).expect("save");
    drop(store);
    let mut w = h.world.borrow_mut();
    let k = &mut w.kernel;
    let entry = k
        .endpoints
        .values_mut()
        .find(|e| e.ip == old_ip)
        .expect("c's entry");
    entry.vni = 6000;
    entry.ip = addr;
    entry.mac = ep.mac;
    k.host_routes.remove(&old_ip);
    k.host_routes.insert(addr, ep.host_ifname.clone());
    (net, ep.id)
}

#[test]
fn another_hosts_claim_wins_and_the_endpoint_here_steps_aside() {
    let h = Harness::new();
    let (net, ep) = joined_with_an_endpoint(&h);
    let host2 = HostInfo {
        underlay_ip: ip("192.0.2.2"),
        name: "h2".into(),
    };
    let mut theirs = claim("x", "10.9.0.5", "192.0.2.2", "x5");
    theirs.claim.network_id = net.id.clone();
    theirs.lease = 0;
    let view = ClusterView {
        networks: vec![net.clone()],
        claims: vec![theirs],
        hosts: vec![host2.clone()],
        unreadable: vec![],
    };
    let sync = h.run(|e| e.apply_cluster_view(&view)).expect("apply");
    assert_eq!(sync.conflicts.len(), 1, "named once: {:?}", sync.conflicts);
    assert!(
        sync.conflicts[0].contains("10.9.0.5 of c on green is claimed by c-x5 on 192.0.2.2"),
        "{:?}",
        sync.conflicts
    );
    assert_eq!(sync.claims_missing.len(), 1, "its own claim is retried");
    let k = h.kernel();
    assert!(
        !k.endpoints.values().any(|e| e.ip == ip("10.9.0.5")),
        "out of the maps here"
    );
    assert_eq!(
        k.remotes.get(&(6000, ip("10.9.0.5"))).map(|r| r.host),
        Some(ip("192.0.2.2")),
        "routed to the holder, as on every other host"
    );
    assert!(!k.host_routes.contains_key(&ip("10.9.0.5")));
    let stored = h.stored();
    assert_eq!(
        stored.containers["c"].endpoints[0].conflict.as_deref(),
        Some("c-x5 on 192.0.2.2")
    );
    let err = h
        .run(|e| {
            let c = e.container("c")?.clone();
            e.check_no_conflict(&c)
        })
        .expect_err("commands on c refuse");
    assert!(matches!(err, EngineError::AddressConflict { .. }), "{err}");

    let again = h.run(|e| e.apply_cluster_view(&view)).expect("again");
    assert!(
        again.conflicts.is_empty(),
        "not named again: {:?}",
        again.conflicts
    );
    let repairs = h.run(|e| e.reconcile()).expect("reconcile");
    assert!(repairs.endpoints_reprogrammed.is_empty(), "{repairs:?}");
    let after = h.kernel();
    assert_eq!(
        (&after.endpoints, &after.remotes, &after.host_routes),
        (&k.endpoints, &k.remotes, &k.host_routes),
        "reconcile keeps it out"
    );

    // The holder lets go and this host's claim lands: the endpoint is back.
    let mut ours = claim("x", "10.9.0.5", "192.0.2.1", "x");
    ours.claim.network_id = net.id.clone();
    ours.claim.endpoint_id = ep.clone();
    ours.lease = 0;
    let back = ClusterView {
        claims: vec![ours],
        ..view
    };
    h.run(|e| e.apply_cluster_view(&back)).expect("back");
    let k = h.kernel();
    assert!(k.endpoints.values().any(|e| e.ip == ip("10.9.0.5")));
    assert!(!k.remotes.contains_key(&(6000, ip("10.9.0.5"))));
    assert!(k.host_routes.contains_key(&ip("10.9.0.5")));
    assert!(h.stored().containers["c"].endpoints[0].conflict.is_none());
    assert!(h.run(|e| e.reconcile()).expect("reconcile").is_empty());
}

#[test]
fn a_down_hosts_claims_expire_after_the_grace() {
    let h = Harness::new();
    join(&h);
    let net = global("g1", "green", "10.9.0.0/24", 6000);
    let mut held = claim("g1", "10.9.0.5", "192.0.2.3", "e5");
    held.lease = 0;
    let view = ClusterView {
        networks: vec![net],
        claims: vec![held],
        ..ClusterView::default()
    };
    let sync = h.run(|e| e.apply_cluster_view(&view)).expect("apply");
    assert!(sync.hosts_expired.is_empty(), "just went down");
    let since = h.stored().cluster_down_since[&ip("192.0.2.3")];
    assert!(since > 0);
    let hosts = h.run(|e| Ok(e.cluster_hosts())).expect("hosts");
    assert_eq!(hosts.len(), 1);
    assert_eq!((hosts[0].ip, hosts[0].endpoints), (ip("192.0.2.3"), 1));
    assert!(hosts[0].name.is_none() && hosts[0].down_for.is_some());
    // The address stays taken meanwhile.
    assert!(
        h.stored()
            .used_addresses(&id("g1"))
            .contains(&ip("10.9.0.5"))
    );

    // Seen down since long ago (grace: a day): expired.
    {
        let store = Store::open(&h.dir, Duration::ZERO).expect("store");
        let before = store.load().expect("load");
        let mut after = before.clone();
        after
            .cluster_down_since
            .insert(ip("192.0.2.3"), since - 86_400);
        store.save(&before, &after).expect("save");
    }
    let sync = h.run(|e| e.apply_cluster_view(&view)).expect("apply");
    assert_eq!(sync.hosts_expired, [ip("192.0.2.3")]);

    // Registered again: no longer down, never expired.
    let live = ClusterView {
        hosts: vec![HostInfo {
            underlay_ip: ip("192.0.2.3"),
            name: "h3".into(),
        }],
        ..view
    };
    let sync = h.run(|e| e.apply_cluster_view(&live)).expect("apply");
    assert!(sync.hosts_expired.is_empty());
    assert!(h.stored().cluster_down_since.is_empty());
}

#[test]
fn docker_calls_through_the_plugin() {
    let h = Harness::new();
    h.run(docker_network_and_join).expect("docker");
    let s = h.stored();
    let net = &s.networks[&id("dn")];
    assert!(net.docker && net.name.starts_with("docker-"));
    assert_eq!(
        net.subnet.to_string(),
        "172.19.0.0/16",
        "skips bridge's pool"
    );
    assert_eq!(net.gateway, ip("172.19.0.1"));
    let pool = &s.ipam_pools["172.19.0.0/16"];
    assert_eq!(pool.refs, 1);
    assert_eq!(
        pool.addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["172.19.0.1", "172.19.0.2"]
    );
    let c = &s.containers["docker-0123456789ab"];
    assert!(c.docker && c.netns == "/var/run/docker/netns/0123456789ab");
    assert_eq!(c.endpoints[0].ip, ip("172.19.0.2"));
    let k = h.kernel();
    assert!(k.endpoints.values().any(|e| e.ip == ip("172.19.0.2")));
    assert!(
        !k.default_routes.contains_key(&c.netns),
        "Docker sets routes"
    );

    // Docker's name, once learned, finds it and shows; names that break
    // the rules and networks that are not Docker's are left alone.
    let named = h
        .run(|e| {
            Ok(e.name_docker_networks(&BTreeMap::from([
                (id("dn"), "front".to_owned()),
                (id("zz"), "ghost".to_owned()),
            ])))
        })
        .expect("named");
    assert_eq!(named, 1);
    let s = h.stored();
    let net = s.find_network("front").expect("by Docker's name");
    assert_eq!(
        (net.id.as_str(), net.display_name()),
        (id("dn").as_str(), "front")
    );
    assert!(net.name.starts_with("docker-"), "its own name stays");
    let bridge_id = s.find_network("bridge").expect("bridge").id.clone();
    let named = h
        .run(|e| {
            Ok(e.name_docker_networks(&BTreeMap::from([
                (id("dn"), "no/slashes".to_owned()),
                (bridge_id.clone(), "renamed".to_owned()),
            ])))
        })
        .expect("named");
    assert_eq!(named, 0, "a bad name, and a network of ours");
    let s = h.stored();
    assert_eq!(s.networks[&id("dn")].display_name(), "front");
    assert_eq!(s.networks[&bridge_id].display_name(), "bridge");
    // One name, one network: ours cannot take Docker's, nor Docker's ours.
    let err = h
        .run(|e| e.create_network(&bridge("front", "10.9.0.0/24")).map(drop))
        .expect_err("taken by Docker's network");
    assert!(matches!(err, EngineError::DuplicateNetwork(_)), "{err}");
    h.run(|e| e.create_network(&bridge("back", "10.9.0.0/24")).map(drop))
        .expect("ours");
    let named = h
        .run(|e| Ok(e.name_docker_networks(&BTreeMap::from([(id("dn"), "back".to_owned())]))))
        .expect("named");
    assert_eq!(named, 0, "a name one of ours has");
    assert_eq!(h.stored().networks[&id("dn")].display_name(), "front");

    // Docker's objects are Docker's.
    let err = h
        .run(|e| e.remove_container("docker-0123456789ab", true).map(drop))
        .expect_err("refused");
    assert!(matches!(err, EngineError::DockerOwned(_)), "{err}");
    let err = h
        .run(|e| e.remove_networks(&[id("dn")]).map(drop))
        .expect_err("refused");
    assert!(matches!(err, EngineError::DockerOwned(_)), "{err}");
    // A repair pass leaves them alone (the sandbox file is not there).
    let repairs = h.run(|e| e.reconcile()).expect("reconcile");
    assert!(repairs.containers_gone.is_empty(), "{repairs:?}");

    // The same address twice, or one outside the pool, is refused.
    let err = h
        .run(|e| e.ipam_request_address("172.19.0.0/16", Some(ip("172.19.0.2")), false))
        .expect_err("taken");
    assert!(matches!(err, EngineError::AddressInUse(..)), "{err}");
    let err = h
        .run(|e| e.ipam_request_address("172.19.0.0/16", Some(ip("10.0.0.1")), false))
        .expect_err("outside");
    assert!(matches!(err, EngineError::Rule(_)), "{err}");

    h.run(|e| {
        e.plugin_leave(DOCKER_EP)?;
        e.plugin_delete_endpoint(DOCKER_EP)?;
        e.ipam_release_address("172.19.0.0/16", ip("172.19.0.2"))?;
        e.plugin_delete_network(&id("dn"))?;
        e.ipam_release_address("172.19.0.0/16", ip("172.19.0.1"))?;
        e.ipam_release_pool("172.19.0.0/16")
    })
    .expect("teardown");
    let s = h.stored();
    assert!(s.ipam_pools.is_empty() && s.plugin_endpoints.is_empty());
    assert!(!s.containers.contains_key("docker-0123456789ab"));
    assert!(!s.networks.contains_key(&id("dn")));
    assert!(h.kernel().endpoints.is_empty());
}
