//! A throwaway single-member etcd (Debian's `etcd-server`) for tests, the
//! demo and benchmarks: on loopback, or inside a simulated underlay's switch
//! namespace so agents in host namespaces reach it over the underlay. Its
//! data directory survives [`Etcd::stop`] (an outage) and is removed with
//! the process on drop.

use std::{
    ffi::OsStr,
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use overlay_user::{
    cluster::{ClusterError, ClusterOptions, ClusterStore},
    host,
    model::ids,
};

/// Failure to run etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("starting etcd (Debian package etcd-server)")]
    Spawn(#[source] std::io::Error),
    #[error("etcd did not answer at {0} within 20 s")]
    NotReady(String),
    #[error("no free loopback port")]
    Port(#[source] std::io::Error),
}

/// PEM files for an etcd that requires TLS with client certificates.
#[derive(Clone, Debug)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A running etcd; killed and its data removed on drop.
pub struct Etcd {
    child: Option<Child>,
    tls: Option<EtcdTls>,
    dir: PathBuf,
    netns: Option<String>,
    client_url: String,
    peer_url: String,
    /// `host:port` clients connect to.
    pub endpoint: String,
}

fn free_port() -> Result<u16, EtcdError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(EtcdError::Port)
}

impl Etcd {
    /// On loopback of the current namespace, on free ports.
    pub fn on_loopback() -> Result<Self, EtcdError> {
        let (client, peer) = (free_port()?, free_port()?);
        Self::start(None, Ipv4Addr::LOCALHOST, client, peer, None)
    }

    /// On loopback, serving clients over TLS only, and only those with a
    /// certificate signed by `tls.ca`.
    pub fn on_loopback_tls(tls: EtcdTls) -> Result<Self, EtcdError> {
        let (client, peer) = (free_port()?, free_port()?);
        Self::start(None, Ipv4Addr::LOCALHOST, client, peer, Some(tls))
    }

    /// Inside namespace `netns`, listening on `ip` (an address there).
    pub fn in_netns(netns: &str, ip: Ipv4Addr) -> Result<Self, EtcdError> {
        Self::start(Some(netns.to_owned()), ip, 2379, 2380, None)
    }

    fn start(
        netns: Option<String>,
        ip: Ipv4Addr,
        client: u16,
        peer: u16,
        tls: Option<EtcdTls>,
    ) -> Result<Self, EtcdError> {
        let dir = std::env::temp_dir().join(format!("ovl-etcd-{}", ids::new_id()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut etcd = Self {
            child: None,
            tls,
            dir,
            netns,
            client_url: format!("{scheme}://{ip}:{client}"),
            peer_url: format!("http://{ip}:{peer}"),
            endpoint: format!("{ip}:{client}"),
        };
        etcd.resume()?;
        Ok(etcd)
    }

    /// Starts the process (again, on the same data) and waits until it
    /// answers.
    pub fn resume(&mut self) -> Result<(), EtcdError> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "etcd"]);
                c
            }
            None => Command::new("etcd"),
        };
        let child = cmd
            .args(["--name", "t", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen-client-urls", &self.client_url])
            .args(["--advertise-client-urls", &self.client_url])
            .args(["--listen-peer-urls", &self.peer_url])
            .args(["--initial-advertise-peer-urls", &self.peer_url])
            .args(["--initial-cluster", &format!("t={}", self.peer_url)])
            .args(self.tls.iter().flat_map(|t| {
                [
                    OsStr::new("--client-cert-auth"),
                    OsStr::new("--trusted-ca-file"),
                    t.ca.as_os_str(),
                    OsStr::new("--cert-file"),
                    t.server_cert.as_os_str(),
                    OsStr::new("--key-file"),
                    t.server_key.as_os_str(),
                ]
            }))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(EtcdError::Spawn)?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        // The probe must run where the clients are: in the namespace.
        let probe = || match &self.netns {
            Some(ns) => host::netns::run_in(ns, || self.connect().is_ok()).unwrap_or(false),
            None => self.connect().is_ok(),
        };
        while !probe() {
            if Instant::now() > deadline {
                return Err(EtcdError::NotReady(self.endpoint.clone()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Kills the process (an outage); the data stays for [`Etcd::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn options(&self) -> ClusterOptions {
        ClusterOptions {
            endpoints: vec![self.endpoint.clone()],
            user: None,
            ca_file: self.tls.as_ref().map(|t| t.ca.clone()),
            cert_file: self.tls.as_ref().map(|t| t.client_cert.clone()),
            key_file: self.tls.as_ref().map(|t| t.client_key.clone()),
            timeout: Duration::from_secs(2),
        }
    }

    /// A client (from the calling thread's namespace).
    pub fn connect(&self) -> Result<ClusterStore, ClusterError> {
        ClusterStore::connect(&self.options())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
