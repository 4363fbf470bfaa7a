//! Which kernel functions and tracepoints to attach to, on this kernel. Every kernel-version
//! difference ttmlat knows about lives in this module; the rest of the tool asks the plan.
//!
//! Pure: [`plan`] takes the symbol table and tracepoint list and returns an [`AttachPlan`], so
//! it is unit tested against real symbol lists of Debian kernels (tests/data/symbols).

use std::collections::{BTreeMap, BTreeSet};

/// Function symbols of the running kernel (from /proc/kallsyms), by name.
#[derive(Clone, Debug, Default)]
pub struct SymbolTable {
    by_name: BTreeMap<String, BTreeSet<String>>,
}

impl SymbolTable {
    /// The symbols of `/proc/kallsyms` text that [`plan`] asks about ([`is_queried`]): the
    /// full table of a distribution kernel is ~170,000 text symbols, and building it was most
    /// of the second it took to read kallsyms under emulation.
    pub fn queried_from_kallsyms(text: &str) -> Self {
        Self::from_kallsyms_where(text, is_queried)
    }

    /// Parses `/proc/kallsyms` text ("addr type name [module]"); keeps text symbols only.
    #[cfg(test)]
    pub fn from_kallsyms(text: &str) -> Self {
        Self::from_kallsyms_where(text, |_| true)
    }

    fn from_kallsyms_where(text: &str, keep: impl Fn(&str) -> bool) -> Self {
        let mut table = Self::default();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(_addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
                continue;
            };
            if !matches!(kind, "t" | "T") || !keep(name) {
                continue;
            }
            let module = it
                .next()
                .map(|m| m.trim_start_matches('[').trim_end_matches(']'))
                .unwrap_or("vmlinux");
            table.insert(name, module);
        }
        table
    }

    pub fn insert(&mut self, name: &str, module: &str) {
        // Compiler clones (foo.isra.0, foo.constprop.0) are not the function itself.
        if name.contains('.') {
            return;
        }
        self.by_name
            .entry(name.to_string())
            .or_default()
            .insert(module.to_string());
    }

    pub fn module_of(&self, name: &str) -> Option<&str> {
        self.by_name
            .get(name)
            .and_then(|m| m.iter().next())
            .map(String::as_str)
    }
}

/// A known TTM fault entry point: the handler and the driver it belongs to.
struct FaultHandler {
    symbol: &'static str,
    /// Kernel versions where it exists and what it does.
    note: &'static str,
}

/// Fault handlers that start an attempt. `ttm_bo_vm_fault` is the generic one (qxl,
/// drm_gem_vram_helper users such as bochs, ast, hibmc); the others are drivers' own handlers
/// that call `ttm_bo_vm_reserve` themselves.
const FAULT_HANDLERS: &[FaultHandler] = &[
    FaultHandler {
        symbol: "ttm_bo_vm_fault",
        note: "ttm 5.4+ (static before 5.5); qxl, drm_vram_helper (bochs ≤6.12, ast, hibmc)",
    },
    FaultHandler {
        symbol: "amdgpu_gem_fault",
        note: "amdgpu 5.10+",
    },
    FaultHandler {
        symbol: "radeon_gem_fault",
        note: "radeon 5.12+",
    },
    FaultHandler {
        symbol: "radeon_ttm_fault",
        note: "radeon ≤5.11",
    },
    FaultHandler {
        symbol: "nouveau_ttm_fault",
        note: "nouveau 5.10+",
    },
    FaultHandler {
        symbol: "vmw_bo_vm_fault",
        note: "vmwgfx 5.10+",
    },
    FaultHandler {
        symbol: "vmw_bo_vm_mkwrite",
        note: "vmwgfx 5.10+ (page_mkwrite)",
    },
    FaultHandler {
        symbol: "vmw_bo_vm_huge_fault",
        note: "vmwgfx 5.10–6.7",
    },
    FaultHandler {
        symbol: "vm_fault_ttm",
        note: "i915 6.1+ (TTM backend, discrete GPUs)",
    },
    FaultHandler {
        symbol: "xe_gem_fault",
        note: "xe 6.8–6.17 (calls ttm_bo_vm_reserve)",
    },
    FaultHandler {
        symbol: "xe_bo_cpu_fault",
        note: "xe 6.18+: its own trylock (xe_bo_cpu_fault_fastpath), mmap_lock drop and \
               drm_exec wait; no ttm_bo_vm_reserve",
    },
];

