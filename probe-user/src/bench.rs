//! `ttmlat bench`: attach the probes once, run `ttmlat stress` N times as child processes, and
//! write one recording (`repetitions` = N) with the merged histograms plus each repetition's
//! own stress summary and the TTM faults ttmlat attributed to that repetition's processes.
//!
//! `ttmlat merge`: combine recordings of the same kernel and TTM variant (for instance bench
//! runs from several boots) into one: counts and histograms are summed.
//!
//! The session traces every process (the stress workload is two processes whose pids are only
//! known once they run): faults of other processes end up in the histograms too and are counted
//! in `bench.other_episodes`. Run bench on an otherwise idle machine.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::{
    aggregate::{Aggregate, HolderStack},
    recording::Recording,
    session::{self, Stop, TraceArgs},
    workload::stress::{Percentiles, StressArgs},
};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Repetitions: `ttmlat stress` runs this many times, one after the other, under one
    /// tracing session.
    #[arg(short = 'n', long = "repetitions", default_value_t = 3)]
    pub repetitions: u32,
    /// Output recording.
    #[arg(short, long)]
    pub output: PathBuf,
    /// A label stored in the recording (e.g. "stock-6.1").
    #[arg(long)]
    pub label: Option<String>,
    /// Pause between repetitions.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub pause: Duration,
    /// Ring buffer size in KiB (power of two).
    #[arg(long, default_value_t = 4096)]
    pub ring_buffer_kib: u32,
    /// Return-probe instances per probed function (threads that may sleep inside at once;
    /// the kernel accepts at most 4096).
    #[arg(long, default_value_t = session::DEFAULT_MAXACTIVE, value_parser = session::parse_maxactive)]
    pub maxactive: u32,
    /// Print the recording as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub timeline: crate::timeline::TimelineArgs,
    /// Arguments of `ttmlat stress`, after `--` (e.g. -- --scenario cross-process -t 4).
    #[arg(last = true, value_name = "STRESS ARGS")]
    pub stress: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct MergeArgs {
    /// Recordings to merge.
    #[arg(required = true, num_args = 1.., value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output recording.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Label of the merged recording (default: the inputs' common label).
    #[arg(long)]
    pub label: Option<String>,
    /// Merge even recordings of different kernels, TTM modules, tool versions, labels,
    /// filters or stress arguments; the differences are printed as warnings.
    #[arg(long)]
    pub force: bool,
}

/// What `ttmlat bench` adds to a recording.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BenchInfo {
    /// The `ttmlat stress` arguments of every repetition.
    pub stress_args: Vec<String>,
    /// Episodes of processes other than the repetitions' stress processes (0 on an idle
    /// machine; they are included in the histograms).
    pub other_episodes: u64,
    pub runs: Vec<BenchRep>,
}

/// One repetition.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct BenchRep {
    /// 1-based, in the order of the (merged) recording.
    pub index: u32,
    pub label: Option<String>,
    pub kernel_release: String,
    pub ttm_variant: Option<String>,
    pub start_unix_ns: u128,
    /// Wall time of the `ttmlat stress` child process.
    pub wall_ns: u64,
    /// TTM fault episodes and attempts ttmlat saw from this repetition's processes (the
    /// stress process and its helper).
    pub episodes: u64,
    pub attempts: u64,
    /// ttmlat's episode latency median of the stress process (its faulting threads).
    pub episode_p50_ns: Option<u64>,
    /// The workload's own report (`ttmlat stress --json`, without the per-fault list).
    pub stress: StressSummary,
}

/// The part of `ttmlat stress --json` kept per repetition.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StressSummary {
    pub scenario: String,
    pub pid: u32,
    pub holder_pid: Option<u32>,
    pub threads: u64,
    pub size: u64,
    pub rounds_done: u32,
    pub elapsed_ns: u64,
    pub interrupted: bool,
    pub first_touch: Percentiles,
    pub victim: Option<Percentiles>,
    pub victim_total_ns: u64,
    pub holder_populate: Option<Percentiles>,
    pub majflt: i64,
    pub minflt: i64,
}

