//! `cargo xtask`: set-up, build, run, test and lint for the overlay
//! dataplane. Every command does the set-up it still needs, idempotently.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

/// Nightly that builds the eBPF crate: rustc 1.98 with LLVM 22, which the
/// bpf-linker below can read (see shared/PLATFORM.md). Keep in sync with
/// overlay-user/build.rs and overlay-bench/build.rs.
const EBPF_TOOLCHAIN: &str = "nightly-2026-06-20";
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// Debian packages: LLVM 22 for bpf-linker, and the tools the tests drive.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libclang-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "libxml2-dev",
    "iproute2",
    "iputils-ping",
    "procps",
    "tcpdump",
    "tshark",
    "iperf3",
    "ethtool",
    "nftables",
    // etcd-client's build script compiles etcd's protobuf API with protoc.
    "protobuf-compiler",
    "libprotobuf-dev",
    // The cluster store's tests run a real etcd, one of them over TLS with
    // certificates made by the openssl CLI.
    "etcd-server",
    "openssl",
    // A Unix-socket client that is not root, for the daemon's peer check.
    "socat",
    // The metrics test scrapes the daemon with a real Prometheus server.
    "prometheus",
    // The Docker plugin's tests run a real Docker Engine (and its client),
    // with an image built offline from a static busybox; nsenter (in
    // util-linux) starts dockerd in a simulated host's namespace.
    "docker.io",
    "busybox-static",
    "util-linux",
    // The container resolver's tests forward to a real upstream resolver.
    "dnsmasq-base",
];

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install apt packages, the eBPF nightly and bpf-linker (idempotent).
    Setup,
    /// Build the eBPF objects and the `overlay`, `overlay-bench` and
    /// `overlay-demo` binaries (release).
    Build,
    /// Build, then run `overlay ARGS` as root.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The main job: the two-host demo.
    Demo,
    /// Benchmarks (`overlay-bench`): BPF_PROG_RUN cost per program path and
    /// traffic per forwarding path; writes BENCHMARKS.md unless --quick.
    Bench {
        /// Fewer samples: a smoke run.
        #[arg(long)]
        quick: bool,
    },
    /// Set up, lint, and run every test (unit, BPF_PROG_RUN, namespaces).
    Test,
    /// rustfmt (pinned nightly, for grouped imports) and clippy -D warnings.
    Lint,
    /// Format the tree.
    Fmt,
    /// Remove lab namespaces and pins left by an interrupted run.
    Clean,
}

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has a parent dir")?
        .to_path_buf();
    env::set_current_dir(&root)?;
    match Cli::parse().command {
        Cmd::Setup => setup(),
        Cmd::Build => {
            setup()?;
            build()
        }
        Cmd::Run { args } => {
            setup()?;
            build()?;
            require_root()?;
            run(Command::new(root.join("target/release/overlay")).args(args))
        }
        Cmd::Demo => {
            setup()?;
            build()?;
            require_root()?;
            run(&mut Command::new(root.join("target/release/overlay-demo")))
        }
        Cmd::Bench { quick } => {
            setup()?;
            build()?;
            require_root()?;
            let mut cmd = Command::new(root.join("target/release/overlay-bench"));
            if quick {
                cmd.arg("--quick");
            } else {
                std::fs::create_dir_all(root.join("target/bench"))?;
                cmd.args([
                    "--json",
                    "target/bench/results.json",
                    "--markdown",
                    "BENCHMARKS.md",
                ])
                .args(["--svg", "bench_chart.svg"]);
            }
            run(&mut cmd)
        }
        Cmd::Test => {
            setup()?;
            require_root()?;
            lint()?;
            clean()?;
            test_with_summary()
        }
        Cmd::Lint => {
            setup()?;
            lint()
        }
        Cmd::Fmt => {
            setup()?;
            run(Command::new("cargo").args([&format!("+{EBPF_TOOLCHAIN}"), "fmt", "--all"]))
        }
        Cmd::Clean => clean(),
    }
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: {cmd:?}");
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// cargo of the pinned userspace toolchain (rust-toolchain.toml).
fn cargo() -> Command {
    Command::new("cargo")
}

