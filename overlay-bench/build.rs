//! Builds the benchmark harness programs (`overlay-bench-ebpf`: generator,
//! redirect, sink, no-ops) with the pinned nightly into OUT_DIR, where
//! `src/lib.rs` embeds them.

use aya_build::{Package, Toolchain};

/// Must match `EBPF_TOOLCHAIN` in xtask (setup installs it).
const EBPF_TOOLCHAIN: &str = "nightly-2026-06-20";

fn main() -> anyhow::Result<()> {
    let harness = Package {
        name: "overlay-bench-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../overlay-bench-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([harness], Toolchain::Custom(EBPF_TOOLCHAIN))
}
