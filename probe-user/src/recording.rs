//! Self-describing recordings: metadata of the run (kernel, ttm module, attach points, tool,
//! command line, times), counts, and every histogram in HdrHistogram's V2+DEFLATE encoding
//! (base64), readable by any HdrHistogram implementation. Written atomically.

use std::{collections::BTreeMap, io::Write, path::Path};

use anyhow::{Context, Result, bail};
use base64::Engine;
use hdrhistogram::{
    Histogram,
    serialization::{Deserializer, Serializer, V2DeflateSerializer},
};
use serde::{Deserialize, Serialize};

use crate::{
    aggregate::{
        Aggregate, HIST_HIGH, HIST_LOW, HIST_SIGFIG, HolderCount, HolderStack, Metric, WaiterTotals,
    },
    loader::{ProbeStats, StateEntries},
};

pub const FORMAT: &str = "ttmlat-recording";
pub const VERSION: u32 = 1;

mod legacy;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub tool_version: String,
    pub command_line: Vec<String>,
    pub kernel_release: String,
    pub kernel_version: String,
    /// Debian package(s) the kernel came from with their version, when known (lab runs set
    /// LAB_KERNEL_PACKAGE: `linux-image-6.1.0-57-amd64-unsigned=6.1.192-3`).
    pub kernel_package: Option<String>,
    pub ttm_srcversion: Option<String>,
    /// /sys/module/ttm/taint at start ("OE": unsigned out-of-tree module).
    #[serde(default)]
    pub ttm_taint: Option<String>,
    /// /sys/module/ttm/version, when the module declares one.
    #[serde(default)]
    pub ttm_version: Option<String>,
    /// /proc/sys/kernel/tainted at start.
    pub kernel_taint: Option<u64>,
    /// Lab variant label (stock/blocking), when run in the lab.
    pub ttm_variant: Option<String>,
    pub attach_points: Vec<String>,
    /// Where reservation and mmap_lock facts were hooked: "call-sites" (inside the TTM
    /// functions, from the module files named) or "vmlinux" (the functions themselves), with
    /// the reason when call sites could not be used. Absent in recordings before 0.2.
    #[serde(default)]
    pub hook_sites: Option<String>,
    pub handlers: Vec<String>,
    pub contention_source: String,
    pub drivers_seen: Vec<String>,
    pub filters: BTreeMap<String, String>,
    pub start_unix_ns: u128,
    pub end_unix_ns: u128,
    pub hostname: String,
    /// Free-form label (`--label`), e.g. "before", "patched".
    pub label: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HistogramEntry {
    pub metric: String,
    pub class: String,
    /// "ns" or "count".
    pub unit: String,
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
    /// HdrHistogram V2 + DEFLATE, base64.
    pub encoded: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Counts {
    pub episodes: BTreeMap<String, u64>,
    pub attempts: BTreeMap<String, u64>,
    pub tried_attempts: u64,
    /// Episodes of path retry-no-handler (not timed). ttmlat 0.1 wrote `abandoned`.
    #[serde(alias = "abandoned")]
    pub retry_no_handler: u64,
    pub waiter_records: u64,
    pub unbalanced: u64,
    /// First attempts (no FAULT_FLAG_TRIED) that found the reservation contended, by path.
    pub contended_first_attempts: BTreeMap<String, u64>,
    /// Fault attempts without FAULT_FLAG_TRIED that waited with mmap_lock held.
    pub held_waits_untried: u64,
}

/// One process's faults.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProcessEntry {
    pub comm: String,
    pub episodes: u64,
    pub attempts: u64,
    /// Attempts and episodes of this process by path.
    #[serde(default)]
    pub attempt_paths: BTreeMap<String, u64>,
    #[serde(default)]
    pub episode_paths: BTreeMap<String, u64>,
    pub episode_latency: HistogramEntry,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Recording {
    pub format: String,
    pub version: u32,
    pub meta: Meta,
    /// Records lost or not followed, always reported.
    pub probe_stats: ProbeStats,
    /// Ring-buffer records userspace could not decode.
    pub undecodable_records: u64,
    /// Entries left in the probes' state maps at the end (should be 0 when idle); null when
    /// the maps could not be read (`read_errors` says why).
    pub state_entries_at_end: Option<StateEntries>,
    pub counts: Counts,
    /// Per process (tgid; 0 = processes beyond the cap).
    pub processes: BTreeMap<u32, ProcessEntry>,
    pub histograms: Vec<HistogramEntry>,
    pub holders: Vec<HolderCount>,
    /// `--holder-stack`: holders' kernel stacks at release.
    #[serde(default)]
    pub holder_stacks: Vec<HolderStack>,
    pub waiters: BTreeMap<u32, WaiterTotals>,
    /// The slowest episodes one by one, per metric and path, with the ids the `--timeline`
    /// file and `/metrics`' exemplars give them. Absent before 0.2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slowest_episodes: Vec<crate::slowest::SlowEpisode>,
    /// Reads of the probes' maps that failed during the session (what they would have said
    /// is missing from the figures). Absent before 0.2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_errors: Vec<String>,
    /// Programs the kernel skipped at least once (`recursion_misses`: already running on that
    /// CPU), by name: where `probe_stats.recursion_misses` came from. Absent before 0.2.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped_programs: BTreeMap<String, u64>,
    /// `--program-costs`: each BPF program's runs and run time as the kernel counted them.
    /// Absent before 0.2 and without the flag.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub program_costs: BTreeMap<String, crate::prog_fdinfo::ProgramCost>,
    /// Repetitions merged into this recording (`ttmlat bench`); 1 otherwise.
    pub repetitions: u32,
    /// `ttmlat bench`: the stress arguments and each repetition's own summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bench: Option<crate::bench::BenchInfo>,
}

/// Writes `value` as JSON to `path` atomically: a temp file in the same directory, fsync,
/// rename. A reader never sees a partial file, and an existing file stays whole on failure.
pub fn write_json_atomically<T: Serialize>(
    path: &Path,
    value: &T,
    pretty: bool,
    what: &str,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a file in {}", dir.display()))?;
    // Buffered: unbuffered, serde_json issues one write(2) per token (some 25 000 for a
    // 600 KB recording), minutes on a slow or network file system at every exit.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, tmp.as_file_mut());
    if pretty {
        serde_json::to_writer_pretty(&mut out, value)
    } else {
        serde_json::to_writer(&mut out, value)
    }
    .with_context(|| format!("serialising {what}"))?;
    out.write_all(b"\n")?;
    out.into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {what}"))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("fsync of {what}"))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub fn encode_histogram(h: &Histogram<u64>) -> Result<String> {
    let mut buf = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut buf)
        .map_err(|e| anyhow::anyhow!("encoding a histogram: {e}"))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(buf))
}

