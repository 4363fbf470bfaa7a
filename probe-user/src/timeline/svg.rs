//! `ttmlat timeline FILE.json -o episode.svg`: one episode of a timeline file drawn as an SVG
//! (the tracks it involves, its slices nested by depth, its arrows), for a report or a README
//! where the Perfetto UI is not at hand.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::{Context, Result, bail};

use super::trace::{TraceEvent, TraceFile, cat, name};

/// Pixels.
const WIDTH: f64 = 1100.0;
const LEFT: f64 = 190.0;
const RIGHT: f64 = 20.0;
const ROW: f64 = 22.0;
const TOP: f64 = 46.0;

fn episode_of(e: &TraceEvent) -> Option<u64> {
    e.args.get("episode")?.as_u64()
}

fn end(e: &TraceEvent) -> f64 {
    e.ts.unwrap_or(0.0) + e.dur.unwrap_or(0.0)
}

/// The episode to draw: `id`, or the one with the longest held reservation wait.
pub fn pick(f: &TraceFile, id: Option<u64>) -> Result<u64> {
    if let Some(id) = id {
        return Ok(id);
    }
    f.trace_events
        .iter()
        .filter(|e| e.name == name::WAIT_HELD)
        .max_by(|a, b| a.dur.unwrap_or(0.0).total_cmp(&b.dur.unwrap_or(0.0)))
        .or_else(|| f.trace_events.iter().find(|e| e.cat == cat::EPISODE))
        .and_then(episode_of)
        .context("the timeline has no episode")
}

fn escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&#39;".into(),
            c if c.is_control() => "?".into(),
            c => c.to_string(),
        })
        .collect()
}

