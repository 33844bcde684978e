use which::which;

/// The eBPF binary is linked by `bpf-linker`, an undeclared dependency: rebuild
/// when the linker on PATH changes (for example after `cargo xtask setup`).
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo::rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo::warning=bpf-linker not found ({err}); run `./x setup`"),
    }
}
