//! The program-cost pass of `cargo xtask bench-overhead`: one extra ttm loop under
//! `ttmlat record --program-costs` (the kernel's BPF run-time statistics), turned into each
//! program's runs per TTM fault and instructions (icount) or nanoseconds per run. It says
//! where ttmlat's in-kernel work goes; the probe mechanism around each program (kprobe trap,
//! rethook, perf-event dispatch) is not in these figures, and the statistics' own two clock
//! reads per run are.

use std::{fmt::Write as _, path::Path};

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use probe_user::{prog_fdinfo::ProgramCost as KernelCost, recording::Recording};

/// One BPF program's share of the `profile_costs` run (`record --program-costs`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProgramCost {
    pub program: String,
    pub runs_per_fault: f64,
    pub mean_ns: f64,
}

/// The `profile_costs` run: each program's runs per TTM fault of the loop and mean run time,
/// most expensive per fault first.
pub fn program_costs(
    costs: &BTreeMap<String, KernelCost>,
    faults: u64,
) -> Result<Vec<ProgramCost>> {
    ensure!(
        !costs.is_empty(),
        "the --program-costs recording has no program_costs"
    );
    ensure!(faults > 0, "the --program-costs loop made no faults");
    let mut out = Vec::new();
    for (name, c) in costs {
        let (runs, ns) = (c.runs, c.run_time_ns);
        if runs == 0 {
            continue;
        }
        out.push(ProgramCost {
            program: name.clone(),
            runs_per_fault: runs as f64 / faults as f64,
            mean_ns: ns as f64 / runs as f64,
        });
    }
    out.sort_by(|a, b| (b.runs_per_fault * b.mean_ns).total_cmp(&(a.runs_per_fault * a.mean_ns)));
    Ok(out)
}

/// Reads the `profile_costs` run of a guest's output directory.
pub fn collect_program_costs(dir: &Path) -> Result<Vec<ProgramCost>> {
    let rec = Recording::read(&dir.join("costs.rec.json"))?;
    let lp = super::parse_loop(&super::read_json(&dir.join("costs-ttm.json"))?)?;
    program_costs(&rec.program_costs, lp.faults)
}

/// The program-cost table; `ns_per_instruction` under icount (4 for shift 2), where a mean
/// run time is a count of instructions.
pub fn render_program_costs(costs: &[ProgramCost], ns_per_instruction: Option<f64>) -> String {
    let mut s = String::from(
        "where ttmlat's programs spend a TTM fault (one extra ttm loop under record \
         --program-costs; the probe mechanism around each program is not included):\n",
    );
    let unit = if ns_per_instruction.is_some() {
        "instructions"
    } else {
        "ns"
    };
    let mut total = 0.0;
    for c in costs {
        let per_run = c.mean_ns / ns_per_instruction.unwrap_or(1.0);
        total += per_run * c.runs_per_fault;
        let _ = writeln!(
            s,
            "  {:<28} {:>5.2} runs/fault {:>8.0} {unit}/run",
            c.program, c.runs_per_fault, per_run
        );
    }
    let _ = writeln!(s, "  total {total:.0} {unit} per fault");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn costs(of: &[(&str, u64, u64)]) -> BTreeMap<String, KernelCost> {
        of.iter()
            .map(|(name, runs, run_time_ns)| {
                (
                    name.to_string(),
                    KernelCost {
                        runs: *runs,
                        run_time_ns: *run_time_ns,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn costs_are_per_fault_and_sorted_by_share() -> Result<()> {
        let rec = costs(&[
            ("ttm_fault_enter", 1000, 4_000_000),
            ("site_trylock_ret", 1000, 1_000_000),
            ("thread_exit", 2, 6000),
            ("idle", 0, 0),
        ]);
        let costs = program_costs(&rec, 1000)?;
        let names: Vec<&str> = costs.iter().map(|c| c.program.as_str()).collect();
        assert_eq!(
            names,
            ["ttm_fault_enter", "site_trylock_ret", "thread_exit"]
        );
        assert_eq!(costs[0].runs_per_fault, 1.0);
        assert_eq!(costs[0].mean_ns, 4000.0);
        let table = render_program_costs(&costs, Some(4.0));
        assert!(table.contains("1000 instructions/run"), "{table}");
        assert!(
            table.contains("total 1252 instructions per fault"),
            "{table}"
        );
        Ok(())
    }

    #[test]
    fn a_recording_without_costs_or_faults_is_refused() {
        assert!(program_costs(&BTreeMap::new(), 10).is_err());
        assert!(program_costs(&costs(&[("p", 1, 10)]), 0).is_err());
        // A cost without its run time is not a cost.
        let partial = serde_json::json!({"runs": 1});
        assert!(serde_json::from_value::<KernelCost>(partial).is_err());
    }
}
