//! The comparison as benchstat-style text tables whose column groups are the inputs.

use std::fmt::Write as _;

use crate::report::ns;

use super::{
    model::{Comparison, MetricRow, Summary, VsBase},
    stats::{EXACT_U_MAX_N, MedianCi},
};

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
}

/// Columns in titled groups; the first group holds the row labels.
struct Grid {
    groups: Vec<(String, usize)>,
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(s: &str, w: usize, align: Align) -> String {
    let fill = " ".repeat(w.saturating_sub(width(s)));
    match align {
        Align::Left => format!("{s}{fill}"),
        Align::Right => format!("{fill}{s}"),
    }
}

impl Grid {
    fn render(&self) -> String {
        let ncols = self.header.len();
        let mut w: Vec<usize> = self.header.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (c, cell) in row.iter().enumerate().take(ncols) {
                w[c] = w[c].max(width(cell));
            }
        }
        // Widen a group's last column until its title fits.
        let mut first = 0;
        for (title, n) in &self.groups {
            if *n == 0 {
                continue;
            }
            let cols = first..first + n;
            let inner: usize = w[cols.clone()].iter().sum::<usize>() + 2 * (n - 1);
            if width(title) > inner {
                w[cols.end - 1] += width(title) - inner;
            }
            first += n;
        }
        let line = |cells: &[String], aligns: &dyn Fn(usize) -> Align, sep: &str| -> String {
            let mut out = String::new();
            let mut c = 0;
            for (g, (_, n)) in self.groups.iter().enumerate() {
                if g > 0 {
                    out.push_str(sep);
                }
                let parts: Vec<String> = (c..c + n)
                    .map(|k| pad(cells.get(k).map_or("", String::as_str), w[k], aligns(k)))
                    .collect();
                out.push_str(&parts.join("  "));
                c += n;
            }
            format!("{}\n", out.trim_end())
        };
        let mut titles = Vec::new();
        let mut c = 0;
        for (title, n) in &self.groups {
            // A title spans its group; pad it as the group's first cell, the rest empty.
            let inner: usize = w[c..c + n].iter().sum::<usize>() + 2 * n.saturating_sub(1);
            titles.push(pad(title, inner, Align::Left));
            c += n;
        }
        let mut out = String::new();
        let _ = writeln!(out, "{}", titles.join(" │ ").trim_end());
        if self.header.iter().any(|h| !h.is_empty()) {
            out.push_str(&line(&self.header, &|k| self.align[k], " │ "));
        }
        for row in &self.rows {
            out.push_str(&line(row, &|k| self.align[k], "   "));
        }
        out
    }
}

fn value(unit: &str, v: u64) -> String {
    if unit == "ns" { ns(v) } else { v.to_string() }
}

fn ci_cell(unit: &str, s: &Summary) -> String {
    let Some(median) = s.median else {
        return String::new();
    };
    match s.median_ci {
        None => "±∞".into(),
        Some(MedianCi { low, high, .. }) if median == 0 => {
            if high == 0 {
                "±0%".into()
            } else {
                format!("[{}, {}]", value(unit, low), value(unit, high))
            }
        }
        Some(MedianCi { low, high, .. }) => {
            let spread = median.saturating_sub(low).max(high.saturating_sub(median));
            let pct = spread as f64 / median as f64 * 100.0;
            if spread == 0 {
                "±0%".into()
            } else if pct < 1.0 {
                format!("±{pct:.1}%")
            } else {
                format!("±{pct:.0}%")
            }
        }
    }
}

fn n_text(v: &VsBase) -> String {
    if v.n_base == v.n {
        format!("n={}", v.n)
    } else {
        format!("n={}+{}", v.n_base, v.n)
    }
}

/// benchstat's "vs base": `-17.20%` or `~`, then `(p=0.000 n=10)`.
fn vs_cells(v: Option<&VsBase>) -> [String; 2] {
    let Some(v) = v else {
        return [String::new(), String::new()];
    };
    let delta = if !v.significant {
        "~".to_string()
    } else {
        match v.delta_median_pct {
            Some(d) => format!("{d:+.2}%"),
            None => "+∞%".into(),
        }
    };
    [delta, format!("(p={:.3} {})", v.p_value, n_text(v))]
}

fn input_headers(c: &Comparison) -> Vec<String> {
    c.inputs.iter().map(|i| i.name.clone()).collect()
}

fn median_table(c: &Comparison, rows: &[&MetricRow]) -> String {
    let names = input_headers(c);
    let mut groups = vec![(String::new(), 1)];
    let mut header = vec!["path".to_string()];
    let mut align = vec![Align::Left];
    for (k, name) in names.iter().enumerate() {
        let n = if k == 0 { 2 } else { 4 };
        groups.push((name.clone(), n));
        header.extend(["median".into(), "95% CI".into()]);
        align.extend([Align::Right, Align::Left]);
        if k > 0 {
            header.extend(["vs base".into(), String::new()]);
            align.extend([Align::Right, Align::Left]);
        }
    }
    let mut out_rows = Vec::new();
    for r in rows {
        let mut row = vec![r.class.clone()];
        for (k, s) in r.inputs.iter().enumerate() {
            row.push(s.median.map_or("—".into(), |m| value(r.unit, m)));
            row.push(ci_cell(r.unit, s));
            if k > 0 {
                row.extend(vs_cells(r.vs_base.get(k).and_then(Option::as_ref)));
            }
        }
        out_rows.push(row);
    }
    Grid {
        groups,
        header,
        align,
        rows: out_rows,
    }
    .render()
}

