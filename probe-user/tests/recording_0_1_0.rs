//! Recordings of ttmlat 0.1.0 through today's binary: `show`, `show --json`, `compare` and
//! `merge` of tests/data/recording-0.1.0.json, a recording written by 0.1.0's own code
//! (commit 24b53f6; tests/data/README.md says how), not a current recording with fields
//! deleted.
//!
//! The expected figures are read from the fixture file itself (what 0.1.0 wrote), the
//! outputs through ttmlat's own types (`Recording`), so a renamed field fails here instead
//! of reading as absent. 0.1.0 called the episode path retry-no-handler `abandoned`
//! (`counts.abandoned`, `counts.episodes.abandoned`); the assertions count those episodes
//! under either name, so they hold before and after ttmlat renames them on read.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use probe_user::{
    aggregate::{Aggregate, Metric, ProcessTotals, new_histogram},
    attribution::{AttemptPath, EpisodePath},
    loader::StateEntries,
    loss::ProbeStats,
    recording::{Meta, Recording},
};
use serde_json::Value;

const TTMLAT: &str = env!("CARGO_BIN_EXE_ttmlat");

/// The old name of the retry-no-handler path, and the new one.
const OLD_NAME: &str = "abandoned";
const NEW_NAME: &str = "retry-no-handler";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/recording-0.1.0.json")
}

