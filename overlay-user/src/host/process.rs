//! Container processes: started inside a named network namespace the way
//! `ip netns exec` starts them; checked for by PID and start time, and
//! signalled through a pidfd, never by a PID that may have been reused.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::{ffi::OsStrExt as _, process::CommandExt as _},
    },
    process::Command,
    time::Duration,
};

use super::{HostError, netns};
use crate::model::ProcessRef;

/// `/etc/netns/NAME/FILE` bind-mounted over `/etc/FILE` inside the
/// namespace (iproute2's convention for a per-namespace resolv.conf).
fn etc_binds(name: &str) -> Vec<(CString, CString)> {
    let dir = std::path::Path::new("/etc/netns").join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let src = CString::new(e.path().as_os_str().as_bytes()).ok()?;
            let dst = std::path::Path::new("/etc").join(e.file_name());
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

/// State (field 3) and start time (field 22, clock ticks after boot) of
/// process `pid` from `/proc/PID/stat`; `None` when there is no such
/// process.
fn stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: count fields after the last ')'.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    Some((state, rest.nth(18)?.parse().ok()?))
}

/// The start time of process `pid`, if there is one.
pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// The live process `pid`, identified by its start time.
pub fn identify(pid: u32) -> Option<ProcessRef> {
    Some(ProcessRef {
        pid,
        start: start_time(pid)?,
    })
}

/// True when `process` is alive: its PID exists, was not reused, and is
/// not a zombie waiting to be reaped.
pub fn is_running(process: Option<ProcessRef>) -> bool {
    process.is_some_and(|p| {
        stat(p.pid).is_some_and(|(state, start)| start == p.start && !matches!(state, 'Z' | 'X'))
    })
}

/// A pidfd on `process`, or `None` when it is gone (its PID may belong to
/// another process by now). Opened before the start time is checked, so
/// the descriptor cannot refer to a later process with the same PID.
fn pidfd(process: ProcessRef) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(process.pid).ok()?;
    // SAFETY: pidfd_open(2) with a plain pid and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    (start_time(process.pid) == Some(process.start)).then_some(fd)
}

fn signal(fd: &OwnedFd, sig: libc::c_int) {
    // SAFETY: pidfd_send_signal(2) on a pidfd we own; no siginfo, no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        );
    }
}

/// Waits up to `timeout` for the process behind `fd` to exit.
fn exited(fd: &OwnedFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&raw mut pfd, 1, ms) > 0 }
}

/// SIGTERM, up to 5 s, then SIGKILL: through a pidfd, so a process that
/// has gone and whose PID was reused is never signalled.
pub fn stop(process: Option<ProcessRef>) {
    let Some(fd) = process.and_then(pidfd) else {
        return;
    };
    signal(&fd, libc::SIGTERM);
    if !exited(&fd, Duration::from_secs(5)) {
        signal(&fd, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};

    use super::*;

    /// A `sleep` that is killed and reaped however the test ends.
    struct Sleeper(Child);

    impl Sleeper {
        fn new() -> Self {
            Self(
                Command::new("sleep")
                    .arg("60")
                    .spawn()
                    .expect("spawn sleep"),
            )
        }

        fn exited(&mut self) -> bool {
            self.0.try_wait().expect("try_wait").is_some()
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn a_process_is_known_by_pid_and_start_time() {
        let me = identify(std::process::id()).expect("own stat");
        assert!(is_running(Some(me)));
        let reused = ProcessRef {
            start: me.start + 1,
            ..me
        };
        assert!(
            !is_running(Some(reused)),
            "a different start time is another process"
        );
        assert!(!is_running(None));
    }

    #[test]
    fn stop_never_signals_a_process_that_reused_the_pid() {
        let mut sleeper = Sleeper::new();
        let real = identify(sleeper.0.id()).expect("sleep is running");
        stop(Some(ProcessRef {
            start: real.start + 1,
            ..real
        }));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!sleeper.exited(), "stop signalled a PID it did not start");

        stop(Some(real));
        // Zombie until reaped: exited, and no longer "running".
        assert!(!is_running(Some(real)));
        assert!(sleeper.exited());
    }

    #[test]
    fn command_names_with_parentheses_are_parsed() {
        let dir = std::env::temp_dir().join(format!("ovl-proc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let odd = dir.join("a) b (c");
        std::fs::copy("/bin/sleep", &odd).expect("copy sleep");
        let child = Command::new(&odd).arg("60").spawn();
        let _ = std::fs::remove_dir_all(&dir);
        let sleeper = Sleeper(child.expect("spawn odd name"));
        let p = identify(sleeper.0.id()).expect("stat parsed");
        assert!(is_running(Some(p)));
        // Started after this test process: a misparsed field (thread
        // count, an address) would not be.
        let me = identify(std::process::id()).expect("own stat");
        assert!(p.start >= me.start, "{p:?} vs {me:?}");
    }
}
