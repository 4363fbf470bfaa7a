//! Call-site hooks: instead of programs on system-wide kernel functions (`up_read`,
//! `ww_mutex_trylock`, `ww_mutex_lock_interruptible`, which fire for every page fault and every
//! reservation of the machine), kprobes on the *call instructions* inside TTM's own functions
//! that reach them, and on the instructions right after (where the return value is in `rax`).
//! A program there runs only when a TTM fault executes that very call, so nothing of ttmlat's
//! runs for work that is not a TTM fault, and every fact is still observed (the call was
//! executed, with these arguments, and returned this).
//!
//! The sites are found in the module's own ELF file: a `R_X86_64_PLT32`/`PC32` relocation
//! against the callee inside the probed function, preceded by the `call rel32` opcode. The
//! file must be the one that is loaded: its GNU build id is compared with
//! `/sys/module/<name>/notes/.note.gnu.build-id`, so a rebuilt or out-of-tree module (the
//! lab's blocking-variant `ttm.ko`) is never probed at offsets of another build.
//!
//! Pure parts ([`scan`], [`parse_build_id_note`]) are unit tested on the Debian modules the
//! lab boots; [`plan`] reads files.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget};
use serde::{Deserialize, Serialize};

use crate::{branch, discovery::AttachPlan};

/// What a site observes; each role has its own eBPF program (`probe-ebpf` `site_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteRole {
    /// After `call ww_mutex_trylock` in `ttm_bo_vm_reserve`: `rax` is the trylock result
    /// (`dma_resv_trylock`), and reserve was called in this attempt. Used where the test of
    /// the result is not decoded (`branch`); otherwise the two roles below.
    TrylockReturn,
    /// The first instruction of the path the code takes when the trylock returned non-zero
    /// (acquired), and reserve was called. A kprobe the kernel can optimize into a jump.
    TrylockAcquired,
    /// The first instruction of the path taken when it returned zero (contended).
    TrylockFailed,
    /// `call up_read` in `ttm_bo_vm_reserve` (`mmap_read_unlock` before the wait): `rdi` is
    /// the semaphore.
    UnlockInReserve,
    /// `call up_read` in a fault handler outside reserve (`ttm_bo_vm_fault_reserved`'s fence
    /// wait).
    UnlockInHandler,
    /// `call ww_mutex_lock_interruptible` / `ww_mutex_lock` in reserve or in the access
    /// function: the reservation wait begins; `rdi` is the ww_mutex.
    LockCall,
    /// The instruction after such a call: the wait ended; `rax` is its result.
    LockReturn,
    /// `call drm_exec_lock_obj(exec, obj)` in xe's `xe_bo_cpu_fault` (6.18+): the
    /// reservation wait begins; `rsi` is the GEM object, whose `resv` is the ww_mutex.
    ExecLockCall,
}

impl SiteRole {
    /// The eBPF program of this role.
    pub fn program(self) -> &'static str {
        match self {
            SiteRole::TrylockReturn => "site_trylock_ret",
            SiteRole::TrylockAcquired => "site_trylock_acquired",
            SiteRole::TrylockFailed => "site_trylock_failed",
            SiteRole::UnlockInReserve => "site_unlock_in_reserve",
            SiteRole::UnlockInHandler => "site_unlock_in_handler",
            SiteRole::LockCall => "site_lock_call",
            SiteRole::LockReturn => "site_lock_ret",
            SiteRole::ExecLockCall => "site_exec_lock_call",
        }
    }
}

/// What a probed module function is, for choosing the roles of its call sites.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FunctionKind {
    /// `ttm_bo_vm_reserve` (5.5+): trylock, mmap_lock drop, reservation waits.
    Reserve,
    /// A fault handler or `ttm_bo_vm_fault_reserved`: an mmap_lock drop here is a fence wait.
    Handler,
    /// `ttm_bo_vm_access` / `ttm_bo_access` (6.14+): reservation taken with mmap_lock held.
    Access,
    /// xe's `xe_bo_cpu_fault` (6.18+): the mmap_lock drop before the wait and the drm_exec
    /// reservation wait, the roles `ttm_bo_vm_reserve` has for the other drivers.
    XeFault,
    /// xe's `xe_bo_cpu_fault_fastpath` (6.18+): the trylock of the reservation.
    XeFastpath,
}