pub fn decode_histogram(s: &str) -> Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .context("histogram is not valid base64")?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("histogram is not a valid HdrHistogram encoding: {e}"))?;
    Ok(h)
}

/// The stored form of one histogram (percentiles and the encoding).
pub fn entry(metric: Metric, class: &str, h: &Histogram<u64>) -> Result<HistogramEntry> {
    Ok(HistogramEntry {
        metric: metric.name().to_string(),
        class: class.to_string(),
        unit: if metric.is_time() { "ns" } else { "count" }.to_string(),
        count: h.len(),
        min: h.min(),
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
        encoded: encode_histogram(h)?,
    })
}

impl Recording {
    pub fn from_aggregate(
        meta: Meta,
        agg: &Aggregate,
        probe_stats: ProbeStats,
        undecodable_records: u64,
        state_entries_at_end: Option<StateEntries>,
    ) -> Result<Self> {
        let session = meta.start_unix_ns;
        let mut histograms = Vec::new();
        for ((metric, class), h) in &agg.histograms {
            histograms.push(entry(*metric, class, h)?);
        }
        Ok(Self {
            format: FORMAT.into(),
            version: VERSION,
            meta,
            probe_stats,
            undecodable_records,
            state_entries_at_end,
            counts: Counts {
                episodes: agg
                    .episodes
                    .iter()
                    .map(|(k, v)| (k.name().to_string(), *v))
                    .collect(),
                attempts: agg
                    .attempts
                    .iter()
                    .map(|(k, v)| (k.name().to_string(), *v))
                    .collect(),
                tried_attempts: agg.tried_attempts,
                retry_no_handler: agg.retry_no_handler,
                waiter_records: agg.waiter_records,
                unbalanced: agg.unbalanced,
                contended_first_attempts: agg
                    .contended_first_attempts
                    .iter()
                    .map(|(k, v)| (k.name().to_string(), *v))
                    .collect(),
                held_waits_untried: agg.held_waits_untried,
            },
            processes: agg
                .processes
                .iter()
                .map(|(tgid, p)| {
                    Ok((
                        *tgid,
                        ProcessEntry {
                            comm: p.comm.clone(),
                            episodes: p.episodes,
                            attempts: p.attempts,
                            attempt_paths: p
                                .attempt_paths
                                .iter()
                                .map(|(k, v)| (k.name().to_string(), *v))
                                .collect(),
                            episode_paths: p
                                .episode_paths
                                .iter()
                                .map(|(k, v)| (k.name().to_string(), *v))
                                .collect(),
                            episode_latency: entry(
                                Metric::EpisodeLatency,
                                "all",
                                &p.episode_latency,
                            )?,
                        },
                    ))
                })
                .collect::<Result<_>>()?,
            histograms,
            holders: agg.holders(),
            holder_stacks: Vec::new(),
            read_errors: Vec::new(),
            skipped_programs: BTreeMap::new(),
            program_costs: BTreeMap::new(),
            waiters: agg.waiters.clone(),
            slowest_episodes: agg.slowest.entries(session),
            repetitions: 1,
            bench: None,
        })
    }

