//! Builds the eBPF object with the pinned nightly and leaves it in OUT_DIR,
//! where `src/dataplane.rs` embeds it.

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// Must match `EBPF_TOOLCHAIN` in xtask (setup installs it).
const EBPF_TOOLCHAIN: &str = "nightly-2026-06-20";

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "overlay-ebpf")
        .ok_or_else(|| anyhow!("overlay-ebpf package not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("overlay-ebpf manifest has no parent"))?
        .to_string();
    aya_build::build_ebpf(
        [Package {
            name: "overlay-ebpf",
            root_dir: &root_dir,
            ..Default::default()
        }],
        Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
