//! The container resolver: answers DNS queries (UDP and TCP) at each
//! network's gateway address, where containers' resolv.conf points, from
//! the names in this host's state ([`NameTable`]); names it does not know
//! go to the host's upstream resolvers (at most three, tried in order with
//! a short timeout), except from containers only on internal networks.
//! Plain queries for known names never get here: the endpoint program
//! answers them in the kernel (`overlay-ebpf/src/dns.rs`); this resolver
//! has the rest (other names, PTR, TCP, EDNS, long names).
//!
//! The state is read again whenever a commit changed names (the store's
//! names generation), before answering, so `rm`, `rename`, `network
//! disconnect` and a new container show at once. Sockets follow the
//! networks that have endpoints here.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, ResponseCode},
    rr::{DNSClass, Name, RData, Record, RecordType, rdata},
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream, UdpSocket},
    task::JoinHandle,
};

use crate::{
    engine::{Paths, STORE_WAIT},
    model::names::{Answer, NameTable, QueryType},
    store::{Store, names_generation},
};

/// Where containers ask.
pub const DNS_PORT: u16 = 53;
/// Upstream resolvers used at most, as Docker's embedded server.
pub const MAX_UPSTREAMS: usize = 3;
/// How long one upstream may take before the next is asked.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// TTL of our answers (Docker's embedded server uses the same).
const TTL: u32 = 600;
/// How often sockets are matched to the networks with endpoints here.
const SOCKET_SYNC: Duration = Duration::from_millis(200);
/// Largest DNS message over UDP we accept or forward (EDNS sizes).
const UDP_MAX: usize = 4096;
/// Queries and TCP connections handled at once (as Docker's embedded
/// server): past that, queries are dropped, so a container that floods the
/// resolver cannot grow the daemon without bound.
const MAX_IN_FLIGHT: usize = 1024;

/// What to do with one query.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes back.
    Send(Vec<u8>),
    /// Ask the upstream resolvers with the query as it came.
    Forward,
    /// Answer nothing (not a query: never answer a response).
    Drop,
}

fn error_reply(id: u16, op_code: OpCode, code: ResponseCode) -> Reply {
    Message::error_msg(id, op_code, code)
        .to_vec()
        .map_or(Reply::Drop, Reply::Send)
}

/// The reply to `query`, sent by `source` to `gateway`. Malformed queries
/// get FORMERR when their header can be read, else nothing.
pub fn respond(table: &NameTable, gateway: Ipv4Addr, source: Ipv4Addr, query: &[u8]) -> Reply {
    let Ok(req) = Message::from_vec(query) else {
        // The header alone: ID, and QR (responses are never answered).
        return match query {
            [a, b, flags, ..] if query.len() >= 12 && flags & 0x80 == 0 => error_reply(
                u16::from_be_bytes([*a, *b]),
                OpCode::Query,
                ResponseCode::FormErr,
            ),
            _ => Reply::Drop,
        };
    };
    let meta = &req.metadata;
    if meta.message_type != MessageType::Query {
        return Reply::Drop;
    }
    if meta.op_code != OpCode::Query {
        return error_reply(meta.id, meta.op_code, ResponseCode::NotImp);
    }
    let [question] = req.queries.as_slice() else {
        return error_reply(meta.id, meta.op_code, ResponseCode::FormErr);
    };
    if question.query_class() != DNSClass::IN {
        return error_reply(meta.id, meta.op_code, ResponseCode::NotImp);
    }
    let qtype = match question.query_type() {
        RecordType::A => QueryType::A,
        RecordType::PTR => QueryType::Ptr,
        _ => QueryType::Other,
    };
    let name = question.name().to_ascii();
    let answer = table.answer(gateway, source, &name, qtype);
    let mut resp = Message::response(meta.id, OpCode::Query);
    resp.metadata.recursion_desired = meta.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(question.clone());
    if req.edns.is_some() {
        resp.edns = Some(Edns::new());
    }
    match answer {
        Answer::Forward => return Reply::Forward,
        Answer::Addresses(ips) => {
            resp.metadata.authoritative = true;
            for ip in ips {
                resp.add_answer(Record::from_rdata(
                    question.name().clone(),
                    TTL,
                    RData::A(rdata::A(ip)),
                ));
            }
        }
        Answer::Pointer(target) => {
            resp.metadata.authoritative = true;
            let Ok(target) = Name::from_ascii(format!("{target}.")) else {
                return error_reply(meta.id, meta.op_code, ResponseCode::ServFail);
            };
            resp.add_answer(Record::from_rdata(
                question.name().clone(),
                TTL,
                RData::PTR(rdata::PTR(target)),
            ));
        }
        Answer::NoData => resp.metadata.authoritative = true,
        Answer::NxDomain => resp.metadata.response_code = ResponseCode::NXDomain,
        Answer::Refused => resp.metadata.response_code = ResponseCode::Refused,
    }
    resp.to_vec().map_or(Reply::Drop, Reply::Send)
}

