//! Types and constants shared by the kernel programs (`overlay-ebpf`) and
//! userspace (`overlay-user`).
//!
//! Every map key and value is `#[repr(C)]` with explicit padding so both sides
//! agree on the layout byte for byte; sizes are asserted at compile time.
//! Addresses are kept in network byte order exactly as they appear on the
//! wire (the kernel side compares them with packet bytes without swapping);
//! VNIs, ports and indices are host byte order.
#![no_std]

pub mod counters;
pub mod maps;

pub use counters::{COUNTER_SLOTS, Counter, CounterValue, DROP_BASE, DropReason, NetCounters};
pub use maps::*;

/// IANA VXLAN UDP port (RFC 7348 section 5).
pub const VXLAN_PORT: u16 = 4789;
/// VXLAN header flag: the VNI field is valid (RFC 7348 "I" flag).
pub const VXLAN_FLAG_I: u8 = 0x08;
/// Largest VNI that fits the 24-bit field.
pub const VNI_MAX: u32 = 0x00ff_ffff;
/// Bytes VXLAN encapsulation adds in front of the inner Ethernet frame:
/// outer Ethernet (14) + IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet
/// (14) minus the Ethernet header the frame already had.
pub const VXLAN_ENCAP_LEN: u32 = 50;
/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// The underlay MTU minus `VXLAN_ENCAP_LEN`: the container MTU that keeps an
/// encapsulated frame inside a 1500-byte underlay.
pub const DEFAULT_OVERLAY_MTU: u32 = 1450;

/// Program names as they appear in the eBPF object (the function names).
/// Programs of the benchmark harness object (`overlay-ebpf/src/benchkit.rs`).
pub mod benchkit {
    /// XDP packet generator, run with BPF_PROG_RUN in live-frames mode.
    pub const XDP_GEN: &str = "xdp_gen";
    /// TC, limit (a): redirect by ingress device, nothing else.
    pub const REDIRECT_TC: &str = "redirect_tc";
    /// TC at the far container's ingress: count and drop.
    pub const SINK_TC: &str = "sink_tc";
    /// Map: 0 -> per-CPU frames counted by the sink.
    pub const SINK_COUNT: &str = "SINK_COUNT";
    /// Global (read-only data): how many UDP source ports the generator
    /// cycles through.
    pub const GEN_FLOWS: &str = "GEN_FLOWS";
    /// Map: ingress ifindex -> [`super::RedirectTarget`].
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
}

pub mod programs {
    /// TC, tcx ingress of each endpoint's host-side veth (= container egress).
    pub const ENDPOINT_INGRESS: &str = "endpoint_ingress";
    /// XDP on the underlay NIC: VXLAN decap into local endpoints.
    pub const UNDERLAY_XDP: &str = "underlay_xdp";
    /// TC, tcx ingress of the underlay NIC: the same decap in TC.
    pub const UNDERLAY_TC: &str = "underlay_tc";
}
