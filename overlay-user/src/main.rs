//! `overlay`: the root binary. This slice programs the dataplane directly
//! from flags (the Docker-style CLI and the agent build on the same library)
//! and runs the two-host demo.

use std::{net::Ipv4Addr, path::PathBuf, process::ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use ipnet::Ipv4Net;
use overlay_user::{
    DEFAULT_PIN_DIR, Dataplane, DecapMode, LocalEndpoint, MacAddr, Network, RemoteEndpoint,
    Underlay, netns,
};

mod demo;

#[derive(Parser)]
#[command(
    name = "overlay",
    version,
    about = "eBPF VXLAN overlay dataplane (run as root)"
)]
struct Cli {
    /// Directory (on a bpffs, mounted if needed) for pinned maps and links.
    #[arg(long, global = true, default_value = DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Bind this host to its underlay NIC: set the underlay address and
    /// attach the decap program.
    Attach {
        /// Underlay NIC, e.g. eth0.
        #[arg(long)]
        iface: String,
        /// This host's underlay IPv4 (outer source address).
        #[arg(long)]
        underlay_ip: Ipv4Addr,
        /// Decap program: XDP (native, else generic), generic XDP, or TC.
        #[arg(long, value_enum, default_value_t = Decap::Xdp)]
        decap: Decap,
    },
    /// Networks this host serves.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Local and remote endpoints.
    #[command(subcommand)]
    Endpoint(EndpointCmd),
    /// Remote hosts allowed to send a VNI.
    #[command(subcommand)]
    Peer(PeerCmd),
    /// Per-reason packet counters.
    Stats,
    /// Remove every pinned map and link (detaches the programs).
    Destroy,
    /// Benchmarks (private namespaces; nothing else is touched).
    Bench {
        /// BPF_PROG_RUN samples per program path.
        #[arg(long, default_value_t = 20_000)]
        samples: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Two simulated hosts, containers talking over the overlay, isolation
    /// shown, everything removed at the end.
    Demo {
        #[arg(long, value_enum, default_value_t = Decap::Xdp)]
        decap: Decap,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Decap {
    Xdp,
    XdpGeneric,
    Tc,
}

impl From<Decap> for DecapMode {
    fn from(d: Decap) -> Self {
        match d {
            Decap::Xdp => Self::Xdp,
            Decap::XdpGeneric => Self::XdpGeneric,
            Decap::Tc => Self::Tc,
        }
    }
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// Add a network.
    Add {
        #[arg(long)]
        vni: u32,
        #[arg(long)]
        subnet: Ipv4Net,
        /// Defaults to the first address of the subnet.
        #[arg(long)]
        gateway: Option<Ipv4Addr>,
        /// No gateway path: nothing outside the subnet is reachable.
        #[arg(long)]
        internal: bool,
    },
    /// Remove a network (refused while local endpoints use it).
    Rm {
        #[arg(long)]
        vni: u32,
    },
    /// List networks.
    Ls,
}

#[derive(Subcommand)]
enum EndpointCmd {
    /// Add a local endpoint (its host-side veth) or, with --remote, one on
    /// another host.
    Add {
        #[arg(long)]
        vni: u32,
        #[arg(long)]
        ip: Ipv4Addr,
        /// Container-side MAC; defaults to 02:42 + the IPv4 address.
        #[arg(long)]
        mac: Option<MacAddr>,
        /// Host-side veth of a local endpoint.
        #[arg(long, conflicts_with = "remote", required_unless_present = "remote")]
        host_veth: Option<String>,
        /// Underlay IPv4 of the host that owns a remote endpoint.
        #[arg(long)]
        remote: Option<Ipv4Addr>,
    },
    /// Remove a local endpoint (by its veth) or a remote one (by VNI and IP).
    Rm {
        #[arg(long, conflicts_with_all = ["vni", "ip"])]
        host_veth: Option<String>,
        #[arg(long, requires = "ip")]
        vni: Option<u32>,
        #[arg(long, requires = "vni")]
        ip: Option<Ipv4Addr>,
    },
}

#[derive(Subcommand)]
enum PeerCmd {
    Add {
        #[arg(long)]
        remote: Ipv4Addr,
        #[arg(long)]
        vni: u32,
    },
    Rm {
        #[arg(long)]
        remote: Ipv4Addr,
        #[arg(long)]
        vni: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("overlay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("must run as root (loads eBPF programs and changes network namespaces)");
    }
    let pin_dir = cli.pin_dir;
    match cli.command {
        Command::Demo { decap } => return demo::run(decap.into()),
        Command::Bench { samples, json } => return bench(samples, json),
        Command::Destroy => {
            return Dataplane::destroy(&pin_dir)
                .with_context(|| format!("removing {}", pin_dir.display()));
        }
        _ => {}
    }
    let mut dp = Dataplane::load(&pin_dir).context("loading the dataplane")?;
    match cli.command {
        Command::Attach {
            iface,
            underlay_ip,
            decap,
        } => {
            let ifindex = netns::ifindex(&iface)?;
            dp.set_underlay(&Underlay::new(ifindex, underlay_ip))?;
            let mode = dp.attach_underlay(ifindex, decap.into())?;
            println!("attached to {iface} (ifindex {ifindex}) as {underlay_ip}: decap {mode}");
        }
        Command::Network(NetworkCmd::Add {
            vni,
            subnet,
            gateway,
            internal,
        }) => {
            let gateway = gateway.or_else(|| subnet.hosts().next());
            dp.add_network(&Network {
                vni,
                subnet,
                gateway,
                internal,
            })?;
        }
        Command::Network(NetworkCmd::Rm { vni }) => dp.remove_network(vni)?,
        Command::Network(NetworkCmd::Ls) => {
            println!("{:<10} {:<18} {:<15} INTERNAL", "VNI", "SUBNET", "GATEWAY");
            for (vni, net) in dp.networks()? {
                let gw = net.gateway.map_or_else(|| "-".into(), |g| g.to_string());
                println!(
                    "{vni:<10} {:<18} {gw:<15} {}",
                    net.subnet.to_string(),
                    net.internal
                );
            }
        }
        Command::Endpoint(EndpointCmd::Add {
            vni,
            ip,
            mac,
            host_veth,
            remote,
        }) => {
            let mac = mac.unwrap_or_else(|| MacAddr::from_ipv4(ip));
            if let Some(host) = remote {
                dp.add_remote_endpoint(&RemoteEndpoint { vni, ip, mac, host })?;
            } else {
                let veth = host_veth.context("--host-veth or --remote is required")?;
                let host_ifindex = netns::ifindex(&veth)?;
                let host_mac = netns::mac(&veth)?;
                dp.add_local_endpoint(&LocalEndpoint {
                    vni,
                    ip,
                    mac,
                    host_ifindex,
                    host_mac,
                })?;
                if let Err(e) = dp.attach_endpoint(host_ifindex) {
                    // All or nothing: undo the map entries.
                    let _ = dp.remove_local_endpoint(host_ifindex);
                    return Err(e.into());
                }
            }
        }
        Command::Endpoint(EndpointCmd::Rm { host_veth, vni, ip }) => match (host_veth, vni, ip) {
            (Some(veth), _, _) => {
                let ifindex = netns::ifindex(&veth)?;
                dp.remove_local_endpoint(ifindex)?;
                dp.detach_endpoint(ifindex)?;
            }
            (None, Some(vni), Some(ip)) => dp.remove_remote_endpoint(vni, ip)?,
            _ => bail!("give --host-veth, or --vni and --ip"),
        },
        Command::Peer(PeerCmd::Add { remote, vni }) => dp.add_peer(remote, vni)?,
        Command::Peer(PeerCmd::Rm { remote, vni }) => dp.remove_peer(remote, vni)?,
        Command::Stats => {
            let c = dp.counters()?;
            println!("{:<28} {:>12} {:>16}", "COUNTER", "PACKETS", "BYTES");
            for (name, v) in c.outcomes.iter().chain(c.drops.iter()) {
                println!("{name:<28} {:>12} {:>16}", v.packets, v.bytes);
            }
        }
        Command::Demo { .. } | Command::Destroy | Command::Bench { .. } => {
            unreachable!("handled above")
        }
    }
    Ok(())
}

/// One benchmark row as printed (table) or emitted (JSON).
#[derive(serde::Serialize)]
struct CostRow {
    program: &'static str,
    path: &'static str,
    action: u32,
    samples: usize,
    median_ns: u128,
    p90_ns: u128,
    over_noop_ns: u128,
}

fn bench(samples: usize, json: bool) -> anyhow::Result<()> {
    eprintln!("BPF_PROG_RUN cost: {samples} single runs per path (kernel-timed)...");
    let costs = overlay_user::bench::prog_run_costs(samples).context("BPF_PROG_RUN benchmark")?;
    let baseline = |prog: &str| {
        let noop = if prog.contains("xdp") {
            "noop_xdp"
        } else {
            "noop_tc"
        };
        costs
            .iter()
            .find(|c| c.program == noop)
            .map_or(0, |c| c.median.as_nanos())
    };
    let rows: Vec<CostRow> = costs
        .iter()
        .map(|c| CostRow {
            program: c.program,
            path: c.path,
            action: c.action,
            samples: c.samples,
            median_ns: c.median.as_nanos(),
            p90_ns: c.p90.as_nanos(),
            over_noop_ns: c.median.as_nanos().saturating_sub(baseline(c.program)),
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<18} {:<26} {:>6} {:>10} {:>8} {:>12}",
        "PROGRAM", "PATH", "ACTION", "MEDIAN ns", "P90 ns", "OVER NO-OP"
    );
    for r in &rows {
        println!(
            "{:<18} {:<26} {:>6} {:>10} {:>8} {:>12}",
            r.program, r.path, r.action, r.median_ns, r.p90_ns, r.over_noop_ns
        );
    }
    Ok(())
}
