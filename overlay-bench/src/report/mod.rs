//! `overlay-bench`: runs the benchmarks and reports them as a terminal
//! table, JSON, a markdown page (BENCHMARKS.md) and an SVG chart.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use overlay_bench::{
    cluster::{self, Convergence},
    control::{self, ControlCost, MapMemory},
    dns::{self, DnsOptions, DnsRun},
    docker::{self, DockerRun},
    pktrate::{self, RateOptions, RateRun},
    prog_run::{self, ProgCost},
    traffic::{self, PathKind, PathResult, TrafficOptions},
};
use serde::Serialize;

/// The parts of `overlay-bench`, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    ProgRun,
    Control,
    Traffic,
    PacketRate,
    Cluster,
    Docker,
    Dns,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Smoke-test sizes (one short round): checks the machinery, not speed.
    #[arg(long)]
    quick: bool,
    /// BPF_PROG_RUN samples per program path.
    #[arg(long)]
    samples: Option<usize>,
    /// Rounds (paths alternate within each); default 3 (packet rate 5), quick 1.
    #[arg(long)]
    rounds: Option<usize>,
    /// Seconds per iperf3 measurement; default 5, quick 1.
    #[arg(long)]
    seconds: Option<u32>,
    /// Round trips per latency measurement; default 5000, quick 500.
    #[arg(long)]
    rr_iterations: Option<usize>,
    /// Run only these parts (comma-separated); default all.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
    /// Generated frames per packet-rate measurement; default 200000, quick 5000.
    #[arg(long)]
    frames: Option<u32>,
    /// Frame sizes of the packet rate, bytes (Ethernet header included);
    /// default 64,512,1450, quick 64. The smallest is used for the no-drop rate.
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// UDP flows (source ports) the generator cycles through; default 64, quick 4.
    #[arg(long)]
    flows: Option<u32>,
    /// Offered rate of the packet-rate table, Mpps (paced generator);
    /// default: as fast as the generator's CPU can send.
    #[arg(long)]
    rate: Option<f64>,
    /// Connects measured for cluster convergence; default 10, quick 2.
    #[arg(long)]
    convergence_rounds: Option<usize>,
    /// Write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a markdown report (BENCHMARKS.md).
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Write a bar chart of TCP throughput (SVG).
    #[arg(long)]
    svg: Option<PathBuf>,
}

#[derive(Serialize)]
struct CostRow {
    program: &'static str,
    path: &'static str,
    action: u32,
    samples: usize,
    median_ns: u128,
    p90_ns: u128,
    over_noop_ns: u128,
}

#[derive(Serialize)]
struct Results {
    machine: String,
    command: String,
    prog_run: Vec<CostRow>,
    control_plane: Vec<ControlCost>,
    map_memory: Vec<MapMemory>,
    traffic: Vec<PathResult>,
    packet_rate: RateRun,
    cluster: Option<Convergence>,
    docker: Option<DockerRun>,
    dns: Option<DnsRun>,
}

