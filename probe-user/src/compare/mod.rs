//! `ttmlat compare A.json B.json [C.json ...]`: benchstat-style comparison of recordings, the
//! first being the baseline. Per metric and path class: count, median with a 95% confidence
//! interval, p99, p99.9 and max of each input, and for the others the change of the median
//! with a Mann–Whitney U p-value; episodes by path; optionally JSON and an SVG percentile plot.
//!
//! - `input`: reading and naming the recordings, decoding their histograms.
//! - `check`: what makes recordings incomparable (refused unless `--force`).
//! - `stats`: median confidence intervals and the U test on histograms, O(buckets).
//! - `model`: the comparison as data (the `--json` output).
//! - `table`: the text tables.
//! - `plot`: the SVG percentile plot.

mod check;
mod input;
mod model;
mod plot;
mod stats;
mod table;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::aggregate::Metric;

pub use input::Input;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Recordings to compare; the first is the baseline.
    #[arg(required = true, num_args = 2.., value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Significance level of the Mann-Whitney U test: changes with p ≥ alpha print "~".
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Print the comparison as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also draw percentile plots into this SVG file: one panel per time metric with values in
    /// more than one input.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Plot only this metric (any input with values), e.g. collateral_stall.
    #[arg(long, requires = "plot")]
    pub metric: Option<String>,
    /// Path class of the plot (e.g. retry, held); default: all classes merged.
    #[arg(long, requires = "plot")]
    pub class: Option<String>,
    /// Compare even recordings that look incomparable (different tool major version,
    /// histogram resolution or metric set); the problems are printed as warnings.
    #[arg(long)]
    pub force: bool,
}

/// What `compare` prints: the report (stdout) and messages for stderr.
pub struct Output {
    pub stdout: String,
    pub stderr: Vec<String>,
}

pub fn run(args: &CompareArgs) -> Result<()> {
    let out = compare(args)?;
    for line in &out.stderr {
        eprintln!("ttmlat: {line}");
    }
    print!("{}", out.stdout);
    Ok(())
}

fn parse_metric(name: &str) -> Result<Metric> {
    Metric::from_name(name).with_context(|| {
        let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        format!("unknown metric {name:?} (one of: {})", names.join(", "))
    })
}

pub fn compare(args: &CompareArgs) -> Result<Output> {
    if args.files.len() < 2 {
        bail!("compare needs at least two recordings");
    }
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        bail!("--alpha must be between 0 and 1, not {}", args.alpha);
    }
    let plot_metric = args.metric.as_deref().map(parse_metric).transpose()?;
    let inputs = input::read_all(&args.files)?;
    compare_inputs(&inputs, args, plot_metric)
}

pub fn compare_inputs(
    inputs: &[Input],
    args: &CompareArgs,
    plot_metric: Option<Metric>,
) -> Result<Output> {
    let problems = check::problems(inputs);
    if !problems.is_empty() && !args.force {
        bail!(
            "refusing to compare: {} (use --force to compare anyway)",
            problems.join("; ")
        );
    }
    let mut stderr: Vec<String> = problems.iter().map(|p| format!("warning: {p}")).collect();
    let comparison = model::build(inputs, args.alpha, problems)?;
    let mut stdout = if args.json {
        let mut s =
            serde_json::to_string_pretty(&comparison).context("serialising the comparison")?;
        s.push('\n');
        s
    } else {
        table::render(&comparison)
    };
    if let Some(path) = &args.plot {
        plot::draw(
            path,
            inputs,
            &plot::PlotSpec {
                metric: plot_metric,
                class: args.class.as_deref(),
            },
        )?;
        if args.json {
            stderr.push(format!("plot written to {}", path.display()));
        } else {
            stdout.push_str(&format!("plot: {}\n", path.display()));
        }
    }
    Ok(Output { stdout, stderr })
}
