//! `/metrics` in the Prometheus text format, when the daemon is given
//! `--metrics-address`. Two kinds of series:
//! - the daemon's own, counted as things happen ([`telemetry`]): requests
//!   on the CLI socket and the plugin socket, reconcile passes and repairs,
//!   cluster-store reachability;
//! - the dataplane's and the host state's, read at each scrape inside one
//!   engine transaction ([`Snapshot`]): packets and bytes per outcome and
//!   drop reason (host-wide and per network), endpoints and peers per
//!   network, and how full each map is.
//!
//! Names carry the `overlay_` prefix and base units; no label holds an
//! address, so a series' count grows with networks, not with traffic.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    io::{BufReader, BufWriter},
    net::{TcpListener, TcpStream},
    sync::OnceLock,
    time::Duration,
};

use overlay_common::{CounterValue, MonitorState, maps::capacity};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _, prometheus_text},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        info::Info,
    },
    registry::Registry,
};

use super::http;
use crate::{
    dataplane::{Counters, RouteTarget},
    engine::{Engine, EngineError, Paths, transaction},
};

/// A scrape that takes longer than this to send its request is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Which socket a request came in on, the command, and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    interface: &'static str,
    command: String,
    result: &'static str,
}

/// The daemon's own counters, shared by its threads.
#[derive(Debug, Default)]
pub struct Telemetry {
    requests: Family<RequestLabels, Counter>,
    reconcile_passes: Family<[(&'static str, &'static str); 1], Counter>,
    reconcile_repairs: Counter,
    cluster_store_up: Gauge,
    cluster_configured: Gauge,
}

/// The process's telemetry.
pub fn telemetry() -> &'static Telemetry {
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(Telemetry::default)
}

impl Telemetry {
    /// A request served on `interface` (`cli` or `plugin`).
    pub fn request(&self, interface: &'static str, command: &str, ok: bool) {
        self.requests
            .get_or_create(&RequestLabels {
                interface,
                command: command.to_owned(),
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// A reconcile pass: `Some(repairs)` or `None` when it failed.
    pub fn reconciled(&self, repairs: Option<usize>) {
        let result = if repairs.is_some() { "ok" } else { "error" };
        self.reconcile_passes
            .get_or_create(&[("result", result)])
            .inc();
        self.reconcile_repairs.inc_by(repairs.unwrap_or(0) as u64);
    }

    /// Whether the cluster agent's last exchange with the store succeeded.
    pub fn cluster_store(&self, up: bool) {
        self.cluster_configured.set(1);
        self.cluster_store_up.set(i64::from(up));
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "requests",
            "Requests served on the CLI and Docker plugin sockets",
            self.requests.clone(),
        );
        r.register(
            "reconcile_passes",
            "Reconcile passes of the daemon",
            self.reconcile_passes.clone(),
        );
        r.register(
            "reconcile_repairs",
            "Drift the reconcile passes repaired (entries, links, addresses)",
            self.reconcile_repairs.clone(),
        );
        r.register(
            "cluster_store_configured",
            "1 when this host is in cluster mode (its state shared through etcd)",
            self.cluster_configured.clone(),
        );
        r.register(
            "cluster_store_up",
            "1 when the cluster agent's last exchange with etcd succeeded",
            self.cluster_store_up.clone(),
        );
    }
}

/// Occupancy of one map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapFill {
    pub map: &'static str,
    pub entries: u64,
    pub capacity: u64,
}

/// What a scrape reads from the host, in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub host: Counters,
    /// Network name -> its counters (networks with a counter slot).
    pub networks: BTreeMap<String, Counters>,
    /// Network name -> (local, remote) endpoints the dataplane routes to.
    pub endpoints: BTreeMap<String, (u64, u64)>,
    /// Network name -> remote hosts allowed to send it VXLAN.
    pub peers: BTreeMap<String, u64>,
    pub maps: Vec<MapFill>,
    /// Drop events reported, held back over the rate, lost to a full ring.
    pub events: MonitorState,
    /// Lease held in the cluster store (0: none; no cluster: `None`).
    pub lease: Option<i64>,
    pub cluster_hosts: u64,
}

