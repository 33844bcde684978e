//! Benchmarks of the overlay dataplane, next to the kernel's own VXLAN +
//! bridge path on the same simulated topology, and the two-host demo. Not
//! part of the shipped `overlay`: the harness programs (`overlay-bench-ebpf`)
//! and the lab (`overlay-testkit`) live here and beside it.
//!
//! Parts: [`prog_run`] (program cost under BPF_PROG_RUN), [`control`]
//! (programming cost and map memory), [`traffic`] (TCP and request/response
//! per path), [`pktrate`] (packet rate and no-drop rate from an XDP
//! generator), [`cluster`] (convergence through etcd), [`docker`] (Docker's
//! `docker0` next to this plugin's network, one host), [`dns`] (name lookups:
//! in the kernel, the daemon, Docker's resolver, dnsmasq); [`limit`] is limit
//! (a), the bare-redirect reference. The `overlay-bench` binary runs them
//! and writes the report; `overlay-demo` runs [`demo`].

pub mod cluster;
pub mod control;
pub mod demo;
pub mod dns;
pub mod docker;
pub mod limit;
pub mod pktrate;
pub mod prog_run;
pub mod traffic;

use aya::include_bytes_aligned;
use overlay_testkit::LabError;
use overlay_user::{dataplane::DataplaneError, host::HostError};

/// No-op XDP and TC programs (`overlay-bench-ebpf/src/noop.rs`).
pub static NOOP_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/noop"));
/// The packet generator, the limit (a) redirect program and the sink
/// (`overlay-bench-ebpf/src/benchkit.rs`).
pub static BENCHKIT_OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/benchkit"));

/// Failure while benchmarking.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Dataplane(#[from] DataplaneError),
    #[error("loading a harness object")]
    Load(#[source] aya::EbpfError),
    #[error("{what}")]
    Program {
        what: String,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("{0}")]
    Tool(String),
    #[error("{path}: returned {got}, expected {want}")]
    Verdict {
        path: &'static str,
        got: u32,
        want: u32,
    },
}
