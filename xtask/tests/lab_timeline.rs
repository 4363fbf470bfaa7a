//! `ttmlat record --timeline` against a real kernel: contended stress on stock 6.1 (retries)
//! and on the blocking variant (held waits that stall the victim thread), the file read back
//! through the binary's own trace-event types and checked against the same run's recording:
//! slices per path equal the recording's counts, every slice nests inside its attempt and
//! episode, every arrow joins two slices that exist, time never goes back on a track.
//!
//!     cargo build --release -p probe-user
//!     cargo test -p xtask --test lab_timeline -- --ignored

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, ensure};
use probe_user::timeline::trace::{TraceEvent, TraceFile, cat, name};
use xtask::{
    lab::TtmVariant,
    lab_timeline::{self, arg_u64, slowest_are_on_the_timeline},
    labtest::{self, AttemptPath, EpisodePath, Recording, read_recording, read_report},
};

/// Slack of the nesting checks: timestamps are microseconds with nanosecond decimals.
const EPS: f64 = 1e-3;

fn track(e: &TraceEvent) -> (u32, u32) {
    (e.pid, e.tid)
}

fn span(e: &TraceEvent) -> Option<(f64, f64)> {
    let ts = e.ts?;
    Some((ts, ts + e.dur.unwrap_or(0.0)))
}

/// Whether `inner` (a slice, or a flow point) lies inside slice `outer` on the same track.
fn within(inner: &TraceEvent, outer: &TraceEvent) -> bool {
    match (span(inner), span(outer)) {
        (Some((a, b)), Some((c, d))) => {
            track(inner) == track(outer) && a + EPS >= c && b <= d + EPS
        }
        _ => false,
    }
}

/// Slices of category `c` by their `path` argument.
fn by_path(f: &TraceFile, c: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for e in f.trace_events.iter().filter(|e| e.ph == "X" && e.cat == c) {
        let path = e.args.get("path").and_then(|p| p.as_str()).unwrap_or("?");
        *out.entry(path.to_string()).or_insert(0) += 1;
    }
    out
}

fn count(m: &BTreeMap<String, u64>, path: &str) -> u64 {
    m.get(path).copied().unwrap_or(0)
}