/// The SVG of episode `id`.
pub fn render(f: &TraceFile, id: u64) -> Result<String> {
    let Some(ep) = f
        .trace_events
        .iter()
        .find(|e| e.cat == cat::EPISODE && episode_of(e) == Some(id))
    else {
        bail!("the timeline has no episode {id}");
    };
    let (t0, t1) = (ep.ts.unwrap_or(0.0), end(ep));
    let pad = ((t1 - t0) * 0.08).max(1.0);
    let (w0, w1) = (t0 - pad, t1 + pad);
    // The episode's slices, then the stalled waits its held waits are linked to.
    let mut slices: Vec<&TraceEvent> = f
        .trace_events
        .iter()
        .filter(|e| e.ph == "X" && episode_of(e) == Some(id))
        .collect();
    let held: Vec<&TraceEvent> = slices
        .iter()
        .copied()
        .filter(|e| e.name == name::WAIT_HELD)
        .collect();
    let stalled = f.trace_events.iter().filter(|e| {
        e.name == name::STALLED
            && held
                .iter()
                .any(|h| e.ts.unwrap_or(0.0) < end(h) && h.ts.unwrap_or(0.0) < end(e))
    });
    slices.extend(stalled);
    let thread_name: BTreeMap<(u32, u32), String> = f
        .trace_events
        .iter()
        .filter(|e| e.ph == "M" && e.name == "thread_name")
        .filter_map(|e| Some(((e.pid, e.tid), e.args.get("name")?.as_str()?.to_string())))
        .collect();
    // Tracks: the fault's first, then the others in order of appearance.
    let mut tracks: Vec<(u32, u32)> = Vec::new();
    for e in &slices {
        if !tracks.contains(&(e.pid, e.tid)) {
            tracks.push((e.pid, e.tid));
        }
    }
    let depth = |e: &TraceEvent| match e.cat.as_str() {
        cat::EPISODE => 0.0,
        cat::ATTEMPT => 1.0,
        cat::WAIT => 2.0,
        _ if e.name == name::PRE_LOCK => 1.0,
        _ => 0.0,
    };
    let track_top = |i: usize| TOP + i as f64 * 3.6 * ROW;
    // Clipped to the plot: a stalled wait may begin before the episode or end after it.
    let x = |ts: f64| {
        (LEFT + (ts - w0) / (w1 - w0) * (WIDTH - LEFT - RIGHT)).clamp(LEFT, WIDTH - RIGHT)
    };
    let height = track_top(tracks.len()) + 30.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="18" font-size="14">{}: {:.3} ms (ttmlat timeline, CLOCK_MONOTONIC)</text>"#,
        escape(&ep.name),
        (t1 - t0) / 1000.0
    );
    // Axis: ms from the episode's start, one unit throughout.
    let span_ms = (w1 - w0) / 1000.0;
    let step = [
        0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0,
    ]
    .into_iter()
    .find(|s| span_ms / s <= 10.0)
    .unwrap_or(500.0);
    let mut k = ((w0 - t0) / 1000.0 / step).ceil() as i64;
    while t0 + k as f64 * step * 1000.0 <= w1 {
        let tick = k as f64 * step;
        k += 1;
        let px = x(t0 + tick * 1000.0);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{}" x2="{px:.1}" y2="{height}" stroke="#ddd"/><text x="{px:.1}" y="{}" text-anchor="middle">{tick:.2} ms</text>"##,
            TOP - 8.0,
            TOP - 12.0
        );
    }
    for (i, t) in tracks.iter().enumerate() {
        let label = thread_name
            .get(t)
            .cloned()
            .unwrap_or_else(|| format!("[{}]", t.1));
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}">{} (pid {})</text>"#,
            track_top(i) + 14.0,
            escape(&label),
            t.0
        );
    }
    let row_of = |e: &TraceEvent| {
        tracks
            .iter()
            .position(|t| *t == (e.pid, e.tid))
            .unwrap_or(0)
    };
    for e in &slices {
        let (a, b) = (x(e.ts.unwrap_or(0.0)), x(end(e)));
        let y = track_top(row_of(e)) + depth(e) * ROW;
        let fill = match e.cat.as_str() {
            cat::EPISODE => "#c6dbef",
            cat::ATTEMPT => "#9ecae1",
            _ if e.name == name::WAIT_HELD => "#e6550d",
            _ if e.name == name::WAIT_DROPPED => "#fdae6b",
            cat::MMAP_LOCK => "#bcbddc",
            _ => "#74c476",
        };
        let _ = write!(
            s,
            r##"<rect x="{a:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{fill}" stroke="#555" stroke-width="0.5"><title>{}</title></rect>"##,
            (b - a).max(1.5),
            ROW - 3.0,
            escape(&e.name),
        );
        // A label only where it fits (about 6 px a character); the tooltip has it always.
        if b - a >= 6.0 * e.name.chars().count() as f64 {
            let _ = write!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                a + 3.0,
                y + ROW - 8.0,
                escape(&e.name)
            );
        }
        s.push('\n');
    }
    // Arrows whose two ends are on the drawn tracks and inside the window.
    let mut flows: BTreeMap<u64, Vec<&TraceEvent>> = BTreeMap::new();
    for e in f.trace_events.iter().filter(|e| e.ph == "s" || e.ph == "f") {
        if let Some(id) = e.id {
            flows.entry(id).or_default().push(e);
        }
    }
    for ends in flows.values() {
        let [from, to] = ends.as_slice() else {
            continue;
        };
        let drawn = |e: &TraceEvent| {
            tracks.contains(&(e.pid, e.tid)) && (w0..=w1).contains(&e.ts.unwrap_or(f64::MIN))
        };
        if !(drawn(from) && drawn(to)) {
            continue;
        }
        let y = |e: &TraceEvent| track_top(row_of(e)) + 2.5 * ROW;
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333" stroke-width="1.2" marker-end="url(#arrow)"><title>{}</title></line>"##,
            x(from.ts.unwrap_or(0.0)),
            y(from) - ROW,
            x(to.ts.unwrap_or(0.0)),
            y(to) - ROW,
            escape(&from.name)
        );
    }
    let _ = writeln!(
        s,
        r##"<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker></defs>"##
    );
    s.push_str("</svg>\n");
    Ok(s)
}
