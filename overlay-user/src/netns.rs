//! Network namespaces and interfaces: RAII guards for namespaces and links,
//! running code or commands inside a namespace, interface lookups that are
//! namespace-aware (ioctls on a socket opened in the caller's namespace).

use std::{
    ffi::CString,
    fs::File,
    io,
    os::fd::AsRawFd,
    process::{Command, Output},
    thread,
};

use crate::MacAddr;

/// Failure of a namespace or interface operation, with the command line.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("`{cmd}` failed: {stderr}")]
    Command { cmd: String, stderr: String },
    #[error("running `{cmd}`")]
    Spawn {
        cmd: String,
        #[source]
        source: io::Error,
    },
    #[error("{op} {name}")]
    Io {
        op: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
}

/// Runs `program args...`, failing with its stderr when it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> Result<Output, NetnsError> {
    run_with_input(program, args, None)
}

/// [`run`] with `input` on the command's stdin.
pub fn run_with_input(
    program: &str,
    args: &[&str],
    input: Option<&[u8]>,
) -> Result<Output, NetnsError> {
    use std::{io::Write as _, process::Stdio};

    let cmd = format!("{program} {}", args.join(" "));
    let spawn_err = |source| NetnsError::Spawn {
        cmd: cmd.clone(),
        source,
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if !out.status.success() {
        return Err(NetnsError::Command {
            cmd,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

/// `ip args...`
pub fn ip(args: &[&str]) -> Result<Output, NetnsError> {
    run("ip", args)
}

/// One end of a veth pair: its name, the namespace it goes into (`None`:
/// the caller's) and its MTU (`None`: the default).
#[derive(Clone, Copy, Debug)]
pub struct VethEnd<'a> {
    pub name: &'a str,
    pub netns: Option<&'a str>,
    pub mtu: Option<u32>,
}

/// Creates a veth pair with both ends placed and sized in one command.
pub fn add_veth(a: VethEnd<'_>, b: VethEnd<'_>) -> Result<(), NetnsError> {
    fn end<'a>(argv: &mut Vec<&'a str>, e: &VethEnd<'a>, mtu: Option<&'a str>) {
        argv.push(e.name);
        if let Some(ns) = e.netns {
            argv.extend(["netns", ns]);
        }
        if let Some(mtu) = mtu {
            argv.extend(["mtu", mtu]);
        }
    }
    let (mtu_a, mtu_b) = (a.mtu.map(|m| m.to_string()), b.mtu.map(|m| m.to_string()));
    let mut argv = vec!["link", "add"];
    end(&mut argv, &a, mtu_a.as_deref());
    argv.extend(["type", "veth", "peer", "name"]);
    end(&mut argv, &b, mtu_b.as_deref());
    ip(&argv).map(drop)
}

/// A named network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates `name` with loopback up.
    pub fn new(name: &str) -> Result<Self, NetnsError> {
        ip(&["netns", "add", name])?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A handle on a namespace someone else owns: never deleted by us.
    pub fn existing(name: &str) -> Borrowed {
        Borrowed(std::mem::ManuallyDrop::new(Self {
            name: name.to_owned(),
        }))
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, argv: &[&str]) -> Result<Output, NetnsError> {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(argv);
        ip(&args)
    }

    /// `ip netns exec NAME` as a [`Command`], for long-running processes.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Runs `f` on a thread that has entered this namespace. Kernel objects
    /// that resolve interfaces by index (tcx/XDP links, ioctls) see this
    /// namespace's interfaces there.
    pub fn run<T: Send, F: FnOnce() -> T + Send>(&self, f: F) -> Result<T, NetnsError> {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).map_err(|source| NetnsError::Io {
            op: "open",
            name: path.clone(),
            source,
        })?;
        thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on a valid netns fd affects only this thread.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(NetnsError::Io {
                        op: "setns",
                        name: self.name.clone(),
                        source: io::Error::last_os_error(),
                    });
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// ifindex of `ifname` inside this namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32, NetnsError> {
        self.run(|| ifindex(ifname))?
    }

    /// MAC of `ifname` inside this namespace.
    pub fn mac(&self, ifname: &str) -> Result<MacAddr, NetnsError> {
        self.run(|| mac(ifname))?
    }
}

/// A [`NetNs`] that is not deleted on drop.
pub struct Borrowed(std::mem::ManuallyDrop<NetNs>);

impl std::ops::Deref for Borrowed {
    type Target = NetNs;

    fn deref(&self) -> &NetNs {
        &self.0
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth ends (and their peers).
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// ifindex of `ifname` in the calling thread's namespace.
pub fn ifindex(ifname: &str) -> Result<u32, NetnsError> {
    let c = CString::new(ifname).map_err(|e| NetnsError::Io {
        op: "interface name",
        name: ifname.to_owned(),
        source: io::Error::other(e),
    })?;
    // SAFETY: valid NUL-terminated name.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(NetnsError::Io {
            op: "no such interface",
            name: ifname.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(idx)
}

/// MAC of `ifname` in the calling thread's namespace (SIOCGIFHWADDR).
pub fn mac(ifname: &str) -> Result<MacAddr, NetnsError> {
    let mut req = ifreq(ifname)?;
    ioctl(ifname, "SIOCGIFHWADDR", libc::SIOCGIFHWADDR, &mut req)?;
    // SAFETY: SIOCGIFHWADDR filled ifru_hwaddr.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut out = [0u8; 6];
    for (o, d) in out.iter_mut().zip(data.iter()) {
        *o = *d as u8;
    }
    Ok(MacAddr(out))
}

/// An `ifreq` naming `ifname`.
fn ifreq(ifname: &str) -> Result<libc::ifreq, NetnsError> {
    if ifname.len() >= libc::IFNAMSIZ {
        return Err(NetnsError::Io {
            op: "interface name too long",
            name: ifname.to_owned(),
            source: io::Error::other("IFNAMSIZ"),
        });
    }
    // SAFETY: zeroed ifreq is valid; the name fits (checked above).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(ifname.bytes()) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// One interface ioctl on a throwaway socket in the caller's namespace.
fn ioctl(
    ifname: &str,
    op: &'static str,
    request: libc::c_ulong,
    req: &mut libc::ifreq,
) -> Result<(), NetnsError> {
    let err = |source| NetnsError::Io {
        op,
        name: ifname.to_owned(),
        source,
    };
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(err(io::Error::last_os_error()));
    }
    // SAFETY: fd is a socket and req a valid ifreq for this request.
    let rc = unsafe { libc::ioctl(fd, request, std::ptr::from_mut(req)) };
    let io_err = io::Error::last_os_error();
    // SAFETY: we own fd.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return Err(err(io_err));
    }
    Ok(())
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

/// Name of interface `ifindex` in the calling thread's namespace.
pub fn ifname(ifindex: u32) -> Result<String, NetnsError> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return Err(NetnsError::Io {
            op: "no interface with index",
            name: ifindex.to_string(),
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Ok(name.to_string_lossy().into_owned())
}

/// Turns on IPv4 forwarding for one interface in the calling thread's
/// namespace (`/proc/sys/net` follows the thread's namespace).
pub fn enable_ipv4_forwarding(ifname: &str) -> Result<(), NetnsError> {
    let path = format!("/proc/sys/net/ipv4/conf/{ifname}/forwarding");
    std::fs::write(&path, "1").map_err(|source| NetnsError::Io {
        op: "write",
        name: path,
        source,
    })
}

/// Turns GRO on for `ifname` in the calling thread's namespace. A veth
/// only accepts XDP-redirected frames when its peer has GRO on or runs an
/// XDP program, so container ends get GRO.
pub fn enable_gro(ifname: &str) -> Result<(), NetnsError> {
    const ETHTOOL_SGRO: u32 = 0x2c;
    ethtool_set(ifname, ETHTOOL_SGRO, 1)
}

/// Turns TX checksum offload off for `ifname` (calling thread's namespace),
/// which also turns off TSO: the kernel then completes checksums and
/// segments before the frame leaves, as NIC hardware does on a real wire.
/// A veth underlay otherwise hands checksum-partial super-packets to the
/// next namespace, which XDP (no skb metadata) cannot carry.
pub fn disable_tx_checksum_offload(ifname: &str) -> Result<(), NetnsError> {
    const ETHTOOL_STXCSUM: u32 = 0x17;
    ethtool_set(ifname, ETHTOOL_STXCSUM, 0)
}

/// One `struct ethtool_value` set command (SIOCETHTOOL).
fn ethtool_set(ifname: &str, cmd: u32, data: u32) -> Result<(), NetnsError> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue { cmd, data };
    let mut req = ifreq(ifname)?;
    req.ifr_ifru.ifru_data = (&raw mut value).cast();
    ioctl(ifname, "SIOCETHTOOL", SIOCETHTOOL, &mut req)
}
