//! The comparison as data: what the text table shows and `--json` prints (stable field names).

use std::collections::BTreeSet;

use anyhow::Result;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::aggregate::Metric;

use super::{
    input::{ALL_CLASSES, Input, class_order},
    stats::{Buckets, MedianCi, UMethod, mann_whitney, median_ci},
};

pub const FORMAT: &str = "ttmlat-compare";
pub const VERSION: u32 = 1;
pub const CONFIDENCE: f64 = 0.95;

#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub format: &'static str,
    pub version: u32,
    /// Significance level of the U test.
    pub alpha: f64,
    /// Confidence level of the median intervals.
    pub confidence: f64,
    pub inputs: Vec<InputInfo>,
    /// Incompatibilities that `--force` overrode.
    pub forced_problems: Vec<String>,
    /// Episodes per path class; `counts` in input order.
    pub episodes: Vec<EpisodeRow>,
    pub metrics: Vec<MetricRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct InputInfo {
    pub name: String,
    pub file: String,
    pub label: Option<String>,
    pub tool_version: String,
    pub kernel_release: String,
    pub kernel_package: Option<String>,
    pub ttm_variant: Option<String>,
    pub hostname: String,
    pub repetitions: u32,
    pub duration_ns: u128,
    pub episodes: u64,
    pub lost: Lost,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Lost {
    pub probes: crate::loader::ProbeStats,
    pub undecodable_records: u64,
}

impl Lost {
    /// Something was lost, or a channel is unknown (so "0" cannot be said).
    pub fn any(&self) -> bool {
        self.probes.total() + self.undecodable_records > 0 || !self.probes.unknown().is_empty()
    }

    /// "ring buffer full 1, …" of the channels that lost something.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .probes
            .channels()
            .iter()
            .filter(|c| c.value.is_some_and(|v| v > 0))
            .map(|c| format!("{} {}", c.words, c.value.unwrap_or(0)))
            .collect();
        if self.undecodable_records > 0 {
            parts.push(format!("undecodable {}", self.undecodable_records));
        }
        let unknown = self.probes.unknown();
        if !unknown.is_empty() {
            parts.push(format!("unknown: {}", unknown.join(" ")));
        }
        parts.join(", ")
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct EpisodeRow {
    pub class: String,
    pub counts: Vec<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricRow {
    pub metric: &'static str,
    pub class: String,
    /// "ns" or "count".
    pub unit: &'static str,
    /// True for the "all" row made by merging every class of the metric.
    pub merged: bool,
    /// One per input, in input order.
    pub inputs: Vec<Summary>,
    /// One per input, in input order; null for the baseline (the first input) and where
    /// either side has no values.
    pub vs_base: Vec<Option<VsBase>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub count: u64,
    pub median: Option<u64>,
    /// Distribution-free interval for the median; null with fewer than 6 values.
    pub median_ci: Option<MedianCi>,
    pub p99: Option<u64>,
    pub p999: Option<u64>,
    pub max: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VsBase {
    /// (median − baseline median) / baseline median × 100; null when the baseline median is
    /// 0 and this one is not.
    pub delta_median_pct: Option<f64>,
    /// Two-sided Mann–Whitney U test p-value.
    pub p_value: f64,
    /// p_value < alpha.
    pub significant: bool,
    pub method: UMethod,
    /// U of the baseline against this input.
    pub u: f64,
    pub n_base: u64,
    pub n: u64,
    /// P(value here > value in the baseline) + ½·P(equal), at histogram resolution.
    pub prob_greater: f64,
}

fn summary(h: Option<&Histogram<u64>>, buckets: &Buckets) -> Summary {
    match h {
        Some(h) if !h.is_empty() => Summary {
            count: h.len(),
            median: Some(h.value_at_quantile(0.5)),
            median_ci: median_ci(buckets, CONFIDENCE),
            p99: Some(h.value_at_quantile(0.99)),
            p999: Some(h.value_at_quantile(0.999)),
            max: Some(h.max()),
        },
        _ => Summary {
            count: 0,
            median: None,
            median_ci: None,
            p99: None,
            p999: None,
            max: None,
        },
    }
}

fn vs_base(
    base: &Summary,
    base_b: &Buckets,
    this: &Summary,
    this_b: &Buckets,
    alpha: f64,
) -> Option<VsBase> {
    let test = mann_whitney(base_b, this_b)?;
    let (bm, m) = (base.median?, this.median?);
    let delta_median_pct = match (bm, m) {
        (0, 0) => Some(0.0),
        (0, _) => None,
        _ => Some((m as f64 - bm as f64) / bm as f64 * 100.0),
    };
    Some(VsBase {
        delta_median_pct,
        p_value: test.p_value,
        significant: test.p_value < alpha,
        method: test.method,
        u: test.u1,
        n_base: test.n1,
        n: test.n2,
        prob_greater: test.prob_y_greater(),
    })
}

fn info(i: &Input) -> InputInfo {
    let m = &i.rec.meta;
    InputInfo {
        name: i.name.clone(),
        file: i.file.display().to_string(),
        label: m.label.clone(),
        tool_version: m.tool_version.clone(),
        kernel_release: m.kernel_release.clone(),
        kernel_package: m.kernel_package.clone(),
        ttm_variant: m.ttm_variant.clone(),
        hostname: m.hostname.clone(),
        repetitions: i.rec.repetitions,
        duration_ns: i.duration_ns(),
        episodes: i.rec.counts.episodes.values().sum(),
        lost: Lost {
            probes: i.rec.probe_stats,
            undecodable_records: i.rec.undecodable_records,
        },
    }
}

/// The (metric, class) rows: every pair present in any input, plus, for a metric with more
/// than one class, a merged "all" row.
fn rows(inputs: &[Input]) -> Vec<(Metric, String, bool)> {
    let mut out = Vec::new();
    for metric in Metric::ALL {
        let mut classes: Vec<String> = inputs
            .iter()
            .flat_map(|i| i.hists.keys())
            .filter(|(m, _)| *m == metric)
            .map(|(_, c)| c.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        classes.sort_by_key(|c| class_order(c));
        let merge = classes.len() > 1 && !classes.iter().any(|c| c == ALL_CLASSES);
        out.extend(classes.into_iter().map(|c| (metric, c, false)));
        if merge {
            out.push((metric, ALL_CLASSES.to_string(), true));
        }
    }
    out
}

pub fn build(inputs: &[Input], alpha: f64, forced_problems: Vec<String>) -> Result<Comparison> {
    let mut metrics = Vec::new();
    for (metric, class, merged) in rows(inputs) {
        let hists = inputs
            .iter()
            .map(|i| i.histogram(metric, &class))
            .collect::<Result<Vec<_>>>()?;
        let buckets: Vec<Buckets> = hists
            .iter()
            .map(|h| h.as_ref().map(Buckets::from_histogram).unwrap_or_default())
            .collect();
        let summaries: Vec<Summary> = hists
            .iter()
            .zip(&buckets)
            .map(|(h, b)| summary(h.as_ref(), b))
            .collect();
        let vs: Vec<Option<VsBase>> = summaries
            .iter()
            .zip(&buckets)
            .enumerate()
            .map(|(k, (s, b))| {
                if k == 0 {
                    None
                } else {
                    vs_base(&summaries[0], &buckets[0], s, b, alpha)
                }
            })
            .collect();
        metrics.push(MetricRow {
            metric: metric.name(),
            class,
            unit: if metric.is_time() { "ns" } else { "count" },
            merged,
            inputs: summaries,
            vs_base: vs,
        });
    }

    let mut classes: Vec<String> = inputs
        .iter()
        .flat_map(|i| i.rec.counts.episodes.keys().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    classes.sort_by_key(|c| class_order(c));
    let episodes = classes
        .into_iter()
        .map(|class| EpisodeRow {
            counts: inputs
                .iter()
                .map(|i| i.rec.counts.episodes.get(&class).copied().unwrap_or(0))
                .collect(),
            class,
        })
        .collect();

    Ok(Comparison {
        format: FORMAT,
        version: VERSION,
        alpha,
        confidence: CONFIDENCE,
        inputs: inputs.iter().map(info).collect(),
        forced_problems,
        episodes,
        metrics,
    })
}
