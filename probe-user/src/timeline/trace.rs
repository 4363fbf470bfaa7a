//! The timeline's file: Chrome's trace-event JSON format (the "JSON Object Format": complete
//! `X` slices, `M` names, `s`/`f` flow arrows, `b`/`e` async slices), which the Perfetto UI and
//! chrome://tracing open. Times are CLOCK_MONOTONIC microseconds, as the format wants; the
//! nanoseconds are in each slice's `args`. The lab test reads it back through these types.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use probe_common::{AttemptEvent, WaiterEvent, attempt_flag};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{Episode, LeftOut, Timeline};
use crate::events::cstr;

/// The file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceFile {
    #[serde(rename = "traceEvents")]
    pub trace_events: Vec<TraceEvent>,
    #[serde(rename = "displayTimeUnit")]
    pub display_time_unit: String,
    #[serde(rename = "otherData")]
    pub other_data: OtherData,
}

/// What the file holds and what it left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OtherData {
    pub tool: String,
    pub clock: String,
    pub episodes: u64,
    pub max_episodes: u64,
    /// Over `--timeline-max`.
    pub episodes_left_out: u64,
    /// Episodes whose attempts could not be followed to their end (lost episode ends).
    #[serde(default)]
    pub episodes_unfollowed: u64,
    /// Uncontended episodes, including those the kernel counted instead of sending.
    pub uncontended_left_out: u64,
    pub waiters_left_out: u64,
    /// Stalled mmap_lock waits whose held reservation wait is not on the timeline.
    pub waiters_unlinked: u64,
}

/// One trace event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cat: String,
    pub ph: String,
    /// Microseconds (absent on metadata).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dur: Option<f64>,
    pub pid: u32,
    pub tid: u32,
    /// Flow and async ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// `e`: a flow end binds to the enclosing slice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bp: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub args: Map<String, Value>,
}

/// Names of the slices (the lab test counts them).
pub mod name {
    pub const WAIT_HELD: &str = "reservation wait, mmap_lock held";
    pub const WAIT_DROPPED: &str = "reservation wait, mmap_lock dropped";
    pub const WAIT_MIXED: &str = "reservation wait (last of several, held and dropped)";
    pub const PRE_LOCK: &str = "mmap_lock wait before the handler";
    pub const RELEASE: &str = "releases the reservation";
    pub const HOLD: &str = "holds the reservation (seen from the fault's wait to its release)";
    pub const STALLED: &str = "mmap_lock wait, stalled by a held reservation wait";
    pub const FLOW_WAKE: &str = "release wakes the fault";
    pub const FLOW_STALL: &str = "held wait stalls a task";
}

/// Categories.
pub mod cat {
    pub const EPISODE: &str = "episode";
    pub const ATTEMPT: &str = "attempt";
    pub const WAIT: &str = "reservation_wait";
    pub const MMAP_LOCK: &str = "mmap_lock";
    pub const HOLDER: &str = "holder";
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn slice(name: &str, cat: &str, (pid, tid): (u32, u32), start: u64, end: u64) -> TraceEvent {
    TraceEvent {
        name: name.to_string(),
        cat: cat.to_string(),
        ph: "X".into(),
        ts: Some(us(start)),
        dur: Some(us(end.saturating_sub(start))),
        pid,
        tid,
        id: None,
        bp: None,
        args: Map::new(),
    }
}

fn mark(ph: &str, name: &str, cat: &str, track: (u32, u32), ns: u64, id: u64) -> TraceEvent {
    TraceEvent {
        ph: ph.into(),
        ts: Some(us(ns)),
        dur: None,
        id: Some(id),
        bp: (ph == "f").then(|| "e".into()),
        ..slice(name, cat, track, ns, ns)
    }
}

fn with(mut e: TraceEvent, args: Value) -> TraceEvent {
    if let Value::Object(m) = args {
        e.args = m;
    }
    e
}

/// A held reservation wait on the timeline: where stalled waits link to.
struct HeldWait {
    track: (u32, u32),
    mm_lock: u64,
    start: u64,
    end: u64,
}

#[derive(Default)]
struct Builder {
    events: Vec<TraceEvent>,
    /// (pid, tid) → thread comm; pid → process comm.
    threads: BTreeMap<(u32, u32), String>,
    processes: BTreeMap<u32, String>,
    held: Vec<HeldWait>,
    next_id: u64,
}

impl Builder {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn name_track(&mut self, pid: u32, tid: u32, comm: &[u8]) {
        let comm = cstr(comm);
        if pid == tid || !self.processes.contains_key(&pid) {
            self.processes.insert(pid, comm.clone());
        }
        self.threads.entry((pid, tid)).or_insert(comm);
    }

