//! Userspace of the overlay dataplane, in layers (each uses only those
//! listed before it):
//!
//! - [`model`]: records, the host's state, every input rule, IPAM, IDs.
//! - [`host`]: the host's network through rtnetlink and nftables, named
//!   namespaces, container processes.
//! - [`dataplane`]: load, attach and pin the kernel programs; typed,
//!   validating access to their maps.
//! - [`store`] (this host's state, redb) and [`cluster`] (shared state,
//!   etcd).
//! - [`engine`]: commands as transactions over store, dataplane and host.
//! - [`api`]: the typed requests the CLI sends and the daemon serves.
//! - [`daemon`]: socket server, reconcile loop, cluster agent.
//! - [`cli`]: the `overlay` command line.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod dataplane;
pub mod engine;
pub mod host;
pub mod model;
pub mod store;
