//! `--timeline FILE`: every episode that contended, retried, waited or stalled someone, one
//! by one and in time order, as a Chrome trace-event file (Perfetto UI, chrome://tracing).
//!
//! A sink of the session ([`RecordSink`]): it takes the same records as the aggregation, folds
//! them into attempts and episodes with the same tracker ([`Episodes`]), and keeps the raw
//! timestamps the histograms drop. What is drawn ([`trace`]):
//! * a track per thread (`comm[tid]`, grouped by process), an episode slice with its path and
//!   id, an attempt slice per attempt with its path;
//! * inside an attempt its last reservation wait (held or dropped; the kernel record carries
//!   the last wait's start and end, earlier waits of a multi-wait attempt only in its sums);
//! * the fault's own mmap_lock wait before the handler (`pre_lock_wait`);
//! * with `--holder-stack`, the holder's release on the holder's track and an arrow from it to
//!   the wake-up; the holder's hold as an async slice from the fault finding the buffer
//!   reserved to that release (when it began is not observed);
//! * the stalled tasks' mmap_lock waits on their tracks and an arrow from each held wait to
//!   each wait it overlapped.
//!
//! Bounded: at most `--timeline-max` episodes (and 8 stalled waits per episode kept); what
//! was left out is counted in the file.

pub mod svg;
pub mod trace;

use std::{collections::HashMap, path::PathBuf};

use anyhow::Result;
use probe_common::{AttemptEvent, WaiterEvent, attempt_flag};

use crate::{
    attribution::{AttemptPath, EpisodePath, attempt_path},
    episodes::{EpisodeEnd, Episodes, MAX_OPEN_EPISODES},
    events::Record,
    session::RecordSink,
};

/// `record`/`bench` options of the timeline.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TimelineArgs {
    /// Also write the episodes that contended, retried, waited or stalled someone as a Chrome
    /// trace-event JSON file (open it in the Perfetto UI or chrome://tracing). Written
    /// atomically at the end, like the recording.
    #[arg(long, value_name = "FILE")]
    pub timeline: Option<PathBuf>,
    /// Most episodes the timeline keeps; later ones are counted as left out.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub timeline_max: usize,
    /// Keep uncontended episodes too (within --timeline-max). They are then sent by the
    /// probes one by one instead of counted in the kernel, which costs more per fault.
    #[arg(long, requires = "timeline")]
    pub timeline_uncontended: bool,
}

impl TimelineArgs {
    /// The collector, when a timeline was asked for.
    pub fn sink(&self) -> Option<Timeline> {
        self.timeline
            .is_some()
            .then(|| Timeline::new(self.timeline_max, self.timeline_uncontended))
    }

    /// Fails before tracing if the file cannot be written.
    pub fn check_writable(&self) -> Result<()> {
        self.timeline
            .as_deref()
            .map_or(Ok(()), crate::check_writable)
    }

    /// Writes the file of a session's collector (after the recording: the recording is the
    /// record of the session, the timeline a view of it).
    pub fn write(&self, sink: Option<Timeline>) -> Result<()> {
        if let (Some(path), Some(mut t)) = (&self.timeline, sink) {
            t.finish();
            t.write(path)?;
            let o = &t.left_out;
            eprintln!(
                "ttmlat: timeline of {} episodes written to {} (left out: {} over \
                 --timeline-max, {} not followed to their end, {} uncontended, {} stalled waits)",
                t.episodes.len(),
                path.display(),
                o.episodes,
                o.unfollowed,
                o.uncontended,
                o.waiters
            );
        }
        Ok(())
    }
}

/// Stalled mmap_lock waits kept per kept episode, on average (the bound of the waiter list).
pub const WAITERS_PER_EPISODE: usize = 8;

/// One episode of the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Episode {
    /// [`EpisodeEnd::id`]: 1-based, in the order the episodes the probes sent ended.
    pub id: u64,
    pub path: EpisodePath,
    /// Its attempts with their paths, in order.
    pub attempts: Vec<(AttemptPath, AttemptEvent)>,
    /// Retries that never re-entered a TTM handler (`retry-no-handler`): no end is known.
    pub unfinished: bool,
}

/// What the timeline left out (written into the file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeftOut {
    /// Over `--timeline-max`.
    pub episodes: u64,
    /// Whose attempts could not be followed to their end (a lost episode end, or the
    /// open-episode bound), so there is nothing whole to draw.
    pub unfollowed: u64,
    /// Uncontended, sent one by one or counted in the kernel (quiet counts).
    pub uncontended: u64,
    pub waiters: u64,
}

