//! The benchmark code path runs and every measured path returns the verdict
//! it claims to measure (no assertion on speed: speed lives in benchmarks).

use overlay_testkit::require_root;

#[test]
fn prog_run_benchmark_measures_the_paths_it_names() {
    if !require_root("prog_run_benchmark_measures_the_paths_it_names") {
        return;
    }
    let costs = overlay_bench::prog_run::prog_run_costs(20).expect("benchmark runs");
    let paths: Vec<(&str, &str)> = costs.iter().map(|c| (c.program, c.path)).collect();
    for want in [
        ("noop_tc", "no-op baseline"),
        ("noop_xdp", "no-op baseline"),
        ("endpoint_ingress", "encap to remote host"),
        ("endpoint_ingress", "same-host redirect_peer"),
        ("underlay_xdp", "decap to local endpoint"),
        ("underlay_tc", "decap to local endpoint"),
    ] {
        assert!(paths.contains(&want), "{want:?} measured: {paths:?}");
    }
    assert!(
        costs
            .iter()
            .all(|c| c.samples >= 10 && c.median.as_nanos() > 0),
        "{costs:?}"
    );
}

#[test]
fn traffic_benchmark_measures_every_path_it_names() {
    if !require_root("traffic_benchmark_measures_every_path_it_names") {
        return;
    }
    use overlay_bench::traffic::{self, PathKind, TrafficOptions};
    assert!(traffic::have_iperf3(), "iperf3 is installed by setup");
    let paths = [
        PathKind::EbpfTc,
        PathKind::KernelOffload,
        PathKind::Redirect,
        PathKind::RedirectXdp,
        PathKind::PlainVeth,
    ];
    let results = traffic::run(&paths, TrafficOptions::QUICK, |_| {}).expect("benchmark runs");
    assert_eq!(results.len(), paths.len());
    for r in &results {
        // Real measurements, not placeholders: every path moved data.
        assert!(r.tcp1_gbps > 0.0 && r.tcp4_gbps > 0.0, "{r:?}");
        assert!(
            r.rr_median_us > 0.0 && r.rr_p99_us >= r.rr_median_us,
            "{r:?}"
        );
    }
}

#[test]
fn packet_rate_benchmark_delivers_on_every_path() {
    if !require_root("packet_rate_benchmark_delivers_on_every_path") {
        return;
    }
    use overlay_bench::{
        pktrate::{self, Direction, RateOptions},
        traffic::PathKind,
    };
    let run = pktrate::run(&PathKind::ALL, &RateOptions::QUICK, |_| {}).expect("benchmark runs");
    let results = &run.rates;
    for path in PathKind::ALL {
        let dirs: Vec<Direction> = results
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.direction)
            .collect();
        let want: &[Direction] = if path == PathKind::PlainVeth {
            &[Direction::Encap]
        } else {
            &[Direction::Encap, Direction::Decap]
        };
        assert_eq!(dirs, want, "{path:?} measured in each direction it has");
    }
    // The profile pass saw our programs run on every path that has them.
    for p in &run.profiles {
        assert!(
            p.program_ns_per_packet > 0.0 && !p.programs.is_empty(),
            "{p:?}"
        );
    }
    assert_eq!(
        run.profiles.len(),
        8,
        "ebpf-xdp, ebpf-tc, redirect tc, redirect xdp x 2 directions"
    );
    // With and without a drop monitor: ordinary traffic is never reported;
    // a forged-source flood is, up to the per-CPU burst, the rest counted
    // as rate-limited.
    let cases: Vec<(PathKind, &str)> = run.monitor.iter().map(|m| (m.path, m.traffic)).collect();
    assert_eq!(
        cases,
        [
            (PathKind::EbpfXdp, "forwarded"),
            (PathKind::EbpfXdp, "dropped"),
            (PathKind::EbpfTc, "forwarded"),
            (PathKind::EbpfTc, "dropped"),
        ]
    );
    for m in &run.monitor {
        assert!(m.mpps.0 > 0.0 && m.mpps.1 > 0.0, "{m:?}");
        if m.traffic == "forwarded" {
            assert_eq!((m.reported, m.rate_limited), (0, 0), "{m:?}");
        } else {
            assert!(m.reported > 0, "{m:?}");
            assert!(m.drops > 0, "{m:?}");
            assert_eq!(
                m.reported + m.rate_limited,
                m.drops,
                "every drop of the `on` runs reported or rate-limited: {m:?}"
            );
        }
    }
    // The no-drop search ran on every path and direction (it needs a CPU
    // for the generator and one for the path) and found a rate.
    let two_cpus = std::thread::available_parallelism().map_or(1, usize::from) >= 2;
    let searched: Vec<(PathKind, Direction)> =
        run.no_drop.iter().map(|r| (r.path, r.direction)).collect();
    let measured: Vec<(PathKind, Direction)> =
        results.iter().map(|r| (r.path, r.direction)).collect();
    if two_cpus {
        assert_eq!(searched, measured, "no-drop search on every path");
    } else {
        assert!(searched.is_empty(), "no search on one CPU");
    }
    for r in &run.no_drop {
        assert!(r.mpps > 0.0 && r.loss < 1.0, "{r:?}");
    }
    for r in results {
        // Frames really arrived in the far container (counted there); the
        // sink counts whatever arrives, so allow a stray frame or two.
        assert!(
            r.mpps > 0.0 && r.delivered > 0.0 && r.delivered <= 1.01,
            "{r:?}"
        );
    }
}
