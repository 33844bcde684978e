//! What the read-only commands print: tables shaped like Docker's, and JSON
//! shaped like `docker network inspect`.

use overlay_user::{
    engine::{self, Engine},
    store::NetworkRecord,
};
use serde_json::{Value, json};

/// `network ls`.
pub fn network_ls(nets: &[&NetworkRecord], quiet: bool, as_json: bool) -> anyhow::Result<String> {
    if quiet {
        return Ok(nets
            .iter()
            .map(|n| &n.id[..12])
            .collect::<Vec<_>>()
            .join("\n"));
    }
    if as_json {
        let rows: Vec<Value> = nets
            .iter()
            .map(|n| json!({"ID": &n.id[..12], "Name": n.name, "Driver": n.driver.name(), "Scope": n.driver.scope()}))
            .collect();
        return Ok(serde_json::to_string(&rows)?);
    }
    let mut out = format!(
        "{:<14}{:<24}{:<10}{}",
        "NETWORK ID", "NAME", "DRIVER", "SCOPE"
    );
    for n in nets {
        out.push_str(&format!(
            "\n{:<14}{:<24}{:<10}{}",
            &n.id[..12],
            n.name,
            n.driver.name(),
            n.driver.scope()
        ));
    }
    Ok(out)
}

/// One network, as `docker network inspect` shows it.
pub fn network_json(engine: &Engine, n: &NetworkRecord) -> Value {
    let mut containers = serde_json::Map::new();
    for c in engine.containers_on(&n.id) {
        for e in c.endpoints.iter().filter(|e| e.network_id == n.id) {
            containers.insert(
                c.id.clone(),
                json!({
                    "Name": c.name,
                    "EndpointID": e.id,
                    "MacAddress": e.mac.to_string(),
                    "IPv4Address": format!("{}/{}", e.ip, n.subnet.prefix_len()),
                    "IPv6Address": "",
                }),
            );
        }
    }
    // Containers on other hosts (cluster mode), as this host last learned them.
    for e in engine
        .state
        .learned
        .values()
        .filter(|e| e.network_id == n.id)
    {
        containers.insert(
            format!("ep-{}", e.endpoint_id),
            json!({
                "Name": e.container,
                "EndpointID": e.endpoint_id,
                "MacAddress": e.mac.to_string(),
                "IPv4Address": format!("{}/{}", e.ip, n.subnet.prefix_len()),
                "IPv6Address": "",
                "Host": e.host.to_string(),
            }),
        );
    }
    let mut config = json!({"Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string()});
    if let Some(range) = n.ip_range {
        config["IPRange"] = json!(range.to_string());
    }
    let mut options = json!({"com.docker.network.driver.mtu": n.mtu.to_string()});
    if n.driver == overlay_user::store::Driver::Overlay {
        options["com.docker.network.driver.overlay.vxlanid_list"] = json!(n.vni.to_string());
    }
    // Hosts taking part in the network: this one, static peers, and (in
    // cluster mode) every host with containers on it.
    let mut hosts: std::collections::BTreeSet<std::net::Ipv4Addr> = engine
        .state
        .peers
        .iter()
        .filter(|(_, id)| *id == n.id)
        .map(|(ip, _)| *ip)
        .collect();
    hosts.extend(
        engine
            .state
            .learned
            .values()
            .filter(|e| e.network_id == n.id)
            .map(|e| e.host),
    );
    let mut peers: Vec<Value> = Vec::new();
    if let Some(ip) = engine.advertise_ip() {
        hosts.remove(&ip);
        peers.push(json!({"Name": "self", "IP": ip.to_string()}));
    }
    for ip in hosts {
        let name = engine
            .state
            .cluster_hosts
            .get(&ip)
            .cloned()
            .unwrap_or_else(|| ip.to_string());
        peers.push(json!({"Name": name, "IP": ip.to_string()}));
    }
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": n.created,
        "Scope": n.driver.scope(),
        "Driver": n.driver.name(),
        "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [config]},
        "Internal": n.internal,
        "Attachable": false,
        "Containers": containers,
        "Options": options,
        "Labels": n.labels,
        "Peers": peers,
    })
}

