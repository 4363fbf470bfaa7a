//! The Prometheus metrics of `ttmlat serve`, fed record by record.
//!
//! Names follow the Prometheus conventions: `ttmlat_` prefix, base units (`_seconds`),
//! `_total` on counters (added by prometheus-client), HELP and TYPE on every family. Label
//! sets are bounded: `path` (a fixed enum), `driver` (kernel module names of the probed
//! fault handlers), `reason` (fixed), and `comm` only with `--by-comm`, capped at
//! `--max-comms` distinct values (the rest are `comm="other"`).

use std::collections::HashSet;

use prometheus_client::{
    encoding::{prometheus_protobuf, prometheus_text, text as openmetrics_text},
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, NativeHistogramConfig},
    },
    registry::Registry,
};

use crate::{
    attribution::EpisodePath,
    episodes::{AttemptFacts, EpisodeEnd, Episodes},
    events::{Record, cstr},
    loader::ProbeStats,
    serve::exemplars::{Exemplar, Exemplars},
};

/// Content type of the Prometheus protobuf exposition (native histograms need it).
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
/// Content type of the Prometheus text exposition 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of the OpenMetrics text exposition (the one with exemplars).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Native histogram bucket growth factor: prometheus-client picks schema 3, i.e. buckets
/// grow by 2^(1/8) ≈ 1.0905 (a quantile estimate is within 9.05% of the true value).
pub const NATIVE_BUCKET_FACTOR: f64 = 1.1;
/// Best-effort cap on native buckets per series (client_golang's customary 160): past it
/// the client halves the resolution instead of growing without bound.
pub const NATIVE_MAX_BUCKETS: usize = 160;

/// Label value for a comm beyond the `--max-comms` cap.
pub const OTHER_COMM: &str = "other";
/// Label value when the driver module of a fault handler is not known.
pub const UNKNOWN_DRIVER: &str = "unknown";

