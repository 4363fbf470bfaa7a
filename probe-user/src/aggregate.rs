//! Aggregation of decoded records into HdrHistograms (1 ns .. 60 s, 3 significant digits) per
//! metric and path, plus counts, holders and stalled waiters.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::{
    attribution::{AttemptPath, EpisodePath},
    episodes::{AttemptFacts, EpisodeEnd, Episodes},
    events::{Record, cstr},
};

pub const HIST_LOW: u64 = 1;
pub const HIST_HIGH: u64 = 60_000_000_000;
pub const HIST_SIGFIG: u8 = 3;

pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; a failure here is a programming error
    // caught by the unit tests, not something input can cause.
    Histogram::new_with_bounds(HIST_LOW, HIST_HIGH, HIST_SIGFIG).expect("valid histogram bounds")
}

/// What a histogram measures. Values are nanoseconds except `Retries` (a count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// First handler entry to the end of the completing attempt, by episode path.
    EpisodeLatency,
    /// Reservation wait with mmap_lock held, per episode (episodes that waited held).
    WaitHeld,
    /// Reservation wait after mmap_lock was dropped, per episode.
    WaitDropped,
    /// Other tasks' time waiting on this mm's mmap_lock during the episode's held waits.
    CollateralStall,
    /// Retries per episode (attempts − 1).
    Retries,
    /// Per waiting task: part of its mmap_lock wait covered by a held reservation wait.
    WaiterStall,
    /// mmap_lock wait of the faulting thread right before its first TTM handler entry
    /// (episodes that queued behind a writer).
    PreLockWait,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::EpisodeLatency,
        Metric::WaitHeld,
        Metric::WaitDropped,
        Metric::CollateralStall,
        Metric::Retries,
        Metric::WaiterStall,
        Metric::PreLockWait,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::EpisodeLatency => "episode_latency",
            Metric::WaitHeld => "wait_held",
            Metric::WaitDropped => "wait_dropped",
            Metric::CollateralStall => "collateral_stall",
            Metric::Retries => "retries",
            Metric::WaiterStall => "waiter_stall",
            Metric::PreLockWait => "pre_lock_wait",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    pub fn is_time(self) -> bool {
        !matches!(self, Metric::Retries)
    }
}

/// Key of a histogram: metric and class (an episode path name, or "all").
pub type HistKey = (Metric, String);

/// Per-task collateral: how long a task was stalled on mmap_lock by held reservation waits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaiterTotals {
    pub tgid: u32,
    pub comm: String,
    pub waits: u64,
    pub wait_ns: u64,
    pub held_overlap_ns: u64,
}

/// A reservation holder's kernel stack when it released a reservation faults waited for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderStack {
    pub tgid: u32,
    pub comm: String,
    /// Waits this release ended.
    pub count: u64,
    /// Innermost first, "function+0xoff [module]".
    pub frames: Vec<String>,
}

/// Reservation holders seen at trylock failure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderCount {
    pub tgid: u32,
    pub comm: String,
    pub count: u64,
}

/// Per process (thread group): lets a user, or a test, look at one workload.
#[derive(Clone, Debug)]
pub struct ProcessTotals {
    pub comm: String,
    pub episodes: u64,
    pub attempts: u64,
    pub attempt_paths: BTreeMap<AttemptPath, u64>,
    pub episode_paths: BTreeMap<EpisodePath, u64>,
    pub episode_latency: Histogram<u64>,
}

impl Default for ProcessTotals {
    fn default() -> Self {
        Self {
            comm: String::new(),
            episodes: 0,
            attempts: 0,
            attempt_paths: BTreeMap::new(),
            episode_paths: BTreeMap::new(),
            episode_latency: new_histogram(),
        }
    }
}

/// Processes tracked individually; the rest are summed under tgid 0.
pub const MAX_PROCESSES: usize = 256;
/// Waiting tasks tracked individually; the rest are summed under tid 0.
pub const MAX_WAITERS: usize = 4096;
/// Distinct holders (and holder stacks) kept; the rest are summed under tgid 0 "(other)".
pub const MAX_HOLDERS: usize = 1024;

