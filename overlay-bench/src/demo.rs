//! The demo: two simulated hosts on a veth underlay, containers on two
//! overlay networks, traffic within and across hosts, isolation between
//! networks, a container on both, and the counters. Everything it creates
//! is removed when it returns (also on failure).

use std::net::Ipv4Addr;

use anyhow::{Context as _, bail};
use overlay_common::{Counter, DropReason};
use overlay_testkit::lab::Lab;
use overlay_user::model::DecapRequest;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("demo addresses are valid")
}

struct Score {
    failed: u32,
}

impl Score {
    fn check(&mut self, ok: bool, what: &str) {
        println!("  [{}] {what}", if ok { "ok" } else { "FAILED" });
        if !ok {
            self.failed += 1;
        }
    }
}

pub fn run(decap: DecapRequest) -> anyhow::Result<()> {
    println!("== two hosts (namespaces) joined by a veth underlay, this dataplane on each");
    let mut lab = Lab::two_hosts(decap).context("building the hosts")?;
    for h in &lab.hosts {
        let mode = h.decap.map_or_else(|| "-".into(), |m| m.to_string());
        println!(
            "  host {} underlay {} decap {mode}",
            h.ns.name(),
            h.underlay_ip
        );
    }
    println!("== networks: frontend (VNI 100, 10.10.0.0/24), backend (VNI 200, 10.20.0.0/24)");
    lab.add_network(100, "10.10.0.0/24")?;
    lab.add_network(200, "10.20.0.0/24")?;
    println!("== containers");
    let web = lab.add_container(0, "web", &[(100, ip("10.10.0.2"))])?;
    let db = lab.add_container(0, "db", &[(200, ip("10.20.0.2"))])?;
    let cache = lab.add_container(1, "cache", &[(200, ip("10.20.0.3"))])?;
    let api = lab.add_container(1, "api", &[(100, ip("10.10.0.3")), (200, ip("10.20.0.4"))])?;
    for c in &lab.containers {
        let addrs: Vec<String> = c
            .attachments
            .iter()
            .map(|a| format!("{}={} (VNI {})", a.ifname, a.ip, a.vni))
            .collect();
        println!(
            "  {} on host {}: {}",
            c.ns.name(),
            c.host + 1,
            addrs.join(", ")
        );
    }

    let mut score = Score { failed: 0 };
    println!("== same network");
    score.check(
        lab.ping(db, ip("10.20.0.3"), 3),
        "db (host 1) -> cache (host 2): across hosts over VXLAN",
    );
    score.check(
        lab.ping(web, ip("10.10.0.3"), 3),
        "web (host 1) -> api (host 2): across hosts over VXLAN",
    );
    score.check(
        lab.ping(api, ip("10.20.0.3"), 3),
        "api -> cache: same host, redirected straight into its namespace",
    );
    println!("== isolation");
    score.check(
        lab.ping_fails(web, ip("10.20.0.2"), 1),
        "web cannot reach db (other network, same host)",
    );
    score.check(
        lab.ping_fails(web, ip("10.20.0.3"), 1),
        "web cannot reach cache (other network, other host)",
    );
    score.check(
        lab.ping_fails(cache, ip("10.10.0.2"), 1),
        "cache cannot reach web (other direction)",
    );
    println!("== a container on both networks");
    score.check(
        lab.ping(api, ip("10.10.0.2"), 2),
        "api reaches web on frontend",
    );
    score.check(
        lab.ping(api, ip("10.20.0.2"), 2),
        "api reaches db on backend",
    );

    println!("== counters");
    for (i, h) in lab.hosts.iter().enumerate() {
        let c = h.dp().counters()?;
        let show = |name: &str, v: overlay_common::CounterValue| {
            if v.packets > 0 {
                println!("  host {} {name:<24} {:>6} packets", i + 1, v.packets);
            }
        };
        for c2 in Counter::ALL {
            show(c2.name(), c.outcome(c2));
        }
        for r in DropReason::ALL {
            show(r.name(), c.drop(r));
        }
    }
    println!("== cleaning up (namespaces, veths, pinned maps and links)");
    drop(lab);
    if score.failed > 0 {
        bail!("{} demo checks failed", score.failed);
    }
    println!("demo finished: all checks passed");
    Ok(())
}
