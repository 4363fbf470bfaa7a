//! Percentile plot (SVG): latency against percentile on a "nines" axis, one line per input, as
//! HdrHistogram's plotter draws them. x = log10(1 / (1 − q)): 0 → 0%, 1 → 90%, 2 → 99%,
//! 3 → 99.9% ...; y is logarithmic.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::{aggregate::Metric, report::ns};

use super::input::{ALL_CLASSES, Input};

/// Points per decade of the nines axis.
const STEPS_PER_NINE: u32 = 50;

/// Percentile label of a nines-axis position: 1 → "90%", 2.5 → "99.68%".
pub fn nines_label(x: f64) -> String {
    let pct = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = if x <= 2.0 {
        0
    } else {
        (x - 2.0).ceil() as usize
    };
    let s = format!("{pct:.decimals$}");
    format!("{s}%")
}

/// (nines, value) points of one histogram, from the minimum up to the maximum, which sits at
/// log10(n) (the quantile 1 − 1/n).
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let x_end = (h.len() as f64).log10();
    let steps = ((x_end * f64::from(STEPS_PER_NINE)).ceil() as u32).max(1);
    let xs: Vec<f64> = (0..steps)
        .map(|i| f64::from(i) / f64::from(STEPS_PER_NINE))
        .collect();
    let quantiles = xs.iter().map(|x| 1.0 - 10f64.powf(-x));
    let mut points: Vec<(f64, u64)> = xs
        .iter()
        .copied()
        .zip(h.value_at_quantiles(quantiles))
        .collect();
    points.push((x_end, h.max()));
    points
}

/// Which histogram `--plot` draws.
pub struct PlotSpec<'a> {
    pub metric: Metric,
    /// None: all classes merged.
    pub class: Option<&'a str>,
}

pub fn draw(path: &Path, inputs: &[Input], spec: &PlotSpec) -> Result<()> {
    if !spec.metric.is_time() {
        bail!(
            "--plot draws latencies; {} is a count (choose a time metric with --metric)",
            spec.metric.name()
        );
    }
    let class = spec.class.unwrap_or(ALL_CLASSES);
    let mut series = Vec::new();
    for input in inputs {
        let h = input.histogram(spec.metric, class)?;
        if let Some(h) = h.filter(|h| !h.is_empty()) {
            series.push((input.name.clone(), curve(&h)));
        }
    }
    if series.is_empty() {
        let mut classes: Vec<&str> = inputs
            .iter()
            .flat_map(|i| i.hists.keys())
            .filter(|(m, _)| *m == spec.metric)
            .map(|(_, c)| c.as_str())
            .collect();
        classes.sort_unstable();
        classes.dedup();
        bail!(
            "no input has values of {}/{class} to plot (classes present: {})",
            spec.metric.name(),
            if classes.is_empty() {
                "none".to_string()
            } else {
                classes.join(", ")
            }
        );
    }
    let x_max = series
        .iter()
        .filter_map(|(_, pts)| pts.last().map(|p| p.0))
        .fold(1.0f64, f64::max)
        .ceil();
    let y_min = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
        .min()
        .unwrap_or(1)
        .max(1) as f64;
    let y_max = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let title = match spec.class {
        Some(c) => format!("{} ({c})", spec.metric.name()),
        None => format!("{} (all paths)", spec.metric.name()),
    };

    let root = SVGBackend::new(path, (1024, 640)).into_drawing_area();
    let plot_err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max, (y_min / 1.2..y_max * 1.2).log_scale())
        .map_err(|e| plot_err(&e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency")
        .x_labels(x_max as usize + 1)
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .x_label_formatter(&|x| nines_label(*x))
        .y_label_formatter(&|y| ns(y.round() as u64))
        .draw()
        .map_err(|e| plot_err(&e))?;
    for (k, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(x, v)| (x, v.max(1) as f64)),
                color.stroke_width(2),
            ))
            .map_err(|e| plot_err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(|e| plot_err(&e))?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::new_histogram;

    #[test]
    fn nines_axis_labels() {
        assert_eq!(nines_label(0.0), "0%");
        assert_eq!(nines_label(1.0), "90%");
        assert_eq!(nines_label(2.0), "99%");
        assert_eq!(nines_label(3.0), "99.9%");
        assert_eq!(nines_label(5.0), "99.999%");
    }

    #[test]
    fn curve_runs_from_the_minimum_to_the_maximum() {
        let mut h = new_histogram();
        for v in 1..=1_000u64 {
            h.record(v * 1_000).expect("in range");
        }
        let pts = curve(&h);
        assert_eq!(pts.first().map(|p| p.1), Some(h.value_at_quantile(0.0)));
        assert_eq!(pts.last(), Some(&(3.0, h.max())));
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        // x = 1 is the 90th percentile.
        let p90 = pts.iter().find(|p| (p.0 - 1.0).abs() < 1e-9).expect("x=1");
        assert_eq!(p90.1, h.value_at_quantile(0.9));
    }
}
