//! Loads the embedded eBPF object with this kernel's layout and attaches it where the
//! discovery plan says. Entry probes use aya's kprobes; return probes use tracefs with a large
//! `maxactive` (see `retprobe`).

use std::os::fd::{AsFd, BorrowedFd};

use anyhow::{Context, Result, anyhow};
use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{HashMap, MapData, RingBuf, StackTraceMap},
    programs::{FEntry, FExit, KProbe, RawTracePoint},
};
use probe_common::{
    MmWatch, ProbeConfig, QUIET_SLOTS_PER_CPU, QuietKey, QuietSlot, ThreadState, WaiterState,
    config_flag, names,
};

pub use crate::loss::{Counter, ProbeStats};
use crate::{
    callsites::SitePlan,
    discovery::{AttachPlan, ContentionSource},
    mapped::MappedArray,
    module_trampoline, prog_fdinfo,
    retprobe::{self, ProbeKind, TraceProbe},
    session::VmlinuxHooks,
};

/// The eBPF object built by build.rs from probe-ebpf.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe"));

pub struct LoadOptions {
    pub config: ProbeConfig,
    pub ring_buffer_bytes: u32,
    pub maxactive: u32,
    /// Capture the reservation holder's kernel stack at release (kprobe on ww_mutex_unlock).
    pub holder_stacks: bool,
    pub vmlinux_hooks: VmlinuxHooks,
    /// Call sites inside the TTM functions to hook instead of the vmlinux functions
    /// (`callsites`); `None`: hook `ww_mutex_*` and `up_read` themselves.
    pub sites: Option<SitePlan>,
    /// Fail rather than fall back to the vmlinux hooks when a call site cannot be attached.
    pub sites_required: bool,
    /// Count quiet episodes in the kernel (`QUIET`) instead of sending each as a record.
    pub quiet_in_kernel: bool,
    /// How to hook the fault handlers: fentry/fexit through the module's BTF (`Auto`: with a
    /// fallback to kprobes when the kernel refuses), or kprobes/kretprobes.
    pub handler_hooks: VmlinuxHooks,
}

/// Attached probes. Dropping it detaches everything (tracefs events included).
pub struct Probes {
    // Field order matters: return probes (tracefs) go before the object they use.
    trace_probes: Vec<TraceProbe>,
    ebpf: Ebpf,
    /// What is attached, for recordings: "kprobe:sym", "kretprobe:sym", "raw_tp:name".
    pub attached: Vec<String>,
    /// Why the call sites planned were not used, when attaching them failed.
    pub fallback: Option<String>,
    /// fentry/fexit programs on the fault handlers (module functions).
    module_trampolines: Vec<module_trampoline::Attached>,
    /// Why the fault handlers are hooked with kprobes although trampolines were allowed.
    pub handler_fallback: Option<String>,
    /// `STATS` and `QUIET_COUNTS`, read from shared memory while tracing (see `mapped`).
    stats_view: MappedArray,
    quiet_view: MappedArray,
}

