//! OpenMetrics exemplars on `/metrics`: for each series of the episode-latency, held-wait and
//! collateral-stall histograms, the slowest episode of the last [`WINDOW`], with labels `pid`,
//! `comm`, `holder` and `episode` (the id `--timeline` shows). They are served only in the
//! OpenMetrics text format (Prometheus asks for it with `--enable-feature=exemplar-storage`);
//! Prometheus' 0.0.4 text has no exemplars, and prometheus-client builds exemplars only for
//! classic-only histograms, while these also carry native buckets for the protobuf format. So
//! the exposition is decorated here: each exemplar is appended to its series' first bucket
//! line whose bound holds the value, as OpenMetrics places it.

use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// How long an exemplar stands unless a slower episode of its series replaces it.
pub const WINDOW: Duration = Duration::from_secs(60);

/// OpenMetrics: label names and values of one exemplar hold at most 128 characters.
pub const MAX_LABEL_CHARS: usize = 128;

/// A series: family name and its labels (as exported, `le` aside).
type Series = (&'static str, Vec<(String, String)>);

/// One exemplar.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub value_s: f64,
    pub unix_s: f64,
    pub labels: Vec<(&'static str, String)>,
    at: Instant,
}

impl Exemplar {
    /// An exemplar of the episode `episode` of process `pid` that ended at `unix_s`, its
    /// labels cut to the OpenMetrics limit (the holder first, then the comm, lose characters).
    pub fn new(
        value_s: f64,
        unix_s: f64,
        pid: u32,
        comm: &str,
        holder: &str,
        episode: u64,
    ) -> Self {
        let mut labels = vec![
            ("pid", pid.to_string()),
            ("comm", comm.to_string()),
            ("holder", holder.to_string()),
            ("episode", episode.to_string()),
        ];
        let chars = |l: &[(&str, String)]| {
            l.iter()
                .map(|(k, v)| k.chars().count() + v.chars().count())
                .sum::<usize>()
        };
        for cut in [2, 1] {
            while chars(&labels) > MAX_LABEL_CHARS && labels[cut].1.pop().is_some() {}
        }
        Self {
            value_s,
            unix_s,
            labels,
            at: Instant::now(),
        }
    }
}

/// The wall-clock time (Unix seconds) of a CLOCK_MONOTONIC instant in ns (the probes'
/// clock): an exemplar's timestamp is when its episode ended, not when userspace read it.
/// The two clocks are read back to back; a clock step since the episode moves it with it.
pub fn unix_seconds_of_monotonic(ns: u64) -> f64 {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let now_mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_or(0.0, |t| t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9);
    if ns == 0 || now_mono == 0.0 {
        return now_unix;
    }
    now_unix - (now_mono - ns as f64 * 1e-9)
}

/// The exemplars of every series, the slowest recent one each.
#[derive(Debug, Default)]
pub struct Exemplars {
    by_series: Mutex<HashMap<Series, Exemplar>>,
}

fn owned(labels: &[(&'static str, String)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

impl Exemplars {
    /// Offers `e` for the series `family{labels}`: it replaces a faster exemplar, or one
    /// older than [`WINDOW`].
    pub fn offer(&self, family: &'static str, labels: &[(&'static str, String)], e: Exemplar) {
        let Ok(mut map) = self.by_series.lock() else {
            return;
        };
        let slot = map
            .entry((family, owned(labels)))
            .or_insert_with(|| e.clone());
        if e.value_s >= slot.value_s || slot.at.elapsed() > WINDOW {
            *slot = e;
        }
    }

    /// The OpenMetrics exposition `text` with the exemplars appended to their bucket lines
    /// (those of the last [`WINDOW`]: a series without a recent episode has none).
    pub fn decorate(&self, text: &str) -> String {
        let Ok(map) = self.by_series.lock() else {
            return text.to_string();
        };
        let mut out = String::with_capacity(text.len() + map.len() * 96);
        let mut placed: Vec<&Series> = Vec::new();
        for line in text.lines() {
            out.push_str(line);
            if let Some((series, le)) = bucket_line(line, &map)
                && let Some((key, e)) = map.get_key_value(&series)
                && e.value_s <= le
                && e.at.elapsed() <= WINDOW
                && !placed.contains(&key)
            {
                placed.push(key);
                let _ = write!(out, " # {{");
                for (i, (k, v)) in e.labels.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    let _ = write!(out, "{sep}{k}=\"{}\"", escape(v));
                }
                let _ = write!(out, "}} {} {:.3}", e.value_s, e.unix_s);
            }
            out.push('\n');
        }
        out
    }
}

/// `family_bucket{labels,le="x"} n` of a family that has exemplars: (series, le).
fn bucket_line(line: &str, map: &HashMap<Series, Exemplar>) -> Option<(Series, f64)> {
    let (name, rest) = line.split_once('{')?;
    let family = name.strip_suffix("_bucket")?;
    let family = map.keys().map(|(f, _)| *f).find(|f| *f == family)?;
    let mut labels = parse_labels(rest)?;
    let at = labels.iter().position(|(k, _)| k == "le")?;
    let (_, le) = labels.remove(at);
    let le = if le == "+Inf" {
        f64::INFINITY
    } else {
        le.parse().ok()?
    };
    Some(((family, labels), le))
}

/// `k="v",k2="v2"} …` → the pairs, values unescaped (`\\`, `\"`, `\n`).
fn parse_labels(s: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = s.chars();
    loop {
        let mut key = String::new();
        loop {
            match chars.next()? {
                '}' if key.is_empty() => return Some(out),
                '=' => break,
                ',' if key.is_empty() => {}
                c => key.push(c),
            }
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                c => value.push(c),
            }
        }
        out.push((key, value));
    }
}

