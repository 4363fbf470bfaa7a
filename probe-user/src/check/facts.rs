//! What `ttmlat check` finds out about the machine: every fact gathered (files, and the real
//! probes in `probe`), no judgement. [`super::rules`] turns them into checks.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use probe_common::KernelLayout;

use super::TEST_KPROBE_SYMBOL;
use super::probe::{self, Outcome};
use crate::{
    discovery::SymbolTable,
    kernel_info::{self, KernelConfig, TracepointSource, cap},
};

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
                        symbols: SymbolTable::queried_from_kallsyms(&text),
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

    pub(crate) fn privileged(&self) -> bool {
        self.euid == 0
            || self.caps.is_some_and(|c| {
                (kernel_info::has_cap(c, cap::BPF) && kernel_info::has_cap(c, cap::PERFMON))
                    || kernel_info::has_cap(c, cap::SYS_ADMIN)
            })
    }

    pub(crate) fn confidentiality(&self) -> bool {
        matches!(&self.lockdown, Lockdown::Known { mode, .. } if mode == "confidentiality")
            || self
                .config
                .as_ref()
                .is_some_and(|c| c.enabled("CONFIG_LOCK_DOWN_KERNEL_FORCE_CONFIDENTIALITY"))
    }

    pub(crate) fn has_lock_tracepoints(&self) -> bool {
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
