//! Named network namespaces, the way `ip netns` keeps them: a namespace is
//! pinned by a bind mount of its `ns/net` file at `/run/netns/NAME`, so
//! `ip netns` (and anything else that follows the convention) sees ours and
//! we see its.

use std::{
    ffi::CString,
    fs::{self, File, OpenOptions},
    io,
    os::{
        fd::AsRawFd as _,
        unix::{ffi::OsStrExt as _, fs::OpenOptionsExt as _},
    },
    path::{Path, PathBuf},
    thread,
};

use super::HostError;

/// Where named namespaces are pinned.
pub const NETNS_DIR: &str = "/run/netns";

/// The pin of namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// A name that is one path component (no `/`, not `.` or `..`).
pub fn check_name(name: &str) -> Result<(), HostError> {
    if name.is_empty()
        || name == "."
        || name == ".."
        || name.len() > 255
        || name.contains(['/', '\0'])
    {
        return Err(HostError::InvalidNetnsName(name.to_owned()));
    }
    Ok(())
}

/// True when namespace `name` is pinned.
pub fn exists(name: &str) -> bool {
    check_name(name).is_ok() && path(name).exists()
}

/// True when process `pid` exists and has a network namespace to adopt.
pub fn pid_has_netns(pid: u32) -> bool {
    Path::new("/proc")
        .join(pid.to_string())
        .join("ns/net")
        .exists()
}

fn c_path(p: &Path) -> Result<CString, HostError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|e| HostError::Io {
        op: "naming",
        what: p.display().to_string(),
        source: io::Error::other(e),
    })
}

/// mount(2) with a bind or propagation flag set and no data.
fn mount(src: &Path, target: &Path, fstype: Option<&str>, flags: libc::c_ulong) -> io::Result<()> {
    let to_c = |p: &Path| CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (src, target) = (to_c(src)?, to_c(target)?);
    let fstype = fstype
        .map(CString::new)
        .transpose()
        .map_err(io::Error::other)?;
    // SAFETY: valid NUL-terminated strings (or null for the type); no data.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Creates the pin directory as a shared mount (as iproute2 does), so pins
/// made later propagate into mount namespaces that copied it.
fn prepare_dir() -> Result<(), HostError> {
    let dir = Path::new(NETNS_DIR);
    fs::create_dir_all(dir).map_err(HostError::io("creating", NETNS_DIR))?;
    let shared = libc::MS_SHARED | libc::MS_REC;
    match mount(Path::new("none"), dir, None, shared) {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself first.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            mount(dir, dir, None, libc::MS_BIND | libc::MS_REC)
                .and_then(|()| mount(Path::new("none"), dir, None, shared))
                .map_err(HostError::io("making a shared mount of", NETNS_DIR))
        }
        Err(e) => Err(HostError::Io {
            op: "making a shared mount of",
            what: NETNS_DIR.into(),
            source: e,
        }),
    }
}

/// Creates an empty pin file for `name`; EEXIST when the name is taken.
fn create_pin(name: &str) -> Result<PathBuf, HostError> {
    check_name(name)?;
    prepare_dir()?;
    let pin = path(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&pin)
        .map_err(HostError::io(
            "creating the namespace pin",
            pin.display().to_string(),
        ))?;
    Ok(pin)
}

/// Creates namespace `name` (`ip netns add`), with loopback down as the
/// kernel makes it. EEXIST when the name is taken.
pub fn create(name: &str) -> Result<(), HostError> {
    let pin = create_pin(name)?;
    // unshare(CLONE_NEWNET) moves only the calling thread: do it on a
    // thread of its own, which pins its new namespace and ends.
    let result = thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            // SAFETY: unshare(2) with a plain flag; affects this thread.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(io::Error::last_os_error());
            }
            mount(
                Path::new("/proc/thread-self/ns/net"),
                &pin,
                None,
                libc::MS_BIND,
            )
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    result.map_err(|source| {
        let _ = fs::remove_file(&pin);
        HostError::Io {
            op: "creating network namespace",
            what: name.to_owned(),
            source,
        }
    })
}

/// Pins the network namespace of process `pid` as `name` (`ip netns
/// attach`); the namespace stays the process's.
pub fn attach(name: &str, pid: u32) -> Result<(), HostError> {
    let pin = create_pin(name)?;
    let src = Path::new("/proc").join(pid.to_string()).join("ns/net");
    mount(&src, &pin, None, libc::MS_BIND).map_err(|source| {
        let _ = fs::remove_file(&pin);
        HostError::Io {
            op: "attaching the network namespace of process",
            what: pid.to_string(),
            source,
        }
    })
}