/// The upstream resolvers of `resolv_conf` (its IPv4 `nameserver`s, at
/// most [`MAX_UPSTREAMS`]).
pub fn upstreams_of(resolv_conf: &str) -> Vec<SocketAddrV4> {
    crate::model::names::nameservers(resolv_conf)
        .into_iter()
        .map(|ip| SocketAddrV4::new(ip, DNS_PORT))
        .take(MAX_UPSTREAMS)
        .collect()
}

/// The names as of the last change the store's names generation tells of.
struct Names {
    store_dir: PathBuf,
    /// (generation read before the table was, the table); `None` until
    /// read once.
    cached: Mutex<Option<(u64, Arc<NameTable>)>>,
}

impl Names {
    /// The table if the names did not change since it was read (a small
    /// file read: no store, no blocking).
    fn fresh(&self) -> Option<Arc<NameTable>> {
        let generation = names_generation(&self.store_dir);
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        match cached.as_ref() {
            Some((seen, table)) if *seen == generation => Some(Arc::clone(table)),
            _ => None,
        }
    }

    /// The table, read again first if the names changed.
    fn current(&self) -> Arc<NameTable> {
        // Read before the state: a commit in between is seen next time.
        let generation = names_generation(&self.store_dir);
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        match cached.as_ref() {
            Some((seen, table)) if *seen == generation => Arc::clone(table),
            _ => match Store::open(&self.store_dir, STORE_WAIT).and_then(|s| s.load()) {
                Ok(snapshot) => {
                    let table = Arc::new(NameTable::from_snapshot(&snapshot));
                    *cached = Some((generation, Arc::clone(&table)));
                    table
                }
                Err(e) => {
                    tracing::warn!(error = %e, "resolver: reading the state");
                    cached
                        .as_ref()
                        .map(|(_, t)| Arc::clone(t))
                        .unwrap_or_default()
                }
            },
        }
    }
}

/// Shared by every socket's task.
struct Resolver {
    names: Names,
    upstreams: Vec<SocketAddrV4>,
    in_flight: AtomicUsize,
}

/// One of [`MAX_IN_FLIGHT`], given back on drop.
struct InFlight(Arc<Resolver>);

impl InFlight {
    fn take(resolver: &Arc<Resolver>) -> Option<Self> {
        if resolver.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
            resolver.in_flight.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Self(Arc::clone(resolver)))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Resolver {
    async fn table(self: &Arc<Self>) -> Arc<NameTable> {
        if let Some(table) = self.names.fresh() {
            return table;
        }
        // Reading the store may wait for a command that holds it.
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.names.current())
            .await
            .unwrap_or_default()
    }

    /// The reply to send for `query`, forwarding if need be; `None`: send
    /// nothing.
    async fn reply(
        self: &Arc<Self>,
        gateway: Ipv4Addr,
        source: Ipv4Addr,
        query: &[u8],
    ) -> Option<Vec<u8>> {
        let table = self.table().await;
        match respond(&table, gateway, source, query) {
            Reply::Send(bytes) => Some(bytes),
            Reply::Drop => None,
            Reply::Forward => match self.forward(query).await {
                Some(bytes) => Some(bytes),
                None => {
                    let id = u16::from_be_bytes([query[0], query[1]]);
                    Message::error_msg(id, OpCode::Query, ResponseCode::ServFail)
                        .to_vec()
                        .ok()
                }
            },
        }
    }

    /// The first upstream's answer to `query` (over UDP), if any answers
    /// in time.
    async fn forward(&self, query: &[u8]) -> Option<Vec<u8>> {
        for upstream in &self.upstreams {
            let Ok(sock) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await else {
                continue;
            };
            if sock.connect(upstream).await.is_err() || sock.send(query).await.is_err() {
                continue;
            }
            let mut buf = vec![0u8; UDP_MAX];
            let deadline = tokio::time::Instant::now() + UPSTREAM_TIMEOUT;
            // Only a reply with the query's ID counts (a late reply to an
            // earlier query is not this one's).
            while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                if n >= 2 && buf[..2] == query[..2] {
                    buf.truncate(n);
                    return Some(buf);
                }
            }
            tracing::debug!(%upstream, "resolver: upstream did not answer in time");
        }
        None
    }
}

