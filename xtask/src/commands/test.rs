//! `cargo xtask test`: everything CI runs, in order, failing fast:
//! formatting, clippy, host unit tests, the release build of ttmlat, then the lab tests that
//! boot Debian's kernels and run the real binary against real workloads.

use std::process::{Command, ExitCode};

use clap::Args;
use xtask::lab_dirs::repo_root;

#[derive(Args)]
pub struct TestArgs {
    /// Skip the QEMU lab tests (host checks only).
    #[arg(long)]
    no_lab: bool,
}

fn step(name: &str, program: &str, args: &[&str]) -> Result<(), String> {
    eprintln!("== {name}: {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .current_dir(repo_root())
        .status()
        .map_err(|e| format!("{name}: cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{name} failed ({status})"))
    }
}

pub fn test(args: &TestArgs) -> ExitCode {
    let started = std::time::Instant::now();
    let mut steps: Vec<(&str, &str, Vec<&str>)> = vec![
        ("format", "cargo", vec!["fmt", "--all", "--", "--check"]),
        // Default members: xtask, probe-common, probe-user (probe-ebpf only builds for BPF).
        (
            "clippy",
            "cargo",
            vec!["clippy", "--all-targets", "--", "-D", "warnings"],
        ),
        (
            "clippy (eBPF, nightly)",
            "cargo",
            vec![
                "+nightly",
                "clippy",
                "-p",
                "probe-ebpf",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--release",
                "--",
                "-D",
                "warnings",
            ],
        ),
        ("host unit tests", "cargo", vec!["test"]),
        (
            "release build",
            "cargo",
            vec!["build", "--release", "-p", "probe-user"],
        ),
    ];
    if !args.no_lab {
        steps.push((
            "lab tests",
            "cargo",
            vec![
                "test",
                "-p",
                "xtask",
                "--test",
                "lab_smoke",
                "--test",
                "lab_ttmlat",
                "--test",
                "lab_check",
                "--test",
                "lab_faults",
                "--test",
                "lab_bench",
                "--test",
                "lab_serve",
                "--test",
                "lab_overhead",
                "--test",
                "lab_xe",
                "--test",
                "lab_timeline",
                "--test",
                "lab_exemplars",
                // Every lab test binary runs even after one fails: one CI run names every
                // failure.
                "--no-fail-fast",
                "--",
                "--ignored",
                // One guest at a time: each TCG guest then has a host core to itself, which
                // keeps the timing comparisons (episode vs userspace latency) meaningful.
                "--test-threads=1",
            ],
        ));
    }
    for (name, program, args) in &steps {
        if let Err(e) = step(name, program, args) {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    eprintln!(
        "== all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