#[derive(Parser, Debug)]
#[command(name = "ttmlat stress")]
struct StressCli {
    #[command(flatten)]
    args: StressArgs,
}

#[derive(Parser, Debug)]
#[command(name = "ttmlat bench")]
struct TraceCli {
    #[command(flatten)]
    trace: TraceArgs,
}

/// Validates the stress arguments and returns what the children get (always `--json`).
fn child_args(user: &[String]) -> Result<Vec<String>> {
    let parsed = StressCli::try_parse_from(
        std::iter::once("stress".to_string()).chain(user.iter().cloned()),
    )
    .map_err(|e| anyhow::anyhow!("bad stress arguments: {}", e.to_string().trim()))?;
    let mut out = user.to_vec();
    if !parsed.args.json {
        out.push("--json".into());
    }
    Ok(out)
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A finished `ttmlat stress` child.
struct ChildRun {
    start_unix_ns: u128,
    wall_ns: u64,
    summary: StressSummary,
}

/// Parses the last non-empty line of a `ttmlat stress --json` output.
fn parse_stress_output(stdout: &str) -> Result<StressSummary> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("ttmlat stress printed nothing")?;
    serde_json::from_str(line.trim()).context("ttmlat stress printed no usable JSON report")
}

struct Driver {
    exe: PathBuf,
    args: Vec<String>,
    repetitions: u32,
    pause: Duration,
    ready: PathBuf,
    stop: Arc<AtomicBool>,
    session_over: Arc<AtomicBool>,
}

