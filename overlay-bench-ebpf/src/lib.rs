//! Layouts and names the benchmark harness programs (`benchkit`, `noop`)
//! share with the benchmarks in `overlay-bench`. The dataplane itself
//! (`overlay-common`, `overlay-ebpf`) knows nothing of them.
#![no_std]

/// Program names as they appear in the `benchkit` object.
/// XDP packet generator, run with BPF_PROG_RUN in live-frames mode.
pub const XDP_GEN: &str = "xdp_gen";
/// TC, limit (a): redirect by ingress device, nothing else.
pub const REDIRECT_TC: &str = "redirect_tc";
/// Limit (a) at the underlay NIC's XDP hook.
pub const REDIRECT_XDP: &str = "redirect_xdp";
/// TC at the far container's ingress: count and drop.
pub const SINK_TC: &str = "sink_tc";
/// Map: 0 -> per-CPU frames counted by the sink.
pub const SINK_COUNT: &str = "SINK_COUNT";
/// Global (read-only data): how many UDP source ports the generator
/// cycles through.
pub const GEN_FLOWS: &str = "GEN_FLOWS";
/// Map: ingress ifindex -> [`RedirectTarget`].
pub const REDIRECT: &str = "REDIRECT";
/// Map: 0 -> [`GenPace`], the current run's pacing (userspace writes it).
pub const GEN_PACE: &str = "GEN_PACE";
/// Map: 0 -> per-CPU [`GenState`] (userspace zeroes it before a run).
pub const GEN_STATE: &str = "GEN_STATE";

/// How the generator paces one run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenPace {
    /// Nanoseconds between transmitted frames; 0 sends every frame
    /// (flat out).
    pub interval_ns: u64,
    /// Frames to transmit; every later frame is dropped unsent, so a run
    /// can be given more iterations than it needs.
    pub budget: u64,
}
const _: () = assert!(core::mem::size_of::<GenPace>() == 16);

/// The generator's per-CPU progress within a run.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenState {
    /// `bpf_ktime_get_ns` time the next frame is due (0: not started).
    pub next_ns: u64,
    /// Frames transmitted (XDP_TX) so far.
    pub sent: u64,
    /// `bpf_ktime_get_ns` time of the first transmitted frame (paced runs).
    pub first_ns: u64,
    /// `bpf_ktime_get_ns` time of the last transmitted frame (paced runs).
    pub last_ns: u64,
}
const _: () = assert!(core::mem::size_of::<GenState>() == 32);

/// Byte offset of the UDP source port the generator rewrites (Ethernet
/// and an option-less IPv4 header in front of it).
pub const GEN_PORT_OFFSET: usize = 14 + 20;
/// First source port; frames use `GEN_PORT_BASE .. GEN_PORT_BASE + flows`.
pub const GEN_PORT_BASE: u16 = 1024;

/// Where the minimal redirect program (limit (a)) sends a frame that
/// arrived on the key's device.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedirectTarget {
    /// Target device (host order).
    pub ifindex: u32,
    /// `REDIRECT_PEER`: into the target veth's peer (`bpf_redirect_peer`);
    /// otherwise out of the target (`bpf_redirect`).
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<RedirectTarget>() == 8);
/// [`RedirectTarget::flags`]: redirect into the peer's namespace.
pub const REDIRECT_PEER: u32 = 1;

#[cfg(feature = "user")]
mod user {
    // SAFETY: #[repr(C)], no padding (size asserts above), every bit
    // pattern valid.
    unsafe impl aya::Pod for super::GenPace {}
    unsafe impl aya::Pod for super::GenState {}
    unsafe impl aya::Pod for super::RedirectTarget {}
}