    fn flow(&mut self, name: &str, from: (u32, u32), to: (u32, u32), ns_from: u64, ns_to: u64) {
        let id = self.id();
        self.events.push(mark("s", name, "flow", from, ns_from, id));
        self.events.push(mark("f", name, "flow", to, ns_to, id));
    }

    fn episode(&mut self, ep: &Episode) {
        let (Some((_, first)), Some((_, last))) = (ep.attempts.first(), ep.attempts.last()) else {
            return;
        };
        let track = (first.tgid, first.tid);
        self.name_track(first.tgid, first.tid, &first.comm);
        let mut args = json!({
            "episode": ep.id, "path": ep.path.name(), "attempts": ep.attempts.len(),
            "driver": cstr(&last.driver), "unfinished": ep.unfinished,
        });
        if !ep.unfinished {
            args["latency_ns"] = json!(last.attempt_end_ns.saturating_sub(first.episode_start_ns));
        }
        let title = format!("episode {}: {}", ep.id, ep.path.name());
        self.events.push(with(
            slice(
                &title,
                cat::EPISODE,
                track,
                first.episode_start_ns,
                last.attempt_end_ns,
            ),
            args,
        ));
        if first.pre_lock_wait_ns > 0 {
            let end = first.episode_start_ns + first.pre_lock_wait_ns;
            let e = slice(
                name::PRE_LOCK,
                cat::MMAP_LOCK,
                track,
                first.episode_start_ns,
                end,
            );
            self.events.push(with(
                e,
                json!({"episode": ep.id, "wait_ns": first.pre_lock_wait_ns}),
            ));
        }
        let mut hold_from: HashMap<(u32, u32), u64> = HashMap::new();
        for (path, a) in &ep.attempts {
            let title = format!("attempt {}: {}", a.attempt, path.name());
            let args = json!({
                "episode": ep.id, "attempt": a.attempt, "path": path.name(),
                "wait_held_ns": a.wait_held_ns, "wait_dropped_ns": a.wait_dropped_ns,
                "waits": a.waits, "collateral_ns": a.collateral_ns,
                "holder": (a.flags & attempt_flag::HOLDER_KNOWN != 0)
                    .then(|| format!("{}[{}]", cstr(&a.holder_comm), a.holder_tid)),
            });
            self.events.push(with(
                slice(
                    &title,
                    cat::ATTEMPT,
                    track,
                    a.attempt_start_ns,
                    a.attempt_end_ns,
                ),
                args,
            ));
            if let Some(holder) = self.wait(ep.id, track, a) {
                hold_from.entry(holder).or_insert(a.wait_start_ns);
            }
        }
        for (_, a) in &ep.attempts {
            self.release(ep.id, track, a, &hold_from);
        }
    }

    /// The attempt's last reservation wait; returns the holder's track when its release
    /// was seen.
    fn wait(&mut self, episode: u64, track: (u32, u32), a: &AttemptEvent) -> Option<(u32, u32)> {
        if a.wait_start_ns == 0 || a.wait_end_ns < a.wait_start_ns {
            return None;
        }
        let held = a.flags & attempt_flag::WAITED_HELD != 0;
        let dropped = a.flags & attempt_flag::WAITED_DROPPED != 0;
        let title = match (held, dropped) {
            (true, false) => name::WAIT_HELD,
            (false, true) => name::WAIT_DROPPED,
            _ => name::WAIT_MIXED,
        };
        let e = slice(title, cat::WAIT, track, a.wait_start_ns, a.wait_end_ns);
        self.events.push(with(
            e,
            json!({"episode": episode, "attempt": a.attempt, "waits": a.waits, "wait_ret": a.wait_ret}),
        ));
        if held && !dropped {
            self.held.push(HeldWait {
                track,
                mm_lock: a.mm_lock,
                start: a.wait_start_ns,
                end: a.wait_end_ns,
            });
        }
        (a.release_ns != 0 && a.release_tid != 0).then_some((a.release_tgid, a.release_tid))
    }

    fn release(
        &mut self,
        episode: u64,
        track: (u32, u32),
        a: &AttemptEvent,
        hold_from: &HashMap<(u32, u32), u64>,
    ) {
        if a.release_ns == 0 || a.release_tid == 0 || a.wait_start_ns == 0 {
            return;
        }
        let holder = (a.release_tgid, a.release_tid);
        if a.release_tid == a.holder_tid {
            self.name_track(holder.0, holder.1, &a.holder_comm);
        }
        let e = slice(
            name::RELEASE,
            cat::HOLDER,
            holder,
            a.release_ns,
            a.release_ns + 1,
        );
        self.events.push(with(e, json!({"episode": episode})));
        if let Some(&from) = hold_from.get(&holder).filter(|f| **f <= a.release_ns) {
            let id = self.id();
            self.events
                .push(mark("b", name::HOLD, cat::HOLDER, holder, from, id));
            self.events
                .push(mark("e", name::HOLD, cat::HOLDER, holder, a.release_ns, id));
        }
        // The wake-up: the flow ends inside the wait slice, just before its end.
        let inside = WAKE_INSIDE_NS.min(a.wait_end_ns.saturating_sub(a.wait_start_ns) / 2);
        let wake = a.wait_end_ns - inside;
        self.flow(name::FLOW_WAKE, holder, track, a.release_ns, wake);
    }

