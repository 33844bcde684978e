//! Limit (a): the least a forwarding program can do on the very veths the
//! dataplane uses. On a lab of bare hosts with one container each, a
//! program at tcx ingress of the container's host-side veth and of the
//! underlay NIC redirects by ingress device: container -> NIC (out), NIC ->
//! container (into its namespace). No lookup by address, no encapsulation.

use std::time::Duration;

use aya::{
    Ebpf,
    maps::HashMap,
    programs::{SchedClassifier, TcAttachType},
};
use overlay_bench_ebpf::{REDIRECT, REDIRECT_PEER, REDIRECT_TC, RedirectTarget};
use overlay_testkit::lab::Lab;

use crate::{BENCHKIT_OBJECT, BenchError};

fn harness(what: &str) -> impl FnOnce(&dyn std::fmt::Display) -> BenchError + '_ {
    move |e| BenchError::Tool(format!("{what}: {e}"))
}

/// The redirect programs of every host of a lab (their links go with them).
pub struct Redirects {
    hosts: Vec<Ebpf>,
}

/// Attaches the redirect program at tcx ingress of `ifindex` (calling
/// thread's namespace).
fn attach(ebpf: &mut Ebpf, ifindex: u32) -> Result<(), BenchError> {
    let prog: &mut SchedClassifier = ebpf
        .program_mut(REDIRECT_TC)
        .ok_or_else(|| BenchError::Tool("redirect_tc missing".into()))?
        .try_into()
        .map_err(|e| harness("redirect_tc")(&e))?;
    if prog.fd().is_err() {
        prog.load()
            .map_err(|e| harness("loading redirect_tc")(&e))?;
    }
    prog.attach(ifindex, TcAttachType::Ingress)
        .map_err(|e| harness("attaching redirect_tc")(&e))?;
    Ok(())
}

/// Frames arriving on `from` go to `to` (`flags`: `REDIRECT_PEER` or 0).
fn set(ebpf: &mut Ebpf, from: u32, to: u32, flags: u32) -> Result<(), BenchError> {
    let mut map: HashMap<_, u32, RedirectTarget> = HashMap::try_from(
        ebpf.map_mut(REDIRECT)
            .ok_or_else(|| BenchError::Tool("REDIRECT map missing".into()))?,
    )
    .map_err(|e| harness("REDIRECT map")(&e))?;
    map.insert(&from, &RedirectTarget { ifindex: to, flags }, 0)
        .map_err(|e| harness("REDIRECT map")(&e))
}

impl Redirects {
    /// Wires every host of `lab` (bare hosts, one container each).
    pub fn attach(lab: &Lab) -> Result<Self, BenchError> {
        let mut hosts = Vec::new();
        for (i, h) in lab.hosts.iter().enumerate() {
            let mut ebpf = Ebpf::load(BENCHKIT_OBJECT).map_err(BenchError::Load)?;
            let nic = h.ns.ifindex("eth0")?;
            h.ns.run(|| attach(&mut ebpf, nic))??;
            for c in lab.containers.iter().filter(|c| c.host == i) {
                let veth = c.attachments[0].host_ifindex;
                h.ns.run(|| attach(&mut ebpf, veth))??;
                set(&mut ebpf, veth, nic, 0)?;
                set(&mut ebpf, nic, veth, REDIRECT_PEER)?;
            }
            hosts.push(ebpf);
        }
        Ok(Self { hosts })
    }

    /// (program, runs, time) of each host's redirect program.
    pub fn run_stats(&self) -> Result<Vec<(String, u64, Duration)>, BenchError> {
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, ebpf)| {
                let info = ebpf
                    .program(REDIRECT_TC)
                    .ok_or_else(|| BenchError::Tool("redirect_tc missing".into()))?
                    .info()
                    .map_err(|e| harness("redirect_tc statistics")(&e))?;
                Ok((
                    format!("h{}/{REDIRECT_TC}", i + 1),
                    info.run_count(),
                    info.run_time(),
                ))
            })
            .collect()
    }
}