/// The callees whose call sites are probed.
const UP_READ: &str = "up_read";
const TRYLOCK: &str = "ww_mutex_trylock";
const LOCKS: [&str; 2] = ["ww_mutex_lock_interruptible", "ww_mutex_lock"];
const EXEC_LOCK: &str = "drm_exec_lock_obj";

fn probed_callee(callee: &str) -> bool {
    callee == UP_READ || callee == TRYLOCK || callee == EXEC_LOCK || LOCKS.contains(&callee)
}

fn roles(kind: FunctionKind, callee: &str) -> &'static [SiteRole] {
    use SiteRole::*;
    match (kind, callee) {
        (FunctionKind::Reserve, UP_READ) => &[UnlockInReserve],
        (FunctionKind::Handler | FunctionKind::Access, UP_READ) => &[UnlockInHandler],
        (FunctionKind::Reserve, TRYLOCK) => &[TrylockReturn],
        (FunctionKind::Reserve | FunctionKind::Access, c) if LOCKS.contains(&c) => {
            &[LockCall, LockReturn]
        }
        (FunctionKind::XeFault, UP_READ) => &[UnlockInReserve],
        (FunctionKind::XeFault, EXEC_LOCK) => &[ExecLockCall, LockReturn],
        (FunctionKind::XeFault | FunctionKind::XeFastpath, TRYLOCK) => &[TrylockReturn],
        _ => &[],
    }
}

/// One kprobe: `function+offset` (the symbol as in /proc/kallsyms, `.cold` parts included).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Site {
    pub function: String,
    pub offset: u64,
    pub callee: String,
    pub role: SiteRole,
}

/// `call rel32`.
const CALL_REL32: u8 = 0xe8;
const R_X86_64_PC32: u32 = 2;
const R_X86_64_PLT32: u32 = 4;

/// The call sites in `elf` (a relocatable `.ko`, uncompressed) of the callees above, inside
/// the functions named in `functions` (and their `.cold` parts).
pub fn scan(elf: &[u8], functions: &BTreeMap<String, FunctionKind>) -> Result<Vec<Site>> {
    let file = object::File::parse(elf).context("not an ELF object")?;
    anyhow::ensure!(
        file.architecture() == object::Architecture::X86_64,
        "call-site hooks are implemented for x86-64 only (this module is {:?})",
        file.architecture()
    );
    // Function symbols of interest, by section: (start, end, name, kind).
    let mut by_section: BTreeMap<usize, Vec<(u64, u64, String, FunctionKind)>> = BTreeMap::new();
    for sym in file.symbols() {
        if sym.kind() != object::SymbolKind::Text {
            continue;
        }
        let (Ok(name), Some(section)) = (sym.name(), sym.section_index()) else {
            continue;
        };
        let base = name.strip_suffix(".cold").unwrap_or(name);
        if let Some(kind) = functions.get(base) {
            by_section.entry(section.0).or_default().push((
                sym.address(),
                sym.address() + sym.size(),
                name.to_string(),
                *kind,
            ));
        }
    }
    let mut sites = Vec::new();
    for section in file.sections() {
        let Some(funcs) = by_section.get(&section.index().0) else {
            continue;
        };
        let data = section
            .data()
            .with_context(|| format!("reading section {}", section.name().unwrap_or("?")))?;
        let relocated: BTreeSet<u64> = section.relocations().map(|(at, _)| at).collect();
        for (at, reloc) in section.relocations() {
            let RelocationFlags::Elf { r_type } = reloc.flags() else {
                continue;
            };
            if r_type != R_X86_64_PLT32 && r_type != R_X86_64_PC32 {
                continue;
            }
            let RelocationTarget::Symbol(idx) = reloc.target() else {
                continue;
            };
            let Ok(callee) = file.symbol_by_index(idx).and_then(|s| s.name()) else {
                continue;
            };
            if !probed_callee(callee) {
                continue;
            }
            let Some(insn) = at.checked_sub(1) else {
                continue;
            };
            if data.get(insn as usize) != Some(&CALL_REL32) {
                // A tail call (jmp) or a data reference: not a call whose return we can see.
                continue;
            }
            let Some((start, end, name, kind)) =
                funcs.iter().find(|(s, e, _, _)| insn >= *s && insn < *e)
            else {
                continue;
            };
            let mut site = |offset: u64, role: SiteRole| {
                sites.push(Site {
                    function: name.clone(),
                    offset,
                    callee: callee.to_string(),
                    role,
                })
            };
            for role in roles(*kind, callee) {
                if *role == SiteRole::TrylockReturn
                    && let Some(paths) =
                        branch::after_test(data, at + 4, (*start, *end), &relocated)
                {
                    site(paths.nonzero - start, SiteRole::TrylockAcquired);
                    site(paths.zero - start, SiteRole::TrylockFailed);
                    continue;
                }
                let offset = match role {
                    SiteRole::TrylockReturn | SiteRole::LockReturn => at + 4 - start,
                    _ => insn - start,
                };
                site(offset, *role);
            }
        }
    }
    sites.sort();
    // Two trylocks can share a path (xe's fast path tries twice, both succeed into one block).
    sites.dedup();
    Ok(sites)
}