/// `key` if the map already has it or has room, else the catch-all `other`: every map that
/// is keyed by something the kernel or the workload chooses stays bounded.
/// The bytes of a NUL-padded kernel string up to its first NUL.
fn nul_trimmed(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

fn bounded<K>(len: usize, has: bool, cap: usize, key: K, other: K) -> K {
    if has || len < cap { key } else { other }
}

#[derive(Clone, Debug)]
pub struct Aggregate {
    pub histograms: BTreeMap<HistKey, Histogram<u64>>,
    pub episodes: BTreeMap<EpisodePath, u64>,
    pub attempts: BTreeMap<AttemptPath, u64>,
    /// Attempts carrying FAULT_FLAG_TRIED.
    pub tried_attempts: u64,
    /// Episodes without a completing attempt (path retry-no-handler; ttmlat 0.1 called them
    /// abandoned): counted by path in `episodes`, not timed.
    pub retry_no_handler: u64,
    pub waiter_records: u64,
    pub unbalanced: u64,
    pub drivers: BTreeSet<String>,
    /// Per waiting task (tid).
    pub waiters: BTreeMap<u32, WaiterTotals>,
    holders: HashMap<(u32, String), u64>,
    /// (holder tgid, holder comm, STACKS id) → waits it ended (`--holder-stack`).
    pub holder_stacks: HashMap<(u32, String, i32), u64>,
    /// Episodes still open, by tid.
    tracker: Episodes,
    /// Per process (tgid), at most MAX_PROCESSES (+ tgid 0 for the rest).
    pub processes: BTreeMap<u32, ProcessTotals>,
    /// First attempts (no FAULT_FLAG_TRIED) that found the reservation contended, by path.
    pub contended_first_attempts: BTreeMap<AttemptPath, u64>,
    /// Fault attempts without FAULT_FLAG_TRIED that waited with mmap_lock held.
    pub held_waits_untried: u64,
    /// The slowest episodes one by one, with their ids.
    pub slowest: crate::slowest::Slowest,
}

impl Default for Aggregate {
    fn default() -> Self {
        Self::new()
    }
}

impl Aggregate {
    pub fn new() -> Self {
        Self {
            histograms: BTreeMap::new(),
            episodes: BTreeMap::new(),
            attempts: BTreeMap::new(),
            tried_attempts: 0,
            retry_no_handler: 0,
            waiter_records: 0,
            unbalanced: 0,
            drivers: BTreeSet::new(),
            waiters: BTreeMap::new(),
            holders: HashMap::new(),
            holder_stacks: HashMap::new(),
            tracker: Episodes::default(),
            processes: BTreeMap::new(),
            contended_first_attempts: BTreeMap::new(),
            held_waits_untried: 0,
            slowest: crate::slowest::Slowest::default(),
        }
    }

    fn process(&mut self, tgid: u32, comm: &[u8]) -> &mut ProcessTotals {
        let key = if self.processes.contains_key(&tgid) || self.processes.len() < MAX_PROCESSES {
            tgid
        } else {
            0
        };
        let p = self.processes.entry(key).or_default();
        if p.comm.is_empty() {
            p.comm = if key == 0 {
                "(other)".into()
            } else {
                cstr(comm)
            };
        }
        p
    }

    fn record(&mut self, metric: Metric, class: &str, value: u64) {
        self.record_n(metric, class, value, 1);
    }

    fn record_n(&mut self, metric: Metric, class: &str, value: u64, n: u64) {
        // Per record: find the histogram without allocating a key (String::new() does not
        // allocate; a metric has a handful of classes).
        let existing = self
            .histograms
            .range_mut((metric, String::new())..)
            .take_while(|((m, _), _)| *m == metric)
            .find(|((_, c), _)| c == class)
            .map(|(_, h)| h);
        let h = match existing {
            Some(h) => h,
            None => self
                .histograms
                .entry((metric, class.to_string()))
                .or_insert_with(new_histogram),
        };
        // Within the histogram's bounds (clamped): cannot fail.
        let _ = h.record_n(value.min(HIST_HIGH), n);
    }

    pub fn add(&mut self, rec: &Record) {
        if let Record::Waiter(w) = rec {
            self.waiter_records += 1;
            let wait = w.end_ns.saturating_sub(w.begin_ns);
            let tid = bounded(
                self.waiters.len(),
                self.waiters.contains_key(&w.tid),
                MAX_WAITERS,
                w.tid,
                0,
            );
            let t = self.waiters.entry(tid).or_default();
            t.tgid = if tid == 0 { 0 } else { w.tgid };
            t.comm = if tid == 0 {
                "(other)".into()
            } else {
                cstr(&w.comm)
            };
            t.waits += 1;
            t.wait_ns += wait;
            t.held_overlap_ns += w.held_overlap_ns;
            if w.held_overlap_ns > 0 {
                self.record(Metric::WaiterStall, "all", w.held_overlap_ns);
            }
            return;
        }
        let step = self.tracker.step(rec);
        if let Some(a) = &step.attempt {
            self.add_attempt(a);
        }
        if let Some(e) = &step.ended {
            self.add_episode(e);
        }
    }

    fn add_driver(&mut self, driver: &[u8]) {
        if driver[0] != 0
            && !self
                .drivers
                .iter()
                .any(|d| d.as_bytes() == nul_trimmed(driver))
        {
            self.drivers.insert(cstr(driver));
        }
    }

    fn add_attempt(&mut self, a: &AttemptFacts) {
        let n = a.count;
        *self.attempts.entry(a.path).or_default() += n;
        let proc_totals = self.process(a.tgid, &a.comm);
        proc_totals.attempts += n;
        *proc_totals.attempt_paths.entry(a.path).or_default() += n;
        if a.tried {
            self.tried_attempts += n;
        }
        if a.contended_first {
            *self.contended_first_attempts.entry(a.path).or_default() += n;
        }
        if a.held_untried {
            self.held_waits_untried += n;
        }
        if a.unbalanced {
            self.unbalanced += n;
        }
        self.add_driver(&a.driver);
        if let Some((tgid, comm)) = a.holder {
            let key = (tgid, cstr(&comm));
            let key = bounded(
                self.holders.len(),
                self.holders.contains_key(&key),
                MAX_HOLDERS,
                key,
                (0, "(other)".to_string()),
            );
            *self.holders.entry(key).or_default() += n;
        }
        if let Some(id) = a.holder_stack {
            let (tgid, comm) = a.holder.unwrap_or_default();
            let key = (tgid, cstr(&comm), id);
            let key = bounded(
                self.holder_stacks.len(),
                self.holder_stacks.contains_key(&key),
                MAX_HOLDERS,
                key,
                (0, "(other)".to_string(), -1),
            );
            *self.holder_stacks.entry(key).or_default() += n;
        }
    }

    fn add_episode(&mut self, e: &EpisodeEnd) {
        self.slowest.offer(e);
        let n = e.count;
        *self.episodes.entry(e.path).or_default() += n;
        let Some(latency) = e.latency_ns else {
            // retry-no-handler: it never completed in a TTM handler, so it has no latency and
            // no totals; the process's paths still count it.
            self.retry_no_handler += n;
            *self
                .process(e.tgid, &e.comm)
                .episode_paths
                .entry(e.path)
                .or_default() += n;
            return;
        };
        let class = e.path.name();
        let proc_totals = self.process(e.tgid, &e.comm);
        proc_totals.episodes += n;
        *proc_totals.episode_paths.entry(e.path).or_default() += n;
        let _ = proc_totals
            .episode_latency
            .record_n(latency.min(HIST_HIGH), n);
        self.record_n(Metric::EpisodeLatency, class, latency, n);
        self.record_n(Metric::Retries, class, e.retries, n);
        for (metric, ns) in [
            (Metric::WaitHeld, e.wait_held_ns),
            (Metric::WaitDropped, e.wait_dropped_ns),
            (Metric::CollateralStall, e.collateral_ns),
            (Metric::PreLockWait, e.pre_lock_wait_ns),
        ] {
            if ns > 0 {
                self.record_n(metric, class, ns, n);
            }
        }
    }

    pub fn episodes_total(&self) -> u64 {
        self.episodes.values().sum()
    }

    pub fn attempts_total(&self) -> u64 {
        self.attempts.values().sum()
    }

    /// Counts `count` trylock failures against holder (tgid, comm) (from a recording).
    pub fn add_holder(&mut self, tgid: u32, comm: &str, count: u64) {
        *self.holders.entry((tgid, comm.to_string())).or_default() += count;
    }

    /// Holders, most frequent first.
    pub fn holders(&self) -> Vec<HolderCount> {
        let mut v: Vec<HolderCount> = self
            .holders
            .iter()
            .map(|((tgid, comm), count)| HolderCount {
                tgid: *tgid,
                comm: comm.clone(),
                count: *count,
            })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then(a.tgid.cmp(&b.tgid)));
        v
    }

    /// The histogram of `metric` over all classes.
    pub fn merged(&self, metric: Metric) -> Histogram<u64> {
        let mut h = new_histogram();
        for ((m, _), hist) in &self.histograms {
            if *m == metric {
                // Same bounds everywhere: add cannot fail.
                let _ = h.add(hist);
            }
        }
        h
    }

    /// Merges another aggregate (interval → total, recordings → one). Histograms that do not
    /// add (different resolutions) are an error, not dropped.
    pub fn merge(&mut self, other: &Aggregate) -> anyhow::Result<()> {
        let adds = |what: String, r: Result<(), hdrhistogram::AdditionError>| {
            r.map_err(|e| anyhow::anyhow!("{what}: histograms do not add up: {e}"))
        };
        for (k, h) in &other.histograms {
            let into = self
                .histograms
                .entry(k.clone())
                .or_insert_with(new_histogram);
            adds(format!("{}/{}", k.0.name(), k.1), into.add(h))?;
        }
        for (k, v) in &other.episodes {
            *self.episodes.entry(*k).or_default() += v;
        }
        for (k, v) in &other.attempts {
            *self.attempts.entry(*k).or_default() += v;
        }
        for (tgid, p) in &other.processes {
            let mine = self.process(*tgid, p.comm.as_bytes());
            mine.episodes += p.episodes;
            mine.attempts += p.attempts;
            for (k, v) in &p.attempt_paths {
                *mine.attempt_paths.entry(*k).or_default() += v;
            }
            for (k, v) in &p.episode_paths {
                *mine.episode_paths.entry(*k).or_default() += v;
            }
            adds(
                format!("process {tgid}"),
                mine.episode_latency.add(&p.episode_latency),
            )?;
        }
        for (k, v) in &other.contended_first_attempts {
            *self.contended_first_attempts.entry(*k).or_default() += v;
        }
        self.held_waits_untried += other.held_waits_untried;
        self.slowest.merge(&other.slowest);
        self.tried_attempts += other.tried_attempts;
        self.retry_no_handler += other.retry_no_handler;
        self.waiter_records += other.waiter_records;
        self.unbalanced += other.unbalanced;
        self.drivers.extend(other.drivers.iter().cloned());
        for (tid, w) in &other.waiters {
            let tid = bounded(
                self.waiters.len(),
                self.waiters.contains_key(tid),
                MAX_WAITERS,
                *tid,
                0,
            );
            let t = self.waiters.entry(tid).or_default();
            t.tgid = if tid == 0 { 0 } else { w.tgid };
            t.comm = if tid == 0 {
                "(other)".into()
            } else {
                w.comm.clone()
            };
            t.waits += w.waits;
            t.wait_ns += w.wait_ns;
            t.held_overlap_ns += w.held_overlap_ns;
        }
        for (k, v) in &other.holders {
            let k = bounded(
                self.holders.len(),
                self.holders.contains_key(k),
                MAX_HOLDERS,
                k.clone(),
                (0, "(other)".to_string()),
            );
            *self.holders.entry(k).or_default() += v;
        }
        for (k, v) in &other.holder_stacks {
            let k = bounded(
                self.holder_stacks.len(),
                self.holder_stacks.contains_key(k),
                MAX_HOLDERS,
                k.clone(),
                (0, "(other)".to_string(), -1),
            );
            *self.holder_stacks.entry(k).or_default() += v;
        }
        Ok(())
    }

    /// Clears counts and histograms but keeps open episodes (interval reset for `live`).
    pub fn take_interval(&mut self) -> Aggregate {
        let tracker = std::mem::take(&mut self.tracker);
        let out = std::mem::take(self);
        self.tracker = tracker;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::attempt_path;
    use probe_common::{
        AttemptEvent, EventKind, attempt_flag, attempt_kind, fault_flag, trylock, vm_fault,
    };

    fn attempt(tid: u32, n: u16, flags: u32, ret: u32, start: u64, end: u64) -> Record {
        Record::Attempt(AttemptEvent {
            kind: EventKind::Attempt as u32,
            flags,
            tid,
            tgid: 100,
            episode_start_ns: start,
            attempt_start_ns: start,
            attempt_end_ns: end,
            mm: 1,
            resv: 0,
            wait_held_ns: 0,
            wait_dropped_ns: 0,
            fence_drop_ns: 0,
            collateral_ns: 0,
            ep_wait_held_ns: 0,
            ep_wait_dropped_ns: 500,
            ep_collateral_ns: 0,
            pre_lock_wait_ns: 0,
            vmf_flags: if n > 1 { fault_flag::TRIED } else { 0 },
            ret,
            reserve_ret: 0,
            wait_ret: 0,
            attempt: n,
            waits: 0,
            collateral_waiters: 0,
            attempt_kind: attempt_kind::FAULT,
            trylock: trylock::ACQUIRED,
            holder_tid: 0,
            holder_tgid: 0,
            holder_comm: [0; 16],
            comm: [0; 16],
            driver: *b"bochs\0\0\0\0\0\0\0\0\0\0\0",
            holder_stack_id: -1,
            ..Default::default()
        })
    }

    /// A quiet-episode count is aggregated as the same number of one-attempt uncontended
    /// episodes sent as records (latency within the bucket's 1.6 %).
    #[test]
    fn quiet_counts_aggregate_like_their_records() {
        use attempt_flag as af;
        let (mut from_records, mut from_counts) = (Aggregate::new(), Aggregate::new());
        let flags = af::RESERVE_CALLED | af::EPISODE_END;
        let mut counts = std::collections::HashMap::new();
        for (i, latency) in [40_000u64, 41_000, 2_000_000].into_iter().enumerate() {
            let Record::Attempt(mut a) = attempt(
                i as u32 + 1,
                1,
                flags,
                vm_fault::NOPAGE,
                1_000,
                1_000 + latency,
            ) else {
                unreachable!()
            };
            a.ep_wait_dropped_ns = 0;
            assert_eq!(attempt_path(&a), AttemptPath::Uncontended);
            from_records.add(&Record::Attempt(a));
            let key = probe_common::QuietKey {
                tgid: a.tgid,
                bucket: probe_common::latency_bucket(latency),
                comm: a.comm,
                driver: a.driver,
            };
            *counts.entry(key).or_insert(0) += 1;
        }
        let (records, bad) = crate::events::quiet_since(&counts, &mut Default::default());
        assert_eq!(bad, 0);
        for r in &records {
            from_counts.add(r);
        }
        assert_eq!(from_counts.episodes, from_records.episodes);
        assert_eq!(from_counts.attempts, from_records.attempts);
        assert_eq!(from_counts.drivers, from_records.drivers);
        let (p, q) = (&from_counts.processes[&100], &from_records.processes[&100]);
        assert_eq!((p.episodes, p.attempts), (q.episodes, q.attempts));
        assert_eq!(p.episode_paths, q.episode_paths);
        let keys = |a: &Aggregate| a.histograms.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&from_counts), keys(&from_records));
        for (k, h) in &from_records.histograms {
            let g = &from_counts.histograms[k];
            assert_eq!(g.len(), h.len(), "{k:?}");
            for q in [0.0, 0.5, 1.0] {
                let (a, b) = (g.value_at_quantile(q) as f64, h.value_at_quantile(q) as f64);
                assert!((a - b).abs() <= b * 0.017 + 1.0, "{k:?} q{q}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn histogram_bounds_are_valid() {
        let mut h = new_histogram();
        h.saturating_record(HIST_HIGH * 2);
        assert!(h.max() >= HIST_HIGH);
    }

    #[test]
    fn a_retry_episode_is_counted_once_with_its_full_latency() {
        use attempt_flag as af;
        let mut agg = Aggregate::new();
        agg.add(&attempt(
            7,
            1,
            af::RESERVE_CALLED | af::DROPPED_IN_RESERVE | af::WAITED_DROPPED,
            vm_fault::RETRY,
            1_000,
            5_000,
        ));
        assert_eq!(agg.episodes_total(), 0, "episode still open after RETRY");
        agg.add(&attempt(
            7,
            2,
            af::RESERVE_CALLED | af::EPISODE_END,
            vm_fault::NOPAGE,
            1_000,
            9_000,
        ));
        assert_eq!(agg.episodes.get(&EpisodePath::Retry), Some(&1));
        assert_eq!(agg.attempts_total(), 2);
        assert_eq!(agg.tried_attempts, 1);
        let lat = &agg.histograms[&(Metric::EpisodeLatency, "retry".to_string())];
        assert_eq!(lat.len(), 1);
        assert!(lat.value_at_quantile(0.5).abs_diff(8_000) <= 8);
        assert_eq!(agg.drivers.iter().next().map(String::as_str), Some("bochs"));
    }

    #[test]
    fn interval_take_keeps_open_episodes() {
        use attempt_flag as af;
        let mut agg = Aggregate::new();
        agg.add(&attempt(
            7,
            1,
            af::RESERVE_CALLED | af::DROPPED_IN_RESERVE,
            vm_fault::RETRY,
            0,
            10,
        ));
        let first = agg.take_interval();
        assert_eq!(first.attempts_total(), 1);
        agg.add(&attempt(
            7,
            2,
            af::RESERVE_CALLED | af::EPISODE_END,
            0,
            0,
            20,
        ));
        assert_eq!(agg.episodes.get(&EpisodePath::Retry), Some(&1));
        let mut total = first.clone();
        total.merge(&agg).expect("merge");
        assert_eq!(total.attempts_total(), 2);
        assert_eq!(total.episodes_total(), 1);
    }
}