/// Probe attach points chosen for this kernel.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttachPlan {
    /// (symbol, module) of every fault handler to hook (entry + return).
    pub fault_handlers: Vec<(String, String)>,
    /// `ttm_bo_vm_reserve` if present (5.5+).
    pub reserve: Option<String>,
    /// `ttm_bo_vm_access` (5.5–6.18) or `ttm_bo_access` (6.19+).
    pub access: Option<String>,
    /// `ww_mutex_trylock` when out of line (5.16+).
    pub trylock: Option<String>,
    /// Reservation waits: `ww_mutex_lock_interruptible`, `ww_mutex_lock`.
    pub resv_lock: Vec<String>,
    /// `up_read`: observes the mmap_lock drop.
    pub read_unlock: String,
    /// How collateral stalls on mmap_lock are seen.
    pub contention: ContentionSource,
    /// The vmlinux function whose entry ends a thread's state (kprobe): `exit_files`, called
    /// by `do_exit` after `exit_mm` on every kernel 5.10–7.2, so the thread's last mmap_lock
    /// wait is over. A kprobe program runs with preemption off, so it cannot be skipped the
    /// way the `sched_process_exit` raw-tracepoint program was on 7.2 under process churn
    /// (preempted while running, the kernel skips its next run on that CPU). `None`: that
    /// raw tracepoint.
    #[serde(default)]
    pub thread_exit: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ContentionSource {
    /// lock:contention_begin / contention_end (5.19+), raw tracepoints.
    Tracepoints,
    /// kprobes on the rwsem slowpaths (older kernels).
    RwsemSlowpath(Vec<String>),
    /// Neither: collateral stalls are not measured (said in every report).
    Unavailable,
}

impl ContentionSource {
    /// As recordings store it (`meta.contention_source`).
    pub fn describe(&self) -> String {
        match self {
            ContentionSource::Tracepoints => "tracepoints lock:contention_begin/end".to_string(),
            ContentionSource::RwsemSlowpath(syms) => format!("kprobes on {}", syms.join(", ")),
            ContentionSource::Unavailable => "unavailable".to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error(
        "TTM is not loaded: no TTM fault handler (ttm_bo_vm_fault or a driver handler) in \
         /proc/kallsyms. Load your GPU driver (e.g. `modprobe amdgpu`) and retry"
    )]
    NoTtm,
    #[error("kernel function `{0}` not found: this kernel is not supported ({1})")]
    Missing(&'static str, &'static str),
}

/// The reservation waits, in order of preference.
const RESV_LOCKS: [&str; 2] = ["ww_mutex_lock_interruptible", "ww_mutex_lock"];
/// `mmap_read_unlock` ends here.
const READ_UNLOCK: &str = "up_read";
/// Collateral stalls before `lock:contention_*` (5.19).
const RWSEM_SLOWPATHS: [&str; 2] = ["rwsem_down_read_slowpath", "rwsem_down_write_slowpath"];
const RESERVE: [&str; 1] = ["ttm_bo_vm_reserve"];
/// `ttm_bo_vm_access` (5.5–6.18), `ttm_bo_access` (6.19+).
const ACCESS: [&str; 2] = ["ttm_bo_vm_access", "ttm_bo_access"];
/// Out of line since 5.16.
const TRYLOCK: [&str; 1] = ["ww_mutex_trylock"];
const THREAD_EXIT: &str = "exit_files";

/// Whether [`plan`] asks the symbol table about `name`.
pub fn is_queried(name: &str) -> bool {
    FAULT_HANDLERS.iter().any(|h| h.symbol == name)
        || RESV_LOCKS.contains(&name)
        || RWSEM_SLOWPATHS.contains(&name)
        || RESERVE.contains(&name)
        || ACCESS.contains(&name)
        || TRYLOCK.contains(&name)
        || name == READ_UNLOCK
        || name == THREAD_EXIT
}

/// Chooses the attach points from the symbols and tracepoints this kernel has.
pub fn plan(symbols: &SymbolTable, has_lock_tracepoints: bool) -> Result<AttachPlan, PlanError> {
    let fault_handlers: Vec<(String, String)> = FAULT_HANDLERS
        .iter()
        .filter_map(|h| {
            symbols
                .module_of(h.symbol)
                .map(|m| (h.symbol.to_string(), m.to_string()))
        })
        .collect();
    if fault_handlers.is_empty() {
        return Err(PlanError::NoTtm);
    }
    let has = |name: &str| symbols.module_of(name).is_some();
    let first = |names: &[&str]| names.iter().find(|n| has(n)).map(|n| n.to_string());
    let resv_lock: Vec<String> = RESV_LOCKS
        .iter()
        .filter(|n| has(n))
        .map(|n| n.to_string())
        .collect();
    if resv_lock.is_empty() {
        return Err(PlanError::Missing(
            RESV_LOCKS[0],
            "reservation waits cannot be timed",
        ));
    }
    if !has(READ_UNLOCK) {
        return Err(PlanError::Missing(
            READ_UNLOCK,
            "the mmap_lock drop cannot be observed",
        ));
    }
    let contention = if has_lock_tracepoints {
        ContentionSource::Tracepoints
    } else {
        let slow: Vec<String> = RWSEM_SLOWPATHS
            .iter()
            .filter(|n| has(n))
            .map(|n| n.to_string())
            .collect();
        if slow.is_empty() {
            ContentionSource::Unavailable
        } else {
            ContentionSource::RwsemSlowpath(slow)
        }
    };
    Ok(AttachPlan {
        fault_handlers,
        reserve: first(&RESERVE),
        access: first(&ACCESS),
        trylock: first(&TRYLOCK),
        resv_lock,
        read_unlock: READ_UNLOCK.into(),
        contention,
        thread_exit: symbols
            .module_of(THREAD_EXIT)
            .filter(|m| *m == "vmlinux")
            .map(|_| THREAD_EXIT.to_string()),
    })
}

impl AttachPlan {
    /// The modules the fault handlers are in, each once (`""` for a handler in vmlinux).
    pub fn handler_modules(&self) -> Vec<&str> {
        let mut m: Vec<&str> = self
            .fault_handlers
            .iter()
            .map(|(_, m)| m.as_str())
            .collect();
        m.sort_unstable();
        m.dedup();
        m
    }

