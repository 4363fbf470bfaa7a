//! The rules of `ttmlat check`: one pure function per requirement, from [`Facts`] to a
//! [`Check`] with its message and hint (unit tested in `tests.rs`).

use std::fmt::Write as _;

use super::facts::*;
use super::probe::Outcome;
use super::{Check, State, TEST_KPROBE_SYMBOL};
use crate::discovery::{AttachPlan, ContentionSource, PlanError};
use crate::kernel_info::{self, TracepointSource, cap};

pub(super) const ROOT_HINT: &str = "run ttmlat as root (sudo) or with CAP_BPF+CAP_PERFMON";
pub(super) const LOCKDOWN_HINT: &str = "confidentiality lockdown forbids it";

/// The usual reason an operation was refused, for a hint.
pub(super) fn refusal_hint(f: &Facts, errno: Option<i32>) -> Option<&'static str> {
    if f.confidentiality() {
        Some(LOCKDOWN_HINT)
    } else if matches!(errno, Some(libc::EPERM | libc::EACCES)) && !f.privileged() {
        Some(ROOT_HINT)
    } else {
        None
    }
}

pub(super) fn outcome_detail(o: &Outcome) -> String {
    match o {
        Outcome::Passed => "works".into(),
        Outcome::Failed { message, .. } => message.clone(),
        Outcome::Skipped(why) => format!("not tried: {why}"),
    }
}

pub(super) fn privileges(f: &Facts) -> Check {
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

pub(super) fn lockdown(f: &Facts) -> Check {
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

pub(super) fn bpf_syscall(f: &Facts) -> Check {
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

pub(super) fn bpf_tracing(f: &Facts) -> Check {
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

pub(super) fn kprobes(f: &Facts) -> Check {
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

pub(super) fn tracefs(f: &Facts) -> Check {
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

pub(super) fn vmlinux_btf(f: &Facts) -> Check {
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

pub(super) fn ttm_btf(f: &Facts) -> Check {
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

pub(super) fn ttm_loaded(f: &Facts) -> Check {
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

pub(super) fn handlers(f: &Facts, plan: &Result<AttachPlan, Option<PlanError>>) -> Check {
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

/// `exit_kprobe`: the plan ends thread state with a kprobe (exit_files), so a missing
/// `sched_process_exit` is not needed.
pub(super) fn tracepoints(tps: &[Tracepoint], exit_kprobe: bool) -> Check {
    const ID: &str = "tracepoints";
    const NAME: &str = "tracepoints";
    let label = |t: &Tracepoint| format!("{}:{}", t.system, t.name);
    let found: Vec<String> = tps
        .iter()
        .filter(|t| t.found.is_some())
        .map(label)
        .collect();
    let missing: Vec<&Tracepoint> = tps
        .iter()
        .filter(|t| t.found.is_none() && !(exit_kprobe && t.system == "sched"))
        .collect();
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

pub(super) fn strategy(f: &Facts, plan: &Result<AttachPlan, Option<PlanError>>) -> Check {
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
             (kprobes if the kernel refuses them); contention: {contention}; thread exit: {}",
            f.maxactive,
            match &p.thread_exit {
                Some(sym) => format!("kprobe on {sym}"),
                None => "raw tracepoint sched_process_exit".to_string(),
            }
        ),
    )
}

pub(super) fn kms(f: &Facts) -> Check {
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
