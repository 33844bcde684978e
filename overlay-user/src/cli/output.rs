//! What the commands print: tables shaped like Docker's, JSON for tools.

use serde_json::json;

use crate::api::{
    ContainerSummary, CounterRow, HostView, NetworkSummary, PeerView, Response, StatusView,
};

/// How a command wants its answer shown.
#[derive(Clone, Copy, Debug, Default)]
pub struct Display {
    /// Only IDs (`network ls -q`).
    pub quiet: bool,
    /// JSON instead of a table.
    pub json: bool,
}

/// Docker's 12-digit short ID.
fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// A warning that goes with `response` (to stderr).
pub fn warning(response: &Response) -> Option<&str> {
    match response {
        Response::Attached { attached, .. } if !attached.auto => attached.reason.as_deref(),
        _ => None,
    }
}

/// The text to print for `response` (empty: print nothing).
pub fn render(response: &Response, display: Display) -> serde_json::Result<String> {
    Ok(match response {
        Response::Done => String::new(),
        Response::Id(id) => id.clone(),
        Response::Names(names) => names.join("\n"),
        Response::Networks(rows) => networks(rows, display)?,
        Response::Inspect(nets) => serde_json::to_string_pretty(nets)?,
        Response::Containers(rows) => containers(rows, display)?,
        Response::Pruned(names) if names.is_empty() => String::new(),
        Response::Pruned(names) => format!("Deleted Networks:\n{}", names.join("\n")),
        Response::Attached { iface, attached } => match (&attached.reason, attached.auto) {
            (Some(why), true) => format!(
                "attached to {iface} as {}: decap {} (auto: {why})",
                attached.ip, attached.mode
            ),
            _ => format!(
                "attached to {iface} as {}: decap {}",
                attached.ip, attached.mode
            ),
        },
        Response::Detached { iface } => format!("detached from {iface}"),
        Response::Status(s) => status(s),
        Response::Stats(rows) => stats(rows),
        Response::Peers(rows) => peers(rows),
        Response::Hosts(rows) => hosts(rows),
        Response::MonitorContext(c) => serde_json::to_string(c)?,
        Response::Trace(t) if display.json => serde_json::to_string_pretty(t)?,
        Response::Trace(t) => trace(t),
        Response::Released(rows) => rows
            .iter()
            .map(|(ip, n)| format!("{ip}: released {n} addresses"))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

fn networks(rows: &[NetworkSummary], display: Display) -> serde_json::Result<String> {
    if display.quiet {
        return Ok(rows
            .iter()
            .map(|n| short(&n.id))
            .collect::<Vec<_>>()
            .join("\n"));
    }
    if display.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|n| json!({"ID": short(&n.id), "Name": n.name, "Driver": n.driver, "Scope": n.scope}))
            .collect();
        return serde_json::to_string(&rows);
    }
    let mut out = format!(
        "{:<14}{:<24}{:<10}{}",
        "NETWORK ID", "NAME", "DRIVER", "SCOPE"
    );
    for n in rows {
        out.push_str(&format!(
            "\n{:<14}{:<24}{:<10}{}",
            short(&n.id),
            n.name,
            n.driver,
            n.scope
        ));
    }
    Ok(out)
}

fn containers(rows: &[ContainerSummary], display: Display) -> serde_json::Result<String> {
    if display.json {
        let rows: Vec<_> = rows
            .iter()
            .map(|c| {
                json!({
                    "ID": short(&c.id),
                    "Name": c.name,
                    "Status": c.status,
                    "Networks": c.networks.join(","),
                    "Command": c.command.join(" "),
                    "Pid": c.pid,
                })
            })
            .collect();
        return serde_json::to_string(&rows);
    }
    let mut out = format!(
        "{:<14}{:<20}{:<10}{:<24}{}",
        "CONTAINER ID", "NAME", "STATUS", "NETWORKS", "COMMAND"
    );
    for c in rows {
        out.push_str(&format!(
            "\n{:<14}{:<20}{:<10}{:<24}{}",
            short(&c.id),
            c.name,
            c.status,
            c.networks.join(","),
            c.command.join(" ")
        ));
    }
    Ok(out)
}

/// Rejected cluster records named in `status`, at most.
const REJECTED_SHOWN: usize = 8;
/// Cached next hops shown in `status`, at most.
const NEXT_HOPS_SHOWN: usize = 8;

fn status(s: &StatusView) -> String {
    let mut out = format!("pins: {}\n", s.pin_dir);
    match &s.underlay {
        Some(u) => {
            out.push_str(&format!("underlay: {} {} decap {}", u.iface, u.ip, u.decap));
            match (&u.reason, u.auto) {
                (Some(why), true) => out.push_str(&format!(" (auto: {why})")),
                (Some(why), false) => out.push_str(&format!(" (warning: {why})")),
                (None, _) => {}
            }
            out.push('\n');
        }
        None => out.push_str("underlay: not attached (overlay attach --iface NIC)\n"),
    }
    if s.next_hops.is_empty() {
        out.push_str("underlay next hops: none cached\n");
    } else {
        let mut list: Vec<String> = s
            .next_hops
            .iter()
            .take(NEXT_HOPS_SHOWN)
            .map(|h| {
                let age = if h.fresh { "fresh" } else { "stale" };
                format!(
                    "{} via {} on {} mtu {} {age}",
                    h.remote, h.mac, h.device, h.mtu
                )
            })
            .collect();
        if s.next_hops.len() > NEXT_HOPS_SHOWN {
            list.push(format!("and {} more", s.next_hops.len() - NEXT_HOPS_SHOWN));
        }
        out.push_str(&format!(
            "underlay next hops: {} cached ({})\n",
            s.next_hops.len(),
            list.join(", ")
        ));
    }
    for c in &s.conflicts {
        out.push_str(&format!("address conflict: {c}\n"));
    }
    if !s.path_mtus.is_empty() {
        let list: Vec<String> = s
            .path_mtus
            .iter()
            .map(|p| format!("{} {} ({}s left)", p.remote, p.mtu, p.expires_in))
            .collect();
        out.push_str(&format!(
            "underlay path MTUs learned from ICMP: {}\n",
            list.join(", ")
        ));
    }
    match &s.cluster {
        Some(c) => {
            let hosts: Vec<String> = c
                .hosts
                .iter()
                .map(|(name, ip)| format!("{name} ({ip})"))
                .collect();
            out.push_str(&format!(
                "cluster: etcd {} as {} lease {:x} ttl {}s\ncluster hosts: {} [{}]\n",
                c.endpoints.join(","),
                c.advertise.map_or_else(|| "?".into(), |ip| ip.to_string()),
                c.lease,
                c.lease_ttl,
                hosts.len(),
                hosts.join(", ")
            ));
            out.push_str(&format!("cluster records rejected: {}", c.rejected));
            for (key, why) in c.rejected_samples.iter().take(REJECTED_SHOWN) {
                // Debug quoting: a key holds whatever a writer put there.
                out.push_str(&format!("\n  {key:?}: {why}"));
            }
            out.push('\n');
        }
        None => out.push_str("cluster: none (embedded store; overlay daemon --store etcd://...)\n"),
    }
    out.push_str(&format!("pinned links: {}\n", s.pinned_links));
    out.push_str(&format!(
        "networks: {}  containers: {}  endpoints: {}\n",
        s.networks, s.containers, s.endpoints
    ));
    out.push_str(&format!(
        "packets: {} forwarded/handled, {} dropped",
        s.handled, s.dropped
    ));
    out
}

fn trace(t: &crate::engine::TraceView) -> String {
    let mut out = format!(
        "from {} ({}, network {}, program on {}) to {}",
        t.container, t.src, t.network, t.interface, t.dst
    );
    for (i, s) in t.steps.iter().enumerate() {
        out.push_str(&format!(
            "\n{}. {}: {}: {}",
            i + 1,
            s.packet,
            s.verdict,
            s.detail
        ));
    }
    out
}

fn stats(rows: &[CounterRow]) -> String {
    let mut out = format!("{:<28} {:>12} {:>16}", "COUNTER", "PACKETS", "BYTES");
    for r in rows {
        out.push_str(&format!(
            "\n{:<28} {:>12} {:>16}",
            r.name, r.packets, r.bytes
        ));
    }
    out
}

fn hosts(rows: &[HostView]) -> String {
    let mut out = format!("{:<16} {:<20} {:<18} ENDPOINTS", "HOST", "NAME", "STATE");
    for h in rows {
        let state = match h.down_for {
            Some(secs) => format!("down {secs}s"),
            None => "registered".into(),
        };
        out.push_str(&format!(
            "\n{:<16} {:<20} {:<18} {}",
            h.ip.to_string(),
            h.name.as_deref().unwrap_or("-"),
            state,
            h.endpoints
        ));
    }
    out
}

fn peers(rows: &[PeerView]) -> String {
    let mut out = format!("{:<16} NETWORK", "HOST");
    for p in rows {
        out.push_str(&format!("\n{:<16} {}", p.host.to_string(), p.network));
    }
    out
}
