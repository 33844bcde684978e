//! The daemon's Unix socket: one JSON request per connection (the CLI's
//! arguments), one JSON reply (exit code, stdout, stderr). The daemon runs
//! the command exactly as the CLI would, so results are identical either
//! way; requests are handled one at a time.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{
        fs::PermissionsExt as _,
        net::{UnixListener, UnixStream},
    },
    path::Path,
    time::Duration,
};

use anyhow::Context as _;
use clap::Parser as _;
use overlay_user::engine::Paths;
use serde::{Deserialize, Serialize};

use crate::{Cli, Outcome, execute, served_by_daemon};

#[derive(Serialize, Deserialize)]
struct Request {
    args: Vec<String>,
}

/// The daemon's answer.
#[derive(Serialize, Deserialize)]
pub(crate) struct Reply {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Sends `args` to a daemon at `socket`. `None` when no daemon answers
/// there (the caller then runs the command itself).
pub fn call(socket: &Path, args: &[String]) -> anyhow::Result<Option<Reply>> {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return Ok(None);
    };
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut line = serde_json::to_string(&Request {
        args: args.to_vec(),
    })?;
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .context("sending to the daemon")?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .context("reading the daemon's reply")?;
    Ok(Some(
        serde_json::from_str(&reply).context("the daemon's reply")?,
    ))
}

/// Binds the socket, root only (0600); a leftover file from a dead daemon
/// is replaced.
pub fn bind(socket: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            anyhow::bail!("another daemon serves {}", socket.display());
        }
        std::fs::remove_file(socket)
            .with_context(|| format!("removing stale {}", socket.display()))?;
    }
    let listener =
        UnixListener::bind(socket).with_context(|| format!("binding {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves requests one at a time, forever.
pub fn serve(listener: &UnixListener, paths: &Paths) {
    for stream in listener.incoming().flatten() {
        if let Err(e) = handle(stream, paths) {
            tracing::warn!(error = %e, "request failed");
        }
    }
}

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

fn handle(mut stream: UnixStream, paths: &Paths) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let request: Request = serde_json::from_str(&line).context("malformed request")?;
    let reply = if peer_uid(&stream) != Some(0) {
        Reply {
            code: 1,
            stdout: String::new(),
            stderr: "overlay: permission denied: root only\n".into(),
        }
    } else {
        run(&request.args, paths)
    };
    tracing::info!(args = ?request.args, code = reply.code, "served");
    let mut out = serde_json::to_string(&reply)?;
    out.push('\n');
    stream.write_all(out.as_bytes())?;
    Ok(())
}

fn run(args: &[String], paths: &Paths) -> Reply {
    let cli = match Cli::try_parse_from(
        std::iter::once("overlay".to_owned()).chain(args.iter().cloned()),
    ) {
        Ok(cli) => cli,
        Err(e) => {
            return Reply {
                code: 2,
                stdout: String::new(),
                stderr: e.render().to_string(),
            };
        }
    };
    if !served_by_daemon(&cli.command) {
        return Reply {
            code: 1,
            stdout: String::new(),
            stderr: "overlay: not served by the daemon\n".into(),
        };
    }
    match execute(paths, cli.command) {
        Ok(Outcome::Text(text)) => Reply {
            code: 0,
            stdout: if text.is_empty() {
                text
            } else {
                format!("{text}\n")
            },
            stderr: String::new(),
        },
        Ok(Outcome::Wait(_)) => Reply {
            code: 1,
            stdout: String::new(),
            stderr: "overlay: not served by the daemon\n".into(),
        },
        Err(e) => Reply {
            code: 1,
            stdout: String::new(),
            stderr: format!("overlay: {e:#}\n"),
        },
    }
}
