//! Container processes: started inside a named network namespace the way
//! `ip netns exec` starts them, checked for and stopped by PID.

use std::{
    ffi::CString,
    io,
    os::{
        fd::AsRawFd as _,
        unix::{ffi::OsStrExt as _, process::CommandExt as _},
    },
    path::Path,
    process::Command,
    time::Duration,
};

use super::{HostError, netns};

/// `/etc/netns/NAME/FILE` bind-mounted over `/etc/FILE` inside the
/// namespace (iproute2's convention for a per-namespace resolv.conf).
fn etc_binds(name: &str) -> Vec<(CString, CString)> {
    let dir = Path::new("/etc/netns").join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let src = CString::new(e.path().as_os_str().as_bytes()).ok()?;
            let dst = Path::new("/etc").join(e.file_name());
            let dst = CString::new(dst.as_os_str().as_bytes()).ok()?;
            Some((src, dst))
        })
        .collect()
}

/// A command for `argv` that runs inside namespace `name`: the child
/// enters the network namespace, gets a mount namespace of its own with
/// `/sys` showing that network namespace, and the namespace's files from
/// `/etc/netns/NAME` (what `ip netns exec` does).
pub fn command_in(name: &str, argv: &[String]) -> Result<Command, HostError> {
    let (program, args) = argv.split_first().ok_or_else(|| HostError::Io {
        op: "starting",
        what: "an empty command".into(),
        source: io::Error::from_raw_os_error(libc::EINVAL),
    })?;
    let file = netns::open(name)?;
    let sysfs_source = CString::new(name).map_err(|_| HostError::InvalidNetnsName(name.into()))?;
    let binds = etc_binds(name);
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: the closure runs in the forked child and only makes system
    // calls on values prepared before the fork (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Best effort from here on, as in iproute2: our mounts must not
            // propagate back, and /sys should list this namespace's links.
            let none = c"none";
            libc::mount(
                none.as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            );
            if libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH) == 0 {
                libc::mount(
                    sysfs_source.as_ptr(),
                    c"/sys".as_ptr(),
                    c"sysfs".as_ptr(),
                    0,
                    std::ptr::null(),
                );
            }
            for (src, dst) in &binds {
                libc::mount(
                    src.as_ptr(),
                    dst.as_ptr(),
                    none.as_ptr(),
                    libc::MS_BIND,
                    std::ptr::null(),
                );
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// True when `pid` names a live process.
pub fn is_running(pid: Option<u32>) -> bool {
    pid.is_some_and(|p| Path::new("/proc").join(p.to_string()).exists())
}

/// SIGTERM, up to 5 s, then SIGKILL.
pub fn stop(pid: Option<u32>) {
    let Some(pid) = pid else { return };
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return;
    };
    // SAFETY: kill(2) with a plain pid and signal.
    unsafe { libc::kill(pid_t, libc::SIGTERM) };
    for _ in 0..50 {
        if !is_running(Some(pid)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid_t, libc::SIGKILL) };
}