    /// The aggregate this recording was made from, as far as it keeps it (open episodes and
    /// holder stack ids are not kept): for the terminal report of `show`. Names this ttmlat
    /// does not know are an error, not dropped.
    pub fn to_aggregate(&self) -> Result<Aggregate> {
        use crate::attribution::{AttemptPath, EpisodePath};
        let episode = |n: &str| {
            EpisodePath::ALL
                .into_iter()
                .find(|p| p.name() == n)
                .with_context(|| format!("unknown episode path {n:?}"))
        };
        let attempt = |n: &str| {
            AttemptPath::ALL
                .into_iter()
                .find(|p| p.name() == n)
                .with_context(|| format!("unknown attempt path {n:?}"))
        };
        let mut agg = Aggregate::new();
        for h in &self.histograms {
            let metric = Metric::from_name(&h.metric)
                .with_context(|| format!("unknown metric {:?}", h.metric))?;
            agg.histograms
                .insert((metric, h.class.clone()), decode_histogram(&h.encoded)?);
        }
        let c = &self.counts;
        for (k, v) in &c.episodes {
            agg.episodes.insert(episode(k)?, *v);
        }
        for (k, v) in &c.attempts {
            agg.attempts.insert(attempt(k)?, *v);
        }
        for (k, v) in &c.contended_first_attempts {
            agg.contended_first_attempts.insert(attempt(k)?, *v);
        }
        agg.tried_attempts = c.tried_attempts;
        agg.retry_no_handler = c.retry_no_handler;
        agg.waiter_records = c.waiter_records;
        agg.unbalanced = c.unbalanced;
        agg.held_waits_untried = c.held_waits_untried;
        for (tgid, p) in &self.processes {
            let mut t = crate::aggregate::ProcessTotals {
                comm: p.comm.clone(),
                episodes: p.episodes,
                attempts: p.attempts,
                episode_latency: decode_histogram(&p.episode_latency.encoded)?,
                ..Default::default()
            };
            for (k, v) in &p.attempt_paths {
                t.attempt_paths.insert(attempt(k)?, *v);
            }
            for (k, v) in &p.episode_paths {
                t.episode_paths.insert(episode(k)?, *v);
            }
            agg.processes.insert(*tgid, t);
        }
        for h in &self.holders {
            agg.add_holder(h.tgid, &h.comm, h.count);
        }
        agg.waiters = self.waiters.clone();
        agg.slowest = crate::slowest::Slowest::from_entries(&self.slowest_episodes)?;
        agg.drivers = self.meta.drivers_seen.iter().cloned().collect();
        Ok(agg)
    }