fn checks(label: &str, f: &TraceFile, rec: &Recording) -> Result<()> {
    let o = &f.other_data;
    ensure!(
        o.episodes > 0
            && o.episodes_left_out == 0
            && o.episodes_unfollowed == 0
            && o.waiters_left_out == 0,
        "{label}: {o:?}"
    );
    // The kernel's quiet counts are said as left out: uncontended episodes the recording has
    // and the timeline does not draw.
    let drawn_uncontended = by_path(f, cat::EPISODE)
        .get(EpisodePath::Uncontended.name())
        .copied()
        .unwrap_or(0);
    ensure!(
        o.uncontended_left_out + drawn_uncontended
            == count(&rec.counts.episodes, EpisodePath::Uncontended.name()),
        "{label}: {} uncontended left out + {drawn_uncontended} drawn, the recording {}",
        o.uncontended_left_out,
        count(&rec.counts.episodes, EpisodePath::Uncontended.name())
    );
    // Every track is named (a releasing thread whose comm was never read says so).
    let named: std::collections::HashSet<(u32, u32)> = f
        .trace_events
        .iter()
        .filter(|e| e.ph == "M" && e.name == "thread_name")
        .map(track)
        .collect();
    for e in f.trace_events.iter().filter(|e| e.ph != "M") {
        ensure!(
            named.contains(&track(e)),
            "{label}: an unnamed track {:?}",
            track(e)
        );
    }
    let slices: Vec<&TraceEvent> = f.trace_events.iter().filter(|e| e.ph == "X").collect();
    // Per path: attempt and episode slices equal the recording's counts (uncontended ones
    // are left out unless they belong to a drawn episode).
    let (attempts, episodes) = (by_path(f, cat::ATTEMPT), by_path(f, cat::EPISODE));
    eprintln!("{label}: timeline attempts {attempts:?}, episodes {episodes:?}");
    eprintln!(
        "{label}: recording attempts {:?}, episodes {:?}",
        rec.counts.attempts, rec.counts.episodes
    );
    for p in AttemptPath::ALL {
        let (drawn, recorded) = (
            count(&attempts, p.name()),
            count(&rec.counts.attempts, p.name()),
        );
        if p == AttemptPath::Uncontended {
            ensure!(
                drawn <= recorded,
                "{label}: {drawn} uncontended attempts drawn, {recorded} recorded"
            );
        } else {
            ensure!(
                drawn == recorded,
                "{label}: {} attempts: timeline {drawn}, recording {recorded}",
                p.name()
            );
        }
    }
    for p in EpisodePath::ALL
        .into_iter()
        .filter(|p| *p != EpisodePath::Uncontended)
    {
        let (drawn, recorded) = (
            count(&episodes, p.name()),
            count(&rec.counts.episodes, p.name()),
        );
        ensure!(
            drawn == recorded,
            "{label}: {} episodes: timeline {drawn}, recording {recorded}",
            p.name()
        );
    }
    let held_waits = [
        AttemptPath::HeldWait,
        AttemptPath::Interrupted,
        AttemptPath::AccessHeldWait,
    ]
    .iter()
    .map(|p| count(&rec.counts.attempts, p.name()))
    .sum::<u64>();
    let held_slices = slices.iter().filter(|e| e.name == name::WAIT_HELD).count() as u64;
    ensure!(
        held_slices == held_waits,
        "{label}: {held_slices} held-wait slices, the recording {held_waits} attempts that waited held"
    );
    // Nesting: each wait in its own attempt (same episode and attempt number), each attempt
    // and pre-lock wait in its own episode.
    let of = |c: &'static str| slices.iter().filter(move |e| e.cat == c).copied();
    let same = |a: &TraceEvent, b: &TraceEvent, keys: &[&str]| -> Result<bool> {
        for k in keys {
            if arg_u64(a, k)? != arg_u64(b, k)? {
                return Ok(false);
            }
        }
        Ok(true)
    };
    for e in slices.iter().filter(|e| e.cat == cat::WAIT) {
        let mut inside = false;
        for a in of(cat::ATTEMPT) {
            inside |= within(e, a) && same(e, a, &["episode", "attempt"])?;
        }
        ensure!(inside, "{label}: a wait outside its attempt: {e:?}");
    }
    for e in of(cat::ATTEMPT).chain(slices.iter().filter(|e| e.name == name::PRE_LOCK).copied()) {
        let mut inside = false;
        for a in of(cat::EPISODE) {
            inside |= within(e, a) && same(e, a, &["episode"])?;
        }
        ensure!(inside, "{label}: outside its episode: {e:?}");
    }
    // The recording names its slowest episodes with the timeline's ids.
    slowest_are_on_the_timeline(rec, &lab_timeline::episodes(f)?)?;
    // Slices on a track nest or are disjoint (the trace-event format's rule; Perfetto drops
    // what overlaps partially).
    let mut by_track: HashMap<(u32, u32), Vec<(f64, f64)>> = HashMap::new();
    for e in &slices {
        by_track.entry(track(e)).or_default().extend(span(e));
    }
    for (t, spans) in &by_track {
        for (i, a) in spans.iter().enumerate() {
            for b in &spans[i + 1..] {
                let disjoint = a.1 <= b.0 + EPS || b.1 <= a.0 + EPS;
                let nested = (a.0 <= b.0 + EPS && b.1 <= a.1 + EPS)
                    || (b.0 <= a.0 + EPS && a.1 <= b.1 + EPS);
                ensure!(
                    disjoint || nested,
                    "{label}: slices {a:?} and {b:?} overlap partially on {t:?}"
                );
            }
        }
    }
    // Flows: one start and one end per id, each inside a slice of its track.
    let mut flows: HashMap<u64, Vec<&TraceEvent>> = HashMap::new();
    for e in f.trace_events.iter().filter(|e| e.ph == "s" || e.ph == "f") {
        flows
            .entry(e.id.context("a flow without an id")?)
            .or_default()
            .push(e);
    }
    for (id, ends) in &flows {
        let phases: Vec<&str> = ends.iter().map(|e| e.ph.as_str()).collect();
        ensure!(phases == ["s", "f"], "{label}: flow {id} is {phases:?}");
        for e in ends {
            ensure!(
                slices.iter().any(|s| within(e, s)),
                "{label}: flow {id} binds to no slice: {e:?}"
            );
        }
    }
    // Time never goes back on a track.
    let mut last: HashMap<(u32, u32), f64> = HashMap::new();
    for e in f.trace_events.iter().filter(|e| e.ph != "M") {
        let ts = e.ts.context("an event without a time")?;
        let prev = last.insert(track(e), ts).unwrap_or(f64::MIN);
        ensure!(
            ts >= prev,
            "{label}: time goes back on {:?}: {e:?}",
            track(e)
        );
    }
    let named = |n: &str| {
        f.trace_events
            .iter()
            .filter(|e| e.name == n && e.ph != "f")
            .count()
    };
    eprintln!(
        "{label}: {} slices, {} flows ({} wake-ups, {} stalls), {} stalled waits, {} releases; left out {o:?}",
        slices.len(),
        flows.len(),
        named(name::FLOW_WAKE),
        named(name::FLOW_STALL),
        named(name::STALLED),
        named(name::RELEASE),
    );
    ensure!(
        named(name::FLOW_WAKE) > 0,
        "{label}: no release was linked to a wake-up"
    );
    Ok(())
}