/// `ps`.
pub fn ps(engine: &Engine, all: bool, as_json: bool) -> anyhow::Result<String> {
    let rows: Vec<Value> = engine
        .state
        .containers
        .values()
        .filter(|c| all || engine::is_running(c.pid))
        .map(|c| {
            let networks: Vec<&str> = c
                .endpoints
                .iter()
                .filter_map(|e| {
                    engine
                        .state
                        .networks
                        .get(&e.network_id)
                        .map(|n| n.name.as_str())
                })
                .collect();
            let status = if engine::is_running(c.pid) {
                "running"
            } else if c.owned_netns {
                "exited"
            } else {
                "external"
            };
            json!({
                "ID": &c.id[..12],
                "Name": c.name,
                "Status": status,
                "Networks": networks.join(","),
                "Command": c.command.join(" "),
                "Pid": c.pid,
            })
        })
        .collect();
    if as_json {
        return Ok(serde_json::to_string(&rows)?);
    }
    let mut out = format!(
        "{:<14}{:<20}{:<10}{:<24}{}",
        "CONTAINER ID", "NAME", "STATUS", "NETWORKS", "COMMAND"
    );
    for r in &rows {
        let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        out.push_str(&format!(
            "\n{:<14}{:<20}{:<10}{:<24}{}",
            s("ID"),
            s("Name"),
            s("Status"),
            s("Networks"),
            s("Command")
        ));
    }
    Ok(out)
}

/// `status`.
pub fn status(engine: &Engine) -> anyhow::Result<String> {
    let dp = engine.dataplane();
    let mut out = format!("pins: {}\n", dp.pin_dir().display());
    match &engine.state.host {
        Some(h) => out.push_str(&format!(
            "underlay: {} {} decap {}\n",
            h.iface, h.underlay_ip, h.decap
        )),
        None => out.push_str("underlay: not attached (overlay attach --iface NIC)\n"),
    }
    out.push_str(&next_hops(dp)?);
    match &engine.state.cluster {
        Some(c) => {
            let hosts: Vec<String> = engine
                .state
                .cluster_hosts
                .iter()
                .map(|(ip, name)| format!("{name} ({ip})"))
                .collect();
            out.push_str(&format!(
                "cluster: etcd {} as {} lease {:x} ttl {}s\ncluster hosts: {} [{}]\n",
                c.endpoints.join(","),
                engine
                    .advertise_ip()
                    .map_or_else(|| "?".into(), |ip| ip.to_string()),
                c.lease,
                c.lease_ttl,
                hosts.len(),
                hosts.join(", ")
            ));
        }
        None => out.push_str("cluster: none (embedded store; overlay daemon --store etcd://...)\n"),
    }
    let links: Vec<String> = std::fs::read_dir(dp.pin_dir().join("links"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.push_str(&format!("pinned links: {}\n", links.len()));
    out.push_str(&format!(
        "networks: {}  containers: {}  endpoints: {}\n",
        engine.state.networks.len(),
        engine.state.containers.len(),
        engine
            .state
            .containers
            .values()
            .map(|c| c.endpoints.len())
            .sum::<usize>()
    ));
    let c = dp.counters()?;
    let total = |m: &std::collections::BTreeMap<&str, overlay_common::CounterValue>| {
        m.values().map(|v| v.packets).sum::<u64>()
    };
    out.push_str(&format!(
        "packets: {} forwarded/handled, {} dropped",
        total(&c.outcomes),
        total(&c.drops)
    ));
    Ok(out)
}

/// The encap path's next-hop cache, one line: remote hosts it has sent to
/// lately, the MAC and device it used, and whether the entry is still
/// trusted (fresh) or will be looked up again on the next packet (stale).
fn next_hops(dp: &crate::Dataplane) -> anyhow::Result<String> {
    let hops = dp.next_hops()?;
    if hops.is_empty() {
        return Ok("underlay next hops: none cached\n".into());
    }
    // bpf_ktime_get_coarse_ns is CLOCK_MONOTONIC_COARSE.
    // SAFETY: clock_gettime fills the timespec it is given.
    let now = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts);
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    };
    const SHOWN: usize = 8;
    let mut list: Vec<String> = hops
        .iter()
        .take(SHOWN)
        .map(|(ip, hop)| {
            let dev = crate::netns::ifname(hop.ifindex).unwrap_or_else(|_| hop.ifindex.to_string());
            let age = if now < hop.expires_ns {
                "fresh"
            } else {
                "stale"
            };
            format!("{ip} via {} on {dev} {age}", crate::MacAddr(hop.dmac))
        })
        .collect();
    if hops.len() > SHOWN {
        list.push(format!("and {} more", hops.len() - SHOWN));
    }
    Ok(format!(
        "underlay next hops: {} cached ({})\n",
        hops.len(),
        list.join(", ")
    ))
}

/// `stats`.
/// `stats [--network NET]`: every counter of this host, or of one network.
pub fn stats(engine: &Engine, network: Option<&str>) -> anyhow::Result<String> {
    let c = match network {
        Some(key) => {
            let net = engine.network(key)?;
            engine.dataplane().network_counters(net.vni)?
        }
        None => engine.dataplane().counters()?,
    };
    let mut out = format!("{:<28} {:>12} {:>16}", "COUNTER", "PACKETS", "BYTES");
    for (name, v) in c.outcomes.iter().chain(c.drops.iter()) {
        out.push_str(&format!("\n{name:<28} {:>12} {:>16}", v.packets, v.bytes));
    }
    Ok(out)
}
