//! The whole human report of a session, written by one function ([`text`]) from what a
//! session hands back ([`Outcome`]) or from a recording read back: what `live` and `record`
//! print at their end, what `bench` prints, and what `show` prints of their recordings, line
//! for line. Unknown values are `—`; strings from the kernel or the user are sanitised.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::Result;

use crate::{
    aggregate::{Aggregate, HolderStack, Metric},
    bench::BenchInfo,
    loader::ProbeStats,
    prog_fdinfo::ProgramCost,
    recording::{Meta, Recording},
    report::{dash, figures, holder_stacks, log2_histogram, sanitize},
    session::Outcome,
};

/// The title of the histogram at the end of the report.
pub const LATENCY_HISTOGRAM_TITLE: &str = "episode_latency, all paths: first TTM handler entry \
     (or the fault's own mmap_lock wait) to the completing return";

/// What the report shows of a session, wherever it comes from.
pub struct Session<'a> {
    pub meta: &'a Meta,
    pub agg: &'a Aggregate,
    pub stats: &'a ProbeStats,
    pub undecodable: u64,
    pub holder_stacks: &'a [HolderStack],
    pub skipped_programs: &'a BTreeMap<String, u64>,
    pub program_costs: &'a BTreeMap<String, ProgramCost>,
    pub read_errors: &'a [String],
    pub repetitions: u32,
    pub bench: Option<&'a BenchInfo>,
}

impl<'a> Session<'a> {
    /// A session just traced; `meta` is its own or a copy with the label set.
    pub fn of_outcome(outcome: &'a Outcome, meta: &'a Meta) -> Self {
        Self {
            meta,
            agg: &outcome.total,
            stats: &outcome.stats,
            undecodable: outcome.undecodable,
            holder_stacks: &outcome.holder_stacks,
            skipped_programs: &outcome.skipped_programs,
            program_costs: &outcome.program_costs,
            read_errors: &outcome.read_errors,
            repetitions: 1,
            bench: None,
        }
    }

    /// A recording, with the aggregate it was made from ([`Recording::to_aggregate`]).
    pub fn of_recording(rec: &'a Recording, agg: &'a Aggregate) -> Self {
        Self {
            meta: &rec.meta,
            agg,
            stats: &rec.probe_stats,
            undecodable: rec.undecodable_records,
            holder_stacks: &rec.holder_stacks,
            skipped_programs: &rec.skipped_programs,
            program_costs: &rec.program_costs,
            read_errors: &rec.read_errors,
            repetitions: rec.repetitions,
            bench: rec.bench.as_ref(),
        }
    }
}

/// The report of a session just traced (`live`, `record`), its recording labelled `label`.
pub fn of_outcome(title: &str, outcome: &Outcome, label: Option<&str>) -> String {
    let mut meta = outcome.meta.clone();
    meta.label = label.map(str::to_string);
    text(title, &Session::of_outcome(outcome, &meta))
}

/// The report of a recording (`show`); an error if it names paths or metrics this ttmlat
/// does not know.
pub fn of_recording(title: &str, rec: &Recording) -> Result<String> {
    let agg = rec.to_aggregate()?;
    Ok(text(title, &Session::of_recording(rec, &agg)))
}

