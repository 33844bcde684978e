//! The etcd cluster store against a real etcd (Debian's etcd-server) on
//! loopback: uniqueness under concurrency, leases, unreachable stores.

use std::{
    collections::BTreeSet,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use overlay_testkit::etcd::{Etcd, EtcdTls};
use overlay_user::{
    cluster::{ClusterError, ClusterOptions, ClusterStore},
    model::{Claim, ClusterRecord, Driver, HostInfo, MacAddr, NetworkRecord, ids, ipam},
};

/// A loopback TCP port held by a socket that is bound but never listens:
/// a connection there is refused, and while it is held no other process
/// (another test's etcd picking a free port) can take it. Closed on drop.
struct RefusingPort {
    fd: libc::c_int,
    port: u16,
}

impl RefusingPort {
    fn new() -> Self {
        // SAFETY: plain socket(2)/bind(2)/getsockname(2) on a sockaddr_in
        // we own; the fd is closed on drop.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let rc = libc::bind(fd, (&raw const addr).cast(), len);
            assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
            let mut got = len;
            let rc = libc::getsockname(fd, (&raw mut addr).cast(), &raw mut got);
            assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
            Self {
                fd,
                port: u16::from_be(addr.sin_port),
            }
        }
    }
}

impl Drop for RefusingPort {
    fn drop(&mut self) {
        // SAFETY: our own fd, closed once.
        unsafe { libc::close(self.fd) };
    }
}

fn etcd() -> Etcd {
    Etcd::on_loopback().expect("etcd on loopback")
}

fn host(store: &mut ClusterStore, ip: Ipv4Addr, ttl: i64) {
    store
        .register_host(
            &HostInfo {
                underlay_ip: ip,
                name: format!("h{ip}"),
            },
            ttl,
            0,
        )
        .expect("register");
}

fn network(name: &str, vni: u32, subnet: &str) -> NetworkRecord {
    let subnet: ipnet::Ipv4Net = subnet.parse().expect("subnet");
    NetworkRecord {
        id: ids::new_id(),
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
        docker: false,
        docker_name: None,
    }
}

fn claim<'a>(
    net: &'a NetworkRecord,
    host: Ipv4Addr,
    container: &'a str,
) -> impl Fn(Ipv4Addr) -> Claim + 'a {
    move |ip| Claim {
        network_id: net.id.clone(),
        ip,
        mac: MacAddr::from_ipv4(ip),
        host,
        container: container.into(),
        endpoint_id: ids::new_id(),
        aliases: Vec::new(),
    }
}

