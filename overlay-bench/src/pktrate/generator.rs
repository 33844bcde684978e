//! The live-frames generator (`xdp_gen`) and the sinks that count what
//! arrives (`sink_tc`), driven from userspace.

use std::net::Ipv4Addr;

use aya::{
    Ebpf, EbpfLoader, TestRun as _,
    programs::{TestRunAttrs, TestRunOptions, Xdp},
};
use overlay_bench_ebpf::{
    GEN_FLOWS, GEN_PACE, GEN_PORT_BASE, GEN_STATE, GenPace, GenState, SINK_COUNT, SINK_TC, XDP_GEN,
};
use overlay_testkit::{
    NetNs,
    packet::{ETH_P_IP, Ipv4, eth, udp},
};

use crate::{BENCHKIT_OBJECT, BenchError};

/// The live-frames generator and the sinks.
pub(super) struct Generator {
    ebpf: Ebpf,
}

pub(super) fn tool<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> BenchError {
    move |e| BenchError::Tool(format!("{what}: {e}"))
}

impl Generator {
    pub(super) fn new(flows: u32) -> Result<Self, BenchError> {
        let mut ebpf = EbpfLoader::new()
            .override_global(GEN_FLOWS, &flows, true)
            .load(BENCHKIT_OBJECT)
            .map_err(|e| BenchError::Tool(format!("loading the generator: {e}")))?;
        let prog: &mut Xdp = ebpf
            .program_mut(XDP_GEN)
            .ok_or_else(|| BenchError::Tool("xdp_gen missing".into()))?
            .try_into()
            .map_err(|e| BenchError::Tool(format!("xdp_gen: {e}")))?;
        prog.load()
            .map_err(|e| BenchError::Tool(format!("loading xdp_gen: {e}")))?;
        let sink: &mut aya::programs::SchedClassifier = ebpf
            .program_mut(SINK_TC)
            .ok_or_else(|| BenchError::Tool("sink_tc missing".into()))?
            .try_into()
            .map_err(tool("sink_tc"))?;
        sink.load().map_err(tool("loading sink_tc"))?;
        Ok(Self { ebpf })
    }

    /// Attaches the sink at tcx ingress of `eth0` in `ns`; the link lives
    /// as long as the generator, or until [`Self::detach_sink`].
    pub(super) fn attach_sink(
        &mut self,
        ns: &NetNs,
    ) -> Result<aya::programs::tc::SchedClassifierLinkId, BenchError> {
        let ifindex = ns.ifindex("eth0")?;
        let sink = self.sink()?;
        ns.run(|| sink.attach(ifindex, aya::programs::TcAttachType::Ingress))?
            .map_err(tool("attaching sink_tc"))
    }

    /// Detaches a sink (the server's stack sees its traffic again).
    pub(super) fn detach_sink(
        &mut self,
        link: aya::programs::tc::SchedClassifierLinkId,
    ) -> Result<(), BenchError> {
        self.sink()?.detach(link).map_err(tool("detaching sink_tc"))
    }

    fn sink(&mut self) -> Result<&mut aya::programs::SchedClassifier, BenchError> {
        self.ebpf
            .program_mut(SINK_TC)
            .ok_or_else(|| BenchError::Tool("sink_tc missing".into()))?
            .try_into()
            .map_err(tool("sink_tc"))
    }

    /// The benchkit map `name`.
    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, BenchError> {
        self.ebpf
            .map(name)
            .ok_or_else(|| BenchError::Tool(format!("{name} missing")))
    }

    /// The benchkit map `name`, writable.
    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, BenchError> {
        self.ebpf
            .map_mut(name)
            .ok_or_else(|| BenchError::Tool(format!("{name} missing")))
    }

    /// Frames every sink has counted so far.
    pub(super) fn sunk(&self) -> Result<u64, BenchError> {
        let map: aya::maps::PerCpuArray<_, u64> =
            aya::maps::PerCpuArray::try_from(self.map(SINK_COUNT)?).map_err(tool("SINK_COUNT"))?;
        Ok(map
            .get(&0, 0)
            .map_err(tool("reading SINK_COUNT"))?
            .iter()
            .sum())
    }

