//! The overhead benchmark (`cargo xtask bench-overhead`): the guest script that interleaves
//! three throughput loops under six observers (two of them unobserved), and the arithmetic that turns the loops'
//! reports into ratios to the unobserved runs of the same round.

use std::{collections::BTreeMap, fmt::Write as _, fs, path::Path};

use anyhow::{Context, Result, bail, ensure};
use probe_user::{recording::Recording, workload::throughput::ThroughputReport};
use serde::Serialize;

mod costs;
pub use costs::{ProgramCost, collect_program_costs, render_program_costs};

/// Who watches the loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Observer {
    None,
    Ttmlat,
    Bpftrace,
    /// ttmlat attached but following only pid 1 (which makes no TTM faults): the cost of
    /// its hooks firing, without the per-fault state, records and userspace work.
    Hooks,
    /// Unobserved again, at another place in the round: its ratio to `None` is the noise
    /// floor of the measurement.
    Control,
    /// Plain tracefs kprobes and kretprobes (no BPF) on the TTM functions ttmlat hooks, with
    /// a filter that records nothing: the cost of the probe mechanism on module functions.
    Kprobes,
}

impl Observer {
    pub const ALL: [Observer; 6] = [
        Observer::None,
        Observer::Ttmlat,
        Observer::Bpftrace,
        Observer::Hooks,
        Observer::Control,
        Observer::Kprobes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Observer::None => "none",
            Observer::Ttmlat => "ttmlat",
            Observer::Bpftrace => "bpftrace",
            Observer::Hooks => "hooks",
            Observer::Control => "control",
            Observer::Kprobes => "kprobes",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s)
    }
}

/// The loops of `ttmlat workload throughput`: TTM faults, anonymous faults, mmap/munmap, and
/// buffer reservations without faults (dumb-buffer create/destroy).
pub const LOADS: [&str; 4] = ["ttm", "anon", "mmap", "resv"];

/// The order of observers in `round` (1-based): rotated each round so that slow drift of the
/// guest (page cache, TCG translation cache, host load) does not favour one observer.
pub fn order(round: u32) -> [Observer; Observer::ALL.len()] {
    let mut o = Observer::ALL;
    let n = o.len();
    o.rotate_left(round.saturating_sub(1) as usize % n);
    o
}

/// The guest functions (`lab/overhead/guest.sh`); [`guest_script`] adds the settings and the
/// schedule.
const GUEST_SCRIPT: &str = include_str!("../../../lab/overhead/guest.sh");

/// The guest script. Writes `$LAB_OUT/r<round>-<observer>-<load>.json` (one line of
/// `ttmlat workload throughput`), `r<round>-{ttmlat,hooks}.rec.json` (the recordings),
/// `r<round>-{ttmlat,hooks}-<load>.cpu` (ttmlat's CPU ticks during the loop),
/// `r<round>-bpftrace.txt` (bpftrace's maps at exit) and `r<round>-kprobes.profile` (the
/// tracefs probes' hit counts).
pub fn guest_script(rounds: u32, seconds: u32, bpftrace_script: &str) -> String {
    let mut s = format!(
        "BT_SCRIPT='{bpftrace_script}'\nLOADS='{}'\nLOOP_SECONDS={seconds}\n{GUEST_SCRIPT}",
        LOADS.join(" "),
    );
    for round in 1..=rounds {
        for o in order(round) {
            let _ = writeln!(s, "echo \"round {round}: {}\"", o.name());
            let _ = writeln!(s, "observe_{} {round}", o.name());
        }
    }
    s.push_str("echo \"program costs\"\nprofile_costs\n");
    s
}

/// One loop's report: operations per second and TTM faults (for checking that the observers
/// saw them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoopResult {
    pub ops_per_sec: f64,
    pub faults: u64,
    pub elapsed_s: f64,
}