impl Probes {
    /// `vmlinux` is the kernel's BTF, the base of the modules' split BTF.
    pub fn load(plan: &AttachPlan, opts: &LoadOptions, vmlinux: &btf_rs::Btf) -> Result<Self> {
        let mut config = opts.config;
        if plan.trylock.is_some() || opts.sites.is_some() {
            config.flags |= config_flag::TRYLOCK_PROBED;
        }
        if opts.holder_stacks {
            config.flags |= config_flag::HOLDER_STACKS;
        }
        if opts.quiet_in_kernel {
            config.flags |= config_flag::QUIET_IN_KERNEL;
        }
        let cpus = aya::util::nr_cpus()
            .map_err(|(what, e)| anyhow!("counting the possible CPUs ({what}): {e}"))?;
        let quiet_slots = u32::try_from(cpus)
            .ok()
            .and_then(|n| n.checked_mul(QUIET_SLOTS_PER_CPU))
            .with_context(|| format!("{cpus} possible CPUs: too many quiet-episode slots"))?;
        let ebpf = EbpfLoader::new()
            .override_global(names::CONFIG, &config, true)
            .map_max_entries(names::EVENTS, opts.ring_buffer_bytes)
            .map_max_entries(names::QUIET_COUNTS, quiet_slots)
            .load(OBJECT)
            .context("loading the eBPF object into the kernel")?;
        let stats_view = MappedArray::new(ebpf.map(names::STATS), names::STATS, 8)?;
        let quiet_view = MappedArray::new(
            ebpf.map(names::QUIET_COUNTS),
            names::QUIET_COUNTS,
            size_of::<QuietSlot>(),
        )?;
        let tracefs = retprobe::tracefs()?;
        retprobe::remove_stale(&tracefs);
        let mut probes = Self {
            trace_probes: Vec::new(),
            ebpf,
            attached: Vec::new(),
            fallback: None,
            module_trampolines: Vec::new(),
            handler_fallback: None,
            stats_view,
            quiet_view,
        };
        let trampolines = match opts.handler_hooks {
            VmlinuxHooks::Kprobes => false,
            VmlinuxHooks::Trampolines => {
                probes
                    .handler_trampolines(plan, vmlinux)
                    .context("--handler-hooks trampolines")?;
                true
            }
            VmlinuxHooks::Auto => match probes.handler_trampolines(plan, vmlinux) {
                Ok(()) => true,
                Err(e) => {
                    // Said by the caller, and in the recording's attach points.
                    probes.handler_fallback = Some(format!("{e:#}"));
                    false
                }
            },
        };
        if !trampolines {
            for (sym, _module) in &plan.fault_handlers {
                probes.kprobe("ttm_fault_enter", sym)?;
                probes.kretprobe("ttm_fault_exit", sym, &tracefs, opts.maxactive)?;
            }
        }
        if let Some(sym) = &plan.access {
            probes.kprobe("ttm_access_enter", sym)?;
            probes.kretprobe("ttm_access_exit", sym, &tracefs, opts.maxactive)?;
        }
        let mut use_sites = opts.sites.is_some();
        if let Some(sites) = &opts.sites {
            // Reserve's facts come from its call sites (the trylock return says it ran).
            let (n_probes, n_attached) = (probes.trace_probes.len(), probes.attached.len());
            let attached = sites.sites().try_for_each(|site| {
                probes
                    .kprobe_at(site.role.program(), &site.function, site.offset, &tracefs)
                    .with_context(|| {
                        format!(
                            "call site of {} (program {})",
                            site.callee,
                            site.role.program()
                        )
                    })
            });
            if let Err(e) = attached {
                if opts.sites_required {
                    return Err(e.context("--hook-sites call-sites"));
                }
                // Dropping the probes removes their tracefs events: nothing is seen twice.
                probes.trace_probes.truncate(n_probes);
                probes.attached.truncate(n_attached);
                log::warn!("call-site hooks failed, hooking the vmlinux functions: {e:#}");
                probes.fallback = Some(format!("{e:#}"));
                use_sites = false;
            }
        }
        if !use_sites {
            probes.vmlinux_functions(plan, opts, &tracefs)?;
        }
        if opts.holder_stacks {
            probes.kprobe("resv_unlock_enter", "ww_mutex_unlock")?;
        }
        match &plan.contention {
            ContentionSource::Tracepoints => {
                probes.raw_tracepoint("lock_contention_begin", "contention_begin")?;
                probes.raw_tracepoint("lock_contention_end", "contention_end")?;
            }
            ContentionSource::RwsemSlowpath(syms) => {
                for sym in syms {
                    let enter = if sym.contains("write") {
                        "rwsem_write_slow_enter"
                    } else {
                        "rwsem_read_slow_enter"
                    };
                    probes.kprobe(enter, sym)?;
                    probes.kretprobe("rwsem_slow_exit", sym, &tracefs, opts.maxactive)?;
                }
            }
            ContentionSource::Unavailable => {}
        }
        match &plan.thread_exit {
            // Through tracefs, so that its misses are counted with the others.
            Some(sym) => probes.kprobe_at("thread_exit_kprobe", sym, 0, &tracefs)?,
            None => probes.raw_tracepoint("thread_exit", "sched_process_exit")?,
        }
        Ok(probes)
    }

