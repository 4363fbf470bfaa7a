//! `ttmlat check`: every requirement of tracing, each checked against the running system, one
//! line each (`[ ok ]`, `[warn]`, `[FAIL]`, `[info]`), then a verdict. The same checks guard
//! `live` and `record` (see `preflight`), so a machine that cannot trace is told which
//! requirement it misses instead of getting an errno from the loader.
//!
//! Two halves: [`Facts::gather`] does all the I/O (files, and the real probes in [`probe`]),
//! [`evaluate`] turns facts into checks and is pure, so every message is unit tested.

mod probe;

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use probe_common::KernelLayout;
use serde::Serialize;

use crate::{
    discovery::{self, AttachPlan, ContentionSource, PlanError, SymbolTable},
    kernel_info::{self, KernelConfig, TracepointSource, cap},
};

pub use probe::Outcome;

/// The `--maxactive` ttmlat uses unless told otherwise (see `session::TraceArgs`).
pub const DEFAULT_MAXACTIVE: u32 = 1024;

/// The function the kprobe test attaches to (ttmlat always probes it).
const TEST_KPROBE_SYMBOL: &str = "up_read";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable key (JSON, tests).
    pub id: &'static str,
    pub name: &'static str,
    pub state: State,
    pub detail: String,
    /// What it means and what to do, for anything not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    fn new(id: &'static str, name: &'static str, state: State, detail: impl Into<String>) -> Self {
        Self {
            id,
            name,
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

/// How the lockdown mode was (or was not) found out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lockdown {
    /// The active mode; `via` says how when not from the mounted securityfs.
    Known {
        mode: String,
        via: Option<String>,
    },
    /// securityfs is there but has no lockdown file: the lockdown LSM is not built in.
    NotBuilt,
    Unknown {
        why: String,
    },
}

