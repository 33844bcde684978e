//! One daemon per state directory: `STATE/daemon.lock`, held with
//! `flock(2)` for the daemon's lifetime and naming its PID and socket, so a
//! second daemon refuses to start and the CLI finds the daemon that owns
//! the state whatever `--socket` it was given.

use std::{
    fs::{File, OpenOptions},
    io::{self, Read as _, Seek as _, Write as _},
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

/// The lock file's name in the state directory.
const LOCK_FILE: &str = "daemon.lock";

/// The daemon that holds a state directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its CLI socket; `None` for `daemon --once`, which serves none.
    pub socket: Option<PathBuf>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {}", self.pid)?;
        match &self.socket {
            Some(s) => write!(f, ", socket {}", s.display()),
            None => write!(f, ", one reconcile pass"),
        }
    }
}

/// Failure to take the lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another daemon ({holder}) manages state directory {dir}")]
    Held { dir: PathBuf, holder: Holder },
    #[error("locking {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The held lock; dropping it (or the process dying) releases it.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
}

fn open(dir: &Path) -> Result<(File, PathBuf), LockError> {
    let path = dir.join(LOCK_FILE);
    let err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    // Not truncated here: a reader must not wipe the holder's record.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(err)?;
    Ok((file, path))
}

/// `flock` without blocking; false when someone else holds it.
pub(crate) fn try_flock(file: &File, op: libc::c_int) -> io::Result<bool> {
    // SAFETY: flock(2) on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// "PID\nSOCKET\n" (no socket line for `--once`).
fn parse(text: &str) -> Option<Holder> {
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    let socket = lines.next().filter(|s| !s.is_empty()).map(PathBuf::from);
    Some(Holder { pid, socket })
}

/// Takes the state directory for this daemon, recording its PID and
/// `socket`.
pub fn acquire(dir: &Path, socket: Option<&Path>) -> Result<DaemonLock, LockError> {
    let (mut file, path) = open(dir)?;
    let err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    // A CLI looking for the holder takes a shared lock for a moment.
    let mut locked = false;
    for _ in 0..10 {
        locked = try_flock(&file, libc::LOCK_EX).map_err(err)?;
        if locked {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if !locked {
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(err)?;
        // Written a moment after the holder took the lock: may be empty.
        let holder = parse(&text).unwrap_or(Holder {
            pid: 0,
            socket: None,
        });
        return Err(LockError::Held {
            dir: dir.to_path_buf(),
            holder,
        });
    }
    let mut record = format!("{}\n", std::process::id());
    if let Some(s) = socket {
        record.push_str(&format!("{}\n", s.display()));
    }
    file.set_len(0).map_err(err)?;
    file.rewind().map_err(err)?;
    file.write_all(record.as_bytes()).map_err(err)?;
    Ok(DaemonLock { _file: file })
}

/// The daemon holding `dir`, if one runs.
pub fn holder(dir: &Path) -> Result<Option<Holder>, LockError> {
    if !dir.join(LOCK_FILE).exists() {
        return Ok(None);
    }
    let (mut file, path) = open(dir)?;
    let err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    if try_flock(&file, libc::LOCK_SH).map_err(err)? {
        return Ok(None);
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(err)?;
    Ok(Some(parse(&text).unwrap_or(Holder {
        pid: 0,
        socket: None,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "ovl-lock-{}-{}",
            std::process::id(),
            crate::model::ids::new_id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn one_daemon_per_state_directory() {
        let dir = temp_dir();
        assert_eq!(holder(&dir).expect("no lock yet"), None);
        let socket = dir.join("overlay.sock");
        let lock = acquire(&dir, Some(&socket)).expect("first daemon");
        let me = Holder {
            pid: std::process::id(),
            socket: Some(socket.clone()),
        };
        // flock locks belong to the open file: a second open conflicts
        // even within one process, as a second daemon's would.
        match acquire(&dir, None) {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder, me),
            other => panic!("second daemon started: {other:?}"),
        }
        assert_eq!(holder(&dir).expect("held"), Some(me));
        drop(lock);
        assert_eq!(holder(&dir).expect("released"), None);
        let once = acquire(&dir, None).expect("after release");
        assert_eq!(
            holder(&dir).expect("held").map(|h| h.socket),
            Some(None),
            "a --once pass serves no socket"
        );
        drop(once);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