async fn serve_udp(resolver: Arc<Resolver>, sock: UdpSocket, gateway: Ipv4Addr) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; UDP_MAX];
    loop {
        let Ok((n, SocketAddr::V4(from))) = sock.recv_from(&mut buf).await else {
            continue;
        };
        let Some(slot) = InFlight::take(&resolver) else {
            continue;
        };
        let query = buf[..n].to_vec();
        let (resolver, sock) = (Arc::clone(&resolver), Arc::clone(&sock));
        tokio::spawn(async move {
            let _slot = slot;
            if let Some(reply) = resolver.reply(gateway, *from.ip(), &query).await {
                let _ = sock.send_to(&reply, from).await;
            }
        });
    }
}

async fn serve_tcp(resolver: Arc<Resolver>, listener: TcpListener, gateway: Ipv4Addr) {
    loop {
        let Ok((conn, SocketAddr::V4(from))) = listener.accept().await else {
            continue;
        };
        let Some(slot) = InFlight::take(&resolver) else {
            continue;
        };
        let resolver = Arc::clone(&resolver);
        tokio::spawn(async move {
            let _slot = slot;
            tcp_session(resolver, conn, gateway, *from.ip()).await;
        });
    }
}

/// Length-prefixed queries on one connection until it closes or idles.
async fn tcp_session(
    resolver: Arc<Resolver>,
    mut conn: TcpStream,
    gateway: Ipv4Addr,
    from: Ipv4Addr,
) {
    const IDLE: Duration = Duration::from_secs(10);
    loop {
        let Ok(Ok(len)) = tokio::time::timeout(IDLE, conn.read_u16()).await else {
            return;
        };
        let mut query = vec![0u8; usize::from(len)];
        if len < 12 || conn.read_exact(&mut query).await.is_err() {
            return;
        }
        let Some(reply) = resolver.reply(gateway, from, &query).await else {
            continue;
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return;
        };
        if conn.write_u16(len).await.is_err() || conn.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// The UDP and TCP tasks of one gateway address.
struct Served {
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Served {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind(resolver: &Arc<Resolver>, gateway: Ipv4Addr) -> std::io::Result<Served> {
    let udp = UdpSocket::bind((gateway, DNS_PORT)).await?;
    let tcp = TcpListener::bind((gateway, DNS_PORT)).await?;
    Ok(Served {
        tasks: [
            tokio::spawn(serve_udp(Arc::clone(resolver), udp, gateway)),
            tokio::spawn(serve_tcp(Arc::clone(resolver), tcp, gateway)),
        ],
    })
}

/// Runs the resolver for the host at `paths` (in the calling thread's
/// network namespace) until the process ends.
pub fn run(paths: &Paths, upstreams: Vec<SocketAddrV4>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "resolver: no runtime; containers get no names");
            return;
        }
    };
    let resolver = Arc::new(Resolver {
        names: Names {
            store_dir: paths.state_dir.clone(),
            cached: Mutex::new(None),
        },
        upstreams,
        in_flight: AtomicUsize::new(0),
    });
    runtime.block_on(async move {
        let mut served: BTreeMap<Ipv4Addr, Served> = BTreeMap::new();
        let mut warned = std::collections::BTreeSet::new();
        loop {
            let table = resolver.table().await;
            let wanted: Vec<Ipv4Addr> = table.gateways().collect();
            served.retain(|gw, _| wanted.contains(gw));
            for gw in wanted {
                if served.contains_key(&gw) {
                    continue;
                }
                match bind(&resolver, gw).await {
                    Ok(s) => {
                        tracing::info!(gateway = %gw, "resolver: answering containers");
                        served.insert(gw, s);
                    }
                    // The gateway address may not be up yet; anything
                    // else (another server holds port 53) is said once.
                    Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                        tracing::debug!(gateway = %gw, "resolver: gateway address not up yet");
                    }
                    Err(e) => {
                        if warned.insert(gw) {
                            tracing::warn!(gateway = %gw, error = %e,
                                "resolver: cannot serve this network; its containers resolve no names");
                        }
                    }
                }
            }
            tokio::time::sleep(SOCKET_SYNC).await;
        }
    });
}

#[cfg(test)]
mod tests;