impl Driver {
    /// Waits for the probes, then runs the repetitions one after the other.
    fn drive(&self) -> Result<Vec<ChildRun>> {
        let waited = Instant::now();
        while !self.ready.exists() {
            if self.session_over.load(Ordering::Relaxed) {
                bail!("the tracing session ended before the probes were attached");
            }
            if self.stop.load(Ordering::Relaxed) {
                return Ok(Vec::new());
            }
            if waited.elapsed() > Duration::from_secs(600) {
                bail!("the probes were not attached after 600 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut runs = Vec::new();
        for i in 0..self.repetitions {
            if i > 0 {
                std::thread::sleep(self.pause);
            }
            if self.stop.load(Ordering::Relaxed) || self.session_over.load(Ordering::Relaxed) {
                break;
            }
            let start_unix_ns = unix_ns();
            let t0 = Instant::now();
            let out = Command::new(&self.exe)
                .arg("stress")
                .args(&self.args)
                .stdin(Stdio::null())
                .stderr(Stdio::inherit())
                .output()
                .context("starting ttmlat stress")?;
            let wall_ns = t0.elapsed().as_nanos() as u64;
            let stdout = String::from_utf8_lossy(&out.stdout);
            ensure!(
                out.status.success(),
                "ttmlat stress (repetition {}) failed ({}): {}",
                i + 1,
                out.status,
                stdout.trim()
            );
            let summary =
                parse_stress_output(&stdout).with_context(|| format!("repetition {}", i + 1))?;
            eprintln!(
                "ttmlat bench: repetition {}/{}: pid {}, {} rounds, first-touch p50 {}, {:.2} s",
                i + 1,
                self.repetitions,
                summary.pid,
                summary.rounds_done,
                crate::report::ns(summary.first_touch.p50_ns),
                wall_ns as f64 / 1e9
            );
            runs.push(ChildRun {
                start_unix_ns,
                wall_ns,
                summary,
            });
        }
        Ok(runs)
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    ensure!(
        (1..=10_000).contains(&args.repetitions),
        "--repetitions must be between 1 and 10000"
    );
    let stress_args = child_args(&args.stress)?;
    crate::check_writable(&args.output)?;
    args.timeline.check_writable()?;
    let exe = std::env::current_exe().context("locating the ttmlat binary")?;
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let ready = tmp.path().join("ready");
    let mut trace_args = vec![
        "bench".to_string(),
        "--ring-buffer-kib".into(),
        args.ring_buffer_kib.to_string(),
        "--maxactive".into(),
        args.maxactive.to_string(),
        "--ready-file".into(),
        ready.display().to_string(),
    ];
    if args.timeline.timeline_uncontended {
        trace_args.push("--every-episode".into());
    }
    let trace = TraceCli::try_parse_from(trace_args)
        .map_err(|e| anyhow::anyhow!("internal: tracing arguments: {e}"))?
        .trace;

    // SIGINT/SIGTERM (ours, or the user's Ctrl-C) end the session; the flag also stops further
    // repetitions, and keeps the default action (death) away until the session listens.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing a signal handler")?;
    }
    let session_over = Arc::new(AtomicBool::new(false));
    let driver = Driver {
        exe,
        args: stress_args.clone(),
        repetitions: args.repetitions,
        pause: args.pause,
        ready,
        stop: Arc::clone(&stop),
        session_over: Arc::clone(&session_over),
    };
    let worker = std::thread::Builder::new()
        .name("bench-driver".into())
        .spawn(move || {
            let result = driver.drive();
            // End the session: it stops on SIGINT. Repeat until it has (its handler is
            // installed a moment after the ready file appears).
            while !driver.session_over.load(Ordering::Relaxed) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::this(),
                    nix::sys::signal::Signal::SIGINT,
                );
                std::thread::sleep(Duration::from_millis(500));
            }
            result
        })
        .context("starting the bench driver thread")?;
    let mut sink = args.timeline.sink();
    let outcome = crate::runtime().and_then(|rt| {
        rt.block_on(session::run_with_sink(
            &trace,
            Stop::Signal,
            None,
            |_, _| {},
            &mut sink,
        ))
    });
    session_over.store(true, Ordering::Relaxed);
    let runs = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the bench driver thread panicked"))?;
    let outcome = outcome?;
    let runs = runs?;
    ensure!(!runs.is_empty(), "no repetition completed");

    let mut rec = outcome.recording(args.label.clone())?;
    rec.repetitions = runs.len() as u32;
    rec.bench = Some(bench_info(&rec, &outcome.total, stress_args, runs));
    rec.write(&args.output)?;
    args.timeline.write(sink)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
        outcome.warn_read_errors();
    } else {
        // The report `show` prints of the recording.
        let mut report = crate::session_report::Session::of_outcome(&outcome, &rec.meta);
        report.repetitions = rec.repetitions;
        report.bench = rec.bench.as_ref();
        print!(
            "{}",
            crate::session_report::text(
                &format!(
                    "bench: {} repetitions recorded to {}",
                    rec.repetitions,
                    args.output.display()
                ),
                &report
            )
        );
    }
    if rec.repetitions < args.repetitions {
        bail!(
            "interrupted after {} of {} repetitions (the recording holds those)",
            rec.repetitions,
            args.repetitions
        );
    }
    Ok(())
}