    /// Writes the recording atomically (temp file in the same directory, fsync, rename).
    pub fn write(&self, path: &Path) -> Result<()> {
        write_json_atomically(path, self, true, "the recording")
    }

    /// Reads and validates a recording; every failure names the file and what is wrong.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&bytes).with_context(|| format!("{} is not a usable recording", path.display()))
    }

    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let probe: serde_json::Value =
            serde_json::from_slice(bytes).context("not JSON (truncated or corrupt file?)")?;
        match probe.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => {}
            Some(other) => bail!("format is {other:?}, expected {FORMAT:?}"),
            None => bail!("no \"format\" field: not a ttmlat recording"),
        }
        match probe.get("version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(VERSION) => {}
            Some(v) => {
                bail!("recording version {v} is not supported (this ttmlat reads {VERSION})")
            }
            None => bail!("no \"version\" field"),
        }
        let mut rec: Recording =
            serde_json::from_value(probe).context("fields missing or mistyped")?;
        for h in &rec.histograms {
            if Metric::from_name(&h.metric).is_none() {
                bail!("unknown metric {:?}", h.metric);
            }
            let decoded = decode_histogram(&h.encoded)
                .with_context(|| format!("histogram {}/{}", h.metric, h.class))?;
            if decoded.len() != h.count {
                bail!(
                    "histogram {}/{} claims {} values but encodes {}",
                    h.metric,
                    h.class,
                    h.count,
                    decoded.len()
                );
            }
            if decoded.low() > HIST_LOW
                || decoded.high() < HIST_HIGH
                || decoded.sigfig() != HIST_SIGFIG
            {
                bail!(
                    "histogram {}/{} has bounds {}..{} / {} digits, expected {}..{} / {}",
                    h.metric,
                    h.class,
                    decoded.low(),
                    decoded.high(),
                    decoded.sigfig(),
                    HIST_LOW,
                    HIST_HIGH,
                    HIST_SIGFIG
                );
            }
        }
        legacy::rename_paths(&mut rec)?;
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::new_histogram;

    pub(super) fn sample() -> Recording {
        let mut agg = Aggregate::new();
        let mut h = new_histogram();
        for v in [1_000u64, 2_000, 3_000, 1_000_000] {
            h.record(v).expect("in range");
        }
        agg.histograms
            .insert((Metric::EpisodeLatency, "uncontended".into()), h);
        Recording::from_aggregate(
            Meta::default(),
            &agg,
            ProbeStats::zero(),
            0,
            Some(StateEntries::default()),
        )
        .expect("recording")
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("r.json");
        let rec = sample();
        rec.write(&path).expect("write");
        let back = Recording::read(&path).expect("read");
        assert_eq!(back, rec);
        let h = decode_histogram(&back.histograms[0].encoded).expect("decode");
        assert_eq!(h.len(), 4);
    }

    /// A recording of ttmlat 0.1.0 (format 1) has no `meta.hook_sites`, no
    /// `probe_stats.kprobe_misses` and no `probe_stats.recursion_misses`: it still loads, and
    /// what 0.1.0 could not know stays unknown instead of becoming 0.
    #[test]
    fn loads_recordings_of_0_1_0() {
        let mut v = serde_json::to_value(sample()).expect("json");
        let meta = v["meta"].as_object_mut().expect("meta");
        assert!(meta.remove("hook_sites").is_some());
        let stats = v["probe_stats"].as_object_mut().expect("probe_stats");
        assert!(stats.remove("kprobe_misses").is_some());
        assert!(stats.remove("recursion_misses").is_some());
        let old = Recording::parse(&serde_json::to_vec(&v).expect("json")).expect("0.1.0 loads");
        assert_eq!(old.meta.hook_sites, None);
        assert_eq!(old.probe_stats.recursion_misses, None);
        assert_eq!(old.probe_stats.kprobe_misses, None);
        assert_eq!(old.histograms, sample().histograms);
    }

    /// `show` renders a recording like `live` does: from the aggregate it came from.
    #[test]
    fn shows_the_live_report_with_dashes_for_unknowns() {
        let rec = sample();
        let agg = rec.to_aggregate().expect("aggregate");
        assert_eq!(
            agg.histograms.keys().collect::<Vec<_>>(),
            vec![&(Metric::EpisodeLatency, "uncontended".to_string())]
        );
        let text = crate::session_report::of_recording("recording r.json", &rec).expect("report");
        assert!(text.contains("label — "), "{text}");
        assert!(text.contains("episode_latency    uncontended"), "{text}");
        assert!(text.contains("lost: ring buffer full 0"), "{text}");
        assert!(!text.contains("None") && !text.contains("Some("), "{text}");
        let mut bad = rec.clone();
        bad.counts.episodes.insert("sideways".into(), 1);
        let err = format!("{:#}", bad.to_aggregate().expect_err("unknown path"));
        assert!(err.contains("sideways"), "{err}");
    }

    #[test]
    fn rejects_bad_inputs_with_reasons() {
        let good = serde_json::to_vec(&sample()).expect("json");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() / 2].to_vec(), "truncated"),
            (b"{}".to_vec(), "format"),
            (
                String::from_utf8_lossy(&good)
                    .replace("\"version\":1", "\"version\":99")
                    .into_bytes(),
                "version 99",
            ),
            (
                String::from_utf8_lossy(&good)
                    .replace("\"count\":4", "\"count\":5")
                    .into_bytes(),
                "claims 5",
            ),
            (
                String::from_utf8_lossy(&good)
                    .replace("\"encoded\":\"", "\"encoded\":\"!!")
                    .into_bytes(),
                "base64",
            ),
        ];
        for (bytes, want) in cases {
            let err = format!("{:#}", Recording::parse(&bytes).expect_err(want));
            assert!(err.contains(want), "{want}: {err}");
        }
    }
}

