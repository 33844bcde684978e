//! Limit (a): the least a forwarding program can do on the very veths the
//! dataplane uses. On a lab of bare hosts with one container each, a
//! program at tcx ingress of the container's host-side veth redirects
//! container -> NIC (out), and one on the underlay NIC redirects NIC ->
//! container: at tcx ingress into the container's namespace (the limit of
//! TC decap), or at XDP out of its host-side veth (the limit of XDP
//! decap, paying what the dataplane's XDP decap pays to get there). No
//! lookup by address, no encapsulation.

use std::time::Duration;

use aya::{
    Ebpf,
    maps::HashMap,
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode},
};
use overlay_bench_ebpf::{REDIRECT, REDIRECT_PEER, REDIRECT_TC, REDIRECT_XDP, RedirectTarget};
use overlay_testkit::lab::Lab;

use crate::{BENCHKIT_OBJECT, BenchError};

fn harness(what: &str) -> impl FnOnce(&dyn std::fmt::Display) -> BenchError + '_ {
    move |e| BenchError::Tool(format!("{what}: {e}"))
}

/// Where the NIC -> container redirect runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicHook {
    /// tcx ingress, `bpf_redirect_peer` into the container.
    Tc,
    /// XDP (native on veth), `bpf_redirect` out of the host-side veth.
    Xdp,
}

/// The redirect programs of every host of a lab (their links go with them).
pub struct Redirects {
    hosts: Vec<Ebpf>,
    hook: NicHook,
}

/// Attaches `redirect_xdp` to `ifindex` (calling thread's namespace), in
/// native mode as the dataplane's XDP decap on a veth.
fn attach_xdp(ebpf: &mut Ebpf, ifindex: u32) -> Result<(), BenchError> {
    let prog: &mut Xdp = ebpf
        .program_mut(REDIRECT_XDP)
        .ok_or_else(|| BenchError::Tool("redirect_xdp missing".into()))?
        .try_into()
        .map_err(|e| harness("redirect_xdp")(&e))?;
    if prog.fd().is_err() {
        prog.load()
            .map_err(|e| harness("loading redirect_xdp")(&e))?;
    }
    prog.attach(ifindex, XdpMode::Driver)
        .map_err(|e| harness("attaching redirect_xdp")(&e))?;
    Ok(())
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
    /// Wires every host of `lab` (bare hosts, one container each), the
    /// NIC's redirect at `hook`.
    pub fn attach(lab: &Lab, hook: NicHook) -> Result<Self, BenchError> {
        let mut hosts = Vec::new();
        for (i, h) in lab.hosts.iter().enumerate() {
            let mut ebpf = Ebpf::load(BENCHKIT_OBJECT).map_err(BenchError::Load)?;
            let nic = h.ns.ifindex("eth0")?;
            match hook {
                NicHook::Tc => h.ns.run(|| attach(&mut ebpf, nic))??,
                NicHook::Xdp => h.ns.run(|| attach_xdp(&mut ebpf, nic))??,
            }
            for c in lab.containers.iter().filter(|c| c.host == i) {
                let veth = c.attachments[0].host_ifindex;
                h.ns.run(|| attach(&mut ebpf, veth))??;
                set(&mut ebpf, veth, nic, 0)?;
                let into = match hook {
                    NicHook::Tc => REDIRECT_PEER,
                    NicHook::Xdp => 0,
                };
                set(&mut ebpf, nic, veth, into)?;
            }
            hosts.push(ebpf);
        }
        Ok(Self { hosts, hook })
    }

    /// (program, runs, time) of each host's redirect programs.
    pub fn run_stats(&self) -> Result<Vec<(String, u64, Duration)>, BenchError> {
        let names: &[&str] = match self.hook {
            NicHook::Tc => &[REDIRECT_TC],
            NicHook::Xdp => &[REDIRECT_TC, REDIRECT_XDP],
        };
        let mut stats = Vec::new();
        for (i, ebpf) in self.hosts.iter().enumerate() {
            for name in names {
                let info = ebpf
                    .program(name)
                    .ok_or_else(|| BenchError::Tool(format!("{name} missing")))?
                    .info()
                    .map_err(|e| harness("redirect statistics")(&e))?;
                stats.push((
                    format!("h{}/{name}", i + 1),
                    info.run_count(),
                    info.run_time(),
                ));
            }
        }
        Ok(stats)
    }
}
