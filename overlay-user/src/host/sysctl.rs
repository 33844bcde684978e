//! The network sysctls this program sets. `/proc/sys/net` shows the
//! namespace of the thread that opens it, so each acts in the calling
//! thread's namespace.

use super::{HostError, link};

fn write(path: &str, value: &str) -> Result<(), HostError> {
    std::fs::write(path, value).map_err(HostError::io("writing", path))
}

/// Lets the host route container traffic out (Docker does the same).
pub fn enable_ip_forward() -> Result<(), HostError> {
    write("/proc/sys/net/ipv4/ip_forward", "1")
}

/// IPv4 forwarding on one interface (`bpf_fib_lookup` answers only for a
/// device that forwards).
pub fn enable_iface_forwarding(iface: &str) -> Result<(), HostError> {
    link::check_name(iface)?;
    write(&format!("/proc/sys/net/ipv4/conf/{iface}/forwarding"), "1")
}

/// No IPv6 on one interface (the dataplane is IPv4-only: no link-local
/// chatter on it).
pub fn disable_ipv6(iface: &str) -> Result<(), HostError> {
    link::check_name(iface)?;
    write(
        &format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"),
        "1",
    )
}