/// A loop's `ttmlat workload throughput --json` report, checked.
pub fn parse_loop(v: &ThroughputReport) -> Result<LoopResult> {
    let ops_per_sec = v.ops_per_sec;
    ensure!(
        ops_per_sec.is_finite() && ops_per_sec > 0.0,
        "the loop report has no positive ops_per_sec ({ops_per_sec})"
    );
    let faults = u64::try_from(v.faults)
        .with_context(|| format!("the loop report counts {} faults", v.faults))?;
    let elapsed_s = v.elapsed_ns as f64 / 1e9;
    Ok(LoopResult {
        ops_per_sec,
        faults,
        elapsed_s,
    })
}

/// Sum of the `@attempts[retval]: N` lines bpftrace printed at exit: the TTM fault attempts
/// it observed.
pub fn bpftrace_attempts(output: &str) -> u64 {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("@attempts["))
        .filter_map(|l| l.split_once("]:"))
        .filter_map(|(_, n)| n.trim().parse::<u64>().ok())
        .sum()
}

/// Sum of `counts.attempts` of a ttmlat recording.
pub fn recording_attempts(rec: &Recording) -> u64 {
    rec.counts.attempts.values().sum()
}

/// Throughput of every (round, observer, load).
#[derive(Default, Debug)]
pub struct Measurements {
    pub runs: BTreeMap<(u32, Observer, &'static str), LoopResult>,
    /// Share of one CPU that ttmlat's own process used while a loop ran.
    pub ttmlat_cpu: BTreeMap<(u32, Observer, &'static str), f64>,
}

/// Parses a `.cpu` file: "<ticks> <ticks per second>"; returns CPU seconds.
pub fn parse_cpu(text: &str) -> Result<f64> {
    let mut it = text.split_whitespace().map(str::parse::<f64>);
    match (it.next(), it.next()) {
        (Some(Ok(ticks)), Some(Ok(hz))) if hz > 0.0 && ticks >= 0.0 => Ok(ticks / hz),
        _ => bail!("bad CPU accounting line {text:?}"),
    }
}

impl Measurements {
    pub fn insert(&mut self, round: u32, observer: &str, load: &str, r: LoopResult) -> Result<()> {
        let o =
            Observer::parse(observer).with_context(|| format!("unknown observer {observer}"))?;
        let l = LOADS
            .into_iter()
            .find(|x| *x == load)
            .with_context(|| format!("unknown load {load}"))?;
        self.runs.insert((round, o, l), r);
        Ok(())
    }

    pub fn insert_cpu(&mut self, round: u32, observer: Observer, load: &str, share: f64) {
        self.ttmlat_cpu.insert((round, observer, pick(load)), share);
    }

    /// Per-round ratios observed/unobserved for `observer` and `load`.
    pub fn ratios(&self, observer: Observer, load: &str) -> Vec<f64> {
        let rounds: Vec<u32> = self.runs.keys().map(|k| k.0).collect();
        let mut out = Vec::new();
        for r in rounds
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
        {
            let base = self.runs.get(&(r, Observer::None, pick(load)));
            let obs = self.runs.get(&(r, observer, pick(load)));
            if let (Some(b), Some(o)) = (base, obs) {
                out.push(o.ops_per_sec / b.ops_per_sec);
            }
        }
        out
    }
}

fn pick(load: &str) -> &'static str {
    LOADS.into_iter().find(|x| *x == load).unwrap_or("")
}

/// Median and range of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn spread(xs: &[f64]) -> Option<Spread> {
    if xs.is_empty() {
        return None;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Spread {
        n,
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// One row of the summary: a load, the two observers' throughput ratios and how ttmlat's
/// overhead (1 − ratio) compares with bpftrace's.
#[derive(Debug, Serialize)]
pub struct Row {
    pub load: &'static str,
    pub unobserved_ops_per_sec: Spread,
    pub ttmlat_ratio: Spread,
    pub bpftrace_ratio: Spread,
    /// ttmlat attached but following nothing the loop does: hook dispatch alone.
    pub hooks_ratio: Option<Spread>,
    /// Unobserved / unobserved in the same round: how far apart two runs of the same thing
    /// are (the noise floor).
    pub control_ratio: Option<Spread>,
    /// Plain tracefs kprobes on the TTM functions, no BPF.
    pub kprobes_ratio: Option<Spread>,
    /// Share of a CPU used by ttmlat's process during the loop.
    pub ttmlat_cpu_share: Option<Spread>,
    /// Target: ttmlat's minimum throughput ratio (None: no target for this load).
    pub target_ratio: Option<f64>,
}

/// The targets: ttmlat keeps ≥ 98% of TTM-fault throughput and ≥ 99.5% of the throughput of
/// everything that is not a TTM fault (anonymous faults, mmap/munmap, reservations).
pub fn target(load: &str) -> Option<f64> {
    match load {
        "ttm" => Some(0.98),
        "anon" | "mmap" | "resv" => Some(0.995),
        _ => None,
    }
}

pub fn summarize(m: &Measurements) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for load in LOADS {
        let base: Vec<f64> = m
            .runs
            .iter()
            .filter(|((_, o, l), _)| *o == Observer::None && *l == load)
            .map(|(_, r)| r.ops_per_sec)
            .collect();
        let t = m.ratios(Observer::Ttmlat, load);
        let b = m.ratios(Observer::Bpftrace, load);
        ensure!(
            !t.is_empty() && !b.is_empty(),
            "no complete round for the {load} loop"
        );
        let cpu: Vec<f64> = m
            .ttmlat_cpu
            .iter()
            .filter(|((_, o, l), _)| *o == Observer::Ttmlat && *l == load)
            .map(|(_, v)| *v)
            .collect();
        let (Some(base), Some(t), Some(b)) = (spread(&base), spread(&t), spread(&b)) else {
            bail!("empty sample for the {load} loop");
        };
        rows.push(Row {
            load,
            unobserved_ops_per_sec: base,
            ttmlat_ratio: t,
            bpftrace_ratio: b,
            hooks_ratio: spread(&m.ratios(Observer::Hooks, load)),
            control_ratio: spread(&m.ratios(Observer::Control, load)),
            kprobes_ratio: spread(&m.ratios(Observer::Kprobes, load)),
            ttmlat_cpu_share: spread(&cpu),
            target_ratio: target(load),
        });
    }
    Ok(rows)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// How far two unobserved runs of a round were apart at most (from the control runs).
fn noise(r: &Row) -> Option<f64> {
    r.control_ratio
        .as_ref()
        .map(|c| (1.0 - c.min).abs().max((c.max - 1.0).abs()))
}

/// (1 − ttmlat's median ratio) / (1 − bpftrace's median ratio): ttmlat's overhead as a
/// fraction of bpftrace's; None when bpftrace's is within the noise floor.
pub fn overhead_fraction(r: &Row) -> Option<f64> {
    let b = 1.0 - r.bpftrace_ratio.median;
    let floor = noise(r).unwrap_or(0.0).max(0.005);
    (b > floor).then(|| (1.0 - r.ttmlat_ratio.median) / b)
}

/// The printed table.
pub fn render(rows: &[Row], header: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{header}");
    let _ = writeln!(
        s,
        "throughput / unobserved throughput in the same round: median [min, max] over the rounds"
    );
    let _ = writeln!(
        s,
        "{:<5} {:>12} {:>23} {:>23} {:>23} {:>23} {:>23}",
        "loop",
        "unobserved/s",
        "unobserved (noise)",
        "ttmlat",
        "bpftrace",
        "ttmlat hooks only",
        "tracefs kprobes"
    );
    let ratio = |x: &Spread| format!("{} [{}, {}]", pct(x.median), pct(x.min), pct(x.max));
    let opt = |x: &Option<Spread>| x.as_ref().map_or_else(|| "n/a".to_string(), ratio);
    for r in rows {
        let _ = writeln!(
            s,
            "{:<5} {:>12.0} {:>23} {:>23} {:>23} {:>23} {:>23}",
            r.load,
            r.unobserved_ops_per_sec.median,
            opt(&r.control_ratio),
            ratio(&r.ttmlat_ratio),
            ratio(&r.bpftrace_ratio),
            opt(&r.hooks_ratio),
            opt(&r.kprobes_ratio),
        );
    }
    let _ = writeln!(
        s,
        "unobserved (noise): a second unobserved run of the round; ttmlat hooks only: attached \
         with --pid 1, every hook fires, nothing is followed; tracefs kprobes: entry and return \
         probes on ttm_bo_vm_fault and ttm_bo_vm_reserve without BPF, recording nothing"
    );
    for r in rows {
        if let Some(c) = &r.ttmlat_cpu_share {
            let _ = writeln!(
                s,
                "ttmlat's own process during the {} loop: {} of a CPU [{}, {}]",
                r.load,
                pct(c.median),
                pct(c.min),
                pct(c.max)
            );
        }
    }
    let n = rows.first().map_or(0, |r| r.ttmlat_ratio.n);
    let _ = writeln!(s, "n = {n} rounds");
    for r in rows {
        let floor = noise(r);
        let floor_txt = floor.map_or_else(String::new, |f| format!(", noise floor ±{}", pct(f)));
        if let Some(t) = r.target_ratio {
            let got = r.ttmlat_ratio.median;
            let verdict = if floor.is_some_and(|f| (got - t).abs() < f) {
                "not resolvable here".to_string()
            } else if got >= t {
                "met".to_string()
            } else {
                format!("MISSED by {:.1} points", (t - got) * 100.0)
            };
            let _ = writeln!(
                s,
                "target {}: ttmlat keeps >= {} -> {} ({verdict}{floor_txt})",
                r.load,
                pct(t),
                pct(got)
            );
        }
        match overhead_fraction(r) {
            Some(f) => {
                let verdict = if f <= 1.0 / 3.0 { "met" } else { "MISSED" };
                let _ = writeln!(
                    s,
                    "target {}: ttmlat's overhead <= 1/3 of bpftrace's -> {:.2} of it ({verdict})",
                    r.load, f
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "target {}: ttmlat's overhead <= 1/3 of bpftrace's -> bpftrace's overhead is \
                     within the noise floor (not resolvable here)",
                    r.load
                );
            }
        }
    }
    s
}

/// Reads every loop report and checks that each observer really saw the TTM faults of its
/// rounds (an observer that failed to attach would show no overhead).
pub fn collect(dir: &Path, rounds: u32) -> Result<(Measurements, String)> {
    let mut m = Measurements::default();
    let mut lines = String::new();
    for round in 1..=rounds {
        for o in Observer::ALL {
            for load in LOADS {
                let path = dir.join(format!("r{round}-{}-{load}.json", o.name()));
                let r =
                    parse_loop(&read_json(&path)?).with_context(|| path.display().to_string())?;
                m.insert(round, o.name(), load, r)?;
            }
            let ttm = m.runs.get(&(round, o, "ttm")).map_or(0, |r| r.faults);
            if matches!(o, Observer::Ttmlat | Observer::Hooks) {
                for load in LOADS {
                    let path = dir.join(format!("r{round}-{}-{load}.cpu", o.name()));
                    let secs =
                        parse_cpu(&read(&path)?).with_context(|| path.display().to_string())?;
                    let elapsed = m
                        .runs
                        .get(&(round, o, pick(load)))
                        .map_or(0.0, |r| r.elapsed_s);
                    if elapsed > 0.0 {
                        m.insert_cpu(round, o, load, secs / elapsed);
                    }
                }
            }
            let seen = match o {
                Observer::None | Observer::Control => continue,
                Observer::Hooks => {
                    // Following only pid 1: must have seen none of the loop's faults.
                    let path = dir.join(format!("r{round}-hooks.rec.json"));
                    let n = recording_attempts(&Recording::read(&path)?);
                    ensure!(
                        n == 0,
                        "round {round}: ttmlat --pid 1 recorded {n} attempts"
                    );
                    continue;
                }
                Observer::Ttmlat => {
                    let path = dir.join(format!("r{round}-ttmlat.rec.json"));
                    recording_attempts(&Recording::read(&path)?)
                }
                Observer::Kprobes => {
                    let path = dir.join(format!("r{round}-kprobes.profile"));
                    kprobe_hits(&read(&path)?, "cost_fault")
                }
                Observer::Bpftrace if dir.join(format!("r{round}-bpftrace.hung")).exists() => {
                    lines.push_str(&format!(
                        "round {round}: bpftrace did not exit within 60 s of SIGINT and was \
                         killed; its fault count is unknown\n"
                    ));
                    continue;
                }
                Observer::Bpftrace => {
                    let path = dir.join(format!("r{round}-bpftrace.txt"));
                    bpftrace_attempts(&read(&path)?)
                }
            };
            // The loop's getrusage count also holds a few non-TTM faults of the process.
            ensure!(
                seen as f64 >= 0.98 * ttm as f64 && seen <= ttm,
                "round {round}: {} saw {seen} TTM fault attempts but the loop made {ttm} faults",
                o.name()
            );
            lines.push_str(&format!(
                "round {round}: {} saw {seen} of the loop's {ttm} faults\n",
                o.name()
            ));
        }
    }
    Ok((m, lines))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// A report of a ttmlat command, into the type the binary wrote it from.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    serde_json::from_str(read(path)?.trim()).with_context(|| format!("parsing {}", path.display()))
}

/// Hits of tracefs probe `event` in `kprobe_profile` lines ("group/event hits misses" or
/// "event hits misses", depending on the kernel); 0 if absent.
fn kprobe_hits(profile: &str, event: &str) -> u64 {
    profile
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            if name.rsplit('/').next() != Some(event) {
                return None;
            }
            it.next()?.parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lr(ops: f64) -> LoopResult {
        LoopResult {
            ops_per_sec: ops,
            faults: 0,
            elapsed_s: 1.0,
        }
    }

    #[test]
    fn orders_rotate_and_cover_every_observer() {
        use Observer::*;
        assert_eq!(order(1), [None, Ttmlat, Bpftrace, Hooks, Control, Kprobes]);
        assert_eq!(order(2), [Ttmlat, Bpftrace, Hooks, Control, Kprobes, None]);
        assert_eq!(order(6), [Kprobes, None, Ttmlat, Bpftrace, Hooks, Control]);
        assert_eq!(order(7), order(1));
    }

    #[test]
    fn script_runs_each_observer_once_per_round() {
        let s = guest_script(2, 3, "/x.bt");
        for o in ["none", "ttmlat", "bpftrace", "hooks", "control", "kprobes"] {
            assert_eq!(s.matches(&format!("observe_{o} ")).count(), 2, "{o}");
        }
        assert!(s.contains("LOOP_SECONDS=3\n") && s.contains("LOADS='ttm anon mmap resv'\n"));
        assert!(s.contains("--duration ${LOOP_SECONDS}s"));
        // The whole script is valid bash.
        if let Err(e) = crate::lab::shell_quote::bash_syntax(&s) {
            panic!("{e}");
        }
    }

    #[test]
    fn ratios_are_per_round() -> Result<()> {
        let mut m = Measurements::default();
        for (round, base, t, b, c) in [
            (1, 100.0, 99.0, 50.0, 100.2),
            (2, 200.0, 196.0, 120.0, 199.8),
        ] {
            for load in LOADS {
                m.insert(round, "none", load, lr(base))?;
                m.insert(round, "ttmlat", load, lr(t))?;
                m.insert(round, "bpftrace", load, lr(b))?;
                m.insert(round, "control", load, lr(c))?;
            }
        }
        assert_eq!(m.ratios(Observer::Ttmlat, "ttm"), vec![0.99, 0.98]);
        let rows = summarize(&m)?;
        let ttm = &rows[0];
        assert!((ttm.ttmlat_ratio.median - 0.985).abs() < 1e-12);
        // Medians: ttmlat 98.5%, bpftrace 55%: 0.015 / 0.45.
        let f = overhead_fraction(ttm).context("fraction")?;
        assert!((f - 0.015 / 0.45).abs() < 1e-12, "{f}");
        let text = render(&rows, "h");
        assert!(
            text.contains("target ttm: ttmlat keeps >= 98.0% -> 98.5% (met, noise floor ±0.2%)"),
            "{text}"
        );
        assert!(
            text.contains("target anon: ttmlat keeps >= 99.5% -> 98.5% (MISSED by 1.0 points"),
            "{text}"
        );
        assert!(text.contains("-> 0.03 of it (met)"), "{text}");
        Ok(())
    }

    #[test]
    fn differences_inside_the_noise_floor_are_not_verdicts() -> Result<()> {
        let mut m = Measurements::default();
        for (round, c) in [(1, 0.9), (2, 1.1)] {
            for load in LOADS {
                m.insert(round, "none", load, lr(100.0))?;
                m.insert(round, "ttmlat", load, lr(99.0))?;
                m.insert(round, "bpftrace", load, lr(95.0))?;
                m.insert(round, "control", load, lr(100.0 * c))?;
            }
        }
        let rows = summarize(&m)?;
        let text = render(&rows, "h");
        assert!(
            text.contains("-> 99.0% (not resolvable here, noise floor ±10.0%)"),
            "{text}"
        );
        assert!(
            text.contains("bpftrace's overhead is within the noise floor"),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn incomplete_rounds_are_refused() {
        let mut m = Measurements::default();
        let _ = m.insert(1, "none", "ttm", lr(1.0));
        assert!(summarize(&m).is_err());
        assert!(m.insert(1, "perf", "ttm", lr(1.0)).is_err());
        assert!(m.insert(1, "none", "disk", lr(1.0)).is_err());
    }

    #[test]
    fn kprobe_profile_hits() {
        let p =
            "  ttmcost/fault   18004   0\n  ttmcost/fault_ret 18004 0\n  ttmcost/reserve 18004 0\n";
        assert_eq!(kprobe_hits(p, "fault"), 18004);
        assert_eq!(kprobe_hits("  fault 7 0\n", "fault"), 7);
        assert_eq!(kprobe_hits("", "fault"), 0);
    }

    #[test]
    fn cpu_lines_are_seconds() {
        assert_eq!(parse_cpu("150 100\n").ok(), Some(1.5));
        assert!(parse_cpu("x 100").is_err());
        assert!(parse_cpu("5 0").is_err());
        assert!(parse_cpu("").is_err());
    }

    #[test]
    fn bpftrace_attempt_lines_are_summed() {
        let out =
            "Attaching 11 probes...\n\n@attempts[256]: 14272\n@attempts[1024]: 3\n@trylock[1]: 9\n";
        assert_eq!(bpftrace_attempts(out), 14275);
        assert_eq!(bpftrace_attempts("garbage\n@attempts[x]: y"), 0);
    }

    #[test]
    fn loop_reports_need_positive_throughput() {
        let report = |ops_per_sec, faults| ThroughputReport {
            kind: probe_user::workload::throughput::Kind::Ttm,
            pid: 7,
            iterations: 1,
            pages: 1,
            faults,
            elapsed_ns: 2_000_000_000,
            ops_per_sec,
        };
        assert_eq!(
            parse_loop(&report(5.0, 3)).ok(),
            Some(LoopResult {
                ops_per_sec: 5.0,
                faults: 3,
                elapsed_s: 2.0
            })
        );
        assert!(parse_loop(&report(0.0, 3)).is_err());
        assert!(parse_loop(&report(f64::NAN, 3)).is_err());
        assert!(parse_loop(&report(5.0, -1)).is_err());
        // A report without a field is not a report.
        assert!(
            serde_json::from_value::<ThroughputReport>(serde_json::json!({"faults": 3})).is_err()
        );
    }
}
