//! The typed request/response API: what the CLI asks for and what it gets
//! back, whether the command runs in the CLI's own process or in the
//! daemon behind its socket (one JSON [`Request`] per connection, one JSON
//! [`Reply`]). [`handler::execute`] runs a command against an engine.

pub mod client;
pub mod handler;
pub mod views;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use self::views::{
    ContainerSummary, CounterRow, HostView, NetworkInspect, NetworkSummary, PeerView, StatusView,
};
use crate::{
    engine::{Attached, CreateNetwork, Paths, TraceProto, TraceView},
    model::{DecapRequest, MacAddr},
};

/// Which host a request is for: its state and pins, and the network
/// namespace the CLI acts in. A daemon serves only its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub paths: Paths,
    /// (device, inode) of the network namespace.
    pub netns: (u64, u64),
}

/// One command for one host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Request {
    pub target: Target,
    pub command: Command,
}

/// Every command the daemon serves. `run` and `exec` start processes and
/// stay in the CLI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    NetworkCreate(CreateNetwork),
    NetworkLs {
        /// `(key, value)`: name, id, driver, scope, label.
        filters: Vec<(String, String)>,
    },
    NetworkInspect {
        networks: Vec<String>,
    },
    NetworkRm {
        networks: Vec<String>,
    },
    NetworkPrune,
    NetworkConnect {
        network: String,
        container: String,
        ip: Option<Ipv4Addr>,
        #[serde(default)]
        gw_priority: i32,
        #[serde(default)]
        aliases: Vec<String>,
    },
    NetworkDisconnect {
        network: String,
        container: String,
    },
    Ps {
        all: bool,
    },
    Stop {
        containers: Vec<String>,
    },
    Rm {
        containers: Vec<String>,
        force: bool,
    },
    Rename {
        container: String,
        name: String,
    },
    Attach {
        iface: String,
        underlay_ip: Option<Ipv4Addr>,
        decap: DecapRequest,
    },
    Detach,
    Status,
    Stats {
        network: Option<String>,
    },
    PeerAdd {
        remote: Ipv4Addr,
        network: String,
    },
    PeerRm {
        remote: Ipv4Addr,
        network: String,
    },
    PeerLs,
    HostLs,
    HostRm {
        hosts: Vec<Ipv4Addr>,
    },
    EndpointAdd {
        remote: Ipv4Addr,
        network: String,
        ip: Ipv4Addr,
        mac: Option<MacAddr>,
    },
    EndpointRm {
        network: String,
        ip: Ipv4Addr,
    },
    /// What `overlay monitor` names events with: networks by VNI, the host.
    MonitorContext,
    /// A packet from a container to an address, through the programs.
    Trace {
        from: String,
        to: Ipv4Addr,
        proto: TraceProto,
        port: u16,
    },
}

impl Command {
    /// The command's name as it goes over the socket (`network-create`...).
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("command")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into())
    }
}

/// What a command returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "kebab-case")]
pub enum Response {
    /// Nothing to show.
    Done,
    /// A new object's ID.
    Id(String),
    /// Names of the objects a command acted on.
    Names(Vec<String>),
    Networks(Vec<NetworkSummary>),
    Inspect(Vec<NetworkInspect>),
    Containers(Vec<ContainerSummary>),
    /// Networks `prune` removed.
    Pruned(Vec<String>),
    Attached {
        iface: String,
        attached: Attached,
    },
    Detached {
        iface: String,
    },
    Status(Box<StatusView>),
    Stats(Vec<CounterRow>),
    Peers(Vec<PeerView>),
    Hosts(Vec<HostView>),
    /// Addresses released per host (`host rm`).
    Released(Vec<(Ipv4Addr, usize)>),
    MonitorContext(MonitorContext),
    Trace(TraceView),
}

/// Names for the drop events: this host's, and each network's by VNI.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorContext {
    pub host: String,
    /// (VNI, name, ID).
    pub networks: Vec<(u32, String, String)>,
}

/// A command's outcome: the response, or the error as the user reads it
/// (one line, causes joined with `: `).
pub type Reply = Result<Response, String>;

/// An error with its causes, `a: b: c`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Transparent wrappers repeat their inner error's text.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
