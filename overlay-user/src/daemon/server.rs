//! The daemon's Unix socket: one JSON [`Request`] per connection, one JSON
//! [`Reply`]. Only root may ask, and only for the host this daemon serves;
//! requests are handled one at a time, each as one engine transaction.

use std::{
    io::{self, BufRead as _, BufReader, Write as _},
    os::unix::{
        fs::PermissionsExt as _,
        net::{UnixListener, UnixStream},
    },
    path::Path,
    time::Duration,
};

use super::DaemonError;
use crate::{
    api::{Reply, Request, Target, error_chain, handler},
    engine::transaction,
};

/// Binds the socket, root only (0600); a leftover file from a dead daemon
/// is replaced, a live daemon is not.
pub fn bind(socket: &Path) -> Result<UnixListener, DaemonError> {
    let err = |op: &'static str| {
        move |source| DaemonError::Socket {
            op,
            path: socket.to_path_buf(),
            source,
        }
    };
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(err("creating the directory of"))?;
    }
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            return Err(DaemonError::AlreadyServed(socket.to_path_buf()));
        }
        std::fs::remove_file(socket).map_err(err("removing the stale"))?;
    }
    let listener = UnixListener::bind(socket).map_err(err("binding"))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(err("restricting"))?;
    Ok(listener)
}

/// Serves requests one at a time, forever. A request that panics is
/// logged and the connection dropped; the server goes on.
pub fn serve(listener: &UnixListener, target: &Target) {
    for stream in listener.incoming().flatten() {
        let served =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle(stream, target)));
        match served {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "request failed"),
            Err(_) => tracing::error!("a request panicked; serving on"),
        }
    }
}

/// The uid of the process at the other end.
fn peer_uid(stream: &UnixStream) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED fills a ucred of the given length.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(stream),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &raw mut len,
        )
    };
    (rc == 0).then_some(cred.uid)
}

fn handle(mut stream: UnixStream, target: &Target) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let (what, reply): (String, Reply) = if peer_uid(&stream) != Some(0) {
        ("?".into(), Err("permission denied: root only".into()))
    } else {
        match serde_json::from_str::<Request>(&line) {
            Err(e) => ("?".into(), Err(format!("malformed request: {e}"))),
            Ok(request) => (request.command.name(), answer(request, target)),
        }
    };
    super::metrics::telemetry().request("cli", &what, reply.is_ok());
    tracing::info!(command = %what, ok = reply.is_ok(), "served");
    let mut out = serde_json::to_string(&reply).expect("replies serialize");
    out.push('\n');
    stream.write_all(out.as_bytes())
}

fn answer(request: Request, target: &Target) -> Reply {
    if request.target != *target {
        return Err(format!(
            "this daemon serves state {} and pins {} in another network namespace or \
             directory than the command asked for ({} and {}): use the daemon's --root, \
             --state-dir, --pin-dir and --netns, or --socket of the daemon that serves them",
            target.paths.state_dir.display(),
            target.paths.pin_dir.display(),
            request.target.paths.state_dir.display(),
            request.target.paths.pin_dir.display(),
        ));
    }
    transaction(&target.paths, |engine| {
        handler::execute(engine, request.command)
    })
    .map_err(|e| error_chain(&e))
}
