//! The CLI's side of the daemon socket: one JSON request per connection,
//! one JSON reply, each a line.

use std::{
    io::{self, BufRead as _, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use super::{Reply, Request};

/// How long the CLI waits for the daemon's reply: commands that touch the
/// cluster store may wait for it, and the store for another command.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(120);

/// Failure talking to a daemon that answered the connect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("talking to the daemon at {socket}")]
    Io {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the daemon at {socket} sent a reply this version cannot read")]
    Decode {
        socket: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Sends `request` to a daemon at `socket`. `None` when no daemon answers
/// there (the caller then runs the command itself).
pub fn call(socket: &Path, request: &Request) -> Result<Option<Reply>, ClientError> {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return Ok(None);
    };
    let io = |source| ClientError::Io {
        socket: socket.to_path_buf(),
        source,
    };
    stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_string(request).expect("requests serialize");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).map_err(io)?;
    serde_json::from_str(&reply)
        .map(Some)
        .map_err(|source| ClientError::Decode {
            socket: socket.to_path_buf(),
            source,
        })
}
