//! `overlay daemon`: the reconcile loop, the CLI socket and, in cluster
//! mode, the etcd agent. Settings come from flags first, then from a TOML
//! config file whose keys are the long flag names.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::atomic::AtomicBool,
    time::Duration,
};

use anyhow::{Context as _, bail};
use clap::Args;
use overlay_user::{
    agent::{self, AgentConfig},
    cluster::{ClusterOptions, HostInfo},
    engine::{self, CLUSTER_TIMEOUT, Engine, EngineError, Paths},
    store::ClusterRecord,
};
use serde::Deserialize;

use crate::server;

/// Read when `--config` is not given (and `--root` is not used).
const DEFAULT_CONFIG: &str = "/etc/overlay/daemon.toml";
const DEFAULT_INTERVAL: u64 = 5;
const DEFAULT_LEASE_TTL: i64 = 15;

/// Keep the kernel in line with the stored state: repair on start and every
/// --interval seconds (foreground; logs to stderr). Forwarding never depends
/// on it: the programs and maps are pinned.
#[derive(Args, Default)]
pub struct DaemonArgs {
    /// Reconcile once and exit.
    #[arg(long)]
    once: bool,
    /// Seconds between reconcile passes [default: 5].
    #[arg(long)]
    interval: Option<u64>,
    /// TOML file with any of these settings, keys named like the flags
    /// (`store = "etcd://10.0.0.1:2379"`); flags win [default:
    /// /etc/overlay/daemon.toml if it exists].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Cluster store for overlay networks: etcd://HOST:PORT[,HOST:PORT...].
    /// Remembered: later starts without --store stay in the cluster;
    /// `embedded` leaves it.
    #[arg(long)]
    store: Option<String>,
    /// Underlay address other hosts send this host's VXLAN traffic to
    /// [default: the attached NIC's].
    #[arg(long)]
    advertise_addr: Option<Ipv4Addr>,
    /// Seconds after which a host that stopped renewing its registration
    /// (and its containers' addresses) disappears from the cluster [default: 15].
    #[arg(long)]
    lease_ttl: Option<i64>,
    /// CA bundle for etcd over TLS (PEM); turns TLS on.
    #[arg(long)]
    etcd_cacert: Option<PathBuf>,
    /// Client certificate for etcd (PEM).
    #[arg(long, requires = "etcd_key")]
    etcd_cert: Option<PathBuf>,
    /// Client key for etcd (PEM).
    #[arg(long, requires = "etcd_cert")]
    etcd_key: Option<PathBuf>,
    /// etcd user (auth enabled).
    #[arg(long)]
    etcd_user: Option<String>,
    /// File holding the etcd user's password.
    #[arg(long, requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
    /// Name other hosts show for this one [default: the hostname].
    #[arg(long)]
    host_name: Option<String>,
}

/// The config file: the same settings as the flags.
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    interval: Option<u64>,
    store: Option<String>,
    advertise_addr: Option<Ipv4Addr>,
    lease_ttl: Option<i64>,
    etcd_cacert: Option<PathBuf>,
    etcd_cert: Option<PathBuf>,
    etcd_key: Option<PathBuf>,
    etcd_user: Option<String>,
    etcd_password_file: Option<PathBuf>,
    host_name: Option<String>,
}

fn load_config(explicit: Option<&Path>, has_root: bool) -> anyhow::Result<FileConfig> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None if !has_root && Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => return Ok(FileConfig::default()),
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    // One line: toml's own rendering spans several.
    toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map_or(0, |span| text[..span.start].matches('\n').count() + 1);
        anyhow::anyhow!(
            "config file {} line {line}: {}",
            path.display(),
            e.message().trim()
        )
    })
}

impl DaemonArgs {
    /// Flags over the file.
    fn merge(self, f: FileConfig) -> Self {
        Self {
            once: self.once,
            interval: self.interval.or(f.interval),
            config: self.config,
            store: self.store.or(f.store),
            advertise_addr: self.advertise_addr.or(f.advertise_addr),
            lease_ttl: self.lease_ttl.or(f.lease_ttl),
            etcd_cacert: self.etcd_cacert.or(f.etcd_cacert),
            etcd_cert: self.etcd_cert.or(f.etcd_cert),
            etcd_key: self.etcd_key.or(f.etcd_key),
            etcd_user: self.etcd_user.or(f.etcd_user),
            etcd_password_file: self.etcd_password_file.or(f.etcd_password_file),
            host_name: self.host_name.or(f.host_name),
        }
    }
}

