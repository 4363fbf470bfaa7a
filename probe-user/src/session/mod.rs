//! A tracing session: discover, load, attach, read the ring buffer until told to stop, and hand
//! back what was aggregated. Sinks (terminal, recording) are the callers'.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use aya::maps::{MapData, RingBuf};
use probe_common::ProbeConfig;
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};

use crate::{
    aggregate::{Aggregate, HolderStack},
    events::{self, Record},
    kernel_info::KernelInfo,
    loader::{LoadOptions, ProbeStats, Probes, StateEntries},
    recording::Meta,
};

mod args;
mod startup;

pub use args::{
    DEFAULT_MAXACTIVE, HookSites, MAX_MAXACTIVE, TraceArgs, VmlinuxHooks, choose_sites,
    parse_maxactive,
};

pub struct Outcome {
    pub total: Aggregate,
    /// Holder stacks, symbolized (`--holder-stack`), most frequent first.
    pub holder_stacks: Vec<HolderStack>,
    pub stats: ProbeStats,
    /// Map reads that failed (the figures they would have given are missing, not zero).
    pub read_errors: Vec<String>,
    pub undecodable: u64,
    /// `None`: the maps could not be read at the end (said in `read_errors`).
    pub state_entries_at_end: Option<StateEntries>,
    /// Programs the kernel skipped at least once (recursion), by name.
    pub skipped_programs: std::collections::BTreeMap<String, u64>,
    /// `--program-costs`: each program's runs and run time, by name.
    pub program_costs: std::collections::BTreeMap<String, crate::prog_fdinfo::ProgramCost>,
    pub meta: Meta,
}

impl Outcome {
    /// The session as a recording (holder stacks included), labelled `label`.
    pub fn recording(&self, label: Option<String>) -> Result<crate::recording::Recording> {
        let mut meta = self.meta.clone();
        meta.label = label;
        let mut rec = crate::recording::Recording::from_aggregate(
            meta,
            &self.total,
            self.stats,
            self.undecodable,
            self.state_entries_at_end,
        )?;
        rec.holder_stacks = self.holder_stacks.clone();
        rec.read_errors = self.read_errors.clone();
        rec.skipped_programs = self.skipped_programs.clone();
        rec.program_costs = self.program_costs.clone();
        Ok(rec)
    }
}

