//! Network namespaces for fixtures: created with the product's host layer,
//! deleted on drop, with commands run inside them the way a person would
//! (`ip netns exec NAME ...`).

use std::process::{Command, Output};

use overlay_user::{
    host::{self, HostError, netlink::Netlink},
    model::MacAddr,
};

use crate::LabError;

/// Runs `program args...`, failing with its stderr when it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> Result<Output, LabError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| LabError::Spawn {
            cmd: cmd.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// `ip args...` in this process's namespace.
pub fn ip(args: &[&str]) -> Result<Output, LabError> {
    run("ip", args)
}

/// A name unique to this process and call: `prefix` + pid + counter, kept
/// within the 15 bytes an interface name allows.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("{prefix}{:x}{n:x}", std::process::id() & 0xffff);
    name.chars().take(15).collect()
}

/// A named network namespace, deleted on drop (with every veth end in it).
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `name` with loopback up.
    pub fn new(name: &str) -> Result<Self, LabError> {
        host::netns::create(name)?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.run(|| -> Result<(), HostError> {
            let mut nl = Netlink::open()?;
            let lo = nl.require_link("lo")?;
            nl.set_up(lo.index)
        })??;
        Ok(ns)
    }

    /// Takes charge of namespace `name` (made by someone else, e.g. the
    /// engine for a container): deleted on drop.
    pub fn adopt(name: &str) -> Self {
        Self {
            name: name.to_owned(),
        }
    }

    /// A handle on namespace `name` that someone else owns: never deleted
    /// by us.
    pub fn existing(name: &str) -> std::mem::ManuallyDrop<Self> {
        std::mem::ManuallyDrop::new(Self::adopt(name))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, argv: &[&str]) -> Result<Output, LabError> {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(argv);
        ip(&args)
    }

    /// Runs a command line split on white space (`sh(ns, "ip link ...")`).
    pub fn sh(&self, cmd: &str) -> Result<(), LabError> {
        let argv: Vec<&str> = cmd.split_whitespace().collect();
        self.exec(&argv).map(drop)
    }

    /// `ip netns exec NAME PROGRAM` as a [`Command`], for long-running
    /// processes.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, HostError> {
        host::netns::run_in(&self.name, f)
    }

    /// ifindex of `ifname` inside this namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32, HostError> {
        self.run(|| host::link::index_of(ifname))?
    }

    /// MAC of `ifname` inside this namespace.
    pub fn mac(&self, ifname: &str) -> Result<MacAddr, HostError> {
        self.run(|| -> Result<MacAddr, HostError> {
            let link = Netlink::open()?.require_link(ifname)?;
            link.mac
                .ok_or_else(|| HostError::NoSuchLink(format!("{ifname} (no MAC)")))
        })?
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth ends (and their peers).
        let _ = host::netns::delete(&self.name);
        // And the resolv.conf the engine wrote for a container in it.
        let _ = host::netns::remove_own_etc_file(
            &self.name,
            "resolv.conf",
            overlay_user::model::names::RESOLV_CONF_MARKER,
        );
    }
}
