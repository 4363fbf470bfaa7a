//! Comparisons of synthetic recordings built in-test.

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;

use super::{CompareArgs, Input, Output, compare, compare_inputs};
use crate::{
    aggregate::{Aggregate, HIST_HIGH, Metric, new_histogram},
    attribution::EpisodePath,
    loader::{ProbeStats, StateEntries},
    recording::{Meta, Recording, encode_histogram},
};

type Values<'a> = &'a [(u64, u64)];

struct Rec<'a> {
    label: Option<&'a str>,
    tool_version: &'a str,
    kernel: &'a str,
    hists: Vec<(Metric, &'a str, Values<'a>)>,
    episodes: Vec<(EpisodePath, u64)>,
}

impl Default for Rec<'_> {
    fn default() -> Self {
        Self {
            label: None,
            tool_version: "0.1.0",
            kernel: "6.1.0-28-amd64",
            hists: Vec::new(),
            episodes: Vec::new(),
        }
    }
}

fn histogram(values: Values) -> Histogram<u64> {
    let mut h = new_histogram();
    for &(v, n) in values {
        h.record_n(v, n).expect("in range");
    }
    h
}

/// `count` values spread evenly over [from, to].
fn spread(from: u64, to: u64, count: u64) -> Vec<(u64, u64)> {
    (0..count)
        .map(|i| (from + (to - from) * i / count.max(2).saturating_sub(1), 1))
        .collect()
}

fn recording(r: &Rec) -> Recording {
    let mut agg = Aggregate::new();
    for (metric, class, values) in &r.hists {
        agg.histograms
            .insert((*metric, (*class).to_string()), histogram(values));
    }
    for (path, n) in &r.episodes {
        agg.episodes.insert(*path, *n);
    }
    let meta = Meta {
        tool_version: r.tool_version.into(),
        kernel_release: r.kernel.into(),
        kernel_package: Some(format!("linux-image-{}", r.kernel)),
        ttm_variant: Some("stock".into()),
        label: r.label.map(Into::into),
        start_unix_ns: 1_000_000_000,
        end_unix_ns: 31_000_000_000,
        ..Meta::default()
    };
    Recording::from_aggregate(
        meta,
        &agg,
        ProbeStats::zero(),
        0,
        Some(StateEntries::default()),
    )
    .expect("recording")
}

fn input(name: &str, r: &Rec) -> Input {
    Input::from_recording(Path::new(&format!("/tmp/{name}.json")), recording(r)).expect("input")
}

fn args() -> CompareArgs {
    CompareArgs {
        files: Vec::new(),
        alpha: 0.05,
        json: false,
        plot: None,
        metric: None,
        class: None,
        force: false,
    }
}

fn run(inputs: &[Input], args: &CompareArgs) -> anyhow::Result<Output> {
    let metric = args.metric.as_deref().and_then(Metric::from_name);
    compare_inputs(inputs, args, metric)
}

/// Baseline: uncontended ≈ 10 µs, retry ≈ 200 µs. After: uncontended 20% faster, retry the
/// same, and a held class the baseline does not have.
fn before_after() -> Vec<Input> {
    let unc_before = spread(9_000, 11_000, 5_000);
    let unc_after = spread(7_200, 8_800, 4_000);
    let retry = spread(150_000, 250_000, 300);
    let held = spread(1_000_000, 3_000_000, 40);
    let before = Rec {
        label: Some("before"),
        hists: vec![
            (Metric::EpisodeLatency, "uncontended", &unc_before),
            (Metric::EpisodeLatency, "retry", &retry),
            (Metric::Retries, "uncontended", &[(0, 5_000)]),
            (Metric::Retries, "retry", &[(1, 300)]),
            (Metric::WaitDropped, "retry", &retry),
        ],
        episodes: vec![(EpisodePath::Uncontended, 5_000), (EpisodePath::Retry, 300)],
        ..Rec::default()
    };
    let after = Rec {
        label: Some("after"),
        kernel: "6.12.12-amd64",
        hists: vec![
            (Metric::EpisodeLatency, "uncontended", &unc_after),
            (Metric::EpisodeLatency, "retry", &retry),
            (Metric::EpisodeLatency, "held", &held),
            (Metric::Retries, "uncontended", &[(0, 4_000)]),
            (Metric::Retries, "retry", &[(1, 300)]),
            (Metric::Retries, "held", &[(0, 40)]),
            (Metric::WaitDropped, "retry", &retry),
            (Metric::WaitHeld, "held", &held),
        ],
        episodes: vec![
            (EpisodePath::Uncontended, 4_000),
            (EpisodePath::Retry, 300),
            (EpisodePath::Held, 40),
        ],
        ..Rec::default()
    };
    vec![input("a", &before), input("b", &after)]
}