/// The report: where it was made, the figures (counts, percentiles, holders, stalled tasks,
/// losses by channel), the programs the kernel skipped, bench repetitions, the latency
/// histogram, the holders' stacks, the slowest episodes by id, program costs, and every map
/// read that failed.
pub fn text(title: &str, s: &Session) -> String {
    let m = s.meta;
    let mut out = String::new();
    let _ = writeln!(out, "{title}");
    let secs = m.end_unix_ns.saturating_sub(m.start_unix_ns) as f64 / 1e9;
    let _ = writeln!(
        out,
        "  label {} · ttmlat {} · {secs:.1} s{}",
        dash(m.label.as_deref()),
        dash(Some(&m.tool_version)),
        if s.repetitions > 1 {
            format!(" · {} repetitions", s.repetitions)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "  kernel {} (package {}), taint {}",
        dash(Some(&m.kernel_release)),
        dash(m.kernel_package.as_deref()),
        m.kernel_taint.map_or("—".to_string(), |t| t.to_string())
    );
    let _ = writeln!(
        out,
        "  ttm: variant {}, version {}, srcversion {}, taint {}",
        dash(m.ttm_variant.as_deref()),
        dash(m.ttm_version.as_deref()),
        dash(m.ttm_srcversion.as_deref()),
        dash(m.ttm_taint.as_deref())
    );
    let _ = writeln!(out, "  hooks: {}", dash(m.hook_sites.as_deref()));
    if !m.filters.is_empty() {
        let f: Vec<String> = m
            .filters
            .iter()
            .map(|(k, v)| format!("{}={}", sanitize(k), sanitize(v)))
            .collect();
        let _ = writeln!(out, "  filters: {}", f.join(", "));
    }
    out.push_str(&figures(s.agg, s.stats, s.undecodable));
    if !s.skipped_programs.is_empty() {
        let list: Vec<String> = s
            .skipped_programs
            .iter()
            .map(|(name, n)| format!("{} {n}", sanitize(name)))
            .collect();
        let _ = writeln!(
            out,
            "  skipped by the kernel (already running on that CPU): {}",
            list.join(", ")
        );
    }
    if let Some(b) = s.bench {
        out.push_str(&crate::bench::render_runs(b));
    }
    let lat = s.agg.merged(Metric::EpisodeLatency);
    out.push_str(&log2_histogram(LATENCY_HISTOGRAM_TITLE, &lat, true));
    out.push_str(&holder_stacks(s.holder_stacks));
    out.push_str(&s.agg.slowest.render());
    out.push_str(&crate::prog_fdinfo::render(s.program_costs));
    for e in s.read_errors {
        let _ = writeln!(out, "READ FAILED (figures incomplete): {}", sanitize(e));
    }
    out
}

/// `live --json`: the object printed per interval (`"scope": "interval"`): counts, the
/// percentiles of every histogram, holders and the loss channels.
pub fn live_json_interval(agg: &Aggregate, stats: &ProbeStats) -> Result<serde_json::Value> {
    live_json(agg, stats, "interval")
}

/// `live --json`'s last line (`"scope": "total"`), the JSON twin of the report `live`
/// prints at its end: the session's total, plus what only the end knows (undecodable records,
/// state left in the maps, holder stacks, skipped programs, program costs) and every map read
/// that failed (`read_errors`, `[]` when none did).
pub fn live_json_total(o: &Outcome) -> Result<serde_json::Value> {
    let mut v = live_json(&o.total, &o.stats, "total")?;
    if let Some(obj) = v.as_object_mut() {
        obj.insert("undecodable_records".into(), o.undecodable.into());
        obj.insert(
            "state_entries_at_end".into(),
            serde_json::to_value(o.state_entries_at_end)?,
        );
        obj.insert(
            "holder_stacks".into(),
            serde_json::to_value(&o.holder_stacks)?,
        );
        obj.insert(
            "skipped_programs".into(),
            serde_json::to_value(&o.skipped_programs)?,
        );
        obj.insert(
            "program_costs".into(),
            serde_json::to_value(&o.program_costs)?,
        );
        obj.insert("read_errors".into(), serde_json::to_value(&o.read_errors)?);
    }
    Ok(v)
}

fn live_json(agg: &Aggregate, stats: &ProbeStats, scope: &str) -> Result<serde_json::Value> {
    let rec = Recording::from_aggregate(
        Meta::default(),
        agg,
        *stats,
        0,
        Some(crate::loader::StateEntries::default()),
    )?;
    Ok(serde_json::json!({
        "scope": scope,
        "counts": rec.counts,
        "histograms": rec.histograms.iter().map(|h| serde_json::json!({
            "metric": h.metric, "class": h.class, "unit": h.unit, "count": h.count,
            "p50": h.p50, "p90": h.p90, "p99": h.p99, "p999": h.p999, "max": h.max,
        })).collect::<Vec<_>>(),
        "holders": rec.holders,
        "probe_stats": stats,
    }))
}

#[cfg(test)]
mod tests;
