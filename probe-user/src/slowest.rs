//! The slowest episodes of a session, one by one: for each episode path and each of the
//! metrics a driver engineer starts from (end-to-end latency, the reservation wait with
//! mmap_lock held, the stall it caused others), the [`PER_SERIES`] slowest episodes with their
//! ids — the ids the `--timeline` file and `/metrics`' exemplars give the same episodes. Kept by
//! the aggregation, stored in the recording, printed by the report.
//!
//! Quiet episodes (counted in the kernel) have no id and are never here. Ids count the
//! episodes of one session, so each entry also names its session (the recording's
//! `meta.start_unix_ns`); a merged recording keeps the slowest of its inputs with theirs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{aggregate::Metric, episodes::EpisodeEnd, events::cstr};

/// Episodes kept per (metric, path).
pub const PER_SERIES: usize = 5;

/// The metrics whose slowest episodes are kept.
pub const METRICS: [Metric; 3] = [
    Metric::EpisodeLatency,
    Metric::WaitHeld,
    Metric::CollateralStall,
];

/// The episode path of that name (series are keyed by it: offering an episode allocates
/// nothing unless it is kept).
fn static_path(name: &str) -> Option<&'static str> {
    crate::attribution::EpisodePath::ALL
        .iter()
        .map(|p| p.name())
        .find(|n| *n == name)
}

/// One slow episode, as stored in the recording.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SlowEpisode {
    /// The metric it is among the slowest of (`episode_latency`, `wait_held`,
    /// `collateral_stall`) and its value.
    pub metric: String,
    pub value_ns: u64,
    /// Its episode path.
    pub path: String,
    /// The episode's id in its session (`episode` in the timeline and in exemplars).
    pub episode: u64,
    /// The session it belongs to: its recording's `meta.start_unix_ns` (null until the
    /// recording is made).
    pub session_start_unix_ns: Option<u128>,
    pub tgid: u32,
    pub tid: u32,
    pub comm: String,
    /// The reservation holder, `comm[tid]`, when it was read.
    pub holder: Option<String>,
    /// When it ended, CLOCK_MONOTONIC ns (the timeline's clock).
    pub end_monotonic_ns: u64,
    /// Its other figures.
    pub latency_ns: u64,
    pub retries: u64,
    pub wait_held_ns: u64,
    pub wait_dropped_ns: u64,
    pub collateral_ns: u64,
}

/// The slowest episodes per (metric, path), slowest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Slowest {
    by_series: BTreeMap<(Metric, &'static str), Vec<SlowEpisode>>,
}

impl Slowest {
    /// Offers an episode that ended; quiet ones (id 0) and untimed ones are not kept.
    pub fn offer(&mut self, e: &EpisodeEnd) {
        let Some(latency_ns) = e.latency_ns else {
            return;
        };
        if e.id == 0 {
            return;
        }
        for metric in METRICS {
            let value_ns = match metric {
                Metric::EpisodeLatency => latency_ns,
                Metric::WaitHeld => e.wait_held_ns,
                _ => e.collateral_ns,
            };
            if value_ns == 0 || !self.would_keep(metric, e.path.name(), value_ns) {
                continue;
            }
            self.insert(SlowEpisode {
                metric: metric.name().to_string(),
                value_ns,
                path: e.path.name().to_string(),
                episode: e.id,
                session_start_unix_ns: None,
                tgid: e.tgid,
                tid: e.tid,
                comm: cstr(&e.comm),
                holder: e.holder.map(|h| h.label()),
                end_monotonic_ns: e.end_ns,
                latency_ns,
                retries: e.retries,
                wait_held_ns: e.wait_held_ns,
                wait_dropped_ns: e.wait_dropped_ns,
                collateral_ns: e.collateral_ns,
            });
        }
    }

    fn would_keep(&self, metric: Metric, path: &'static str, value_ns: u64) -> bool {
        self.by_series
            .get(&(metric, path))
            .is_none_or(|v| v.len() < PER_SERIES || v.last().is_some_and(|l| l.value_ns < value_ns))
    }

    /// Keeps `e` if it is among its series' slowest (an entry whose metric or path is
    /// unknown is ignored: recordings are read by [`Slowest::from_entries`], which says so).
    fn insert(&mut self, e: SlowEpisode) {
        let (Some(metric), Some(path)) = (Metric::from_name(&e.metric), static_path(&e.path))
        else {
            return;
        };
        let v = self.by_series.entry((metric, path)).or_default();
        let at = v.partition_point(|k| k.value_ns >= e.value_ns);
        if at < PER_SERIES {
            v.insert(at, e);
            v.truncate(PER_SERIES);
        }
    }

    /// Adds another's slowest (a merge): the slowest of both are kept.
    pub fn merge(&mut self, other: &Slowest) {
        for e in other.by_series.values().flatten() {
            self.insert(e.clone());
        }
    }

    /// The stored entries, by metric, path and value (slowest first), each named with the
    /// session `session_start_unix_ns` when it has none yet.
    pub fn entries(&self, session_start_unix_ns: u128) -> Vec<SlowEpisode> {
        self.by_series
            .values()
            .flatten()
            .map(|e| SlowEpisode {
                session_start_unix_ns: e.session_start_unix_ns.or(Some(session_start_unix_ns)),
                ..e.clone()
            })
            .collect()
    }

