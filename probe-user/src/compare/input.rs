//! The recordings being compared: read, validated, named, histograms decoded once.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use hdrhistogram::Histogram;

use crate::{
    aggregate::{Metric, new_histogram},
    attribution::EpisodePath,
    recording::{Recording, decode_histogram},
    report::sanitize,
};

/// The class of a histogram holding every path of a metric.
pub const ALL_CLASSES: &str = "all";

pub struct Input {
    /// Column header: `meta.label`, else the file stem (made unique).
    pub name: String,
    pub file: PathBuf,
    pub rec: Recording,
    pub hists: BTreeMap<(Metric, String), Histogram<u64>>,
}

impl Input {
    pub fn read(path: &Path) -> Result<Self> {
        let rec = Recording::read(path)?;
        Self::from_recording(path, rec)
    }

    pub fn from_recording(path: &Path, rec: Recording) -> Result<Self> {
        let mut hists = BTreeMap::new();
        for e in &rec.histograms {
            let metric = Metric::from_name(&e.metric)
                .with_context(|| format!("unknown metric {:?}", e.metric))?;
            let h = decode_histogram(&e.encoded)
                .with_context(|| format!("histogram {}/{}", e.metric, e.class))?;
            if hists.insert((metric, e.class.clone()), h).is_some() {
                bail!("histogram {}/{} appears twice", e.metric, e.class);
            }
        }
        let name = match rec.meta.label.as_deref().map(str::trim) {
            Some(l) if !l.is_empty() => sanitize(l),
            _ => path
                .file_stem()
                .map(|s| sanitize(&s.to_string_lossy()))
                .unwrap_or_else(|| sanitize(&path.display().to_string())),
        };
        Ok(Self {
            name,
            file: path.to_path_buf(),
            rec,
            hists,
        })
    }

    /// Metrics with at least one histogram.
    pub fn metrics(&self) -> BTreeSet<Metric> {
        self.hists.keys().map(|(m, _)| *m).collect()
    }

    /// The histogram of `metric` for `class`, or all of the metric's classes merged when
    /// `class` is [`ALL_CLASSES`] and the recording has no histogram of that name.
    /// None when the recording has no value for it.
    pub fn histogram(&self, metric: Metric, class: &str) -> Result<Option<Histogram<u64>>> {
        if let Some(h) = self.hists.get(&(metric, class.to_string())) {
            return Ok(Some(h.clone()));
        }
        if class != ALL_CLASSES {
            return Ok(None);
        }
        let mut merged = new_histogram();
        let mut any = false;
        for ((m, c), h) in &self.hists {
            if *m == metric {
                merged
                    .add(h)
                    .with_context(|| format!("merging {}/{c} of {}", m.name(), self.name))?;
                any = true;
            }
        }
        Ok(any.then_some(merged))
    }

    pub fn duration_ns(&self) -> u128 {
        self.rec
            .meta
            .end_unix_ns
            .saturating_sub(self.rec.meta.start_unix_ns)
    }
}

/// Reads every file; the first failure is returned with the file named.
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Input>> {
    // Recording::read names the file in its errors.
    let mut inputs = paths
        .iter()
        .enumerate()
        .map(|(i, p)| Input::read(p).with_context(|| format!("input {} of {}", i + 1, paths.len())))
        .collect::<Result<Vec<_>>>()?;
    make_names_unique(&mut inputs);
    Ok(inputs)
}

/// Two inputs with the same label or stem get their position appended ("run #2").
pub fn make_names_unique(inputs: &mut [Input]) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in inputs.iter() {
        *seen.entry(i.name.clone()).or_default() += 1;
    }
    for (pos, input) in inputs.iter_mut().enumerate() {
        if seen.get(&input.name).copied().unwrap_or(0) > 1 {
            input.name = format!("{} #{}", input.name, pos + 1);
        }
    }
}

/// Display order of path classes: the episode paths in their usual order, then unknown names,
/// then "all".
pub fn class_order(class: &str) -> (usize, String) {
    let known = EpisodePath::ALL.iter().position(|p| p.name() == class);
    match known {
        Some(i) => (i, String::new()),
        None if class == ALL_CLASSES => (usize::MAX, String::new()),
        None => (EpisodePath::ALL.len(), class.to_string()),
    }
}
