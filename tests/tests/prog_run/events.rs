//! Drop events: reported only to a reader, and rate-limited.

use super::*;

/// A drop flood reports at most a burst and then the per-CPU rate; the
/// rest is counted as rate-limited, and what was reported is in the ring.
#[test]
fn drop_reports_are_rate_limited() {
    if !require_root("drop_reports_are_rate_limited") {
        return;
    }
    let (env, pins, mut dp) = programmed("rl");
    // From A's veth with a source address that is not A's.
    let forged = ipv4_udp_frame(MAC_C, MAC_A, ip("10.0.1.99"), ip("10.0.1.4"), 5555);
    let ctx = env.host.skb_ctx("ep1");
    let flood = |dp: &mut Dataplane, n: u64| {
        env.host
            .ns
            .run(|| {
                // The budget is per CPU: one CPU spends it.
                pin_to_current_cpu();
                let started = std::time::Instant::now();
                let mut out = vec![0u8; forged.len() + 64];
                for _ in 0..n {
                    let r = dp
                        .tc_program(overlay_common::programs::ENDPOINT_INGRESS)
                        .expect("program")
                        .test_run(TestRunOptions {
                            data_in: Some(&forged),
                            data_out: Some(&mut out),
                            ctx_in: Some(&ctx),
                            ..TestRunOptions::default()
                        })
                        .expect("test_run");
                    assert_eq!(r.return_value, TC_ACT_SHOT, "spoofed source dropped");
                }
                started.elapsed()
            })
            .expect("enter netns")
    };
    // No monitor: nothing reported, nothing tallied.
    flood(&mut dp, 10);
    assert_eq!(
        dp.monitor_tallies().expect("tallies"),
        overlay_common::MonitorState::default()
    );
    let mut events = DropEvents::open(&pins.0).expect("drop events");
    const FLOOD: u64 = 3000;
    let elapsed = flood(&mut dp, FLOOD);
    let tallies = dp.monitor_tallies().expect("tallies");
    let allowed = EVENTS_BURST + EVENTS_PER_SEC * elapsed.as_micros() as u64 / 1_000_000 + 1;
    assert!(
        (EVENTS_BURST..=allowed).contains(&tallies.sent),
        "{tallies:?} after {FLOOD} drops in {elapsed:?}: reported at most {allowed}"
    );
    assert_eq!(tallies.sent + tallies.suppressed, FLOOD, "{tallies:?}");
    assert_eq!(tallies.lost, 0, "{tallies:?}");
    assert_eq!(
        events.drain() as u64,
        tallies.sent,
        "what was reported is in the ring"
    );
    let total = dp
        .counters()
        .expect("counters")
        .drop(DropReason::Spoofed)
        .packets;
    assert_eq!(total, FLOOD + 10, "every drop is counted all the same");
    // The reader gone, reporting stops.
    drop(events);
    flood(&mut dp, 10);
    assert_eq!(dp.monitor_tallies().expect("tallies"), tallies);
}
