//! `overlay`: Docker-style networks and containers on an eBPF dataplane.
//!
//! Commands work without a daemon: each opens the state store exclusively,
//! applies completely or not at all, and leaves forwarding to the pinned
//! programs and maps.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Command as Process, ExitCode, Stdio},
};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;
use overlay_user::{
    DEFAULT_PIN_DIR, Dataplane, DecapMode, MacAddr,
    engine::{self, CreateNetwork, Engine, Paths},
    netns,
    store::{Driver, NetworkRecord},
};

mod daemon;
mod demo;
mod inspect;
mod report;
mod server;

#[derive(Parser)]
#[command(
    name = "overlay",
    version,
    about = "Docker-style container networks on an eBPF VXLAN dataplane (run as root)"
)]
struct Cli {
    /// One directory for everything: DIR/state (store, logs) and DIR/bpf
    /// (pins). Lets several simulated hosts share one machine.
    #[arg(long, global = true, conflicts_with_all = ["state_dir", "pin_dir"])]
    root: Option<PathBuf>,
    /// State store and logs.
    #[arg(long, global = true, default_value = "/var/lib/overlay")]
    state_dir: PathBuf,
    /// Pinned maps and links (a bpffs is mounted there if needed).
    #[arg(long, global = true, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    /// The daemon's socket (root only); commands go through it when a
    /// daemon answers there, and run directly otherwise.
    #[arg(long, global = true, default_value = "/run/overlay/overlay.sock")]
    socket: PathBuf,
    /// Act inside this network namespace (`ip netns` name): the host's
    /// network, with this process's mounts (so bpffs pins persist).
    #[arg(long, global = true)]
    netns: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Start a command in a new container (network namespace).
    Run(RunArgs),
    /// Run a command inside a running container.
    Exec {
        container: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// List containers.
    Ps {
        /// Show all containers (default shows just running).
        #[arg(short, long)]
        all: bool,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Stop containers' processes.
    Stop {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers: their interfaces, addresses and namespaces.
    Rm {
        /// Stop running containers first.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Bind this host to its underlay NIC.
    Attach {
        #[arg(long)]
        iface: String,
        /// Defaults to the NIC's first IPv4 address.
        #[arg(long)]
        underlay_ip: Option<Ipv4Addr>,
        #[arg(long, value_enum, default_value_t = Decap::Xdp)]
        decap: Decap,
    },
    /// Unbind this host from its underlay NIC (local networks keep working).
    Detach,
    /// Programs, attach modes, pins and counts.
    Status,
    /// Per-reason packet counters, of the whole host or of one network.
    Stats {
        /// Only packets of this network (name or ID).
        #[arg(long)]
        network: Option<String>,
    },
    /// Static remote hosts allowed to send a network's VNI.
    #[command(subcommand)]
    Peer(PeerCmd),
    /// Static endpoints on hosts that run the kernel's VXLAN.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Keep the kernel in line with the stored state: repair on start and
    /// every --interval seconds (foreground; logs to stderr). Forwarding
    /// never depends on it: the programs and maps are pinned.
    Daemon(daemon::DaemonArgs),
    /// Remove every pinned map and link (detaches the programs).
    Destroy,
    /// Two simulated hosts, containers, isolation; removed at the end.
    Demo {
        #[arg(long, value_enum, default_value_t = Decap::Xdp)]
        decap: Decap,
    },
    /// Benchmarks (private namespaces; nothing else is touched).
    Bench(report::BenchArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Decap {
    /// XDP, native where the driver has it, else generic.
    Xdp,
    /// Native XDP or an error.
    XdpNative,
    XdpGeneric,
    Tc,
}

impl From<Decap> for DecapMode {
    fn from(d: Decap) -> Self {
        match d {
            Decap::Xdp => Self::Xdp,
            Decap::XdpNative => Self::XdpNative,
            Decap::XdpGeneric => Self::XdpGeneric,
            Decap::Tc => Self::Tc,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum DriverArg {
    Bridge,
    Overlay,
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// Create a network; prints its ID.
    Create {
        #[arg(short, long, value_enum)]
        driver: Option<DriverArg>,
        #[arg(long)]
        subnet: Vec<Ipv4Net>,
        #[arg(long)]
        gateway: Option<Ipv4Addr>,
        #[arg(long)]
        ip_range: Option<Ipv4Net>,
        /// VXLAN network identifier (overlay; default: the next free from 4096).
        #[arg(long)]
        vni: Option<u32>,
        /// No access outside the network.
        #[arg(long)]
        internal: bool,
        /// Driver options: mtu=N.
        #[arg(short = 'o', long = "opt")]
        opts: Vec<String>,
        #[arg(long)]
        label: Vec<String>,
        name: String,
    },
    /// List networks.
    Ls {
        /// Only IDs.
        #[arg(short, long)]
        quiet: bool,
        /// name=, id=, driver=, scope=, label=K[=V]
        #[arg(short, long)]
        filter: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show networks as JSON (like `docker network inspect`).
    Inspect {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove networks (refused while containers are attached).
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove every unused network.
    Prune {
        /// Accepted for Docker compatibility; prune never prompts.
        #[arg(short, long)]
        force: bool,
    },
    /// Connect a container (name, netns name or PID) to a network.
    Connect {
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect { network: String, container: String },
}

#[derive(Args)]
struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    detach: bool,
    #[arg(long)]
    name: Option<String>,
    /// Networks to connect (default: bridge).
    #[arg(long)]
    network: Vec<String>,
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum PeerCmd {
    Add {
        #[arg(long)]
        remote: Ipv4Addr,
        #[arg(long)]
        network: String,
    },
    Rm {
        #[arg(long)]
        remote: Ipv4Addr,
        #[arg(long)]
        network: String,
    },
    Ls,
}

#[derive(Subcommand)]
enum EndpointCmd {
    Add {
        #[arg(long)]
        remote: Ipv4Addr,
        #[arg(long)]
        network: String,
        #[arg(long)]
        ip: Ipv4Addr,
        #[arg(long)]
        mac: Option<MacAddr>,
    },
    Rm {
        #[arg(long)]
        network: String,
        #[arg(long)]
        ip: Ipv4Addr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("overlay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn paths(cli: &Cli) -> Paths {
    match &cli.root {
        Some(root) => Paths {
            state_dir: root.join("state"),
            pin_dir: root.join("bpf"),
        },
        None => Paths {
            state_dir: cli.state_dir.clone(),
            pin_dir: cli.pin_dir.clone(),
        },
    }
}

fn enter_netns(name: &str) -> anyhow::Result<()> {
    let path = format!("/run/netns/{name}");
    let file = std::fs::File::open(&path).with_context(|| format!("network namespace {name}"))?;
    // SAFETY: setns on a valid netns fd; we are still single-threaded, so
    // the whole process (and every child) lives in that namespace.
    if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| format!("entering {name}"));
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("must run as root (loads eBPF programs and changes network namespaces)");
    }
    if let Some(ns) = &cli.netns {
        enter_netns(ns)?;
    }
    let paths = paths(&cli);
    let socket = cli
        .root
        .as_ref()
        .map_or_else(|| cli.socket.clone(), |r| r.join("overlay.sock"));
    match cli.command {
        Command::Demo { decap } => return demo::run(decap.into()).map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => return report::bench(&args).map(|()| ExitCode::SUCCESS),
        Command::Destroy => {
            Dataplane::destroy(&paths.pin_dir)
                .with_context(|| format!("removing {}", paths.pin_dir.display()))?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Exec { container, command } => return exec(&paths, &container, &command),
        Command::Daemon(args) => {
            return daemon::run(&paths, &socket, cli.root.is_some(), args);
        }
        _ => {}
    }
    if served_by_daemon(&cli.command) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if let Some(reply) = server::call(&socket, &args)? {
            print!("{}", reply.stdout);
            eprint!("{}", reply.stderr);
            return Ok(ExitCode::from(u8::try_from(reply.code).unwrap_or(1)));
        }
    }
    match execute(&paths, cli.command)? {
        Outcome::Text(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Wait(mut child) => {
            let status = child
                .wait()
                .context("waiting for the container's command")?;
            Ok(ExitCode::from(
                u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
            ))
        }
    }
}

/// What a command leaves to do once the store is committed and released.
enum Outcome {
    /// Print this (nothing when empty).
    Text(String),
    /// Wait for a foreground container and exit with its code.
    Wait(std::process::Child),
}

type After = Outcome;

fn done() -> anyhow::Result<After> {
    Ok(Outcome::Text(String::new()))
}

fn print_after(text: String) -> anyhow::Result<After> {
    Ok(Outcome::Text(text))
}

/// Runs one command against the store and the kernel: all or nothing.
fn execute(paths: &Paths, command: Command) -> anyhow::Result<Outcome> {
    let mut engine = Engine::open(paths)?;
    match dispatch(&mut engine, command) {
        Ok(outcome) => {
            engine.commit()?;
            Ok(outcome)
        }
        Err(e) => {
            engine.rollback();
            Err(e)
        }
    }
}

/// Commands that start processes stay in the CLI; the rest may be served by
/// a running daemon.
fn served_by_daemon(command: &Command) -> bool {
    !matches!(
        command,
        Command::Run(_)
            | Command::Exec { .. }
            | Command::Daemon(_)
            | Command::Demo { .. }
            | Command::Bench(_)
            | Command::Destroy
    )
}

fn dispatch(engine: &mut Engine, command: Command) -> anyhow::Result<After> {
    match command {
        Command::Network(cmd) => network(engine, cmd),
        Command::Run(args) => run_container(engine, &args),
        Command::Ps { all, format } => {
            print_after(inspect::ps(engine, all, format == Format::Json)?)
        }
        Command::Stop { containers } => {
            let mut names = Vec::new();
            for key in &containers {
                let c = engine.container(key)?.clone();
                engine::stop_pid(c.pid);
                engine.set_pid(&c.name, None);
                names.push(c.name);
            }
            print_after(names.join("\n"))
        }
        Command::Rm { force, containers } => {
            let mut names = Vec::new();
            for key in &containers {
                names.push(engine.remove_container(key, force)?);
            }
            print_after(names.join("\n"))
        }
        Command::Attach {
            iface,
            underlay_ip,
            decap,
        } => {
            let ip = match underlay_ip {
                Some(ip) => ip,
                None => first_ipv4(&iface)?,
            };
            let mode = engine.attach(&iface, ip, decap.into())?;
            print_after(format!("attached to {iface} as {ip}: decap {mode}"))
        }
        Command::Detach => print_after(format!("detached from {}", engine.detach()?)),
        Command::Status => print_after(inspect::status(engine)?),
        Command::Stats { network } => print_after(inspect::stats(engine, network.as_deref())?),
        Command::Peer(PeerCmd::Add { remote, network }) => {
            engine.add_peer(remote, &network)?;
            done()
        }
        Command::Peer(PeerCmd::Rm { remote, network }) => {
            engine.remove_peer(remote, &network)?;
            done()
        }
        Command::Peer(PeerCmd::Ls) => {
            let mut out = format!("{:<16} NETWORK", "HOST");
            for (ip, id) in &engine.state.peers {
                let name = engine
                    .state
                    .networks
                    .get(id)
                    .map_or("?", |n| n.name.as_str());
                out.push_str(&format!("\n{:<16} {name}", ip.to_string()));
            }
            print_after(out)
        }
        Command::Endpoint(EndpointCmd::Add {
            remote,
            network,
            ip,
            mac,
        }) => {
            engine.add_remote(&network, ip, mac, remote)?;
            done()
        }
        Command::Endpoint(EndpointCmd::Rm { network, ip }) => {
            engine.remove_remote(&network, ip)?;
            done()
        }
        Command::Exec { .. }
        | Command::Daemon(_)
        | Command::Demo { .. }
        | Command::Bench { .. }
        | Command::Destroy => {
            unreachable!("handled before the store is opened")
        }
    }
}

fn key_value(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => bail!("invalid {what} {s:?}: expected KEY=VALUE"),
    }
}

fn network(engine: &mut Engine, cmd: NetworkCmd) -> anyhow::Result<After> {
    match cmd {
        NetworkCmd::Create {
            driver,
            subnet,
            gateway,
            ip_range,
            vni,
            internal,
            opts,
            label,
            name,
        } => {
            let mut mtu = None;
            for o in &opts {
                let (k, v) = key_value(o, "option")?;
                match k.as_str() {
                    "mtu" | "com.docker.network.driver.mtu" => {
                        mtu = Some(v.parse().with_context(|| format!("invalid mtu {v:?}"))?);
                    }
                    _ => bail!("unknown driver option {k:?} (supported: mtu)"),
                }
            }
            let labels: BTreeMap<String, String> = label
                .iter()
                .map(|l| key_value(l, "label"))
                .collect::<anyhow::Result<_>>()?;
            let id = engine.create_network(&CreateNetwork {
                name,
                driver: driver.map(|d| match d {
                    DriverArg::Bridge => Driver::Bridge,
                    DriverArg::Overlay => Driver::Overlay,
                }),
                subnets: subnet,
                gateway,
                ip_range,
                vni,
                internal,
                mtu,
                labels,
            })?;
            print_after(id)
        }
        NetworkCmd::Ls {
            quiet,
            filter,
            format,
        } => {
            let filters: Vec<(String, String)> = filter
                .iter()
                .map(|f| {
                    f.split_once('=')
                        .map_or((f.clone(), String::new()), |(k, v)| (k.into(), v.into()))
                })
                .collect();
            let nets: Vec<&NetworkRecord> = engine
                .state
                .networks
                .values()
                .filter(|n| matches(n, &filters))
                .collect();
            print_after(inspect::network_ls(&nets, quiet, format == Format::Json)?)
        }
        NetworkCmd::Inspect { networks } => {
            let mut out = Vec::new();
            for key in &networks {
                out.push(inspect::network_json(engine, engine.network(key)?));
            }
            print_after(serde_json::to_string_pretty(&out)?)
        }
        NetworkCmd::Rm { networks } => print_after(engine.remove_networks(&networks)?.join("\n")),
        NetworkCmd::Prune { force: _ } => {
            let removed = engine.prune_networks()?;
            let text = if removed.is_empty() {
                String::new()
            } else {
                format!("Deleted Networks:\n{}", removed.join("\n"))
            };
            print_after(text)
        }
        NetworkCmd::Connect {
            ip,
            network,
            container,
        } => {
            engine.connect(&network, &container, ip)?;
            done()
        }
        NetworkCmd::Disconnect { network, container } => {
            engine.disconnect(&network, &container)?;
            done()
        }
    }
}

fn matches(n: &NetworkRecord, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| match k.as_str() {
        "name" => n.name.contains(v.as_str()),
        "id" => n.id.starts_with(v.as_str()),
        "driver" => n.driver.name() == v,
        "scope" => n.driver.scope() == v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => n.labels.get(lk).is_some_and(|x| x == lv),
            None => n.labels.contains_key(v.as_str()),
        },
        _ => false,
    })
}

fn run_container(engine: &mut Engine, args: &RunArgs) -> anyhow::Result<After> {
    let c = engine.create_container(args.name.as_deref(), &args.network, &args.command)?;
    let mut process = Process::new("ip");
    process
        .args(["netns", "exec", &c.netns])
        .args(&args.command);
    if args.detach {
        let logs = engine.log_dir();
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let log = std::fs::File::create(logs.join(format!("{}.log", c.name)))?;
        process
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = process
            .spawn()
            .with_context(|| format!("starting {:?}", args.command))?;
        engine.set_pid(&c.name, Some(child.id()));
        return print_after(c.id);
    }
    let child = process
        .spawn()
        .with_context(|| format!("starting {:?}", args.command))?;
    engine.set_pid(&c.name, Some(child.id()));
    Ok(Outcome::Wait(child))
}

fn exec(paths: &Paths, key: &str, command: &[String]) -> anyhow::Result<ExitCode> {
    let netns = {
        let engine = Engine::open(paths)?;
        let c = engine.container(key)?;
        if c.owned_netns && !engine::is_running(c.pid) {
            bail!("container {} is not running", c.name);
        }
        c.netns.clone()
    };
    let err = Process::new("ip")
        .args(["netns", "exec", &netns])
        .args(command)
        .exec();
    Err(err).context("exec")
}

pub(crate) fn first_ipv4(iface: &str) -> anyhow::Result<Ipv4Addr> {
    let out = netns::ip(&["-4", "-o", "addr", "show", "dev", iface])?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next()?.parse().ok())
        .with_context(|| format!("{iface} has no IPv4 address: pass --underlay-ip"))
}
