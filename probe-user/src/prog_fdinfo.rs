//! What the kernel says about each loaded BPF program in `/proc/self/fdinfo/<fd>`: the runs it
//! skipped (`recursion_misses`, 5.12+) and, while run-time statistics are enabled
//! (`BPF_ENABLE_STATS`, 5.8+), how often it ran and for how long (`run_cnt`, `run_time_ns`).
//!
//! `--program-costs` turns the statistics on for the session: the kernel then reads the clock
//! twice around every run of every BPF program on the machine, so the figures describe a
//! slightly slower system than an ordinary run. Under the lab's instruction counter
//! (`-icount shift=2`, 4 ns per instruction) a program's mean run time divided by 4 is the
//! instructions it executed per run (plus the clock reads); the probe mechanism around it
//! (kprobe trap, trampoline, rethook) is not included.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};

/// Keeps the kernel's run-time statistics on while it lives.
pub struct StatsEnabled(#[allow(dead_code)] OwnedFd);

/// Turns on `run_cnt`/`run_time_ns` accounting for every BPF program until the guard drops.
pub fn enable_run_time_stats() -> Result<StatsEnabled> {
    aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .map(StatsEnabled)
        .context(
            "--program-costs: enabling the kernel's BPF run-time statistics (BPF_ENABLE_STATS, \
             Linux 5.8+) failed",
        )
}

/// One program's runs and the time they took, as the kernel counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProgramCost {
    pub runs: u64,
    pub run_time_ns: u64,
}

impl ProgramCost {
    pub fn mean_ns(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.run_time_ns as f64 / self.runs as f64)
    }
}

/// `recursion_misses` of a program; `None` where the kernel does not report it (< 5.12).
/// An unreadable fdinfo is an error, not "not reported".
pub fn recursion_misses(fd: BorrowedFd<'_>) -> anyhow::Result<Option<u64>> {
    use anyhow::Context;
    let path = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(field(&text, "recursion_misses"))
}

/// `run_cnt` and `run_time_ns` of a program. An unreadable fdinfo, or one without them, is
/// an error: the program's cost is unknown, not absent.
pub fn cost(fd: BorrowedFd<'_>) -> Result<ProgramCost> {
    let path = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    cost_of(&text).with_context(|| format!("{path} has no run_cnt and run_time_ns"))
}

fn cost_of(text: &str) -> Option<ProgramCost> {
    Some(ProgramCost {
        runs: field(text, "run_cnt")?,
        run_time_ns: field(text, "run_time_ns")?,
    })
}

fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The `--program-costs` table: one line per program that ran, most total time first.
pub fn render(costs: &BTreeMap<String, ProgramCost>) -> String {
    let mut rows: Vec<(&String, &ProgramCost)> = costs.iter().filter(|(_, c)| c.runs > 0).collect();
    rows.sort_by(|a, b| b.1.run_time_ns.cmp(&a.1.run_time_ns).then(a.0.cmp(b.0)));
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "program costs (kernel run-time statistics; mechanism around each program not included):"
    );
    let _ = writeln!(
        out,
        "  {:<36} {:>12} {:>14} {:>10}",
        "program", "runs", "total", "mean"
    );
    for (name, c) in rows {
        let _ = writeln!(
            out,
            "  {:<36} {:>12} {:>14} {:>10}",
            crate::report::sanitize(name),
            c.runs,
            crate::report::ns(c.run_time_ns),
            c.mean_ns()
                .map_or_else(|| "—".to_string(), |m| format!("{m:.0} ns"))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo_fields_are_read() {
        let text = "prog_type:\t6\nrun_time_ns:\t1200\nrun_cnt:\t3\nrecursion_misses:\t5\n";
        assert_eq!(field(text, "recursion_misses"), Some(5));
        assert_eq!(field(text, "run_cnt"), Some(3));
        assert_eq!(field("prog_type:\t6\n", "recursion_misses"), None);
        assert_eq!(
            cost_of(text),
            Some(ProgramCost {
                runs: 3,
                run_time_ns: 1200
            })
        );
        assert_eq!(cost_of("prog_type:\t6\nrun_cnt:\t3\n"), None);
    }

    #[test]
    fn the_table_leaves_out_programs_that_never_ran_and_sorts_by_total() {
        let mut costs = BTreeMap::new();
        costs.insert("idle".to_string(), ProgramCost::default());
        costs.insert(
            "cheap".to_string(),
            ProgramCost {
                runs: 10,
                run_time_ns: 1_000,
            },
        );
        costs.insert(
            "dear".to_string(),
            ProgramCost {
                runs: 10,
                run_time_ns: 9_000,
            },
        );
        let table = render(&costs);
        assert!(!table.contains("idle"));
        let dear = table.find("dear").expect("dear listed");
        let cheap = table.find("cheap").expect("cheap listed");
        assert!(dear < cheap, "{table}");
        assert!(table.contains("900 ns"), "{table}");
        assert!(render(&BTreeMap::new()).is_empty());
    }
}
