//! The etcd cluster store against a real etcd (Debian's etcd-server) on
//! loopback: uniqueness under concurrency, leases, unreachable stores.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use overlay_user::{
    MacAddr,
    cluster::{Claim, ClusterError, ClusterStore, HostInfo},
    ipam,
    store::{Driver, NetworkRecord},
};

/// A throwaway single-member etcd; killed and its data removed on drop.
struct Etcd {
    child: Child,
    dir: PathBuf,
    endpoint: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Etcd {
    fn start() -> Self {
        let (client, peer) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("ovl-etcd-{}", ipam::new_id()));
        let c = format!("http://127.0.0.1:{client}");
        let p = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "t", "--data-dir"])
            .arg(&dir)
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &format!("t={p}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd (apt package etcd-server)");
        let etcd = Self {
            child,
            dir,
            endpoint: format!("127.0.0.1:{client}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while etcd.connect().is_err() {
            assert!(Instant::now() < deadline, "etcd did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd
    }

    fn connect(&self) -> Result<ClusterStore, ClusterError> {
        ClusterStore::connect(
            std::slice::from_ref(&self.endpoint),
            None,
            Duration::from_secs(2),
        )
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn network(name: &str, vni: u32, subnet: &str) -> NetworkRecord {
    let subnet: ipnet::Ipv4Net = subnet.parse().expect("subnet");
    NetworkRecord {
        id: ipam::new_id(),
        name: name.into(),
        driver: Driver::Overlay,
        subnet,
        gateway: subnet.hosts().next().expect("gateway"),
        ip_range: None,
        vni,
        internal: false,
        mtu: 1450,
        labels: Default::default(),
        created: "2026-11-28T00:00:00Z".into(),
    }
}

fn claim(host: Ipv4Addr, container: &str) -> impl Fn(Ipv4Addr) -> Claim + '_ {
    move |ip| Claim {
        ip,
        mac: MacAddr::from_ipv4(ip),
        host,
        container: container.into(),
        endpoint_id: ipam::new_id(),
    }
}

#[test]
fn two_creates_with_one_name_one_wins() {
    let etcd = Etcd::start();
    let results: Vec<Result<(), ClusterError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2u32)
            .map(|i| {
                let etcd = &etcd;
                s.spawn(move || {
                    let mut store = etcd.connect().expect("connect");
                    store.create_network(&network("front", 5000 + i, "10.0.0.0/24"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "exactly one create wins: {results:?}");
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(ClusterError::NameTaken(n)) if n == "front")),
        "the loser learns the name is taken: {results:?}"
    );
    // Whichever VNI the winner had is now taken for any other name.
    let mut store = etcd.connect().expect("connect");
    let winner = store.networks().expect("list");
    assert_eq!(winner.len(), 1, "one network: {winner:?}");
    let err = store.create_network(&network("back", winner[0].vni, "10.0.1.0/24"));
    assert!(
        matches!(err, Err(ClusterError::VniTaken(v)) if v == winner[0].vni),
        "a VNI is unique too: {err:?}"
    );
    assert_eq!(
        store.networks().expect("list").len(),
        1,
        "nothing half-written"
    );
}

#[test]
fn concurrent_claims_from_two_hosts_never_collide() {
    let etcd = Etcd::start();
    let net = network("big", 6000, "10.1.0.0/24");
    etcd.connect()
        .expect("connect")
        .create_network(&net)
        .expect("create");
    let ips: Vec<Ipv4Addr> = std::thread::scope(|s| {
        let handles: Vec<_> = [Ipv4Addr::new(10, 100, 0, 1), Ipv4Addr::new(10, 100, 0, 2)]
            .into_iter()
            .map(|host| {
                let (etcd, net) = (&etcd, &net);
                s.spawn(move || {
                    let mut store = etcd.connect().expect("connect");
                    (0..100)
                        .map(|i| {
                            store
                                .claim_address(net, None, claim(host, &format!("c{i}")))
                                .expect("claim")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let distinct: BTreeSet<Ipv4Addr> = ips.iter().copied().collect();
    assert_eq!(ips.len(), 200);
    assert_eq!(
        distinct.len(),
        200,
        "200 concurrent claims, 200 distinct addresses"
    );
    assert!(
        distinct
            .iter()
            .all(|ip| ipam::is_host(net.subnet, *ip) && *ip != net.gateway),
        "all usable addresses of the subnet"
    );
    let mut store = etcd.connect().expect("connect");
    assert_eq!(store.claims(&net.id).expect("claims").len(), 200);
    // A static claim of a taken address fails cleanly; a free one works.
    let taken = *distinct.iter().next().expect("one");
    let host = Ipv4Addr::new(10, 100, 0, 3);
    assert!(matches!(
        store.claim_address(&net, Some(taken), claim(host, "x")),
        Err(ClusterError::AddressTaken(ip)) if ip == taken
    ));
    store.release_address(&net.id, taken).expect("release");
    assert_eq!(
        store
            .claim_address(&net, Some(taken), claim(host, "x"))
            .expect("reuse"),
        taken
    );
}

#[test]
fn a_dead_hosts_claims_expire_with_its_lease() {
    let etcd = Etcd::start();
    let net = network("n", 7000, "10.2.0.0/24");
    let (dead_ip, live_ip) = (Ipv4Addr::new(10, 100, 0, 1), Ipv4Addr::new(10, 100, 0, 2));
    let mut live = etcd.connect().expect("connect");
    live.create_network(&net).expect("create");
    live.register_host(
        &HostInfo {
            underlay_ip: live_ip,
            name: "live".into(),
        },
        3,
    )
    .expect("register live");
    live.claim_address(&net, None, claim(live_ip, "l"))
        .expect("live claim");
    {
        let mut dead = etcd.connect().expect("connect");
        dead.register_host(
            &HostInfo {
                underlay_ip: dead_ip,
                name: "dead".into(),
            },
            2,
        )
        .expect("register dead");
        dead.claim_address(&net, None, claim(dead_ip, "d"))
            .expect("dead claim");
        // The dead host stops renewing: dropped without revoking.
    }
    assert_eq!(
        live.hosts().expect("hosts").len(),
        2,
        "both hosts registered"
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        live.keep_alive().expect("renew the live host");
        let hosts = live.hosts().expect("hosts");
        let claims = live.claims(&net.id).expect("claims");
        if hosts.len() == 1 {
            assert_eq!(hosts[0].underlay_ip, live_ip, "the live host stays");
            assert!(
                claims.iter().all(|c| c.host == live_ip) && claims.len() == 1,
                "the dead host's claims went with its lease: {claims:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead host's lease never expired"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn an_unreachable_store_is_a_clear_error() {
    let port = free_port(); // nothing listens there
    let err = ClusterStore::connect(&[format!("127.0.0.1:{port}")], None, Duration::from_secs(1))
        .err()
        .expect("nothing answers");
    let msg = err.to_string();
    assert!(
        matches!(err, ClusterError::Unreachable { .. }) && msg.contains(&port.to_string()),
        "{msg}"
    );
}
