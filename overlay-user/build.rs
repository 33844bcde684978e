//! Builds the dataplane's eBPF object (`overlay-ebpf`) with the pinned
//! nightly and leaves it in OUT_DIR, where `src/dataplane/mod.rs` embeds it.

use aya_build::{Package, Toolchain};

/// Must match `EBPF_TOOLCHAIN` in xtask (setup installs it).
const EBPF_TOOLCHAIN: &str = "nightly-2026-06-20";

fn main() -> anyhow::Result<()> {
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../overlay-ebpf");
    let package = Package {
        name: "overlay-ebpf",
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::Custom(EBPF_TOOLCHAIN))
}