/// `etcd://a:2379,b:2379` -> `["a:2379", "b:2379"]`.
fn etcd_endpoints(url: &str) -> anyhow::Result<Vec<String>> {
    let Some(list) = url.strip_prefix("etcd://") else {
        bail!("invalid --store {url:?}: expected etcd://HOST:PORT[,HOST:PORT...] or embedded");
    };
    let endpoints: Vec<String> = list.split(',').map(str::to_owned).collect();
    for e in &endpoints {
        match e.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => bail!("invalid etcd endpoint {e:?} in --store: expected HOST:PORT"),
        }
    }
    Ok(endpoints)
}

fn with_engine<T>(
    paths: &Paths,
    f: impl FnOnce(&mut Engine) -> Result<T, EngineError>,
) -> anyhow::Result<T> {
    Ok(engine::transaction(paths, f)?)
}

/// Records the cluster settings in the host's state (joining, re-joining
/// with new settings, or leaving).
fn configure_cluster(paths: &Paths, store: &str, s: &DaemonArgs) -> anyhow::Result<()> {
    if store == "embedded" {
        return with_engine(paths, Engine::leave_cluster);
    }
    let endpoints = etcd_endpoints(store)?;
    if let Some(ttl) = s.lease_ttl
        && !(2..=3600).contains(&ttl)
    {
        bail!("invalid --lease-ttl {ttl}: use 2-3600 seconds");
    }
    with_engine(paths, |engine| {
        let old = engine.state.cluster.clone();
        let record = ClusterRecord {
            // The same cluster: keep the lease, so a restart has no gap.
            lease: old
                .as_ref()
                .filter(|o| o.endpoints == endpoints)
                .map_or(0, |o| o.lease),
            endpoints: endpoints.clone(),
            advertise_ip: s
                .advertise_addr
                .or_else(|| old.as_ref().and_then(|o| o.advertise_ip)),
            lease_ttl: s
                .lease_ttl
                .or_else(|| old.as_ref().map(|o| o.lease_ttl))
                .unwrap_or(DEFAULT_LEASE_TTL),
            ca_file: s.etcd_cacert.clone(),
            cert_file: s.etcd_cert.clone(),
            key_file: s.etcd_key.clone(),
            user: s.etcd_user.clone(),
            password_file: s.etcd_password_file.clone(),
        };
        engine.join_cluster(record)
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_owned())
}

pub fn run(
    paths: &Paths,
    socket: &Path,
    has_root: bool,
    args: DaemonArgs,
) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let file = load_config(args.config.as_deref(), has_root)?;
    let s = args.merge(file);
    if let Some(store) = &s.store {
        configure_cluster(paths, store, &s)?;
    }
    let cluster = with_engine(paths, |e| {
        Ok(e.state.cluster.clone().map(|c| (c, e.advertise_ip())))
    })?;
    tracing::info!(state = %paths.state_dir.display(), pins = %paths.pin_dir.display(),
        cluster = ?cluster.as_ref().map(|(c, _)| c.endpoints.join(",")), "overlay daemon starting");
    if !s.once {
        let listener = server::bind(socket)?;
        tracing::info!(socket = %socket.display(), "serving the CLI");
        let server_paths = paths.clone();
        std::thread::spawn(move || server::serve(&listener, &server_paths));
        if let Some((rec, advertise)) = cluster {
            let cfg = AgentConfig {
                paths: paths.clone(),
                host: HostInfo {
                    underlay_ip: advertise.context(
                        "cluster mode needs this host's underlay address: \
                         pass --advertise-addr or run `overlay attach` first",
                    )?,
                    name: s.host_name.clone().unwrap_or_else(hostname),
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
    let interval = Duration::from_secs(s.interval.unwrap_or(DEFAULT_INTERVAL).max(1));
    loop {
        // The store is held only for the pass, so CLI commands interleave.
        match with_engine(paths, Engine::reconcile) {
            Ok(r) if r.is_empty() => tracing::debug!("in sync"),
            Ok(r) => tracing::info!(repairs = ?r, "repaired drift"),
            Err(e) => tracing::error!(error = %format!("{e:#}"), "reconcile failed; retrying"),
        }
        if s.once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(interval);
    }
}
