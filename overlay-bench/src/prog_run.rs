//! The cost of each program path under BPF_PROG_RUN, next to a no-op
//! program of the same type.
//!
//! BPF_PROG_RUN with `repeat` reruns the program on the same skb/xdp_buff,
//! so a program that rewrites the packet would meet its own output from the
//! second run on (encap would measure a spoof drop). Each sample is
//! therefore one run (`repeat = 1`), whose duration the kernel measures
//! around the program alone; the median of many samples is reported, and
//! the no-op baseline shows the measurement's own floor.

use std::{net::Ipv4Addr, time::Duration};

use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use overlay_common::{VXLAN_PORT, programs};
use overlay_testkit::{
    packet::{ETH_P_ARP, arp, eth, ipv4_udp_frame, vxlan_frame},
    prog_run::ProgRunHost,
    unique_name,
};
use overlay_user::{
    dataplane::{Dataplane, LocalEndpoint, Network, RemoteEndpoint, Underlay},
    model::MacAddr,
};

use crate::{BenchError, NOOP_OBJECT};

/// Cost of one program path.
#[derive(Clone, Debug)]
pub struct ProgCost {
    pub program: &'static str,
    pub path: &'static str,
    /// Return value seen on every sample.
    pub action: u32,
    pub samples: usize,
    pub median: Duration,
    pub p90: Duration,
}

enum Prog<'a> {
    Tc(&'a SchedClassifier, Option<[u8; 44]>),
    Xdp(&'a Xdp),
}

fn measure(
    prog: &Prog<'_>,
    program: &'static str,
    path: &'static str,
    input: &[u8],
    want: u32,
    samples: usize,
) -> Result<ProgCost, BenchError> {
    let mut out = vec![0u8; input.len() + 256];
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let mut opts = TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            ..TestRunOptions::default()
        };
        let ctx;
        let result = match prog {
            Prog::Tc(p, skb_ctx) => {
                if let Some(c) = skb_ctx {
                    ctx = *c;
                    opts.ctx_in = Some(&ctx);
                }
                p.test_run(opts)
            }
            Prog::Xdp(p) => p.test_run(opts),
        }
        .map_err(|source| BenchError::Program {
            what: format!("BPF_PROG_RUN of {program} ({path})"),
            source,
        })?;
        if result.return_value != want {
            return Err(BenchError::Verdict {
                path,
                got: result.return_value,
                want,
            });
        }
        times.push(result.duration);
    }
    times.sort_unstable();
    Ok(ProgCost {
        program,
        path,
        action: want,
        samples,
        median: times[samples / 2],
        p90: times[samples * 9 / 10],
    })
}

/// Runs every path `samples` times in a private namespace.
pub fn prog_run_costs(samples: usize) -> Result<Vec<ProgCost>, BenchError> {
    let samples = samples.max(10);
    let host = ProgRunHost::new()?;
    let pin_dir = std::path::PathBuf::from(format!("/sys/fs/bpf/{}", unique_name("ovlbench")));
    let result = run_all(&host, &pin_dir, samples);
    let _ = Dataplane::destroy(&pin_dir);
    result
}