fn require_root() -> anyhow::Result<()> {
    let out = Command::new("id").arg("-u").output().context("id -u")?;
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        bail!("needs root: it loads eBPF programs and builds network namespaces");
    }
    Ok(())
}

fn setup() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if !missing.is_empty() {
        require_root()?;
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing))?;
    }
    let have_nightly = succeeds(Command::new("rustup").args([
        "run",
        EBPF_TOOLCHAIN,
        "rustc",
        "--print",
        "sysroot",
    ])) && sysroot_has_rust_src()?;
    if !have_nightly {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            EBPF_TOOLCHAIN,
            "--profile",
            "minimal",
            "-c",
            "rust-src",
            "-c",
            "rustfmt",
            "-c",
            "clippy",
        ]))?;
    }
    let linker_ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION));
    if !linker_ok {
        run(cargo()
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .args([
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
            ])
            .args(["--no-default-features", "--features", "llvm-22"]))?;
    }
    Ok(())
}

fn sysroot_has_rust_src() -> anyhow::Result<bool> {
    let out = Command::new("rustup")
        .args(["run", EBPF_TOOLCHAIN, "rustc", "--print", "sysroot"])
        .output()
        .context("rustc --print sysroot")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(sysroot.join("lib/rustlib/src/rust/library/core").is_dir()
        && sysroot.join("bin/rustfmt").exists()
        && sysroot.join("bin/cargo-clippy").exists())
}

fn build() -> anyhow::Result<()> {
    run(cargo().args([
        "build",
        "--release",
        "--package",
        "overlay-user",
        "--package",
        "overlay-bench",
    ]))
}

fn lint() -> anyhow::Result<()> {
    run(Command::new("cargo").args([&format!("+{EBPF_TOOLCHAIN}"), "fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--exclude",
        "overlay-ebpf",
        "--exclude",
        "overlay-bench-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // The kernel crates, for the target they are built for.
    for dir in ["overlay-ebpf", "overlay-bench-ebpf"] {
        run(Command::new("cargo").current_dir(dir).args([
            &format!("+{EBPF_TOOLCHAIN}"),
            "clippy",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    Ok(())
}

/// Lab namespaces are named `ovl<pid><n>-*` and pins `/sys/fs/bpf/ovl*`;
/// a killed test cannot run its destructors, so sweep before testing.
fn clean() -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .context("ip netns list")?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if name.starts_with("ovl") {
            run(Command::new("ip").args(["netns", "del", name]))?;
        }
    }
    if let Ok(entries) = std::fs::read_dir("/sys/fs/bpf") {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with("ovl") {
                std::fs::remove_dir_all(entry.path())
                    .with_context(|| format!("removing {}", entry.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Runs the workspace tests, echoing cargo's output, and ends with one
/// total line (`tests: N passed, N failed, N skipped`): cargo's own last
/// line belongs to whichever test binary ran last, often an empty doc-test.
fn test_with_summary() -> anyhow::Result<()> {
    use std::io::{BufRead as _, BufReader};

    let mut cmd = cargo();
    cmd.args([
        "test",
        "--workspace",
        "--exclude",
        "overlay-ebpf",
        "--exclude",
        "overlay-bench-ebpf",
    ])
    .stdout(std::process::Stdio::piped());
    eprintln!("xtask: {cmd:?}");
    let mut child = cmd.spawn().context("spawning cargo test")?;
    let stdout = child.stdout.take().context("cargo test stdout")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let count = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|part| {
                        part.trim()
                            .strip_suffix(word)?
                            .trim()
                            .rsplit(' ')
                            .next()?
                            .parse()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            passed += count("passed");
            failed += count("failed");
            ignored += count("ignored");
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("cargo test failed: {status}");
    }
    if passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}