impl Snapshot {
    /// Reads everything a scrape shows.
    pub fn take(engine: &Engine) -> Result<Self, EngineError> {
        let dp = engine.dataplane();
        let state = engine.state();
        let name_of: BTreeMap<u32, &str> = state
            .networks
            .values()
            .map(|n| (n.vni, n.name.as_str()))
            .collect();
        let name = |vni: u32| -> String {
            name_of
                .get(&vni)
                .map_or_else(|| format!("vni-{vni}"), |n| (*n).to_owned())
        };
        let mut snap = Self {
            host: dp.counters()?,
            events: dp.monitor_tallies()?,
            lease: state.cluster.as_ref().map(|c| c.lease),
            cluster_hosts: state.cluster_hosts.len() as u64,
            ..Self::default()
        };
        let vnis = dp.network_vnis()?;
        for &vni in &vnis {
            // A network past the counter slots is counted host-wide only.
            if let Ok(c) = dp.network_counters(vni) {
                snap.networks.insert(name(vni), c);
            }
            snap.endpoints.insert(name(vni), (0, 0));
            snap.peers.insert(name(vni), 0);
        }
        let routes = dp.routes()?;
        for (vni, _, target) in &routes {
            let e = snap.endpoints.entry(name(*vni)).or_default();
            match target {
                RouteTarget::Local(_) => e.0 += 1,
                RouteTarget::Remote(_) => e.1 += 1,
            }
        }
        let peers = dp.peers()?;
        for (_, vni) in &peers {
            *snap.peers.entry(name(*vni)).or_default() += 1;
        }
        let fill = |map, entries: usize, capacity: u32| MapFill {
            map,
            entries: entries as u64,
            capacity: u64::from(capacity),
        };
        snap.maps = vec![
            fill("networks", vnis.len(), capacity::NETWORKS),
            fill(
                "endpoints",
                dp.local_endpoints()?.len(),
                capacity::ENDPOINTS,
            ),
            fill("routes", routes.len(), capacity::ROUTES),
            fill("peers", peers.len(), capacity::PEERS),
            fill("next_hops", dp.next_hops()?.len(), capacity::NEXTHOPS),
            fill("path_mtus", dp.path_mtus()?.len(), capacity::PATH_MTUS),
            fill("guards", dp.guards()?.len(), capacity::GUARDS),
            fill("names", dp.names()?.len(), capacity::NAMES),
        ];
        Ok(snap)
    }
}

/// The snapshot's series, encoded at scrape time.
#[derive(Debug)]
struct SnapshotCollector(Option<Snapshot>);

type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// A counter family over the programs' counters, host-wide and per
/// network: outcomes (`key` "outcome") or drops ("reason").
struct CounterFamily {
    name: &'static str,
    help: &'static str,
    key: &'static str,
    value: fn(&CounterValue) -> u64,
}

const COUNTER_FAMILIES: [CounterFamily; 4] = [
    CounterFamily {
        name: "packets",
        help: "Packets the programs handled",
        key: "outcome",
        value: |v| v.packets,
    },
    CounterFamily {
        name: "bytes",
        help: "Bytes of the packets the programs handled",
        key: "outcome",
        value: |v| v.bytes,
    },
    CounterFamily {
        name: "drops",
        help: "Packets the programs dropped",
        key: "reason",
        value: |v| v.packets,
    },
    CounterFamily {
        name: "dropped_bytes",
        help: "Bytes of the packets the programs dropped",
        key: "reason",
        value: |v| v.bytes,
    },
];

