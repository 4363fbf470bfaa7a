//! `cargo xtask ab`: the same `ttmlat bench` on stock and blocking-variant TTM on 6.1 and 6.12,
//! and stock TTM on 6.12 PREEMPT_RT and the newest kernel (no blocking build there: see
//! `LAB_KERNELS`), repetitions interleaved across them (one lab boot per configuration and
//! round), merged per configuration and compared: target/ab/compare.{txt,json,svg}.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use clap::Args;
use xtask::{
    lab::{self, LabSpec, TtmVariant},
    lab_dirs::repo_root,
};

#[derive(Args)]
pub struct AbArgs {
    /// Rounds: each boots every configuration once, in turn.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// `ttmlat bench` repetitions per boot.
    #[arg(long, default_value_t = 1)]
    per_boot: u32,
    /// Stress scenario.
    #[arg(long, default_value = "cross-process")]
    scenario: String,
    /// Faulting threads.
    #[arg(long, default_value_t = 4)]
    threads: u32,
    /// Buffer size.
    #[arg(long, default_value = "16M")]
    size: String,
    /// Stress rounds per repetition (one fresh buffer each).
    #[arg(long, default_value_t = 20)]
    stress_rounds: u32,
    /// Output directory (default target/ab).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Boots to retry when the lab itself fails (guest kernel trouble, timeout); each failure
    /// is printed with its run directory. A failing guest command is never retried.
    #[arg(long, default_value_t = 1)]
    retries: u32,
    /// Boot nothing: merge and compare the `<config>-<round>.json` recordings already in the
    /// output directory (from an earlier run with the same --rounds).
    #[arg(long)]
    no_boot: bool,
}

/// A configuration: name (the recording's label), kernel alias, TTM module.
const CONFIGS: [(&str, &str, TtmVariant); 6] = [
    ("stock-6.1", "6.1", TtmVariant::Stock),
    ("blocking-6.1", "6.1", TtmVariant::Blocking),
    ("stock-6.12", "6.12", TtmVariant::Stock),
    ("blocking-6.12", "6.12", TtmVariant::Blocking),
    ("stock-6.12-rt", "6.12-rt", TtmVariant::Stock),
    ("stock-newest", "newest", TtmVariant::Stock),
];

