use probe_common::{AttemptEvent, WaiterEvent, attempt_flag as af, fault_flag, trylock, vm_fault};

use super::{
    Timeline,
    trace::{TraceEvent, TraceFile, name, render},
};
use crate::{attribution::tests::ev, events::Record, session::RecordSink};

const MS: u64 = 1_000_000;
const LOCK: u64 = 0xffff_8880_0000_1000;

fn comm(s: &[u8]) -> [u8; 16] {
    let mut c = [0; 16];
    c[..s.len()].copy_from_slice(s);
    c
}

/// A retried fault of thread 11: the first attempt drops mmap_lock and waits for the
/// reservation (released by thread 20 of process 20), the retry blocks with the lock held
/// (released again) and stalls thread 12's mmap_lock wait.
fn retried_then_held(start: u64) -> [Record; 3] {
    let base = AttemptEvent {
        tid: 11,
        tgid: 10,
        comm: comm(b"ttm-fault-0"),
        holder_tid: 20,
        holder_tgid: 20,
        holder_comm: comm(b"populater"),
        mm_lock: LOCK,
        episode_start_ns: start,
        trylock: trylock::FAILED,
        waits: 1,
        ..ev()
    };
    let first = AttemptEvent {
        flags: af::RESERVE_CALLED | af::DROPPED_IN_RESERVE | af::WAITED_DROPPED | af::HOLDER_KNOWN,
        attempt_start_ns: start,
        attempt_end_ns: start + 5 * MS,
        wait_start_ns: start + MS,
        wait_end_ns: start + 4 * MS,
        wait_dropped_ns: 3 * MS,
        release_ns: start + 4 * MS - 1000,
        release_tid: 20,
        release_tgid: 20,
        ret: vm_fault::RETRY,
        ..base
    };
    let second = AttemptEvent {
        flags: af::RESERVE_CALLED | af::WAITED_HELD | af::HOLDER_KNOWN | af::EPISODE_END,
        attempt: 2,
        vmf_flags: base.vmf_flags | fault_flag::TRIED,
        attempt_start_ns: start + 6 * MS,
        attempt_end_ns: start + 10 * MS,
        wait_start_ns: start + 7 * MS,
        wait_end_ns: start + 9 * MS,
        wait_held_ns: 2 * MS,
        collateral_ns: MS,
        release_ns: start + 9 * MS - 500,
        release_tid: 20,
        release_tgid: 20,
        ..base
    };
    let stalled = WaiterEvent {
        kind: 2,
        lock_flags: 0x4,
        tid: 12,
        tgid: 10,
        mm_lock: LOCK,
        begin_ns: start + 8 * MS,
        end_ns: start + 9 * MS + 200,
        held_overlap_ns: MS,
        comm: comm(b"victim"),
    };
    [
        Record::Attempt(first),
        Record::Attempt(second),
        Record::Waiter(stalled),
    ]
}

fn uncontended(start: u64) -> Record {
    Record::Attempt(AttemptEvent {
        flags: af::RESERVE_CALLED | af::EPISODE_END,
        tid: 13,
        tgid: 10,
        attempt_start_ns: start,
        attempt_end_ns: start + 1000,
        episode_start_ns: start,
        ..ev()
    })
}

fn timeline(max: usize, keep_uncontended: bool, recs: &[Record]) -> (Timeline, TraceFile) {
    let mut t = Timeline::new(max, keep_uncontended);
    for r in recs {
        t.record(r);
    }
    t.finish();
    let file = render(&t);
    (t, file)
}

fn named<'a>(f: &'a TraceFile, n: &str) -> Vec<&'a TraceEvent> {
    f.trace_events.iter().filter(|e| e.name == n).collect()
}

fn within(inner: &TraceEvent, outer: &TraceEvent) -> bool {
    let (Some(a), Some(b)) = (inner.ts, outer.ts) else {
        return false;
    };
    let end = |e: &TraceEvent, ts: f64| ts + e.dur.unwrap_or(0.0);
    (inner.pid, inner.tid) == (outer.pid, outer.tid)
        && a + 1e-6 >= b
        && end(inner, a) <= end(outer, b) + 1e-6
}