/// Property tests of the parser against hostile input: whatever the bytes, `parse` returns
/// (a recording or an error with a message) and never panics. Bounded: a fixed number of
/// cases, well under a second.
#[cfg(test)]
mod parser_properties {
    use proptest::prelude::*;

    use super::*;
    use crate::aggregate::new_histogram;

    fn valid() -> Vec<u8> {
        let mut agg = Aggregate::new();
        let mut h = new_histogram();
        for v in [1_000u64, 20_000, 300_000, 4_000_000] {
            let _ = h.record(v);
        }
        agg.histograms
            .insert((Metric::EpisodeLatency, "retry".into()), h);
        let rec = Recording::from_aggregate(
            Meta::default(),
            &agg,
            ProbeStats::zero(),
            0,
            Some(StateEntries::default()),
        )
        .expect("recording");
        serde_json::to_vec(&rec).expect("json")
    }

    fn check(bytes: &[u8]) {
        if let Err(e) = Recording::parse(bytes) {
            assert!(!format!("{e:#}").is_empty());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            check(&bytes);
        }

        #[test]
        fn truncations_never_panic(cut in 0usize..4096) {
            let v = valid();
            check(&v[..cut.min(v.len())]);
        }

        #[test]
        fn byte_flips_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16)) {
            let mut v = valid();
            let len = v.len();
            for (i, b) in flips {
                v[i % len] = b;
            }
            check(&v);
        }

        #[test]
        fn hostile_numbers_are_refused_or_accepted_cleanly(n in any::<i64>(), f in any::<f64>()) {
            let text = String::from_utf8_lossy(&valid())
                .replace("\"count\":4", &format!("\"count\":{n}"))
                .replace("\"repetitions\":1", &format!("\"repetitions\":{f}"));
            check(text.as_bytes());
        }
    }
}