    /// fentry + fexit on every fault handler (module functions, through their module's BTF).
    /// All or none: on any failure what was attached is detached again.
    fn handler_trampolines(&mut self, plan: &AttachPlan, vmlinux: &btf_rs::Btf) -> Result<()> {
        let mut loader = module_trampoline::Loader::new(OBJECT, &self.ebpf, vmlinux)?;
        let mut attached = Vec::new();
        for (sym, module) in &plan.fault_handlers {
            anyhow::ensure!(
                !module.is_empty(),
                "{sym} is built into vmlinux, not a module"
            );
            // Every TTM fault handler is `vm_fault_t handler(struct vm_fault *vmf)`.
            for (prog, kind) in [
                ("ttm_fault_fentry", module_trampoline::Kind::Entry),
                ("ttm_fault_fexit", module_trampoline::Kind::Exit),
            ] {
                attached.push(loader.attach(prog, kind, sym, module, 1)?);
            }
        }
        for a in &attached {
            self.attached
                .push(format!("{}:{} [{}]", a.kind.label(), a.function, a.module));
        }
        self.module_trampolines = attached;
        Ok(())
    }

    /// Hooks on `ttm_bo_vm_reserve` and on the vmlinux functions it calls (`ww_mutex_*`,
    /// `up_read`): BPF trampolines when the kernel takes them, kprobes otherwise. These fire
    /// for every caller in the system; used where call sites cannot be found.
    fn vmlinux_functions(
        &mut self,
        plan: &AttachPlan,
        opts: &LoadOptions,
        tracefs: &std::path::Path,
    ) -> Result<()> {
        let probes = self;
        if let Some(sym) = &plan.reserve {
            probes.kprobe("ttm_reserve_enter", sym)?;
            probes.kretprobe("ttm_reserve_exit", sym, tracefs, opts.maxactive)?;
        }
        // vmlinux functions: BTF trampolines when the kernel takes them, kprobes otherwise.
        let trampolines = match opts.vmlinux_hooks {
            VmlinuxHooks::Kprobes => false,
            VmlinuxHooks::Trampolines => {
                probes.vmlinux_trampolines(plan).context(
                    "attaching fentry/fexit to vmlinux functions (--vmlinux-hooks trampolines)",
                )?;
                true
            }
            VmlinuxHooks::Auto => match probes.vmlinux_trampolines(plan) {
                Ok(()) => true,
                Err(e) => {
                    log::warn!("fentry/fexit unavailable, using kprobes for vmlinux hooks: {e:#}");
                    false
                }
            },
        };
        if !trampolines {
            if let Some(sym) = &plan.trylock {
                probes.kretprobe("resv_trylock_exit", sym, tracefs, opts.maxactive)?;
            }
            for sym in &plan.resv_lock {
                probes.kprobe("resv_lock_enter", sym)?;
                probes.kretprobe("resv_lock_exit", sym, tracefs, opts.maxactive)?;
            }
            probes.kprobe("mmap_read_unlock", &plan.read_unlock)?;
        }
        Ok(())
    }

