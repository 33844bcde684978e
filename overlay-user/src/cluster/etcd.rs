//! The etcd client: one connection, driven synchronously on a small
//! runtime of its own.

use std::{collections::BTreeSet, net::Ipv4Addr, time::Duration};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchOptions, WatchStream,
};
use serde::Deserialize;

use super::{
    ClusterError, ClusterOptions, PREFIX, json, key_address, key_claim, key_host, key_network,
    mirror::{Entry, Mirror, StoredClaim},
    parse,
};
use crate::model::{Claim, HostInfo, NetworkRecord, ipam};

/// Claims released per transaction: under etcd's default cap of 128
/// operations, with room for the compares.
const RELEASE_BATCH: usize = 60;

/// Keys with their values parsed, or why not.
type Listed<T> = Vec<(String, Result<T, ClusterError>)>;

/// A connection to etcd, with a small runtime to drive it from the
/// synchronous engine.
pub struct ClusterStore {
    rt: tokio::runtime::Runtime,
    client: Client,
    endpoints: String,
    lease: i64,
    watch: Option<WatchStream>,
}

/// Runs one request on the store's runtime; see [`classify`] for errors.
fn call<T>(
    rt: &tokio::runtime::Runtime,
    endpoints: &str,
    request: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, ClusterError> {
    rt.block_on(request).map_err(|e| classify(endpoints, e))
}

/// Transport failures and timeouts mean "unreachable"; the rest are
/// answers from etcd.
fn classify(endpoints: &str, e: etcd_client::Error) -> ClusterError {
    let unreachable = match &e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        ),
        _ => false,
    };
    if unreachable {
        ClusterError::Unreachable {
            endpoints: endpoints.to_owned(),
            source: e,
        }
    } else {
        ClusterError::Request(e)
    }
}

