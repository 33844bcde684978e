//! Test fixtures, kept out of the shipped crates: network namespaces that
//! clean up after themselves ([`netns`]), simulated hosts and containers
//! wired through the product's own engine ([`lab`]), hosts driven through
//! the real `overlay` binary ([`cli`]), a Docker Engine per simulated host
//! ([`docker`]), a throwaway etcd ([`etcd`]), a resolver ([`dnsmasq`]), a
//! namespace for BPF_PROG_RUN ([`prog_run`]), frame builders ([`packet`])
//! and traffic checks ([`traffic`]).
//!
//! Fixtures panic with a message when a topology cannot be built, or
//! return [`LabError`]; everything they create is removed on drop, also
//! when a test fails.

pub mod cli;
pub mod dnsmasq;
pub mod docker;
pub mod etcd;
pub mod lab;
pub mod netns;
pub mod packet;
pub mod prog_run;
pub mod prometheus;
pub mod traffic;

pub use self::netns::{NetNs, unique_name};

/// Failure while building a fixture.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("running `{cmd}`")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Host(#[from] overlay_user::host::HostError),
    #[error(transparent)]
    Dataplane(#[from] overlay_user::dataplane::DataplaneError),
    /// An engine command failed (its error chain, as the CLI prints it).
    #[error("engine: {0}")]
    Engine(String),
    #[error("{0}")]
    Invalid(String),
    /// Files, or a service that did not come up.
    #[error("{0}")]
    Other(String),
}

/// Returns false (test should skip) when not root and not in CI; panics in
/// CI, where skipping would hide a broken environment.
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: needs root, and CI=true forbids skipping"
    );
    eprintln!("{test}: skipped, needs root");
    false
}

/// A pin directory unique to this process and call, removed on drop.
pub struct PinDir(pub std::path::PathBuf);

impl PinDir {
    pub fn new(tag: &str) -> Self {
        Self(std::path::PathBuf::from(format!(
            "/sys/fs/bpf/{}",
            unique_name(&format!("ovlt-{tag}-"))
        )))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = overlay_user::dataplane::Dataplane::destroy(&self.0);
    }
}

/// Fails with every collected case failure listed, out of `total` cases.
pub fn assert_no_failures(failures: &[String], total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A child process killed (if still running) and reaped when dropped:
/// however the test that started it ends.
pub struct Reaped(pub std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
