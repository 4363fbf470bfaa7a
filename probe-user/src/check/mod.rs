//! `ttmlat check`: every requirement of tracing, each checked against the running system, one
//! line each (`[ ok ]`, `[warn]`, `[FAIL]`, `[info]`), then a verdict. The same checks guard
//! `live` and `record` (see `preflight`), so a machine that cannot trace is told which
//! requirement it misses instead of getting an errno from the loader.
//!
//! Three parts: `facts.rs` gathers ([`Facts::gather`] does all the I/O: files, and the real
//! probes in `probe.rs`), `rules.rs` turns each fact into a check and is pure, so every message
//! is unit tested, and this module evaluates and renders the report.

mod facts;
mod probe;
mod rules;

use std::{fmt::Write as _, io::Write as _};

use anyhow::{Context, Result};
use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::discovery::{self, AttachPlan};

pub use facts::*;
#[cfg(test)]
use probe::Outcome;
use rules::*;

/// The `--maxactive` ttmlat uses unless told otherwise (see `session::TraceArgs`).
pub const DEFAULT_MAXACTIVE: u32 = 1024;

/// The function the kprobe test attaches to (ttmlat always probes it).
const TEST_KPROBE_SYMBOL: &str = "up_read";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Ok,
    Warn,
    Fail,
    Info,
}

impl State {
    pub fn tag(self) -> &'static str {
        match self {
            State::Ok => "[ ok ]",
            State::Warn => "[warn]",
            State::Fail => "[FAIL]",
            State::Info => "[info]",
        }
    }
}

/// One requirement and what this machine says about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable key (JSON, tests).
    pub id: Cow<'static, str>,
    pub name: Cow<'static, str>,
    pub state: State,
    pub detail: String,
    /// What it means and what to do, for anything not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    fn new(id: &'static str, name: &'static str, state: State, detail: impl Into<String>) -> Self {
        Self {
            id: Cow::Borrowed(id),
            name: Cow::Borrowed(name),
            state,
            detail: detail.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// `[FAIL] kernel lockdown: confidentiality — the kernel refuses …`
    pub fn line(&self) -> String {
        let mut s = format!("{} {}: {}", self.state.tag(), self.name, self.detail);
        if let Some(h) = &self.hint {
            let _ = write!(s, " — {h}");
        }
        s
    }
}

/// The outcome of all checks: `check --json` writes it, the lab tests read it back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub kernel: String,
    pub can_run: bool,
    /// Ids of the failing checks.
    pub failing: Vec<Cow<'static, str>>,
    pub checks: Vec<Check>,
    /// The attach points ttmlat would use, when it found TTM.
    pub plan: Option<AttachPlan>,
}

