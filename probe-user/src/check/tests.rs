use std::path::PathBuf;

use super::*;
use crate::discovery::SymbolTable;
use crate::kernel_info::{KernelConfig, TracepointSource, cap};
use probe_common::KernelLayout;

/// The facts of a machine that can trace (like the lab's 6.12 guest).
fn passing() -> Facts {
    let mut symbols = SymbolTable::default();
    for (name, module) in [
        ("ttm_bo_vm_fault", "ttm"),
        ("ttm_bo_vm_reserve", "ttm"),
        ("ttm_bo_vm_access", "ttm"),
        ("ww_mutex_trylock", "vmlinux"),
        ("ww_mutex_lock_interruptible", "vmlinux"),
        ("ww_mutex_lock", "vmlinux"),
        ("up_read", "vmlinux"),
    ] {
        symbols.insert(name, module);
    }
    Facts {
        release: "6.12.117+deb12-amd64".into(),
        euid: 0,
        caps: Some(0x1ff_ffff_ffff),
        config: None,
        lockdown: Lockdown::Known {
            mode: "none".into(),
            via: None,
        },
        bpf_syscall: Outcome::Passed,
        bpf_tracing: Outcome::Passed,
        kprobe_pmu: Some(6),
        kprobe_create: Outcome::Passed,
        tracefs: Tracefs::Mounted {
            root: PathBuf::from("/sys/kernel/tracing"),
            kprobe_events: Some(Outcome::Passed),
        },
        vmlinux_btf: VmlinuxBtf::Layout(Ok(KernelLayout::default())),
        ttm_btf: true,
        ttm_module: Some(TtmModule {
            version: None,
            srcversion: Some("ABC".into()),
            users: vec!["bochs".into(), "drm_ttm_helper".into()],
        }),
        kallsyms: Some(Ok(Kallsyms {
            symbols,
            addresses_hidden: false,
        })),
        tracepoints: Some(vec![
            Tracepoint {
                system: "lock",
                name: "contention_begin",
                found: Some(TracepointSource::Tracefs("/sys/kernel/tracing".into())),
            },
            Tracepoint {
                system: "lock",
                name: "contention_end",
                found: Some(TracepointSource::Tracefs("/sys/kernel/tracing".into())),
            },
            Tracepoint {
                system: "sched",
                name: "sched_process_exit",
                found: Some(TracepointSource::Tracefs("/sys/kernel/tracing".into())),
            },
        ]),
        kms: vec![("card0".into(), "bochs-drm".into())],
        maxactive: DEFAULT_MAXACTIVE,
    }
}

fn eperm(message: &str) -> Outcome {
    Outcome::Failed {
        errno: Some(libc::EPERM),
        message: message.into(),
    }
}

fn line(r: &Report, id: &str) -> String {
    r.get(id).unwrap_or_else(|| panic!("no check {id}")).line()
}

#[test]
fn a_passing_machine_can_run() {
    let r = evaluate(&passing());
    assert!(r.can_run, "{}", r.render_text());
    assert!(r.failing.is_empty());
    assert_eq!(r.summary(), "ttmlat can run here");
    assert_eq!(line(&r, "lockdown"), "[ ok ] kernel lockdown: none");
    assert_eq!(line(&r, "privileges"), "[ ok ] privileges: root");
    assert!(line(&r, "fault_handlers").starts_with(
        "[ ok ] TTM fault handlers: ttm_bo_vm_fault [ttm]; reserve ttm_bo_vm_reserve, \
         access ttm_bo_vm_access, trylock ww_mutex_trylock, waits \
         ww_mutex_lock_interruptible, ww_mutex_lock"
    ));
    assert_eq!(
        line(&r, "tracepoints"),
        "[ ok ] tracepoints: lock:contention_begin, lock:contention_end, \
         sched:sched_process_exit"
    );
    let strategy = line(&r, "attach_strategy");
    assert!(
        strategy.starts_with("[ ok ] attach strategy: 3 entry kprobes")
            && strategy.contains("3 return probes via tracefs kprobe_events, maxactive 1024")
            && strategy.contains("6 fentry/fexit on vmlinux functions")
            && strategy.contains("contention: raw tracepoints lock:contention_begin/end"),
        "{strategy}"
    );
    assert_eq!(
        line(&r, "ttm_loaded"),
        "[ ok ] TTM loaded: ttm (srcversion ABC), used by bochs, drm_ttm_helper"
    );
    assert!(r.plan.is_some());
    // Every line is one line.
    assert!(r.render_text().lines().count() == r.checks.len() + 2);
}