type Labels = Vec<(&'static str, String)>;
type HistFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Classic bucket bounds in seconds: 1 µs · 2^k up to ~33.6 s (26 bounds plus +Inf), the
/// resolution of bcc's log2 histograms. For Prometheus servers without native histograms.
pub fn classic_buckets() -> impl Iterator<Item = f64> {
    (0..26).map(|k| 1e-6 * f64::from(1u32 << k))
}

fn new_histogram() -> Histogram {
    Histogram::new_classic_and_native(
        classic_buckets(),
        NativeHistogramConfig::new(NATIVE_BUCKET_FACTOR).max_buckets(NATIVE_MAX_BUCKETS),
    )
}

/// The metric families `/metrics` serves, as registered: counters are exposed with a
/// `_total` suffix ([`family::exposed`]). The lab tests and the dashboard read these names.
pub mod family {
    pub const EPISODE_DURATION: &str = "ttmlat_fault_episode_duration_seconds";
    pub const WAIT_HELD: &str = "ttmlat_reservation_wait_held_seconds";
    pub const WAIT_DROPPED: &str = "ttmlat_reservation_wait_dropped_seconds";
    pub const COLLATERAL_STALL: &str = "ttmlat_collateral_stall_seconds";
    pub const PRE_LOCK_WAIT: &str = "ttmlat_fault_pre_lock_wait_seconds";
    pub const WAITER_STALL: &str = "ttmlat_mmap_lock_waiter_stall_seconds";
    pub const EPISODES: &str = "ttmlat_fault_episodes";
    pub const ATTEMPTS: &str = "ttmlat_fault_attempts";
    pub const RETRIES: &str = "ttmlat_fault_retries";
    pub const HELD_WAITS: &str = "ttmlat_held_waits";
    pub const LOST: &str = "ttmlat_lost_events";
    pub const REFUSED: &str = "ttmlat_http_refused";
    /// Every family, in registration order, and whether it is a counter.
    pub const ALL: [(&str, bool); 12] = [
        (EPISODE_DURATION, false),
        (WAIT_HELD, false),
        (WAIT_DROPPED, false),
        (COLLATERAL_STALL, false),
        (PRE_LOCK_WAIT, false),
        (WAITER_STALL, false),
        (EPISODES, true),
        (ATTEMPTS, true),
        (RETRIES, true),
        (HELD_WAITS, true),
        (LOST, true),
        (REFUSED, true),
    ];

    /// Families exported only by a `serve --web-config` (what it can refuse).
    pub const WEB_CONFIG_ONLY: [&str; 1] = [REFUSED];

    /// The name samples of `family` carry in the text exposition (`_total` for counters;
    /// histograms add `_bucket`, `_sum` and `_count`).
    pub fn exposed(family: &str) -> String {
        match ALL.iter().find(|(name, _)| *name == family) {
            Some((_, true)) => format!("{family}_total"),
            _ => family.to_string(),
        }
    }
}

/// `reason` values of `ttmlat_http_refused_total`.
pub mod refusal {
    pub const TLS_HANDSHAKE: &str = "tls_handshake";
    pub const UNAUTHORIZED: &str = "unauthorized";
}

/// Everything a scrape reads. Shared (`Arc`) between the record sink and the HTTP server;
/// the families lock internally.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    episode_duration: HistFamily,
    wait_held: HistFamily,
    wait_dropped: HistFamily,
    collateral_stall: HistFamily,
    pre_lock_wait: HistFamily,
    waiter_stall: HistFamily,
    episodes: Family<Labels, Counter>,
    attempts: Family<Labels, Counter>,
    retries: Counter,
    held_waits: Counter,
    lost: Family<Labels, Counter>,
    refused: Family<Labels, Counter>,
    /// The slowest recent episode of each latency, held-wait and collateral-stall series.
    pub exemplars: Exemplars,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let hist = || HistFamily::new_with_constructor(new_histogram as fn() -> Histogram);
        let m = Self {
            registry: Registry::default(),
            episode_duration: hist(),
            wait_held: hist(),
            wait_dropped: hist(),
            collateral_stall: hist(),
            pre_lock_wait: hist(),
            waiter_stall: hist(),
            episodes: Family::default(),
            attempts: Family::default(),
            retries: Counter::default(),
            held_waits: Counter::default(),
            lost: Family::default(),
            refused: Family::default(),
            exemplars: Exemplars::default(),
        };
        registry.register(
            family::EPISODE_DURATION,
            "TTM GPU-buffer page faults from first handler entry to the attempt that does \
             not return VM_FAULT_RETRY (retries included), by episode path and driver",
            m.episode_duration.clone(),
        );
        registry.register(
            family::WAIT_HELD,
            "Reservation (dma_resv) wait of one fault with mmap_lock held, by episode path \
             and driver (faults that waited held)",
            m.wait_held.clone(),
        );
        registry.register(
            family::WAIT_DROPPED,
            "Reservation (dma_resv) wait of one fault after mmap_lock was dropped, by \
             episode path and driver (faults that waited dropped)",
            m.wait_dropped.clone(),
        );
        registry.register(
            family::COLLATERAL_STALL,
            "Time other tasks waited for this mm's mmap_lock while one fault slept on a \
             reservation holding it, per fault that stalled someone; rate(_sum) is stalled \
             seconds per second",
            m.collateral_stall.clone(),
        );
        registry.register(
            family::PRE_LOCK_WAIT,
            "The faulting thread's own mmap_lock wait right before its first TTM handler \
             entry (faults that queued for it)",
            m.pre_lock_wait.clone(),
        );
        registry.register(
            family::WAITER_STALL,
            "Per task wait for mmap_lock: the part covered by TTM faults' held reservation \
             waits",
            m.waiter_stall.clone(),
        );
        registry.register(
            family::EPISODES,
            "Completed TTM fault episodes by episode path and driver",
            m.episodes.clone(),
        );
        registry.register(
            family::ATTEMPTS,
            "TTM fault handler (and ttm_bo_vm_access) calls by attempt path",
            m.attempts.clone(),
        );
        registry.register(
            family::RETRIES,
            "Retried attempts of completed fault episodes (attempts - 1)",
            m.retries.clone(),
        );
        registry.register(
            family::HELD_WAITS,
            "Attempts that waited for a reservation with mmap_lock held",
            m.held_waits.clone(),
        );
        registry.register(
            family::LOST,
            "Data ttmlat could not observe or decode, by reason",
            m.lost.clone(),
        );
        registry.register(
            family::REFUSED,
            "Connections and requests /metrics refused, by reason (--web-config): failed TLS \
             handshakes (a missing or untrusted client certificate included), requests without \
             valid basic-auth credentials",
            m.refused.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts a refusal ([`refusal`]).
    pub fn refused(&self, reason: &'static str) {
        self.refused
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    /// Exports `reasons` at 0 (a server that can refuse says it has not).
    pub fn may_refuse(&self, reasons: &[&'static str]) {
        for r in reasons {
            let _ = self.refused.get_or_create(&vec![("reason", r.to_string())]);
        }
    }

    /// Prometheus text exposition 0.0.4 (classic buckets only).
    pub fn encode_text(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// OpenMetrics text exposition (classic buckets) with the exemplars.
    pub fn encode_openmetrics(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        openmetrics_text::encode(&mut out, &self.registry)?;
        Ok(self.exemplars.decorate(&out))
    }

    /// The protobuf messages (tests inspect labels and native buckets).
    #[cfg(test)]
    pub fn families(
        &self,
    ) -> Result<Vec<prometheus_protobuf::prometheus_data_model::MetricFamily>, std::fmt::Error>
    {
        prometheus_protobuf::encode(&self.registry)
    }

    /// Prometheus protobuf exposition, length-delimited: classic and native buckets.
    pub fn encode_protobuf(&self) -> Result<Vec<u8>, String> {
        prometheus_protobuf::encode_to_vec(&self.registry).map_err(|e| format!("{e:?}"))
    }
}

fn seconds(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Every `reason` of `ttmlat_lost_events_total`: the probes' loss channels (one table,
/// [`ProbeStats::channels`]), then the session's own.
pub fn lost_reasons() -> Vec<&'static str> {
    let mut r: Vec<&'static str> = ProbeStats::default()
        .channels()
        .iter()
        .map(|c| c.reason)
        .collect();
    r.push("undecodable");
    r
}

/// Folds records into [`Metrics`]; owned by the session's record sink (single writer).
pub struct Feeder {
    metrics: std::sync::Arc<Metrics>,
    by_comm: bool,
    max_comms: usize,
    comms: HashSet<String>,
    /// Episodes still open (the same tracker the aggregate uses).
    tracker: Episodes,
    /// Cumulative probe counters at the last poll.
    last_stats: [u64; ProbeStats::CHANNELS],
    /// Drivers whose per-path episode series exist.
    drivers: HashSet<String>,
}

impl Feeder {
    pub fn new(metrics: std::sync::Arc<Metrics>, by_comm: bool, max_comms: usize) -> Self {
        // Undecodable records are userspace's own count: exported from the start, at 0
        // ("nothing lost" is a statement). The kernel's channels appear with the first read
        // of them (`stats`), so that a channel this kernel does not report is never a 0.
        let _ = metrics
            .lost
            .get_or_create(&vec![("reason", "undecodable".to_string())]);
        Self {
            metrics,
            by_comm,
            max_comms,
            comms: HashSet::new(),
            tracker: Episodes::default(),
            last_stats: [0; ProbeStats::CHANNELS],
            drivers: HashSet::new(),
        }
    }

    /// The comm label value: the comm itself while under the cap, else "other".
    fn comm_label(&mut self, raw: &[u8]) -> String {
        let comm = cstr(raw);
        if self.comms.contains(&comm) {
            return comm;
        }
        if self.comms.len() < self.max_comms && comm != OTHER_COMM {
            self.comms.insert(comm.clone());
            return comm;
        }
        OTHER_COMM.to_string()
    }

    fn episode_labels(&mut self, path: EpisodePath, driver: &str, comm: &[u8]) -> Labels {
        let mut l = vec![
            ("path", path.name().to_string()),
            ("driver", driver.to_string()),
        ];
        if self.by_comm {
            l.push(("comm", self.comm_label(comm)));
        }
        l
    }

    pub fn record(&mut self, rec: &Record) {
        if let Record::Waiter(w) = rec {
            if w.held_overlap_ns > 0 {
                self.metrics
                    .waiter_stall
                    .get_or_create(&Vec::new())
                    .observe(seconds(w.held_overlap_ns));
            }
            return;
        }
        let step = self.tracker.step(rec);
        if let Some(a) = &step.attempt {
            self.attempt(a);
        }
        if let Some(e) = &step.ended {
            self.episode(e);
        }
    }

    /// The driver label of a driver name, its per-path series created on first sight.
    fn driver_label(&mut self, raw: &[u8]) -> String {
        let mut driver = cstr(raw);
        if driver.is_empty() {
            driver = UNKNOWN_DRIVER.to_string();
        }
        if !self.by_comm && self.drivers.insert(driver.clone()) {
            // Every episode path of a new driver is exported from here on, at 0 until it
            // happens: rate() over a later window then counts its first episodes too.
            for p in EpisodePath::ALL {
                let labels = vec![("path", p.name().to_string()), ("driver", driver.clone())];
                let _ = self.metrics.episodes.get_or_create(&labels);
                let _ = self.metrics.episode_duration.get_or_create(&labels);
            }
        }
        driver
    }

    fn attempt(&mut self, a: &AttemptFacts) {
        let m = std::sync::Arc::clone(&self.metrics);
        m.attempts
            .get_or_create(&vec![("path", a.path.name().to_string())])
            .inc_by(a.count);
        if a.waited_held {
            m.held_waits.inc_by(a.count);
        }
        self.driver_label(&a.driver);
    }

    fn episode(&mut self, e: &EpisodeEnd) {
        let m = std::sync::Arc::clone(&self.metrics);
        let driver = if e.driver[0] == 0 && e.latency_ns.is_none() {
            // An abandoned episode whose attempts were not seen.
            UNKNOWN_DRIVER.to_string()
        } else {
            self.driver_label(&e.driver)
        };
        let labels = self.episode_labels(e.path, &driver, &e.comm);
        m.episodes.get_or_create(&labels).inc_by(e.count);
        let Some(latency) = e.latency_ns else {
            return;
        };
        let h = m.episode_duration.get_or_create(&labels);
        for _ in 0..e.count {
            h.observe(seconds(latency));
        }
        m.retries.inc_by(e.retries * e.count);
        // The per-wait histograms stay at (path, driver): comm adds little there.
        let base: Labels = labels.iter().take(2).cloned().collect();
        for (family, ns) in [
            (&m.wait_held, e.wait_held_ns),
            (&m.wait_dropped, e.wait_dropped_ns),
            (&m.collateral_stall, e.collateral_ns),
            (&m.pre_lock_wait, e.pre_lock_wait_ns),
        ] {
            if ns > 0 {
                let h = family.get_or_create(&base);
                for _ in 0..e.count {
                    h.observe(seconds(ns));
                }
            }
        }
        // Exemplars: episodes sent one by one (quiet counts have no id).
        if e.id != 0 {
            let holder = e.holder.map_or_else(|| "?".to_string(), |h| h.label());
            let comm = cstr(&e.comm);
            let at = super::exemplars::unix_seconds_of_monotonic(e.end_ns);
            let offer = |family: &'static str, labels: &Labels, ns: u64| {
                if ns > 0 {
                    let x = Exemplar::new(seconds(ns), at, e.tgid, &comm, &holder, e.id);
                    m.exemplars.offer(family, labels, x);
                }
            };
            offer(family::EPISODE_DURATION, &labels, latency);
            offer(family::WAIT_HELD, &base, e.wait_held_ns);
            offer(family::COLLATERAL_STALL, &base, e.collateral_ns);
        }
    }

    pub fn undecodable(&mut self) {
        self.metrics
            .lost
            .get_or_create(&vec![("reason", "undecodable".to_string())])
            .inc();
    }

    /// Cumulative probe counters (polled): exported as increments since the last poll. A
    /// channel this kernel does not report (`recursion_misses` before 5.12) has no series
    /// rather than a 0.
    pub fn stats(&mut self, stats: &ProbeStats) {
        for (i, c) in stats.channels().iter().enumerate() {
            let labels = vec![("reason", c.reason.to_string())];
            let Some(now) = c.value else {
                self.metrics.lost.remove(&labels);
                // Re-created from 0 with the cumulative count when the channel is read again.
                self.last_stats[i] = 0;
                continue;
            };
            let delta = now.saturating_sub(self.last_stats[i]);
            self.metrics.lost.get_or_create(&labels).inc_by(delta);
            self.last_stats[i] = self.last_stats[i].max(now);
        }
    }
}