/// One counter family: `(labels, value)` rows.
fn counters<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (Labels<'a>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One gauge family: `(labels, value)` rows.
fn gauges<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (Labels<'a>, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
            .encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// `(labels, value)` rows of one counter map, with `key` naming each entry
/// (a drop reason without its `drop_` prefix: the metric says it) and
/// `base` the labels in front.
fn rows<'a>(
    base: &'a Labels<'a>,
    key: &'static str,
    map: &'a BTreeMap<&'static str, CounterValue>,
    value: fn(&CounterValue) -> u64,
) -> impl Iterator<Item = (Labels<'a>, u64)> + 'a {
    map.iter().map(move |(name, v)| {
        let mut labels = base.clone();
        labels.push((
            key,
            Cow::Borrowed(name.strip_prefix("drop_").unwrap_or(name)),
        ));
        (labels, value(v))
    })
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauges(
            &mut encoder,
            "dataplane_up",
            "1 when this scrape could read the dataplane and the host state.",
            std::iter::once((Vec::new(), u64::from(self.0.is_some()))),
        )?;
        let Some(s) = &self.0 else {
            return Ok(());
        };
        let host = [(Labels::new(), &s.host)];
        let per_net: Vec<(Labels<'_>, &Counters)> = s
            .networks
            .iter()
            .map(|(n, c)| (vec![("network", Cow::Borrowed(n.as_str()))], c))
            .collect();
        for (scope, whose, counted) in [
            ("host", "on this host", &host[..]),
            ("network", "per network", &per_net[..]),
        ] {
            for f in &COUNTER_FAMILIES {
                counters(
                    &mut encoder,
                    &format!("{scope}_{}", f.name),
                    &format!("{} {whose}, by {}.", f.help, f.key),
                    counted.iter().flat_map(|(base, c)| {
                        let map = if f.key == "reason" {
                            &c.drops
                        } else {
                            &c.outcomes
                        };
                        rows(base, f.key, map, f.value)
                    }),
                )?;
            }
        }
        gauges(
            &mut encoder,
            "endpoints",
            "Endpoints the dataplane routes to, per network and location.",
            s.endpoints.iter().flat_map(|(n, (local, remote))| {
                [("local", *local), ("remote", *remote)].map(|(at, count)| {
                    (
                        vec![
                            ("network", Cow::Borrowed(n.as_str())),
                            ("location", Cow::Borrowed(at)),
                        ],
                        count,
                    )
                })
            }),
        )?;
        gauges(
            &mut encoder,
            "peers",
            "Remote hosts allowed to send each network VXLAN.",
            s.peers
                .iter()
                .map(|(n, count)| (vec![("network", Cow::Borrowed(n.as_str()))], *count)),
        )?;
        gauges(
            &mut encoder,
            "map_entries",
            "Entries in each dataplane map.",
            s.maps
                .iter()
                .map(|m| (vec![("map", Cow::Borrowed(m.map))], m.entries)),
        )?;
        gauges(
            &mut encoder,
            "map_capacity_entries",
            "Entries each dataplane map can hold.",
            s.maps
                .iter()
                .map(|m| (vec![("map", Cow::Borrowed(m.map))], m.capacity)),
        )?;
        counters(
            &mut encoder,
            "drop_events",
            "Drop events for `overlay monitor`: reported, held back over the per-CPU rate, lost to a full ring.",
            [
                ("reported", s.events.sent),
                ("rate_limited", s.events.suppressed),
                ("lost", s.events.lost),
            ]
            .into_iter()
            .map(|(r, v)| (vec![("result", Cow::Borrowed(r))], v)),
        )?;
        if let Some(lease) = s.lease {
            gauges(
                &mut encoder,
                "cluster_lease_held",
                "1 when this host holds a lease in the cluster store.",
                std::iter::once((Vec::new(), u64::from(lease != 0))),
            )?;
            gauges(
                &mut encoder,
                "cluster_hosts",
                "Hosts registered in the cluster store, as this host last saw them.",
                std::iter::once((Vec::new(), s.cluster_hosts)),
            )?;
        }
        Ok(())
    }
}

/// The exposition for one scrape.
pub fn render(snapshot: Option<Snapshot>) -> String {
    let mut registry = Registry::with_prefix("overlay");
    registry.register(
        "build",
        "Version of the overlay daemon",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    telemetry().register(&mut registry);
    registry.register_collector(Box::new(SnapshotCollector(snapshot)));
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// Serves `GET /metrics` until the listener fails: a thread per
/// connection, so a client that connects and says nothing (each waits at
/// most `READ_TIMEOUT`) holds up no scrape; the store's lock orders the
/// transactions.
pub fn serve(listener: &TcpListener, paths: &Paths) {
    let paths = paths.clone();
    super::serve_each(listener.incoming(), "metrics scrape", move |stream| {
        scrape(stream, &paths);
    });
}

fn scrape(stream: TcpStream, paths: &Paths) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut writer = BufWriter::new(write_half);
    let (status, content_type, body) = match http::read_request(&mut reader) {
        Err(http::ReadError::Closed) => return,
        Err(e) => (400, "text/plain", e.to_string()),
        Ok(req) if req.method != "GET" => (405, "text/plain", "GET only\n".into()),
        Ok(req) if req.path != "/metrics" && !req.path.starts_with("/metrics?") => {
            (404, "text/plain", "metrics are at /metrics\n".into())
        }
        Ok(_) => {
            let snapshot = match transaction(paths, |e| Snapshot::take(e)) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %crate::api::error_chain(&e), "metrics: reading the dataplane");
                    None
                }
            };
            (200, prometheus_text::CONTENT_TYPE, render(snapshot))
        }
    };
    let _ = http::write_response(&mut writer, status, content_type, body.as_bytes(), true);
}