impl Results {
    /// Every path measured, in order of first appearance.
    fn traffic_paths(&self) -> Vec<(PathKind, &'static str)> {
        let mut out: Vec<(PathKind, &'static str)> = Vec::new();
        for (p, n) in self
            .packet_rate
            .rates
            .iter()
            .map(|x| (x.path, x.name))
            .chain(self.traffic.iter().map(|t| (t.path, t.name)))
        {
            if !out.iter().any(|(q, _)| *q == p) {
                out.push((p, n));
            }
        }
        out
    }
}

fn cost_rows(costs: &[ProgCost]) -> Vec<CostRow> {
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
    costs
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
        .collect()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

/// The `overlay` binary built beside this one (`target/release/overlay`
/// next to `target/release/overlay-bench`).
fn overlay_binary() -> anyhow::Result<std::path::PathBuf> {
    let me = std::env::current_exe().context("locating this binary")?;
    let overlay = me.with_file_name("overlay");
    anyhow::ensure!(
        overlay.exists(),
        "{} is missing: build it first (cargo build --release -p overlay-user)",
        overlay.display()
    );
    Ok(overlay)
}

pub fn bench(args: &BenchArgs) -> anyhow::Result<()> {
    let samples = args
        .samples
        .unwrap_or(if args.quick { 500 } else { 50_000 });
    let runs = |part| args.only.is_empty() || args.only.contains(&part);
    // Packet-rate options are checked before anything runs.
    let mut rate_opts = if args.quick {
        RateOptions::QUICK
    } else {
        RateOptions::FULL
    };
    if let Some(frames) = args.frames {
        rate_opts.frames = frames.max(1);
    }
    if !args.sizes.is_empty() {
        rate_opts.sizes = args.sizes.clone().into();
    }
    if let Some(flows) = args.flows {
        rate_opts.flows = flows;
    }
    if let Some(mpps) = args.rate {
        rate_opts.rate_pps = Some(mpps * 1e6);
    }
    if let Some(rounds) = args.rounds {
        rate_opts.rounds = rounds.max(1);
    }
    rate_opts.validate().context("packet-rate options")?;
    let mut traffic_opts = if args.quick {
        TrafficOptions::QUICK
    } else {
        TrafficOptions::FULL
    };
    if let Some(rounds) = args.rounds {
        traffic_opts.rounds = rounds.max(1);
    }
    if let Some(seconds) = args.seconds {
        traffic_opts.seconds = seconds.max(1);
    }
    if let Some(n) = args.rr_iterations {
        traffic_opts.rr_iterations = n.max(1);
    }

    let prog_run = if runs(Part::ProgRun) {
        eprintln!("[1/7] BPF_PROG_RUN cost: {samples} single runs per path");
        cost_rows(&prog_run::prog_run_costs(samples).context("BPF_PROG_RUN benchmark")?)
    } else {
        Vec::new()
    };
    let counts: &[usize] = if args.quick {
        &[1000]
    } else {
        &[1000, 10_000, 100_000]
    };
    let (control_plane, map_memory) = if runs(Part::Control) {
        eprintln!("[2/7] control plane: programming {counts:?} remote endpoints");
        control::program_remote_endpoints(counts).context("control-plane benchmark")?
    } else {
        (Vec::new(), Vec::new())
    };
    let traffic = if runs(Part::Traffic) {
        anyhow::ensure!(traffic::have_iperf3(), "iperf3 is missing: run `./x setup`");
        traffic::run(&PathKind::ALL, traffic_opts, |step| {
            eprintln!("[3/7] traffic: {step}")
        })
        .context("traffic benchmark")?
    } else {
        Vec::new()
    };
    let packet_rate = if runs(Part::PacketRate) {
        pktrate::run(&PathKind::ALL, &rate_opts, |step| {
            eprintln!("[4/7] packet rate: {step}")
        })
        .context("packet-rate benchmark")?
    } else {
        RateRun::default()
    };
    let cluster = if runs(Part::Cluster) {
        let rounds = args
            .convergence_rounds
            .unwrap_or(if args.quick { 2 } else { 10 });
        eprintln!("[5/7] cluster convergence: {rounds} connects, 2 hosts, etcd");
        Some(cluster::convergence(&overlay_binary()?, rounds))
    } else {
        None
    };
    let docker = if runs(Part::Docker) {
        anyhow::ensure!(
            std::path::Path::new("/usr/sbin/dockerd").exists(),
            "dockerd is missing: run `./x setup`"
        );
        Some(
            docker::run(&overlay_binary()?, traffic_opts, &rate_opts, |step| {
                eprintln!("[6/7] docker: {step}")
            })
            .context("Docker benchmark")?,
        )
    } else {
        None
    };
    let dns = if runs(Part::Dns) {
        let mut opts = if args.quick {
            DnsOptions::QUICK
        } else {
            DnsOptions::FULL
        };
        if let Some(rounds) = args.rounds {
            opts.rounds = rounds.max(1);
        }
        Some(
            dns::run(&overlay_binary()?, opts, |step| {
                eprintln!("[7/7] dns: {step}")
            })
            .context("DNS benchmark")?,
        )
    } else {
        None
    };
    let results = Results {
        machine: machine(),
        command: std::iter::once("overlay-bench".to_owned())
            .chain(std::env::args().skip(1))
            .collect::<Vec<_>>()
            .join(" "),
        prog_run,
        control_plane,
        map_memory,
        traffic,
        packet_rate,
        cluster,
        docker,
        dns,
    };
    print!("{}", tables(&results));
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, markdown(&results))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, svg(&results))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

mod render;

use render::{markdown, svg, tables};
