//! Test helpers shared by the CLI test files.

#![allow(dead_code, unused_imports)] // each test file uses a different part

pub use overlay_testkit::cli::{Host, SWITCH_IP, Switch, eventually};

/// A simulated host driven by the binary under test.
pub fn host() -> Host {
    Host::new(env!("CARGO_BIN_EXE_overlay"))
}

/// Root check that refuses to skip under CI (see tests/src/lib.rs).
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: needs root under CI"
    );
    eprintln!("{test}: skipped, needs root");
    false
}

/// True while process `pid` exists and has not exited. An exited process
/// stays a zombie until its parent (init, for `run -d`) reaps it, which
/// some inits do only every few seconds.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next());
        !matches!(state, Some("Z" | "X") | None)
    })
}