/// The descriptor of the `NT_GNU_BUILD_ID` note in a notes blob (as in
/// `/sys/module/<m>/notes/.note.gnu.build-id`).
pub fn parse_build_id_note(notes: &[u8]) -> Option<Vec<u8>> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |b: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
    };
    let align = |n: usize| (n + 3) & !3;
    let mut at = 0;
    while at + 12 <= notes.len() {
        let namesz = word(notes, at)? as usize;
        let descsz = word(notes, at + 4)? as usize;
        let kind = word(notes, at + 8)?;
        let name_at = at + 12;
        let desc_at = name_at + align(namesz);
        let name = notes.get(name_at..name_at + namesz)?;
        let desc = notes.get(desc_at..desc_at + descsz)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return Some(desc.to_vec());
        }
        at = desc_at + align(descsz);
    }
    None
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A module file, decompressed (`.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`).
pub fn read_module(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".xz") {
        lzma_rs::xz_decompress(&mut raw.as_slice(), &mut out)
            .map_err(|e| anyhow::anyhow!("decompressing {}: {e:?}", path.display()))?;
    } else if name.ends_with(".zst") {
        ruzstd::decoding::StreamingDecoder::new(raw.as_slice())
            .map_err(|e| anyhow::anyhow!("decompressing {}: {e}", path.display()))?
            .read_to_end(&mut out)
            .with_context(|| format!("decompressing {}", path.display()))?;
    } else if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .with_context(|| format!("decompressing {}", path.display()))?;
    } else {
        out = raw;
    }
    Ok(out)
}

/// A loaded module matched with its file and the sites found in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleSites {
    pub module: String,
    pub file: PathBuf,
    pub build_id: String,
    pub sites: Vec<Site>,
}

/// Every call site to hook, or why there is none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SitePlan {
    pub modules: Vec<ModuleSites>,
}

impl SitePlan {
    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.modules.iter().flat_map(|m| m.sites.iter())
    }
}

/// xe's fault handler from 6.18 on and the function holding its trylock.
const XE_FAULT: &str = "xe_bo_cpu_fault";
const XE_FASTPATH: &str = "xe_bo_cpu_fault_fastpath";

/// Which module functions are probed at their call sites, from the attach plan.
pub fn functions_of(plan: &AttachPlan) -> BTreeMap<String, BTreeMap<String, FunctionKind>> {
    let mut by_module: BTreeMap<String, BTreeMap<String, FunctionKind>> = BTreeMap::new();
    for (sym, module) in &plan.fault_handlers {
        let functions = by_module.entry(module.clone()).or_default();
        if sym == XE_FAULT {
            // xe 6.18+: the reservation logic is in xe's own functions.
            functions.insert(sym.clone(), FunctionKind::XeFault);
            functions.insert(XE_FASTPATH.into(), FunctionKind::XeFastpath);
        } else {
            functions.insert(sym.clone(), FunctionKind::Handler);
        }
    }
    // The reserve, fault_reserved and access functions live in ttm.
    let ttm = plan
        .fault_handlers
        .iter()
        .find(|(s, _)| s == "ttm_bo_vm_fault")
        .map(|(_, m)| m.clone())
        .unwrap_or_else(|| "ttm".into());
    let f = by_module.entry(ttm).or_default();
    if let Some(r) = &plan.reserve {
        f.insert(r.clone(), FunctionKind::Reserve);
    }
    f.insert("ttm_bo_vm_fault_reserved".into(), FunctionKind::Handler);
    for a in ["ttm_bo_vm_access", "ttm_bo_access"] {
        f.insert(a.into(), FunctionKind::Access);
    }
    by_module
}

