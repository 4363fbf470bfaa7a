//! `cargo xtask bench-overhead`: what observing costs. In one lab boot per kernel, rounds of
//! four single-threaded loops (TTM faults, anonymous faults, mmap/munmap, buffer reservations
//! without faults) run unobserved
//! (twice: the noise floor), under `ttmlat record`, under the equivalent bpftrace script
//! (lab/overhead/ttmlat-equivalent.bt, Debian's bpftrace), under `ttmlat record --pid 1`
//! (hooks only) and under plain tracefs kprobes on the TTM functions (the probe mechanism
//! alone), observers rotated each round.
//! Prints each observer's throughput ratio to the unobserved run of the same round, and
//! writes target/bench-overhead/<kernel>/summary.{txt,json}.
//!
//! By default the guest runs with QEMU's instruction counter (`-icount shift=2,sleep=off`,
//! one vCPU): guest time is executed instructions, so a ratio is a ratio of instructions
//! executed per operation, repeatable to a fraction of a percent. `--wall-clock` boots the
//! ordinary lab (2 vCPUs, host time), whose noise is tens of percent.

use std::{
    fs,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, ensure};
use clap::Args;
use serde_json::{Value, json};
use xtask::{
    lab::{self, LabSpec},
    lab_dirs::repo_root,
    labtest, overhead,
};

#[derive(Args)]
pub struct BenchOverheadArgs {
    /// Lab kernels to measure (one boot each).
    #[arg(long = "kernel", default_values = ["6.1"])]
    kernels: Vec<String>,
    /// Rounds per boot; each runs every loop under every observer once.
    #[arg(long, default_value_t = 5)]
    rounds: u32,
    /// Measure in host time with 2 vCPUs instead of counted instructions with one.
    #[arg(long)]
    wall_clock: bool,
    /// Seconds per loop run.
    #[arg(long, default_value_t = 3)]
    seconds: u32,
    /// Output directory (default target/bench-overhead).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Boot nothing: summarize the first --rounds rounds of the loop reports in this
    /// directory (the `out` directory of an earlier lab run, e.g. one that timed out).
    #[arg(long, value_name = "DIR")]
    summarize: Option<PathBuf>,
}

/// Guest nanoseconds per instruction = 2^shift: 4 ns, a 250 MIPS guest.
const ICOUNT_SHIFT: u32 = 2;

pub fn bench_overhead(args: &BenchOverheadArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &BenchOverheadArgs) -> Result<()> {
    ensure!(
        args.rounds >= 1 && args.seconds >= 1,
        "--rounds and --seconds must be at least 1"
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| repo_root().join("target/bench-overhead"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if let Some(dir) = &args.summarize {
        let (m, observed) = overhead::collect(dir, args.rounds)?;
        let rows = overhead::summarize(&m)?;
        let header = format!(
            "bench-overhead summary of {} ({} rounds x {} s per loop)",
            dir.display(),
            args.rounds,
            args.seconds
        );
        print!("{}{observed}", overhead::render(&rows, &header));
        // Runs made before the program-cost pass existed have none.
        if dir.join("costs.rec.json").exists() {
            let costs = overhead::collect_program_costs(dir)?;
            let ns_per_instruction = (!args.wall_clock).then(|| f64::from(1u32 << ICOUNT_SHIFT));
            print!(
                "{}",
                overhead::render_program_costs(&costs, ns_per_instruction)
            );
        }
        return Ok(());
    }
    // A private copy: a rebuild must not replace the binary under the running guest.
    let ttmlat = labtest::ttmlat_binary()?;
    let bt = repo_root().join("lab/overhead/ttmlat-equivalent.bt");
    ensure!(bt.is_file(), "{} is missing", bt.display());
    let bt_str = bt.display().to_string();
    ensure!(
        !bt_str.contains('\''),
        "the repository path must not contain a quote"
    );
    for kernel in &args.kernels {
        let t0 = Instant::now();
        let script = overhead::guest_script(args.rounds, args.seconds, &bt_str);
        // Per round: 24 loop runs, three observer start-ups (bpftrace compiles for ~30 s
        // under TCG); under icount guest time runs slower than the host's clock.
        let per_round = 6 * overhead::LOADS.len() as u64 * u64::from(args.seconds) + 150;
        // Plus the program-cost pass: one ttmlat start-up and one loop.
        let budget = 120 + u64::from(args.rounds) * per_round + 60 + u64::from(args.seconds);
        let mut spec = LabSpec::new(kernel.as_str(), &script)
            .env("TTMLAT", ttmlat.display().to_string())
            .timeout(Duration::from_secs(budget));
        let mode = if args.wall_clock {
            "host time, 2 vCPUs".to_string()
        } else {
            // 6.1 hangs bringing up a second vCPU under icount; one vCPU also makes
            // ttmlat's own userspace work come out of the loop's instructions.
            spec = spec
                .smp(1)
                .icount(ICOUNT_SHIFT)
                .timeout(Duration::from_secs(budget * 3));
            format!("instructions counted (-icount shift={ICOUNT_SHIFT},sleep=off), 1 vCPU")
        };
        let run = lab::run(&spec)?;
        ensure!(
            run.rc == 0,
            "{kernel}: the guest failed with rc {} (run dir {}):\n{}\n{}",
            run.rc,
            run.run_dir.display(),
            run.stdout,
            run.stderr
        );
        let header = format!(
            "bench-overhead on {} ({} {}), {} rounds x {} s per loop, QEMU TCG, {mode}",
            run.kernel.release, run.kernel.package, run.kernel.version, args.rounds, args.seconds
        );
        let (m, observed) = overhead::collect(&run.out_dir, args.rounds)?;
        let rows = overhead::summarize(&m)?;
        let costs = overhead::collect_program_costs(&run.out_dir)?;
        let ns_per_instruction = (!args.wall_clock).then(|| f64::from(1u32 << ICOUNT_SHIFT));
        let text = format!(
            "{}{observed}{}",
            overhead::render(&rows, &header),
            overhead::render_program_costs(&costs, ns_per_instruction)
        );
        let dir = out.join(kernel);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join("summary.txt"), &text)?;
        let runs: Vec<Value> = m
            .runs
            .iter()
            .map(|((round, o, load), r)| {
                json!({"round": round, "observer": o, "load": load,
                       "ops_per_sec": r.ops_per_sec, "faults": r.faults})
            })
            .collect();
        let summary = json!({
            "kernel": {"alias": kernel, "release": run.kernel.release,
                        "package": run.kernel.package, "version": run.kernel.version},
            "rounds": args.rounds, "seconds_per_loop": args.seconds, "mode": mode,
            "rows": rows, "runs": runs, "program_costs": costs, "run_dir": run.run_dir,
        });
        fs::write(
            dir.join("summary.json"),
            serde_json::to_string_pretty(&summary)?,
        )?;
        print!("{text}");
        eprintln!(
            "bench-overhead: {kernel} took {:.0} s; {} (run dir {})",
            t0.elapsed().as_secs_f64(),
            dir.join("summary.txt").display(),
            run.run_dir.display()
        );
    }
    Ok(())
}
