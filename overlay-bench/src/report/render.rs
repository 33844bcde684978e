//! The results as a terminal table, a markdown page (BENCHMARKS.md) and an
//! SVG chart.

use std::fmt::Write as _;

use overlay_bench::{
    docker::{self, DockerPath},
    pktrate::{self, Direction},
    traffic::{PathKind, PathResult},
};

use super::Results;

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

pub(super) fn tables(r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nProgram cost (BPF_PROG_RUN, kernel-timed, median of single runs)"
    );
    let _ = writeln!(
        out,
        "| program | path | action | median ns | p90 ns | over no-op ns |\n|---|---|---|---|---|---|"
    );
    for c in &r.prog_run {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            c.program, c.path, c.action, c.median_ns, c.p90_ns, c.over_noop_ns
        );
    }
    let _ = writeln!(
        out,
        "\nControl plane: programming remote endpoints (validated, one route each)"
    );
    let _ = writeln!(
        out,
        "| endpoints | total ms | us per endpoint |\n|---|---|---|"
    );
    for c in &r.control_plane {
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.2} |",
            c.endpoints, c.total_ms, c.per_endpoint_us
        );
    }
    let total: u64 = r.map_memory.iter().map(|m| m.bytes).sum();
    let maps: Vec<String> = r
        .map_memory
        .iter()
        .map(|m| format!("{} {} KiB", m.map, m.bytes / 1024))
        .collect();
    let _ = writeln!(
        out,
        "\nMap memory (locked; all preallocated but the per-network counters): {} KiB in all: {}",
        total / 1024,
        maps.join(", ")
    );
    let limit = r.traffic.iter().find(|t| t.path == PathKind::PlainVeth);
    if !r.traffic.is_empty() {
        let _ = writeln!(
            out,
            "\nTraffic between containers on two hosts (medians over rounds)"
        );
        let _ = writeln!(
            out,
            "| path | TCP 1 stream Gbit/s | TCP 4 streams Gbit/s | retransmits (1 stream) | RR median us | RR median, rounds' range | RR p99 us | TCP1 vs kernel (same underlay) | TCP1 vs limit | RR vs limit |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for t in &r.traffic {
            let kernel = t
                .path
                .kernel_peer()
                .and_then(|k| r.traffic.iter().find(|x| x.path == k));
            let _ = writeln!(
                out,
                "| {} | {:.2} | {:.2} | {} | {:.1} | {:.1}-{:.1} | {:.1} | {} | {} | {} |",
                t.name,
                t.tcp1_gbps,
                t.tcp4_gbps,
                t.tcp1_retransmits,
                t.rr_median_us,
                t.rr_median_range_us.0,
                t.rr_median_range_us.1,
                t.rr_p99_us,
                kernel.map_or_else(|| "-".into(), |k| ratio(t.tcp1_gbps, k.tcp1_gbps)),
                limit.map_or_else(|| "-".into(), |l| ratio(t.tcp1_gbps, l.tcp1_gbps)),
                limit.map_or_else(|| "-".into(), |l| ratio(t.rr_median_us, l.rr_median_us)),
            );
        }
    }
    if !r.packet_rate.rates.is_empty() {
        let _ = writeln!(
            out,
            "\nPacket rate: UDP frames from the XDP live-frames generator, counted (and dropped) in the far container \
             (medians over rounds; CPU = busy time of all CPUs per delivered frame, generator included)\n\
             | path | direction | frame B | Mpps | delivered | CPU ns/pkt | vs kernel (same underlay) | vs limit (a) |\n\
             |---|---|---|---|---|---|---|---|"
        );
        for x in &r.packet_rate.rates {
            let find = |p: PathKind| {
                r.packet_rate
                    .rates
                    .iter()
                    .find(|y| y.path == p && y.direction == x.direction && y.size == x.size)
            };
            let kernel = x.path.kernel_peer().and_then(find);
            let limit = limit_of(x.path).and_then(find);
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.3} | {:.0}% | {:.0} | {} | {} |",
                x.name,
                match x.direction {
                    Direction::Encap => "encap",
                    Direction::Decap => "decap",
                },
                x.size,
                x.mpps,
                x.delivered * 100.0,
                x.cpu_ns_per_packet,
                kernel.map_or_else(|| "-".into(), |k| ratio(x.mpps, k.mpps)),
                limit.map_or_else(|| "-".into(), |l| ratio(x.mpps, l.mpps)),
            );
        }
    }
    if !r.packet_rate.no_drop.is_empty() {
        let _ = writeln!(
            out,
            "\nNo-drop rate, {} B: the highest paced rate that one forwarding CPU carries with at \
             most {:.1}% loss, the generator on another CPU (RPS steers its frames over; medians \
             over rounds; \">=\": the path carried all the generator sent)\n\
             | path | direction | Mpps | loss | vs kernel (same underlay) | vs limit (a) |\n\
             |---|---|---|---|---|---|",
            r.packet_rate.no_drop.first().map_or(64, |x| x.size),
            pktrate::LOSS_LIMIT * 100.0
        );
        for x in &r.packet_rate.no_drop {
            let find = |p: PathKind| {
                r.packet_rate
                    .no_drop
                    .iter()
                    .find(|y| y.path == p && y.direction == x.direction)
            };
            let kernel = x.path.kernel_peer().and_then(find);
            let limit = limit_of(x.path).and_then(find);
            let _ = writeln!(
                out,
                "| {} | {} | {}{:.3} | {:.2}% | {} | {} |",
                x.name,
                match x.direction {
                    Direction::Encap => "encap",
                    Direction::Decap => "decap",
                },
                if x.generator_bound { ">= " } else { "" },
                x.mpps,
                x.loss * 100.0,
                kernel.map_or_else(|| "-".into(), |k| ratio(x.mpps, k.mpps)),
                limit.map_or_else(|| "-".into(), |l| ratio(x.mpps, l.mpps)),
            );
        }
    }
    if !r.packet_rate.profiles.is_empty() {
        let _ = writeln!(
            out,
            "\nWhere the time of a 64 B packet goes (one more pass, with the kernel's BPF run-time \
             statistics on): busy CPU of the machine per delivered packet, and the part spent inside \
             the programs on the path\n\
             | path | direction | CPU ns/pkt | in programs ns/pkt | programs (ns per run x runs per packet) |\n\
             |---|---|---|---|---|"
        );
        for p in &r.packet_rate.profiles {
            let progs: Vec<String> = p
                .programs
                .iter()
                .map(|(name, ns, per)| format!("{name} {ns:.0} x {per:.2}"))
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} | {} |",
                p.name,
                match p.direction {
                    Direction::Encap => "encap",
                    Direction::Decap => "decap",
                },
                p.cpu_ns_per_packet,
                p.program_ns_per_packet,
                progs.join(", ")
            );
        }
    }
    if !r.packet_rate.monitor.is_empty() {
        let _ = writeln!(
            out,
            "\nWith and without `overlay monitor` reading the drop events (64 B from the client \
             container, flat out, off and on alternating in each round; medians): ordinary traffic, \
             which the monitor never sees, and a flood of forged-source frames that the client's \
             host drops, each drop a candidate report (at most {} per second per CPU, the rest \
             rate-limited)\n\
             | path | traffic | Mpps off | Mpps on | on / off | CPU ns/pkt off | CPU ns/pkt on | drops (on) | reported | rate-limited |\n\
             |---|---|---|---|---|---|---|---|---|---|",
            overlay_common::events::EVENTS_PER_SEC
        );
        for m in &r.packet_rate.monitor {
            let _ = writeln!(
                out,
                "| {} | {} | {:.3} | {:.3} | {} | {:.0} | {:.0} | {} | {} | {} |",
                m.name,
                m.traffic,
                m.mpps.0,
                m.mpps.1,
                ratio(m.mpps.1, m.mpps.0),
                m.cpu_ns_per_packet.0,
                m.cpu_ns_per_packet.1,
                m.drops,
                m.reported,
                m.rate_limited
            );
        }
    }
    out.push_str(&targets(r));
    if let Some(d) = &r.docker {
        out.push_str(&docker_table(d));
    }
    if let Some(d) = &r.dns {
        out.push_str(&dns_table(d));
    }
    if let Some(c) = &r.cluster {
        let _ = writeln!(
            out,
            "\nCluster convergence (2 hosts, etcd on the underlay): from starting `network connect` \
             on host 2 to the first reply at a container on host 1, over {} connects\n\
             | median ms | max ms | connect command median ms |\n|---|---|---|\n\
             | {:.1} | {:.1} | {:.1} |",
            c.rounds, c.median_ms, c.max_ms, c.connect_median_ms
        );
    }
    out
}

