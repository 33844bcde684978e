//! The two ethtool settings the dataplane needs, through SIOCETHTOOL on a
//! socket of the calling thread's namespace.

use std::io;

use super::{HostError, link};

/// Turns GRO on for `iface`. A veth only accepts XDP-redirected frames when
/// its peer has GRO on or runs an XDP program, so container ends get GRO.
pub fn enable_gro(iface: &str) -> Result<(), HostError> {
    const ETHTOOL_SGRO: u32 = 0x2c;
    set(iface, ETHTOOL_SGRO, 1)
}

/// Turns TX checksum offload off for `iface`, which also turns off TSO: the
/// kernel then completes checksums and segments before the frame leaves,
/// as NIC hardware does on a real wire. (Lab wires only.)
pub fn disable_tx_checksum_offload(iface: &str) -> Result<(), HostError> {
    const ETHTOOL_STXCSUM: u32 = 0x17;
    set(iface, ETHTOOL_STXCSUM, 0)
}

/// One `struct ethtool_value` set command.
fn set(iface: &str, cmd: u32, data: u32) -> Result<(), HostError> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    link::check_name(iface)?;
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: a zeroed ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&raw mut value).cast();
    let err = |source| HostError::Io {
        op: "ethtool on",
        what: iface.to_owned(),
        source,
    };
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: fd is a socket; req names the interface and points at value.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, std::ptr::from_mut(&mut req)) };
    let io_err = io::Error::last_os_error();
    // SAFETY: we own fd.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(err(io_err));
    }
    Ok(())
}