#[test]
fn a_retried_held_episode_is_drawn_with_its_waits_holder_and_stalled_task() {
    let mut recs = retried_then_held(100 * MS).to_vec();
    recs.push(uncontended(200 * MS));
    let (t, f) = timeline(10, false, &recs);
    assert_eq!(t.episodes.len(), 1);
    assert_eq!(f.other_data.uncontended_left_out, 1);
    let episode = named(&f, "episode 1: retry-then-held");
    assert_eq!(episode.len(), 1, "{:#?}", f.trace_events);
    let attempts: Vec<_> = f
        .trace_events
        .iter()
        .filter(|e| e.cat == "attempt")
        .collect();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].name, "attempt 1: retry-dropped");
    assert_eq!(attempts[1].name, "attempt 2: held-wait");
    assert!(attempts.iter().all(|a| within(a, episode[0])));
    let (dropped, held) = (named(&f, name::WAIT_DROPPED), named(&f, name::WAIT_HELD));
    assert_eq!((dropped.len(), held.len()), (1, 1));
    assert!(within(dropped[0], attempts[0]) && within(held[0], attempts[1]));
    assert_eq!(held[0].dur, Some(2000.0));
    // Two releases on the holder's track, a wake-up arrow from each into its wait.
    let releases = named(&f, name::RELEASE);
    assert_eq!(releases.len(), 2);
    assert!(releases.iter().all(|r| (r.pid, r.tid) == (20, 20)));
    let stalled = named(&f, name::STALLED);
    assert_eq!(stalled.len(), 1);
    assert_eq!((stalled[0].pid, stalled[0].tid), (10, 12));
    for (flow, from, to) in [
        (name::FLOW_WAKE, &releases, vec![dropped[0], held[0]]),
        (name::FLOW_STALL, &held, stalled.clone()),
    ] {
        let starts: Vec<_> = named(&f, flow)
            .into_iter()
            .filter(|e| e.ph == "s")
            .collect();
        let ends: Vec<_> = named(&f, flow)
            .into_iter()
            .filter(|e| e.ph == "f")
            .collect();
        assert_eq!(starts.len(), to.len(), "{flow}");
        for s in &starts {
            let end = ends
                .iter()
                .find(|e| e.id == s.id)
                .expect("every flow has an end");
            assert!(
                from.iter().any(|x| within(s, x)),
                "{flow} starts in no slice"
            );
            assert!(to.iter().any(|x| within(end, x)), "{flow} ends in no slice");
            assert_eq!(end.bp.as_deref(), Some("e"));
        }
    }
    // The hold, as an async slice from the first wait to each release.
    assert_eq!(named(&f, name::HOLD).len(), 4);
    // Tracks are named comm[tid] and grouped by process.
    let thread_names: Vec<_> = f
        .trace_events
        .iter()
        .filter(|e| e.ph == "M" && e.name == "thread_name")
        .map(|e| e.args["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        thread_names,
        ["ttm-fault-0[11]", "victim[12]", "populater[20]"]
    );
}

#[test]
fn timestamps_are_monotonic_per_track_and_the_file_reads_back() {
    let mut recs = Vec::new();
    for i in 0..5 {
        recs.extend(retried_then_held((100 + 20 * i) * MS));
    }
    let (_, f) = timeline(10, false, &recs);
    let mut last = std::collections::HashMap::new();
    for e in f.trace_events.iter().filter(|e| e.ph != "M") {
        let ts = e.ts.expect("timed");
        let prev = last.insert((e.pid, e.tid), ts).unwrap_or(0.0);
        assert!(ts >= prev, "{e:?} goes back on its track");
    }
    let text = serde_json::to_string(&f).expect("serializes");
    let back: TraceFile = serde_json::from_str(&text).expect("reads back");
    assert_eq!(back, f);
    assert!(text.starts_with("{\"traceEvents\":["));
}

#[test]
fn the_file_is_bounded_and_says_what_it_left_out() {
    let mut recs = Vec::new();
    for i in 0..5 {
        recs.extend(retried_then_held((100 + 20 * i) * MS));
        recs.push(uncontended((110 + 20 * i) * MS));
    }
    let (t, f) = timeline(2, true, &recs);
    assert_eq!(t.episodes.len(), 2);
    assert_eq!(f.other_data.episodes, 2);
    assert_eq!(f.other_data.episodes_left_out, 8);
    assert_eq!(f.other_data.uncontended_left_out, 0);
    // Stalled waits of episodes that were left out are not drawn, and counted.
    assert_eq!(named(&f, name::STALLED).len(), 1);
    assert_eq!(f.other_data.waiters_unlinked, 4);
}

#[test]
fn a_retry_that_never_returns_to_a_handler_is_unfinished() {
    let [first, _, _] = retried_then_held(100 * MS);
    let (t, f) = timeline(10, false, &[first]);
    assert_eq!(t.episodes.len(), 1);
    assert!(t.episodes[0].unfinished);
    let episode = named(&f, "episode 1: retry-no-handler");
    assert_eq!(episode.len(), 1);
    assert_eq!(episode[0].args["unfinished"], true);
    assert!(episode[0].args.get("latency_ns").is_none());
}

#[test]
fn hostile_comms_stay_json_strings() {
    let [Record::Attempt(mut a), Record::Attempt(mut b), w] = retried_then_held(100 * MS) else {
        unreachable!("three records")
    };
    a.comm = comm(b"x\"},{\"ph\":\"X");
    b.comm = a.comm;
    let (_, f) = timeline(10, false, &[Record::Attempt(a), Record::Attempt(b), w]);
    let text = serde_json::to_string(&f).expect("serializes");
    let back: TraceFile = serde_json::from_str(&text).expect("reads back");
    assert!(
        back.trace_events
            .iter()
            .any(|e| e.args.get("name").and_then(|n| n.as_str()) == Some("x\"},{\"ph\":\"X[11]"))
    );
}

#[test]
fn one_episode_is_drawn_as_svg_with_escaped_names() {
    let [Record::Attempt(mut a), Record::Attempt(mut b), w] = retried_then_held(100 * MS) else {
        unreachable!("three records")
    };
    a.comm = comm(b"<script>&\"");
    b.comm = a.comm;
    let (_, f) = timeline(10, false, &[Record::Attempt(a), Record::Attempt(b), w]);
    let id = super::svg::pick(&f, None).expect("an episode");
    assert_eq!(id, 1);
    let svg = super::svg::render(&f, id).expect("renders");
    assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
    assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;&amp;&quot;[11]"));
    // Episode, two attempts, two waits, two releases, the stalled wait; three arrows.
    assert_eq!(svg.matches("<rect ").count(), 8, "{svg}");
    assert_eq!(svg.matches("marker-end").count(), 3, "{svg}");
    assert!(super::svg::render(&f, 99).is_err());
}
