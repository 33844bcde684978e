//! The overlay dataplane's kernel programs.
//!
//! Needs kernel 6.6+ (tcx attach; `bpf_redirect_peer`, `bpf_redirect_neigh`
//! and `bpf_fib_lookup` are older).
//!
//! Attach points, one file each:
//! - [`endpoint`]: tcx ingress of every endpoint's host-side veth, i.e. what a
//!   container sends. ARP answers, anti-spoofing, isolation, same-host
//!   delivery, VXLAN encapsulation, gateway path.
//! - [`underlay`]: XDP (and, as an alternative, tcx ingress) of the underlay
//!   NIC. VXLAN decapsulation into local endpoints; everything else passes.
//!
//! Helpers by concern: [`parse`] (bounds-checked header access), [`arp`],
//! [`encap`], [`decap`], [`icmp`] (path MTU: errors to containers, learning
//! from the underlay), [`dns`] (answers for container names), [`guard`] (what containers may not reach), [`csum`],
//! [`counters`] and [`events`] (drop reports), [`slots`] (route and peer
//! lookups); every map is in [`maps`].
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod arp;
#[cfg(target_arch = "bpf")]
mod counters;
#[cfg(target_arch = "bpf")]
mod csum;
#[cfg(target_arch = "bpf")]
mod decap;
#[cfg(target_arch = "bpf")]
mod dns;
#[cfg(target_arch = "bpf")]
mod encap;
#[cfg(target_arch = "bpf")]
mod endpoint;
#[cfg(target_arch = "bpf")]
mod events;
#[cfg(target_arch = "bpf")]
mod guard;
#[cfg(target_arch = "bpf")]
mod icmp;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod slots;
#[cfg(target_arch = "bpf")]
mod underlay;

/// GPL-compatible: `bpf_fib_lookup`, `bpf_redirect_neigh` and
/// `bpf_redirect_peer` are GPL-only helpers.
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier rejects any program in which a panic is reachable.
    unsafe { core::hint::unreachable_unchecked() }
}

/// Host builds (`cargo check --workspace`) see an empty binary.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
