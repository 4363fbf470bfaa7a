//! `cargo xtask bench-serve`: the figures an always-on exporter is judged by, measured in one
//! lab boot (ordinary lab: 2 vCPUs, host time) and printed, not gated:
//! - the highest TTM fault rate the lab reaches (two `workload throughput --kind ttm` loops in
//!   parallel) and what `ttmlat record` lost meanwhile, channel by channel;
//! - the time from starting `ttmlat live --interval 1s` to its probes being attached and to
//!   its first interval;
//! - `ttmlat serve`'s RSS, high-water mark, threads and fds over `--minutes` of stress with a
//!   scrape every 5 s.
//!
//! The guest script is `lab/bench-serve/guest.sh`; figures go to
//! target/bench-serve/<kernel>/summary.{txt,json}.

use std::{fs, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, Result, ensure};
use clap::Args;
use probe_user::{recording::Recording, workload::throughput::ThroughputReport};
use serde_json::json;
use xtask::{
    lab::{LabRun, TtmVariant},
    lab_dirs::repo_root,
    labtest,
};

#[derive(Args)]
pub struct BenchServeArgs {
    /// Lab kernel.
    #[arg(long, default_value = "6.12")]
    kernel: String,
    /// Minutes `ttmlat serve` runs under stress.
    #[arg(long, default_value_t = 10)]
    minutes: u32,
    /// Seconds of the fault-rate loops.
    #[arg(long, default_value_t = 10)]
    rate_seconds: u32,
    /// Output directory (default target/bench-serve).
    #[arg(long)]
    out: Option<PathBuf>,
}

const GUEST_SCRIPT: &str = include_str!("../../../lab/bench-serve/guest.sh");

pub fn bench_serve(args: &BenchServeArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn read(run: &LabRun, name: &str) -> Result<String> {
    let path = run.out_dir.join(name);
    fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

fn json_file<T: serde::de::DeserializeOwned>(run: &LabRun, name: &str) -> Result<T> {
    serde_json::from_str(read(run, name)?.trim()).with_context(|| format!("parsing {name}"))
}

/// (seconds, VmRSS kB, VmHWM kB, threads, fds) rows of rss.tsv.
fn rss_rows(text: &str) -> Result<Vec<[u64; 5]>> {
    text.lines()
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .map(|f| f.parse::<u64>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("bad rss.tsv line {l:?}"))?;
            <[u64; 5]>::try_from(v).map_err(|v| anyhow::anyhow!("rss.tsv: {} fields", v.len()))
        })
        .collect()
}

fn run(args: &BenchServeArgs) -> Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| repo_root().join("target/bench-serve"))
        .join(&args.kernel);
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let serve_s = args.minutes * 60;
    let script = format!(
        "SERVE_SECONDS={serve_s}\nRATE_SECONDS={}\n{GUEST_SCRIPT}",
        args.rate_seconds
    );
    let run = labtest::run_guest_for(
        &args.kernel,
        TtmVariant::Stock,
        &script,
        Duration::from_secs(u64::from(serve_s) + 900),
    )?;

    // 1. Rate and losses.
    let mut rate = 0.0;
    let mut faults = 0;
    for name in ["rate-1.json", "rate-2.json"] {
        let v: ThroughputReport = json_file(&run, name)?;
        let n = u64::try_from(v.faults).with_context(|| format!("{name}: {} faults", v.faults))?;
        ensure!(v.elapsed_ns > 0, "{name}: no elapsed time");
        rate += n as f64 / (v.elapsed_ns as f64 / 1e9);
        faults += n;
    }
    let rec = Recording::read(&run.out_dir.join("rate.rec.json"))?;
    let stats = rec.probe_stats;
    let attempts: u64 = rec.counts.attempts.values().sum();
    let lost: Vec<String> = stats
        .channels()
        .iter()
        .map(|c| match c.value {
            Some(n) => format!("{} {n}", c.field),
            None => format!("{} unknown", c.field),
        })
        .collect();

    // 2. First interval.
    let first = read(&run, "first.txt")?;
    let mut f = first.split_whitespace().map(|x| x.parse::<u64>());
    let (ready_ns, first_ns) = match (f.next(), f.next()) {
        (Some(Ok(r)), Some(Ok(t))) => (r, t),
        _ => anyhow::bail!("bad first.txt {first:?}"),
    };

    // 3. serve's memory over time.
    let rows = rss_rows(&read(&run, "rss.tsv")?)?;
    let first_row = rows.first().context("rss.tsv is empty")?;
    let last_row = rows.last().context("rss.tsv is empty")?;
    let max_rss = rows.iter().map(|r| r[1]).max().unwrap_or(0);
    let max_fds = rows.iter().map(|r| r[4]).max().unwrap_or(0);
    let max_threads = rows.iter().map(|r| r[3]).max().unwrap_or(0);

    let text = format!(
        "bench-serve on {} ({}), ordinary lab (2 vCPUs, TCG, host time)\n\
         fault rate: {rate:.0} TTM faults/s (two loops, {faults} faults in {} s: the highest \
         this lab reaches); ttmlat record saw {attempts} attempts; losses: {}\n\
         live --interval 1s: probes attached {:.2} s after start, first interval printed \
         {:.2} s after start\n\
         serve for {} min under stress, scraped every 5 s: RSS {} kB at {} s, {} kB at {} s, \
         max {} kB (high-water {} kB); threads ≤ {max_threads}; fds ≤ {max_fds}\n",
        args.kernel,
        run.kernel.packages_label(),
        args.rate_seconds,
        lost.join(", "),
        ready_ns as f64 / 1e9,
        first_ns as f64 / 1e9,
        args.minutes,
        first_row[1],
        first_row[0],
        last_row[1],
        last_row[0],
        max_rss,
        last_row[2],
    );
    print!("{text}");
    let summary = json!({
        "kernel": args.kernel,
        "packages": run.kernel.packages_label(),
        "mode": "wall-clock, 2 vCPUs",
        "rate": {"faults_per_s": rate, "faults": faults, "recorded_attempts": attempts,
                 "probe_stats": stats},
        "live": {"ready_s": ready_ns as f64 / 1e9, "first_interval_s": first_ns as f64 / 1e9},
        "serve": {"minutes": args.minutes, "rows": rows, "max_rss_kb": max_rss,
                  "hwm_kb": last_row[2], "max_threads": max_threads, "max_fds": max_fds},
    });
    fs::write(out.join("summary.txt"), &text)?;
    fs::write(
        out.join("summary.json"),
        serde_json::to_string_pretty(&summary)? + "\n",
    )?;
    eprintln!("bench-serve: wrote {}", out.join("summary.txt").display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rss_rows_and_refuses_bad_ones() -> Result<()> {
        assert_eq!(
            rss_rows("0 9000 9100 3 12\n5 9100 9200 3 13\n")?,
            vec![[0, 9000, 9100, 3, 12], [5, 9100, 9200, 3, 13]]
        );
        assert!(rss_rows("0 9000 x 3 12\n").is_err());
        assert!(rss_rows("0 9000 3 12\n").is_err());
        Ok(())
    }

    #[test]
    fn the_guest_script_is_valid_bash() {
        if let Err(e) = xtask::lab::shell_quote::bash_syntax(GUEST_SCRIPT) {
            panic!("{e}");
        }
    }
}
