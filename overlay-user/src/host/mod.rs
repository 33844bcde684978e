//! The only code that changes the host's network: links, addresses, routes
//! and neighbours through rtnetlink ([`netlink`]), named network namespaces
//! ([`netns`]), sysctls and ethtool settings, the NAT and filter table through
//! nftables' JSON API ([`filter`]), and container processes ([`process`]).
//!
//! Nothing here runs `ip` or parses a tool's text: the kernel's answers are
//! told apart by errno ([`HostError::errno`]).
//!
//! Every function acts in the network namespace of the calling thread unless
//! it names another one; [`netns::run_in`] runs code in a named namespace.

pub mod addr;
pub mod ethtool;
pub mod filter;
pub mod link;
pub mod netlink;
pub mod netns;
pub mod process;
pub mod route;
pub mod sysctl;

use std::io;

/// Failure of a host operation.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The kernel refused a netlink request.
    #[error("{op}")]
    Netlink {
        op: String,
        #[source]
        source: io::Error,
    },
    /// A system call or file operation failed.
    #[error("{op} {what}")]
    Io {
        op: &'static str,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("no interface named {0}")]
    NoSuchLink(String),
    #[error("interface name {0:?} is not valid (1-15 bytes, no '/', ':' or spaces)")]
    InvalidLinkName(String),
    #[error("network namespace name {0:?} is not valid")]
    InvalidNetnsName(String),
    #[error("malformed netlink reply: {0}")]
    Decode(String),
    #[error("applying the nftables ruleset")]
    Nftables(#[source] nftables::helper::NftablesError),
}

impl HostError {
    /// The errno behind this failure, if the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Self::Netlink { source, .. } | Self::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { op, what, source }
    }
}

/// The kernel's `jiffies` now, the clock of the next-hop cache's expiry
/// (`NextHop::expires_jiffies`); read from `/proc/timer_list` (root only),
/// the one file that prints it.
pub fn jiffies() -> Result<u64, HostError> {
    const PATH: &str = "/proc/timer_list";
    let text = std::fs::read_to_string(PATH).map_err(HostError::io("read", PATH))?;
    text.lines()
        .find_map(|l| l.strip_prefix("jiffies:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| HostError::Decode(format!("no jiffies line in {PATH}")))
}

/// The kernel's host name (of this UTS namespace).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_owned())
}
