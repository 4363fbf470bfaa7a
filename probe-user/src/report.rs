//! Terminal output: counts by path and p50/p90/p99/p99.9/max per metric, plus what was lost.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use crate::{
    aggregate::{Aggregate, Metric},
    attribution::{AttemptPath, EpisodePath},
    loader::ProbeStats,
};

/// Formats nanoseconds with a unit that keeps 3–4 significant digits.
pub fn ns(v: u64) -> String {
    match v {
        0..=9_999 => format!("{v}ns"),
        10_000..=9_999_999 => format!("{:.1}µs", v as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.2}ms", v as f64 / 1e6),
        _ => format!("{:.3}s", v as f64 / 1e9),
    }
}

fn fmt_value(metric: Metric, v: u64) -> String {
    if metric.is_time() {
        ns(v)
    } else {
        v.to_string()
    }
}

fn percentiles(metric: Metric, h: &Histogram<u64>) -> String {
    format!(
        "{:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        h.len(),
        fmt_value(metric, h.value_at_quantile(0.5)),
        fmt_value(metric, h.value_at_quantile(0.9)),
        fmt_value(metric, h.value_at_quantile(0.99)),
        fmt_value(metric, h.value_at_quantile(0.999)),
        fmt_value(metric, h.max()),
    )
}

/// `—` for an unknown or empty value, else the value made safe for a terminal line: how every
/// report (and every message comparing recordings) shows an optional string.
pub fn dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty())
        .map_or("—".to_string(), sanitize)
}

/// The figures of one aggregate under a title (`live`'s interval lines).
pub fn render(title: &str, agg: &Aggregate, stats: &ProbeStats, undecodable: u64) -> String {
    format!("{title}\n{}", figures(agg, stats, undecodable))
}

/// The figures of one aggregate: counts by path, the percentile table, holders, stalled tasks,
/// drivers and what was lost, by channel.
pub fn figures(agg: &Aggregate, stats: &ProbeStats, undecodable: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  faults (episodes): {}   attempts: {}   TRIED attempts: {}   not timed (retry-no-handler): {}",
        agg.episodes_total(),
        agg.attempts_total(),
        agg.tried_attempts,
        agg.retry_no_handler
    );
    let eps: Vec<String> = EpisodePath::ALL
        .iter()
        .filter_map(|p| agg.episodes.get(p).map(|n| format!("{} {n}", p.name())))
        .collect();
    if !eps.is_empty() {
        let _ = writeln!(out, "  episode paths: {}", eps.join(", "));
    }
    let atts: Vec<String> = AttemptPath::ALL
        .iter()
        .filter_map(|p| agg.attempts.get(p).map(|n| format!("{} {n}", p.name())))
        .collect();
    if !atts.is_empty() {
        let _ = writeln!(out, "  attempt paths: {}", atts.join(", "));
    }
    if !agg.histograms.is_empty() {
        let _ = writeln!(
            out,
            "  {:<18} {:<16} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "metric", "path", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for metric in Metric::ALL {
            for ((m, class), h) in &agg.histograms {
                if *m == metric {
                    let _ = writeln!(
                        out,
                        "  {:<18} {:<16} {}",
                        metric.name(),
                        class,
                        percentiles(metric, h)
                    );
                }
            }
        }
    }
    let holders = agg.holders();
    if !holders.is_empty() {
        let top: Vec<String> = holders
            .iter()
            .take(5)
            .map(|h| format!("{}[{}] ×{}", sanitize(&h.comm), h.tgid, h.count))
            .collect();
        let _ = writeln!(
            out,
            "  reservation holders at trylock failure: {}",
            top.join(", ")
        );
    }
    if let Some(line) = stalled(agg) {
        let _ = writeln!(out, "  stalled on mmap_lock by held waits: {line}");
    }
    if !agg.drivers.is_empty() {
        let d: Vec<&str> = agg.drivers.iter().map(String::as_str).collect();
        let _ = writeln!(out, "  drivers: {}", d.join(", "));
    }
    let lost: Vec<String> = stats
        .channels()
        .iter()
        .map(|c| {
            let v = c.value.map_or_else(|| "—".to_string(), |v| v.to_string());
            format!("{} {v}", c.words)
        })
        .collect();
    let _ = writeln!(
        out,
        "  lost: {}, undecodable {undecodable}",
        lost.join(", ")
    );
    out
}

/// Tasks listed as stalled on mmap_lock.
const STALLED_LISTED: usize = 5;