pub fn ab(args: &AbArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A private copy of the release binary: the guests exec it over 9p, and a rebuild replacing
/// target/release/ttmlat under a running guest would crash it.
fn private_ttmlat(out: &Path) -> Result<PathBuf> {
    let built = repo_root().join("target/release/ttmlat");
    ensure!(
        built.is_file(),
        "{} is missing: run `cargo build --release -p probe-user` first",
        built.display()
    );
    let copy = out.join("ttmlat");
    fs::copy(&built, &copy).with_context(|| format!("copying {}", built.display()))?;
    Ok(copy)
}

fn host(ttmlat: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(ttmlat)
        .args(args)
        .output()
        .with_context(|| format!("running {}", ttmlat.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "ttmlat {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

fn run(args: &AbArgs) -> Result<()> {
    ensure!(
        args.rounds >= 1 && args.per_boot >= 1,
        "--rounds and --per-boot must be at least 1"
    );
    let started = Instant::now();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| repo_root().join("target/ab"));
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let ttmlat = private_ttmlat(&out)?;
    let stress = format!(
        "--scenario {} --threads {} --size {} --rounds {}",
        args.scenario, args.threads, args.size, args.stress_rounds
    );
    // Only safe characters reach the guest shell.
    ensure!(
        stress
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " -.".contains(c)),
        "unexpected characters in the stress arguments: {stress}"
    );
    let mut parts: Vec<Vec<PathBuf>> = vec![Vec::new(); CONFIGS.len()];
    for round in 1..=args.rounds {
        for (i, (name, kernel, ttm)) in CONFIGS.iter().enumerate() {
            if args.no_boot {
                let part = out.join(format!("{name}-{round}.json"));
                ensure!(part.is_file(), "--no-boot: {} is missing", part.display());
                parts[i].push(part);
                continue;
            }
            let t0 = Instant::now();
            let script = format!(
                r#"set -eu
"$TTMLAT" bench -n {n} --label {name} -o "$LAB_OUT/bench.json" -- {stress} > "$LAB_OUT/bench.txt" 2>&1 || {{ cat "$LAB_OUT/bench.txt"; exit 3; }}
cat "$LAB_OUT/bench.txt"
"#,
                n = args.per_boot,
            );
            let spec = LabSpec::new(*kernel, &script)
                .ttm(*ttm)
                .env("TTMLAT", ttmlat.display().to_string())
                .timeout(Duration::from_secs(900));
            let mut attempt = 0;
            let run = loop {
                match lab::run(&spec) {
                    Ok(run) => break run,
                    Err(e) if attempt < args.retries => {
                        attempt += 1;
                        eprintln!("ab: {name} round {round}: lab failure, retrying: {e:#}");
                    }
                    Err(e) => return Err(e.context(format!("{name} round {round}"))),
                }
            };
            ensure!(
                run.rc == 0,
                "{name} round {round}: the guest failed with rc {} (run dir {}):\n{}\n{}",
                run.rc,
                run.run_dir.display(),
                run.stdout,
                run.stderr
            );
            let part = out.join(format!("{name}-{round}.json"));
            fs::copy(run.out_dir.join("bench.json"), &part)
                .with_context(|| format!("{name} round {round}: no recording"))?;
            eprintln!(
                "ab: round {round}/{} {name}: {:.0} s (kernel {}, ttm {}) → {}",
                args.rounds,
                t0.elapsed().as_secs_f64(),
                run.kernel.release,
                run.ttm,
                part.display()
            );
            parts[i].push(part);
        }
    }
    let mut merged = Vec::new();
    for ((name, _, _), files) in CONFIGS.iter().zip(&parts) {
        let file = out.join(format!("{name}.json"));
        let mut a: Vec<String> = vec!["merge".into(), "-o".into(), file.display().to_string()];
        a.extend(files.iter().map(|f| f.display().to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        eprint!("ab: {}", host(&ttmlat, &a)?);
        merged.push(file.display().to_string());
    }
    let svg = out.join("compare.svg").display().to_string();
    let mut text_args = vec!["compare"];
    text_args.extend(merged.iter().map(String::as_str));
    let mut json_args = text_args.clone();
    json_args.push("--json");
    text_args.extend(["--plot", &svg]);
    let text = host(&ttmlat, &text_args)?;
    let json = host(&ttmlat, &json_args)?;
    let reps = repetition_table(&out)?;
    fs::write(out.join("compare.txt"), &text)?;
    fs::write(out.join("compare.json"), &json)?;
    fs::write(out.join("repetitions.txt"), &reps)?;
    print!("{text}\n{reps}");
    eprintln!(
        "ab: {} boots in {:.0} s; stress {stress}, {} repetition(s) per boot; written to {} \
         (measured in an emulated QEMU/TCG guest: compare kernel behaviours, not absolute times)",
        args.rounds as usize * CONFIGS.len(),
        started.elapsed().as_secs_f64(),
        args.per_boot,
        out.display()
    );
    Ok(())
}

/// Nanoseconds as milliseconds, `-` when unknown.
fn ms(ns: Option<u64>) -> String {
    ns.map_or_else(|| "-".into(), |ns| format!("{:.2}", ns as f64 / 1e6))
}

/// Median of the values (upper median for an even count); None when empty.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// One line per repetition (from the merged recordings' `bench.runs`), then per configuration
/// the median over repetitions of each repetition's median.
fn repetition_table(out: &Path) -> Result<String> {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "per repetition (ms): ttmlat = median episode latency of the faulting threads (in the \
         kernel); first-touch = the workload's own median; victim = mmap/munmap p99 and total"
    );
    let _ = writeln!(
        s,
        "{:<14} {:>3} {:>8} {:>8} {:>10} {:>12} {:>10} {:>12}",
        "config",
        "rep",
        "episodes",
        "attempts",
        "ttmlat p50",
        "first-touch",
        "victim p99",
        "victim total"
    );
    let mut summary = Vec::new();
    for (name, _, _) in CONFIGS {
        let path = out.join(format!("{name}.json"));
        let rec = probe_user::recording::Recording::read(&path)?;
        let runs = &rec
            .bench
            .as_ref()
            .with_context(|| format!("{}: not a bench recording", path.display()))?
            .runs;
        let mut p50s = Vec::new();
        let mut victim = Vec::new();
        for r in runs {
            let st = &r.stress;
            let victim_p99 = st.victim.as_ref().map(|v| v.p99_ns);
            let _ = writeln!(
                s,
                "{:<14} {:>3} {:>8} {:>8} {:>10} {:>12} {:>10} {:>12}",
                name,
                r.index,
                r.episodes,
                r.attempts,
                ms(r.episode_p50_ns),
                ms(Some(st.first_touch.p50_ns)),
                ms(victim_p99),
                ms(Some(st.victim_total_ns)),
            );
            p50s.extend(r.episode_p50_ns.map(|n| n as f64));
            victim.extend(victim_p99.map(|n| n as f64));
        }
        summary.push((name, runs.len(), median(p50s), median(victim)));
    }
    let _ = writeln!(s, "median over repetitions:");
    for (name, n, p50, victim) in summary {
        let f = |v: Option<f64>| v.map_or_else(|| "-".into(), |ns| format!("{:.2}", ns / 1e6));
        let _ = writeln!(
            s,
            "{name:<14} n={n:<3} ttmlat p50 {:>8} ms   victim p99 {:>8} ms",
            f(p50),
            f(victim)
        );
    }
    Ok(s)
}
