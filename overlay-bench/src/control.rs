//! Control-plane cost: how long programming remote endpoints takes through
//! the validating `Dataplane` API (one route lookup and one insert each),
//! and how much kernel memory the maps hold.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use overlay_testkit::unique_name;
use overlay_user::{
    dataplane::{Dataplane, Network, RemoteEndpoint},
    model::MacAddr,
};
use serde::Serialize;

use crate::BenchError;

/// Programming `endpoints` remote endpoints into an empty dataplane.
#[derive(Clone, Debug, Serialize)]
pub struct ControlCost {
    pub endpoints: usize,
    pub total_ms: f64,
    pub per_endpoint_us: f64,
}

/// Kernel memory of the maps (preallocated: the same whatever the fill).
#[derive(Clone, Debug, Serialize)]
pub struct MapMemory {
    pub map: &'static str,
    pub bytes: u64,
}

/// Times programming each count of remote endpoints; returns the costs
/// and the maps' memory.
pub fn program_remote_endpoints(
    counts: &[usize],
) -> Result<(Vec<ControlCost>, Vec<MapMemory>), BenchError> {
    let mut costs = Vec::new();
    let mut memory = Vec::new();
    for &n in counts {
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/{}", unique_name("ovlcp")));
        let result = (|| -> Result<Duration, BenchError> {
            let mut dp = Dataplane::load(&pin_dir)?;
            dp.add_network(&Network {
                vni: 100,
                subnet: "10.0.0.0/8".parse().expect("literal subnet"),
                gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
                internal: false,
            })?;
            let start = Instant::now();
            for i in 0..n {
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 2)) + i as u32);
                dp.add_remote_endpoint(&RemoteEndpoint {
                    vni: 100,
                    ip,
                    mac: MacAddr::from_ipv4(ip),
                    host: Ipv4Addr::new(192, 0, 2, (i % 250) as u8 + 1),
                })?;
            }
            let took = start.elapsed();
            if memory.is_empty() {
                memory = dp
                    .map_memory()?
                    .into_iter()
                    .map(|(map, bytes)| MapMemory { map, bytes })
                    .collect();
            }
            Ok(took)
        })();
        let _ = Dataplane::destroy(&pin_dir);
        let took = result?;
        costs.push(ControlCost {
            endpoints: n,
            total_ms: took.as_secs_f64() * 1e3,
            per_endpoint_us: took.as_secs_f64() * 1e6 / n.max(1) as f64,
        });
    }
    Ok((costs, memory))
}