pub enum Stop {
    After(Duration),
    Signal,
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Sees every ring-buffer record as it is read, before it is aggregated (`serve`).
pub trait RecordSink {
    fn record(&mut self, rec: &Record);
    /// A record that could not be decoded.
    fn undecodable(&mut self) {}
    /// Whether the sink needs the in-kernel quiet-episode counts while the session runs
    /// (`serve`), not only at interval ends and at the end.
    fn wants_fresh_counts(&self) -> bool {
        false
    }
}

/// No per-record sink.
impl RecordSink for () {
    fn record(&mut self, _: &Record) {}
}

/// A sink that is only there when asked for (`--timeline`).
impl<T: RecordSink> RecordSink for Option<T> {
    fn record(&mut self, rec: &Record) {
        if let Some(s) = self {
            s.record(rec);
        }
    }
    fn undecodable(&mut self) {
        if let Some(s) = self {
            s.undecodable();
        }
    }
    fn wants_fresh_counts(&self) -> bool {
        self.as_ref().is_some_and(RecordSink::wants_fresh_counts)
    }
}

/// How often the reader drains the ring buffer without being woken (the probes wake it only
/// when an eighth of the ring is full; see `ProbeConfig::wake_bytes`).
const DRAIN_EVERY: Duration = Duration::from_millis(100);

/// Runs a session. `on_interval` is called every `interval` with that interval's aggregate.
pub async fn run(
    args: &TraceArgs,
    stop: Stop,
    interval: Option<Duration>,
    on_interval: impl FnMut(&Aggregate, &ProbeStats),
) -> Result<Outcome> {
    run_with_sink(args, stop, interval, on_interval, &mut ()).await
}

/// [`run`], also handing every decoded record to `sink` as it arrives.
pub async fn run_with_sink(
    args: &TraceArgs,
    stop: Stop,
    interval: Option<Duration>,
    mut on_interval: impl FnMut(&Aggregate, &ProbeStats),
    sink: &mut impl RecordSink,
) -> Result<Outcome> {
    let mut startup = startup::Startup::new();
    let kernel = KernelInfo::read();
    crate::preflight::require_tracing(&kernel)?;
    startup.step("kernel facts");
    let plan = kernel.plan()?;
    startup.step("kallsyms");
    let vmlinux_btf = crate::layout::read(std::path::Path::new("/sys/kernel/btf/vmlinux"))?;
    let layout = crate::layout::resolve(&vmlinux_btf)?;
    startup.step("vmlinux BTF");
    let mut config = ProbeConfig {
        layout,
        self_tgid: std::process::id(),
        pre_lock_link_ns: u64::try_from(args.pre_lock_link.as_nanos()).unwrap_or(u64::MAX),
        ..ProbeConfig::default()
    };
    if let Some(pid) = args.pid {
        config.filter_tgid = pid;
    }
    if let Some(comm) = &args.comm {
        let bytes = comm.as_bytes();
        anyhow::ensure!(
            !bytes.is_empty() && bytes.len() < probe_common::COMM_LEN,
            "--comm must be 1 to 15 bytes (the kernel truncates comm to 15)"
        );
        config.filter_comm[..bytes.len()].copy_from_slice(bytes);
        config.filter_comm_set = 1;
    }
    let ring_bytes = args
        .ring_buffer_kib
        .checked_mul(1024)
        .filter(|b| b.is_power_of_two() && *b >= 4096)
        .context("--ring-buffer-kib must be a power of two ≥ 4")?;
    // An eighth of the ring: the reader wakes long before the ring can fill, and otherwise
    // drains every DRAIN_EVERY.
    config.wake_bytes = u64::from(ring_bytes / 8);
    let (sites, hook_sites) = choose_sites(args, &plan, &kernel.release)?;
    startup.step("call sites");
    if let Some(sites) = &sites
        && sites
            .sites()
            .any(|s| s.role == crate::callsites::SiteRole::ExecLockCall)
    {
        config.layout.gem_object_resv =
            crate::layout::gem_object_resv(&vmlinux_btf, std::path::Path::new("/sys/kernel/btf"))
        .context("xe's fault handler (6.18+) waits in drm_exec_lock_obj(exec, obj): its reservation is obj->resv")?;
    }
    let stats_enabled = if args.program_costs {
        Some(crate::prog_fdinfo::enable_run_time_stats()?)
    } else {
        None
    };
    let handler_hooks = match args.handler_hooks {
        VmlinuxHooks::Auto if kernel.preemption.preempts_programs() => {
            eprintln!(
                "ttmlat: fault handlers: kprobes (preemption model {}: a preempted trampoline \
                 program would be skipped)",
                kernel.preemption.name()
            );
            VmlinuxHooks::Kprobes
        }
        other => other,
    };
    // The probes take a CPU's quiet-episode slots without atomics (probe-ebpf
    // `count_quiet`), which needs the programs that end episodes never to run interleaved
    // on one CPU: trampolines on a kernel that preempts programs could.
    let interleaving =
        handler_hooks == VmlinuxHooks::Trampolines && kernel.preemption.preempts_programs();
    let quiet_in_kernel = !args.every_episode && !interleaving;
    if !args.every_episode && !quiet_in_kernel {
        eprintln!(
            "ttmlat: every episode is sent as a record (trampolines on a kernel that preempts \
             programs: quiet episodes cannot be counted in place)"
        );
    }
    eprintln!("ttmlat: hooks: {hook_sites}");
    let mut probes = Probes::load(
        &plan,
        &LoadOptions {
            config,
            ring_buffer_bytes: ring_bytes,
            maxactive: args.maxactive,
            holder_stacks: args.holder_stack,
            vmlinux_hooks: args.vmlinux_hooks,
            sites,
            sites_required: args.hook_sites == HookSites::CallSites,
            quiet_in_kernel,
            handler_hooks,
        },
        &vmlinux_btf,
    )?;
    startup.step("load and attach");
    if let Some(why) = &probes.handler_fallback {
        eprintln!("ttmlat: fault handlers: kprobes (trampolines failed: {why})");
    }
    let pinned = probes.pinned_modules();
    if !pinned.is_empty() {
        eprintln!(
            "ttmlat: fault handlers: fentry/fexit; the kernel pins {} while ttmlat runs (rmmod \
             is refused); --handler-hooks kprobes leaves them unloadable",
            pinned.join(", ")
        );
    }
    let mut meta = Meta {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        command_line: std::env::args().collect(),
        kernel_release: kernel.release.clone(),
        kernel_version: kernel.version.clone(),
        kernel_package: std::env::var("LAB_KERNEL_PACKAGE").ok(),
        ttm_srcversion: kernel.ttm_srcversion.clone(),
        ttm_taint: kernel.ttm_taint.clone(),
        ttm_version: kernel.ttm_version.clone(),
        kernel_taint: kernel.taint,
        ttm_variant: std::env::var("LAB_TTM").ok(),
        attach_points: probes.attached.clone(),
        hook_sites: Some(match &probes.fallback {
            Some(why) => format!("vmlinux: attaching the call sites failed: {why}"),
            None => hook_sites,
        }),
        handlers: plan.handler_notes(),
        contention_source: plan.contention.describe(),
        drivers_seen: Vec::new(),
        filters: Default::default(),
        start_unix_ns: unix_ns(),
        end_unix_ns: 0,
        hostname: kernel.hostname.clone(),
        label: None,
    };
    if let Some(pid) = args.pid {
        meta.filters.insert("pid".into(), pid.to_string());
    }
    if let Some(comm) = &args.comm {
        meta.filters.insert("comm".into(), comm.clone());
    }

    let ring = probes.take_events()?;
    // SAFETY: the ring buffer owns its fd for as long as the AsyncFd that wraps it lives.
    let mut ring = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("polling the ring buffer: {e}"))?;
    eprintln!("ttmlat: {}", startup.line());
    if let Some(ready) = &args.ready_file {
        std::fs::write(ready, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", ready.display()))?;
    }

    let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
    let deadline = match stop {
        Stop::After(d) => Some(tokio::time::Instant::now() + d),
        Stop::Signal => None,
    };
    let mut ticker = interval.map(|i| tokio::time::interval_at(tokio::time::Instant::now() + i, i));
    let mut drain_tick = tokio::time::interval(DRAIN_EVERY);
    drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut current = Aggregate::new();
    let mut total = Aggregate::new();
    let mut undecodable = 0u64;
    let mut quiet = QuietReader::default();
    let mut drains = 0u32;
    let mut errors = ReadErrors::default();
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("ring buffer poll")?;
                drain(guard.get_inner_mut(), sink, &mut current, &mut undecodable);
                guard.clear_ready();
            }
            _ = drain_tick.tick() => {
                drain(ring.get_mut(), sink, &mut current, &mut undecodable);
                drains += 1;
                if sink.wants_fresh_counts()
                    && drains.is_multiple_of(QUIET_EVERY)
                    && let Err(e) = quiet.read(&probes, sink, &mut current, &mut undecodable)
                {
                    errors.note(e);
                }
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => break,
            _ = async { match ticker.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                if let Err(e) = quiet.read(&probes, sink, &mut current, &mut undecodable) {
                    errors.note(e);
                }
                let stats = read_stats(&probes, &mut errors);
                let interval_agg = current.take_interval();
                on_interval(&interval_agg, &stats);
                total
                    .merge(&interval_agg)
                    .context("adding an interval to the session's total")?;
            }
        }
    }
    // Drain what is left.
    drain(ring.get_mut(), sink, &mut current, &mut undecodable);
    if let Err(e) = quiet.read(&probes, sink, &mut current, &mut undecodable) {
        errors.note(e);
    }
    total
        .merge(&current.take_interval())
        .context("adding the last interval to the session's total")?;
    let stats = read_stats(&probes, &mut errors);
    let state_entries_at_end = probes
        .state_entries()
        .map_err(|e| errors.note(e.context("state entries at the end")))
        .ok();
    let holder_stacks = if args.holder_stack {
        symbolize_stacks(&probes, &total)?
    } else {
        Vec::new()
    };
    let skipped_programs = probes.skipped_programs();
    if !skipped_programs.is_empty() {
        let list: Vec<String> = skipped_programs
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        eprintln!(
            "ttmlat: the kernel skipped these programs (already running on that CPU): {}",
            list.join(", ")
        );
    }
    // Printed by the caller's report (`serve`: on stderr).
    let program_costs = if stats_enabled.is_some() {
        let (costs, failed) = probes.program_costs();
        for e in failed {
            errors.note(e);
        }
        costs
    } else {
        Default::default()
    };
    drop(stats_enabled);
    meta.end_unix_ns = unix_ns();
    meta.drivers_seen = total.drivers.iter().cloned().collect();
    drop(ring);
    drop(probes);
    Ok(Outcome {
        total,
        holder_stacks,
        stats,
        read_errors: errors.0,
        undecodable,
        state_entries_at_end,
        skipped_programs,
        program_costs,
        meta,
    })
}

