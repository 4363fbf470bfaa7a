//! The gate before `live` and `record`: the checks of `ttmlat check` at
//! [`check::Depth::Preflight`] — including the real probes (a kprobe-type BPF program load, a
//! kprobe registration, opening tracefs `kprobe_events`), which are the operations the loader
//! would otherwise fail on with a bare errno, but not the parsing of /proc/kallsyms and BTF
//! that the session does next anyway. A machine that cannot trace gets the failing requirement
//! lines.

use anyhow::{Result, bail};

use crate::{
    check::{self, Check, Report},
    kernel_info::KernelInfo,
};

/// Fails, naming each unmet requirement, when this machine cannot run ttmlat's probes.
pub fn require_tracing(kernel: &KernelInfo) -> Result<()> {
    let report = check::run_checks_for(kernel, check::DEFAULT_MAXACTIVE, check::Depth::Preflight);
    match failure_message(&report) {
        None => Ok(()),
        Some(msg) => bail!("{msg}"),
    }
}

/// The error text for a report with failures: one requirement line each.
pub fn failure_message(report: &Report) -> Option<String> {
    let lines: Vec<String> = report.failures().map(Check::line).collect();
    if lines.is_empty() {
        return None;
    }
    Some(format!(
        "this machine cannot run ttmlat's probes (`ttmlat check` shows every requirement):\n{}",
        lines.join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::State;

    fn check(id: &'static str, name: &'static str, state: State, hint: Option<&str>) -> Check {
        Check {
            id: id.into(),
            name: name.into(),
            state,
            detail: "d".into(),
            hint: hint.map(str::to_string),
        }
    }

    #[test]
    fn message_lists_only_the_failing_lines() {
        let mut report = Report {
            kernel: "6.1".into(),
            can_run: false,
            failing: vec!["lockdown".into(), "kprobes".into()],
            checks: vec![
                check("privileges", "privileges", State::Ok, None),
                check(
                    "lockdown",
                    "kernel lockdown",
                    State::Fail,
                    Some("boot without it"),
                ),
                check("ttm_btf", "ttm BTF", State::Info, None),
                check("kprobes", "kprobes", State::Fail, None),
            ],
            plan: None,
        };
        assert_eq!(
            failure_message(&report).as_deref(),
            Some(
                "this machine cannot run ttmlat's probes (`ttmlat check` shows every \
                 requirement):\n[FAIL] kernel lockdown: d — boot without it\n[FAIL] kprobes: d"
            )
        );
        report.checks.retain(|c| c.state != State::Fail);
        assert_eq!(failure_message(&report), None);
    }
}