impl ClusterStore {
    /// Connects, failing after the options' timeout when etcd does not answer.
    pub fn connect(opts: &ClusterOptions) -> Result<Self, ClusterError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClusterError::Runtime)?;
        let tls = opts.tls()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let urls: Vec<String> = opts
            .endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("{scheme}://{e}")
                }
            })
            .collect();
        let endpoints = opts.endpoints.join(",");
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(opts.timeout)
            .with_timeout(opts.timeout);
        if let Some((name, password)) = &opts.user {
            connect = connect.with_user(name.clone(), password.clone());
        }
        if let Some(tls) = tls {
            connect = connect.with_tls(tls);
        }
        let mut client = rt
            .block_on(Client::connect(&urls, Some(connect)))
            .map_err(|e| classify(&endpoints, e))?;
        // Connecting is lazy: make one request so "unreachable" shows here.
        rt.block_on(client.get(
            format!("{PREFIX}hosts/"),
            Some(GetOptions::new().with_count_only()),
        ))
        .map_err(|e| classify(&endpoints, e))?;
        Ok(Self {
            rt,
            client,
            endpoints,
            lease: 0,
            watch: None,
        })
    }

    fn err(&self, e: etcd_client::Error) -> ClusterError {
        classify(&self.endpoints, e)
    }

    /// The lease this host's claims are written on.
    pub fn set_lease(&mut self, lease: i64) {
        self.lease = lease;
    }

    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// Registers this host under `reuse` if that lease is still alive (a
    /// restarted agent keeps its claims without a gap), else under a fresh
    /// lease of `ttl` seconds. Returns the lease.
    pub fn register_host(
        &mut self,
        host: &HostInfo,
        ttl: i64,
        reuse: i64,
    ) -> Result<i64, ClusterError> {
        let alive = reuse != 0 && self.keep_alive_lease(reuse)?;
        let lease = if alive {
            reuse
        } else {
            call(
                &self.rt,
                &self.endpoints,
                self.client.lease_grant(ttl, None),
            )?
            .id()
        };
        call(
            &self.rt,
            &self.endpoints,
            self.client.put(
                key_host(host.underlay_ip),
                json(host),
                Some(PutOptions::new().with_lease(lease)),
            ),
        )?;
        self.lease = lease;
        Ok(lease)
    }

    /// Renews this host's lease once; false when it no longer exists.
    pub fn keep_alive(&mut self) -> Result<bool, ClusterError> {
        if self.lease == 0 {
            return Ok(false);
        }
        self.keep_alive_lease(self.lease)
    }

    fn keep_alive_lease(&mut self, lease: i64) -> Result<bool, ClusterError> {
        // Opening the keep-alive stream renews the lease once and checks the
        // answer's TTL: an expired lease comes back as "lease not found".
        match self.rt.block_on(self.client.lease_keep_alive(lease)) {
            Ok(_) => Ok(true),
            Err(etcd_client::Error::LeaseKeepAliveError(_)) => Ok(false),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Drops this host's registration now (a clean shutdown), instead of
    /// letting the lease expire.
    pub fn revoke(&mut self) -> Result<(), ClusterError> {
        if self.lease != 0 {
            call(
                &self.rt,
                &self.endpoints,
                self.client.lease_revoke(self.lease),
            )?;
            self.lease = 0;
        }
        Ok(())
    }

    /// Live hosts.
    pub fn hosts(&mut self) -> Result<Vec<HostInfo>, ClusterError> {
        self.list_valid(&format!("{PREFIX}hosts/"))
    }

    /// Every key under `prefix` with its value parsed, or the parse error
    /// (anyone who may write to the store may write anything).
    fn list<T: for<'de> Deserialize<'de>>(
        &mut self,
        prefix: &str,
    ) -> Result<Listed<T>, ClusterError> {
        let resp = call(
            &self.rt,
            &self.endpoints,
            self.client
                .get(prefix, Some(GetOptions::new().with_prefix())),
        )?;
        Ok(resp
            .kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let value = parse(&key, kv.value());
                (key, value)
            })
            .collect())
    }

    /// The records under `prefix` that parse; the others are skipped here
    /// (the agent names them in `status`).
    fn list_valid<T: for<'de> Deserialize<'de>>(
        &mut self,
        prefix: &str,
    ) -> Result<Vec<T>, ClusterError> {
        Ok(self
            .list(prefix)?
            .into_iter()
            .filter_map(|(_, v)| v.ok())
            .collect())
    }

    /// Everything under the prefix at one revision.
    pub fn mirror(&mut self) -> Result<Mirror, ClusterError> {
        let resp = call(
            &self.rt,
            &self.endpoints,
            self.client
                .get(PREFIX, Some(GetOptions::new().with_prefix())),
        )?;
        let revision = resp.header().map_or(0, |h| h.revision());
        let entries = resp
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    Entry {
                        value: kv.value().to_vec(),
                        mod_revision: kv.mod_revision(),
                        lease: kv.lease(),
                    },
                )
            })
            .collect();
        Ok(Mirror { entries, revision })
    }

    /// Starts watching the prefix for changes after `mirror`'s revision.
    pub fn watch(&mut self, mirror: &Mirror) -> Result<(), ClusterError> {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(mirror.revision + 1);
        let stream = call(
            &self.rt,
            &self.endpoints,
            self.client.watch(PREFIX, Some(opts)),
        )?;
        self.watch = Some(stream);
        Ok(())
    }

    /// Waits up to `wait` for the next watch response and applies it to
    /// `mirror`; true when something changed.
    pub fn next_changes(
        &mut self,
        mirror: &mut Mirror,
        wait: Duration,
    ) -> Result<bool, ClusterError> {
        let Some(stream) = self.watch.as_mut() else {
            return Err(ClusterError::WatchLost("not watching".into()));
        };
        let resp = match self
            .rt
            // The timer must be created inside the runtime.
            .block_on(async { tokio::time::timeout(wait, stream.message()).await })
        {
            Err(_elapsed) => return Ok(false),
            Ok(r) => r.map_err(|e| classify(&self.endpoints, e))?,
        };
        let Some(resp) = resp else {
            self.watch = None;
            return Err(ClusterError::WatchLost("stream ended".into()));
        };
        if resp.canceled() || resp.compact_revision() != 0 {
            self.watch = None;
            return Err(ClusterError::WatchLost(
                if resp.cancel_reason().is_empty() {
                    format!("compacted at {}", resp.compact_revision())
                } else {
                    resp.cancel_reason().to_owned()
                },
            ));
        }
        let mut changed = false;
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            mirror.revision = mirror.revision.max(kv.mod_revision());
            match ev.event_type() {
                EventType::Put => {
                    mirror.entries.insert(
                        key,
                        Entry {
                            value: kv.value().to_vec(),
                            mod_revision: kv.mod_revision(),
                            lease: kv.lease(),
                        },
                    );
                }
                EventType::Delete => {
                    mirror.entries.remove(&key);
                }
            }
            changed = true;
        }
        if let Some(h) = resp.header() {
            mirror.revision = mirror.revision.max(h.revision());
        }
        Ok(changed)
    }

    /// Creates a global network; its name and VNI must be free cluster-wide.
    pub fn create_network(&mut self, net: &NetworkRecord) -> Result<(), ClusterError> {
        let name_key = format!("{PREFIX}names/{}", net.name);
        let vni_key = format!("{PREFIX}vnis/{}", net.vni);
        let txn = Txn::new()
            .when([
                Compare::create_revision(name_key.clone(), CompareOp::Equal, 0),
                Compare::create_revision(vni_key.clone(), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(name_key.clone(), net.id.clone(), None),
                TxnOp::put(vni_key, net.id.clone(), None),
                TxnOp::put(key_network(&net.id), json(net), None),
            ]);
        if call(&self.rt, &self.endpoints, self.client.txn(txn))?.succeeded() {
            return Ok(());
        }
        let taken = call(&self.rt, &self.endpoints, self.client.get(name_key, None))?;
        if taken.kvs().is_empty() {
            Err(ClusterError::VniTaken(net.vni))
        } else {
            Err(ClusterError::NameTaken(net.name.clone()))
        }
    }

    /// Every global network.
    pub fn networks(&mut self) -> Result<Vec<NetworkRecord>, ClusterError> {
        self.list_valid(&format!("{PREFIX}networks/"))
    }

    /// Removes a global network with its name and VNI (its address claims
    /// must be gone).
    pub fn remove_network(&mut self, net: &NetworkRecord) -> Result<(), ClusterError> {
        let txn = Txn::new().and_then([
            TxnOp::delete(format!("{PREFIX}names/{}", net.name), None),
            TxnOp::delete(format!("{PREFIX}vnis/{}", net.vni), None),
            TxnOp::delete(key_network(&net.id), None),
        ]);
        call(&self.rt, &self.endpoints, self.client.txn(txn))?;
        Ok(())
    }

    /// Address claims of network `net_id`, from every host.
    pub fn claims(&mut self, net_id: &str) -> Result<Vec<Claim>, ClusterError> {
        self.list_valid(&format!("{PREFIX}addresses/{net_id}/"))
    }

    /// Who holds addresses of network `net_id`, by any host: `container
    /// (on host)`, or the address of a claim this version cannot read
    /// (still a claim: its address stays taken).
    pub fn claim_holders(&mut self, net_id: &str) -> Result<Vec<String>, ClusterError> {
        Ok(self
            .list::<Claim>(&format!("{PREFIX}addresses/{net_id}/"))?
            .into_iter()
            .map(|(key, claim)| match claim {
                Ok(c) => format!("{} (on {})", c.container, c.host),
                Err(_) => format!("an unreadable claim at {key}"),
            })
            .collect())
    }

    /// Addresses of network `net_id` claimed by any host, read from the
    /// keys: a claim whose value is unreadable still takes its address.
    pub fn claimed(&mut self, net_id: &str) -> Result<BTreeSet<Ipv4Addr>, ClusterError> {
        Ok(self
            .list::<serde::de::IgnoredAny>(&format!("{PREFIX}addresses/{net_id}/"))?
            .into_iter()
            .filter_map(|(key, _)| key.rsplit('/').next()?.parse().ok())
            .collect())
    }

    /// Writes `claim` if its address is free, or already held by the same
    /// container or endpoint on the same host (a re-claim after a restart,
    /// a recreated veth, a renamed container, or a claim from before claims
    /// outlived leases). True when
    /// written. Only a registered host claims (the daemon runs), though the
    /// claim itself is not on the lease.
    pub fn put_claim(&mut self, claim: &Claim) -> Result<bool, ClusterError> {
        if self.lease == 0 {
            return Err(ClusterError::NoLease(0));
        }
        let key = key_claim(claim);
        let put = TxnOp::put(key.clone(), json(claim), None);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([put.clone()])
            .or_else([TxnOp::get(key.clone(), None)]);
        let resp = self
            .rt
            .block_on(self.client.txn(txn))
            .map_err(|e| self.no_lease(e))?;
        if resp.succeeded() {
            return Ok(true);
        }
        let current = resp.op_responses().into_iter().find_map(|op| match op {
            etcd_client::TxnOpResponse::Get(g) => g.kvs().first().cloned(),
            _ => None,
        });
        let Some(kv) = current else {
            // Deleted in between: try once more from the top.
            return self.put_claim(claim);
        };
        // Held by someone else, or by a record nobody can read: taken.
        let Ok(held) = parse::<Claim>(&key, kv.value()) else {
            return Ok(false);
        };
        // Ours to rewrite: this host's claim for the same container (a
        // Docker endpoint adopting its IPAM claim) or for the same endpoint
        // (its container renamed).
        if held.host != claim.host
            || (held.container != claim.container && held.endpoint_id != claim.endpoint_id)
        {
            return Ok(false);
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key,
                CompareOp::Equal,
                kv.mod_revision(),
            )])
            .and_then([put]);
        Ok(self
            .rt
            .block_on(self.client.txn(txn))
            .map_err(|e| self.no_lease(e))?
            .succeeded())
    }

    /// A put on a lease etcd no longer has fails with NotFound.
    fn no_lease(&self, e: etcd_client::Error) -> ClusterError {
        match &e {
            etcd_client::Error::GRpcStatus(s)
                if s.code() == tonic::Code::NotFound && s.message().contains("lease") =>
            {
                ClusterError::NoLease(self.lease)
            }
            _ => self.err(e),
        }
    }

    /// Claims `want`, or the lowest free address, for an endpoint of this
    /// host (on its lease). Retries when another host wins a race.
    pub fn claim_address(
        &mut self,
        net: &NetworkRecord,
        want: Option<Ipv4Addr>,
        local_used: &BTreeSet<Ipv4Addr>,
        claim: impl Fn(Ipv4Addr) -> Claim,
    ) -> Result<Ipv4Addr, ClusterError> {
        for _ in 0..64 {
            let mut used = self.claimed(&net.id)?;
            used.extend(local_used);
            let ip = match want {
                Some(ip) => ip,
                None => ipam::allocate(net.subnet, net.ip_range, net.gateway, &used)
                    .ok_or_else(|| ClusterError::Exhausted(net.name.clone()))?,
            };
            if self.put_claim(&claim(ip))? {
                return Ok(ip);
            }
            if want.is_some() {
                return Err(ClusterError::AddressTaken(ip));
            }
        }
        Err(ClusterError::Exhausted(net.name.clone()))
    }

    /// Releases an address claim `host` holds; one held by another host
    /// (an address this host lost in a conflict, handed out again
    /// elsewhere) or unreadable is left alone. The delete checks the
    /// claim is still the version read. True when released.
    pub fn release_address(
        &mut self,
        net_id: &str,
        ip: Ipv4Addr,
        host: Ipv4Addr,
    ) -> Result<bool, ClusterError> {
        let key = key_address(net_id, ip);
        // A claim rewritten between the read and the delete: read again.
        for _ in 0..8 {
            let resp = call(
                &self.rt,
                &self.endpoints,
                self.client.get(key.clone(), None),
            )?;
            let Some(kv) = resp.kvs().first() else {
                return Ok(false);
            };
            match parse::<Claim>(&key, kv.value()) {
                Ok(held) if held.host == host => {}
                _ => return Ok(false),
            }
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::delete(key.clone(), None)]);
            if call(&self.rt, &self.endpoints, self.client.txn(txn))?.succeeded() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Releases every address claimed by `host`, which must be down (its
    /// key gone with its lease): each batch is deleted in a transaction
    /// that checks this again and that each claim is still the version
    /// read, so a host that comes back, or re-claims, keeps what it has.
    /// Returns how many were released.
    pub fn release_host(&mut self, host: Ipv4Addr) -> Result<usize, ClusterError> {
        let resp = call(
            &self.rt,
            &self.endpoints,
            self.client.get(
                format!("{PREFIX}addresses/"),
                Some(GetOptions::new().with_prefix()),
            ),
        )?;
        let held: Vec<(String, i64)> = resp
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let claim: Claim = parse(&key, kv.value()).ok()?;
                (claim.host == host).then_some((key, kv.mod_revision()))
            })
            .collect();
        let alive = Compare::create_revision(key_host(host), CompareOp::Equal, 0);
        if held.is_empty() {
            let txn = Txn::new().when([alive]);
            return if call(&self.rt, &self.endpoints, self.client.txn(txn))?.succeeded() {
                Ok(0)
            } else {
                Err(ClusterError::HostAlive(host))
            };
        }
        let mut released = 0;
        // etcd caps operations per transaction (128 by default).
        for batch in held.chunks(RELEASE_BATCH) {
            let mut compares = vec![alive.clone()];
            compares.extend(
                batch
                    .iter()
                    .map(|(k, rev)| Compare::mod_revision(k.clone(), CompareOp::Equal, *rev)),
            );
            let deletes: Vec<TxnOp> = batch
                .iter()
                .map(|(k, _)| TxnOp::delete(k.clone(), None))
                .collect();
            let txn = Txn::new().when(compares).and_then(deletes);
            if call(&self.rt, &self.endpoints, self.client.txn(txn))?.succeeded() {
                released += batch.len();
                continue;
            }
            // Registered again, or one of the batch changed: say which.
            let live = call(
                &self.rt,
                &self.endpoints,
                self.client.get(key_host(host), None),
            )?;
            if !live.kvs().is_empty() {
                return Err(ClusterError::HostAlive(host));
            }
        }
        Ok(released)
    }

    /// Deletes a claim only if it is still the version `stored` saw.
    pub fn delete_claim(&mut self, stored: &StoredClaim) -> Result<bool, ClusterError> {
        let key = key_claim(&stored.claim);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                stored.mod_revision,
            )])
            .and_then([TxnOp::delete(key, None)]);
        Ok(call(&self.rt, &self.endpoints, self.client.txn(txn))?.succeeded())
    }
}