/// Resolves the holder stacks seen in `agg` through the probes' stack map and kallsyms.
fn symbolize_stacks(probes: &Probes, agg: &Aggregate) -> Result<Vec<HolderStack>> {
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
    let sym = crate::symbolize::Symbolizer::from_kallsyms(&kallsyms);
    let mut out: Vec<HolderStack> = agg
        .holder_stacks
        .iter()
        .map(|((tgid, comm, id), count)| HolderStack {
            tgid: *tgid,
            comm: comm.clone(),
            count: *count,
            frames: match probes.stack(*id) {
                Err(_) if *id < 0 => vec!["(holders beyond the cap, summed)".to_string()],
                Ok(ips) => ips.iter().map(|ip| sym.resolve(*ip)).collect(),
                Err(e) => vec![format!("(stack unavailable: {e})")],
            },
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.tgid.cmp(&b.tgid)));
    Ok(out)
}

/// Reads of the probes' maps that failed during a session: reported, never turned into
/// zeros, and never a reason to lose what was recorded. Bounded.
#[derive(Default)]
struct ReadErrors(Vec<String>);

impl ReadErrors {
    const MAX: usize = 16;

    fn note(&mut self, e: anyhow::Error) {
        let text = format!("{e:#}");
        log::warn!("{text}");
        if self.0.len() < Self::MAX && !self.0.contains(&text) {
            self.0.push(text);
        }
    }
}

