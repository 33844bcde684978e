//! Making sure a pin directory lives on a BPF filesystem.

use std::{
    ffi::CString,
    fs, io,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use super::DataplaneError;

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const SYS_FS_BPF: &str = "/sys/fs/bpf";

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DataplaneError {
    let path = path.to_path_buf();
    move |source| DataplaneError::Io { op, path, source }
}

/// True when `path` exists and is on a bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: zeroed statfs is valid; c_path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &raw mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

fn mount_bpffs(target: &Path) -> Result<(), DataplaneError> {
    let c_target = CString::new(target.as_os_str().as_bytes())
        .map_err(|e| io_err("mount bpffs at", target)(io::Error::other(e)))?;
    // Root only: bpffs mounts world-writable and sticky (1777) by default,
    // and whoever may unlink a link pin may detach a program.
    let data = c"mode=0700";
    // SAFETY: valid NUL-terminated strings; the data is bpffs's options.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c_target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io_err("mount bpffs at", target)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Creates `dir` on a bpffs: under an existing bpffs it is a plain mkdir;
/// `/sys/fs/bpf` is mounted when it is not yet (it is not at boot here);
/// anywhere else a fresh bpffs is mounted on `dir` itself, which keeps it
/// visible inside `ip netns exec` (that remounts only /sys).
pub fn ensure_dir(dir: &Path) -> Result<(), DataplaneError> {
    if is_bpffs(dir) {
        return Ok(());
    }
    let ancestor = nearest_existing(dir);
    if !is_bpffs(&ancestor) {
        if ancestor == Path::new(SYS_FS_BPF) {
            mount_bpffs(&ancestor)?;
        } else {
            fs::create_dir_all(dir).map_err(io_err("create", dir))?;
            if !is_bpffs(dir) {
                mount_bpffs(dir)?;
            }
            return Ok(());
        }
    }
    fs::create_dir_all(dir).map_err(io_err("create", dir))
}

/// Checks that `dir` is on a bpffs and holds nothing but this project's
/// layout: `maps/` with the named maps, `links/` with `endpoint-N` and
/// `underlay-N` pins (and the kernel's own iterator files at a root).
pub fn check_ours(dir: &Path, maps: &[&str]) -> Result<(), DataplaneError> {
    let refuse = |why: String| DataplaneError::NotOurs {
        path: dir.to_path_buf(),
        why,
    };
    if !is_bpffs(dir) {
        return Err(refuse("not on a BPF filesystem".into()));
    }
    let names = |d: &Path| -> Result<Vec<String>, DataplaneError> {
        fs::read_dir(d)
            .map_err(io_err("read", d))?
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(io_err("read", d))
            })
            .collect()
    };
    for name in names(dir)? {
        match name.as_str() {
            "maps.debug" | "progs.debug" => {}
            "maps" => {
                if let Some(other) = names(&dir.join("maps"))?
                    .into_iter()
                    .find(|m| !maps.contains(&m.as_str()))
                {
                    return Err(refuse(format!("maps/{other} is not one of its maps")));
                }
            }
            "links" => {
                let link = |l: &str| {
                    let n = l
                        .strip_prefix("endpoint-")
                        .or_else(|| l.strip_prefix("underlay-"));
                    n.is_some_and(|n| n.parse::<u32>().is_ok())
                };
                if let Some(other) = names(&dir.join("links"))?.into_iter().find(|l| !link(l)) {
                    return Err(refuse(format!("links/{other} is not one of its links")));
                }
            }
            other => return Err(refuse(format!("{other} is not one of its pins"))),
        }
    }
    Ok(())
}

/// Removes everything pinned under `dir` (which unpins maps and detaches
/// pinned links), then `dir` itself, unmounting it if it is a mount point.
pub fn remove_dir(dir: &Path) -> Result<(), DataplaneError> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir).map_err(io_err("read", dir))? {
        let path = entry.map_err(io_err("read", dir))?.path();
        // The kernel's own iterator files at a bpffs root go with the mount.
        if path
            .file_name()
            .is_some_and(|n| n == "maps.debug" || n == "progs.debug")
        {
            continue;
        }
        if path.is_dir() {
            remove_dir(&path)?;
        } else {
            fs::remove_file(&path).map_err(io_err("unpin", &path))?;
        }
    }
    let c_dir = CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| io_err("unmount", dir)(io::Error::other(e)))?;
    // A mount point of our own: unmount (EINVAL just means "not a mount").
    // SAFETY: valid NUL-terminated path.
    unsafe { libc::umount2(c_dir.as_ptr(), libc::MNT_DETACH) };
    fs::remove_dir(dir).map_err(io_err("remove", dir))
}

fn nearest_existing(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    while !p.exists() {
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
    p
}