fn tail_table(c: &Comparison, rows: &[&MetricRow]) -> String {
    let names = input_headers(c);
    let mut groups = vec![(String::new(), 1)];
    let mut header = vec!["path".to_string()];
    let mut align = vec![Align::Left];
    for name in &names {
        groups.push((name.clone(), 4));
        header.extend(["n", "p99", "p99.9", "max"].map(String::from));
        align.extend([Align::Right; 4]);
    }
    let opt = |unit: &str, v: Option<u64>| v.map_or("—".into(), |v| value(unit, v));
    let out_rows = rows
        .iter()
        .map(|r| {
            let mut row = vec![r.class.clone()];
            for s in &r.inputs {
                row.push(s.count.to_string());
                row.push(opt(r.unit, s.p99));
                row.push(opt(r.unit, s.p999));
                row.push(opt(r.unit, s.max));
            }
            row
        })
        .collect();
    Grid {
        groups,
        header,
        align,
        rows: out_rows,
    }
    .render()
}

fn inputs_table(c: &Comparison) -> String {
    let names = input_headers(c);
    let mut groups = vec![(String::new(), 1)];
    let mut align = vec![Align::Left];
    for (k, name) in names.iter().enumerate() {
        let title = if k == 0 {
            format!("{name} (baseline)")
        } else {
            name.clone()
        };
        groups.push((title, 1));
        align.push(Align::Left);
    }
    let or_dash = |s: Option<&str>| s.filter(|s| !s.is_empty()).unwrap_or("—").to_string();
    let field = |label: &str, f: &dyn Fn(&super::model::InputInfo) -> String| {
        let mut row = vec![label.to_string()];
        row.extend(c.inputs.iter().map(f));
        row
    };
    let rows = vec![
        field("file", &|i| i.file.clone()),
        field("kernel", &|i| or_dash(Some(&i.kernel_release))),
        field("package", &|i| or_dash(i.kernel_package.as_deref())),
        field("ttm variant", &|i| or_dash(i.ttm_variant.as_deref())),
        field("label", &|i| or_dash(i.label.as_deref())),
        field("repetitions", &|i| i.repetitions.to_string()),
        field("duration", &|i| {
            if i.duration_ns == 0 {
                "—".into()
            } else {
                format!("{:.1}s", i.duration_ns as f64 / 1e9)
            }
        }),
        field("episodes", &|i| i.episodes.to_string()),
        field("lost", &|i| {
            if i.lost.any() {
                i.lost.describe()
            } else {
                "0".into()
            }
        }),
        field("ttmlat", &|i| or_dash(Some(&i.tool_version))),
    ];
    // Kernel-provided and user-provided strings: no control characters on the terminal.
    let rows = rows
        .into_iter()
        .map(|r| r.iter().map(|s| crate::report::sanitize(s)).collect())
        .collect();
    Grid {
        groups,
        header: vec![String::new(); names.len() + 1],
        align,
        rows,
    }
    .render()
}

fn episodes_table(c: &Comparison) -> String {
    let names = input_headers(c);
    let totals: Vec<u64> = (0..names.len())
        .map(|k| c.episodes.iter().map(|e| e.counts[k]).sum())
        .collect();
    let mut groups = vec![(String::new(), 1)];
    let mut header = vec!["path".to_string()];
    let mut align = vec![Align::Left];
    for name in &names {
        groups.push((name.clone(), 2));
        header.extend(["episodes".into(), "share".into()]);
        align.extend([Align::Right, Align::Right]);
    }
    let share = |n: u64, total: u64| {
        if total == 0 {
            "—".to_string()
        } else {
            format!("{:.1}%", n as f64 / total as f64 * 100.0)
        }
    };
    let mut rows: Vec<Vec<String>> = c
        .episodes
        .iter()
        .map(|e| {
            let mut row = vec![e.class.clone()];
            for (k, n) in e.counts.iter().enumerate() {
                row.push(n.to_string());
                row.push(share(*n, totals[k]));
            }
            row
        })
        .collect();
    let mut total_row = vec!["total".to_string()];
    for t in &totals {
        total_row.push(t.to_string());
        total_row.push(String::new());
    }
    rows.push(total_row);
    Grid {
        groups,
        header,
        align,
        rows,
    }
    .render()
}

/// The whole text report.
pub fn render(c: &Comparison) -> String {
    let mut out = String::new();
    for p in &c.forced_problems {
        let _ = writeln!(out, "warning (--force): {p}");
    }
    if !c.forced_problems.is_empty() {
        out.push('\n');
    }
    out.push_str(&inputs_table(c));
    out.push('\n');
    if !c.episodes.is_empty() {
        let _ = writeln!(out, "episodes by path");
        out.push_str(&episodes_table(c));
        out.push('\n');
    }
    let mut metrics: Vec<&'static str> = Vec::new();
    for r in &c.metrics {
        if !metrics.contains(&r.metric) {
            metrics.push(r.metric);
        }
    }
    for metric in metrics {
        let rows: Vec<&MetricRow> = c.metrics.iter().filter(|r| r.metric == metric).collect();
        let unit = rows.first().map_or("", |r| r.unit);
        let _ = writeln!(out, "{metric} ({unit}): median");
        out.push_str(&median_table(c, &rows));
        out.push('\n');
        let _ = writeln!(out, "{metric} ({unit}): tail");
        out.push_str(&tail_table(c, &rows));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "95% CI: distribution-free interval of the median from order statistics (binomial), \
         shown as its larger distance from the median; ±∞: fewer than 6 values.\n\
         vs base: change of the median; ~ when the two-sided Mann-Whitney U test gives p ≥ {} \
         (exact up to {EXACT_U_MAX_N} values per side, else normal approximation with tie \
         correction). Values in the same histogram bucket (3 significant digits) are ties. \
         Every episode counts as an independent sample; episodes of one run are not quite \
         independent, so for large n small p-values overstate certainty: repeat runs.",
        c.alpha
    );
    out
}
