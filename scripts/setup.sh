#!/usr/bin/env bash
# Set up a Debian bookworm host (as root) for ttmlat: build tools and the
# QEMU kernel lab. Idempotent; everything is cached under target/, so a second
# run takes seconds and needs no network.
#
# usage: scripts/setup.sh [--refresh]
#   --refresh   run `apt-get update` first (picks up newer Debian kernel ABIs;
#               without it the local package lists are used, and refreshed
#               only when something cannot be found)
#
# Steps:
#   1. apt packages: qemu-system-x86 busybox-static kmod cpio xz-utils zstd prometheus curl openssl
#      bpftrace
#   2. rust nightly + rust-src (for building the eBPF crate)
#   3. bpf-linker, built against the nightly's own LLVM, in target/tools/bin
#   4. `cargo xtask prepare-lab`: resolve, download and unpack the lab's Debian
#      kernels (target/lab/kernels/<release>/): "6.1" and "6.12" from the host's
#      lists, "6.12-rt" (trixie) and "newest" (sid) through private package
#      lists in target/lab/apt/<suite>/ (the machine's apt sources are not
#      touched); write target/lab/kernels.json, install linux-headers-<6.1
#      release>, build the blocking ttm.ko (lab/ttm-blocking/build.sh) and the
#      lab initramfs images.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=$REPO/target/tools
REFRESH=
for arg in "$@"; do
    case $arg in
        --refresh) REFRESH=--refresh ;;
        -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

log() { printf 'setup: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
T0=$SECONDS
export DEBIAN_FRONTEND=noninteractive

[[ $(id -u) -eq 0 ]] || die "run as root (apt-get, depmod, qemu shares)"
command -v rustup >/dev/null || die "rustup not found; install rustup (stable + nightly) first"

# 1. apt packages ----------------------------------------------------------
# prometheus + curl: the lab's Prometheus scrape test (promtool, a real server); openssl:
# its HTTPS variant's certificates (perl, essential, makes the bcrypt hash).
# bpftrace: the baseline of `cargo xtask bench-overhead` (runs in the guest, never here).
APT_PACKAGES=(qemu-system-x86 busybox-static kmod cpio xz-utils zstd prometheus curl bpftrace openssl)
installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }
missing=()
for p in "${APT_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    log "apt packages present"
fi
if [[ -n $REFRESH ]]; then
    log "apt-get update (--refresh)"
    apt-get update -q
fi

# 2. rust nightly + rust-src -----------------------------------------------
if ! rustup toolchain list | grep -q '^nightly-'; then
    log "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src'; then
    log "adding rust-src to nightly"
    rustup component add rust-src --toolchain nightly
fi

# 3. bpf-linker against the nightly's LLVM ---------------------------------
# Rebuilt when it does not run or the nightly's libLLVM changed (stamp file).
SYSROOT=$(rustc +nightly --print sysroot)
BPF_LINKER=$TOOLS/bin/bpf-linker
LLVM_STAMP=$TOOLS/bpf-linker.llvm
shopt -s nullglob
libs=("$SYSROOT"/lib/libLLVM.so.*)
shopt -u nullglob
((${#libs[@]} == 1)) || die "expected one $SYSROOT/lib/libLLVM.so.*, found ${#libs[@]}"
LIBLLVM=${libs[0]}
if "$BPF_LINKER" --version >/dev/null 2>&1 \
    && [[ $(cat "$LLVM_STAMP" 2>/dev/null) == "$(basename "$LIBLLVM")" ]]; then
    log "bpf-linker present: $("$BPF_LINKER" --version) ($(basename "$LIBLLVM"))"
else
    LLVM_MAJOR=$(rustc +nightly -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
    [[ -n $LLVM_MAJOR ]] || die "cannot read the nightly's LLVM version"
    PREFIX=$TOOLS/llvm-prefix
    rm -rf "$PREFIX"
    mkdir -p "$PREFIX/lib"
    ln -s "$LIBLLVM" "$PREFIX/lib/libLLVM.so"
    log "building bpf-linker (llvm-$LLVM_MAJOR, $(basename "$LIBLLVM")); takes a few minutes"
    # The rpath lets bpf-linker find libLLVM outside rustup's environment too;
    # no debug info keeps the build (and link) shorter. Built from / so that no
    # rust-toolchain file of this repository applies.
    (cd / && LLVM_PREFIX=$PREFIX \
        RUSTFLAGS="-C link-arg=-Wl,-rpath,$SYSROOT/lib" \
        CARGO_PROFILE_RELEASE_DEBUG=false \
        cargo +stable install bpf-linker --locked --force \
            --no-default-features --features "llvm-$LLVM_MAJOR" --root "$TOOLS")
    "$BPF_LINKER" --version >/dev/null || die "the freshly built bpf-linker does not run"
    basename "$LIBLLVM" > "$LLVM_STAMP"
    log "built $BPF_LINKER"
fi

# 4. kernels, manifest, headers, blocking ttm.ko, initramfs ----------------
cd "$REPO"
# xtask reads what ttmlat writes through probe-user's types, so building it builds the eBPF
# object too: bpf-linker must be on PATH from here on.
export PATH=$TOOLS/bin:$PATH
cargo run --quiet --package xtask -- prepare-lab $REFRESH

log "done in $((SECONDS - T0)) s (bpf-linker: $BPF_LINKER)"
