//! The one place that turns the probes' records into attempts and episodes. Every sink (the
//! aggregation behind the terminal report and the recording, and `serve`'s Prometheus
//! metrics) takes [`Step`]s from here instead of reading attempt flags itself.
//!
//! An episode is a fault from its first handler entry to the attempt that does not return
//! RETRY; its path is folded from its attempts' paths ([`episode_path`]). Open episodes are
//! followed per thread, bounded.

use std::collections::HashMap;

use probe_common::{
    AbandonedEvent, AttemptEvent, COMM_LEN, DRIVER_LEN, attempt_flag, attempt_kind, fault_flag,
    trylock,
};

use crate::{
    attribution::{AttemptPath, EpisodePath, attempt_path, episode_path},
    events::{QuietEpisodes, Record},
};

/// Threads with an episode in flight; beyond this (only if episode ends were lost) the
/// in-flight paths are dropped rather than grown without bound.
pub const MAX_OPEN_EPISODES: usize = 65536;

/// One attempt, decoded once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptFacts {
    pub path: AttemptPath,
    pub tgid: u32,
    pub comm: [u8; COMM_LEN],
    pub driver: [u8; DRIVER_LEN],
    /// Attempts this stands for (quiet counts stand for many).
    pub count: u64,
    /// FAULT_FLAG_TRIED was set: a retried attempt.
    pub tried: bool,
    /// A first fault attempt that found the reservation contended.
    pub contended_first: bool,
    /// It waited for the reservation holding mmap_lock.
    pub waited_held: bool,
    /// A first fault attempt that waited holding mmap_lock (blocking kernels).
    pub held_untried: bool,
    /// A return probe was missed inside it.
    pub unbalanced: bool,
    /// The reservation holder (tgid, comm), when it was read.
    pub holder: Option<(u32, [u8; COMM_LEN])>,
    /// `STACKS` id of the holder's stack at release (`--holder-stack`).
    pub holder_stack: Option<i32>,
}

/// The reservation holder a contended attempt found (the ww_mutex owner at trylock failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holder {
    pub tgid: u32,
    pub tid: u32,
    pub comm: [u8; COMM_LEN],
}

impl Holder {
    /// `comm[tid]`: the name of the holder's track on the timeline, and of the holder in
    /// exemplars and recordings.
    pub fn label(&self) -> String {
        format!("{}[{}]", crate::events::cstr(&self.comm), self.tid)
    }
}

/// One episode that ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpisodeEnd {
    /// 1-based number of the episodes the probes sent one by one, in the order they ended
    /// (the id the timeline shows); 0 for quiet episodes counted in the kernel.
    pub id: u64,
    pub path: EpisodePath,
    /// The reservation holder its last contended attempt found, when read.
    pub holder: Option<Holder>,
    /// The faulting thread (0 for quiet episodes: the kernel counts them per process).
    pub tid: u32,
    /// When it ended, CLOCK_MONOTONIC ns (its last attempt's end; 0 for quiet episodes).
    pub end_ns: u64,
    pub tgid: u32,
    pub comm: [u8; COMM_LEN],
    /// The driver of its attempts (the last one's).
    pub driver: [u8; DRIVER_LEN],
    /// Episodes this stands for.
    pub count: u64,
    /// End to end; `None` for an abandoned episode (it never completed).
    pub latency_ns: Option<u64>,
    pub retries: u64,
    pub wait_held_ns: u64,
    pub wait_dropped_ns: u64,
    pub collateral_ns: u64,
    pub pre_lock_wait_ns: u64,
}

/// What one record means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub attempt: Option<AttemptFacts>,
    pub ended: Option<EpisodeEnd>,
}

#[derive(Clone, Debug, Default)]
struct Open {
    paths: Vec<AttemptPath>,
    driver: [u8; DRIVER_LEN],
    /// The holder of the last attempt that read one.
    holder: Option<Holder>,
}

/// Follows open episodes per thread.
#[derive(Clone, Debug, Default)]
pub struct Episodes {
    open: HashMap<u32, Open>,
    ended: u64,
}