/// Docker's default bridge next to this plugin's network, as ratios of the
/// plugin to `docker0`.
fn docker_table(d: &docker::DockerRun) -> String {
    let mut out = format!(
        "\nDocker, one host: two containers on Docker's default bridge (docker0: veth + Linux bridge + \
         iptables; bridge-nf-call-iptables={}) and two on a network of this plugin, same dockerd \
         ({}), paths alternating round by round (medians over rounds; {} B frames for the packet rates; \
         \">=\": the path carried all the generator sent)\n\
         | path | TCP 1 stream Gbit/s | retransmits | RR median us | RR p99 us | Mpps flat out | CPU ns/pkt | no-drop Mpps |\n\
         |---|---|---|---|---|---|---|---|\n",
        d.bridge_nf_call_iptables,
        d.engine,
        docker::FRAME_SIZE
    );
    let no_drop = |x: &docker::DockerResult| {
        x.no_drop_mpps.map_or_else(
            || "-".to_owned(),
            |m| {
                format!(
                    "{}{m:.3}",
                    if x.no_drop_generator_bound { ">= " } else { "" }
                )
            },
        )
    };
    for x in &d.results {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {} | {:.1} | {:.1} | {:.3} | {:.0} | {} |",
            x.name,
            x.tcp1_gbps,
            x.tcp1_retransmits,
            x.rr_median_us,
            x.rr_p99_us,
            x.mpps,
            x.cpu_ns_per_packet,
            no_drop(x)
        );
    }
    let find = |p| d.results.iter().find(|x| x.path == p);
    if let (Some(p), Some(b)) = (find(DockerPath::Plugin), find(DockerPath::Docker0)) {
        let no_drop_ratio = match (p.no_drop_mpps, b.no_drop_mpps) {
            (Some(a), Some(c)) => ratio(a, c),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| plugin / docker0 | {} | | {} | {} | {} | {} | {} |",
            ratio(p.tcp1_gbps, b.tcp1_gbps),
            ratio(p.rr_median_us, b.rr_median_us),
            ratio(p.rr_p99_us, b.rr_p99_us),
            ratio(p.mpps, b.mpps),
            ratio(p.cpu_ns_per_packet, b.cpu_ns_per_packet),
            no_drop_ratio,
        );
    }
    out
}

