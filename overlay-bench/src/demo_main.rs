//! `overlay-demo`: two simulated hosts running this dataplane, containers
//! on two overlay networks, traffic, isolation and counters; everything is
//! removed at the end. `./x demo` runs it.

use std::process::ExitCode;

use clap::{Parser as _, ValueEnum};
use overlay_user::model::DecapRequest;

#[derive(Clone, Copy, ValueEnum)]
enum Decap {
    Xdp,
    XdpGeneric,
    Tc,
}

/// The two-host demo (run as root).
#[derive(clap::Parser)]
#[command(name = "overlay-demo", version)]
struct Cli {
    /// How the hosts decapsulate.
    #[arg(long, value_enum, default_value_t = Decap::Xdp)]
    decap: Decap,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("overlay-demo: must run as root (loads eBPF programs, builds namespaces)");
        return ExitCode::FAILURE;
    }
    let decap = match cli.decap {
        Decap::Xdp => DecapRequest::Xdp,
        Decap::XdpGeneric => DecapRequest::XdpGeneric,
        Decap::Tc => DecapRequest::Tc,
    };
    match overlay_bench::demo::run(decap) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overlay-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}