    /// Attaches the vmlinux hooks (trylock, reservation waits, up_read) as fentry/fexit. On
    /// any failure, detaches what it attached, so the caller can fall back to kprobes.
    fn vmlinux_trampolines(&mut self, plan: &AttachPlan) -> Result<()> {
        let btf = Btf::from_sys_fs().context("reading /sys/kernel/btf/vmlinux")?;
        let mut links: Vec<(&'static str, &str)> = Vec::new();
        if plan.trylock.is_some() {
            links.push(("ww_mutex_trylock_fexit", "ww_mutex_trylock"));
        }
        for sym in &plan.resv_lock {
            match sym.as_str() {
                "ww_mutex_lock_interruptible" => {
                    links.push((
                        "ww_mutex_lock_interruptible_fentry",
                        "ww_mutex_lock_interruptible",
                    ));
                    links.push((
                        "ww_mutex_lock_interruptible_fexit",
                        "ww_mutex_lock_interruptible",
                    ));
                }
                "ww_mutex_lock" => {
                    links.push(("ww_mutex_lock_fentry", "ww_mutex_lock"));
                    links.push(("ww_mutex_lock_fexit", "ww_mutex_lock"));
                }
                other => anyhow::bail!("no trampoline program for {other}"),
            }
        }
        anyhow::ensure!(
            plan.read_unlock == "up_read",
            "no trampoline program for {}",
            plan.read_unlock
        );
        links.push(("up_read_fentry", "up_read"));
        let mut tried: Vec<&'static str> = Vec::new();
        let result = (|| -> Result<()> {
            for (prog, func) in &links {
                tried.push(prog);
                let p = self
                    .ebpf
                    .program_mut(prog)
                    .ok_or_else(|| anyhow!("program {prog} missing from the eBPF object"))?;
                let kind = if prog.ends_with("_fentry") {
                    let p: &mut FEntry = p.try_into()?;
                    p.load(func, &btf)
                        .and_then(|()| p.attach().map(drop))
                        .with_context(|| format!("fentry on {func}"))?;
                    "fentry"
                } else {
                    let p: &mut FExit = p.try_into()?;
                    p.load(func, &btf)
                        .and_then(|()| p.attach().map(drop))
                        .with_context(|| format!("fexit on {func}"))?;
                    "fexit"
                };
                self.attached.push(format!("{kind}:{func}"));
            }
            Ok(())
        })();
        if result.is_err() {
            // Unloading detaches a program's links: nothing is observed twice by the kprobes
            // the caller attaches instead.
            for prog in tried {
                if let Some(p) = self.ebpf.program_mut(prog) {
                    let _ = match p {
                        aya::programs::Program::FEntry(p) => p.unload(),
                        aya::programs::Program::FExit(p) => p.unload(),
                        _ => Ok(()),
                    };
                }
            }
            self.attached
                .retain(|a| !a.starts_with("fentry:") && !a.starts_with("fexit:"));
        }
        result
    }

    fn kprobe_prog(&mut self, prog: &str) -> Result<&mut KProbe> {
        let p: &mut KProbe = self
            .ebpf
            .program_mut(prog)
            .ok_or_else(|| anyhow!("program {prog} missing from the eBPF object"))?
            .try_into()
            .with_context(|| format!("program {prog} is not a kprobe"))?;
        if p.fd().is_err() {
            p.load()
                .with_context(|| format!("the kernel refused to load program {prog}"))?;
        }
        Ok(p)
    }

    fn kprobe(&mut self, prog: &str, symbol: &str) -> Result<()> {
        self.kprobe_prog(prog)?
            .attach(symbol, 0)
            .with_context(|| format!("attaching a kprobe to {symbol}"))?;
        self.attached.push(format!("kprobe:{symbol}"));
        Ok(())
    }

    /// A kprobe on the instruction at `symbol+offset` (a call site), through tracefs so that
    /// its misses are counted.
    fn kprobe_at(
        &mut self,
        prog: &str,
        symbol: &str,
        offset: u64,
        tracefs: &std::path::Path,
    ) -> Result<()> {
        let fd = self.kprobe_prog(prog)?.fd()?.as_fd().try_clone_to_owned()?;
        let rp = TraceProbe::attach_kind(tracefs, symbol, ProbeKind::At { offset }, fd.as_fd())?;
        self.trace_probes.push(rp);
        self.attached.push(format!("kprobe:{symbol}+{offset:#x}"));
        Ok(())
    }

    fn kretprobe(
        &mut self,
        prog: &str,
        symbol: &str,
        tracefs: &std::path::Path,
        maxactive: u32,
    ) -> Result<()> {
        let fd = self.kprobe_prog(prog)?.fd()?.as_fd().try_clone_to_owned()?;
        let rp = TraceProbe::attach(tracefs, symbol, maxactive, fd.as_fd())?;
        self.trace_probes.push(rp);
        self.attached.push(format!("kretprobe:{symbol}"));
        Ok(())
    }

    fn raw_tracepoint(&mut self, prog: &str, tp: &str) -> Result<()> {
        let p: &mut RawTracePoint = self
            .ebpf
            .program_mut(prog)
            .ok_or_else(|| anyhow!("program {prog} missing from the eBPF object"))?
            .try_into()
            .with_context(|| format!("program {prog} is not a raw tracepoint"))?;
        p.load()
            .with_context(|| format!("the kernel refused to load program {prog}"))?;
        p.attach(tp)
            .with_context(|| format!("attaching to raw tracepoint {tp}"))?;
        self.attached.push(format!("raw_tp:{tp}"));
        Ok(())
    }

    /// The ring buffer of events (taken once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(names::EVENTS)
            .ok_or_else(|| anyhow!("map {} missing", names::EVENTS))?;
        RingBuf::try_from(map).context("EVENTS is not a ring buffer")
    }

    /// The modules whose functions carry ttmlat's trampolines. The kernel holds a reference on
    /// each for as long as the programs are loaded: `rmmod` of them is refused until ttmlat
    /// exits (kprobes do not pin a module; they are removed with it).
    pub fn pinned_modules(&self) -> Vec<String> {
        let mut m: Vec<String> = self
            .module_trampolines
            .iter()
            .map(|t| t.module.clone())
            .collect();
        m.sort();
        m.dedup();
        m
    }