#[test]
fn confidentiality_lockdown_is_the_failing_line() {
    let mut f = passing();
    f.lockdown = Lockdown::Known {
        mode: "confidentiality".into(),
        via: None,
    };
    f.bpf_tracing = Outcome::Failed {
        errno: Some(libc::EINVAL),
        message: "BPF_PROG_LOAD: EINVAL (Invalid argument); verifier: program of this type \
                  cannot use helper bpf_probe_read_kernel#113"
            .into(),
    };
    f.kprobe_create = eperm("perf_event_open(kprobe up_read): EPERM (Operation not permitted)");
    let r = evaluate(&f);
    assert!(!r.can_run);
    assert_eq!(
        line(&r, "lockdown"),
        "[FAIL] kernel lockdown: confidentiality — the kernel refuses BPF tracing and kprobes; \
         boot without lockdown=confidentiality (it cannot be lowered at runtime)"
    );
    assert!(line(&r, "kprobes").ends_with("— confidentiality lockdown forbids it"));
    assert!(line(&r, "bpf_tracing").ends_with("— confidentiality lockdown forbids it"));
    assert_eq!(r.failing, vec!["lockdown", "bpf_tracing", "kprobes"]);
    assert_eq!(
        r.summary(),
        "ttmlat cannot run here: 3 requirements not met (kernel lockdown, BPF kernel reads, \
         kprobes)"
    );
}

#[test]
fn lockdown_modes_and_sources() {
    let mut f = passing();
    f.lockdown = Lockdown::Known {
        mode: "integrity".into(),
        via: Some("securityfs is not mounted; read through a private mount".into()),
    };
    let r = evaluate(&f);
    assert_eq!(
        line(&r, "lockdown"),
        "[ ok ] kernel lockdown: integrity (blocks writing to the kernel; BPF reads and kprobes \
         are allowed) (securityfs is not mounted; read through a private mount)"
    );
    f.lockdown = Lockdown::Unknown {
        why: "no securityfs".into(),
    };
    let r = evaluate(&f);
    assert_eq!(r.get("lockdown").map(|c| c.state), Some(State::Warn));
    assert!(r.can_run);
    // A kernel forced into confidentiality fails even when the file cannot be read.
    f.config = Some(KernelConfig::parse(
        "CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY=y\nCONFIG_KPROBES=y\n",
        PathBuf::from("/proc/config.gz"),
    ));
    let r = evaluate(&f);
    assert_eq!(r.get("lockdown").map(|c| c.state), Some(State::Fail));
    f.lockdown = Lockdown::NotBuilt;
    f.config = None;
    assert_eq!(
        line(&evaluate(&f), "lockdown"),
        "[ ok ] kernel lockdown: none (no lockdown LSM)"
    );
}

/// This host: integrity lockdown, CONFIG_KPROBES off, no DRM, tracefs not mounted.
#[test]
fn a_kernel_without_kprobes_or_drm() {
    let mut f = passing();
    f.config = Some(KernelConfig::parse(
        "# CONFIG_KPROBES is not set\n# CONFIG_DRM is not set\n",
        PathBuf::from("/proc/config.gz"),
    ));
    f.kprobe_pmu = None;
    f.kprobe_create = Outcome::Skipped("no kprobe PMU".into());
    f.tracefs = Tracefs::NotMounted { supported: true };
    f.ttm_module = None;
    f.ttm_btf = false;
    f.kms.clear();
    f.kallsyms = Some(Ok(Kallsyms {
        symbols: SymbolTable::default(),
        addresses_hidden: true,
    }));
    for t in f.tracepoints.iter_mut().flatten() {
        t.found = Some(TracepointSource::Btf);
    }
    let r = evaluate(&f);
    assert_eq!(
        line(&r, "kprobes"),
        "[FAIL] kprobes: CONFIG_KPROBES is not set (/proc/config.gz); no kprobe PMU in \
         /sys/bus/event_source/devices — ttmlat needs a kernel built with CONFIG_KPROBES=y and \
         CONFIG_KPROBE_EVENTS=y"
    );
    assert_eq!(
        line(&r, "tracefs"),
        "[FAIL] tracefs kprobe_events: tracefs is not mounted — return probes (maxactive) are \
         created through it; mount -t tracefs nodev /sys/kernel/tracing"
    );
    assert!(
        line(&r, "ttm_loaded")
            .ends_with("this kernel has no DRM (CONFIG_DRM is not set), so no GPU driver uses TTM"),
    );
    assert_eq!(
        line(&r, "fault_handlers"),
        "[FAIL] TTM fault handlers: none in /proc/kallsyms (kallsyms addresses hidden by \
         kptr_restrict; names suffice) — no TTM fault handler (ttm_bo_vm_fault or a driver's) \
         is loaded"
    );
    assert!(line(&r, "tracepoints").contains("(seen in vmlinux BTF; tracefs events not readable)"));
    assert_eq!(
        r.failing,
        vec!["kprobes", "tracefs", "ttm_loaded", "fault_handlers"]
    );
    assert_eq!(
        line(&r, "attach_strategy"),
        "[info] attach strategy: none (no TTM fault handler to attach to)"
    );
    assert!(r.plan.is_none());
}