fn run_all(
    host: &ProgRunHost,
    pin_dir: &std::path::Path,
    samples: usize,
) -> Result<Vec<ProgCost>, BenchError> {
    let ip = |a, b, c, d| Ipv4Addr::new(a, b, c, d);
    let (mac_a, mac_b, mac_c) = (
        MacAddr::from_ipv4(ip(10, 0, 1, 2)),
        MacAddr::from_ipv4(ip(10, 0, 1, 3)),
        MacAddr::from_ipv4(ip(10, 0, 1, 4)),
    );
    let mut dp = Dataplane::load(pin_dir)?;
    dp.set_underlay(&Underlay::new(
        host.ifindex("ul0"),
        ProgRunHost::UNDERLAY_IP,
    ))?;
    dp.add_network(&Network {
        vni: 100,
        subnet: "10.0.1.0/24".parse().expect("literal subnet"),
        gateway: Some(ip(10, 0, 1, 1)),
        internal: false,
    })?;
    let local = |addr, mac, ifindex| LocalEndpoint {
        vni: 100,
        ip: addr,
        mac,
        host_ifindex: ifindex,
        host_mac: MacAddr([0x02, 0xee, 0, 0, 0, 1]),
    };
    dp.add_local_endpoint(&local(ip(10, 0, 1, 2), mac_a, host.ifindex("ep1")))?;
    dp.add_local_endpoint(&local(ip(10, 0, 1, 3), mac_b, host.ifindex("ep2")))?;
    dp.add_remote_endpoint(&RemoteEndpoint {
        vni: 100,
        ip: ip(10, 0, 1, 4),
        mac: mac_c,
        host: ProgRunHost::NEIGH_IP,
    })?;
    dp.add_peer(ProgRunHost::NEIGH_IP, 100)?;

    let mut noop = Ebpf::load(NOOP_OBJECT).map_err(BenchError::Load)?;
    for name in ["noop_tc", "noop_xdp"] {
        let prog = noop.program_mut(name).ok_or_else(|| BenchError::Program {
            what: format!("{name} missing"),
            source: aya::programs::ProgramError::NotLoaded,
        })?;
        let load = match prog {
            aya::programs::Program::SchedClassifier(p) => p.load(),
            aya::programs::Program::Xdp(p) => p.load(),
            _ => Err(aya::programs::ProgramError::NotLoaded),
        };
        load.map_err(|source| BenchError::Program {
            what: format!("loading {name}"),
            source,
        })?;
    }

    let a = ip(10, 0, 1, 2);
    let to_b = ipv4_udp_frame(mac_b.0, mac_a.0, a, ip(10, 0, 1, 3), 5555);
    let to_c = ipv4_udp_frame(mac_c.0, mac_a.0, a, ip(10, 0, 1, 4), 5555);
    let mut arp_req = eth([0xff; 6], mac_a.0, ETH_P_ARP);
    arp_req.extend(arp(1, mac_a.0, a, [0; 6], ip(10, 0, 1, 3)));
    let inner = ipv4_udp_frame(mac_a.0, mac_c.0, ip(10, 0, 1, 4), a, 7777);
    let vxlan = vxlan_frame(
        ProgRunHost::NEIGH_IP,
        ProgRunHost::UNDERLAY_IP,
        VXLAN_PORT,
        0x08,
        100,
        &inner,
    );

    let ctx = host.skb_ctx("ep1");
    let costs = host.ns.run(|| -> Result<Vec<ProgCost>, BenchError> {
        let noop_tc: &SchedClassifier = match noop.program("noop_tc") {
            Some(aya::programs::Program::SchedClassifier(p)) => p,
            _ => unreachable!("loaded above"),
        };
        let noop_xdp: &Xdp = match noop.program("noop_xdp") {
            Some(aya::programs::Program::Xdp(p)) => p,
            _ => unreachable!("loaded above"),
        };
        let mut costs = vec![
            measure(
                &Prog::Tc(noop_tc, None),
                "noop_tc",
                "no-op baseline",
                &to_c,
                0,
                samples,
            )?,
            measure(
                &Prog::Xdp(noop_xdp),
                "noop_xdp",
                "no-op baseline",
                &vxlan,
                2,
                samples,
            )?,
        ];
        let ep: &SchedClassifier = dp.tc_program(programs::ENDPOINT_INGRESS)?;
        let ep = Prog::Tc(ep, Some(ctx));
        costs.push(measure(
            &ep,
            programs::ENDPOINT_INGRESS,
            "encap to remote host",
            &to_c,
            7,
            samples,
        )?);
        costs.push(measure(
            &ep,
            programs::ENDPOINT_INGRESS,
            "same-host redirect_peer",
            &to_b,
            7,
            samples,
        )?);
        costs.push(measure(
            &ep,
            programs::ENDPOINT_INGRESS,
            "ARP reply",
            &arp_req,
            7,
            samples,
        )?);
        let xdp: &Xdp = dp.xdp_program()?;
        costs.push(measure(
            &Prog::Xdp(xdp),
            programs::UNDERLAY_XDP,
            "decap to local endpoint",
            &vxlan,
            4,
            samples,
        )?);
        let tc: &SchedClassifier = dp.tc_program(programs::UNDERLAY_TC)?;
        costs.push(measure(
            &Prog::Tc(tc, None),
            programs::UNDERLAY_TC,
            "decap to local endpoint",
            &vxlan,
            7,
            samples,
        )?);
        Ok(costs)
    });
    costs?
}
