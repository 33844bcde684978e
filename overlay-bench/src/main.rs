//! `overlay-bench`: the benchmarks (private namespaces; nothing else on
//! the machine is touched). `./x bench` runs it with the full sizes.

mod report;

use std::process::ExitCode;

use clap::Parser as _;

/// Benchmarks of the overlay dataplane against the kernel's VXLAN path
/// (run as root).
#[derive(clap::Parser)]
#[command(name = "overlay-bench", version)]
struct Cli {
    #[command(flatten)]
    args: report::BenchArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("overlay-bench: must run as root (loads eBPF programs, builds namespaces)");
        return ExitCode::FAILURE;
    }
    match report::bench(&cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overlay-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