/// The tasks most stalled on mmap_lock by held reservation waits (most held-overlap time,
/// then most time waiting, then tid), and how many more there are; `None` if none was.
fn stalled(agg: &Aggregate) -> Option<String> {
    let mut waiters: Vec<(&u32, &crate::aggregate::WaiterTotals)> = agg
        .waiters
        .iter()
        .filter(|(_, w)| w.held_overlap_ns > 0)
        .collect();
    if waiters.is_empty() {
        return None;
    }
    waiters.sort_by(|(ta, a), (tb, b)| {
        b.held_overlap_ns
            .cmp(&a.held_overlap_ns)
            .then(b.wait_ns.cmp(&a.wait_ns))
            .then(ta.cmp(tb))
    });
    let mut line = waiters
        .iter()
        .take(STALLED_LISTED)
        .map(|(tid, w)| {
            format!(
                "{}[{tid}] {} of {} waiting",
                sanitize(&w.comm),
                ns(w.held_overlap_ns),
                ns(w.wait_ns)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let more = waiters.len().saturating_sub(STALLED_LISTED);
    if more > 0 {
        let _ = write!(
            line,
            ", and {more} more task{}",
            if more == 1 { "" } else { "s" }
        );
    }
    Some(line)
}

/// The holders' stacks at release, most frequent first (top 5).
pub fn holder_stacks(stacks: &[crate::aggregate::HolderStack]) -> String {
    let mut out = String::new();
    for s in stacks.iter().take(5) {
        let _ = writeln!(
            out,
            "  holder {}[{}] released a reservation {} waited for, at:",
            sanitize(&s.comm),
            s.tgid,
            if s.count == 1 {
                "1 fault".to_string()
            } else {
                format!("{} faults", s.count)
            }
        );
        for f in s.frames.iter().take(16) {
            let _ = writeln!(out, "      {f}");
        }
    }
    out
}

/// Makes a kernel-provided string (comm) safe for a terminal line.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// bcc-style log2 histogram of one metric (`low -> high : count |***|`), under a title that
/// names the metric and the path(s) it counts.
pub fn log2_histogram(title: &str, h: &Histogram<u64>, unit_ns: bool) -> String {
    let mut out = String::new();
    if h.is_empty() {
        return out;
    }
    let _ = writeln!(out, "{title} ({} values)", h.len());
    let max_bucket = 64 - h.max().leading_zeros();
    let mut buckets = vec![0u64; max_bucket as usize + 1];
    for v in h.iter_recorded() {
        let b = 64 - v.value_iterated_to().leading_zeros();
        if let Some(slot) = buckets.get_mut(b as usize) {
            *slot += v.count_at_value();
        }
    }
    let first = buckets.iter().position(|&c| c > 0).unwrap_or(0);
    let peak = buckets.iter().copied().max().unwrap_or(1).max(1);
    let unit = if unit_ns { "ns" } else { "" };
    let _ = writeln!(
        out,
        "{:>24} : {:<8} distribution",
        format!("{unit}"),
        "count"
    );
    for (b, &count) in buckets.iter().enumerate().skip(first) {
        let low = if b == 0 { 0 } else { 1u64 << (b - 1) };
        let high = if b == 0 { 1 } else { (1u64 << b) - 1 };
        let stars = (count * 40).div_ceil(peak) as usize;
        let _ = writeln!(
            out,
            "{:>10} -> {:<10} : {:<8} |{:<40}|",
            low,
            high,
            count,
            "*".repeat(stars.min(40))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::new_histogram;

    #[test]
    fn units() {
        assert_eq!(ns(999), "999ns");
        assert_eq!(ns(12_345), "12.3µs");
        assert_eq!(ns(12_345_678), "12.35ms");
        assert_eq!(ns(12_345_678_901), "12.346s");
    }

    #[test]
    fn control_characters_are_not_printed() {
        assert_eq!(sanitize("a\nb\x1b[31m"), "a?b?[31m");
    }

    #[test]
    fn log2_buckets_cover_every_value() {
        let mut h = new_histogram();
        for v in [1u64, 3, 3, 1000] {
            h.record(v).expect("in range");
        }
        let text = log2_histogram("episode_latency, all paths", &h, true);
        assert!(
            text.starts_with("episode_latency, all paths (4 values)\n"),
            "{text}"
        );
        assert!(text.contains("2 -> 3          : 2"), "{text}");
        assert!(text.contains("512 -> 1023       : 1"), "{text}");
    }
}
