//! A Prometheus server (Debian's `prometheus`) in a namespace, scraping
//! one target every second, and its query API. Stopped, and its data
//! directory removed, on drop.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use crate::{LabError, NetNs, unique_name};

/// Where the server listens inside its namespace.
const LISTEN: &str = "127.0.0.1:9090";

/// A running Prometheus.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    ns: String,
}

/// `GET path` on `addr` (HTTP/1.0, so the server closes): status and body.
/// Also for reading a `/metrics` page directly.
pub fn get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)?;
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    Ok((status, body))
}

/// Percent-encodes a query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Prometheus {
    /// Starts a server in `ns` that scrapes `target` (`/metrics`) every
    /// second, and waits until it is ready.
    pub fn start(ns: &NetNs, target: SocketAddr) -> Result<Self, LabError> {
        let dir = std::env::temp_dir().join(unique_name("prom"));
        let io = |source| LabError::Spawn {
            cmd: "writing the Prometheus config".into(),
            source,
        };
        std::fs::create_dir_all(dir.join("data")).map_err(io)?;
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: overlay\n    static_configs:\n      \
             - targets: ['{target}']\n"
        );
        std::fs::write(dir.join("prometheus.yml"), config).map_err(io)?;
        let child = ns
            .command("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={LISTEN}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| LabError::Spawn {
                cmd: "prometheus (apt package prometheus)".into(),
                source,
            })?;
        let server = Self {
            child,
            dir,
            ns: ns.name().to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.get("/-/ready").map(|(s, _)| s) != Some(200) {
            if Instant::now() > deadline {
                return Err(LabError::Spawn {
                    cmd: "prometheus".into(),
                    source: std::io::Error::other("not ready after 30 s"),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(server)
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        NetNs::existing(&self.ns)
            .run(|| get(LISTEN, path))
            .ok()?
            .ok()
    }

    /// The result vector of an instant query: `(labels, value)` rows
    /// (empty when the query fails or matches nothing).
    pub fn query(&self, promql: &str) -> Vec<(serde_json::Value, f64)> {
        let Some((200, body)) = self.get(&format!("/api/v1/query?query={}", encode(promql))) else {
            return Vec::new();
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
            return Vec::new();
        };
        json["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let value = r["value"][1].as_str()?.parse().ok()?;
                Some((r["metric"].clone(), value))
            })
            .collect()
    }

    /// The value of a query that selects one series, if it does.
    pub fn value(&self, promql: &str) -> Option<f64> {
        match self.query(promql).as_slice() {
            [(_, v)] => Some(*v),
            _ => None,
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