/// Per-repetition attribution from the session's per-process totals.
fn bench_info(
    rec: &Recording,
    total: &Aggregate,
    stress_args: Vec<String>,
    runs: Vec<ChildRun>,
) -> BenchInfo {
    let mut attributed = 0u64;
    let reps: Vec<BenchRep> = runs
        .into_iter()
        .enumerate()
        .map(|(i, run)| {
            let pids = std::iter::once(run.summary.pid).chain(run.summary.holder_pid);
            let (mut episodes, mut attempts) = (0, 0);
            for pid in pids {
                if let Some(p) = total.processes.get(&pid) {
                    episodes += p.episodes;
                    attempts += p.attempts;
                }
            }
            attributed += episodes;
            let episode_p50_ns = total
                .processes
                .get(&run.summary.pid)
                .filter(|p| !p.episode_latency.is_empty())
                .map(|p| p.episode_latency.value_at_quantile(0.5));
            BenchRep {
                index: i as u32 + 1,
                label: rec.meta.label.clone(),
                kernel_release: rec.meta.kernel_release.clone(),
                ttm_variant: rec.meta.ttm_variant.clone(),
                start_unix_ns: run.start_unix_ns,
                wall_ns: run.wall_ns,
                episodes,
                attempts,
                episode_p50_ns,
                stress: run.summary,
            }
        })
        .collect();
    BenchInfo {
        stress_args,
        other_episodes: total.episodes_total().saturating_sub(attributed),
        runs: reps,
    }
}

/// The repetitions' lines of the report.
pub(crate) fn render_runs(b: &BenchInfo) -> String {
    use crate::report::ns;
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "repetitions (stress {}):", b.stress_args.join(" "));
    for r in &b.runs {
        let _ = writeln!(
            out,
            "  #{:<3} pid {:<7} episodes {:<6} attempts {:<6} ttmlat p50 {:<10} first-touch p50 {:<10} victim p99 {}",
            r.index,
            r.stress.pid,
            r.episodes,
            r.attempts,
            r.episode_p50_ns.map_or("—".into(), ns),
            ns(r.stress.first_touch.p50_ns),
            r.stress
                .victim
                .as_ref()
                .map_or("—".into(), |v| ns(v.p99_ns)),
        );
    }
    if b.other_episodes > 0 {
        let _ = writeln!(
            out,
            "  note: {} episodes of other processes are included (run bench on an idle machine)",
            b.other_episodes
        );
    }
    out
}

/// `ttmlat merge`.
pub fn merge_cmd(args: &MergeArgs) -> Result<()> {
    let recs = args
        .files
        .iter()
        .map(|f| Recording::read(f))
        .collect::<Result<Vec<_>>>()?;
    crate::check_writable(&args.output)?;
    let (mut merged, problems) = merge(&recs, args.force)?;
    for p in &problems {
        eprintln!("ttmlat: warning: {p}");
    }
    if args.label.is_some() {
        merged.meta.label = args.label.clone();
        if let Some(b) = merged.bench.as_mut() {
            for r in &mut b.runs {
                r.label = args.label.clone();
            }
        }
    }
    merged.write(&args.output)?;
    println!(
        "merged {} recordings ({} repetitions, {} episodes) into {}",
        recs.len(),
        merged.repetitions,
        merged.counts.episodes.values().sum::<u64>(),
        args.output.display()
    );
    Ok(())
}

/// Why these recordings should not be merged; empty when they can be.
pub fn merge_problems(recs: &[Recording]) -> Vec<String> {
    let mut out = Vec::new();
    let Some(first) = recs.first() else {
        return out;
    };
    use crate::report::dash;
    type Field = fn(&Recording) -> Option<String>;
    let fields: [(&str, Field); 6] = [
        ("kernel", |r| Some(r.meta.kernel_release.clone())),
        ("ttm variant", |r| r.meta.ttm_variant.clone()),
        ("ttm srcversion", |r| r.meta.ttm_srcversion.clone()),
        ("tool version", |r| Some(r.meta.tool_version.clone())),
        ("label", |r| r.meta.label.clone()),
        ("filters", |r| {
            let f: Vec<String> = r
                .meta
                .filters
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            (!f.is_empty()).then(|| f.join(","))
        }),
    ];
    for (name, get) in fields {
        let want = get(first);
        if let Some(other) = recs.iter().map(get).find(|v| *v != want) {
            // As the report shows values: `—` for unknown, never `Some("a")` or `None`.
            out.push(format!(
                "{name} differs ({} vs {})",
                dash(want.as_deref()),
                dash(other.as_deref())
            ));
        }
    }
    let args: Vec<Option<&Vec<String>>> = recs
        .iter()
        .map(|r| r.bench.as_ref().map(|b| &b.stress_args))
        .collect();
    if args.windows(2).any(|w| w[0] != w[1]) {
        out.push("stress arguments differ (or only some inputs are bench recordings)".into());
    }
    out
}