/// The fixture as 0.1.0 wrote it: where the expected figures come from.
fn written_by_0_1_0() -> Value {
    let path = fixture();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn ttmlat(args: &[&str]) -> Output {
    Command::new(TTMLAT)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {TTMLAT} {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `ttmlat ARGS`, which must succeed; its stdout.
fn ok(args: &[&str]) -> String {
    let out = ttmlat(args);
    assert!(
        out.status.success(),
        "ttmlat {args:?}: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Text meant for a person carries no Rust `Debug` rendering.
fn assert_readable(what: &str, out: &str) {
    assert!(!out.trim().is_empty(), "{what}: no output");
    for debug in [
        "Some(",
        "None",
        "ProbeStats {",
        "StateEntries {",
        "Counts {",
        "Meta {",
        "HolderStack {",
        "Tracepoints(",
        "RwsemSlowpath(",
    ] {
        assert!(
            !out.contains(debug),
            "{what} prints Rust Debug output ({debug:?}):\n{out}"
        );
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a count in the fixture: {v}"))
}

/// A path → count map of the fixture, with `abandoned` under its new name.
fn paths(v: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, n) in v.as_object().expect("a map of paths") {
        let k = if k == OLD_NAME { NEW_NAME } else { k.as_str() };
        *out.entry(k.to_string()).or_default() += u(n);
    }
    out
}

/// The same of a typed recording's map (either name counts as the new one).
fn typed_paths(m: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, n) in m {
        let k = if k == OLD_NAME { NEW_NAME } else { k.as_str() };
        *out.entry(k.to_string()).or_default() += n;
    }
    out
}

/// The counts of a recording, `times` those of the fixture: what `show --json` (1) and
/// `merge` of the fixture with itself (2) must say.
fn assert_counts(rec: &Recording, old: &Value, times: u64) {
    let c = &old["counts"];
    let total: u64 = paths(&c["episodes"]).values().sum();
    assert_eq!(total, 17, "the fixture has 17 episodes");
    assert_eq!(
        rec.counts.episodes.values().sum::<u64>(),
        times * total,
        "episodes"
    );
    assert_eq!(
        typed_paths(&rec.counts.episodes),
        paths(&c["episodes"])
            .into_iter()
            .map(|(k, n)| (k, times * n))
            .collect::<BTreeMap<_, _>>(),
        "episodes by path"
    );
    assert_eq!(
        typed_paths(&rec.counts.attempts),
        paths(&c["attempts"])
            .into_iter()
            .map(|(k, n)| (k, times * n))
            .collect::<BTreeMap<_, _>>(),
        "attempts by path"
    );
    // 0.1.0's `counts.abandoned`: the episodes of that path, not timed.
    assert_eq!(u(&c[OLD_NAME]), 1);
    assert_eq!(rec.counts.retry_no_handler, times * u(&c[OLD_NAME]));
    assert_eq!(rec.counts.tried_attempts, times * u(&c["tried_attempts"]));
    assert_eq!(rec.counts.waiter_records, times * u(&c["waiter_records"]));
    assert_eq!(rec.counts.unbalanced, times * u(&c["unbalanced"]));
    assert_eq!(
        rec.counts.held_waits_untried,
        times * u(&c["held_waits_untried"])
    );
    assert_eq!(
        typed_paths(&rec.counts.contended_first_attempts),
        paths(&c["contended_first_attempts"])
            .into_iter()
            .map(|(k, n)| (k, times * n))
            .collect::<BTreeMap<_, _>>()
    );

    // Per process.
    let procs = old["processes"].as_object().expect("processes");
    assert_eq!(
        rec.processes.keys().map(u32::to_string).collect::<Vec<_>>(),
        procs.keys().cloned().collect::<Vec<_>>()
    );
    for (tgid, p) in procs {
        let mine = &rec.processes[&tgid.parse::<u32>().expect("tgid")];
        assert_eq!(mine.comm, p["comm"].as_str().expect("comm"));
        assert_eq!(mine.episodes, times * u(&p["episodes"]), "tgid {tgid}");
        assert_eq!(mine.attempts, times * u(&p["attempts"]), "tgid {tgid}");
        assert_eq!(
            mine.episode_latency.count,
            times * u(&p["episode_latency"]["count"])
        );
        assert_eq!(
            typed_paths(&mine.episode_paths),
            paths(&p["episode_paths"])
                .into_iter()
                .map(|(k, n)| (k, times * n))
                .collect::<BTreeMap<_, _>>()
        );
    }

    // Histograms: every one of the fixture, its count `times` over, same extremes.
    let hists = old["histograms"].as_array().expect("histograms");
    assert_eq!(rec.histograms.len(), hists.len());
    for h in hists {
        let (metric, class) = (
            h["metric"].as_str().expect("metric"),
            h["class"].as_str().expect("class"),
        );
        let class = if class == OLD_NAME { NEW_NAME } else { class };
        let mine = rec
            .histograms
            .iter()
            .find(|m| m.metric == metric && m.class == class)
            .unwrap_or_else(|| panic!("histogram {metric}/{class} missing"));
        assert_eq!(mine.count, times * u(&h["count"]), "{metric}/{class}");
        assert_eq!(mine.min, u(&h["min"]), "{metric}/{class}");
        assert_eq!(mine.max, u(&h["max"]), "{metric}/{class}");
        assert_eq!(mine.unit, h["unit"].as_str().expect("unit"));
        let decoded = probe_user::recording::decode_histogram(&mine.encoded).expect("decodes");
        assert_eq!(decoded.len(), mine.count, "{metric}/{class}");
    }

    // Holders, their stacks, the stalled waiters.
    let holders: u64 = old["holders"]
        .as_array()
        .expect("holders")
        .iter()
        .map(|h| u(&h["count"]))
        .sum();
    assert_eq!(
        rec.holders.iter().map(|h| h.count).sum::<u64>(),
        times * holders
    );
    let stacks = old["holder_stacks"].as_array().expect("holder_stacks");
    assert_eq!(rec.holder_stacks.len(), stacks.len());
    for (mine, s) in rec.holder_stacks.iter().zip(stacks) {
        assert_eq!(mine.count, times * u(&s["count"]));
        let frames: Vec<&str> = s["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .map(|f| f.as_str().expect("frame"))
            .collect();
        assert_eq!(mine.frames, frames);
    }
    let waiters = old["waiters"].as_object().expect("waiters");
    assert_eq!(rec.waiters.len(), waiters.len());
    for (tid, w) in waiters {
        let mine = &rec.waiters[&tid.parse::<u32>().expect("tid")];
        assert_eq!(mine.waits, times * u(&w["waits"]));
        assert_eq!(mine.held_overlap_ns, times * u(&w["held_overlap_ns"]));
    }
}

/// `show`: the same report as for a current recording, with what 0.1.0 could not know shown
/// as unknown, not as 0 and not as Rust Debug output.
#[test]
fn show_prints_a_readable_report_of_a_0_1_0_recording() {
    let out = ok(&["show", arg(&fixture())]);
    assert_readable("show", &out);
    assert!(out.contains("6.1.0-56-amd64"), "{out}");
    assert!(out.contains("fixture-0.1.0"), "{out}");
    assert!(out.contains("ttm-helper"), "{out}");
    assert!(out.contains("ww_mutex_unlock+0x4"), "{out}");
    // The loss channels 0.1.0 did not have are unknown ("—"); the others have its values.
    for c in probe_common::loss::CHANNELS {
        let unknown = matches!(c.field, "kprobe_misses" | "recursion_misses");
        let want = if unknown {
            format!("{} —", c.words)
        } else {
            let v = u(&written_by_0_1_0()["probe_stats"][c.field]);
            format!("{} {v}", c.words)
        };
        assert!(out.contains(&want), "{want:?} missing:\n{out}");
    }
}

/// `show --json` is a recording of today's schema with the fixture's figures.
#[test]
fn show_json_reads_as_todays_recording_with_the_same_counts() {
    let old = written_by_0_1_0();
    let out = ok(&["show", "--json", arg(&fixture())]);
    let rec = Recording::parse(out.as_bytes())
        .unwrap_or_else(|e| panic!("show --json is not a recording: {e:#}\n{out}"));
    assert_counts(&rec, &old, 1);
    assert_eq!(rec.meta.tool_version, "0.1.0");
    assert_eq!(rec.meta.kernel_release, "6.1.0-56-amd64");
    assert_eq!(rec.meta.label.as_deref(), Some("fixture-0.1.0"));
    assert_eq!(rec.repetitions, 1);
    // What 0.1.0 could not know stays unknown.
    assert_eq!(rec.meta.hook_sites, None);
    assert_eq!(rec.probe_stats.kprobe_misses, None);
    assert_eq!(rec.probe_stats.recursion_misses, None);
    assert_eq!(rec.probe_stats.orphan_returns, Some(1));
    assert_eq!(rec.probe_stats.ringbuf_drops, Some(0));
    assert_eq!(rec.probe_stats.retprobe_misses, Some(0));
    assert_eq!(
        rec.state_entries_at_end,
        Some(StateEntries {
            threads: 0,
            waiters: 0,
            mm_watches: 2
        })
    );
}

/// A recording written by today's code (its own `Recording::from_aggregate` and `write`), of
/// another kernel: a handful of uncontended and retry episodes.
fn current_recording(path: &Path) -> Recording {
    let mut agg = Aggregate::new();
    let mut proc_totals = ProcessTotals {
        comm: "ttm-fault-0".into(),
        ..ProcessTotals::default()
    };
    for (path, attempt_path, lat, n) in [
        (
            EpisodePath::Uncontended,
            AttemptPath::Uncontended,
            [40_000u64, 52_000, 61_000, 75_000],
            1u64,
        ),
        (
            EpisodePath::Retry,
            AttemptPath::RetryDropped,
            [48_000_000, 61_000_000, 66_000_000, 70_000_000],
            2,
        ),
    ] {
        let mut latency = new_histogram();
        let mut retries = new_histogram();
        for v in lat {
            latency.record(v).expect("in range");
            retries.record(n - 1).expect("in range");
            proc_totals.episode_latency.record(v).expect("in range");
        }
        agg.histograms
            .insert((Metric::EpisodeLatency, path.name().into()), latency);
        agg.histograms
            .insert((Metric::Retries, path.name().into()), retries);
        agg.episodes.insert(path, lat.len() as u64);
        *agg.attempts.entry(attempt_path).or_default() += lat.len() as u64;
        *proc_totals.attempt_paths.entry(attempt_path).or_default() += lat.len() as u64;
        if n > 1 {
            // The TRIED attempt of each retry episode.
            *agg.attempts.entry(AttemptPath::Uncontended).or_default() += lat.len() as u64;
            *proc_totals
                .attempt_paths
                .entry(AttemptPath::Uncontended)
                .or_default() += lat.len() as u64;
            agg.tried_attempts += lat.len() as u64;
        }
        proc_totals.episodes += lat.len() as u64;
        proc_totals.attempts += n * lat.len() as u64;
        proc_totals.episode_paths.insert(path, lat.len() as u64);
    }
    agg.processes.insert(4100, proc_totals);
    agg.drivers.insert("bochs".into());
    let meta = Meta {
        tool_version: env!("CARGO_PKG_VERSION").into(),
        command_line: vec!["ttmlat".into(), "record".into()],
        kernel_release: "6.12.117+deb12-amd64".into(),
        kernel_version: "#1 SMP PREEMPT_DYNAMIC Debian 6.12.117-1".into(),
        ttm_variant: Some("stock".into()),
        drivers_seen: vec!["bochs".into()],
        hostname: "ttmlat-lab".into(),
        label: Some("current".into()),
        ..Meta::default()
    };
    let rec = Recording::from_aggregate(
        meta,
        &agg,
        ProbeStats::zero(),
        0,
        Some(StateEntries::default()),
    )
    .expect("recording");
    rec.write(path).expect("write");
    rec
}

/// `compare` of the fixture with itself, and with a recording of today's code.
#[test]
fn compare_lines_up_a_0_1_0_recording_with_itself_and_with_a_current_one() {
    let f = fixture();
    let out = ok(&["compare", arg(&f), arg(&f)]);
    assert_readable("compare fixture fixture", &out);
    assert!(out.contains("6.1.0-56-amd64"), "{out}");
    assert!(out.contains("retry-then-held"), "{out}");
    assert!(out.contains(NEW_NAME) || out.contains(OLD_NAME), "{out}");

    let dir = tempfile::tempdir().expect("tempdir");
    let current = dir.path().join("current.json");
    let rec = current_recording(&current);
    assert_eq!(
        Recording::read(&current).expect("today's recording reads back"),
        rec
    );
    for (a, b) in [(&f, &current), (&current, &f)] {
        let out = ok(&["compare", arg(a), arg(b)]);
        assert_readable("compare fixture current", &out);
        assert!(out.contains("6.1.0-56-amd64"), "{out}");
        assert!(out.contains("6.12.117+deb12-amd64"), "{out}");
        assert!(out.contains("uncontended"), "{out}");
    }
}

/// `merge` of the fixture with itself: today's recording with every count doubled, which
/// `show` prints like any other.
#[test]
fn merge_of_a_0_1_0_recording_with_itself_doubles_its_counts() {
    let old = written_by_0_1_0();
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let merged = dir.path().join("merged.json");
    let out = ttmlat(&["merge", arg(&f), arg(&f), "-o", arg(&merged)]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "merge: {stderr}");
    assert!(
        !stderr.contains("warning"),
        "the same recording twice merges without warnings: {stderr}"
    );
    assert_readable("merge", &text(&out.stdout));
    let rec = Recording::read(&merged).unwrap_or_else(|e| panic!("merge output: {e:#}"));
    assert_counts(&rec, &old, 2);
    assert_eq!(rec.repetitions, 2);
    assert_eq!(rec.meta.kernel_release, "6.1.0-56-amd64");
    assert_eq!(rec.probe_stats.orphan_returns, Some(2));
    // Unknown plus unknown stays unknown.
    assert_eq!(rec.probe_stats.kprobe_misses, None);
    assert_eq!(rec.probe_stats.recursion_misses, None);

    let shown = ok(&["show", arg(&merged)]);
    assert_readable("show of the merged recording", &shown);
}