/// Name lookups, with ratios to Docker's embedded resolver.
fn dns_table(d: &overlay_bench::dns::DnsRun) -> String {
    let mut out = format!(
        "\nName lookups from a container on one host, a known name, the resolvers alternating \
         round by round (medians over rounds; RR = one query at a time; qps with queries in flight; \
         the endpoint program answered {} queries on the in-kernel path and {} on the daemon's)\n\
         | resolver | RR median us | RR p99 us | queries/s | latency vs Docker | queries/s vs Docker |\n\
         |---|---|---|---|---|---|\n",
        d.kernel_answered_on_kernel_path, d.kernel_answered_on_daemon_path
    );
    let docker = d
        .results
        .iter()
        .find(|x| x.resolver == overlay_bench::dns::Resolver::Docker);
    for x in &d.results {
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.0} | {} | {} |",
            x.name,
            x.median_us,
            x.p99_us,
            x.qps,
            docker.map_or_else(|| "-".into(), |k| ratio(x.median_us, k.median_us)),
            docker.map_or_else(|| "-".into(), |k| ratio(x.qps, k.qps)),
        );
    }
    out
}

/// The limit (a) a path's "vs limit (a)" column divides by: the one with
/// the same decap hook and underlay for this dataplane, the TC one for the
/// rest (so the XDP limit's row shows what the XDP hook costs on veth).
fn limit_of(path: PathKind) -> Option<PathKind> {
    path.limit_peer().or(Some(PathKind::Redirect))
}

/// Per-round ratios `a[r] / b[r]` of two paths measured in the same
/// rounds (each over `floor`, for counts that may be 0): their median, and
/// the lowest and highest. None unless the rounds pair up.
fn paired(a: &[f64], b: &[f64], floor: f64) -> Option<(f64, f64, f64)> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.max(floor) / y.max(floor))
        .collect();
    ratios.sort_by(f64::total_cmp);
    Some((
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1],
    ))
}