/// Removes the pin of `name` (`ip netns del`): the namespace goes once
/// nothing else holds it. False when there was no such pin.
pub fn delete(name: &str) -> Result<bool, HostError> {
    check_name(name)?;
    let pin = path(name);
    if !pin.exists() {
        return Ok(false);
    }
    let c = c_path(&pin)?;
    // SAFETY: valid NUL-terminated path. EINVAL: not a mount (a leftover
    // file); the unlink below still removes it.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    match fs::remove_file(&pin) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(HostError::Io {
            op: "removing network namespace",
            what: name.to_owned(),
            source,
        }),
    }
}

/// iproute2's per-namespace files: `/etc/netns/NAME/FILE` is mounted over
/// `/etc/FILE` for processes started in namespace NAME.
const ETC_NETNS_DIR: &str = "/etc/netns";

/// The text of namespace `name`'s `file` (see [`ETC_NETNS_DIR`]), if any.
pub fn etc_file(name: &str, file: &str) -> Result<Option<String>, HostError> {
    check_name(name)?;
    let path = Path::new(ETC_NETNS_DIR).join(name).join(file);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(HostError::Io {
            op: "reading",
            what: path.display().to_string(),
            source,
        }),
    }
}

/// Writes namespace `name`'s `file` in place (truncated and rewritten, so
/// the mounts of processes already running show the new text), or removes
/// it with `None` (and the namespace's directory once empty).
pub fn set_etc_file(name: &str, file: &str, text: Option<&str>) -> Result<(), HostError> {
    check_name(name)?;
    let dir = Path::new(ETC_NETNS_DIR).join(name);
    let path = dir.join(file);
    let what = || path.display().to_string();
    match text {
        Some(text) => {
            fs::create_dir_all(&dir).map_err(|source| HostError::Io {
                op: "creating",
                what: dir.display().to_string(),
                source,
            })?;
            fs::write(&path, text).map_err(|source| HostError::Io {
                op: "writing",
                what: what(),
                source,
            })
        }
        None => {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(HostError::Io {
                        op: "removing",
                        what: what(),
                        source,
                    });
                }
            }
            // Only when empty: other files there are not ours.
            let _ = fs::remove_dir(&dir);
            Ok(())
        }
    }
}

/// Removes namespace `name`'s `file` if this program wrote it (it starts
/// with `marker`), and the namespace's directory once empty; a file
/// someone else put there stays.
pub fn remove_own_etc_file(name: &str, file: &str, marker: &str) -> Result<(), HostError> {
    match etc_file(name, file)? {
        Some(text) if text.starts_with(marker) => set_etc_file(name, file, None),
        _ => Ok(()),
    }
}

/// Opens namespace `name` (for setns).
pub fn open(name: &str) -> Result<File, HostError> {
    check_name(name)?;
    File::open(path(name)).map_err(HostError::io("opening network namespace", name))
}

/// setns(2) of the calling thread into the namespace behind `file`.
pub fn enter_file(file: &File, name: &str) -> Result<(), HostError> {
    // SAFETY: setns on a valid namespace fd; affects the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(HostError::Io {
            op: "entering network namespace",
            what: name.to_owned(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Moves the calling thread into namespace `name`. Called before any other
/// thread exists, it moves the whole process and every child it starts.
pub fn enter(name: &str) -> Result<(), HostError> {
    enter_file(&open(name)?, name)
}

/// Runs `f` on a thread that has entered namespace `name`. Kernel objects
/// that resolve interfaces by index (tcx/XDP links, ioctls, sysctls under
/// `/proc/sys/net`, sockets opened there) see that namespace.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T, HostError> {
    let file = open(name)?;
    thread::scope(|s| {
        s.spawn(|| {
            enter_file(&file, name)?;
            Ok(f())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Identity of the calling thread's network namespace (device, inode), to
/// tell whether two processes act on the same host network.
pub fn current_id() -> Result<(u64, u64), HostError> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = fs::metadata("/proc/thread-self/ns/net")
        .map_err(HostError::io("reading", "/proc/thread-self/ns/net"))?;
    Ok((meta.dev(), meta.ino()))
}