/// tracefs as ttmlat's return probes need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tracefs {
    /// Mounted where ttmlat looks; `kprobe_events` is `None` when the file does not exist.
    Mounted {
        root: PathBuf,
        kprobe_events: Option<Outcome>,
    },
    /// Mounted only somewhere ttmlat does not look.
    Elsewhere(PathBuf),
    /// Not mounted; `supported`: the kernel has tracefs at all.
    NotMounted { supported: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmlinuxBtf {
    Missing,
    /// There, not parsed (preflight: the session resolves the layout next and names any
    /// missing field itself).
    Present,
    /// Read, and the layout resolved (or the error naming what did not).
    Layout(Result<KernelLayout, String>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TtmModule {
    pub version: Option<String>,
    pub srcversion: Option<String>,
    /// Modules using ttm, directly or through a helper (drm_ttm_helper → bochs).
    pub users: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Kallsyms {
    pub symbols: SymbolTable,
    /// kptr_restrict hides addresses (all zero) from this user; names are still listed and
    /// are all ttmlat needs.
    pub addresses_hidden: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracepoint {
    pub system: &'static str,
    pub name: &'static str,
    pub found: Option<TracepointSource>,
}

/// How much to look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    /// Everything (`ttmlat check`).
    Full,
    /// What can fail with a bare errno in the loader, and TTM's presence — without parsing
    /// /proc/kallsyms or BTF, which the session does right after anyway (seconds in the
    /// emulated lab).
    Preflight,
}

/// Everything the checks look at, read from the running system.
#[derive(Clone, Debug)]
pub struct Facts {
    pub release: String,
    pub euid: u32,
    pub caps: Option<u64>,
    pub config: Option<KernelConfig>,
    pub lockdown: Lockdown,
    pub bpf_syscall: Outcome,
    pub bpf_tracing: Outcome,
    pub kprobe_pmu: Option<u32>,
    pub kprobe_create: Outcome,
    pub tracefs: Tracefs,
    pub vmlinux_btf: VmlinuxBtf,
    pub ttm_btf: bool,
    pub ttm_module: Option<TtmModule>,
    /// `None`: not read (preflight).
    pub kallsyms: Option<Result<Kallsyms, String>>,
    /// `None`: not looked for (preflight).
    pub tracepoints: Option<Vec<Tracepoint>>,
    /// (card, driver) of KMS devices.
    pub kms: Vec<(String, String)>,
    pub maxactive: u32,
}

impl Facts {
    /// Reads the system and runs the probes (a BPF program load, a kprobe registration and a
    /// tracefs open, each undone at once). Takes well under a second.
    pub fn gather(maxactive: u32) -> Self {
        let release = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let securityfs_lockdown = std::fs::read_to_string(kernel_info::LOCKDOWN_FILE)
            .ok()
            .and_then(|t| kernel_info::parse_lockdown(&t));
        Self::gather_with(release, securityfs_lockdown, maxactive, Depth::Full)
    }

    /// [`Facts::gather`] with the release and the securityfs lockdown mode already known
    /// (from [`crate::kernel_info::KernelInfo`]).
    pub fn gather_with(
        release: String,
        lockdown: Option<String>,
        maxactive: u32,
        depth: Depth,
    ) -> Self {
        let full = depth == Depth::Full;
        let config = KernelConfig::read(&release);
        let kprobe_pmu = probe::kprobe_pmu_type();
        let btf_bytes = if full {
            std::fs::read(kernel_info::VMLINUX_BTF).ok()
        } else {
            None
        };
        let tracefs = gather_tracefs();
        let tracefs_root = match &tracefs {
            Tracefs::Mounted { root, .. } => Some(root.clone()),
            _ => None,
        };
        let tracepoints: Vec<Tracepoint> = [
            ("lock", "contention_begin"),
            ("lock", "contention_end"),
            ("sched", "sched_process_exit"),
        ]
        .into_iter()
        .map(|(system, name)| Tracepoint {
            system,
            name,
            found: kernel_info::find_tracepoint(
                tracefs_root.as_deref(),
                btf_bytes.as_deref(),
                system,
                name,
            ),
        })
        .collect();
        Self {
            euid: nix::unistd::geteuid().as_raw(),
            caps: kernel_info::cap_eff(),
            lockdown: match lockdown {
                Some(mode) => Lockdown::Known { mode, via: None },
                None => gather_lockdown(),
            },
            bpf_syscall: probe::bpf_prog_load(probe::Prog::SocketFilter, &release),
            bpf_tracing: probe::bpf_prog_load(probe::Prog::KprobeReadingKernel, &release),
            kprobe_create: match kprobe_pmu {
                Some(t) => probe::kprobe_create(t, TEST_KPROBE_SYMBOL),
                None => Outcome::Skipped("no kprobe PMU".into()),
            },
            kprobe_pmu,
            tracefs,
            vmlinux_btf: match &btf_bytes {
                None if !full && Path::new(kernel_info::VMLINUX_BTF).exists() => {
                    VmlinuxBtf::Present
                }
                None => VmlinuxBtf::Missing,
                Some(bytes) => VmlinuxBtf::Layout(
                    btf_rs::Btf::from_bytes(bytes)
                        .map_err(|e| format!("cannot parse {}: {e}", kernel_info::VMLINUX_BTF))
                        .and_then(|btf| crate::layout::resolve(&btf).map_err(|e| e.to_string())),
                ),
            },
            ttm_btf: Path::new("/sys/kernel/btf/ttm").exists(),
            ttm_module: gather_ttm_module(),
            kallsyms: full.then(|| {
                std::fs::read_to_string("/proc/kallsyms")
                    .map(|text| Kallsyms {
                        addresses_hidden: kallsyms_addresses_hidden(&text),
                        symbols: SymbolTable::from_kallsyms(&text),
                    })
                    .map_err(|e| format!("cannot read /proc/kallsyms: {}", probe::errno_text(&e)))
            }),
            tracepoints: full.then_some(tracepoints),
            kms: gather_kms(),
            config,
            release,
            maxactive,
        }
    }

    fn privileged(&self) -> bool {
        self.euid == 0
            || self.caps.is_some_and(|c| {
                (kernel_info::has_cap(c, cap::BPF) && kernel_info::has_cap(c, cap::PERFMON))
                    || kernel_info::has_cap(c, cap::SYS_ADMIN)
            })
    }

    fn confidentiality(&self) -> bool {
        matches!(&self.lockdown, Lockdown::Known { mode, .. } if mode == "confidentiality")
            || self
                .config
                .as_ref()
                .is_some_and(|c| c.enabled("CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY"))
    }

    fn has_lock_tracepoints(&self) -> bool {
        self.tracepoints.as_ref().is_some_and(|tps| {
            tps.iter()
                .filter(|t| t.system == "lock")
                .all(|t| t.found.is_some())
        })
    }
}

fn gather_lockdown() -> Lockdown {
    match std::fs::read_to_string(kernel_info::LOCKDOWN_FILE) {
        Ok(text) => match kernel_info::parse_lockdown(&text) {
            Some(mode) => Lockdown::Known { mode, via: None },
            None => Lockdown::Unknown {
                why: format!("unreadable {}: {text:?}", kernel_info::LOCKDOWN_FILE),
            },
        },
        Err(_) if Path::new("/sys/kernel/security/lsm").exists() => Lockdown::NotBuilt,
        Err(_) => match probe::lockdown_from_private_securityfs() {
            Ok(text) => match kernel_info::parse_lockdown(&text) {
                Some(mode) => Lockdown::Known {
                    mode,
                    via: Some("securityfs is not mounted; read through a private mount".into()),
                },
                None => Lockdown::Unknown {
                    why: format!("unreadable lockdown file: {text:?}"),
                },
            },
            Err(why) => Lockdown::Unknown {
                why: format!("securityfs is not mounted and cannot be mounted privately: {why}"),
            },
        },
    }
}

fn gather_tracefs() -> Tracefs {
    let mounts = kernel_info::tracefs_mounts();
    let standard = kernel_info::TRACEFS_DIRS
        .iter()
        .map(Path::new)
        .find(|d| mounts.iter().any(|m| m == d) || d.join("events").is_dir());
    match standard {
        Some(root) => {
            let file = root.join("kprobe_events");
            let kprobe_events = match std::fs::metadata(&file) {
                Ok(_) => Some(probe::open_for_append(&file)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => Some(Outcome::Failed {
                    errno: e.raw_os_error(),
                    message: format!("{}: {}", file.display(), probe::errno_text(&e)),
                }),
            };
            Tracefs::Mounted {
                root: root.to_path_buf(),
                kprobe_events,
            }
        }
        None => match mounts.into_iter().next() {
            Some(other) => Tracefs::Elsewhere(other),
            None => Tracefs::NotMounted {
                supported: kernel_info::filesystem_supported("tracefs"),
            },
        },
    }
}

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn gather_ttm_module() -> Option<TtmModule> {
    let dir = Path::new("/sys/module/ttm");
    if !dir.is_dir() {
        return None;
    }
    // Breadth-first through holders: ttm ← drm_ttm_helper ← drm_vram_helper ← bochs.
    let mut users = Vec::new();
    let mut seen = BTreeSet::new();
    let mut queue = vec!["ttm".to_string()];
    while let Some(module) = queue.pop() {
        let Ok(entries) = std::fs::read_dir(format!("/sys/module/{module}/holders")) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if seen.insert(name.clone()) && seen.len() < 64 {
                users.push(name.clone());
                queue.push(name);
            }
        }
    }
    users.sort();
    Some(TtmModule {
        version: read_trim(&dir.join("version")),
        srcversion: read_trim(&dir.join("srcversion")),
        users,
    })
}

fn gather_kms() -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir("/sys/class/drm") else {
        return Vec::new();
    };
    let mut cards: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_card = name
                .strip_prefix("card")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !is_card {
                return None;
            }
            let driver = std::fs::read_link(e.path().join("device/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "?".into());
            Some((name, driver))
        })
        .collect();
    cards.sort();
    cards
}

/// True when /proc/kallsyms lists names with zero addresses (kptr_restrict for this user).
pub fn kallsyms_addresses_hidden(text: &str) -> bool {
    let mut lines = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .take(64)
        .peekable();
    lines.peek().is_some() && lines.all(|addr| addr.bytes().all(|b| b == b'0'))
}

/// The outcome of all checks.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub can_run: bool,
    /// Ids of the failing checks.
    pub failing: Vec<&'static str>,
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
            let names: Vec<&str> = self.failures().map(|c| c.name).collect();
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
        f.tracepoints.as_ref().map(|tps| tracepoints(tps)),
        plan.as_ref().map(|p| strategy(f, p)),
        Some(kms(f)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let failing: Vec<&'static str> = checks
        .iter()
        .filter(|c| c.state == State::Fail)
        .map(|c| c.id)
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

/// `ttmlat check [--json]`: prints the report; `Ok(true)` when ttmlat can run.
pub fn run(json: bool) -> Result<bool> {
    let mut report = run_checks(DEFAULT_MAXACTIVE);
    if report.can_run
        && let Some(c) = hook_sites(&report)
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

const ROOT_HINT: &str = "run ttmlat as root (sudo) or with CAP_BPF+CAP_PERFMON";
const LOCKDOWN_HINT: &str = "confidentiality lockdown forbids it";

/// The usual reason an operation was refused, for a hint.
fn refusal_hint(f: &Facts, errno: Option<i32>) -> Option<&'static str> {
    if f.confidentiality() {
        Some(LOCKDOWN_HINT)
    } else if matches!(errno, Some(libc::EPERM | libc::EACCES)) && !f.privileged() {
        Some(ROOT_HINT)
    } else {
        None
    }
}

fn outcome_detail(o: &Outcome) -> String {
    match o {
        Outcome::Passed => "works".into(),
        Outcome::Failed { message, .. } => message.clone(),
        Outcome::Skipped(why) => format!("not tried: {why}"),
    }
}

fn privileges(f: &Facts) -> Check {
    const ID: &str = "privileges";
    const NAME: &str = "privileges";
    let has = |bit| f.caps.is_some_and(|c| kernel_info::has_cap(c, bit));
    if f.euid == 0 {
        return Check::new(ID, NAME, State::Ok, "root");
    }
    if has(cap::BPF) && has(cap::PERFMON) {
        return Check::new(
            ID,
            NAME,
            State::Ok,
            format!("CAP_BPF+CAP_PERFMON (euid {})", f.euid),
        );
    }
    if has(cap::SYS_ADMIN) {
        return Check::new(
            ID,
            NAME,
            State::Ok,
            format!("CAP_SYS_ADMIN (euid {})", f.euid),
        );
    }
    Check::new(
        ID,
        NAME,
        State::Fail,
        format!("euid {} without CAP_BPF+CAP_PERFMON", f.euid),
    )
    .hint(ROOT_HINT)
}

fn lockdown(f: &Facts) -> Check {
    const ID: &str = "lockdown";
    const NAME: &str = "kernel lockdown";
    let with_via = |text: &str, via: &Option<String>| match via {
        Some(v) => format!("{text} ({v})"),
        None => text.to_string(),
    };
    match &f.lockdown {
        Lockdown::Known { mode, via } => match mode.as_str() {
            "none" => Check::new(ID, NAME, State::Ok, with_via("none", via)),
            "integrity" => Check::new(
                ID,
                NAME,
                State::Ok,
                with_via(
                    "integrity (blocks writing to the kernel; BPF reads and kprobes are allowed)",
                    via,
                ),
            ),
            "confidentiality" => {
                Check::new(ID, NAME, State::Fail, with_via("confidentiality", via)).hint(
                    "the kernel refuses BPF tracing and kprobes; boot without \
                     lockdown=confidentiality (it cannot be lowered at runtime)",
                )
            }
            other => Check::new(ID, NAME, State::Warn, with_via(other, via))
                .hint("unknown lockdown mode"),
        },
        Lockdown::NotBuilt => Check::new(ID, NAME, State::Ok, "none (no lockdown LSM)"),
        Lockdown::Unknown { why } => {
            if f.confidentiality() {
                Check::new(
                    ID,
                    NAME,
                    State::Fail,
                    "confidentiality (CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY)",
                )
                .hint("the kernel refuses BPF tracing and kprobes; boot a kernel without it")
            } else if f
                .config
                .as_ref()
                .is_some_and(|c| c.enabled("CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY"))
            {
                Check::new(
                    ID,
                    NAME,
                    State::Warn,
                    format!(
                        "at least integrity (CONFIG_LOCK_DOWN_KERNEL_FORCE_INTEGRITY); the \
                         exact mode is unknown ({why})"
                    ),
                )
                .hint("mount -t securityfs securityfs /sys/kernel/security to read it")
            } else {
                Check::new(ID, NAME, State::Warn, format!("unknown ({why})"))
                    .hint("mount -t securityfs securityfs /sys/kernel/security to read it")
            }
        }
    }
}

fn bpf_syscall(f: &Facts) -> Check {
    const ID: &str = "bpf_syscall";
    const NAME: &str = "BPF syscall";
    match &f.bpf_syscall {
        Outcome::Passed => Check::new(ID, NAME, State::Ok, "BPF_PROG_LOAD works"),
        Outcome::Failed { errno, message } => {
            let c = Check::new(ID, NAME, State::Fail, message.clone());
            match errno {
                Some(libc::ENOSYS) => c.hint("the kernel was built without CONFIG_BPF_SYSCALL"),
                _ => match refusal_hint(f, *errno) {
                    Some(h) => c.hint(h),
                    None => c,
                },
            }
        }
        Outcome::Skipped(why) => Check::new(ID, NAME, State::Warn, format!("not tried: {why}")),
    }
}

fn bpf_tracing(f: &Facts) -> Check {
    const ID: &str = "bpf_tracing";
    const NAME: &str = "BPF kernel reads";
    match &f.bpf_tracing {
        Outcome::Passed => Check::new(
            ID,
            NAME,
            State::Ok,
            "a kprobe program calling bpf_probe_read_kernel loads",
        ),
        Outcome::Failed { errno, message } => {
            let c = Check::new(ID, NAME, State::Fail, message.clone());
            match refusal_hint(f, *errno) {
                Some(h) => c.hint(h),
                None if message.contains("bpf_probe_read_kernel") => c.hint(
                    "the kernel withholds bpf_probe_read_kernel from kprobe programs \
                         (confidentiality lockdown, or a kernel older than 5.5)",
                ),
                None => c,
            }
        }
        Outcome::Skipped(why) => Check::new(ID, NAME, State::Warn, format!("not tried: {why}")),
    }
}

fn kprobes(f: &Facts) -> Check {
    const ID: &str = "kprobes";
    const NAME: &str = "kprobes";
    const BUILD_HINT: &str =
        "ttmlat needs a kernel built with CONFIG_KPROBES=y and CONFIG_KPROBE_EVENTS=y";
    let Some(pmu) = f.kprobe_pmu else {
        let mut detail = String::new();
        if let Some(c) = &f.config
            && !c.enabled("CONFIG_KPROBES")
        {
            let _ = write!(
                detail,
                "CONFIG_KPROBES is not set ({}); ",
                c.source.display()
            );
        }
        detail.push_str("no kprobe PMU in /sys/bus/event_source/devices");
        return Check::new(ID, NAME, State::Fail, detail).hint(BUILD_HINT);
    };
    match &f.kprobe_create {
        Outcome::Passed => Check::new(
            ID,
            NAME,
            State::Ok,
            format!("kprobe PMU (type {pmu}); a test kprobe on {TEST_KPROBE_SYMBOL} registers"),
        ),
        Outcome::Failed { errno, message } => {
            let c = Check::new(ID, NAME, State::Fail, message.clone());
            match refusal_hint(f, *errno) {
                Some(h) => c.hint(h),
                None => c,
            }
        }
        Outcome::Skipped(why) => Check::new(
            ID,
            NAME,
            State::Warn,
            format!("kprobe PMU (type {pmu}); test kprobe not tried: {why}"),
        ),
    }
}

fn tracefs(f: &Facts) -> Check {
    const ID: &str = "tracefs";
    const NAME: &str = "tracefs kprobe_events";
    const WHY: &str = "return probes (maxactive) are created through it";
    match &f.tracefs {
        Tracefs::NotMounted { supported: true } => {
            Check::new(ID, NAME, State::Fail, "tracefs is not mounted")
                .hint(format!("{WHY}; mount -t tracefs nodev /sys/kernel/tracing"))
        }
        Tracefs::NotMounted { supported: false } => {
            Check::new(ID, NAME, State::Fail, "this kernel has no tracefs").hint(format!(
                "{WHY}; needs CONFIG_FTRACE and CONFIG_KPROBE_EVENTS"
            ))
        }
        Tracefs::Elsewhere(dir) => Check::new(
            ID,
            NAME,
            State::Fail,
            format!("tracefs is mounted only at {}", dir.display()),
        )
        .hint("mount -t tracefs nodev /sys/kernel/tracing"),
        Tracefs::Mounted {
            root,
            kprobe_events: None,
        } => Check::new(
            ID,
            NAME,
            State::Fail,
            format!("no {}/kprobe_events", root.display()),
        )
        .hint(format!(
            "{WHY}; the kernel was built without CONFIG_KPROBE_EVENTS"
        )),
        Tracefs::Mounted {
            root,
            kprobe_events: Some(Outcome::Passed),
        } => Check::new(
            ID,
            NAME,
            State::Ok,
            format!("{}/kprobe_events is writable", root.display()),
        ),
        Tracefs::Mounted {
            kprobe_events: Some(o),
            ..
        } => {
            let errno = match o {
                Outcome::Failed { errno, .. } => *errno,
                _ => None,
            };
            let c = Check::new(ID, NAME, State::Fail, outcome_detail(o));
            match (refusal_hint(f, errno), errno) {
                (Some(h), _) => c.hint(h),
                (None, Some(libc::EACCES | libc::EPERM)) => {
                    c.hint("tracefs files are root's: run ttmlat as root (sudo)")
                }
                (None, _) => c,
            }
        }
    }
}

fn vmlinux_btf(f: &Facts) -> Check {
    const ID: &str = "vmlinux_btf";
    const NAME: &str = "vmlinux BTF";
    match &f.vmlinux_btf {
        VmlinuxBtf::Missing => Check::new(
            ID,
            NAME,
            State::Fail,
            format!("no {}", kernel_info::VMLINUX_BTF),
        )
        .hint("ttmlat takes struct offsets from it; needs a kernel built with CONFIG_DEBUG_INFO_BTF=y"),
        VmlinuxBtf::Present => Check::new(
            ID,
            NAME,
            State::Ok,
            format!("{} (layout not resolved yet)", kernel_info::VMLINUX_BTF),
        ),
        VmlinuxBtf::Layout(Ok(l)) => Check::new(
            ID,
            NAME,
            State::Ok,
            format!(
                "every offset resolves (mm_struct.mmap_lock +{}, ww_mutex owner +{}, \
                 vm_fault.flags +{}, task_struct.comm +{})",
                l.mm_mmap_lock, l.ww_mutex_owner, l.vm_fault_flags, l.task_comm
            ),
        ),
        VmlinuxBtf::Layout(Err(e)) => Check::new(ID, NAME, State::Fail, e.clone())
            .hint("this kernel's struct layout is not supported by this ttmlat"),
    }
}

fn ttm_btf(f: &Facts) -> Check {
    const ID: &str = "ttm_btf";
    const NAME: &str = "ttm BTF";
    if f.ttm_btf {
        Check::new(
            ID,
            NAME,
            State::Info,
            "/sys/kernel/btf/ttm present (not needed)",
        )
    } else {
        Check::new(
            ID,
            NAME,
            State::Info,
            "absent — not needed: ttmlat takes offsets from vmlinux BTF only",
        )
    }
}

fn ttm_loaded(f: &Facts) -> Check {
    const ID: &str = "ttm_loaded";
    const NAME: &str = "TTM loaded";
    match &f.ttm_module {
        Some(m) => {
            let mut detail = String::from("ttm");
            if let Some(v) = &m.version {
                let _ = write!(detail, " version {v}");
            }
            if let Some(s) = &m.srcversion {
                let _ = write!(detail, " (srcversion {s})");
            }
            if !m.users.is_empty() {
                let _ = write!(detail, ", used by {}", m.users.join(", "));
            }
            Check::new(ID, NAME, State::Ok, detail)
        }
        None => {
            let config = f.config.as_ref();
            let hint = if config.is_some_and(|c| !c.enabled("CONFIG_DRM")) {
                "this kernel has no DRM (CONFIG_DRM is not set), so no GPU driver uses TTM"
            } else if config.is_some_and(|c| !c.enabled("CONFIG_DRM_TTM")) {
                "this kernel has no TTM (CONFIG_DRM_TTM is not set)"
            } else {
                "load the GPU driver that uses TTM (amdgpu, radeon, nouveau, qxl, vmwgfx, \
                 bochs, xe, i915 on discrete GPUs)"
            };
            Check::new(ID, NAME, State::Fail, "no ttm module (/sys/module/ttm)").hint(hint)
        }
    }
}

fn handlers(f: &Facts, plan: &Result<AttachPlan, Option<PlanError>>) -> Check {
    const ID: &str = "fault_handlers";
    const NAME: &str = "TTM fault handlers";
    let kallsyms = match &f.kallsyms {
        Some(Ok(k)) => k,
        Some(Err(e)) => return Check::new(ID, NAME, State::Fail, e.clone()),
        None => return Check::new(ID, NAME, State::Info, "not looked at"),
    };
    let hidden = if kallsyms.addresses_hidden {
        " (kallsyms addresses hidden by kptr_restrict; names suffice)"
    } else {
        ""
    };
    match plan {
        Ok(p) => {
            let handlers: Vec<String> = p
                .fault_handlers
                .iter()
                .map(|(s, m)| format!("{s} [{m}]"))
                .collect();
            let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
            Check::new(
                ID,
                NAME,
                State::Ok,
                format!(
                    "{}; reserve {}, access {}, trylock {}, waits {}{hidden}",
                    handlers.join(", "),
                    opt(&p.reserve),
                    opt(&p.access),
                    opt(&p.trylock),
                    p.resv_lock.join(", ")
                ),
            )
        }
        Err(Some(PlanError::NoTtm)) => Check::new(
            ID,
            NAME,
            State::Fail,
            format!("none in /proc/kallsyms{hidden}"),
        )
        .hint("no TTM fault handler (ttm_bo_vm_fault or a driver's) is loaded"),
        Err(Some(e)) => Check::new(ID, NAME, State::Fail, e.to_string()),
        Err(None) => Check::new(ID, NAME, State::Fail, "no symbol table"),
    }
}

fn tracepoints(tps: &[Tracepoint]) -> Check {
    const ID: &str = "tracepoints";
    const NAME: &str = "tracepoints";
    let label = |t: &Tracepoint| format!("{}:{}", t.system, t.name);
    let found: Vec<String> = tps
        .iter()
        .filter(|t| t.found.is_some())
        .map(label)
        .collect();
    let missing: Vec<&Tracepoint> = tps.iter().filter(|t| t.found.is_none()).collect();
    let from_btf = tps.iter().any(|t| t.found == Some(TracepointSource::Btf));
    let mut detail = if found.is_empty() {
        "none found".to_string()
    } else {
        found.join(", ")
    };
    if from_btf {
        detail.push_str(" (seen in vmlinux BTF; tracefs events not readable)");
    }
    if !missing.is_empty() {
        let names: Vec<String> = missing.iter().map(|t| label(t)).collect();
        let _ = write!(detail, "; missing {}", names.join(", "));
    }
    if missing.iter().any(|t| t.system == "sched") {
        Check::new(ID, NAME, State::Fail, detail)
            .hint("ttmlat clears per-thread state on sched_process_exit")
    } else if !missing.is_empty() {
        Check::new(ID, NAME, State::Warn, detail).hint(
            "no lock contention tracepoints (before 5.19): collateral stalls come from rwsem \
             slowpath kprobes",
        )
    } else {
        Check::new(ID, NAME, State::Ok, detail)
    }
}

fn strategy(f: &Facts, plan: &Result<AttachPlan, Option<PlanError>>) -> Check {
    const ID: &str = "attach_strategy";
    const NAME: &str = "attach strategy";
    let Ok(p) = plan else {
        return Check::new(
            ID,
            NAME,
            State::Info,
            "none (no TTM fault handler to attach to)",
        );
    };
    let module =
        p.fault_handlers.len() + usize::from(p.reserve.is_some()) + usize::from(p.access.is_some());
    let mut entries = module;
    let mut returns = module;
    let trampolines = usize::from(p.trylock.is_some()) + 2 * p.resv_lock.len() + 1;
    let (contention, state) = match &p.contention {
        ContentionSource::Tracepoints => (
            "raw tracepoints lock:contention_begin/end".to_string(),
            State::Ok,
        ),
        ContentionSource::RwsemSlowpath(syms) => {
            entries += syms.len();
            returns += syms.len();
            (format!("kprobes on {}", syms.join(", ")), State::Ok)
        }
        ContentionSource::Unavailable => (
            "unavailable (collateral stalls are not measured)".to_string(),
            State::Warn,
        ),
    };
    Check::new(
        ID,
        NAME,
        state,
        format!(
            "{entries} entry kprobes (perf kprobe PMU); {returns} return probes via tracefs \
             kprobe_events, maxactive {}; {trampolines} fentry/fexit on vmlinux functions \
             (kprobes if the kernel refuses them); contention: {contention}; thread exit: raw \
             tracepoint sched_process_exit",
            f.maxactive
        ),
    )
}

fn kms(f: &Facts) -> Check {
    const ID: &str = "kms_device";
    const NAME: &str = "KMS device";
    if f.kms.is_empty() {
        Check::new(
            ID,
            NAME,
            State::Info,
            "none (only `ttmlat stress` and `ttmlat workload` need one)",
        )
    } else {
        let cards: Vec<String> = f.kms.iter().map(|(c, d)| format!("{c} ({d})")).collect();
        Check::new(ID, NAME, State::Info, cards.join(", "))
    }
}

#[cfg(test)]
mod tests;
