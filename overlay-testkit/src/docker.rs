//! A Docker Engine of its own for a simulated host: `dockerd` entered into
//! the host's network namespace only (`nsenter --net`; `ip netns exec`
//! would remount /sys and dockerd would find no cgroups), with its own
//! data, exec root, pid file and API socket; no bridge and no iptables
//! rules, or (for the benchmark) Docker's own `docker0` and iptables rules
//! as a stock install has them, inside that namespace.
//! Driven with Debian's `docker` client (the API version dockerd speaks).
//! Stopped, its mounts and directories removed, on drop.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{LabError, NetNs, netns::unique_name};

/// Debian's client, matching Debian's dockerd.
const DOCKER: &str = "/usr/bin/docker";
/// The image tests run: busybox, built offline from `busybox-static`.
pub const IMAGE: &str = "overlay-test-busybox";

/// A running dockerd.
pub struct Dockerd {
    dir: PathBuf,
    socket: PathBuf,
    child: Option<Child>,
    /// Docker's default bridge (`docker0`) and its iptables rules, as a
    /// stock install runs; otherwise neither.
    default_bridge: bool,
}

impl Dockerd {
    /// Starts dockerd in `ns`, without a default bridge or iptables rules,
    /// and waits until it answers.
    pub fn start(ns: &NetNs) -> Result<Self, LabError> {
        Self::start_with(ns, false)
    }

    /// Starts dockerd in `ns` with Docker's default bridge network
    /// (`docker0`, veth + Linux bridge + iptables NAT and filter rules, in
    /// that namespace) and waits until it answers.
    pub fn start_with_default_bridge(ns: &NetNs) -> Result<Self, LabError> {
        Self::start_with(ns, true)
    }

    fn start_with(ns: &NetNs, default_bridge: bool) -> Result<Self, LabError> {
        let dir = std::env::temp_dir().join(unique_name("ovldocker"));
        std::fs::create_dir_all(&dir).map_err(|e| LabError::Other(e.to_string()))?;
        let mut d = Self {
            socket: dir.join("docker.sock"),
            dir,
            child: None,
            default_bridge,
        };
        d.child = Some(d.spawn(ns)?);
        d.wait_up()?;
        Ok(d)
    }

    fn spawn(&self, ns: &NetNs) -> Result<Child, LabError> {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("dockerd.log"))
            .map_err(|e| LabError::Other(e.to_string()))?;
        let arg = |p: &str| self.dir.join(p).display().to_string();
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", ns.name()))
            .args([
                "dockerd",
                "--data-root",
                &arg("data"),
                "--exec-root",
                &arg("exec"),
                "--pidfile",
                &arg("dockerd.pid"),
                "-H",
                &format!("unix://{}", self.socket.display()),
            ])
            .args(if self.default_bridge {
                &[][..]
            } else {
                &["--bridge", "none", "--iptables=false", "--ip-masq=false"][..]
            })
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| LabError::Spawn {
                cmd: "nsenter ... dockerd".into(),
                source,
            })
    }

    fn wait_up(&self) -> Result<(), LabError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.run(&["version"]).status.success() {
            if Instant::now() > deadline {
                return Err(LabError::Other(format!(
                    "dockerd did not answer:\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// Its API socket.
    pub fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    /// `docker ARGS` against this daemon.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .env("DOCKER_BUILDKIT", "0")
            .output()
            .expect("running docker")
    }

    /// Runs and requires success; returns stdout, trimmed.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs and requires failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(!out.status.success(), "docker {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).trim().to_owned()
    }

    /// Builds [`IMAGE`] from the host's static busybox.
    pub fn build_busybox(&self) {
        let ctx = self.dir.join("image");
        std::fs::create_dir_all(&ctx).expect("image context");
        std::fs::copy("/bin/busybox", ctx.join("busybox")).expect("busybox-static installed");
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\",\"--install\",\"-s\",\"/bin\"]\n",
        )
        .expect("Dockerfile");
        self.ok(&["build", "-q", "-t", IMAGE, &ctx.display().to_string()]);
    }

    /// A detached container `name` on `networks` running `sleep`; extra
    /// `docker run` flags in `flags`.
    pub fn container(&self, name: &str, network: &str, flags: &[&str]) {
        let mut args = vec!["run", "-d", "--name", name, "--network", network];
        args.extend(flags);
        args.extend([IMAGE, "sleep", "600"]);
        self.ok(&args);
    }

    /// `name`'s address on `network`.
    pub fn ip_of(&self, name: &str, network: &str) -> String {
        self.ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            name,
        ])
    }

    /// Container `name`'s network namespace under a name of its own in
    /// `ip netns` (`ip netns attach`), so host tools run in it; dropping the
    /// handle removes only that name.
    pub fn netns(&self, name: &str) -> Result<NetNs, LabError> {
        let pid = self.ok(&["inspect", "-f", "{{.State.Pid}}", name]);
        let ns = unique_name("ovldk");
        crate::netns::ip(&["netns", "attach", &ns, &pid])?;
        Ok(NetNs::adopt(&ns))
    }

    /// One ping from container `from` to `to` (an address or a name).
    pub fn pings(&self, from: &str, to: &str) -> bool {
        self.run(&["exec", from, "ping", "-c", "1", "-W", "1", to])
            .status
            .success()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    /// Stops dockerd (SIGTERM, as a service manager would, then SIGKILL
    /// after 20 s); its containers stop with it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // nsenter execs dockerd: the child is dockerd itself.
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill(2) with a plain pid and signal.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops dockerd and starts it again, with the same directories.
    pub fn restart(&mut self, ns: &NetNs) -> Result<(), LabError> {
        self.stop();
        self.child = Some(self.spawn(ns)?);
        self.wait_up()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ids = self.run(&["ps", "-aq"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.run(&["rm", "-f", id]);
            }
            let _ = self.run(&["network", "prune", "-f"]);
        }
        self.stop();
        // What a dockerd that died left mounted under its directories.
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let mut mine: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        mine.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mine {
            let _ = Command::new("umount").args(["-l", m]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