    /// Every loss channel; a channel that cannot be read is unknown, with the error in the
    /// second value. The probes' own counters come from the `STATS` mapping (no syscall).
    pub fn stats(&self) -> Result<(ProbeStats, Vec<anyhow::Error>)> {
        let sum = |i: u32| -> Result<u64> {
            self.stats_view
                .u64_at(i, 0)
                .with_context(|| format!("loss counter {i} is beyond map {}", names::STATS))
        };
        Ok(ProbeStats::read(|counter| match counter {
            Counter::Probe(slot) => sum(slot).map(Some),
            Counter::ReturnProbes => self.trace_probe_misses(true).map(Some),
            Counter::Kprobes => self.trace_probe_misses(false).map(Some),
            Counter::Programs => self.recursion_misses(),
        }))
    }

    /// `nmissed` of ttmlat's return (or entry and call-site) tracefs probes, summed. A probe
    /// whose count cannot be read is an error, not a 0.
    fn trace_probe_misses(&self, returns: bool) -> Result<u64> {
        self.trace_probes
            .iter()
            .filter(|p| p.is_return() == returns)
            .map(TraceProbe::misses)
            .sum()
    }

    /// The programs the kernel skipped (`recursion_misses` > 0), by program name: which
    /// facts went missing.
    pub fn skipped_programs(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for (name, fd) in self.program_fds() {
            // Unreadable fdinfo: the stats read says so (`recursion_misses` unknown).
            if let Some(n) = prog_fdinfo::recursion_misses(fd)
                .ok()
                .flatten()
                .filter(|n| *n > 0)
            {
                *out.entry(name).or_insert(0) += n;
            }
        }
        out
    }

