//! `overlay daemon`: the reconcile loop, the CLI socket ([`server`]) and,
//! in cluster mode, the etcd agent ([`agent`]).

pub mod agent;
pub mod dns;
pub mod docker_api;
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

/// Connections one server serves at once (each on a thread; a client that
/// connects and says nothing holds one until its read timeout).
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// Serves each connection of `incoming` on a thread of its own with
/// `handle`, until the listener fails; a connection whose handler panics is
/// logged (as a `what`) and dropped, and the server goes on. Beyond
/// [`MAX_CONNECTIONS`] at once a new connection is closed unserved, so
/// clients that open connections and hold them cannot make the daemon
/// spawn threads without end.
pub(crate) fn serve_each<S: Send + 'static>(
    incoming: impl Iterator<Item = io::Result<S>>,
    what: &'static str,
    handle: impl Fn(S) + Clone + Send + 'static,
) {
    serve_each_limited(incoming, what, MAX_CONNECTIONS, handle);
}

fn serve_each_limited<S: Send + 'static>(
    incoming: impl Iterator<Item = io::Result<S>>,
    what: &'static str,
    limit: usize,
    handle: impl Fn(S) + Clone + Send + 'static,
) {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    /// Gives a connection's place back however its thread ends.
    struct Place(Arc<AtomicUsize>);
    impl Drop for Place {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let open = Arc::new(AtomicUsize::new(0));
    let mut refused: u64 = 0;
    for stream in incoming.flatten() {
        if open.fetch_add(1, Ordering::AcqRel) >= limit {
            open.fetch_sub(1, Ordering::AcqRel);
            refused += 1;
            // Once per thousand, so a flood does not flood the log.
            if refused % 1000 == 1 {
                tracing::warn!(
                    limit,
                    refused,
                    "{what}: too many connections; closing new ones"
                );
            }
            drop(stream);
            continue;
        }
        let place = Place(Arc::clone(&open));
        let handle = handle.clone();
        std::thread::spawn(move || {
            let _place = place;
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
            let (created, on_create) = std::sync::mpsc::channel();
            let plugin_paths = paths.clone();
            std::thread::spawn(move || plugin::serve(&listener, &plugin_paths, &created));
            let docker = s
                .docker_socket
                .clone()
                .unwrap_or_else(|| PathBuf::from(docker_api::DEFAULT_SOCKET));
            let learner_paths = paths.clone();
            let every =
                Duration::from_secs(s.interval.unwrap_or(settings::DEFAULT_INTERVAL).max(1));
            std::thread::spawn(move || {
                docker_api::run_learner(&learner_paths, &docker, &on_create, every);
            });
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

#[cfg(test)]
mod serve_tests {
    use std::{
        io::Read,
        net::{TcpListener, TcpStream},
        sync::mpsc,
        time::Duration,
    };

    /// Connections past the limit are closed at once; the ones being
    /// served stay, and a place freed is taken again.
    #[test]
    fn connections_past_the_limit_are_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (release, held) = mpsc::channel::<()>();
        let held = std::sync::Arc::new(std::sync::Mutex::new(held));
        std::thread::spawn(move || {
            super::serve_each_limited(listener.incoming(), "test", 2, move |mut s: TcpStream| {
                // Hold the connection until told, then close it.
                let _ = held.lock().expect("lock").recv();
                let _ = std::io::Write::write_all(&mut s, b"served");
            });
        });
        let connect = || {
            let s = TcpStream::connect(addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            s
        };
        let (mut a, mut b) = (connect(), connect());
        // Let the server take both before the third arrives.
        std::thread::sleep(Duration::from_millis(100));
        let mut c = connect();
        let mut buf = Vec::new();
        assert_eq!(
            c.read_to_end(&mut buf).expect("closed"),
            0,
            "third closed unserved"
        );
        release.send(()).expect("release");
        release.send(()).expect("release");
        for s in [&mut a, &mut b] {
            buf.clear();
            s.read_to_end(&mut buf).expect("served");
            assert_eq!(buf, b"served");
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut d = connect();
        release.send(()).expect("release");
        buf.clear();
        d.read_to_end(&mut buf).expect("served");
        assert_eq!(buf, b"served", "a freed place is taken again");
    }
}