    /// A stalled task's mmap_lock wait, linked to every held wait of its mm it overlapped.
    fn waiter(&mut self, w: &WaiterEvent) -> bool {
        let links: Vec<((u32, u32), u64)> = self
            .held
            .iter()
            .filter(|h| h.mm_lock == w.mm_lock && h.start < w.end_ns && w.begin_ns < h.end)
            .map(|h| (h.track, h.start.max(w.begin_ns)))
            .collect();
        if links.is_empty() {
            return false;
        }
        let track = (w.tgid, w.tid);
        self.name_track(w.tgid, w.tid, &w.comm);
        let e = slice(name::STALLED, cat::MMAP_LOCK, track, w.begin_ns, w.end_ns);
        self.events.push(with(
            e,
            json!({"held_overlap_ns": w.held_overlap_ns, "wait_ns": w.end_ns.saturating_sub(w.begin_ns)}),
        ));
        for (from, at) in links {
            self.flow(name::FLOW_STALL, from, track, at, at);
        }
        true
    }
}

/// Order within one timestamp: enclosing slices before the slices, flows and async ends
/// inside them.
fn order(e: &TraceEvent) -> (u8, i64) {
    let rank = match e.ph.as_str() {
        "X" => 0,
        "b" => 1,
        "s" | "f" => 2,
        _ => 3,
    };
    (rank, -((e.dur.unwrap_or(0.0) * 1000.0) as i64))
}

/// The name of a thread whose comm the probes never read.
pub const UNSEEN_COMM: &str = "(comm not seen)";

/// How far inside the wait the wake-up arrow ends (at most; half the wait if shorter): the
/// microsecond floats of the format keep whole nanoseconds only up to some 11 days of uptime,
/// so an arrow 1 ns before the end could land on it.
const WAKE_INSIDE_NS: u64 = 1_000;

/// The timeline as a trace file.
pub fn render(t: &Timeline) -> TraceFile {
    let mut b = Builder::default();
    for ep in &t.episodes {
        b.episode(ep);
    }
    let mut unlinked = 0;
    for w in &t.waiters {
        if !b.waiter(w) {
            unlinked += 1;
        }
    }
    b.events.sort_by(|x, y| {
        x.ts.unwrap_or(0.0)
            .total_cmp(&y.ts.unwrap_or(0.0))
            .then(order(x).cmp(&order(y)))
    });
    let mut events = Vec::new();
    for (pid, comm) in &b.processes {
        events.push(with(
            meta("process_name", *pid, *pid),
            json!({"name": comm}),
        ));
    }
    // A releasing thread that neither faulted nor was read as a holder has no known comm:
    // its track says so rather than being left unnamed.
    let unseen: std::collections::BTreeSet<(u32, u32)> = b
        .events
        .iter()
        .map(|e| (e.pid, e.tid))
        .filter(|t| !b.threads.contains_key(t))
        .collect();
    for (pid, tid) in unseen {
        b.threads.insert((pid, tid), UNSEEN_COMM.to_string());
    }
    for ((pid, tid), comm) in &b.threads {
        events.push(with(
            meta("thread_name", *pid, *tid),
            json!({"name": format!("{comm}[{tid}]")}),
        ));
    }
    events.extend(b.events);
    let LeftOut {
        episodes,
        unfollowed,
        uncontended,
        waiters,
    } = t.left_out;
    TraceFile {
        trace_events: events,
        display_time_unit: "ns".into(),
        other_data: OtherData {
            tool: format!("ttmlat {}", env!("CARGO_PKG_VERSION")),
            clock: "CLOCK_MONOTONIC".into(),
            episodes: t.episodes.len() as u64,
            max_episodes: t.max as u64,
            episodes_left_out: episodes,
            episodes_unfollowed: unfollowed,
            uncontended_left_out: uncontended,
            waiters_left_out: waiters,
            waiters_unlinked: unlinked,
        },
    }
}

fn meta(what: &str, pid: u32, tid: u32) -> TraceEvent {
    TraceEvent {
        name: what.into(),
        cat: String::new(),
        ph: "M".into(),
        ts: None,
        dur: None,
        pid,
        tid,
        id: None,
        bp: None,
        args: Map::new(),
    }
}

/// Writes the file atomically (compact JSON: a timeline can hold many thousand slices).
pub fn write(t: &Timeline, path: &std::path::Path) -> Result<()> {
    crate::recording::write_json_atomically(path, &render(t), false, "the timeline")
}
