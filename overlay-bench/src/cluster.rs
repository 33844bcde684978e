//! Cluster convergence: how long after `overlay network connect` on one host
//! a container on another host first gets an answer from the new endpoint.
//! Two simulated hosts run their agents against one etcd on the underlay
//! switch, driven through the real `overlay` binary.
//!
//! The pinging container has a permanent neighbour entry for the new
//! address (the MAC is derived from it), so the kernel's ARP retry timer
//! (1 s) does not quantise the result: `ping -i 0.002` sends every 2 ms from
//! before the connect starts, and its first reply's timestamp marks the
//! moment the other host's dataplane learned the endpoint.

use std::{
    net::Ipv4Addr,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use overlay_testkit::{
    NetNs,
    cli::{Host, SWITCH_IP, Switch, eventually},
    etcd::Etcd,
};
use overlay_user::model::MacAddr;
use serde::Serialize;

/// Convergence over several connects.
#[derive(Clone, Debug, Serialize)]
pub struct Convergence {
    pub rounds: usize,
    /// From starting `network connect` on host 2 to the first reply seen
    /// by a container on host 1, milliseconds.
    pub median_ms: f64,
    pub max_ms: f64,
    /// How long the `network connect` command itself took, milliseconds.
    pub connect_median_ms: f64,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `rounds` connects and measures each; panics with a message when the
/// topology cannot be built (a fixture, like the tests').
pub fn convergence(binary: &Path, rounds: usize) -> Convergence {
    let hosts = [Host::new(binary), Host::new(binary)];
    let mut switch = Switch::new(&hosts[0].tag);
    for h in &hosts {
        switch.plug(h);
        h.ok(&["attach", "--iface", "eth0", "--decap", "tc"]);
    }
    let etcd = Etcd::in_netns(switch.ns.name(), SWITCH_IP.parse().expect("switch address"))
        .expect("etcd in the switch namespace");
    let mut hosts = hosts;
    for h in &mut hosts {
        h.start_daemon(&["--store", &format!("etcd://{}", etcd.endpoint)]);
    }
    for h in &hosts {
        assert!(
            eventually(15, || h.ok(&["status"]).contains("cluster hosts: 2 ")).is_some(),
            "hosts never saw each other:\n{}",
            h.log()
        );
    }
    let [h1, h2] = &hosts;
    let id = h1.ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--subnet",
        "10.250.0.0/24",
        "conv",
    ]);
    assert!(
        eventually(10, || h2
            .ok(&["network", "ls", "-q"])
            .lines()
            .any(|l| id.starts_with(l)))
        .is_some(),
        "host 2 never learned the network"
    );
    let a = h1.container("a", "conv");
    let mut took = Vec::new();
    let mut connect = Vec::new();
    for round in 0..rounds {
        let ns = NetNs::new(&h2.name(&format!("c{round}"))).expect("namespace");
        let ip = Ipv4Addr::new(10, 250, 0, 100 + u8::try_from(round).expect("rounds < 100"));
        let a_ns = NetNs::existing(&a);
        a_ns.exec(&[
            "ip",
            "neigh",
            "replace",
            &ip.to_string(),
            "lladdr",
            &MacAddr::from_ipv4(ip).to_string(),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])
        .expect("neighbour entry");
        let pinger = a_ns
            .command("ping")
            .args(["-D", "-n", "-c", "1", "-i", "0.002", "-w", "10"])
            .arg(ip.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("ping");
        // Let the pinger start sending before the clock starts.
        std::thread::sleep(Duration::from_millis(50));
        let t0 = now();
        h2.ok(&[
            "network",
            "connect",
            "--ip",
            &ip.to_string(),
            "conv",
            ns.name(),
        ]);
        connect.push((now() - t0) * 1e3);
        let out = pinger.wait_with_output().expect("ping result");
        let text = String::from_utf8_lossy(&out.stdout);
        // "[1732791234.123456] 64 bytes from ..."
        let reply = text
            .lines()
            .find(|l| l.contains("bytes from"))
            .and_then(|l| l.strip_prefix('[')?.split(']').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no reply from {ip} within 10 s: {text}"));
        took.push((reply - t0) * 1e3);
        h2.ok(&["network", "disconnect", "conv", ns.name()]);
        h2.ok(&["rm", ns.name()]);
    }
    Convergence {
        rounds,
        max_ms: took.iter().copied().fold(0.0, f64::max),
        median_ms: median(took),
        connect_median_ms: median(connect),
    }
}
