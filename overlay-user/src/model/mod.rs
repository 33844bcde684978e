//! What this host knows, as plain data: records, the state they form, the
//! rules every input obeys, addresses (IPAM) and identifiers. No I/O; every
//! other layer builds on it.

pub mod ids;
pub mod ipam;
pub mod mac;
pub mod names;
pub mod packet;
pub mod records;
pub mod rules;
pub mod state;

pub use mac::{MacAddr, ParseMacError};
pub use records::{
    AttachedMode, Claim, ClusterRecord, ContainerRecord, DEFAULT_CLAIM_GRACE, DecapMode,
    DecapRequest, Driver, EndpointRecord, HostInfo, HostRecord, IpamPool, LearnedEndpoint,
    NetworkRecord, PluginEndpoint, ProcessRef, Proto, PublishedPort, RemoteRecord,
};
pub use rules::RuleError;
pub use state::Snapshot;
