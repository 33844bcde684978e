//! Docker Engine's API, as far as the plugin needs it: the names of
//! Docker's networks. The plugin protocol gives a network's ID only, and
//! asking Docker while it waits on one of our answers could deadlock, so
//! the names are learned afterwards ([`learn_names`]), outside the state's
//! lock, with a timeout.

use std::{
    collections::BTreeMap,
    io::{self, BufReader, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

use serde::Deserialize;

use super::http;
use crate::{
    engine::{EngineError, Paths, STORE_WAIT, transaction},
    store::Store,
};

/// Where dockerd serves its API unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// How long one request to Docker may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Why Docker's answer is not there.
#[derive(Debug, thiserror::Error)]
pub enum DockerApiError {
    #[error("talking to Docker at {socket}")]
    Io {
        socket: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading Docker's answer")]
    Read(#[source] http::ReadError),
    #[error("Docker answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("decoding Docker's network list")]
    Json(#[source] serde_json::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerNetwork {
    id: String,
    name: String,
}

/// Docker's networks, ID -> name (`GET /networks` on `socket`).
pub fn network_names(socket: &Path) -> Result<BTreeMap<String, String>, DockerApiError> {
    let io_err = |source| DockerApiError::Io {
        socket: socket.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(io_err)?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io_err)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io_err)?;
    // HTTP/1.0: the answer ends with the connection, never in chunks.
    stream
        .write_all(b"GET /networks HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(io_err)?;
    let (status, body) =
        http::read_response(&mut BufReader::new(stream)).map_err(DockerApiError::Read)?;
    if status != 200 {
        return Err(DockerApiError::Status {
            status,
            body: String::from_utf8_lossy(&body).chars().take(200).collect(),
        });
    }
    let list: Vec<DockerNetwork> = serde_json::from_slice(&body).map_err(DockerApiError::Json)?;
    Ok(list.into_iter().map(|n| (n.id, n.name)).collect())
}

/// Gives the networks Docker made through the plugin the names Docker
/// knows them by, where still unknown; how many were named. The state is
/// read without loading the dataplane, Docker is asked only when some are
/// unnamed and with the state unlocked, and a transaction runs only to
/// record names.
pub fn learn_names(paths: &Paths, socket: &Path) -> Result<usize, DockerApiError> {
    let snapshot = Store::open(&paths.state_dir, STORE_WAIT)
        .and_then(|store| store.load())
        .map_err(EngineError::from)?;
    let unnamed: Vec<&String> = snapshot
        .networks
        .values()
        .filter(|n| n.docker && n.docker_name.is_none())
        .map(|n| &n.id)
        .collect();
    if unnamed.is_empty() {
        return Ok(0);
    }
    let mut names = network_names(socket)?;
    names.retain(|id, _| unnamed.contains(&id));
    if names.is_empty() {
        return Ok(0);
    }
    Ok(transaction(paths, |e| Ok(e.name_docker_networks(&names)))?)
}

/// Learns names until stopped: at once when `created` says Docker made a
/// network (Docker stores it only after our answer, so a few tries a
/// quarter second apart), and every `interval`. Failures are logged once
/// until the next success (no Docker here is a normal state).
pub fn run_learner(paths: &Paths, socket: &Path, created: &mpsc::Receiver<()>, interval: Duration) {
    let mut failing = false;
    let mut learn = |paths: &Paths| match learn_names(paths, socket) {
        Ok(n) => {
            if n > 0 {
                tracing::info!(networks = n, "learned Docker's network names");
            }
            failing = false;
            n
        }
        Err(e) => {
            if !failing {
                tracing::warn!(error = %crate::api::error_chain(&e), "asking Docker for network names");
            }
            failing = true;
            0
        }
    };
    loop {
        match created.recv_timeout(interval) {
            Ok(()) => {
                for _ in 0..20 {
                    std::thread::sleep(Duration::from_millis(250));
                    if learn(paths) > 0 {
                        break;
                    }
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                learn(paths);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read as _,
        os::unix::net::UnixListener,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    /// A one-connection Docker stand-in answering `reply`; the socket's
    /// directory (removed on drop).
    struct FakeDocker {
        dir: PathBuf,
        thread: Option<std::thread::JoinHandle<String>>,
    }

    impl FakeDocker {
        fn answering(reply: &'static [u8]) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "ovl-fake-docker-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            let listener = UnixListener::bind(dir.join("docker.sock")).expect("bind");
            let thread = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().expect("accept");
                let mut request = [0u8; 512];
                let n = s.read(&mut request).expect("request");
                s.write_all(reply).expect("reply");
                String::from_utf8_lossy(&request[..n]).into_owned()
            });
            Self {
                dir,
                thread: Some(thread),
            }
        }

        fn socket(&self) -> PathBuf {
            self.dir.join("docker.sock")
        }

        fn request(&mut self) -> String {
            self.thread.take().expect("once").join().expect("fake")
        }
    }

    impl Drop for FakeDocker {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn names_by_id_from_a_plain_or_chunked_answer() {
        let mut d = FakeDocker::answering(
            b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n\
[{\"Name\":\"front\",\"Id\":\"aaa\",\"Driver\":\"ebpf-overlay\"},{\"Name\":\"host\",\"Id\":\"bbb\"}]\n",
        );
        let names = network_names(&d.socket()).expect("names");
        assert_eq!(names["aaa"], "front");
        assert_eq!(names["bbb"], "host");
        assert!(d.request().starts_with("GET /networks HTTP/1.0\r\n"));

        let d = FakeDocker::answering(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
10\r\n[{\"Name\":\"x\",\"Id\r\n8\r\n\":\"c\"}]\n\r\n0\r\n\r\n",
        );
        assert_eq!(network_names(&d.socket()).expect("chunked")["c"], "x");
    }

    #[test]
    fn errors_name_what_went_wrong() {
        let d = FakeDocker::answering(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 12\r\n\r\nno database!",
        );
        let err = network_names(&d.socket()).expect_err("500");
        assert_eq!(err.to_string(), "Docker answered 500: no database!");

        let d = FakeDocker::answering(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n{}x");
        assert!(matches!(
            network_names(&d.socket()),
            Err(DockerApiError::Json(_))
        ));

        let d = FakeDocker::answering(b"SSH-2.0-OpenSSH\r\n\r\n");
        assert!(matches!(
            network_names(&d.socket()),
            Err(DockerApiError::Read(_))
        ));

        let missing = std::env::temp_dir().join("ovl-no-docker-here.sock");
        let err = network_names(&missing).expect_err("no socket");
        assert!(err.to_string().contains("ovl-no-docker-here.sock"), "{err}");
    }
}
