//! ttmlat: how long TTM GPU-buffer page faults hold mmap_lock while they wait for a buffer
//! reservation, which path the kernel took, and whom it stalled — measured in the kernel.
//!
//! Data path: probes (probe-ebpf) → records and quiet-episode counts (probe-common) →
//! `events` (decoding) → `episodes` (attempts and episodes, with `attribution`'s paths) →
//! `aggregate` and `serve`'s metrics → sinks (`report` terminal, `recording` file, `/metrics`).
//! The stages are the library (src/lib.rs); this file is the command line.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use probe_user::{
    bench, check, check_writable, compare, memlock, pipeline_bench,
    recording::Recording,
    report, runtime, serve, session,
    session::{Stop, TraceArgs},
    session_report,
    timeline::{self, TimelineArgs},
    workload,
};

#[derive(Parser, Debug)]
#[command(name = "ttmlat", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Trace TTM faults and print per-interval counts by path and latency percentiles.
    Live {
        #[command(flatten)]
        trace: TraceArgs,
        /// Seconds between reports.
        #[arg(short, long, default_value = "5s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Stop after this long (default: until Ctrl-C).
        #[arg(short, long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// One JSON object per interval instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Trace for a duration (or until SIGINT/SIGTERM) and write a recording.
    Record {
        #[command(flatten)]
        trace: TraceArgs,
        /// How long to record (e.g. 10s, 2m); default: until SIGINT/SIGTERM.
        #[arg(short, long, value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
        /// A label stored in the recording (e.g. "stock", "patched").
        #[arg(long)]
        label: Option<String>,
        /// Print the summary as JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        timeline: TimelineArgs,
    },
    /// Draw one episode of a `--timeline` file as SVG (its tracks, slices and arrows).
    Timeline {
        /// The `--timeline` file.
        file: PathBuf,
        /// Episode id (default: the one with the longest held reservation wait).
        #[arg(long)]
        episode: Option<u64>,
        /// Output SVG.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Print a recording (text, or --json).
    Show {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Compare recordings (the first is the baseline): medians with 95% CIs, tails,
    /// Mann-Whitney U p-values, episodes by path; --json, --plot FILE.svg.
    Compare(compare::CompareArgs),
    /// Attach the probes once, run `ttmlat stress` N times (arguments after `--`), and write
    /// one recording with every repetition merged and each one's own summary.
    Bench(bench::BenchArgs),
    /// Merge recordings of the same kernel and TTM module (e.g. bench runs of several boots).
    Merge(bench::MergeArgs),
    /// Drive reservation contention on a KMS device (first-touch, cross-process, procmem).
    Stress(workload::stress::StressArgs),
    /// Built-in workloads that make real TTM faults.
    #[command(subcommand)]
    Workload(WorkloadCmd),
    /// Check every requirement of tracing on this machine, one line each; exit status 0 only
    /// when ttmlat can run here.
    Check {
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Trace continuously and expose Prometheus metrics on /metrics (per-path histograms in
    /// seconds, classic and native; fault, retry, held-wait and lost-event counters).
    Serve(serve::ServeArgs),
    /// Push N synthetic records through the userspace pipeline; print throughput and peak
    /// memory per decade (no kernel needed).
    #[command(hide = true)]
    BenchPipeline(pipeline_bench::PipelineArgs),
    /// Internal: the helper process of `ttmlat stress`.
    #[command(hide = true)]
    StressHelper,
    /// Internal: print a shell completion script (used by `cargo xtask dist`).
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Internal: print the man page (roff), or with --dir write ttmlat.1 and one
    /// ttmlat-SUBCOMMAND.1 per subcommand there (used by `cargo xtask dist`).
    #[command(hide = true)]
    Man {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum WorkloadCmd {
    /// Create a dumb buffer, mmap it and touch every page once.
    Touch(workload::touch::TouchArgs),
    /// Run one fault or mmap loop for a fixed time and print its throughput as JSON (used by
    /// `cargo xtask bench-overhead`).
    Throughput(workload::throughput::ThroughputArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ttmlat: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    // Before anything loads BPF (a refusal is logged, not fatal: see memlock.rs).
    memlock::lift();
    match cli.command {
        Command::Live {
            trace,
            interval,
            duration,
            json,
        } => {
            let stop = duration.map_or(Stop::Signal, Stop::After);
            let outcome =
                runtime()?.block_on(session::run(&trace, stop, Some(interval), |agg, stats| {
                    if json {
                        match session_report::live_json_interval(agg, stats) {
                            Ok(line) => println!("{line}"),
                            Err(e) => eprintln!("ttmlat: {e:#}"),
                        }
                    } else {
                        println!("{}", report::render("── interval ──", agg, stats, 0));
                    }
                }))?;
            if json {
                println!("{}", session_report::live_json_total(&outcome)?);
                outcome.warn_read_errors();
            } else {
                print!(
                    "{}",
                    session_report::of_outcome("── total ──", &outcome, None)
                );
            }
            Ok(())
        }
        Command::Record {
            mut trace,
            duration,
            output,
            label,
            json,
            timeline,
        } => {
            // Fail before tracing if an output cannot be written.
            check_writable(&output)?;
            timeline.check_writable()?;
            trace.every_episode |= timeline.timeline_uncontended;
            let stop = duration.map_or(Stop::Signal, Stop::After);
            let mut sink = timeline.sink();
            let outcome = runtime()?.block_on(session::run_with_sink(
                &trace,
                stop,
                None,
                |_, _| {},
                &mut sink,
            ))?;
            let rec = outcome.recording(label.clone())?;
            rec.write(&output)?;
            timeline.write(sink)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rec)?);
                outcome.warn_read_errors();
            } else {
                print!(
                    "{}",
                    session_report::of_outcome(
                        &format!("recorded to {}", output.display()),
                        &outcome,
                        label.as_deref()
                    )
                );
            }
            Ok(())
        }
        Command::Timeline {
            file,
            episode,
            output,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let trace: timeline::trace::TraceFile = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a ttmlat timeline", file.display()))?;
            let id = timeline::svg::pick(&trace, episode)?;
            let svg = timeline::svg::render(&trace, id)?;
            std::fs::write(&output, svg)
                .with_context(|| format!("cannot write {}", output.display()))?;
            eprintln!("ttmlat: episode {id} drawn to {}", output.display());
            Ok(())
        }
        Command::Show { file, json } => {
            let rec = Recording::read(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rec)?);
            } else {
                print!(
                    "{}",
                    session_report::of_recording(&format!("recording {}", file.display()), &rec)?
                );
            }
            Ok(())
        }
        Command::Compare(args) => compare::run(&args),
        Command::Workload(WorkloadCmd::Touch(args)) => workload::touch::run(&args),
        Command::Workload(WorkloadCmd::Throughput(args)) => workload::throughput::run(&args),
        Command::Stress(args) => workload::stress::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Merge(args) => bench::merge_cmd(&args),
        Command::StressHelper => workload::stress::helper_main(),
        Command::BenchPipeline(args) => pipeline_bench::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "ttmlat", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            match dir {
                Some(dir) => man_pages(cmd, &dir),
                None => clap_mangen::Man::new(cmd)
                    .render(&mut std::io::stdout())
                    .context("writing the man page"),
            }
        }
        Command::Check { json } => {
            if !check::run(json)? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// ttmlat.1 plus ttmlat-SUB.1 for every visible subcommand, into `dir`.
fn man_pages(cmd: clap::Command, dir: &std::path::Path) -> Result<()> {
    let write = |name: &str, page: clap::Command| -> Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))
    };
    let cmd = cmd.display_name("ttmlat");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("ttmlat-{}", sub.get_name());
        write(
            &name,
            sub.clone()
                .display_name(name.clone())
                .bin_name(format!("ttmlat {}", sub.get_name())),
        )?;
    }
    write("ttmlat", cmd)
}
