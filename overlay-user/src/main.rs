//! `overlay`: Docker-style networks and containers on an eBPF dataplane.
//! The command line lives in [`overlay_user::cli`].

fn main() -> std::process::ExitCode {
    overlay_user::cli::main()
}