fn run(kernel: &str, ttm: TtmVariant) -> Result<(TraceFile, Recording)> {
    let body = format!(
        "{}$TTMLAT stress --scenario cross-process --threads 4 --size 16M --rounds 12 --json > $LAB_OUT/stress.json
{}",
        labtest::record_start("rec", "--holder-stack --timeline $LAB_OUT/timeline.json"),
        labtest::record_stop("rec", "INT"),
    );
    let run = labtest::run_script(kernel, ttm, &body)?;
    let rec = read_recording(&run, "rec.json")?;
    labtest::assert_nothing_lost("ttmlat", &rec)?;
    let file: TraceFile = read_report(&run, "timeline.json")?;
    let said = std::fs::read_to_string(run.out_dir.join("rec.txt"))?;
    ensure!(
        said.contains("timeline of"),
        "ttmlat did not say where the timeline went: {said}"
    );
    Ok((file, rec))
}

#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and a release build"]
fn timeline_agrees_with_the_recording_stock_6_1() -> Result<()> {
    let (f, rec) = run("6.1", TtmVariant::Stock)?;
    checks("6.1 stock", &f, &rec)?;
    ensure!(
        f.trace_events.iter().any(|e| e.name == name::WAIT_DROPPED),
        "6.1 stock: no dropped wait drawn"
    );
    Ok(())
}

#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and a release build"]
fn timeline_agrees_with_the_recording_blocking_6_1() -> Result<()> {
    let (f, rec) = run("6.1", TtmVariant::Blocking)?;
    checks("6.1 blocking", &f, &rec)?;
    // The victim thread's mmap/munmap waited behind held reservation waits.
    let stalls = f
        .trace_events
        .iter()
        .filter(|e| e.name == name::FLOW_STALL && e.ph == "s")
        .count();
    let stalled = f
        .trace_events
        .iter()
        .filter(|e| e.name == name::STALLED)
        .count();
    ensure!(
        stalls > 0 && stalled > 0,
        "6.1 blocking: no stalled task linked to a held wait ({stalled} stalled waits)"
    );
    Ok(())
}
