//! Userspace side of the overlay dataplane: load and pin the kernel programs,
//! attach them, and program networks, endpoints and peers through a typed,
//! validating [`Dataplane`].

pub mod agent;
pub mod bench;
pub mod bpffs;
pub mod cluster;
pub mod dataplane;
pub mod engine;
pub mod error;
pub mod features;
pub mod gateway;
pub mod ipam;
pub mod mac;
pub mod netns;
pub mod packet;
pub mod sim;
pub mod sim_cli;
pub mod sim_etcd;
pub mod store;

pub use dataplane::{
    AttachedMode, Counters, Dataplane, DecapMode, LocalEndpoint, Network, RemoteEndpoint, State,
    Underlay,
};
pub use error::DataplaneError;
pub use mac::MacAddr;

/// Default directory for pinned maps and links.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/overlay";
