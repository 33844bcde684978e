//! `overlay daemon`: the reconcile loop, the CLI socket ([`server`]) and,
//! in cluster mode, the etcd agent ([`agent`]).

pub mod agent;
pub mod dns;
pub mod http;
pub mod lock;
pub mod metrics;
pub mod plugin;
pub mod server;
pub mod settings;

use std::{
    io,
    path::{Path, PathBuf},
    sync::atomic::AtomicBool,
    time::Duration,
};

use self::settings::Settings;
use crate::{
    api::Target,
    cluster::{ClusterError, ClusterOptions},
    engine::{CLUSTER_TIMEOUT, EngineError, Paths, Repairs, transaction},
    host,
    model::HostInfo,
};

/// Why the daemon cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("reading config file {path}")]
    ConfigRead {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("config file {path} line {line}: {message}")]
    Config {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid --store {0:?}: expected etcd://HOST:PORT[,HOST:PORT...] or embedded")]
    Store(String),
    #[error("invalid etcd endpoint {0:?} in --store: expected HOST:PORT")]
    EtcdEndpoint(String),
    #[error("invalid --lease-ttl {0}: use 2-3600 seconds")]
    LeaseTtl(i64),
    #[error("invalid --claim-grace {0}: use 10-31536000 seconds")]
    ClaimGrace(u64),
    #[error("invalid --dns-upstream {0:?}: expected IPv4[:PORT]")]
    DnsUpstream(String),
    #[error("{0} --dns-upstream given: at most 3")]
    DnsUpstreams(usize),
    #[error(
        "cluster mode needs this host's underlay address: pass --advertise-addr or run `overlay attach` first"
    )]
    NoAdvertiseAddress,
    #[error("another daemon serves {0}")]
    AlreadyServed(PathBuf),
    #[error("{op} socket {path}")]
    Socket {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("serving metrics on {addr}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Lock(#[from] lock::LockError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Host(#[from] host::HostError),
}

/// How the daemon runs.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Reconcile once and exit (no socket, no agent).
    pub once: bool,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// Read the default config file when `--config` is not given.
    pub default_config: bool,
    /// Settings from flags (they win over the file's).
    pub flags: Settings,
}

/// Serves each connection of `incoming` on a thread of its own with
/// `handle`, until the listener fails; a connection whose handler panics is
/// logged (as a `what`) and dropped, and the server goes on.
pub(crate) fn serve_each<S: Send + 'static>(
    incoming: impl Iterator<Item = io::Result<S>>,
    what: &'static str,
    handle: impl Fn(S) + Clone + Send + 'static,
) {
    for stream in incoming.flatten() {
        let handle = handle.clone();
        std::thread::spawn(move || {
            let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(stream)));
            if served.is_err() {
                tracing::error!("a {what} panicked; serving on");
            }
        });
    }
}

/// Records the cluster settings in the host's state (joining, re-joining
/// with new settings, or leaving).
fn configure_cluster(paths: &Paths, store: &str, s: &Settings) -> Result<(), DaemonError> {
    if store == "embedded" {
        return Ok(transaction(paths, |e| e.leave_cluster())?);
    }
    // Checked before the store is opened: bad settings change nothing.
    let endpoints = settings::etcd_endpoints(store)?;
    s.check()?;
    Ok(transaction(paths, |e| {
        let record = s.cluster_record(endpoints, e.state().cluster.as_ref());
        e.join_cluster(record)
    })?)
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Runs the daemon for the host at `paths` (in the calling thread's network
/// namespace), serving `socket`, until killed (or once).
pub fn run(paths: &Paths, socket: &Path, options: Options) -> Result<(), DaemonError> {
    init_logging();
    let _lock = lock::acquire(&paths.state_dir, (!options.once).then_some(socket))?;
    let file = settings::load_file(options.config.as_deref(), options.default_config)?;
    let s = options.flags.over(file);
    s.check()?;
    if let Some(store) = &s.store {
        configure_cluster(paths, store, &s)?;
    }
    let cluster = transaction(paths, |e| {
        Ok(e.state()
            .cluster
            .clone()
            .map(|c| (c, e.state().advertise_ip())))
    })?;
    tracing::info!(state = %paths.state_dir.display(), pins = %paths.pin_dir.display(),
        cluster = ?cluster.as_ref().map(|(c, _)| c.endpoints.join(",")), "overlay daemon starting");
    if !options.once {
        let listener = server::bind(socket)?;
        tracing::info!(socket = %socket.display(), "serving the CLI");
        let target = Target {
            paths: paths.clone(),
            netns: host::netns::current_id()?,
        };
        std::thread::spawn(move || server::serve(&listener, &target));
        let plugin_socket = match &s.plugin_socket {
            Some(p) if p.as_os_str() == "none" => None,
            Some(p) => Some(p.clone()),
            None if options.default_config => Some(PathBuf::from(plugin::DEFAULT_SOCKET)),
            None => None,
        };
        if let Some(path) = plugin_socket {
            let listener = server::bind(&path)?;
            tracing::info!(socket = %path.display(), "serving Docker's plugin protocol");
            let paths = paths.clone();
            std::thread::spawn(move || plugin::serve(&listener, &paths));
        }
        if let Some(addr) = s.metrics_address {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|source| DaemonError::Metrics { addr, source })?;
            tracing::info!(%addr, "serving Prometheus metrics at /metrics");
            let paths = paths.clone();
            std::thread::spawn(move || metrics::serve(&listener, &paths));
        }
        let upstreams = match s.dns_upstreams()? {
            Some(list) => list,
            None => {
                dns::upstreams_of(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
            }
        };
        tracing::info!(upstreams = ?upstreams, "answering containers' DNS at their gateways");
        let dns_paths = paths.clone();
        std::thread::spawn(move || dns::run(&dns_paths, upstreams));
        if let Some((rec, advertise)) = cluster {
            let cfg = agent::AgentConfig {
                paths: paths.clone(),
                host: HostInfo {
                    underlay_ip: advertise.ok_or(DaemonError::NoAdvertiseAddress)?,
                    name: s.host_name.clone().unwrap_or_else(host::hostname),
                },
                ttl: rec.lease_ttl,
                options: ClusterOptions::from_record(&rec, CLUSTER_TIMEOUT)?,
            };
            std::thread::spawn(move || {
                static STOP: AtomicBool = AtomicBool::new(false);
                agent::run(&cfg, &STOP);
            });
        }
    }
    let interval = Duration::from_secs(s.interval.unwrap_or(settings::DEFAULT_INTERVAL).max(1));
    loop {
        // The store is held only for the pass, so CLI commands interleave.
        let pass = transaction(paths, |e| e.reconcile());
        metrics::telemetry().reconciled(pass.as_ref().ok().map(Repairs::count));
        match pass {
            Ok(r) if r.is_empty() => tracing::debug!("in sync"),
            Ok(r) => tracing::info!(repairs = ?r, "repaired drift"),
            Err(e) => {
                tracing::error!(error = %crate::api::error_chain(&e), "reconcile failed; retrying")
            }
        }
        if options.once {
            return Ok(());
        }
        std::thread::sleep(interval);
    }
}
