//! ttmlat's kprobes created through tracefs `kprobe_events`: return probes with a chosen
//! `maxactive`, and the call-site probes (`p:` at `symbol+offset`), so that every one's misses
//! are in `kprobe_profile`.
//!
//! Why not aya's `KProbe::attach` for returns: the perf-PMU kretprobe it creates gets the
//! kernel's default `maxactive` (max(10, 2·ncpus) on preemptible kernels). A return probe on a
//! function in which more threads sleep at once than that (every faulting thread sleeps inside
//! `ttm_bo_vm_fault` while it waits for a reservation) silently misses returns. tracefs lets us
//! ask for up to 4096 instances and reports misses in `kprobe_profile`, which ttmlat shows.
//!
//! The BPF program (type kprobe) is attached to the trace event with `PERF_EVENT_IOC_SET_BPF`.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};

use crate::perf_event::{self, PerfEventAttr};

/// Group name of our trace events: unique per process so concurrent ttmlats do not collide.
pub fn group() -> String {
    format!("ttmlat_{}", std::process::id())
}

/// The tracefs mount point.
pub fn tracefs() -> Result<PathBuf> {
    for p in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(p).join("kprobe_events").exists() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!(
        "tracefs is not mounted (no /sys/kernel/tracing/kprobe_events): \
         mount -t tracefs nodev /sys/kernel/tracing"
    )
}

/// One tracefs kprobe (return or call site); removed from tracefs on drop.
pub struct TraceProbe {
    tracefs: PathBuf,
    event: String,
    perf: Option<OwnedFd>,
    is_return: bool,
}

/// What a tracefs probe is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeKind {
    /// `r<maxactive>:` on a function's return.
    Return { maxactive: u32 },
    /// `p:` on the instruction at `symbol+offset` (a call site).
    At { offset: u64 },
}

impl TraceProbe {
    /// Creates `r<maxactive>:ttmlat_<pid>/<alias> <symbol>` and attaches `prog_fd` to it.
    pub fn attach(
        tracefs: &Path,
        symbol: &str,
        maxactive: u32,
        prog_fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<Self> {
        Self::attach_kind(tracefs, symbol, ProbeKind::Return { maxactive }, prog_fd)
    }

    /// Creates a tracefs kprobe of `kind` on `symbol` and attaches `prog_fd` to it. Going
    /// through tracefs (rather than the perf kprobe PMU) makes every probe's misses readable
    /// in `kprobe_profile` on every kernel.
    pub fn attach_kind(
        tracefs: &Path,
        symbol: &str,
        kind: ProbeKind,
        prog_fd: std::os::fd::BorrowedFd<'_>,
    ) -> Result<Self> {
        let clean = symbol.replace(['.', '-'], "_");
        let (alias, def, what) = match kind {
            ProbeKind::Return { maxactive } => (
                format!("r_{clean}"),
                format!("r{maxactive}"),
                "a return probe",
            ),
            ProbeKind::At { offset } => (format!("p_{clean}_{offset:x}"), "p".into(), "a probe"),
        };
        let target = match kind {
            ProbeKind::Return { .. } => symbol.to_string(),
            ProbeKind::At { offset } => format!("{symbol}+{offset:#x}"),
        };
        let event = format!("{}/{}", group(), alias);
        append(
            &tracefs.join("kprobe_events"),
            &format!("{def}:{event} {target}\n"),
        )
        .with_context(|| format!("cannot create {what} on {target}"))?;
        let mut probe = Self {
            tracefs: tracefs.to_path_buf(),
            event: event.clone(),
            perf: None,
            is_return: matches!(kind, ProbeKind::Return { .. }),
        };
        let id_path = tracefs.join("events").join(&event).join("id");
        let id: u64 = fs::read_to_string(&id_path)
            .with_context(|| format!("reading {}", id_path.display()))?
            .trim()
            .parse()
            .with_context(|| format!("parsing {}", id_path.display()))?;
        let fd = perf_event_open_tracepoint(id)
            .with_context(|| format!("perf_event_open for {what} on {target}"))?;
        // SAFETY: plain ioctls on a perf event fd we own, with a valid program fd.
        unsafe {
            if libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog_fd.as_raw_fd()) != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("attaching BPF to {what} on {target}"));
            }
            if libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) != 0 {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("enabling {what} on {target}"));
            }
        }
        probe.perf = Some(fd);
        Ok(probe)
    }

    /// A return probe (else a probe on an instruction).
    pub fn is_return(&self) -> bool {
        self.is_return
    }

    /// Misses reported by `kprobe_profile`: returns not traced because all `maxactive`
    /// instances were in use, or hits while another kprobe ran on the CPU (`nmissed`).
    /// Failing to read them is an error, not a 0.
    pub fn misses(&self) -> Result<u64> {
        let path = self.tracefs.join("kprobe_profile");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        parse_profile_misses(&text, &self.event)
            .with_context(|| format!("{} does not list {}", path.display(), self.event))
    }
}

