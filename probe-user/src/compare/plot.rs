//! Percentile plot (SVG): one panel per time metric, latency against percentile on a "nines"
//! axis, one line per input, as HdrHistogram's plotter draws them. x = log10(1 / (1 − q)): 0 → 0%, 1 → 90%, 2 → 99%,
//! 3 → 99.9% ...; y is logarithmic.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::aggregate::Metric;

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

/// Which histograms `--plot` draws.
pub struct PlotSpec<'a> {
    /// None: every time metric with values in more than one input, a panel each.
    pub metric: Option<Metric>,
    /// None: all classes merged.
    pub class: Option<&'a str>,
}

/// One input's line: its name and its (nines, value) points.
type Series = (String, Vec<(f64, u64)>);

/// One panel: a metric and its series.
struct Panel {
    metric: Metric,
    series: Vec<Series>,
}

fn series(inputs: &[Input], metric: Metric, class: &str) -> Result<Vec<Series>> {
    let mut out = Vec::new();
    for input in inputs {
        if let Some(h) = input.histogram(metric, class)?.filter(|h| !h.is_empty()) {
            out.push((input.name.clone(), curve(&h)));
        }
    }
    Ok(out)
}

/// Classes of `metric` (any metric: None) present in any input, for error messages.
fn classes_present(inputs: &[Input], metric: Option<Metric>) -> String {
    let mut classes: Vec<&str> = inputs
        .iter()
        .flat_map(|i| i.hists.keys())
        .filter(|(m, _)| metric.is_none_or(|want| *m == want))
        .map(|(_, c)| c.as_str())
        .collect();
    classes.sort_unstable();
    classes.dedup();
    if classes.is_empty() {
        "none".to_string()
    } else {
        classes.join(", ")
    }
}

fn panels(inputs: &[Input], spec: &PlotSpec) -> Result<Vec<Panel>> {
    let class = spec.class.unwrap_or(ALL_CLASSES);
    if let Some(metric) = spec.metric {
        if !metric.is_time() {
            bail!(
                "--plot draws latencies; {} is a count (choose a time metric with --metric)",
                metric.name()
            );
        }
        let series = series(inputs, metric, class)?;
        if series.is_empty() {
            bail!(
                "no input has values of {}/{class} to plot (classes present: {})",
                metric.name(),
                classes_present(inputs, Some(metric))
            );
        }
        return Ok(vec![Panel { metric, series }]);
    }
    let mut panels = Vec::new();
    for metric in Metric::ALL.into_iter().filter(|m| m.is_time()) {
        let series = series(inputs, metric, class)?;
        if series.len() > 1 {
            panels.push(Panel { metric, series });
        }
    }
    if panels.is_empty() {
        bail!(
            "no time metric has values of class {class} in more than one input (classes \
             present: {}); name one with --metric to plot it alone",
            classes_present(inputs, None)
        );
    }
    Ok(panels)
}

/// The unit of a latency axis, chosen once from its largest value so that every label of the
/// axis is in it (never `1000.0µs` beside `10.00ms`): (nanoseconds per unit, suffix).
pub fn axis_unit(max_ns: f64) -> (f64, &'static str) {
    match max_ns {
        m if m < 1e4 => (1.0, "ns"),
        m if m < 1e7 => (1e3, "µs"),
        m if m < 1e10 => (1e6, "ms"),
        _ => (1e9, "s"),
    }
}

/// Significant digits of an axis label.
const LABEL_DIGITS: i32 = 3;

/// An axis label in the axis's unit with [`LABEL_DIGITS`] significant digits, however small
/// the value is in that unit (1 µs on a seconds axis is `0.000001s`, never `0s`), no trailing
/// zeros.
pub fn axis_label(v_ns: f64, (scale, suffix): (f64, &str)) -> String {
    let x = v_ns / scale;
    let decimals = if x > 0.0 && x.is_finite() {
        (LABEL_DIGITS - 1 - x.abs().log10().floor() as i32).max(0) as usize
    } else {
        0
    };
    let mut s = format!("{x:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{suffix}")
}

/// Panel width and height, in pixels.
const PANEL: (u32, u32) = (720, 440);

