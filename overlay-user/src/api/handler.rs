//! Runs one [`Command`] against an engine (inside its transaction) and
//! builds the views the read-only commands return.

use std::collections::{BTreeMap, BTreeSet};

use overlay_common::CounterValue;

use super::{
    Command, Response,
    views::{
        ClusterStatus, ContainerSummary, CounterRow, HostView, InspectEndpoint, InspectPeer, Ipam,
        IpamConfig, NetworkInspect, NetworkSummary, NextHopView, PathMtuView, PeerView, StatusView,
        UnderlayView,
    },
};
use crate::{
    engine::{ConnectOptions, Engine, EngineError},
    host,
    model::{ContainerRecord, DecapRequest, Driver, NetworkRecord},
};

/// Runs `command`; the caller commits or rolls back.
pub fn execute(engine: &mut Engine, command: Command) -> Result<Response, EngineError> {
    Ok(match command {
        Command::NetworkCreate(opts) => {
            // Those are the plugin's, on Docker's behalf.
            if opts.id.is_some() || opts.docker {
                return Err(EngineError::DockerOwned(opts.name));
            }
            Response::Id(engine.create_network(&opts)?)
        }
        Command::NetworkLs { filters } => Response::Networks(
            engine
                .state()
                .networks
                .values()
                .filter(|n| matches(n, &filters))
                .map(|n| NetworkSummary {
                    id: n.id.clone(),
                    name: n.display_name().to_owned(),
                    driver: n.driver.name().into(),
                    scope: n.driver.scope().into(),
                })
                .collect(),
        ),
        Command::NetworkInspect { networks } => {
            let mut out = Vec::new();
            for key in &networks {
                out.push(inspect(engine, engine.network(key)?));
            }
            Response::Inspect(out)
        }
        Command::NetworkRm { networks } => Response::Names(engine.remove_networks(&networks)?),
        Command::NetworkPrune => Response::Pruned(engine.prune_networks()?),
        Command::NetworkConnect {
            network,
            container,
            ip,
            gw_priority,
            aliases,
        } => {
            if let Ok(c) = engine.container(&container) {
                engine.check_no_conflict(c)?;
            }
            let options = ConnectOptions {
                ip,
                gw_priority,
                aliases,
            };
            engine.connect(&network, &container, options)?;
            Response::Done
        }
        Command::NetworkDisconnect { network, container } => {
            engine.disconnect(&network, &container)?;
            Response::Done
        }
        Command::Ps { all } => Response::Containers(ps(engine, all)),
        Command::Stop { containers } => {
            resolve_all(engine, &containers)?;
            let mut names = Vec::new();
            for key in &containers {
                names.push(engine.stop_container(key)?);
            }
            Response::Names(names)
        }
        Command::Rm { containers, force } => {
            // Every name must resolve before anything is removed.
            for c in resolve_all(engine, &containers)? {
                if !force && engine.is_running(c.process()) {
                    return Err(EngineError::Running(c.name));
                }
            }
            let mut names = Vec::new();
            for key in &containers {
                names.push(engine.remove_container(key, force)?);
            }
            Response::Names(names)
        }
        Command::Rename { container, name } => {
            engine.rename_container(&container, &name)?;
            Response::Done
        }
        Command::Attach {
            iface,
            underlay_ip,
            decap,
        } => {
            let attached = engine.attach(&iface, underlay_ip, decap)?;
            Response::Attached { iface, attached }
        }
        Command::Detach => Response::Detached {
            iface: engine.detach()?,
        },
        Command::Status => Response::Status(Box::new(status(engine)?)),
        Command::Stats { network } => Response::Stats(stats(engine, network.as_deref())?),
        Command::Trace {
            from,
            to,
            proto,
            port,
        } => Response::Trace(engine.trace(&from, to, proto, port)?),
        Command::MonitorContext => {
            let state = engine.state();
            let host = state
                .advertise_ip()
                .and_then(|ip| state.cluster_hosts.get(&ip).cloned())
                .unwrap_or_else(crate::host::hostname);
            Response::MonitorContext(super::MonitorContext {
                host,
                networks: state
                    .networks
                    .values()
                    .map(|n| (n.vni, n.name.clone(), n.id.clone()))
                    .collect(),
            })
        }
        Command::PeerAdd { remote, network } => {
            engine.add_peer(remote, &network)?;
            Response::Done
        }
        Command::PeerRm { remote, network } => {
            engine.remove_peer(remote, &network)?;
            Response::Done
        }
        Command::PeerLs => {
            let state = engine.state();
            Response::Peers(
                state
                    .peers
                    .iter()
                    .map(|(ip, id)| PeerView {
                        host: *ip,
                        network: state
                            .networks
                            .get(id)
                            .map_or_else(|| "?".into(), |n| n.name.clone()),
                    })
                    .collect(),
            )
        }
        Command::HostLs => Response::Hosts(
            engine
                .cluster_hosts()
                .into_iter()
                .map(|h| HostView {
                    ip: h.ip,
                    name: h.name,
                    down_for: h.down_for,
                    endpoints: h.endpoints,
                })
                .collect(),
        ),
        Command::HostRm { hosts } => {
            let mut released = Vec::new();
            for ip in hosts {
                released.push((ip, engine.remove_cluster_host(ip)?));
            }
            Response::Released(released)
        }
        Command::EndpointAdd {
            remote,
            network,
            ip,
            mac,
        } => {
            engine.add_remote(&network, ip, mac, remote)?;
            Response::Done
        }
        Command::EndpointRm { network, ip } => {
            engine.remove_remote(&network, ip)?;
            Response::Done
        }
    })
}