impl Drop for TraceProbe {
    fn drop(&mut self) {
        // The event can only be removed once no perf event uses it.
        self.perf.take();
        let _ = append(
            &self.tracefs.join("kprobe_events"),
            &format!("-:{}\n", self.event),
        );
    }
}

/// Removes trace events left behind by ttmlat processes that no longer exist (killed -9).
pub fn remove_stale(tracefs: &Path) {
    let Ok(text) = fs::read_to_string(tracefs.join("kprobe_events")) else {
        return;
    };
    for event in stale_events(&text, |pid| Path::new(&format!("/proc/{pid}")).exists()) {
        let _ = append(&tracefs.join("kprobe_events"), &format!("-:{event}\n"));
    }
}

/// Events of our groups whose owning pid is not alive.
fn stale_events(kprobe_events: &str, alive: impl Fn(u32) -> bool) -> Vec<String> {
    kprobe_events
        .lines()
        .filter_map(|line| {
            // "r128:ttmlat_1234/r_up_read up_read"
            let event = line.split_whitespace().next()?.split_once(':')?.1;
            let (group, _) = event.split_once('/')?;
            let pid: u32 = group.strip_prefix("ttmlat_")?.parse().ok()?;
            (!alive(pid)).then(|| event.to_string())
        })
        .collect()
}

fn parse_profile_misses(profile: &str, event: &str) -> Option<u64> {
    let alias = event.split('/').nth(1)?;
    profile.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        let name = it.next()?;
        if name != alias && name != event {
            return None;
        }
        let _hits = it.next()?;
        it.next()?.parse().ok()
    })
}

fn append(path: &Path, line: &str) -> std::io::Result<()> {
    OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

// _IOW('$', 8, u32) and _IO('$', 0)
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;

fn perf_event_open_tracepoint(id: u64) -> std::io::Result<OwnedFd> {
    let attr = PerfEventAttr {
        config: id,
        sample_period: 1,
        wakeup_events: 1,
        ..PerfEventAttr::new(perf_event::PERF_TYPE_TRACEPOINT)
    };
    // SAFETY: no pointers in a tracepoint attr.
    unsafe { perf_event::open(&attr) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_dead_ttmlat_events() {
        let text = "r128:ttmlat_10/r_up_read up_read\n\
                    r128:ttmlat_20/r_up_read up_read\n\
                    p:kprobes/other do_sys_open\n\
                    r:ttmlat_x/r_bad foo\n";
        let stale = stale_events(text, |pid| pid == 20);
        assert_eq!(stale, vec!["ttmlat_10/r_up_read".to_string()]);
    }

    #[test]
    fn reads_misses_from_kprobe_profile() {
        let profile = "  r_ttm_bo_vm_fault                                    48               3\n\
                       r_up_read                                            10               0\n";
        assert_eq!(
            parse_profile_misses(profile, "ttmlat_1/r_ttm_bo_vm_fault"),
            Some(3)
        );
        assert_eq!(parse_profile_misses(profile, "ttmlat_1/r_other"), None);
    }
}