impl Episodes {
    /// The next episode id (see [`EpisodeEnd::id`]).
    pub fn take_id(&mut self) -> u64 {
        self.ended += 1;
        self.ended
    }

    /// The attempt and episode facts of `rec` (waiter records have none).
    pub fn step(&mut self, rec: &Record) -> Step {
        match rec {
            Record::Attempt(a) => self.attempt(a),
            Record::Quiet(q) => quiet(q),
            Record::Abandoned(a) => Step {
                attempt: None,
                ended: Some(self.abandoned(a)),
            },
            Record::Waiter(_) => Step::default(),
        }
    }

    fn attempt(&mut self, a: &AttemptEvent) -> Step {
        let path = attempt_path(a);
        let tried = a.vmf_flags & fault_flag::TRIED != 0;
        let fault = a.attempt_kind == attempt_kind::FAULT;
        let waited_held = a.flags & attempt_flag::WAITED_HELD != 0;
        let facts = AttemptFacts {
            path,
            tgid: a.tgid,
            comm: a.comm,
            driver: a.driver,
            count: 1,
            tried,
            contended_first: fault && !tried && (path.contended() || a.trylock == trylock::FAILED),
            waited_held,
            held_untried: fault && !tried && waited_held,
            unbalanced: a.flags & attempt_flag::UNBALANCED != 0,
            holder: (a.flags & attempt_flag::HOLDER_KNOWN != 0)
                .then_some((a.holder_tgid, a.holder_comm)),
            holder_stack: (a.holder_stack_id >= 0).then_some(a.holder_stack_id),
        };
        let end = a.flags & attempt_flag::EPISODE_END != 0;
        let holder_here = (a.flags & attempt_flag::HOLDER_KNOWN != 0).then_some(Holder {
            tgid: a.holder_tgid,
            tid: a.holder_tid,
            comm: a.holder_comm,
        });
        let (ep, holder) = if a.attempt <= 1 && end {
            // A one-attempt episode (the common case): no per-thread bookkeeping.
            self.open.remove(&a.tid);
            (episode_path(&[path]), holder_here)
        } else {
            if self.open.len() >= MAX_OPEN_EPISODES && !self.open.contains_key(&a.tid) {
                self.open.clear();
            }
            let open = self.open.entry(a.tid).or_default();
            if a.attempt <= 1 {
                open.paths.clear();
            }
            open.paths.push(path);
            open.driver = a.driver;
            open.holder = holder_here.or(open.holder);
            if !end {
                return Step {
                    attempt: Some(facts),
                    ended: None,
                };
            }
            let open = self.open.remove(&a.tid).unwrap_or_default();
            (episode_path(&open.paths), open.holder)
        };
        Step {
            attempt: Some(facts),
            ended: Some(EpisodeEnd {
                id: self.take_id(),
                path: ep,
                holder,
                tid: a.tid,
                end_ns: a.attempt_end_ns,
                tgid: a.tgid,
                comm: a.comm,
                driver: a.driver,
                count: 1,
                latency_ns: Some(a.attempt_end_ns.saturating_sub(a.episode_start_ns)),
                retries: u64::from(a.attempt.saturating_sub(1)),
                wait_held_ns: a.ep_wait_held_ns,
                wait_dropped_ns: a.ep_wait_dropped_ns,
                collateral_ns: a.ep_collateral_ns,
                pre_lock_wait_ns: a.pre_lock_wait_ns,
            }),
        }
    }

    fn abandoned(&mut self, a: &AbandonedEvent) -> EpisodeEnd {
        let open = self.open.remove(&a.tid).unwrap_or_default();
        EpisodeEnd {
            id: self.take_id(),
            path: EpisodePath::RetryNoHandler,
            holder: open.holder,
            tid: a.tid,
            end_ns: a.last_attempt_end_ns,
            tgid: a.tgid,
            comm: a.comm,
            driver: open.driver,
            count: 1,
            latency_ns: None,
            retries: u64::from(a.attempts.saturating_sub(1)),
            wait_held_ns: a.ep_wait_held_ns,
            wait_dropped_ns: a.ep_wait_dropped_ns,
            collateral_ns: a.ep_collateral_ns,
            pre_lock_wait_ns: 0,
        }
    }
}