    /// Every loaded program by name; a module trampoline program is loaded once per handler,
    /// so a name can repeat.
    fn program_fds(&self) -> Vec<(String, BorrowedFd<'_>)> {
        let mut out: Vec<(String, BorrowedFd<'_>)> = self
            .ebpf
            .programs()
            .filter_map(|(name, prog)| Some((name.to_string(), prog.fd().ok()?.as_fd())))
            .collect();
        out.extend(
            self.module_trampolines
                .iter()
                .map(|t| (t.program.to_string(), t.prog_fd())),
        );
        out
    }

    /// Each loaded program's runs and run time (`--program-costs`; counted only while the
    /// kernel's run-time statistics are on), and an error for every program whose figures
    /// could not be read: it is left out of the costs, and the error says so.
    pub fn program_costs(
        &self,
    ) -> (
        std::collections::BTreeMap<String, prog_fdinfo::ProgramCost>,
        Vec<anyhow::Error>,
    ) {
        let mut out = std::collections::BTreeMap::<String, prog_fdinfo::ProgramCost>::new();
        let mut failed = Vec::new();
        for (name, fd) in self.program_fds() {
            match prog_fdinfo::cost(fd) {
                Ok(c) => {
                    let e = out.entry(name).or_default();
                    e.runs += c.runs;
                    e.run_time_ns += c.run_time_ns;
                }
                Err(e) => failed.push(e.context(format!(
                    "--program-costs: the cost of program {name} is unknown (left out of the table)"
                ))),
            }
        }
        (out, failed)
    }

    /// Sum of `recursion_misses` over the loaded programs; `None` if the kernel reports it
    /// for none of them (before 5.12). An unreadable fdinfo, or a kernel that reports it for
    /// some programs only, is an error: a partial sum would undercount.
    fn recursion_misses(&self) -> Result<Option<u64>> {
        let mut counts = Vec::new();
        for (name, fd) in self.program_fds() {
            counts.push((name, prog_fdinfo::recursion_misses(fd)?));
        }
        let known: Vec<u64> = counts.iter().filter_map(|(_, n)| *n).collect();
        if known.is_empty() {
            return Ok(None);
        }
        if known.len() < counts.len() {
            let missing: Vec<&str> = counts
                .iter()
                .filter(|(_, n)| n.is_none())
                .map(|(name, _)| name.as_str())
                .collect();
            anyhow::bail!("fdinfo has no recursion_misses for {}", missing.join(", "));
        }
        Ok(Some(known.iter().sum()))
    }

    /// The quiet-episode counts, summed over CPUs: cumulative since load. Read from the
    /// `QUIET_COUNTS` mapping: each CPU's slots in use, up to its first with count 0.
    pub fn quiet_counts(&self) -> Result<std::collections::HashMap<QuietKey, u64>> {
        let view = &self.quiet_view;
        let count_at = std::mem::offset_of!(QuietSlot, count);
        let mut out = std::collections::HashMap::new();
        for first in (0..view.entries()).step_by(QUIET_SLOTS_PER_CPU as usize) {
            for i in first
                ..first
                    .saturating_add(QUIET_SLOTS_PER_CPU)
                    .min(view.entries())
            {
                let count = view
                    .u64_at(i, count_at)
                    .context("quiet-episode slot beyond the mapping")?;
                if count == 0 {
                    break;
                }
                let key: QuietKey = view
                    .read(i, std::mem::offset_of!(QuietSlot, key))
                    .context("quiet-episode slot beyond the mapping")?;
                *out.entry(key).or_insert(0) += count;
            }
        }
        Ok(out)
    }

    /// Kernel stack (return addresses, innermost first) recorded under `id` in `STACKS`.
    pub fn stack(&self, id: i32) -> Result<Vec<u64>> {
        let map = self
            .ebpf
            .map(names::STACKS)
            .ok_or_else(|| anyhow!("map {} missing", names::STACKS))?;
        let stacks: StackTraceMap<&MapData> = StackTraceMap::try_from(map)?;
        let id = u32::try_from(id).context("negative stack id")?;
        let trace = stacks
            .get(&id, 0)
            .with_context(|| format!("stack {id} not in the stack map"))?;
        Ok(trace.frames().iter().map(|f| f.ip).collect())
    }

    /// Entries in the per-thread, waiter and mm-watch maps (state must return to baseline).
    pub fn state_entries(&self) -> Result<StateEntries> {
        Ok(StateEntries {
            threads: self.count_keys::<u32, ThreadState>(names::THREADS)?,
            waiters: self.count_keys::<u32, WaiterState>(names::WAITERS)?,
            mm_watches: self.count_keys::<u64, MmWatch>(names::MM_WATCH)?,
        })
    }

    fn count_keys<K: aya::Pod, V: aya::Pod>(&self, name: &str) -> Result<usize> {
        let map = self
            .ebpf
            .map(name)
            .ok_or_else(|| anyhow!("map {name} missing"))?;
        let hash: HashMap<&MapData, K, V> =
            HashMap::try_from(map).with_context(|| format!("map {name} is not a hash map"))?;
        let mut n = 0;
        for key in hash.keys() {
            key.with_context(|| format!("iterating the keys of map {name}"))?;
            n += 1;
        }
        Ok(n)
    }
}

/// Live entries of the probes' state maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateEntries {
    pub threads: usize,
    pub waiters: usize,
    pub mm_watches: usize,
}

impl StateEntries {
    /// Both sessions' entries (merged recordings); unknown if either is.
    pub fn plus(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        let (a, b) = (a?, b?);
        Some(Self {
            threads: a.threads + b.threads,
            waiters: a.waiters + b.waiters,
            mm_watches: a.mm_watches + b.mm_watches,
        })
    }
}

#[cfg(test)]
mod tests {
    use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};

    /// The BPF backend lowers zeroing and unaligned copies into calls to compiler-builtins'
    /// byte loops (`memset` cost ~1,200 instructions per TTM fault before probe-ebpf `mem`).
    /// No program of the embedded object may call one.
    #[test]
    fn no_program_calls_a_byte_loop_memory_function() {
        let file = object::File::parse(super::OBJECT).expect("the embedded eBPF object parses");
        let mut calls = Vec::new();
        for section in file.sections() {
            for (_, reloc) in section.relocations() {
                let RelocationTarget::Symbol(index) = reloc.target() else {
                    continue;
                };
                let Ok(sym) = file.symbol_by_index(index) else {
                    continue;
                };
                let name = sym.name().unwrap_or_default();
                if ["memset", "memcpy", "memmove", "bcmp", "memcmp"].contains(&name) {
                    calls.push(format!("{} -> {name}", section.name().unwrap_or("?")));
                }
            }
        }
        assert!(
            calls.is_empty(),
            "byte-loop calls in the eBPF object: {calls:?}"
        );
    }
}
