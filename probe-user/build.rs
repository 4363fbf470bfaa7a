//! Builds the eBPF object (probe-ebpf, nightly + rust-src + bpf-linker) and leaves it in
//! OUT_DIR for `include_bytes_aligned!`. Set AYA_BUILD_SKIP=1 to skip (clippy on machines
//! without the eBPF toolchain; the binary then refuses to trace).
fn main() -> anyhow::Result<()> {
    let package = aya_build::Package {
        name: "probe-ebpf",
        root_dir: "../probe-ebpf",
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
