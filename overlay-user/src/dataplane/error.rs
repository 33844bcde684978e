//! Errors of the dataplane library. Validation errors are raised before any
//! map is touched; kernel errors carry the failing operation as context.

use std::{io, net::Ipv4Addr, path::PathBuf};

use aya::{
    EbpfError,
    maps::MapError,
    pin::PinError,
    programs::{ProgramError, links::LinkError},
};
use ipnet::Ipv4Net;

use crate::{host::HostError, model::RuleError};

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("the kernel lacks {feature} on {on}: {hint}")]
    Unsupported {
        feature: &'static str,
        on: String,
        hint: &'static str,
    },
    #[error("refusing to remove {path}: {why} (not this project's pin directory)")]
    NotOurs { path: PathBuf, why: String },
    #[error("Linux {found} lacks {feature}: needs Linux >= {need}")]
    KernelTooOld {
        found: String,
        feature: &'static str,
        need: &'static str,
    },
    #[error("subnet {subnet} overlaps {other} of network VNI {other_vni}")]
    SubnetOverlap {
        subnet: Ipv4Net,
        other: Ipv4Net,
        other_vni: u32,
    },
    #[error("network VNI {0} already exists")]
    NetworkExists(u32),
    #[error("no network with VNI {0}")]
    UnknownNetwork(u32),
    #[error(
        "network VNI {0} has no counters of its own (more networks on this host than {slots} counter slots); its packets count in the host totals",
        slots = overlay_common::capacity::NET_COUNTERS - 1
    )]
    NoNetworkCounters(u32),
    #[error("network VNI {0} still has local endpoints")]
    NetworkInUse(u32),
    #[error("address {ip} is already in use in network VNI {vni}")]
    AddressInUse { ip: Ipv4Addr, vni: u32 },
    #[error("no endpoint {ip} in network VNI {vni}")]
    UnknownAddress { ip: Ipv4Addr, vni: u32 },
    #[error("invalid interface index 0")]
    InvalidIfindex,
    #[error("interface index {0} already is an endpoint")]
    EndpointExists(u32),
    #[error("no endpoint on interface index {0}")]
    UnknownEndpoint(u32),
    #[error("invalid underlay: {0}")]
    InvalidUnderlay(&'static str),
    #[error("{op}")]
    Map {
        op: String,
        #[source]
        source: MapError,
    },
    #[error("map {0} missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("program {0} missing from the eBPF object")]
    MissingProgram(&'static str),
    #[error("loading the eBPF object (needs root and kernel >= 6.6)")]
    Load(#[source] EbpfError),
    #[error(
        "the maps pinned under {dir} are from an incompatible version of overlay; run `overlay destroy` to remove them (forwarding stops), then start `overlay daemon`, which rebuilds every entry from the stored state"
    )]
    IncompatiblePins {
        dir: PathBuf,
        #[source]
        source: Box<EbpfError>,
    },
    #[error("{op} program {name}")]
    Program {
        op: &'static str,
        name: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("link {op}")]
    Link {
        op: String,
        #[source]
        source: LinkError,
    },
    #[error("pinning at {path}")]
    Pin {
        path: PathBuf,
        #[source]
        source: PinError,
    },
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("preparing {iface} for the dataplane")]
    Host {
        iface: String,
        #[source]
        source: HostError,
    },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl DataplaneError {
    pub(super) fn map(op: impl Into<String>) -> impl FnOnce(MapError) -> Self {
        let op = op.into();
        move |source| Self::Map { op, source }
    }
}
