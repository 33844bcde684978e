//! Per-device settings that only sysfs holds (RPS). sysfs shows the
//! network namespace it was mounted in, not the caller's, so each write
//! runs on a thread of its own with a private mount namespace and a sysfs
//! mounted there from the calling thread's network namespace.

use std::{io, path::Path};

use super::{HostError, link};

/// The online CPUs as a sysfs cpumask (hex, 32-bit groups separated by
/// commas, most significant first), from `/sys/devices/system/cpu/online`
/// ("0-3,8").
pub fn online_cpus_mask() -> Result<String, HostError> {
    const ONLINE: &str = "/sys/devices/system/cpu/online";
    let text = std::fs::read_to_string(ONLINE).map_err(HostError::io("reading", ONLINE))?;
    cpumask(&text).ok_or_else(|| HostError::Io {
        op: "parsing",
        what: ONLINE.to_owned(),
        source: io::Error::new(io::ErrorKind::InvalidData, text.trim().to_owned()),
    })
}

/// A CPU list ("0-3,8") as a cpumask; `None` when malformed.
fn cpumask(list: &str) -> Option<String> {
    let mut words: Vec<u32> = Vec::new();
    for part in list.trim().split(',') {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?),
            None => {
                let cpu = part.parse::<usize>().ok()?;
                (cpu, cpu)
            }
        };
        if first > last || last >= 8192 {
            return None;
        }
        for cpu in first..=last {
            if words.len() <= cpu / 32 {
                words.resize(cpu / 32 + 1, 0);
            }
            words[cpu / 32] |= 1 << (cpu % 32);
        }
    }
    if words.is_empty() {
        return None;
    }
    Some(
        words
            .iter()
            .rev()
            .map(|w| format!("{w:08x}"))
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Sets RPS on `iface`'s receive queue to the CPUs of `mask` (a cpumask as
/// [`online_cpus_mask`] gives; "0" turns RPS off).
///
/// Why the dataplane wants it on an endpoint's host-side veth: a veth
/// queues what the container sends on the backlog of the CPU that sent it,
/// and one TCP flow sends from two CPUs at once (the application's, and
/// the one whose softirq handles its ACKs), so its segments meet two
/// backlogs and arrive out of order: the receiver sees reordering and the
/// sender retransmits. With RPS the flow's hash picks one CPU's backlog for
/// all of them.
pub fn set_rps_cpus(iface: &str, mask: &str) -> Result<(), HostError> {
    link::check_name(iface)?;
    if mask.is_empty() || !mask.bytes().all(|b| b.is_ascii_hexdigit() || b == b',') {
        return Err(HostError::Io {
            op: "parsing the cpumask",
            what: mask.to_owned(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        });
    }
    let file = format!("/sys/class/net/{iface}/queues/rx-0/rps_cpus");
    let mask = mask.to_owned();
    let netns = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(HostError::io("opening", "/proc/thread-self/ns/net"))?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<(), HostError> {
            // SAFETY: unshare(2)/setns(2) with plain flags and a valid fd;
            // they change this thread only (its fs state is unshared
            // first), which ends right after.
            unsafe {
                if libc::unshare(libc::CLONE_FS | libc::CLONE_NEWNS) != 0 {
                    return Err(HostError::io("unsharing", "the mount namespace")(
                        io::Error::last_os_error(),
                    ));
                }
                if libc::setns(std::os::fd::AsRawFd::as_raw_fd(&netns), libc::CLONE_NEWNET) != 0 {
                    return Err(HostError::io("entering", "the caller's network namespace")(
                        io::Error::last_os_error(),
                    ));
                }
            }
            mount_private_sysfs()?;
            std::fs::write(&file, &mask).map_err(HostError::io("writing", file.clone()))
        })
        .join()
        .unwrap_or_else(|_| {
            Err(HostError::io("setting", "RPS")(io::Error::other(
                "the helper thread panicked",
            )))
        })
    })
}

/// In this thread's own mount namespace: nothing propagates out, and a
/// fresh sysfs over /sys shows this thread's network namespace.
fn mount_private_sysfs() -> Result<(), HostError> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (root, sys, sysfs) = (c("/"), c("/sys"), c("sysfs"));
    // SAFETY: valid NUL-terminated strings; a propagation change and a
    // new mount, both in this thread's private mount namespace.
    unsafe {
        if libc::mount(
            std::ptr::null(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            return Err(HostError::io("making private", "the mounts")(
                io::Error::last_os_error(),
            ));
        }
        if libc::mount(
            sysfs.as_ptr(),
            sys.as_ptr(),
            sysfs.as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            return Err(HostError::io("mounting", "sysfs")(
                io::Error::last_os_error(),
            ));
        }
    }
    debug_assert!(Path::new("/sys/class/net").exists());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cpumask;

    #[test]
    fn cpu_lists_become_cpumasks() {
        for (list, mask) in [
            ("0\n", Some("00000001")),
            ("0-1\n", Some("00000003")),
            ("0-3,8", Some("0000010f")),
            ("0-33", Some("00000003,ffffffff")),
            ("1,40", Some("00000100,00000002")),
            ("", None),
            ("3-1", None),
            ("0-x", None),
            ("0-9000", None),
        ] {
            assert_eq!(cpumask(list).as_deref(), mask, "{list:?}");
        }
    }
}