    /// Human-readable notes of the handlers in the plan.
    pub fn handler_notes(&self) -> Vec<String> {
        self.fault_handlers
            .iter()
            .map(|(sym, module)| {
                let note = FAULT_HANDLERS
                    .iter()
                    .find(|h| h.symbol == sym)
                    .map(|h| h.note)
                    .unwrap_or("");
                format!("{sym} [{module}]: {note}")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(&str, &str)]) -> SymbolTable {
        let mut t = SymbolTable::default();
        for (n, m) in entries {
            t.insert(n, m);
        }
        t
    }

    #[test]
    fn parses_kallsyms_lines() {
        let t = SymbolTable::from_kallsyms(
            "ffffffff81000000 T _stext\n\
             ffffffffc0a01230 t ttm_bo_vm_fault\t[ttm]\n\
             ffffffffc0a01330 T ttm_bo_vm_reserve\t[ttm]\n\
             ffffffffc0a01430 d some_data\t[ttm]\n\
             ffffffffc0a01530 t foo.isra.0\t[ttm]\n\
             garbage\n",
        );
        assert_eq!(t.module_of("ttm_bo_vm_fault"), Some("ttm"));
        assert_eq!(t.module_of("_stext"), Some("vmlinux"));
        assert_eq!(t.module_of("some_data"), None);
        assert_eq!(t.module_of("foo.isra.0"), None);
    }

    #[test]
    fn the_queried_symbols_give_the_same_plan_as_the_whole_table() {
        let drivers = [
            "vmlinux",
            "ttm",
            "drm_vram_helper",
            "bochs",
            "amdgpu",
            "radeon",
            "nouveau",
            "i915",
            "vmwgfx",
            "qxl",
            "xe",
        ];
        for (release, modules) in [
            ("6.1.0-56-amd64", &drivers[..10]),
            ("6.12.117+deb12-amd64", &drivers[..10]),
            ("7.2.13+deb14-amd64", &drivers[..]),
        ] {
            let full = debian(release, modules);
            let mut some = SymbolTable::default();
            for (name, mods) in &full.by_name {
                if is_queried(name) {
                    for m in mods {
                        some.insert(name, m);
                    }
                }
            }
            assert!(some.by_name.len() < full.by_name.len() / 100, "{release}");
            assert_eq!(plan(&some, true), plan(&full, true), "{release}");
            assert_eq!(plan(&some, false), plan(&full, false), "{release}");
        }
        let text = "ffffffff81000000 T up_read\nffffffff81000010 T _stext\n";
        let t = SymbolTable::queried_from_kallsyms(text);
        assert_eq!(t.module_of("up_read"), Some("vmlinux"));
        assert_eq!(t.module_of("_stext"), None);
    }

    #[test]
    fn no_ttm_is_a_clear_error() {
        let t = table(&[("up_read", "vmlinux"), ("ww_mutex_lock", "vmlinux")]);
        assert_eq!(plan(&t, true), Err(PlanError::NoTtm));
        assert!(PlanError::NoTtm.to_string().contains("TTM is not loaded"));
    }

    /// Symbol lists of Debian's own kernels (scripts/extract-symbols.sh): vmlinux from the
    /// lab guest's /proc/kallsyms, modules from nm on the packaged .ko files.
    fn debian(release: &str, modules: &[&str]) -> SymbolTable {
        use std::io::Read;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/symbols")
            .join(release);
        let mut t = SymbolTable::default();
        for m in modules {
            let path = dir.join(format!("{m}.gz"));
            let file = std::fs::File::open(&path)
                .unwrap_or_else(|e| panic!("test data {}: {e}", path.display()));
            let mut text = String::new();
            flate2::read::GzDecoder::new(file)
                .read_to_string(&mut text)
                .unwrap_or_else(|e| panic!("test data {}: {e}", path.display()));
            for name in text.lines() {
                t.insert(name, m);
            }
        }
        t
    }

    const DEBIAN_6_1: &str = "6.1.0-56-amd64";
    const DEBIAN_6_12: &str = "6.12.117+deb12-amd64";
    const DEBIAN_7_2: &str = "7.2.13+deb14-amd64";

    fn handlers(p: &AttachPlan) -> Vec<String> {
        p.fault_handlers
            .iter()
            .map(|(s, m)| format!("{s}@{m}"))
            .collect()
    }

    #[test]
    fn debian_kernels_each_driver() {
        let cases: &[(&str, &str, &[&str])] = &[
            ("amdgpu", DEBIAN_6_1, &["amdgpu_gem_fault@amdgpu"]),
            ("radeon", DEBIAN_6_1, &["radeon_gem_fault@radeon"]),
            ("nouveau", DEBIAN_6_1, &["nouveau_ttm_fault@nouveau"]),
            (
                "vmwgfx",
                DEBIAN_6_1,
                &["vmw_bo_vm_fault@vmwgfx", "vmw_bo_vm_mkwrite@vmwgfx"],
            ),
            ("i915", DEBIAN_6_1, &["vm_fault_ttm@i915"]),
            ("qxl", DEBIAN_6_1, &[]),
            ("drm_vram_helper", DEBIAN_6_1, &[]),
            ("bochs", DEBIAN_6_1, &[]),
            ("amdgpu", DEBIAN_6_12, &["amdgpu_gem_fault@amdgpu"]),
            ("radeon", DEBIAN_6_12, &["radeon_gem_fault@radeon"]),
            ("nouveau", DEBIAN_6_12, &["nouveau_ttm_fault@nouveau"]),
            (
                "vmwgfx",
                DEBIAN_6_12,
                &["vmw_bo_vm_fault@vmwgfx", "vmw_bo_vm_mkwrite@vmwgfx"],
            ),
            ("i915", DEBIAN_6_12, &["vm_fault_ttm@i915"]),
            ("xe", DEBIAN_6_12, &["xe_gem_fault@xe"]),
            ("qxl", DEBIAN_6_12, &[]),
            ("drm_vram_helper", DEBIAN_6_12, &[]),
            ("bochs", DEBIAN_6_12, &[]),
        ];
        for (driver, release, own) in cases {
            let t = debian(release, &["vmlinux", "ttm", driver]);
            let p = plan(&t, true).unwrap_or_else(|e| panic!("{driver} {release}: {e}"));
            let mut want = vec!["ttm_bo_vm_fault@ttm".to_string()];
            want.extend(own.iter().map(|s| s.to_string()));
            assert_eq!(handlers(&p), want, "{driver} on {release}");
            assert_eq!(p.reserve.as_deref(), Some("ttm_bo_vm_reserve"));
            assert_eq!(p.access.as_deref(), Some("ttm_bo_vm_access"));
            // 5.16+: the trylock is a real function on both.
            assert_eq!(p.trylock.as_deref(), Some("ww_mutex_trylock"));
            assert_eq!(p.thread_exit.as_deref(), Some("exit_files"));
            assert_eq!(
                p.resv_lock,
                vec![
                    "ww_mutex_lock_interruptible".to_string(),
                    "ww_mutex_lock".to_string()
                ]
            );
        }
    }

    /// Debian unstable's 7.2.13 (the lab's `newest`): xe has its own handler and no longer
    /// calls ttm_bo_vm_reserve (6.18+), bochs left TTM (6.13), ttm_bo_access exists beside
    /// ttm_bo_vm_access.
    #[test]
    fn debian_7_2_each_driver() {
        let cases: &[(&str, &[&str])] = &[
            ("amdgpu", &["amdgpu_gem_fault@amdgpu"]),
            ("radeon", &["radeon_gem_fault@radeon"]),
            ("nouveau", &["nouveau_ttm_fault@nouveau"]),
            (
                "vmwgfx",
                &["vmw_bo_vm_fault@vmwgfx", "vmw_bo_vm_mkwrite@vmwgfx"],
            ),
            ("i915", &["vm_fault_ttm@i915"]),
            ("xe", &["xe_bo_cpu_fault@xe"]),
            ("qxl", &[]),
            ("drm_vram_helper", &[]),
        ];
        for (driver, own) in cases {
            let t = debian(DEBIAN_7_2, &["vmlinux", "ttm", driver]);
            let p = plan(&t, true).unwrap_or_else(|e| panic!("{driver}: {e}"));
            let mut want = vec!["ttm_bo_vm_fault@ttm".to_string()];
            want.extend(own.iter().map(|s| s.to_string()));
            assert_eq!(handlers(&p), want, "{driver} on 7.2");
            assert_eq!(p.reserve.as_deref(), Some("ttm_bo_vm_reserve"));
            assert_eq!(p.access.as_deref(), Some("ttm_bo_vm_access"));
            assert_eq!(p.trylock.as_deref(), Some("ww_mutex_trylock"));
            assert_eq!(p.thread_exit.as_deref(), Some("exit_files"));
        }
        let xe = debian(DEBIAN_7_2, &["xe"]);
        assert!(
            xe.module_of("xe_gem_fault").is_none(),
            "xe_gem_fault is gone in 7.2"
        );
        assert!(xe.module_of("xe_bo_cpu_fault_fastpath").is_some());
        let bochs = debian(DEBIAN_7_2, &["vmlinux", "bochs"]);
        assert_eq!(plan(&bochs, true), Err(PlanError::NoTtm), "bochs left TTM");
    }

    #[test]
    fn debian_kernel_without_a_gpu_driver_loaded_has_no_ttm() {
        let t = debian(DEBIAN_6_12, &["vmlinux"]);
        assert_eq!(plan(&t, true), Err(PlanError::NoTtm));
    }

    #[test]
    fn debian_vmlinux_has_the_rwsem_slowpaths_for_older_fallback() {
        for release in [DEBIAN_6_1, DEBIAN_6_12] {
            let t = debian(release, &["vmlinux", "ttm"]);
            let p = plan(&t, false).expect("plan");
            assert!(
                matches!(p.contention, ContentionSource::RwsemSlowpath(ref v) if v.len() == 2),
                "{release}: {:?}",
                p.contention
            );
        }
    }

    #[test]
    fn older_kernel_falls_back_to_rwsem_slowpath() {
        let t = table(&[
            ("ttm_bo_vm_fault", "ttm"),
            ("ww_mutex_lock_interruptible", "vmlinux"),
            ("up_read", "vmlinux"),
            ("rwsem_down_read_slowpath", "vmlinux"),
            ("rwsem_down_write_slowpath", "vmlinux"),
        ]);
        let p = plan(&t, false).expect("plan");
        assert_eq!(p.reserve, None);
        assert_eq!(p.trylock, None);
        assert_eq!(
            p.contention,
            ContentionSource::RwsemSlowpath(vec![
                "rwsem_down_read_slowpath".into(),
                "rwsem_down_write_slowpath".into()
            ])
        );
    }
}