#[cfg(test)]
mod tests {
    use overlay_common::{Counter, DropReason};

    use super::*;

    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
    }

    #[test]
    fn a_snapshot_renders_per_network_series() {
        let mut net = Counters::default();
        net.outcomes.insert(
            Counter::Encap.name(),
            CounterValue {
                packets: 5,
                bytes: 500,
            },
        );
        net.drops.insert(
            DropReason::Isolation.name(),
            CounterValue {
                packets: 3,
                bytes: 180,
            },
        );
        let snap = Snapshot {
            host: net.clone(),
            networks: BTreeMap::from([("blue".to_owned(), net)]),
            endpoints: BTreeMap::from([("blue".to_owned(), (2, 7))]),
            peers: BTreeMap::from([("blue".to_owned(), 3)]),
            maps: vec![MapFill {
                map: "routes",
                entries: 9,
                capacity: 100,
            }],
            events: MonitorState {
                sent: 4,
                suppressed: 6,
                ..MonitorState::default()
            },
            lease: Some(42),
            cluster_hosts: 2,
        };
        let text = render(Some(snap));
        for (series, want) in [
            ("overlay_dataplane_up", "1"),
            (
                r#"overlay_network_packets_total{network="blue",outcome="encap"}"#,
                "5",
            ),
            (
                r#"overlay_network_bytes_total{network="blue",outcome="encap"}"#,
                "500",
            ),
            (
                r#"overlay_network_drops_total{network="blue",reason="isolation"}"#,
                "3",
            ),
            (
                r#"overlay_network_dropped_bytes_total{network="blue",reason="isolation"}"#,
                "180",
            ),
            (r#"overlay_host_drops_total{reason="isolation"}"#, "3"),
            (
                r#"overlay_endpoints{network="blue",location="remote"}"#,
                "7",
            ),
            (r#"overlay_peers{network="blue"}"#, "3"),
            (r#"overlay_map_entries{map="routes"}"#, "9"),
            (r#"overlay_map_capacity_entries{map="routes"}"#, "100"),
            ("overlay_cluster_lease_held", "1"),
            ("overlay_cluster_hosts", "2"),
            (r#"overlay_drop_events_total{result="rate_limited"}"#, "6"),
        ] {
            assert_eq!(
                value(&text, series).as_deref(),
                Some(want),
                "{series} in\n{text}"
            );
        }
        assert!(
            text.contains("# TYPE overlay_network_drops_total counter"),
            "{text}"
        );
        assert!(text.contains(r#"overlay_build_info{version=""#), "{text}");
    }

    #[test]
    fn an_unreadable_dataplane_is_a_gauge_not_an_error() {
        let text = render(None);
        assert_eq!(value(&text, "overlay_dataplane_up").as_deref(), Some("0"));
        assert!(!text.contains("overlay_host_packets_total"), "{text}");
    }
}