fn line_with<'a>(text: &'a str, section: &str, start: &str) -> &'a str {
    let from = text
        .find(section)
        .unwrap_or_else(|| panic!("{section} in\n{text}"));
    text[from..]
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("{start} under {section} in\n{text}"))
}

#[test]
fn table_shows_medians_changes_and_counts() {
    let out = run(&before_after(), &args()).expect("compare");
    let text = out.stdout;
    assert!(out.stderr.is_empty(), "{:?}", out.stderr);
    // Header: names from labels, kernels of both (different kernels are not refused).
    assert!(text.contains("before (baseline)"), "{text}");
    assert!(text.contains("6.1.0-28-amd64") && text.contains("6.12.12-amd64"));
    assert!(text.contains("linux-image-6.12.12-amd64"));
    assert!(line_with(&text, "before (baseline)", "duration").contains("30.0s"));
    // Episodes by path.
    let held = line_with(&text, "episodes by path", "held");
    assert!(held.contains(" 0 ") && held.contains("40"), "{held}");
    let total = line_with(&text, "episodes by path", "total");
    assert!(total.contains("5300") && total.contains("4340"), "{total}");
    // Uncontended: −20% and significant; retry: same distribution, "~".
    let unc = line_with(&text, "episode_latency (ns): median", "uncontended");
    assert!(unc.contains("9999ns") && unc.contains("7999ns"), "{unc}");
    assert!(
        unc.contains("-20.0") && unc.contains("(p=0.000 n=5000+4000)"),
        "{unc}"
    );
    let retry = line_with(&text, "episode_latency (ns): median", "retry ");
    assert!(
        retry.contains(" ~ ") && retry.contains("(p=1.000 n=300)"),
        "{retry}"
    );
    // Held only in "after": no test, no CI on the empty side.
    let held = line_with(&text, "episode_latency (ns): median", "held");
    assert!(held.contains('—') && !held.contains("p="), "{held}");
    // Merged row of every class.
    let all = line_with(&text, "episode_latency (ns): median", "all");
    assert!(all.contains("n=5300+4340"), "{all}");
    // Tail table.
    let tail = line_with(&text, "episode_latency (ns): tail", "uncontended");
    assert!(tail.contains("5000") && tail.contains("11.0µs"), "{tail}");
    // Count metric in plain numbers.
    let retries = line_with(&text, "retries (count): median", "retry ");
    assert!(
        retries.contains(" 1 ") && retries.contains('~'),
        "{retries}"
    );
    // A metric only one side has values of is compared, not refused.
    assert!(text.contains("wait_held (ns): median"));
    assert!(text.contains("Mann-Whitney"));
}