    /// Back from a recording's entries; an unknown metric is an error.
    pub fn from_entries(entries: &[SlowEpisode]) -> anyhow::Result<Self> {
        let mut s = Self::default();
        for e in entries {
            anyhow::ensure!(
                Metric::from_name(&e.metric).is_some_and(|m| METRICS.contains(&m))
                    && static_path(&e.path).is_some(),
                "slowest episode {} has an unknown metric {:?} or path {:?}",
                e.episode,
                e.metric,
                e.path
            );
            s.insert(e.clone());
        }
        Ok(s)
    }

    pub fn is_empty(&self) -> bool {
        self.by_series.is_empty()
    }

    /// The terminal table: per metric, its [`PER_SERIES`] slowest episodes over all paths.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;

        use crate::report::{ns, sanitize};
        if self.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "slowest episodes (ids as in the --timeline file and in /metrics' exemplars):\n",
        );
        let _ = writeln!(
            out,
            "  {:<17} {:>10}  {:>8}  {:<16} {:<24} {:<24} {:>10} {:>7}",
            "metric", "value", "episode", "path", "thread", "holder", "latency", "retries"
        );
        for metric in METRICS {
            let mut rows: Vec<&SlowEpisode> = self
                .by_series
                .iter()
                .filter(|((m, _), _)| *m == metric)
                .flat_map(|(_, v)| v)
                .collect();
            rows.sort_by_key(|e| std::cmp::Reverse(e.value_ns));
            for e in rows.into_iter().take(PER_SERIES) {
                let thread = format!("{}[{}]", sanitize(&e.comm), e.tid);
                let holder = e
                    .holder
                    .as_deref()
                    .map_or_else(|| "—".to_string(), sanitize);
                let _ = writeln!(
                    out,
                    "  {:<17} {:>10}  {:>8}  {:<16} {:<24} {:<24} {:>10} {:>7}",
                    e.metric,
                    ns(e.value_ns),
                    e.episode,
                    e.path,
                    thread,
                    holder,
                    ns(e.latency_ns),
                    e.retries
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        attribution::EpisodePath,
        episodes::{EpisodeEnd, Holder},
    };

    fn end(id: u64, path: EpisodePath, latency: u64, held: u64) -> EpisodeEnd {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"glxg");
        EpisodeEnd {
            id,
            path,
            holder: Some(Holder {
                tgid: 7,
                tid: 8,
                comm,
            }),
            tid: 100 + id as u32,
            end_ns: 1_000 * id,
            tgid: 100,
            comm,
            driver: [0; 16],
            count: 1,
            latency_ns: Some(latency),
            retries: 1,
            wait_held_ns: held,
            wait_dropped_ns: 0,
            collateral_ns: 0,
            pre_lock_wait_ns: 0,
        }
    }

    #[test]
    fn keeps_the_slowest_per_metric_and_path_slowest_first() {
        let mut s = Slowest::default();
        for id in 1..=20 {
            s.offer(&end(id, EpisodePath::Held, id * 10, id % 7));
        }
        s.offer(&end(21, EpisodePath::Retry, 5, 0));
        let e = s.entries(42);
        let lat: Vec<u64> = e
            .iter()
            .filter(|x| x.metric == "episode_latency" && x.path == "held")
            .map(|x| x.episode)
            .collect();
        assert_eq!(lat, vec![20, 19, 18, 17, 16]);
        let held: Vec<u64> = e
            .iter()
            .filter(|x| x.metric == "wait_held")
            .map(|x| x.value_ns)
            .collect();
        assert_eq!(held, vec![6, 6, 6, 5, 5]);
        // No held wait, no stall: not in those series.
        assert!(
            e.iter()
                .any(|x| x.path == "retry" && x.metric == "episode_latency")
        );
        assert!(
            !e.iter()
                .any(|x| x.path == "retry" && x.metric != "episode_latency")
        );
        assert!(!e.iter().any(|x| x.metric == "collateral_stall"));
        assert!(e.iter().all(|x| x.session_start_unix_ns == Some(42)));
        assert_eq!(e[0].holder.as_deref(), Some("glxg[8]"));
        let table = s.render();
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(rows.len(), 2 * PER_SERIES, "{table}");
        assert!(
            rows[0].contains("episode_latency") && rows[0].contains("glxg[120]"),
            "{table}"
        );
    }

    #[test]
    fn quiet_and_untimed_episodes_are_not_kept() {
        let mut s = Slowest::default();
        s.offer(&end(0, EpisodePath::Uncontended, 99, 0));
        let mut untimed = end(3, EpisodePath::RetryNoHandler, 0, 50);
        untimed.latency_ns = None;
        s.offer(&untimed);
        assert!(s.is_empty());
    }

    #[test]
    fn merged_and_read_back_entries_keep_their_sessions() -> anyhow::Result<()> {
        let mut a = Slowest::default();
        a.offer(&end(1, EpisodePath::Held, 50, 0));
        let mut b = Slowest::default();
        b.offer(&end(1, EpisodePath::Held, 70, 0));
        let mut merged = Slowest::from_entries(&a.entries(1))?;
        merged.merge(&Slowest::from_entries(&b.entries(2))?);
        let e = merged.entries(3);
        let sessions: Vec<_> = e.iter().map(|x| x.session_start_unix_ns).collect();
        assert_eq!(sessions, vec![Some(2), Some(1)]);
        let mut bad = a.entries(1);
        bad[0].metric = "retries".into();
        assert!(Slowest::from_entries(&bad).is_err());
        let mut bad = a.entries(1);
        bad[0].path = "abandoned-ish".into();
        assert!(Slowest::from_entries(&bad).is_err());
        Ok(())
    }
}