#[test]
fn two_creates_with_one_name_one_wins() {
    let etcd = etcd();
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
    let etcd = etcd();
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
                    self::host(&mut store, host, 30);
                    (0..100)
                        .map(|i| {
                            let name = format!("c{i}");
                            store
                                .claim_address(net, None, &BTreeSet::new(), claim(net, host, &name))
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
    self::host(&mut store, host, 30);
    assert!(matches!(
        store.claim_address(&net, Some(taken), &BTreeSet::new(), claim(&net, host, "x")),
        Err(ClusterError::AddressTaken(ip)) if ip == taken
    ));
    // Only its holder gives an address back: a host that lost it (in a
    // conflict) leaves the other's claim alone.
    assert!(
        !store
            .release_address(&net.id, taken, host)
            .expect("release refused"),
        "another host's claim is not released"
    );
    let holder = store
        .claims(&net.id)
        .expect("claims")
        .into_iter()
        .find(|c| c.ip == taken)
        .expect("claim of the taken address")
        .host;
    assert!(
        store
            .release_address(&net.id, taken, holder)
            .expect("release"),
        "the holder releases its claim"
    );
    assert_eq!(
        store
            .claim_address(&net, Some(taken), &BTreeSet::new(), claim(&net, host, "x"))
            .expect("reuse"),
        taken
    );
}

/// A host's registration goes with its lease, its claims do not: they
/// stay until released, and only while the host is down.
#[test]
fn a_down_hosts_claims_stay_until_released() {
    let etcd = etcd();
    let net = network("n", 7000, "10.2.0.0/24");
    let (down_ip, live_ip) = (Ipv4Addr::new(10, 100, 0, 1), Ipv4Addr::new(10, 100, 0, 2));
    let mut live = etcd.connect().expect("connect");
    live.create_network(&net).expect("create");
    live.register_host(
        &HostInfo {
            underlay_ip: live_ip,
            name: "live".into(),
        },
        3,
        0,
    )
    .expect("register live");
    let live_addr = live
        .claim_address(&net, None, &BTreeSet::new(), claim(&net, live_ip, "l"))
        .expect("live claim");
    let mut down = etcd.connect().expect("connect");
    let register_down = |down: &mut ClusterStore| {
        down.register_host(
            &HostInfo {
                underlay_ip: down_ip,
                name: "down".into(),
            },
            2,
            0,
        )
        .expect("register");
    };
    register_down(&mut down);
    let mut down_addrs = BTreeSet::new();
    for c in ["d1", "d2"] {
        down_addrs.insert(
            down.claim_address(&net, None, &BTreeSet::new(), claim(&net, down_ip, c))
                .expect("claim"),
        );
    }
    let err = live.release_host(down_ip).expect_err("registered");
    assert!(
        matches!(err, ClusterError::HostAlive(ip) if ip == down_ip),
        "{err}"
    );

    // It stops renewing (cut off, or its daemon killed).
    let deadline = Instant::now() + Duration::from_secs(15);
    while live.hosts().expect("hosts").len() == 2 {
        assert!(Instant::now() < deadline, "the lease never expired");
        live.keep_alive().expect("renew the live host");
        std::thread::sleep(Duration::from_millis(500));
    }
    let claims = live.claims(&net.id).expect("claims");
    assert_eq!(claims.len(), 3, "its claims outlive its lease: {claims:?}");
    let next = live
        .claim_address(&net, None, &BTreeSet::new(), claim(&net, live_ip, "l2"))
        .expect("claim");
    assert!(
        !down_addrs.contains(&next) && next != live_addr,
        "its addresses are not handed out again: {next}"
    );

    assert_eq!(live.release_host(down_ip).expect("release"), 2);
    let claims = live.claims(&net.id).expect("claims");
    assert!(claims.iter().all(|c| c.host == live_ip), "{claims:?}");
    assert_eq!(live.release_host(down_ip).expect("again"), 0, "idempotent");
    // Back, it may claim again.
    register_down(&mut down);
    assert!(
        down.put_claim(&claim(&net, down_ip, "d1")(
            *down_addrs.first().expect("one")
        ))
        .expect("put")
    );
}

#[test]
fn an_unreachable_store_is_a_clear_error() {
    let held = RefusingPort::new(); // nothing listens there
    let port = held.port;
    let err = ClusterStore::connect(&ClusterOptions {
        endpoints: vec![format!("127.0.0.1:{port}")],
        user: None,
        ca_file: None,
        cert_file: None,
        key_file: None,
        timeout: Duration::from_secs(1),
    })
    .err()
    .expect("nothing answers");
    let msg = err.to_string();
    assert!(
        matches!(err, ClusterError::Unreachable { .. }) && msg.contains(&port.to_string()),
        "{msg}"
    );
}

/// A scratch directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ovl-test-{}", ids::new_id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn auth_credentials_reach_etcd() {
    let etcd = etcd();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut c = etcd_client::Client::connect([etcd.endpoint.as_str()], None).await?;
        c.user_add("root", "s3cret", None).await?;
        c.user_grant_role("root", "root").await?;
        c.auth_enable().await?;
        Ok::<(), etcd_client::Error>(())
    })
    .expect("enable auth");
    // The daemon's path: user in the stored settings, password from a file.
    let dir = TempDir::new();
    let password = dir.0.join("password");
    let connect = |pw: &str| {
        std::fs::write(&password, format!("{pw}\n")).expect("password file");
        let record = ClusterRecord {
            endpoints: vec![etcd.endpoint.clone()],
            user: Some("root".into()),
            password_file: Some(password.clone()),
            ..ClusterRecord::default()
        };
        ClusterStore::connect(
            &ClusterOptions::from_record(&record, Duration::from_secs(2)).expect("options"),
        )
    };
    let mut store = connect("s3cret").expect("the right password connects");
    host(&mut store, Ipv4Addr::new(10, 100, 0, 1), 10);
    assert_eq!(store.hosts().expect("hosts").len(), 1, "and may write");
    let wrong = connect("nope").err().expect("a wrong password is refused");
    assert!(
        format!("{wrong} {:?}", std::error::Error::source(&wrong))
            .contains("authentication failed"),
        "{wrong:?}"
    );
    let anonymous = etcd.connect().err().expect("no credentials, no access");
    assert!(
        !matches!(anonymous, ClusterError::Unreachable { .. }),
        "refused, not unreachable: {anonymous:?}"
    );
}

fn openssl(dir: &std::path::Path, args: &str) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args.split(' '))
        .output()
        .expect("openssl (apt package openssl)");
    assert!(
        out.status.success(),
        "openssl {args}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tls_with_client_certificates() {
    let dir = TempDir::new();
    let d = &dir.0;
    openssl(
        d,
        "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=overlay-test-ca",
    );
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("ext");
    for who in ["server", "client"] {
        openssl(
            d,
            &format!(
                "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout {who}.key -out {who}.csr -subj /CN={who}"
            ),
        );
        openssl(
            d,
            &format!(
                "x509 -req -in {who}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out {who}.pem -days 1 -extfile san.ext"
            ),
        );
    }
    let etcd = Etcd::on_loopback_tls(EtcdTls {
        ca: d.join("ca.pem"),
        server_cert: d.join("server.pem"),
        server_key: d.join("server.key"),
        client_cert: d.join("client.pem"),
        client_key: d.join("client.key"),
    })
    .expect("etcd over TLS");
    let mut store = etcd.connect().expect("CA and client certificate connect");
    host(&mut store, Ipv4Addr::new(10, 100, 0, 1), 10);
    assert_eq!(store.hosts().expect("hosts").len(), 1);
    let without_cert = ClusterStore::connect(&ClusterOptions {
        cert_file: None,
        key_file: None,
        ..etcd.options()
    });
    assert!(
        without_cert.is_err(),
        "a client without a certificate is refused"
    );
    let plain = ClusterStore::connect(&ClusterOptions {
        ca_file: None,
        cert_file: None,
        key_file: None,
        ..etcd.options()
    });
    assert!(plain.is_err(), "plain HTTP is refused");
}