#[test]
fn unprivileged_user() {
    let mut f = passing();
    f.euid = 1000;
    f.caps = Some(0);
    f.bpf_syscall = eperm("BPF_PROG_LOAD: EPERM (Operation not permitted)");
    f.tracefs = Tracefs::Mounted {
        root: PathBuf::from("/sys/kernel/tracing"),
        kprobe_events: Some(Outcome::Failed {
            errno: Some(libc::EACCES),
            message: "/sys/kernel/tracing/kprobe_events: EACCES (Permission denied)".into(),
        }),
    };
    let r = evaluate(&f);
    assert_eq!(
        line(&r, "privileges"),
        "[FAIL] privileges: euid 1000 without CAP_BPF+CAP_PERFMON — run ttmlat as root (sudo) \
         or with CAP_BPF+CAP_PERFMON"
    );
    assert!(
        line(&r, "bpf_syscall")
            .ends_with("— run ttmlat as root (sudo) or with CAP_BPF+CAP_PERFMON")
    );
    assert!(line(&r, "tracefs").contains("EACCES"));
    // CAP_BPF+CAP_PERFMON without root is enough for the BPF part.
    f.caps = Some((1 << cap::BPF) | (1 << cap::PERFMON));
    assert_eq!(
        line(&evaluate(&f), "privileges"),
        "[ ok ] privileges: CAP_BPF+CAP_PERFMON (euid 1000)"
    );
}

#[test]
fn missing_btf_field_is_named() {
    let mut f = passing();
    f.vmlinux_btf = VmlinuxBtf::Layout(Err(
        "unknown kernel layout: struct `mm_struct` has no member `mmap_lock` in vmlinux BTF \
         (tried: mmap_lock, mmap_sem)"
            .into(),
    ));
    let r = evaluate(&f);
    assert!(line(&r, "vmlinux_btf").starts_with(
        "[FAIL] vmlinux BTF: unknown kernel layout: struct `mm_struct` has no member `mmap_lock`"
    ));
    f.vmlinux_btf = VmlinuxBtf::Missing;
    assert!(line(&evaluate(&f), "vmlinux_btf").contains("CONFIG_DEBUG_INFO_BTF=y"));
}

#[test]
fn old_kernel_without_contention_tracepoints_falls_back() {
    let mut f = passing();
    if let Some(Ok(k)) = &mut f.kallsyms {
        k.symbols.insert("rwsem_down_read_slowpath", "vmlinux");
        k.symbols.insert("rwsem_down_write_slowpath", "vmlinux");
    }
    for t in f.tracepoints.iter_mut().flatten() {
        if t.system == "lock" {
            t.found = None;
        }
    }
    let r = evaluate(&f);
    assert!(r.can_run);
    assert_eq!(r.get("tracepoints").map(|c| c.state), Some(State::Warn));
    assert!(
        line(&r, "attach_strategy")
            .contains("contention: kprobes on rwsem_down_read_slowpath, rwsem_down_write_slowpath")
    );
    // Without sched_process_exit ttmlat cannot run, unless exit_files takes a kprobe.
    for t in f.tracepoints.iter_mut().flatten() {
        if t.system == "sched" {
            t.found = None;
        }
    }
    assert!(!evaluate(&f).can_run);
    if let Some(Ok(k)) = &mut f.kallsyms {
        k.symbols.insert("exit_files", "vmlinux");
    }
    let r = evaluate(&f);
    assert!(r.can_run, "{:?}", r.failing);
    assert!(line(&r, "attach_strategy").contains("thread exit: kprobe on exit_files"));
}

#[test]
fn json_names_every_check() {
    let r = evaluate(&passing());
    let v: serde_json::Value = serde_json::to_value(&r).expect("json");
    assert_eq!(v["can_run"], true);
    assert_eq!(v["checks"][0]["id"], "privileges");
    assert_eq!(v["checks"][0]["state"], "ok");
    assert!(v["checks"][0].get("hint").is_none());
    assert_eq!(v["plan"]["fault_handlers"][0][0], "ttm_bo_vm_fault");
}

#[test]
fn kallsyms_hidden_addresses() {
    assert!(kallsyms_addresses_hidden(
        "0000000000000000 T _stext\n0000000000000000 t ttm_bo_vm_fault\t[ttm]\n"
    ));
    assert!(!kallsyms_addresses_hidden(
        "ffffffff81000000 T _stext\n0000000000000000 t ttm_bo_vm_fault\t[ttm]\n"
    ));
    assert!(!kallsyms_addresses_hidden(""));
}

#[test]
fn preflight_depth_leaves_out_what_it_did_not_read() {
    let mut f = passing();
    f.kallsyms = None;
    f.tracepoints = None;
    f.vmlinux_btf = VmlinuxBtf::Present;
    let r = evaluate(&f);
    assert!(r.can_run);
    for id in ["fault_handlers", "tracepoints", "attach_strategy"] {
        assert!(r.get(id).is_none(), "{id}");
    }
    assert_eq!(
        line(&r, "vmlinux_btf"),
        "[ ok ] vmlinux BTF: /sys/kernel/btf/vmlinux (layout not resolved yet)"
    );
    assert!(r.plan.is_none());
    // TTM's absence is still caught.
    f.ttm_module = None;
    assert_eq!(evaluate(&f).failing, vec!["ttm_loaded"]);
}