fn resolve_all(engine: &Engine, keys: &[String]) -> Result<Vec<ContainerRecord>, EngineError> {
    keys.iter().map(|k| engine.container(k).cloned()).collect()
}

/// `network ls --filter`: every filter must match (unknown keys match
/// nothing, as in Docker).
fn matches(n: &NetworkRecord, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| match k.as_str() {
        "name" => n.display_name().contains(v.as_str()),
        "id" => n.id.starts_with(v.as_str()),
        "driver" => n.driver.name() == v,
        "scope" => n.driver.scope() == v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => n.labels.get(lk).is_some_and(|x| x == lv),
            None => n.labels.contains_key(v.as_str()),
        },
        _ => false,
    })
}

/// One network, as `docker network inspect` shows it.
fn inspect(engine: &Engine, n: &NetworkRecord) -> NetworkInspect {
    let state = engine.state();
    let address = |ip| format!("{ip}/{}", n.subnet.prefix_len());
    let mut containers = BTreeMap::new();
    for c in state.containers_on(&n.id) {
        for e in c.endpoints.iter().filter(|e| e.network_id == n.id) {
            containers.insert(
                c.id.clone(),
                InspectEndpoint {
                    name: c.name.clone(),
                    endpoint_id: e.id.clone(),
                    mac_address: e.mac.to_string(),
                    ipv4_address: address(e.ip),
                    ipv6_address: String::new(),
                    host: None,
                },
            );
        }
    }
    // Containers on other hosts (cluster mode), as this host last learned them.
    for e in state.learned.values().filter(|e| e.network_id == n.id) {
        containers.insert(
            format!("ep-{}", e.endpoint_id),
            InspectEndpoint {
                name: e.container.clone(),
                endpoint_id: e.endpoint_id.clone(),
                mac_address: e.mac.to_string(),
                ipv4_address: address(e.ip),
                ipv6_address: String::new(),
                host: Some(e.host.to_string()),
            },
        );
    }
    let mut options = BTreeMap::from([(
        "com.docker.network.driver.mtu".to_owned(),
        n.mtu.to_string(),
    )]);
    if n.driver == Driver::Overlay {
        options.insert(
            "com.docker.network.driver.overlay.vxlanid_list".into(),
            n.vni.to_string(),
        );
    }
    let mut hosts: BTreeSet<std::net::Ipv4Addr> = state
        .peers
        .iter()
        .filter(|(_, id)| *id == n.id)
        .map(|(ip, _)| *ip)
        .collect();
    hosts.extend(
        state
            .learned
            .values()
            .filter(|e| e.network_id == n.id)
            .map(|e| e.host),
    );
    let mut peers = Vec::new();
    if let Some(ip) = state.advertise_ip() {
        hosts.remove(&ip);
        peers.push(InspectPeer {
            name: "self".into(),
            ip: ip.to_string(),
        });
    }
    for ip in hosts {
        peers.push(InspectPeer {
            name: state
                .cluster_hosts
                .get(&ip)
                .cloned()
                .unwrap_or_else(|| ip.to_string()),
            ip: ip.to_string(),
        });
    }
    NetworkInspect {
        name: n.display_name().to_owned(),
        id: n.id.clone(),
        created: n.created.clone(),
        scope: n.driver.scope().into(),
        driver: n.driver.name().into(),
        enable_ipv6: false,
        ipam: Ipam {
            driver: "default".into(),
            options: BTreeMap::new(),
            config: vec![IpamConfig {
                subnet: n.subnet.to_string(),
                gateway: n.gateway.to_string(),
                ip_range: n.ip_range.map(|r| r.to_string()),
            }],
        },
        internal: n.internal,
        attachable: false,
        containers,
        options,
        labels: n.labels.clone(),
        peers,
    }
}