    /// Sets the next run's pacing and zeroes the generator's progress.
    pub(super) fn pace(&mut self, pace: GenPace) -> Result<(), BenchError> {
        let mut map: aya::maps::Array<_, GenPace> =
            aya::maps::Array::try_from(self.map_mut(GEN_PACE)?).map_err(tool("GEN_PACE"))?;
        map.set(0, &pace, 0).map_err(tool("writing GEN_PACE"))?;
        let mut state: aya::maps::PerCpuArray<_, GenState> =
            aya::maps::PerCpuArray::try_from(self.map_mut(GEN_STATE)?)
                .map_err(tool("GEN_STATE"))?;
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| BenchError::Tool(format!("CPUs: {e}")))?;
        let zero =
            aya::maps::PerCpuValues::try_from(vec![GenState::default(); cpus.get() as usize])
                .map_err(tool("GEN_STATE values"))?;
        state.set(0, zero, 0).map_err(tool("zeroing GEN_STATE"))
    }

    /// The generator's progress in the last run, summed over CPUs (one CPU
    /// sends in practice; times are those of the CPU that sent).
    pub(super) fn progress(&self) -> Result<GenState, BenchError> {
        let state: aya::maps::PerCpuArray<_, GenState> =
            aya::maps::PerCpuArray::try_from(self.map(GEN_STATE)?).map_err(tool("GEN_STATE"))?;
        let values = state.get(&0, 0).map_err(tool("reading GEN_STATE"))?;
        let mut sum = GenState::default();
        for v in values.iter().filter(|v| v.sent > 0) {
            sum.sent += v.sent;
            sum.first_ns = if sum.first_ns == 0 {
                v.first_ns
            } else {
                sum.first_ns.min(v.first_ns)
            };
            sum.last_ns = sum.last_ns.max(v.last_ns);
        }
        Ok(sum)
    }

    /// Runs the generator for `iterations` frames of `frame` out of
    /// `ifindex` (calling thread's namespace); the pacing decides which are
    /// transmitted.
    pub(super) fn send(
        &self,
        ifindex: u32,
        frame: &[u8],
        iterations: u32,
    ) -> Result<(), BenchError> {
        let prog: &Xdp = self
            .ebpf
            .program(XDP_GEN)
            .ok_or_else(|| BenchError::Tool("xdp_gen missing".into()))?
            .try_into()
            .map_err(|e| BenchError::Tool(format!("xdp_gen: {e}")))?;
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...;
        // the kernel wants data_end to be the frame's length.
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat: iterations,
            attrs: TestRunAttrs::new().xdp_live_frames(64),
            ..TestRunOptions::default()
        })
        .map_err(|e| {
            BenchError::Tool(format!(
                "live-frames run: {e}: {:?}",
                std::error::Error::source(&e)
            ))
        })?;
        Ok(())
    }
}

/// An Ethernet + IPv4 + UDP frame of `size` bytes.
pub(super) fn udp_frame(
    size: usize,
    dst: [u8; 6],
    src: [u8; 6],
    from: Ipv4Addr,
    to: Ipv4Addr,
) -> Vec<u8> {
    let payload = vec![0u8; size.saturating_sub(14 + 20 + 8)];
    let mut f = eth(dst, src, ETH_P_IP);
    f.extend(Ipv4::new(from, to, 17).build(&udp(GEN_PORT_BASE, 9, &payload)));
    f
}

/// Busy jiffies of all CPUs (user, nice, system, irq, softirq, steal).
pub(super) fn cpu_busy() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|v| v.parse::<u64>().ok())
                .enumerate()
                .filter(|(i, _)| [0, 1, 2, 5, 6, 7].contains(i))
                .map(|(_, v)| v)
                .sum()
        })
        .unwrap_or(0)
}