/// Every loss channel now; a channel that cannot be read is unknown (`None`) and its error
/// noted, so no report or recording shows a 0 it did not read.
fn read_stats(probes: &Probes, errors: &mut ReadErrors) -> ProbeStats {
    match probes.stats() {
        Ok((stats, failed)) => {
            for e in failed {
                errors.note(e);
            }
            stats
        }
        Err(e) => {
            errors.note(e.context("no loss channel could be read"));
            ProbeStats::default()
        }
    }
}

impl Outcome {
    /// Says on stderr which map reads failed (the report's figures miss what they held).
    pub fn warn_read_errors(&self) {
        for e in &self.read_errors {
            eprintln!("ttmlat: READ FAILED, figures incomplete: {e}");
        }
    }
}

/// Drains between reads of the quiet-episode counts for a sink that wants fresh counts: once a
/// second. Other sessions read them only at interval ends and at the end. (Reads come from a
/// shared mapping, not bpf() syscalls, which would disable BPF programs on their CPU: see
/// `mapped`.)
const QUIET_EVERY: u32 = 10;

/// Turns the probes' cumulative quiet-episode counts into records of their increase.
#[derive(Default)]
struct QuietReader {
    last: std::collections::HashMap<probe_common::QuietKey, u64>,
}

impl QuietReader {
    fn read(
        &mut self,
        probes: &Probes,
        sink: &mut impl RecordSink,
        agg: &mut Aggregate,
        undecodable: &mut u64,
    ) -> Result<()> {
        let now = probes.quiet_counts()?;
        let (records, bad) = events::quiet_since(&now, &mut self.last);
        for rec in &records {
            sink.record(rec);
            agg.add(rec);
        }
        for _ in 0..bad {
            sink.undecodable();
        }
        *undecodable += bad;
        Ok(())
    }
}

/// Decodes every record waiting in the ring buffer into the sink and the aggregate.
fn drain(
    rb: &mut RingBuf<MapData>,
    sink: &mut impl RecordSink,
    agg: &mut Aggregate,
    undecodable: &mut u64,
) {
    while let Some(item) = rb.next() {
        match events::decode(&item) {
            Ok(rec) => {
                sink.record(&rec);
                agg.add(&rec);
            }
            Err(_) => {
                sink.undecodable();
                *undecodable += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        trace: super::TraceArgs,
    }

    /// The kernel takes at most 4096 return-probe instances: more is refused, not clamped.
    #[test]
    fn maxactive_beyond_the_kernel_limit_is_an_error() {
        assert!(Cli::try_parse_from(["t", "--maxactive", "4096"]).is_ok());
        let err = Cli::try_parse_from(["t", "--maxactive", "5000"])
            .err()
            .expect("5000 refused")
            .to_string();
        assert!(err.contains("4096"), "{err}");
        assert!(Cli::try_parse_from(["t", "--maxactive", "0"]).is_err());
    }
}
