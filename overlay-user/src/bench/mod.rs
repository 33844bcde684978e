//! Benchmarks: program cost under BPF_PROG_RUN, and traffic through the
//! simulated topology built several ways in one run.

pub mod cluster;
pub mod control;
pub mod pktrate;
pub mod prog_run;
pub mod traffic;

pub use prog_run::{BENCHKIT_OBJECT, BenchError, NOOP_OBJECT, ProgCost, prog_run_costs};