/// Candidate files of module `name`: the ones given (`--module-file`), then
/// `/lib/modules/<release>/` searched for `name.ko*` (`-` and `_` are the same in names).
fn candidates(name: &str, release: &str, given: &[PathBuf]) -> Vec<PathBuf> {
    let norm = |s: &str| s.replace('-', "_");
    let want = norm(name);
    let matches = |p: &Path| {
        p.file_name()
            .and_then(|f| f.to_str())
            .and_then(|f| f.split(".ko").next().filter(|_| f.contains(".ko")))
            .is_some_and(|stem| norm(stem) == want)
    };
    let mut out: Vec<PathBuf> = given.iter().filter(|p| matches(p)).cloned().collect();
    let root = PathBuf::from("/lib/modules").join(release);
    // modules.dep names every installed module: one file read instead of walking thousands
    // of files (seconds on a slow or busy file system; the lab's 9p root took 7 s idle).
    if let Ok(dep) = std::fs::read_to_string(root.join("modules.dep")) {
        let listed = modules_dep_paths(&dep, &root);
        let found: Vec<PathBuf> = listed.into_iter().filter(|p| matches(p)).collect();
        if !found.is_empty() {
            out.extend(found);
            return out;
        }
    }
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) if matches(&p) => out.push(p),
                _ => {}
            }
        }
    }
    out
}

/// The module files `modules.dep` lists (`path: deps` per line; paths relative to the
/// release directory since kmod 3, absolute before).
fn modules_dep_paths(dep: &str, root: &Path) -> Vec<PathBuf> {
    dep.lines()
        .filter_map(|l| l.split_once(':').map(|(p, _)| p.trim()))
        .filter(|p| !p.is_empty())
        .map(|p| {
            let p = Path::new(p);
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                root.join(p)
            }
        })
        .collect()
}

/// Finds the loaded build of every module the attach plan probes and its call sites. An
/// error says why call-site hooks cannot be used (the caller may fall back to hooks on the
/// vmlinux functions).
pub fn plan(attach: &AttachPlan, release: &str, given: &[PathBuf]) -> Result<SitePlan> {
    let mut modules = Vec::new();
    for (module, functions) in functions_of(attach) {
        if module == "vmlinux" {
            bail!(
                "the TTM functions are built into the kernel; call sites are found only in modules"
            );
        }
        let note_path = format!("/sys/module/{module}/notes/.note.gnu.build-id");
        let note = std::fs::read(&note_path).with_context(|| format!("reading {note_path}"))?;
        let loaded = parse_build_id_note(&note)
            .with_context(|| format!("{note_path} holds no GNU build id"))?;
        let files = candidates(&module, release, given);
        let mut seen = Vec::new();
        let mut found = None;
        for path in files {
            let elf = match read_module(&path) {
                Ok(e) => e,
                Err(e) => {
                    seen.push(format!("{}: {e:#}", path.display()));
                    continue;
                }
            };
            let id = object::File::parse(elf.as_slice())
                .ok()
                .and_then(|f| f.build_id().ok().flatten().map(<[u8]>::to_vec));
            if id.as_deref() != Some(loaded.as_slice()) {
                seen.push(format!(
                    "{}: build id {}",
                    path.display(),
                    id.as_deref().map(hex).unwrap_or_else(|| "none".into())
                ));
                continue;
            }
            let sites = scan(&elf, &functions).with_context(|| format!("{}", path.display()))?;
            found = Some(ModuleSites {
                module: module.clone(),
                file: path,
                build_id: hex(&loaded),
                sites,
            });
            break;
        }
        let Some(m) = found else {
            bail!(
                "no file of the loaded module {module} (build id {}) under /lib/modules/{release} \
                 or --module-file{}",
                hex(&loaded),
                if seen.is_empty() {
                    String::new()
                } else {
                    format!(" (looked at: {})", seen.join("; "))
                }
            );
        };
        modules.push(m);
    }
    let plan = SitePlan { modules };
    let trylock_seen = |s: &Site| {
        matches!(
            s.role,
            SiteRole::TrylockReturn | SiteRole::TrylockAcquired | SiteRole::TrylockFailed
        )
    };
    if attach.reserve.is_some() && !plan.sites().any(trylock_seen) {
        bail!(
            "no call of ww_mutex_trylock in ttm_bo_vm_reserve (kernels before 5.16 inline it): \
             the trylock result would not be observed"
        );
    }
    Ok(plan)
}

#[cfg(test)]
mod tests;
