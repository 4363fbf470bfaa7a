//! `cargo xtask` — ttmlat developer tasks. See `cargo xtask --help`.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "ttmlat developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Set up this (Debian bookworm, root) host: apt packages, rust-src,
    /// bpf-linker, lab kernels, headers, blocking TTM module (runs
    /// scripts/setup.sh; idempotent).
    Setup(commands::setup::SetupArgs),
    /// Second half of set-up, run by scripts/setup.sh once xtask builds:
    /// resolve/fetch/unpack kernels, write target/lab/kernels.json, ...
    #[command(hide = true)]
    PrepareLab(commands::setup::PrepareLabArgs),
    /// Boot a lab kernel in QEMU and run a command in it as root.
    Lab(commands::lab::LabArgs),
    /// Run ttmlat in the lab against the built-in contention workload (the main job).
    Demo(commands::demo::DemoArgs),
    /// The same `ttmlat bench` on stock and blocking 6.1 and 6.12, stock 6.12-rt and newest
    /// (interleaved boots), merged and compared into target/ab/compare.{txt,json,svg}.
    Ab(commands::ab::AbArgs),
    /// What observing costs: TTM-fault, anonymous-fault and mmap/munmap throughput in the lab,
    /// unobserved vs under ttmlat vs under the equivalent bpftrace script (interleaved).
    BenchOverhead(commands::bench_overhead::BenchOverheadArgs),
    /// An exporter's figures: the highest TTM fault rate of the lab and what was lost, time to
    /// the first `live` interval, `serve`'s RSS over minutes of stress (printed, not gated).
    BenchServe(commands::bench_serve::BenchServeArgs),
    /// Everything CI runs: fmt, clippy, unit tests, release build, lab tests.
    Test(commands::test::TestArgs),
    /// Release bundle in target/dist/: binary, shell completions, man pages, systemd unit,
    /// Grafana dashboard.
    Dist(commands::dist::DistArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Setup(args) => commands::setup::setup(&args),
        Command::PrepareLab(args) => commands::setup::prepare_lab(&args),
        Command::Lab(args) => commands::lab::lab(&args),
        Command::Demo(args) => commands::demo::demo(&args),
        Command::Test(args) => commands::test::test(&args),
        Command::Dist(args) => commands::dist::run(&args),
        Command::Ab(args) => commands::ab::ab(&args),
        Command::BenchOverhead(args) => commands::bench_overhead::bench_overhead(&args),
        Command::BenchServe(args) => commands::bench_serve::bench_serve(&args),
    }
}
