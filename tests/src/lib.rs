//! Shared pieces of the integration tests: a privilege gate that refuses to
//! skip under CI, unique names, and a small packet builder.

pub mod topology;

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
            overlay_user::netns::unique_name(&format!("ovlt-{tag}-"))
        )))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = overlay_user::Dataplane::destroy(&self.0);
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