pub fn draw(path: &Path, inputs: &[Input], spec: &PlotSpec) -> Result<()> {
    let panels = panels(inputs, spec)?;
    let cols = panels.len().min(2);
    let rows = panels.len().div_ceil(2);
    let size = (PANEL.0 * cols as u32, PANEL.1 * rows as u32 + 40);
    let root = SVGBackend::new(path, size).into_drawing_area();
    let plot_err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| plot_err(&e))?;
    let class = match spec.class {
        Some(c) => format!("path {c}"),
        None => "all paths".to_string(),
    };
    let root = root
        .titled(
            &format!("ttmlat compare: percentiles ({class})"),
            ("sans-serif", 22),
        )
        .map_err(|e| plot_err(&e))?;
    let areas = root.split_evenly((rows, cols));
    for (panel, area) in panels.iter().zip(areas.iter()) {
        draw_panel(area, panel).map_err(|e| plot_err(&e))?;
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    panel: &Panel,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let points = || panel.series.iter().flat_map(|(_, pts)| pts.iter());
    let x_max = panel
        .series
        .iter()
        .filter_map(|(_, pts)| pts.last().map(|p| p.0))
        .fold(1.0f64, f64::max)
        .ceil();
    let y_min = points().map(|p| p.1).min().unwrap_or(1).max(1) as f64;
    let y_max = points().map(|p| p.1).max().unwrap_or(1).max(2) as f64;
    let unit = axis_unit(y_max * 1.2);
    let mut chart = ChartBuilder::on(area)
        .caption(panel.metric.name(), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (y_min / 1.2..y_max * 1.2).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc(format!("{} ({})", panel.metric.name(), unit.1))
        .x_labels(x_max as usize + 1)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .x_label_formatter(&|x| nines_label(*x))
        .y_label_formatter(&|y| axis_label(*y, unit))
        .draw()?;
    for (k, (name, pts)) in panel.series.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(x, v)| (x, v.max(1) as f64)),
                color.stroke_width(2),
            ))?
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::new_histogram;

    #[test]
    fn an_axis_keeps_one_unit() {
        let unit = axis_unit(12e6);
        assert_eq!(unit, (1e6, "ms"));
        assert_eq!(axis_label(1e6, unit), "1ms");
        assert_eq!(axis_label(10e6, unit), "10ms");
        assert_eq!(axis_label(250e3, unit), "0.25ms");
        assert_eq!(axis_label(123_456_789.0, unit), "123ms");
        assert_eq!(axis_unit(5e3), (1.0, "ns"));
        assert_eq!(axis_label(900.0, axis_unit(5e3)), "900ns");
        assert_eq!(axis_unit(2e10).1, "s");
    }

    /// Over latencies from 1 µs to 10 s, every axis plotters draws (its tick values) labels
    /// each tick in the axis's one unit, none rounded to 0, none equal to its neighbour's, each
    /// within half a unit of its third significant digit.
    #[test]
    fn labels_keep_their_digits_from_microseconds_to_seconds() {
        use plotters::coord::{combinators::LogCoord, ranged1d::Ranged};
        let decades: Vec<f64> = (3..=10).map(|e| 10f64.powi(e)).collect();
        let mut axes = 0;
        for (i, &lo) in decades.iter().enumerate() {
            for &hi in &decades[i + 1..] {
                // As draw_panel builds the axis.
                let (y_min, y_max) = (lo / 1.2, hi * 1.2);
                let unit = axis_unit(y_max * 1.2);
                let coord: LogCoord<f64> = (y_min..y_max).log_scale().into();
                // The mesh's default label count, and a crowded panel's.
                for hint in [11usize, 3] {
                    let mut ticks = coord.key_points(hint);
                    // plotters repeats a decade's value as its last minor tick and as the
                    // next decade (one place on the axis): one label.
                    ticks.dedup_by(|b, a| (*b - *a).abs() <= *a * 1e-9);
                    assert!(!ticks.is_empty(), "{lo}..{hi}");
                    let labels: Vec<String> = ticks.iter().map(|t| axis_label(*t, unit)).collect();
                    for (t, l) in ticks.iter().zip(&labels) {
                        let number = l
                            .strip_suffix(unit.1)
                            .unwrap_or_else(|| panic!("{l} is not in {} ({lo}..{hi})", unit.1));
                        let n: f64 = number.parse().unwrap_or_else(|e| panic!("{l}: {e}"));
                        assert!(n > 0.0, "{t} ns labelled {l} ({lo}..{hi})");
                        let want = t / unit.0;
                        assert!((n - want).abs() <= want * 5e-3, "{t} ns labelled {l}");
                    }
                    assert!(
                        labels.windows(2).all(|w| w[0] != w[1]),
                        "{lo}..{hi}: {labels:?}"
                    );
                    axes += 1;
                }
            }
        }
        assert!(axes > 20);
        let ms = axis_unit(12e6);
        let labels: Vec<String> = [1e3, 1e4, 1e5, 1e6, 1e7]
            .iter()
            .map(|v| axis_label(*v, ms))
            .collect();
        assert_eq!(labels, ["0.001ms", "0.01ms", "0.1ms", "1ms", "10ms"]);
        assert_eq!(axis_label(1e3, axis_unit(1.2e10)), "0.000001s");
        assert_eq!(axis_label(0.0, ms), "0ms");
    }

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
