//! What a tracing session is asked to do (`record`, `live`, `serve`, `bench` share these
//! arguments) and the choice of call sites they lead to.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args, Debug, Clone)]
pub struct TraceArgs {
    /// Only faults of this process (thread group id).
    #[arg(short = 'p', long = "pid")]
    pub pid: Option<u32>,
    /// Only faults of tasks with this command name (exact, as in /proc/PID/comm).
    #[arg(short = 'c', long = "comm")]
    pub comm: Option<String>,
    /// Ring buffer size in KiB (power of two).
    #[arg(long, default_value_t = 4096)]
    pub ring_buffer_kib: u32,
    /// Return-probe instances per probed function (threads that may sleep inside at once;
    /// the kernel accepts at most 4096).
    #[arg(long, default_value_t = DEFAULT_MAXACTIVE, value_parser = parse_maxactive)]
    pub maxactive: u32,
    /// Create this file once the probes are attached (for scripts and tests).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// How long after a thread's mmap_lock read wait its TTM fault may enter the handler for
    /// the wait to count as that fault's (no fault may complete in between). Raise it in
    /// emulated guests, whose vCPUs stall for up to 100 ms.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    pub pre_lock_link: std::time::Duration,
    /// Record the kernel stack of the task whose release of a reservation ended each TTM
    /// fault's wait (the first holder's, or another waiting fault's that got it first), and
    /// when it released it (`--timeline`'s release arrows). Adds a kprobe on
    /// ww_mutex_unlock: one map lookup per call.
    #[arg(long)]
    pub holder_stack: bool,
    /// How to hook the vmlinux functions (ww_mutex_trylock, ww_mutex_lock*, up_read):
    /// BPF trampolines (fentry/fexit, cheaper) with kprobes as fallback, or only one of them.
    #[arg(long, value_enum, default_value_t = VmlinuxHooks::Auto)]
    pub vmlinux_hooks: VmlinuxHooks,
    /// How to hook the TTM fault handlers: fentry/fexit through their module's BTF (Linux
    /// 5.11+; a fraction of a kprobe + kretprobe's cost), or kprobes. `auto` takes
    /// trampolines only where kernel code is not preempted (preempt=none/voluntary): on a
    /// preemptible kernel the kernel skips a trampoline program that another task on the same
    /// CPU preempted (counted as recursion_misses), and a fault's start or end would be lost.
    #[arg(long, value_enum, default_value_t = VmlinuxHooks::Auto)]
    pub handler_hooks: VmlinuxHooks,
    /// Where to observe the trylock, the mmap_lock drop and the reservation waits: at their
    /// call sites inside the TTM functions (nothing runs for the rest of the system; needs
    /// the loaded module's .ko file), on the vmlinux functions themselves (every caller in
    /// the system pays), or call sites when their module file is found.
    #[arg(long, value_enum, default_value_t = HookSites::Auto)]
    pub hook_sites: HookSites,
    /// A module file (.ko, .ko.xz, .ko.zst) to look for call sites in, besides
    /// /lib/modules/$(uname -r); for modules loaded from elsewhere (insmod). Its build id
    /// must match the loaded module's.
    #[arg(
        long = "module-file",
        env = "TTMLAT_MODULE_FILES",
        value_delimiter = ':'
    )]
    pub module_files: Vec<PathBuf>,
    /// Send every episode to userspace as a record. By default the probes count quiet
    /// episodes (one uncontended attempt, nothing else observed) in a kernel map by latency
    /// bucket (1/32 of a power of two wide), which userspace reads once a second.
    #[arg(long)]
    pub every_episode: bool,
    /// Turn on the kernel's BPF run-time statistics while tracing and report each program's
    /// runs and mean run time (for finding what ttmlat costs; the statistics add two clock
    /// reads to every run of every BPF program on the machine).
    #[arg(long)]
    pub program_costs: bool,
}

/// `--maxactive` when not given.
pub const DEFAULT_MAXACTIVE: u32 = 1024;
/// The most return-probe instances the kernel gives a kretprobe (`KRETPROBE_MAXACTIVE_MAX`).
pub const MAX_MAXACTIVE: u32 = 4096;

/// `--maxactive` of every command that traces (`record`, `live`, `serve`, `bench`): 1 to
/// [`MAX_MAXACTIVE`]; more is refused, not clamped.
pub fn parse_maxactive(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    if (1..=MAX_MAXACTIVE).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "{n} is out of range: return-probe instances must be 1 to {MAX_MAXACTIVE} (the \
             kernel's limit)"
        ))
    }
}

/// See [`TraceArgs::hook_sites`].
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookSites {
    /// Call sites when every probed module's file is found, vmlinux functions otherwise.
    Auto,
    /// Call sites, or fail with the reason.
    CallSites,
    /// The vmlinux functions (`--vmlinux-hooks` says how).
    Vmlinux,
}

/// The call sites to hook, and how the choice is described in recordings.
pub fn choose_sites(
    args: &TraceArgs,
    plan: &crate::discovery::AttachPlan,
    release: &str,
) -> Result<(Option<crate::callsites::SitePlan>, String)> {
    if args.hook_sites == HookSites::Vmlinux {
        return Ok((None, "vmlinux (--hook-sites vmlinux)".into()));
    }
    match crate::callsites::plan(plan, release, &args.module_files) {
        Ok(sites) => {
            let files: Vec<String> = sites
                .modules
                .iter()
                .map(|m| {
                    format!(
                        "{} ({} sites, build id {})",
                        m.file.display(),
                        m.sites.len(),
                        m.build_id
                    )
                })
                .collect();
            Ok((Some(sites), format!("call-sites in {}", files.join(", "))))
        }
        Err(e) if args.hook_sites == HookSites::Auto => {
            log::warn!(
                "hooking the vmlinux functions themselves (every up_read and ww_mutex call in \
                 the system pays): {e:#}"
            );
            Ok((None, format!("vmlinux: {e:#}")))
        }
        Err(e) => Err(e.context("--hook-sites call-sites")),
    }
}

/// See [`TraceArgs::vmlinux_hooks`].
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmlinuxHooks {
    /// fentry/fexit; kprobes if the kernel refuses trampolines.
    Auto,
    /// fentry/fexit or fail.
    Trampolines,
    /// kprobes/kretprobes only.
    Kprobes,
}