/// The issues' targets against this run: program cost from BPF_PROG_RUN,
/// packet rate from the no-drop table, TCP and latency from the traffic
/// table. A ratio between two paths measured round by round is the median
/// of the rounds' ratios (each pair measured minutes apart at most, so
/// drift over the run cancels), with their range; the others divide the
/// tables' medians.
fn targets(r: &Results) -> String {
    let mut rows = Vec::new();
    let mut row = |target: &str,
                   path: &str,
                   got: f64,
                   rounds: Option<(f64, f64, f64)>,
                   want: f64,
                   higher_is_better: bool| {
        let (got, range) = match rounds {
            Some((median, lo, hi)) => (median, format!(" (rounds {lo:.2}-{hi:.2})")),
            None => (got, String::new()),
        };
        let met = if higher_is_better {
            got >= want
        } else {
            got <= want
        };
        rows.push(format!(
            "| {target} | {path} | {got:.3}x{range} | {} |",
            if met { "met" } else { "missed" }
        ));
    };
    let noop = |program: &str| {
        r.prog_run
            .iter()
            .find(|c| c.program == program)
            .map(|c| c.median_ns as f64)
    };
    for c in &r.prog_run {
        let (base, want) = match (c.program, c.path) {
            ("endpoint_ingress", p) if p.starts_with("encap") => ("noop_tc", 3.0),
            ("underlay_tc", _) => ("noop_tc", 2.0),
            ("underlay_xdp", _) => ("noop_xdp", 2.0),
            _ => continue,
        };
        if let Some(b) = noop(base).filter(|b| *b > 0.0) {
            row(
                &format!("BPF_PROG_RUN <= {want}x a no-op"),
                &format!("{} {}", c.program, c.path),
                c.median_ns as f64 / b,
                None,
                want,
                false,
            );
        }
    }
    for x in &r.packet_rate.no_drop {
        let find = |p: PathKind| {
            r.packet_rate
                .no_drop
                .iter()
                .find(|y| y.path == p && y.direction == x.direction)
        };
        let dir = match x.direction {
            Direction::Encap => "encap",
            Direction::Decap => "decap",
        };
        let name = format!("{} {dir}", x.name);
        if let Some(k) = x.path.kernel_peer().and_then(find) {
            row(
                "no-drop rate >= 3x kernel",
                &name,
                x.mpps / k.mpps,
                paired(&x.rounds, &k.rounds, 0.0),
                3.0,
                true,
            );
            if let Some(l) = x.path.limit_peer().and_then(find) {
                row(
                    "no-drop rate >= 0.9x limit (a), same decap hook",
                    &name,
                    x.mpps / l.mpps,
                    paired(&x.rounds, &l.rounds, 0.0),
                    0.9,
                    true,
                );
            }
        }
    }
    let limit_b = r.traffic.iter().find(|t| t.path == PathKind::PlainVeth);
    for t in &r.traffic {
        let Some(k) = t
            .path
            .kernel_peer()
            .and_then(|k| r.traffic.iter().find(|x| x.path == k))
        else {
            continue;
        };
        let gbps = |p: &PathResult| p.tcp1_rounds.iter().map(|r| r.0).collect::<Vec<_>>();
        let retransmits = |p: &PathResult| p.tcp1_rounds.iter().map(|r| r.1).collect::<Vec<_>>();
        row(
            "TCP 1 stream >= 1.2x kernel",
            t.name,
            t.tcp1_gbps / k.tcp1_gbps,
            paired(&gbps(t), &gbps(k), 0.0),
            1.2,
            true,
        );
        if let Some(l) = t
            .path
            .limit_peer()
            .and_then(|l| r.traffic.iter().find(|x| x.path == l))
        {
            row(
                "TCP 1 stream >= 0.95x limit (a), same decap hook",
                t.name,
                t.tcp1_gbps / l.tcp1_gbps,
                paired(&gbps(t), &gbps(l), 0.0),
                0.95,
                true,
            );
        }
        // As a ratio: at most 1x the kernel path's retransmits.
        row(
            "TCP 1 stream retransmits <= kernel's",
            t.name,
            t.tcp1_retransmits as f64 / (k.tcp1_retransmits.max(1)) as f64,
            paired(&retransmits(t), &retransmits(k), 1.0),
            1.0,
            false,
        );
        if let Some(l) = limit_b {
            row(
                "TCP 1 stream >= 0.85x limit (b)",
                t.name,
                t.tcp1_gbps / l.tcp1_gbps,
                paired(&gbps(t), &gbps(l), 0.0),
                0.85,
                true,
            );
            row(
                "RR latency <= 1.05x limit (b)",
                t.name,
                t.rr_median_us / l.rr_median_us,
                None,
                1.05,
                false,
            );
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "\nTargets of the benchmark issue, from this run: ratios of two paths measured round by \
         round are the median of the rounds' ratios (range in brackets), the others as in the \
         tables above\n\
         | target | path | measured | |\n|---|---|---|---|\n{}\n",
        rows.join("\n")
    )
}

pub(super) fn markdown(r: &Results) -> String {
    format!(
        "# Benchmarks\n\nLatest results, from one run of `{}` on {}.\n\n\
         Reproduce with `./x bench` (as root, after set-up). The machine is noisy: compare ratios \
         within one run, not absolute numbers across runs.\n\n\
         Paths: `ebpf-*` is this dataplane; `kernel vxlan` is Docker's overlay driver's way \
         (vxlan device + bridge per host, static FDB/neighbour entries); `redirect (limit a)` is the \
         same hosts and veths with only a program that redirects by ingress device (no lookup, no \
         encapsulation), in two forms that match the dataplane's decap hooks: `redirect tc` at tcx \
         ingress of the NIC on an offload underlay (as `ebpf-tc`), `redirect xdp` at the NIC's XDP \
         hook on a wire underlay (as `ebpf-xdp`, paying the same veth XDP costs); each `ebpf-*` row's \
         `vs limit (a)` divides by its own; `plain veth (limit b)` joins the two containers directly. Packet rates \
         come from an XDP live-frames generator (BPF_PROG_RUN with BPF_F_TEST_XDP_LIVE_FRAMES; this \
         kernel has no pktgen) that sends as fast as one CPU can, and are counted by a sink \
         program that drops them at the far container's eth0 (so the receiver's UDP stack is not \
         measured); `delivered` is the share of generated frames that arrived, so a path below \
         100% was saturated. Sender, forwarding and sink mostly run on the generating CPU \
         (XDP_TX into a veth is processed in that CPU's softirq): the rates are per-CPU costs. A \
         saturated path drops in a veth backlog, and its rate then depends on how softirq time \
         splits between the stages, so such rows vary from run to run (ebpf-tc encap at 64 B read \
         0.305 and 0.186 Mpps in two full runs on the same day); rows at 100% are the steady ones. \
         The no-drop table is the steady measure: the generator runs pinned to CPU 0, RPS hands \
         its frames to CPU 1, which runs the whole path, and a paced generator (a token bucket \
         inside `xdp_gen`) searches for the highest rate CPU 1 carries without loss: the \
         RFC 2544 throughput of one forwarding core. The encap direction starts in the client container (encap, \
         underlay, decap); the decap direction starts at the client host's NIC with ready-made \
         VXLAN frames. CPU per packet is the whole machine's busy time over the delivered frames, \
         generator and sink included: compare it between paths. `wire` underlays behave like a real NIC (the sender \
         completes checksums and segments); `offload` underlays let veth carry GSO super-packets \
         unsegmented, which favours whoever can use that. Ratios compare like with like.\n\n\
         The Docker table runs one real dockerd (Debian's Engine) in a simulated host with its \
         default bridge and iptables rules as a stock install has them, and this plugin's daemon \
         beside it; two busybox containers on `docker0` and two on a plugin network, measured \
         with the host's tools inside the containers' namespaces (same-host path only).\n\n\
         Request/response latency (64-byte TCP messages, one at a time) runs with both ends pinned \
         to one CPU, so every softirq of the path runs there too and a round trip is the path's work \
         plus two context switches; unpinned, cross-CPU wake-ups of this 2-vCPU VM made the same path \
         read 25 us in one run and 130 us in the next. Each round measures every path three times, \
         interleaved; the table gives the median of those passes and their range. Measured so, each \
         path's median repeated within 3% over three runs.\n{}\n\
         ![Packet rate and TCP throughput](bench_chart.svg)\n",
        r.command,
        r.machine,
        tables(r)
    )
}

/// One panel of paired bars (dark, light) per row, at vertical offset `top`;
/// returns the SVG elements and the panel height.
fn panel(top: f64, title: &str, rows: &[(&str, f64, f64)]) -> (String, f64) {
    let max = rows.iter().map(|r| r.1.max(r.2)).fold(1e-9, f64::max);
    let (w, row) = (640.0, 44.0);
    let mut out = format!(
        "<text x=\"10\" y=\"{:.0}\" font-size=\"14\">{title}</text>\n",
        top + 20.0
    );
    for (i, (name, dark, light)) in rows.iter().enumerate() {
        let y = top + 34.0 + row * i as f64;
        // Room on the right for the value label of the longest bar.
        let bar = |v: f64| v / max * (w - 300.0);
        let _ = writeln!(
            out,
            "<text x=\"10\" y=\"{:.0}\">{name}</text>\n\
             <rect x=\"180\" y=\"{:.0}\" width=\"{:.1}\" height=\"14\" fill=\"#2b6cb0\"/>\n\
             <rect x=\"180\" y=\"{:.0}\" width=\"{:.1}\" height=\"14\" fill=\"#90cdf4\"/>\n\
             <text x=\"{:.0}\" y=\"{:.0}\">{dark:.2} / {light:.2}</text>",
            y + 18.0,
            y + 4.0,
            bar(*dark),
            y + 20.0,
            bar(*light),
            186.0 + bar(dark.max(*light)),
            y + 18.0,
        );
    }
    (out, 40.0 + row * rows.len() as f64)
}

/// Packet rates (64 B frames) and TCP throughput, one panel each.
pub(super) fn svg(r: &Results) -> String {
    // One row per path that has an encap rate: (name, encap, decap).
    let by_direction =
        |rate: &dyn Fn(PathKind, Direction) -> Option<f64>| -> Vec<(&str, f64, f64)> {
            r.traffic_paths()
                .into_iter()
                .filter_map(|(path, name)| {
                    let encap = rate(path, Direction::Encap)?;
                    Some((name, encap, rate(path, Direction::Decap).unwrap_or(0.0)))
                })
                .collect()
        };
    let pps = by_direction(&|path, dir| {
        r.packet_rate
            .rates
            .iter()
            .find(|x| x.path == path && x.direction == dir && x.size == 64)
            .map(|x| x.mpps)
    });
    let no_drop = by_direction(&|path, dir| {
        r.packet_rate
            .no_drop
            .iter()
            .find(|x| x.path == path && x.direction == dir)
            .map(|x| x.mpps)
    });
    let tcp: Vec<(&str, f64, f64)> = r
        .traffic
        .iter()
        .map(|t| (t.name, t.tcp1_gbps, t.tcp4_gbps))
        .collect();
    let mut body = String::new();
    let mut top = 0.0;
    for (title, rows) in [
        (
            "Packet rate, 64 B UDP frames, Mpps delivered (dark: encap direction, light: decap)",
            &pps,
        ),
        (
            "No-drop rate of one forwarding CPU, 64 B, Mpps (dark: encap, light: decap)",
            &no_drop,
        ),
        (
            "TCP throughput, Gbit/s (dark: 1 stream, light: 4 streams)",
            &tcp,
        ),
    ] {
        if rows.is_empty() {
            continue;
        }
        let (p, h) = panel(top, title, rows);
        body.push_str(&p);
        top += h;
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"{top:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n{body}</svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::paired;

    #[test]
    fn paired_ratios_take_each_rounds_pair() {
        // A run that drifts: both paths halve from the first round to the
        // last; the rounds' ratios stay 0.5.
        let (median, lo, hi) = paired(&[4.0, 2.0, 1.0], &[8.0, 4.0, 2.0], 0.0).expect("pairs");
        assert_eq!((median, lo, hi), (0.5, 0.5, 0.5));
        // Counts of zero are floored, not divided by.
        assert_eq!(
            paired(&[0.0, 6.0, 3.0], &[0.0, 2.0, 3.0], 1.0),
            Some((1.0, 1.0, 3.0))
        );
        assert_eq!(
            paired(&[1.0], &[1.0, 2.0], 0.0),
            None,
            "rounds must pair up"
        );
        assert_eq!(paired(&[], &[], 0.0), None);
    }
}
