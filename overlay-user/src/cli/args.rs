//! The command line, as clap parses it.

use std::{net::Ipv4Addr, path::PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;

use crate::{
    daemon::settings::Settings,
    model::{DecapRequest, Driver, MacAddr},
};

/// Default directory for pinned maps and links.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/overlay";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/overlay";
pub const DEFAULT_SOCKET: &str = "/run/overlay/overlay.sock";

#[derive(Parser)]
#[command(
    name = "overlay",
    version,
    about = "Docker-style container networks on an eBPF VXLAN dataplane (run as root)"
)]
pub struct Cli {
    /// One directory for everything: DIR/state (store, logs), DIR/bpf
    /// (pins) and DIR/overlay.sock. Lets several simulated hosts share one
    /// machine.
    #[arg(long, global = true, conflicts_with_all = ["state_dir", "pin_dir"])]
    pub root: Option<PathBuf>,
    /// State store and logs.
    #[arg(long, global = true, default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// Pinned maps and links (a bpffs is mounted there if needed).
    #[arg(long, global = true, default_value = DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// The daemon's socket (root only); commands go through it when a
    /// daemon answers there, and run directly otherwise.
    #[arg(long, global = true, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Act inside this network namespace (`ip netns` name): the host's
    /// network, with this process's mounts (so bpffs pins persist).
    #[arg(long, global = true)]
    pub netns: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Rename a container (its name resolves at once; its namespace keeps
    /// its `ip netns` name).
    Rename { container: String, name: String },
    /// Bind this host to its underlay NIC.
    Attach {
        #[arg(long)]
        iface: String,
        /// Defaults to the NIC's first IPv4 address.
        #[arg(long)]
        underlay_ip: Option<Ipv4Addr>,
        /// How the NIC decapsulates [default: auto: native XDP on a
        /// physical NIC whose driver has it, else TC].
        #[arg(long, value_enum, default_value_t = Decap::Auto)]
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
    /// Follow a packet from a container to an address through this host's
    /// programs (BPF_PROG_RUN on the live maps): each step's verdict, and
    /// why, in words. The packets count like real ones.
    Trace {
        /// The sending container (name or ID).
        #[arg(long)]
        from: String,
        /// Destination address.
        #[arg(long)]
        to: Ipv4Addr,
        #[arg(long, value_enum, default_value_t = TraceProtoArg::Icmp)]
        proto: TraceProtoArg,
        /// Destination port (tcp and udp) [default: 80 for tcp, 53 for udp].
        #[arg(long)]
        port: Option<u16>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Live drop events from the dataplane: when, where, which network,
    /// why, and the packet's addresses and ports (until interrupted).
    Monitor(MonitorArgs),
    /// Static remote hosts allowed to send a network's VNI.
    #[command(subcommand)]
    Peer(PeerCmd),
    /// Static endpoints on hosts that run the kernel's VXLAN.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// The cluster's hosts (cluster mode).
    #[command(subcommand)]
    Host(HostCmd),
    /// Keep the kernel in line with the stored state: repair on start and
    /// every --interval seconds (foreground; logs to stderr). Forwarding
    /// never depends on it: the programs and maps are pinned.
    Daemon(Box<DaemonArgs>),
    /// Remove every pinned map and link (detaches the programs).
    Destroy,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceProtoArg {
    Icmp,
    Tcp,
    Udp,
}

#[derive(Args)]
pub struct MonitorArgs {
    /// Only drops of this network (name or ID).
    #[arg(long)]
    pub network: Option<String>,
    /// Only drops for this reason (as `overlay stats` names them, with or
    /// without `drop_`); repeatable.
    #[arg(long)]
    pub reason: Vec<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Exit after this many events.
    #[arg(long)]
    pub count: Option<u64>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Decap {
    /// What is correct on that NIC: native XDP where the driver has it and
    /// frames come from a wire; TC on veth and other virtual devices.
    Auto,
    /// XDP, native where the driver has it, else generic.
    Xdp,
    /// Native XDP or an error.
    XdpNative,
    XdpGeneric,
    Tc,
}

impl From<Decap> for DecapRequest {
    fn from(d: Decap) -> Self {
        match d {
            Decap::Auto => Self::Auto,
            Decap::Xdp => Self::Xdp,
            Decap::XdpNative => Self::XdpNative,
            Decap::XdpGeneric => Self::XdpGeneric,
            Decap::Tc => Self::Tc,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DriverArg {
    Bridge,
    Overlay,
}

impl From<DriverArg> for Driver {
    fn from(d: DriverArg) -> Self {
        match d {
            DriverArg::Bridge => Self::Bridge,
            DriverArg::Overlay => Self::Overlay,
        }
    }
}

#[derive(Subcommand)]
pub enum NetworkCmd {
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
        /// Among routable networks, the highest priority gives the
        /// container its default route (ties: network name order).
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        gw_priority: i32,
        /// Another name the container answers to on this network (other
        /// containers on it resolve it); repeatable.
        #[arg(long)]
        alias: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network.
    Disconnect { network: String, container: String },
}

#[derive(Args)]
pub struct RunArgs {
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    pub detach: bool,
    #[arg(long)]
    pub name: Option<String>,
    /// Networks to connect (default: bridge).
    #[arg(long)]
    pub network: Vec<String>,
    /// Another name of the container on its networks, resolved by the
    /// containers on them; repeatable.
    #[arg(long)]
    pub network_alias: Vec<String>,
    /// Publish a port: [HOST_IP:]HOST_PORT:PORT[/tcp|/udp], on the first
    /// routable network.
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Subcommand)]
pub enum HostCmd {
    /// Registered hosts, and hosts that are down but still hold addresses.
    Ls,
    /// Release the addresses a down host still holds, at once rather than
    /// after the claim grace (for a host that is gone for good).
    Rm {
        #[arg(required = true)]
        hosts: Vec<Ipv4Addr>,
    },
}

#[derive(Subcommand)]
pub enum PeerCmd {
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
pub enum EndpointCmd {
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

/// `overlay daemon`'s flags; each may also come from the config file.
#[derive(Args, Default)]
pub struct DaemonArgs {
    /// Reconcile once and exit.
    #[arg(long)]
    pub once: bool,
    /// Seconds between reconcile passes [default: 5].
    #[arg(long)]
    pub interval: Option<u64>,
    /// TOML file with any of these settings, keys named like the flags
    /// (`store = "etcd://10.0.0.1:2379"`); flags win [default:
    /// /etc/overlay/daemon.toml if it exists].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Cluster store for overlay networks: etcd://HOST:PORT[,HOST:PORT...].
    /// Remembered: later starts without --store stay in the cluster;
    /// `embedded` leaves it.
    #[arg(long)]
    pub store: Option<String>,
    /// Underlay address other hosts send this host's VXLAN traffic to
    /// [default: the attached NIC's].
    #[arg(long)]
    pub advertise_addr: Option<Ipv4Addr>,
    /// Seconds after which a host that stopped renewing its registration
    /// counts as down [default: 15]. Its containers' addresses stay claimed.
    #[arg(long)]
    pub lease_ttl: Option<i64>,
    /// Seconds a host may stay down before the live hosts release its
    /// containers' addresses [default: 86400]; `overlay host rm` does it
    /// at once.
    #[arg(long)]
    pub claim_grace: Option<u64>,
    /// CA bundle for etcd over TLS (PEM); turns TLS on.
    #[arg(long)]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate for etcd (PEM).
    #[arg(long, requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// Client key for etcd (PEM).
    #[arg(long, requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user (auth enabled).
    #[arg(long)]
    pub etcd_user: Option<String>,
    /// File holding the etcd user's password.
    #[arg(long, requires = "etcd_user")]
    pub etcd_password_file: Option<PathBuf>,
    /// Name other hosts show for this one [default: the hostname].
    #[arg(long)]
    pub host_name: Option<String>,
    /// Where to serve Docker's network and IPAM plugin protocol; Docker
    /// names the driver after the file (`ebpf-overlay`). `none`: not at
    /// all [default: /run/docker/plugins/ebpf-overlay.sock, none with
    /// --root].
    #[arg(long)]
    pub plugin_socket: Option<PathBuf>,
    /// Docker Engine's API socket, where the plugin learns the names of
    /// Docker's networks (Docker's calls carry only IDs) [default:
    /// /var/run/docker.sock].
    #[arg(long)]
    pub docker_socket: Option<PathBuf>,
    /// Upstream resolver (IPv4[:PORT]) for names containers ask that are
    /// not containers'; repeatable, at most 3 [default: the nameservers
    /// of /etc/resolv.conf at start].
    #[arg(long)]
    pub dns_upstream: Vec<String>,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (IP:PORT, e.g.
    /// 127.0.0.1:9464); unauthenticated, so bind it to a trusted address
    /// [default: not served].
    #[arg(long, value_name = "ADDR")]
    pub metrics_address: Option<std::net::SocketAddr>,
}

impl DaemonArgs {
    /// The settings the flags give.
    pub fn settings(&self) -> Settings {
        Settings {
            interval: self.interval,
            store: self.store.clone(),
            advertise_addr: self.advertise_addr,
            lease_ttl: self.lease_ttl,
            claim_grace: self.claim_grace,
            etcd_cacert: self.etcd_cacert.clone(),
            etcd_cert: self.etcd_cert.clone(),
            etcd_key: self.etcd_key.clone(),
            etcd_user: self.etcd_user.clone(),
            etcd_password_file: self.etcd_password_file.clone(),
            host_name: self.host_name.clone(),
            plugin_socket: self.plugin_socket.clone(),
            docker_socket: self.docker_socket.clone(),
            dns_upstream: (!self.dns_upstream.is_empty()).then(|| self.dns_upstream.clone()),
            metrics_address: self.metrics_address,
        }
    }
}