#[test]
fn small_samples_use_the_exact_test_and_need_six_values_for_an_interval() {
    let x: Vec<(u64, u64)> = (1..=10).map(|i| (i * 1_000, 1)).collect();
    let y: Vec<(u64, u64)> = (11..=20).map(|i| (i * 1_000, 1)).collect();
    let base = Rec {
        hists: vec![
            (Metric::EpisodeLatency, "held", &x),
            (
                Metric::EpisodeLatency,
                "retry",
                &[(5_000, 1), (6_000, 1), (7_000, 1)],
            ),
            (Metric::Retries, "held", &[(0, 10)]),
        ],
        ..Rec::default()
    };
    let other = Rec {
        hists: vec![
            (Metric::EpisodeLatency, "held", &y),
            (
                Metric::EpisodeLatency,
                "retry",
                &[(5_000, 1), (6_000, 1), (7_000, 1)],
            ),
            (Metric::Retries, "held", &[(0, 10)]),
        ],
        ..Rec::default()
    };
    let inputs = vec![input("base", &base), input("new", &other)];
    let mut a = args();
    a.json = true;
    let json: serde_json::Value =
        serde_json::from_str(&run(&inputs, &a).expect("compare").stdout).expect("json");
    let row = json["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|r| r["metric"] == "episode_latency" && r["class"] == "held")
        .expect("held row");
    assert_eq!(row["vs_base"][1]["method"], "exact");
    // scipy.stats.mannwhitneyu(range(1, 11), range(11, 21), method="exact"): 1.0825e-05.
    let p = row["vs_base"][1]["p_value"].as_f64().expect("p");
    assert!((p - 1.0825088224469026e-05).abs() < 1e-12, "{p}");
    assert_eq!(row["inputs"][0]["median_ci"]["low_rank"], 2);
    assert_eq!(row["inputs"][0]["median_ci"]["high_rank"], 9);
    // Names from file stems when there is no label.
    assert_eq!(json["inputs"][0]["name"], "base");
    a.json = false;
    let text = run(&inputs, &a).expect("compare").stdout;
    let retry = line_with(&text, "episode_latency (ns): median", "retry");
    assert!(retry.contains("±∞"), "{retry}");
}

#[test]
fn json_has_stable_field_names() {
    let mut a = args();
    a.json = true;
    let out = run(&before_after(), &a).expect("compare");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("valid JSON");
    assert_eq!(v["format"], "ttmlat-compare");
    assert_eq!(v["version"], 1);
    assert_eq!(v["alpha"], 0.05);
    assert_eq!(v["confidence"], 0.95);
    assert_eq!(v["forced_problems"].as_array().map(Vec::len), Some(0));
    let input = &v["inputs"][1];
    for key in [
        "name",
        "file",
        "label",
        "tool_version",
        "kernel_release",
        "kernel_package",
        "ttm_variant",
        "hostname",
        "repetitions",
        "duration_ns",
        "episodes",
        "lost",
    ] {
        assert!(input.get(key).is_some(), "inputs[].{key}");
    }
    assert_eq!(input["name"], "after");
    assert_eq!(input["kernel_release"], "6.12.12-amd64");
    assert_eq!(input["duration_ns"], 30_000_000_000u64);
    assert_eq!(v["episodes"][2]["class"], "held");
    assert_eq!(v["episodes"][2]["counts"], serde_json::json!([0, 40]));
    let row = v["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|r| r["metric"] == "episode_latency" && r["class"] == "uncontended")
        .expect("row");
    assert_eq!(row["unit"], "ns");
    assert_eq!(row["merged"], false);
    let s = &row["inputs"][0];
    for key in ["count", "median", "median_ci", "p99", "p999", "max"] {
        assert!(s.get(key).is_some(), "inputs[].{key}");
    }
    for key in ["low", "high", "low_rank", "high_rank", "coverage"] {
        assert!(s["median_ci"].get(key).is_some(), "median_ci.{key}");
    }
    assert_eq!(s["count"], 5_000);
    assert!(row["vs_base"][0].is_null());
    let vs = &row["vs_base"][1];
    for key in [
        "delta_median_pct",
        "p_value",
        "significant",
        "method",
        "u",
        "n_base",
        "n",
        "prob_greater",
    ] {
        assert!(vs.get(key).is_some(), "vs_base[].{key}");
    }
    assert_eq!(vs["significant"], true);
    assert_eq!(vs["method"], "normal");
    let d = vs["delta_median_pct"].as_f64().expect("delta");
    assert!((d + 20.0).abs() < 0.5, "{d}");
    assert_eq!(vs["prob_greater"], 0.0);
    let merged = v["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|r| r["metric"] == "episode_latency" && r["class"] == "all")
        .expect("merged row");
    assert_eq!(merged["merged"], true);
    // Empty side: null summary values and no test.
    let held = v["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .find(|r| r["metric"] == "episode_latency" && r["class"] == "held")
        .expect("held row");
    assert_eq!(held["inputs"][0]["count"], 0);
    assert!(held["inputs"][0]["median"].is_null());
    assert!(held["vs_base"][1].is_null());
}

#[test]
fn refuses_different_tool_major_versions_unless_forced() {
    let v = [(10_000u64, 100u64)];
    let mk = |tool| Rec {
        tool_version: tool,
        hists: vec![
            (Metric::EpisodeLatency, "uncontended", &v[..]),
            (Metric::Retries, "uncontended", &[(0, 100)][..]),
        ],
        ..Rec::default()
    };
    let inputs = vec![input("old", &mk("0.1.0")), input("new", &mk("0.2.3"))];
    let err = format!("{:#}", run(&inputs, &args()).err().expect("refused"));
    assert!(
        err.contains("major versions") && err.contains("\"0.2.3\""),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    // Patch and pre-release differences are fine.
    let ok = vec![input("a", &mk("0.1.0")), input("b", &mk("0.1.9-dev"))];
    assert!(run(&ok, &args()).is_ok());
    let mut forced = args();
    forced.force = true;
    let out = run(&inputs, &forced).expect("forced");
    assert!(out.stderr.iter().any(|w| w.contains("major versions")));
    assert!(
        out.stdout.starts_with("warning (--force): "),
        "{}",
        out.stdout
    );
}

#[test]
fn refuses_different_metric_sets_but_not_missing_events() {
    let v = [(10_000u64, 100u64)];
    let full = Rec {
        hists: vec![
            (Metric::EpisodeLatency, "retry", &v[..]),
            (Metric::Retries, "retry", &[(1, 100)][..]),
            (Metric::WaitDropped, "retry", &v[..]),
        ],
        ..Rec::default()
    };
    // Histograms, but no per-episode metrics: not the same kind of measurement.
    let odd = Rec {
        hists: vec![(Metric::WaitHeld, "held", &v[..])],
        ..Rec::default()
    };
    let inputs = vec![input("full", &full), input("odd", &odd)];
    let err = format!("{:#}", run(&inputs, &args()).err().expect("refused"));
    assert!(
        err.contains("metric sets differ")
            && err.contains("episode_latency is in full but not in odd"),
        "{err}"
    );
    // No wait_dropped because nothing dropped mmap_lock (a blocking kernel): compared.
    let blocking = Rec {
        hists: vec![
            (Metric::EpisodeLatency, "held", &v[..]),
            (Metric::Retries, "held", &[(0, 100)][..]),
            (Metric::WaitHeld, "held", &v[..]),
        ],
        ..Rec::default()
    };
    let inputs = vec![input("stock", &full), input("blocking", &blocking)];
    assert!(run(&inputs, &args()).is_ok());
    // An input without any histogram (no TTM fault seen) is compared too.
    let inputs = vec![input("stock", &full), input("idle", &Rec::default())];
    assert!(run(&inputs, &args()).is_ok());
}

#[test]
fn refuses_different_histogram_resolutions() {
    let v = [(10_000u64, 100u64)];
    let base = Rec {
        hists: vec![
            (Metric::EpisodeLatency, "retry", &v[..]),
            (Metric::Retries, "retry", &[(1, 100)][..]),
        ],
        ..Rec::default()
    };
    let mut coarse = recording(&base);
    let mut h = Histogram::<u64>::new_with_bounds(1, HIST_HIGH, 2).expect("bounds");
    h.record_n(10_000, 100).expect("in range");
    coarse.histograms[0].encoded = encode_histogram(&h).expect("encode");
    let inputs = vec![
        input("fine", &base),
        Input::from_recording(Path::new("coarse.json"), coarse).expect("input"),
    ];
    let err = format!("{:#}", run(&inputs, &args()).err().expect("refused"));
    assert!(
        err.contains("resolutions differ") && err.contains("2 significant digits"),
        "{err}"
    );
}

fn write(dir: &Path, name: &str, r: &Rec) -> PathBuf {
    let path = dir.join(name);
    recording(r).write(&path).expect("write");
    path
}

#[test]
fn reads_files_and_names_corrupt_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let v = [(10_000u64, 100u64)];
    let r = Rec {
        hists: vec![
            (Metric::EpisodeLatency, "retry", &v[..]),
            (Metric::Retries, "retry", &[(1, 100)][..]),
        ],
        ..Rec::default()
    };
    let a = write(dir.path(), "run-a.json", &r);
    let b = write(dir.path(), "run-a-again.json", &r);
    let mut args = args();
    args.files = vec![a.clone(), b];
    let out = compare(&args).expect("compare files");
    assert!(out.stdout.contains("run-a (baseline)") && out.stdout.contains("run-a-again"));
    // Same name twice: made unique.
    args.files = vec![a.clone(), a.clone()];
    let out = compare(&args).expect("compare files");
    assert!(out.stdout.contains("run-a #1 (baseline)") && out.stdout.contains("run-a #2"));
    // Truncated file: the recording's own error, with the file named.
    let bad = dir.path().join("bad.json");
    let bytes = std::fs::read(&a).expect("read");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).expect("write");
    args.files = vec![a.clone(), bad.clone()];
    let err = format!("{:#}", compare(&args).err().expect("corrupt"));
    assert!(err.contains("input 2") && err.contains("bad.json"), "{err}");
    assert!(err.contains("not JSON"), "{err}");
    args.files = vec![dir.path().join("missing.json"), a];
    let err = format!("{:#}", compare(&args).err().expect("missing"));
    assert!(
        err.contains("input 1") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn plot_writes_an_svg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let svg = dir.path().join("plot.svg");
    let mut a = args();
    a.plot = Some(svg.clone());
    let out = run(&before_after(), &a).expect("compare with plot");
    assert!(out.stdout.contains("plot: "));
    let text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(
        text.len() > 1_000 && text.contains("<svg"),
        "{}",
        text.len()
    );
    assert!(text.contains("before") && text.contains("after"));
    assert!(text.contains("99.9%"), "nines axis labels");
    // A panel per time metric with values in both inputs, each titled with its metric, each
    // axis in one unit.
    for m in ["episode_latency", "wait_dropped"] {
        assert!(text.contains(&format!(">\n{m}\n<")), "no {m} panel: {text}");
    }
    // wait_held has values in one input only; retries is a count.
    assert!(!text.contains(">\nwait_held\n<") && !text.contains(">\nretries\n<"));
    // One class.
    a.class = Some("retry".into());
    run(&before_after(), &a).expect("class plot");
    // Unknown class, count metric: clear errors.
    a.class = Some("nope".into());
    let err = format!(
        "{:#}",
        run(&before_after(), &a).err().expect("no such class")
    );
    assert!(
        err.contains("class nope") && err.contains("uncontended"),
        "{err}"
    );
    a.metric = Some("episode_latency".into());
    let err = format!(
        "{:#}",
        run(&before_after(), &a).err().expect("no such class")
    );
    assert!(
        err.contains("episode_latency/nope") && err.contains("uncontended"),
        "{err}"
    );
    a.class = None;
    a.metric = Some("retries".into());
    let err = format!(
        "{:#}",
        run(&before_after(), &a).err().expect("count metric")
    );
    assert!(err.contains("retries is a count"), "{err}");
}

#[test]
fn rejects_bad_arguments() {
    let mut a = args();
    a.files = vec!["a.json".into(), "b.json".into()];
    a.alpha = 1.5;
    assert!(format!("{:#}", compare(&a).err().expect("alpha")).contains("--alpha"));
    a.alpha = 0.05;
    a.metric = Some("latency".into());
    let err = format!("{:#}", compare(&a).err().expect("metric"));
    assert!(
        err.contains("unknown metric") && err.contains("episode_latency"),
        "{err}"
    );
}