/// OpenMetrics label value escaping.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE h histogram\n\
        h_bucket{path=\"held\",driver=\"bochs\",le=\"0.001\"} 1\n\
        h_bucket{path=\"held\",driver=\"bochs\",le=\"0.01\"} 2\n\
        h_bucket{path=\"held\",driver=\"bochs\",le=\"+Inf\"} 2\n\
        h_bucket{path=\"retry\",driver=\"bochs\",le=\"0.001\"} 0\n\
        h_count{path=\"held\",driver=\"bochs\"} 2\n# EOF\n";

    fn series(path: &str) -> Vec<(&'static str, String)> {
        vec![("path", path.into()), ("driver", "bochs".into())]
    }

    #[test]
    fn the_slowest_episode_goes_on_the_first_bucket_that_holds_it() {
        let x = Exemplars::default();
        x.offer(
            "h",
            &series("held"),
            Exemplar::new(0.002, 1_700_000_000.25, 7, "ttm-fault-0", "pop[9]", 3),
        );
        x.offer(
            "h",
            &series("held"),
            Exemplar::new(0.0005, 1_700_000_001.0, 7, "ttm-fault-1", "pop[9]", 4),
        );
        let out = x.decorate(TEXT);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1],
            "h_bucket{path=\"held\",driver=\"bochs\",le=\"0.001\"} 1"
        );
        assert!(
            lines[2].starts_with(
                "h_bucket{path=\"held\",driver=\"bochs\",le=\"0.01\"} 2 # \
                 {pid=\"7\",comm=\"ttm-fault-0\",holder=\"pop[9]\",episode=\"3\"} 0.002 \
                 1700000000.250"
            ),
            "{out}"
        );
        assert_eq!(out.matches(" # {").count(), 1, "{out}");
        assert!(out.ends_with("# EOF\n"));
    }

    #[test]
    fn hostile_names_are_escaped_and_labels_stay_within_128_characters() {
        let x = Exemplars::default();
        let evil = "a\"b\\c\n}{x=\"1\",";
        let long = "h".repeat(200);
        x.offer(
            "h",
            &series("held"),
            Exemplar::new(0.02, 1.0, 1, evil, &long, u64::MAX),
        );
        let out = x.decorate(TEXT);
        let line = out
            .lines()
            .find(|l| l.contains(" # {"))
            .expect("placed on +Inf");
        assert!(line.contains("le=\"+Inf\""));
        let exemplar = line.split_once(" # ").expect("an exemplar").1;
        let labels =
            parse_labels(exemplar.strip_prefix('{').expect("a label set")).expect("parses back");
        assert_eq!(labels[1], ("comm".to_string(), evil.to_string()));
        let chars: usize = labels
            .iter()
            .map(|(k, v)| k.chars().count() + v.chars().count())
            .sum();
        assert!(chars <= MAX_LABEL_CHARS, "{chars}");
        assert_eq!(labels[3].1, u64::MAX.to_string());
    }

    #[test]
    fn a_long_hostile_comm_is_cut_after_the_holder_and_stays_escaped() {
        let x = Exemplars::default();
        let evil = "\"\\\n}".repeat(40);
        x.offer(
            "h",
            &series("held"),
            Exemplar::new(0.02, 1.0, 1, &evil, "pop[9]", 5),
        );
        let out = x.decorate(TEXT);
        let exemplar = out
            .lines()
            .find_map(|l| l.split_once(" # "))
            .expect("an exemplar")
            .1;
        // One line: no raw newline or unescaped quote got through.
        assert_eq!(out.lines().count(), TEXT.lines().count(), "{out}");
        let labels =
            parse_labels(exemplar.strip_prefix('{').expect("a label set")).expect("parses back");
        let names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["pid", "comm", "holder", "episode"]);
        assert_eq!(labels[2].1, "", "the holder is cut first");
        assert!(evil.starts_with(&labels[1].1) && !labels[1].1.is_empty());
        let chars: usize = labels
            .iter()
            .map(|(k, v)| k.chars().count() + v.chars().count())
            .sum();
        assert!(chars <= MAX_LABEL_CHARS, "{chars}");
    }

    #[test]
    fn an_exemplar_older_than_the_window_is_not_served() {
        let x = Exemplars::default();
        let mut old = Exemplar::new(0.002, 1.0, 7, "ttm-fault-0", "pop[9]", 3);
        old.at = Instant::now()
            .checked_sub(WINDOW + Duration::from_secs(1))
            .expect("the machine has been up longer than the window");
        x.offer("h", &series("held"), old);
        assert!(!x.decorate(TEXT).contains(" # {"));
        // A newer one replaces it, however fast.
        x.offer(
            "h",
            &series("held"),
            Exemplar::new(0.0001, 2.0, 7, "ttm-fault-1", "pop[9]", 4),
        );
        assert!(x.decorate(TEXT).contains("episode=\"4\""));
    }
}
