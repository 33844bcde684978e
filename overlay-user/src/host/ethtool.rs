//! What the dataplane asks of ethtool (GRO, TX checksum offload, the
//! driver's name), through SIOCETHTOOL on a socket of the calling thread's
//! namespace.

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
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue { cmd, data };
    ioctl(iface, (&raw mut value).cast())
}

/// SIOCETHTOOL with `data` (an ethtool command struct) on a socket of the
/// calling thread's namespace.
fn ioctl(iface: &str, data: *mut libc::c_char) -> Result<(), HostError> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    link::check_name(iface)?;
    // SAFETY: a zeroed ifreq is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = data;
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
    // SAFETY: fd is a socket; req names the interface and points at the
    // command struct the caller owns for the duration of the call.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, std::ptr::from_mut(&mut req)) };
    let io_err = io::Error::last_os_error();
    // SAFETY: we own fd.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(err(io_err));
    }
    Ok(())
}

/// The driver behind `iface` (`veth`, `virtio_net`, `mlx5_core`, ...), or
/// `None` when the device does not say (ETHTOOL_GDRVINFO unsupported).
pub fn driver(iface: &str) -> Result<Option<String>, HostError> {
    const ETHTOOL_GDRVINFO: u32 = 0x3;
    /// `struct ethtool_drvinfo`.
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    // SAFETY: all-zero is a valid ethtool_drvinfo.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    match ioctl(iface, (&raw mut info).cast()) {
        Ok(()) => {}
        Err(e) if e.errno() == Some(libc::EOPNOTSUPP) => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = info.driver.iter().position(|b| *b == 0).unwrap_or(32);
    Ok(Some(
        String::from_utf8_lossy(&info.driver[..len]).into_owned(),
    ))
}