/// Merges recordings through the aggregation's own merge (`Aggregate::merge`): counts,
/// histograms, per-process totals, holders and waiters as a live session adds its intervals
/// (with the same bounds); lost-data counters are summed, repetitions added, bench runs concatenated. Recordings of different
/// kernels, TTM modules, tool versions, labels, filters or stress arguments are refused unless
/// `force` (the problems are returned either way).
pub fn merge(recs: &[Recording], force: bool) -> Result<(Recording, Vec<String>)> {
    let Some(first) = recs.first() else {
        bail!("nothing to merge");
    };
    let problems = merge_problems(recs);
    if !problems.is_empty() && !force {
        bail!(
            "refusing to merge: {} (use --force to merge anyway)",
            problems.join("; ")
        );
    }
    // Counts, histograms, processes, holders and waiters through the aggregation's own merge
    // (with its bounds); what an aggregate does not keep (holder stacks, bench runs, read
    // errors, repetitions) here.
    let mut agg = Aggregate::new();
    for (i, rec) in recs.iter().enumerate() {
        let part = rec
            .to_aggregate()
            .with_context(|| format!("input {} of the merge", i + 1))?;
        agg.merge(&part)
            .with_context(|| format!("merging input {}", i + 1))?;
    }
    let mut stacks: BTreeMap<(u32, String, Vec<String>), u64> = BTreeMap::new();
    let mut meta = first.meta.clone();
    let mut bench: Option<BenchInfo> = None;
    for rec in recs {
        for s in &rec.holder_stacks {
            *stacks
                .entry((s.tgid, s.comm.clone(), s.frames.clone()))
                .or_default() += s.count;
        }
        meta.start_unix_ns = meta.start_unix_ns.min(rec.meta.start_unix_ns);
        meta.end_unix_ns = meta.end_unix_ns.max(rec.meta.end_unix_ns);
        if let Some(b) = &rec.bench {
            let into = bench.get_or_insert_with(|| BenchInfo {
                stress_args: b.stress_args.clone(),
                ..BenchInfo::default()
            });
            into.other_episodes += b.other_episodes;
            into.runs.extend(b.runs.iter().cloned());
        }
    }
    meta.drivers_seen = agg.drivers.iter().cloned().collect();
    if let Some(b) = bench.as_mut() {
        for (i, r) in b.runs.iter_mut().enumerate() {
            r.index = i as u32 + 1;
        }
    }
    let mut holder_stacks: Vec<HolderStack> = stacks
        .into_iter()
        .map(|((tgid, comm, frames), count)| HolderStack {
            tgid,
            comm,
            count,
            frames,
        })
        .collect();
    holder_stacks.sort_by(|a, b| b.count.cmp(&a.count).then(a.tgid.cmp(&b.tgid)));
    let mut merged = Recording::from_aggregate(
        meta,
        &agg,
        recs.iter()
            .skip(1)
            .fold(first.probe_stats, |acc, r| acc.plus(&r.probe_stats)),
        recs.iter().map(|r| r.undecodable_records).sum(),
        recs.iter()
            .skip(1)
            .fold(first.state_entries_at_end, |acc, r| {
                crate::loader::StateEntries::plus(acc, r.state_entries_at_end)
            }),
    )?;
    merged.holder_stacks = holder_stacks;
    merged.read_errors = recs.iter().flat_map(|r| r.read_errors.clone()).collect();
    for rec in recs {
        for (name, n) in &rec.skipped_programs {
            *merged.skipped_programs.entry(name.clone()).or_default() += n;
        }
        for (name, c) in &rec.program_costs {
            let sum = merged.program_costs.entry(name.clone()).or_default();
            sum.runs += c.runs;
            sum.run_time_ns += c.run_time_ns;
        }
    }
    merged.repetitions = recs.iter().map(|r| r.repetitions).sum();
    merged.bench = bench;
    Ok((merged, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{Metric, new_histogram};
    use crate::{
        attribution::EpisodePath,
        loader::{ProbeStats, StateEntries},
        recording::Meta,
        workload::stress::{Scenario, StressReport},
    };

    fn rec(kernel: &str, variant: &str, values: &[u64], episodes: u64) -> Recording {
        let mut agg = Aggregate::new();
        let mut h = new_histogram();
        for v in values {
            h.saturating_record(*v);
        }
        agg.histograms
            .insert((Metric::EpisodeLatency, "retry".into()), h.clone());
        agg.episodes.insert(EpisodePath::Retry, episodes);
        let p = agg.processes.entry(42).or_default();
        p.comm = "ttm-stress".into();
        p.episodes = episodes;
        p.attempts = episodes * 2;
        p.episode_paths.insert(EpisodePath::Retry, episodes);
        p.episode_latency = h;
        let meta = Meta {
            tool_version: "0.1.0".into(),
            kernel_release: kernel.into(),
            ttm_variant: Some(variant.into()),
            label: Some(format!("{variant}-{kernel}")),
            start_unix_ns: 10,
            end_unix_ns: 20,
            ..Meta::default()
        };
        let stats = ProbeStats {
            ringbuf_drops: Some(1),
            ..ProbeStats::zero()
        };
        let mut r = Recording::from_aggregate(meta, &agg, stats, 0, Some(StateEntries::default()))
            .expect("recording");
        r.bench = Some(BenchInfo {
            stress_args: vec!["--json".into()],
            other_episodes: 0,
            runs: vec![BenchRep {
                index: 1,
                episodes,
                ..BenchRep::default()
            }],
        });
        r
    }

    #[test]
    fn merging_sums_counts_and_histograms() -> Result<()> {
        let a = rec("6.1.0-1", "stock", &[1_000, 2_000], 2);
        let b = rec("6.1.0-1", "stock", &[3_000, 4_000, 5_000], 3);
        let (m, problems) = merge(&[a, b], false)?;
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(m.repetitions, 2);
        assert_eq!(m.counts.episodes.get("retry"), Some(&5));
        assert_eq!(m.probe_stats.ringbuf_drops, Some(2));
        let h = &m.histograms[0];
        assert_eq!(
            (h.metric.as_str(), h.class.as_str()),
            ("episode_latency", "retry")
        );
        assert_eq!(h.count, 5);
        assert!(h.max >= 5_000 && h.min <= 1_000);
        let p = &m.processes[&42];
        assert_eq!(
            (p.episodes, p.attempts, p.episode_latency.count),
            (5, 10, 5)
        );
        assert_eq!(p.episode_paths.get("retry"), Some(&5));
        assert_eq!(p.comm, "ttm-stress");
        let bench = m.bench.as_ref().context("bench info")?;
        assert_eq!(
            bench
                .runs
                .iter()
                .map(|r| (r.index, r.episodes))
                .collect::<Vec<_>>(),
            vec![(1, 2), (2, 3)]
        );
        // The merged recording is a valid recording.
        let back = Recording::parse(&serde_json::to_vec(&m)?)?;
        assert_eq!(back, m);
        Ok(())
    }

    #[test]
    fn refuses_different_kernels_or_variants_unless_forced() -> Result<()> {
        let a = rec("6.1.0-1", "stock", &[1_000], 1);
        for b in [
            rec("6.12.0-1", "stock", &[1_000], 1),
            rec("6.1.0-1", "blocking", &[1_000], 1),
        ] {
            let err = format!(
                "{:#}",
                merge(&[a.clone(), b.clone()], false).expect_err("refused")
            );
            assert!(err.contains("refusing to merge"), "{err}");
            let (m, problems) = merge(&[a.clone(), b], true)?;
            assert!(!problems.is_empty());
            assert_eq!(m.repetitions, 2);
        }
        Ok(())
    }

    /// The differences are shown as the report shows values (`—` for unknown), not as Rust
    /// debug output.
    #[test]
    fn merge_problems_read_like_the_report() {
        let a = rec("6.1.0-1", "stock", &[1_000], 1);
        let mut b = rec("6.1.0-1", "stock", &[1_000], 1);
        b.meta.ttm_variant = None;
        b.meta.filters.insert("comm".into(), "glxgears".into());
        let problems = merge_problems(&[a, b]);
        assert_eq!(
            problems,
            [
                "ttm variant differs (stock vs —)",
                "filters differs (— vs comm=glxgears)"
            ]
        );
    }

    /// `bench --maxactive` is the tracing commands' `--maxactive`: 1 to 4096.
    #[test]
    fn bench_maxactive_has_the_tracing_range() {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let parse = |n: &str| Cli::try_parse_from(["bench", "-o", "r.json", "--maxactive", n]);
        assert_eq!(parse("4096").map(|c| c.bench.maxactive).ok(), Some(4096));
        let err = parse("4097").err().expect("4097 refused").to_string();
        assert!(err.contains("1 to 4096"), "{err}");
        assert!(parse("0").is_err());
        let default = Cli::try_parse_from(["bench", "-o", "r.json"]).map(|c| c.bench.maxactive);
        assert_eq!(default.ok(), Some(session::DEFAULT_MAXACTIVE));
    }

    #[test]
    fn old_recordings_without_bench_still_parse() -> Result<()> {
        let mut r = rec("6.1.0-1", "stock", &[1_000], 1);
        r.bench = None;
        let text = serde_json::to_string(&r)?;
        assert!(!text.contains("\"bench\""));
        assert_eq!(Recording::parse(text.as_bytes())?.bench, None);
        Ok(())
    }

    #[test]
    fn stress_arguments_are_checked_and_json_added() -> Result<()> {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            child_args(&args(&["--scenario", "cross-process", "-t", "4"]))?,
            args(&["--scenario", "cross-process", "-t", "4", "--json"])
        );
        assert_eq!(child_args(&args(&["--json"]))?, args(&["--json"]));
        assert!(child_args(&args(&["--scenario", "nope"])).is_err());
        assert!(child_args(&args(&["--bogus"])).is_err());
        Ok(())
    }

    #[test]
    fn reads_the_stress_json_report() -> Result<()> {
        let mut h = new_histogram();
        h.saturating_record(5_000);
        let report = StressReport {
            scenario: Scenario::CrossProcess,
            pid: 7,
            device: "/dev/dri/card0".into(),
            driver: "bochs".into(),
            threads: 4,
            size: 16 << 20,
            rounds_done: 3,
            holder_lead_ns: 1_000_000,
            elapsed_ns: 9,
            interrupted: false,
            first_touch: Percentiles::of(&h),
            first_touch_ns: vec![5_000],
            victim: Some(Percentiles::of(&h)),
            victim_total_ns: 5_000,
            victim_tid: Some(8),
            holder_pid: Some(9),
            holder_populate: None,
            majflt: 1,
            minflt: 2,
        };
        let out = format!("noise\n{}\n\n", serde_json::to_string(&report)?);
        let s = parse_stress_output(&out)?;
        assert_eq!((s.pid, s.holder_pid, s.rounds_done), (7, Some(9), 3));
        assert_eq!(s.scenario, "cross-process");
        assert_eq!(s.first_touch.count, 1);
        assert!(parse_stress_output("").is_err());
        assert!(parse_stress_output("{\"pid\": 1}").is_err());
        Ok(())
    }
}
