//! Simulated hosts driven through the real `overlay` binary, for the CLI
//! tests and the cluster benchmark: each host is a network namespace entered
//! with `--netns`, with its state under `--root`; hosts meet on a switch (a
//! bridge in a namespace of its own). A fixture: it panics with a message
//! when the topology cannot be built.

use std::{
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::netns::{self, NetNs, unique_name};

/// A simulated host: its namespace and state root; everything the binary
/// created (containers, namespaces, pins, its daemon) is removed on drop.
pub struct Host {
    binary: PathBuf,
    pub ns: NetNs,
    pub root: PathBuf,
    /// Prefix for container names, which are global `ip netns` names.
    pub tag: String,
    daemon: Option<Child>,
}

impl Host {
    /// A host driven by the `overlay` binary at `binary`.
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        let tag = unique_name("cli");
        let ns = NetNs::new(&format!("{tag}-host")).expect("host namespace");
        let root = std::env::temp_dir().join(&tag);
        Self {
            binary: binary.into(),
            ns,
            root,
            tag,
            daemon: None,
        }
    }

    /// The binary with no arguments: for commands that name their own
    /// paths and namespace.
    pub fn bare_cmd(&self) -> Command {
        Command::new(&self.binary)
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .args(["--netns", self.ns.name()]);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("spawn overlay")
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{}: overlay {args:?} failed: {}",
            self.tag,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs and requires failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "overlay {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).trim().to_owned()
    }

    /// What `argv` prints, run in this host's namespace (a tool, not the
    /// binary: `ip`, `nft`).
    pub fn stdout_of(&self, argv: &[&str]) -> String {
        let out = self
            .ns
            .exec(argv)
            .unwrap_or_else(|e| panic!("{}: {argv:?}: {e}", self.tag));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An uplink `up0` from this host to namespace `peer`, addressed
    /// `host_cidr` here and `peer_cidr` there, both up.
    pub fn uplink(&self, peer: &NetNs, host_cidr: &str, peer_cidr: &str) {
        netns::ip(&[
            "link",
            "add",
            "up0",
            "netns",
            self.ns.name(),
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            peer.name(),
        ])
        .expect("uplink");
        for (ns, cidr) in [(&self.ns, host_cidr), (peer, peer_cidr)] {
            ns.sh(&format!("ip addr add {cidr} dev up0"))
                .expect("address");
            ns.sh("ip link set up0 up").expect("up");
        }
    }

    pub fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.tag)
    }

    pub fn inspect(&self, network: &str) -> serde_json::Value {
        let out = self.ok(&["network", "inspect", network]);
        let mut v: serde_json::Value = serde_json::from_str(&out).expect("inspect is JSON");
        v[0].take()
    }

    pub fn ip_of(&self, network: &str, container: &str) -> String {
        let net = self.inspect(network);
        let c = net["Containers"]
            .as_object()
            .expect("containers")
            .values()
            .find(|c| c["Name"] == container)
            .unwrap_or_else(|| panic!("{container} not on {network}: {net}"));
        c["IPv4Address"]
            .as_str()
            .expect("address")
            .split('/')
            .next()
            .expect("ip")
            .to_owned()
    }

    /// Counter `name` of `overlay stats` (0 when it has no row).
    pub fn counter(&self, name: &str) -> u64 {
        self.ok(&["stats"])
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    pub fn pings(&self, from: &str, ip: &str) -> bool {
        self.run(&["exec", from, "--", "ping", "-c", "1", "-W", "1", ip])
            .status
            .success()
    }

    /// Starts `sleep` in a new container on `network`; returns its name.
    pub fn container(&self, short: &str, network: &str) -> String {
        let name = self.name(short);
        self.ok(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            network,
            "--",
            "sleep",
            "600",
        ]);
        name
    }

    /// Everything a user could observe of the state.
    pub fn observable(&self) -> String {
        let mut s = self.ok(&["network", "ls", "--format", "json"]);
        s.push_str(&self.ok(&["ps", "-a", "--format", "json"]));
        let ls: Vec<serde_json::Value> =
            serde_json::from_str(&self.ok(&["network", "ls", "--format", "json"])).expect("json");
        for n in ls {
            s.push_str(&self.ok(&["network", "inspect", n["Name"].as_str().expect("name")]));
        }
        s
    }

    /// Starts `overlay daemon ARGS`, logging to `ROOT/daemon.log`, and waits
    /// for its socket.
    pub fn start_daemon(&mut self, args: &[&str]) {
        self.stop_daemon();
        std::fs::create_dir_all(&self.root).expect("root dir");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("daemon log");
        let socket = self.root.join("overlay.sock");
        let _ = std::fs::remove_file(&socket);
        let mut cmd = self.cmd();
        cmd.arg("daemon")
            .args(args)
            .stdout(Stdio::null())
            .stderr(log);
        // SAFETY: prctl is async-signal-safe. A test killed before its
        // guards run must not leave daemons behind.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("daemon");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "{}: daemon did not come up:\n{}",
                self.tag,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` of the daemon, if one runs.
    pub fn stop_daemon(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("daemon.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let containers = || -> Vec<serde_json::Value> {
            self.cmd()
                .args(["ps", "-a", "--format", "json"])
                .output()
                .ok()
                .and_then(|out| serde_json::from_slice(&out.stdout).ok())
                .unwrap_or_default()
        };
        for r in containers() {
            let _ = self
                .cmd()
                .args(["rm", "-f", r["Name"].as_str().unwrap_or_default()])
                .output();
        }
        // What `rm` could not remove (say the cluster store was down): its
        // process and namespace go anyway.
        for r in containers() {
            if let Some(pid) = r["Pid"]
                .as_u64()
                .and_then(|p| libc::pid_t::try_from(p).ok())
            {
                // SAFETY: kill(2) with a plain pid and signal.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if let Some(name) = r["Name"].as_str()
                && name.starts_with(&self.tag)
            {
                let _ = netns::ip(&["netns", "del", name]);
                let _ = overlay_user::host::netns::remove_own_etc_file(
                    name,
                    "resolv.conf",
                    overlay_user::model::names::RESOLV_CONF_MARKER,
                );
            }
        }
        self.stop_daemon();
        let _ = self.cmd().arg("destroy").output();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The underlay: a bridge in a namespace of its own, with an address
/// (`10.100.0.254/24`) for services the hosts share.
pub struct Switch {
    pub ns: NetNs,
    ports: usize,
}

/// The switch's own underlay address.
pub const SWITCH_IP: &str = "10.100.0.254";

impl Switch {
    pub fn new(tag: &str) -> Self {
        let ns = NetNs::new(&format!("{tag}-sw")).expect("switch namespace");
        for cmd in [
            "ip link add br0 type bridge",
            "ip link set br0 up",
            "ip addr add 10.100.0.254/24 dev br0",
            "ip link set lo up",
        ] {
            ns.exec(&cmd.split(' ').collect::<Vec<_>>())
                .expect("switch setup");
        }
        Self { ns, ports: 0 }
    }

    /// Wires `host` to the switch as `eth0` with `10.100.0.<n>/24`, where n
    /// counts from 1; returns the address.
    pub fn plug(&mut self, host: &Host) -> String {
        self.ports += 1;
        let port = format!("p{}", self.ports);
        netns::ip(&[
            "link",
            "add",
            "eth0",
            "netns",
            host.ns.name(),
            "type",
            "veth",
            "peer",
            "name",
            &port,
            "netns",
            self.ns.name(),
        ])
        .expect("underlay veth");
        self.ns
            .exec(&["ip", "link", "set", &port, "master", "br0"])
            .expect("port");
        self.ns
            .exec(&["ip", "link", "set", &port, "up"])
            .expect("port up");
        let ip = format!("10.100.0.{}", self.ports);
        host.ns
            .exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])
            .expect("address");
        host.ns
            .exec(&["ip", "link", "set", "eth0", "up"])
            .expect("up");
        host.ns
            .exec(&["ip", "link", "set", "lo", "up"])
            .expect("lo up");
        ip
    }
}

/// Polls `f` every 100 ms until it holds or `secs` pass; returns the time
/// it took.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Some(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(secs) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
