//! The cluster agent, one thread of `overlay daemon --store etcd://...`:
//! keeps this host registered under its lease and keeps the host's cache of
//! the cluster (global networks, other hosts' endpoints, the peers they
//! imply) equal to etcd, by listing everything once and then watching from
//! that revision.
//!
//! While etcd is unreachable nothing here touches the dataplane: forwarding
//! goes on with the last state it learned. When etcd answers again the agent
//! renews (or replaces) its lease, lists everything again and resumes
//! watching; no restart is needed.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    api::error_chain,
    cluster::{ClusterError, ClusterOptions, ClusterStore, Mirror},
    engine::{ClusterSync, EngineError, Paths, transaction},
    model::HostInfo,
};

/// How often the agent re-applies an unchanged view.
const REAPPLY: Duration = Duration::from_secs(5);

/// What the agent needs.
#[derive(Clone)]
pub struct AgentConfig {
    pub paths: Paths,
    pub host: HostInfo,
    /// Lease time to live, seconds.
    pub ttl: i64,
    pub options: ClusterOptions,
}

/// Why a session with etcd ended.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("lease {0} expired; registering again")]
    LeaseLost(i64),
}

/// Runs until `stop` is set, starting a new session whenever one ends.
pub fn run(cfg: &AgentConfig, stop: &AtomicBool) {
    let mut backoff = Duration::from_millis(200);
    super::metrics::telemetry().cluster_store(false);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match session(cfg, stop) {
            Ok(()) => return,
            Err(e) => {
                super::metrics::telemetry().cluster_store(false);
                tracing::warn!(error = %error_chain(&e), "cluster store session ended; retrying")
            }
        }
        if started.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(200);
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Renews `lease` every `every` on a connection of its own until `done`,
/// so that a long apply (waiting for the host's store behind a burst of CLI
/// commands) never lets the lease lapse. Sets `lost` when the lease is gone
/// or the renewals cannot reach etcd.
fn keep_lease(
    options: &ClusterOptions,
    lease: i64,
    every: Duration,
    done: &AtomicBool,
    lost: &AtomicBool,
) {
    let mut store = match ClusterStore::connect(options) {
        Ok(store) => store,
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "lease keeper cannot reach the cluster store");
            lost.store(true, Ordering::Relaxed);
            return;
        }
    };
    store.set_lease(lease);
    while !done.load(Ordering::Relaxed) {
        std::thread::sleep(every);
        match store.keep_alive() {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::Relaxed);
                return;
            }
            // The session notices an outage through its watch.
            Err(e) => tracing::debug!(error = %error_chain(&e), "lease renewal failed"),
        }
    }
}

/// Sets the flag when dropped: ends the lease keeper with its session.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn session(cfg: &AgentConfig, stop: &AtomicBool) -> Result<(), AgentError> {
    let mut store = ClusterStore::connect(&cfg.options)?;
    let stored = transaction(&cfg.paths, |e| {
        Ok(e.state().cluster.as_ref().map_or(0, |c| c.lease))
    })?;
    let lease = store.register_host(&cfg.host, cfg.ttl, stored)?;
    let (done, lost) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let _end_keeper = SetOnDrop(done.clone());
    {
        let (options, done, lost) = (cfg.options.clone(), done.clone(), lost.clone());
        let every = Duration::from_secs(u64::try_from(cfg.ttl / 3).unwrap_or(1).max(1));
        std::thread::spawn(move || keep_lease(&options, lease, every, &done, &lost));
    }
    if lease != stored {
        transaction(&cfg.paths, |e| {
            e.set_cluster_lease(lease);
            Ok(())
        })?;
    }
    tracing::info!(
        lease,
        reused = lease == stored,
        host = %cfg.host.underlay_ip,
        "registered with the cluster store"
    );
    let mut mirror = store.mirror()?;
    apply(cfg, &mut store, &mirror)?;
    let mut applied = Instant::now();
    store.watch(&mirror)?;
    while !stop.load(Ordering::Relaxed) {
        if lost.load(Ordering::Relaxed) {
            return Err(AgentError::LeaseLost(lease));
        }
        let changed = store.next_changes(&mut mirror, Duration::from_secs(1))?;
        if changed {
            // Take a burst of events in one pass.
            while store.next_changes(&mut mirror, Duration::from_millis(5))? {}
        }
        // Also without changes now and then: a down host's claim grace
        // runs out with time, not with an event.
        if changed || applied.elapsed() >= REAPPLY {
            apply(cfg, &mut store, &mirror)?;
            applied = Instant::now();
        }
    }
    Ok(())
}

/// Applies the mirror to this host, then fixes this host's own claims.
fn apply(cfg: &AgentConfig, store: &mut ClusterStore, mirror: &Mirror) -> Result<(), AgentError> {
    let view = mirror.view();
    let sync: ClusterSync = transaction(&cfg.paths, |e| e.apply_cluster_view(&view))?;
    if sync.changed() {
        tracing::info!(
            revision = mirror.revision,
            networks_added = ?sync.networks_added,
            networks_removed = ?sync.networks_removed,
            endpoints_added = sync.endpoints_added,
            endpoints_removed = sync.endpoints_removed,
            "applied cluster changes"
        );
    }
    for conflict in &sync.conflicts {
        tracing::warn!(%conflict, "cluster conflict");
    }
    for (key, reason) in &sync.newly_rejected {
        tracing::warn!(%key, %reason, "ignoring a cluster record");
    }
    for claim in &sync.claims_missing {
        if store.put_claim(claim)? {
            tracing::info!(ip = %claim.ip, container = %claim.container, "claimed address");
        } else {
            // Named once, when the endpoint stepped aside; retried on
            // every pass until the holder lets go.
            tracing::debug!(ip = %claim.ip, container = %claim.container,
                "address of a local endpoint is held by another host");
        }
    }
    for host in &sync.hosts_expired {
        match store.release_host(*host) {
            Ok(n) => tracing::warn!(%host, released = n,
                "host down longer than the claim grace: released its addresses"),
            // Back meanwhile: it keeps them.
            Err(ClusterError::HostAlive(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for stale in &sync.claims_stale {
        if store.delete_claim(stale)? {
            tracing::info!(ip = %stale.claim.ip, container = %stale.claim.container,
                "released the claim of an endpoint that is gone");
        }
    }
    super::metrics::telemetry().cluster_store(true);
    Ok(())
}