/// Quiet episodes counted by the probes: one uncontended attempt each.
fn quiet(q: &QuietEpisodes) -> Step {
    Step {
        attempt: Some(AttemptFacts {
            path: AttemptPath::Uncontended,
            tgid: q.tgid,
            comm: q.comm,
            driver: q.driver,
            count: q.count,
            tried: false,
            contended_first: false,
            waited_held: false,
            held_untried: false,
            unbalanced: false,
            holder: None,
            holder_stack: None,
        }),
        ended: Some(EpisodeEnd {
            id: 0,
            holder: None,
            tid: 0,
            end_ns: 0,
            path: EpisodePath::Uncontended,
            tgid: q.tgid,
            comm: q.comm,
            driver: q.driver,
            count: q.count,
            latency_ns: Some(q.latency_ns),
            retries: 0,
            wait_held_ns: 0,
            wait_dropped_ns: 0,
            collateral_ns: 0,
            pre_lock_wait_ns: 0,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_common::{EventKind, vm_fault};

    fn attempt(tid: u32, n: u16, flags: u32, ret: u32, end: u64) -> Record {
        // SAFETY: AttemptEvent is plain integers and byte arrays; all-zero is valid.
        let mut a: AttemptEvent = unsafe { std::mem::zeroed() };
        a.kind = EventKind::Attempt as u32;
        a.flags = flags | attempt_flag::RESERVE_CALLED;
        a.tid = tid;
        a.tgid = 9;
        a.attempt = n;
        a.ret = ret;
        a.attempt_kind = attempt_kind::FAULT;
        a.trylock = trylock::FAILED;
        a.vmf_flags = if n > 1 { fault_flag::TRIED } else { 0 };
        a.attempt_end_ns = end;
        a.driver = *b"amdgpu\0\0\0\0\0\0\0\0\0\0";
        Record::Attempt(a)
    }

    #[test]
    fn a_retried_fault_is_one_episode_and_an_abandoned_one_keeps_its_driver() {
        use attempt_flag as af;
        let mut e = Episodes::default();
        let first = e.step(&attempt(
            1,
            1,
            af::DROPPED_IN_RESERVE | af::WAITED_DROPPED,
            vm_fault::RETRY,
            10,
        ));
        let a = first.attempt.expect("an attempt");
        assert_eq!(
            (a.path, a.contended_first, a.tried),
            (AttemptPath::RetryDropped, true, false)
        );
        assert_eq!(first.ended, None);
        let second = e.step(&attempt(1, 2, af::WAITED_HELD | af::EPISODE_END, 0, 30));
        let end = second.ended.expect("episode ended");
        assert_eq!(
            (end.path, end.retries, end.latency_ns),
            (EpisodePath::RetryThenHeld, 1, Some(30))
        );
        assert!(
            second
                .attempt
                .is_some_and(|a| a.waited_held && a.tried && !a.held_untried)
        );
        // RETRY, then the thread exits (or takes a new first fault) before any retry reaches a
        // TTM handler: retry-no-handler, not timed, with the driver of its attempt.
        e.step(&attempt(2, 1, af::DROPPED_IN_RESERVE, vm_fault::RETRY, 5));
        // SAFETY: as above.
        let mut gone: AbandonedEvent = unsafe { std::mem::zeroed() };
        gone.tid = 2;
        gone.attempts = 1;
        let end = e.step(&Record::Abandoned(gone)).ended.expect("closed");
        assert_eq!(
            (end.path, end.latency_ns, end.retries),
            (EpisodePath::RetryNoHandler, None, 0)
        );
        assert_eq!(&end.driver[..6], b"amdgpu");
        assert!(e.open.is_empty());
    }
}
