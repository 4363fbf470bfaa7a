//! Names of ttmlat 0.1 recordings that today's ttmlat reads under their new names.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::{Recording, decode_histogram, entry};
use crate::{aggregate::Metric, attribution::EpisodePath};

/// ttmlat 0.1 called the episode path retry-no-handler `abandoned`: its counts (total
/// and per process) and any histogram of that class are read under the new name, so that
/// `compare` and `merge` line old and new recordings up. The one place that knows it
/// (`Recording::parse` calls it).
pub(super) fn rename_paths(rec: &mut Recording) -> Result<()> {
    const OLD: &str = "abandoned";
    let new = EpisodePath::RetryNoHandler.name();
    let rename = |paths: &mut BTreeMap<String, u64>| {
        if let Some(n) = paths.remove(OLD) {
            *paths.entry(new.to_string()).or_default() += n;
        }
    };
    rename(&mut rec.counts.episodes);
    for p in rec.processes.values_mut() {
        rename(&mut p.episode_paths);
    }
    let (old, mut kept): (Vec<_>, Vec<_>) = std::mem::take(&mut rec.histograms)
        .into_iter()
        .partition(|h| h.class == OLD);
    let renamed = !old.is_empty();
    for h in old {
        let metric = Metric::from_name(&h.metric)
            .with_context(|| format!("unknown metric {:?}", h.metric))?;
        let mut sum = decode_histogram(&h.encoded)?;
        if let Some(pos) = kept
            .iter()
            .position(|k| k.metric == h.metric && k.class == new)
        {
            let same = kept.remove(pos);
            sum.add(decode_histogram(&same.encoded)?).map_err(|e| {
                anyhow::anyhow!("{}/{OLD} and {}/{new} do not add: {e}", h.metric, h.metric)
            })?;
        }
        kept.push(entry(metric, new, &sum)?);
    }
    if renamed {
        // The order `from_aggregate` writes: by metric, then class.
        kept.sort_by(|a, b| {
            (Metric::from_name(&a.metric), &a.class).cmp(&(Metric::from_name(&b.metric), &b.class))
        });
    }
    rec.histograms = kept;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::ProcessEntry;

    /// ttmlat 0.1 called the retry-no-handler path `abandoned` (counts, per-process paths,
    /// and `counts.abandoned`): its recordings read as if written today, so that compare and
    /// merge line them up with new ones.
    #[test]
    fn reads_the_0_1_0_name_of_retry_no_handler() -> Result<()> {
        let mut new = super::super::tests::sample();
        new.counts.episodes.insert("retry-no-handler".into(), 2);
        new.counts.retry_no_handler = 2;
        let latency = new.histograms[0].clone();
        new.processes.insert(
            7,
            ProcessEntry {
                comm: "w".into(),
                episodes: 0,
                attempts: 2,
                attempt_paths: BTreeMap::new(),
                episode_paths: BTreeMap::from([("retry-no-handler".to_string(), 2)]),
                episode_latency: latency.clone(),
            },
        );
        let mut retry_class = latency.clone();
        retry_class.class = "retry-no-handler".into();
        new.histograms.push(retry_class);
        let mut v = serde_json::to_value(&new)?;
        let counts = v["counts"].as_object_mut().context("counts")?;
        let n = counts
            .remove("retry_no_handler")
            .context("retry_no_handler")?;
        counts.insert("abandoned".into(), n);
        let episodes = v["counts"]["episodes"]
            .as_object_mut()
            .context("episodes")?;
        let n = episodes.remove("retry-no-handler").context("path")?;
        episodes.insert("abandoned".into(), n);
        let paths = v["processes"]["7"]["episode_paths"]
            .as_object_mut()
            .context("episode_paths")?;
        let n = paths.remove("retry-no-handler").context("process path")?;
        paths.insert("abandoned".into(), n);
        // A histogram of the old class is added to the new one's.
        let mut old_class = serde_json::to_value(&latency)?;
        old_class["class"] = "abandoned".into();
        v["histograms"]
            .as_array_mut()
            .context("histograms")?
            .push(old_class);
        let old = Recording::parse(&serde_json::to_vec(&v)?)?;
        assert_eq!(old.counts, new.counts);
        assert_eq!(old.processes, new.processes);
        let classes: Vec<(&str, u64)> = old
            .histograms
            .iter()
            .map(|h| (h.class.as_str(), h.count))
            .collect();
        assert_eq!(classes, vec![("retry-no-handler", 8), ("uncontended", 4)]);
        assert!(!serde_json::to_string(&old)?.contains("abandoned"));
        Ok(())
    }
}
