//! What makes recordings incomparable. Different kernels, ttm variants or hosts are what a
//! comparison is for and are never refused; different tool major versions, histogram
//! resolutions or metric sets are (unless `--force`).

use std::collections::BTreeSet;

use crate::aggregate::Metric;

use super::input::Input;

/// Metrics recorded for every completed episode: an input with any histograms lacks one of
/// them only if it was made by a tool that measured something else. The other metrics are
/// recorded only for episodes where they are non-zero (a kernel that never drops mmap_lock has
/// no `wait_dropped`), so their absence means "no such event", which is a result to compare,
/// not an incompatibility.
pub const PER_EPISODE_METRICS: [Metric; 2] = [Metric::EpisodeLatency, Metric::Retries];

/// The part of a version that must match: the major version, or for 0.x the minor one too
/// (Cargo's compatibility rule). Unparseable versions must match exactly.
pub fn compat_version(v: &str) -> String {
    let core = v.trim().split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let nums: Option<Vec<u64>> = parts.iter().map(|p| p.parse().ok()).collect();
    match nums.as_deref() {
        Some([0, minor, ..]) => format!("0.{minor}"),
        Some([major, ..]) => major.to_string(),
        _ => format!("{v:?}"),
    }
}

/// Every reason these inputs cannot be compared; empty when they can.
pub fn problems(inputs: &[Input]) -> Vec<String> {
    let mut out = Vec::new();

    let versions: BTreeSet<String> = inputs
        .iter()
        .map(|i| compat_version(&i.rec.meta.tool_version))
        .collect();
    if versions.len() > 1 {
        let list: Vec<String> = inputs
            .iter()
            .map(|i| format!("{} {:?}", i.name, i.rec.meta.tool_version))
            .collect();
        out.push(format!(
            "recordings come from different major versions of ttmlat ({}); metrics may be \
             defined differently",
            list.join(", ")
        ));
    }

    // Bucket layout: lowest discernible value and significant digits (the highest trackable
    // value only extends the range).
    let resolution = |i: &Input| -> BTreeSet<(u64, u8)> {
        i.hists.values().map(|h| (h.low(), h.sigfig())).collect()
    };
    let all: BTreeSet<(u64, u8)> = inputs.iter().flat_map(resolution).collect();
    if all.len() > 1 {
        let list: Vec<String> = inputs
            .iter()
            .map(|i| {
                let r: Vec<String> = resolution(i)
                    .iter()
                    .map(|(low, sig)| format!("{sig} significant digits from {low}"))
                    .collect();
                format!("{}: {}", i.name, r.join(" and "))
            })
            .collect();
        out.push(format!(
            "histogram resolutions differ ({}); ties and quantiles would not line up",
            list.join("; ")
        ));
    }

    let with_data: Vec<&Input> = inputs.iter().filter(|i| !i.hists.is_empty()).collect();
    for metric in PER_EPISODE_METRICS {
        let (have, lack): (Vec<&Input>, Vec<&Input>) = with_data
            .iter()
            .partition(|i| i.metrics().contains(&metric));
        if !have.is_empty() && !lack.is_empty() {
            let names = |v: &[&Input]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
            out.push(format!(
                "metric sets differ: {} is in {} but not in {}, which have other histograms \
                 (recorded by a tool that measured different things?)",
                metric.name(),
                names(&have).join(", "),
                names(&lack).join(", ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compatible_versions_follow_cargo_rules() {
        assert_eq!(compat_version("0.1.0"), "0.1");
        assert_eq!(compat_version("0.1.7-dev"), "0.1");
        assert_eq!(compat_version("1.2.3"), "1");
        assert_eq!(compat_version("2.0.0+abc"), "2");
        assert_ne!(compat_version("0.1.0"), compat_version("0.2.0"));
        assert_eq!(compat_version(""), "\"\"");
        assert_ne!(compat_version("x"), compat_version("y"));
    }
}
