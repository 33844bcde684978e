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
pub mod events;
pub mod maps;

pub use counters::{COUNTER_SLOTS, Counter, CounterValue, DROP_BASE, DropReason, NetCounters};
pub use events::{DropEvent, MonitorState};
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
pub mod programs {
    /// TC, tcx ingress of each endpoint's host-side veth (= container egress).
    pub const ENDPOINT_INGRESS: &str = "endpoint_ingress";
    /// XDP on the underlay NIC: VXLAN decap into local endpoints.
    pub const UNDERLAY_XDP: &str = "underlay_xdp";
    /// TC, tcx ingress of the underlay NIC: the same decap in TC.
    pub const UNDERLAY_TC: &str = "underlay_tc";
}