/// The collector.
#[derive(Debug)]
pub struct Timeline {
    max: usize,
    keep_uncontended: bool,
    tracker: Episodes,
    /// Attempts of the episode in flight, per thread.
    open: HashMap<u32, Vec<(AttemptPath, AttemptEvent)>>,
    pub episodes: Vec<Episode>,
    pub waiters: Vec<WaiterEvent>,
    pub left_out: LeftOut,
}

impl Timeline {
    pub fn new(max: usize, keep_uncontended: bool) -> Self {
        Self {
            max,
            keep_uncontended,
            tracker: Episodes::default(),
            open: HashMap::new(),
            episodes: Vec::new(),
            waiters: Vec::new(),
            left_out: LeftOut::default(),
        }
    }

    /// Episodes still open at the end (their retry is outstanding): kept as unfinished, so
    /// that every attempt the recording counts is on the timeline.
    pub fn finish(&mut self) {
        let mut open: Vec<_> = self.open.drain().collect();
        open.sort_by_key(|(_, a)| a.first().map(|(_, e)| e.attempt_start_ns));
        for (_, attempts) in open {
            let id = self.tracker.take_id();
            self.keep(id, EpisodePath::RetryNoHandler, attempts, true);
        }
    }

    /// Writes the file (atomically).
    pub fn write(&self, path: &std::path::Path) -> Result<()> {
        trace::write(self, path)
    }

    fn keep(
        &mut self,
        id: u64,
        path: EpisodePath,
        attempts: Vec<(AttemptPath, AttemptEvent)>,
        unfinished: bool,
    ) {
        if attempts.is_empty() {
            // Its attempts were dropped (open-episode bound): nothing to draw.
            self.left_out.unfollowed += 1;
            return;
        }
        if !self.keep_uncontended && !interesting(&attempts) {
            self.left_out.uncontended += 1;
            return;
        }
        if self.episodes.len() >= self.max {
            self.left_out.episodes += 1;
            return;
        }
        self.episodes.push(Episode {
            id,
            path,
            attempts,
            unfinished,
        });
    }

    fn attempt(&mut self, a: &AttemptEvent, ended: Option<EpisodeEnd>) {
        if a.attempt <= 1 && self.open.remove(&a.tid).is_some() {
            // A new fault while the thread's last one was open: its end was lost.
            self.left_out.unfollowed += 1;
        }
        let mut attempts = if a.flags & attempt_flag::EPISODE_END != 0 {
            self.open.remove(&a.tid).unwrap_or_default()
        } else {
            if self.open.len() >= MAX_OPEN_EPISODES && !self.open.contains_key(&a.tid) {
                self.left_out.unfollowed += self.open.len() as u64;
                self.open.clear();
            }
            self.open
                .entry(a.tid)
                .or_default()
                .push((attempt_path(a), *a));
            return;
        };
        attempts.push((attempt_path(a), *a));
        if let Some(end) = ended {
            self.keep(end.id, end.path, attempts, false);
        }
    }
}

/// An episode worth drawing: more than one attempt, or one that did not go straight
/// through (contended, waited, queued for mmap_lock, stalled someone).
fn interesting(attempts: &[(AttemptPath, AttemptEvent)]) -> bool {
    attempts.len() > 1
        || attempts.iter().any(|(path, a)| {
            *path != AttemptPath::Uncontended
                || a.waits > 0
                || a.collateral_ns > 0
                || a.pre_lock_wait_ns > 0
        })
}

impl RecordSink for Timeline {
    fn record(&mut self, rec: &Record) {
        let step = self.tracker.step(rec);
        match rec {
            Record::Attempt(a) => self.attempt(a, step.ended),
            Record::Abandoned(a) => {
                let attempts = self.open.remove(&a.tid).unwrap_or_default();
                let id = step.ended.map_or(0, |e| e.id);
                self.keep(id, EpisodePath::RetryNoHandler, attempts, true);
            }
            Record::Waiter(w) if w.held_overlap_ns > 0 => {
                if self.waiters.len() < self.max.saturating_mul(WAITERS_PER_EPISODE) {
                    self.waiters.push(*w);
                } else {
                    self.left_out.waiters += 1;
                }
            }
            // Uncontended episodes the kernel counted instead of sending.
            Record::Quiet(q) => self.left_out.uncontended += q.count,
            Record::Waiter(_) => {}
        }
    }
}

#[cfg(test)]
mod tests;