fn ps(engine: &Engine, all: bool) -> Vec<ContainerSummary> {
    let state = engine.state();
    state
        .containers
        .values()
        .filter(|c| all || engine.is_running(c.process()))
        .map(|c| ContainerSummary {
            id: c.id.clone(),
            name: c.name.clone(),
            status: {
                let status = if engine.is_running(c.process()) {
                    "running"
                } else if c.owned_netns {
                    "exited"
                } else {
                    "external"
                };
                if c.endpoints.iter().any(|e| e.conflict.is_some()) {
                    format!("{status}, address conflict")
                } else {
                    status.into()
                }
            },
            networks: c
                .endpoints
                .iter()
                .filter_map(|e| state.networks.get(&e.network_id).map(|n| n.name.clone()))
                .collect(),
            command: c.command.clone(),
            pid: c.pid,
        })
        .collect()
}

/// CLOCK_MONOTONIC_COARSE, the clock of `bpf_ktime_get_coarse_ns`.
fn monotonic_coarse_ns() -> u64 {
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts);
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

fn status(engine: &Engine) -> Result<StatusView, EngineError> {
    let state = engine.state();
    let dp = engine.dataplane();
    let now = monotonic_coarse_ns();
    // Unknown (no /proc/timer_list): every entry shows as stale.
    let jiffies = host::jiffies().unwrap_or(u64::MAX);
    let next_hops = dp
        .next_hops()?
        .into_iter()
        .map(|(remote, hop)| NextHopView {
            remote,
            mtu: hop.mtu,
            mac: crate::model::MacAddr(hop.dmac),
            device: host::link::name_of(hop.ifindex).unwrap_or_else(|_| hop.ifindex.to_string()),
            fresh: jiffies < hop.expires_jiffies,
        })
        .collect();
    let counters = dp.counters()?;
    let total = |m: &BTreeMap<&str, CounterValue>| m.values().map(|v| v.packets).sum::<u64>();
    Ok(StatusView {
        pin_dir: dp.pin_dir().display().to_string(),
        underlay: state.host.as_ref().map(|h| UnderlayView {
            iface: h.iface.clone(),
            ip: h.underlay_ip,
            decap: h.decap,
            auto: h.requested == Some(DecapRequest::Auto),
            reason: h.decap_reason.clone(),
        }),
        next_hops,
        conflicts: state
            .containers
            .values()
            .flat_map(|c| {
                c.endpoints.iter().filter_map(move |e| {
                    let holder = e.conflict.as_ref()?;
                    let net = state
                        .networks
                        .get(&e.network_id)
                        .map_or("?", |n| n.name.as_str());
                    Some(format!(
                        "{} of {} on {net}, claimed by {holder}",
                        e.ip, c.name
                    ))
                })
            })
            .collect(),
        path_mtus: dp
            .path_mtus()?
            .into_iter()
            .filter(|(_, m)| now < m.expires_ns)
            .map(|(remote, m)| PathMtuView {
                remote,
                mtu: m.mtu,
                expires_in: (m.expires_ns - now) / 1_000_000_000,
            })
            .collect(),
        cluster: state.cluster.as_ref().map(|c| ClusterStatus {
            endpoints: c.endpoints.clone(),
            advertise: state.advertise_ip(),
            lease: c.lease,
            lease_ttl: c.lease_ttl,
            hosts: state
                .cluster_hosts
                .iter()
                .map(|(ip, name)| (name.clone(), *ip))
                .collect(),
            rejected: state.rejected_count,
            rejected_samples: state
                .rejected
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }),
        pinned_links: dp.links().len(),
        networks: state.networks.len(),
        containers: state.containers.len(),
        endpoints: state.endpoints().count(),
        handled: total(&counters.outcomes),
        dropped: total(&counters.drops),
    })
}

/// Every counter of this host, or of one network.
fn stats(engine: &Engine, network: Option<&str>) -> Result<Vec<CounterRow>, EngineError> {
    let c = match network {
        Some(key) => {
            let vni = engine.network(key)?.vni;
            engine.dataplane().network_counters(vni)?
        }
        None => engine.dataplane().counters()?,
    };
    Ok(c.outcomes
        .iter()
        .chain(c.drops.iter())
        .map(|(name, v)| CounterRow {
            name: (*name).to_owned(),
            packets: v.packets,
            bytes: v.bytes,
        })
        .collect())
}