impl Report {
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.state == State::Fail)
    }

    #[cfg(test)]
    pub fn get(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    pub fn summary(&self) -> String {
        let warnings = self
            .checks
            .iter()
            .filter(|c| c.state == State::Warn)
            .count();
        if self.can_run {
            match warnings {
                0 => "ttmlat can run here".to_string(),
                n => format!("ttmlat can run here ({n} warning{})", plural(n)),
            }
        } else {
            let names: Vec<&str> = self.failures().map(|c| c.name.as_ref()).collect();
            format!(
                "ttmlat cannot run here: {} requirement{} not met ({})",
                names.len(),
                plural(names.len()),
                names.join(", ")
            )
        }
    }

    pub fn render_text(&self) -> String {
        let mut out = format!("ttmlat check: kernel {}\n", self.kernel);
        for c in &self.checks {
            out.push_str(&c.line());
            out.push('\n');
        }
        out.push_str(&self.summary());
        out.push('\n');
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Turns facts into checks.
pub fn evaluate(f: &Facts) -> Report {
    let plan = match &f.kallsyms {
        Some(Ok(k)) => Some(discovery::plan(&k.symbols, f.has_lock_tracepoints()).map_err(Some)),
        Some(Err(_)) => Some(Err(None)),
        None => None,
    };
    let checks: Vec<Check> = [
        Some(privileges(f)),
        Some(lockdown(f)),
        Some(bpf_syscall(f)),
        Some(bpf_tracing(f)),
        Some(kprobes(f)),
        Some(tracefs(f)),
        Some(vmlinux_btf(f)),
        Some(ttm_btf(f)),
        Some(ttm_loaded(f)),
        plan.as_ref().map(|p| handlers(f, p)),
        f.tracepoints.as_ref().map(|tps| {
            // The thread-exit kprobe (exit_files) makes sched_process_exit unnecessary.
            let exit_kprobe = matches!(&plan, Some(Ok(p)) if p.thread_exit.is_some());
            tracepoints(tps, exit_kprobe)
        }),
        plan.as_ref().map(|p| strategy(f, p)),
        Some(kms(f)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let failing: Vec<Cow<'static, str>> = checks
        .iter()
        .filter(|c| c.state == State::Fail)
        .map(|c| c.id.clone())
        .collect();
    Report {
        kernel: f.release.clone(),
        can_run: failing.is_empty(),
        failing,
        checks,
        plan: plan.and_then(Result::ok),
    }
}

/// Gathers everything and evaluates.
pub fn run_checks(maxactive: u32) -> Report {
    evaluate(&Facts::gather(maxactive))
}

/// Gathers at `depth` (reusing what `kernel` already read) and evaluates.
pub fn run_checks_for(
    kernel: &crate::kernel_info::KernelInfo,
    maxactive: u32,
    depth: Depth,
) -> Report {
    evaluate(&Facts::gather_with(
        kernel.release.clone(),
        kernel.lockdown.clone(),
        maxactive,
        depth,
    ))
}

/// Where the reservation facts would be hooked: call sites (nothing system-wide) when the
/// loaded modules' files are found, else the vmlinux functions (a warning: every up_read and
/// ww_mutex call of the machine then pays). Module files from `TTMLAT_MODULE_FILES` too.
fn hook_sites(report: &Report) -> Option<Check> {
    const ID: &str = "hook_sites";
    const NAME: &str = "call-site hooks";
    let plan = report.plan.as_ref()?;
    let given: Vec<std::path::PathBuf> = std::env::var_os("TTMLAT_MODULE_FILES")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    Some(match crate::callsites::plan(plan, &report.kernel, &given) {
        Ok(sites) => {
            let files: Vec<String> = sites
                .modules
                .iter()
                .map(|m| format!("{} sites in {}", m.sites.len(), m.file.display()))
                .collect();
            Check::new(ID, NAME, State::Ok, files.join(", "))
        }
        Err(e) => {
            let mut c = Check::new(ID, NAME, State::Warn, format!("{e:#}"));
            c.hint = Some(
                "ttmlat will hook up_read and ww_mutex_* themselves, which costs every page \
                 fault of the machine a little; pass the loaded module's file with \
                 --module-file (or TTMLAT_MODULE_FILES)"
                    .into(),
            );
            c
        }
    })
}

/// How `record`/`serve` will hook the fault handlers by default (`--handler-hooks auto`):
/// trampolines when kernel code is not preempted and every handler's module has BTF, kprobes
/// otherwise, with the reason. Whether the kernel then accepts the programs is only known when
/// they load (a refusal falls back to kprobes, said on stderr).
fn handler_hooks(report: &Report, preemption: crate::kernel_info::Preemption) -> Option<Check> {
    const ID: &str = "handler_hooks";
    const NAME: &str = "fault-handler hooks";
    let plan = report.plan.as_ref()?;
    if preemption.preempts_programs() {
        return Some(Check::new(
            ID,
            NAME,
            State::Info,
            format!(
                "kprobe + kretprobe: preemption model {}, where the kernel would skip a \
                 preempted trampoline program",
                preemption.name()
            ),
        ));
    }
    let modules = plan.handler_modules();
    let missing: Vec<&str> = modules
        .iter()
        .copied()
        .filter(|m| m.is_empty() || !std::path::Path::new("/sys/kernel/btf").join(m).exists())
        .collect();
    Some(if missing.is_empty() {
        Check::new(
            ID,
            NAME,
            State::Ok,
            format!(
                "fentry/fexit through module BTF (preemption model {}); the kernel pins {} \
                 while ttmlat runs (rmmod is refused; --handler-hooks kprobes avoids that)",
                preemption.name(),
                modules.join(", ")
            ),
        )
    } else {
        Check::new(
            ID,
            NAME,
            State::Info,
            format!(
                "kprobe + kretprobe: no BTF in /sys/kernel/btf for {}",
                missing.join(", ")
            ),
        )
    })
}

/// `ttmlat check [--json]`: prints the report; `Ok(true)` when ttmlat can run.
pub fn run(json: bool) -> Result<bool> {
    let mut report = run_checks(DEFAULT_MAXACTIVE);
    if report.can_run
        && let Some(c) = hook_sites(&report)
    {
        report.checks.push(c);
    }
    if report.can_run
        && let Some(c) = handler_hooks(&report, crate::kernel_info::Preemption::current())
    {
        report.checks.push(c);
    }
    let mut stdout = std::io::stdout().lock();
    if json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        writeln!(stdout, "{text}")?;
    } else {
        write!(stdout, "{}", report.render_text())?;
    }
    stdout.flush()?;
    Ok(report.can_run)
}

#[cfg(test)]
mod tests;
