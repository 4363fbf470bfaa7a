//! `ttmlat stress`: reproducible reservation contention on any KMS device with dumb buffers.
//!
//! Scenarios (fixed parameters, printed in every report):
//! * `first-touch`: T threads fault the same fresh buffer at the same instant (barrier). The
//!   first populates the whole buffer under the reservation; the others find it reserved.
//!   The holder is a sibling thread, so it holds this process's mmap_lock itself.
//! * `cross-process`: a helper process (its own mm) populates each fresh buffer; T threads
//!   of this process fault it meanwhile. Only here do the two kernel variants separate: stock
//!   TTM drops this process's mmap_lock and retries; the blocking variant sleeps holding it.
//! * `procmem`: the helper populates; a thread of this process reads /proc/self/mem over the
//!   mapping: `ttm_bo_vm_access` waits for the reservation with mmap_lock held, on every
//!   kernel.
//!
//! In every scenario a victim thread loops mmap+munmap of a small anonymous region and records
//! each call's latency: what other threads pay while a fault sleeps holding mmap_lock.

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    os::fd::{AsFd, AsRawFd},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::{
        Arc, Barrier, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::drm::{Device, Mapping};
use crate::aggregate::new_histogram;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    FirstTouch,
    CrossProcess,
    Procmem,
}

#[derive(clap::Args, Debug, Clone)]
pub struct StressArgs {
    /// Which contention to drive.
    #[arg(long, value_enum, default_value = "cross-process")]
    pub scenario: Scenario,
    /// Faulting threads per round.
    #[arg(short = 't', long, default_value_t = 4)]
    pub threads: usize,
    /// Size of each fresh buffer (populating it is what holds the reservation).
    #[arg(long, default_value = "16M", value_parser = super::parse_size)]
    pub size: usize,
    /// Rounds (one fresh buffer each). Ignored when --duration is given.
    #[arg(long, default_value_t = 20)]
    pub rounds: u32,
    /// Run rounds until this much time has passed instead.
    #[arg(short, long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Delay between the helper starting to populate and the faulting threads starting.
    #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
    pub holder_lead: Duration,
    /// Disable the mmap/munmap victim thread.
    #[arg(long)]
    pub no_victim: bool,
    /// Faulting threads touch adjacent pages (thread i: page i) instead of pages spread over
    /// the buffer: the first fault to complete maps its neighbours' pages too (TTM's prefault
    /// window), so their retries can find nothing left to do (episode path retry-no-handler).
    #[arg(long)]
    pub adjacent: bool,
    /// Pause between victim iterations.
    #[arg(long, default_value = "100us", value_parser = humantime::parse_duration)]
    pub victim_interval: Duration,
    /// The faulting threads' comm: this prefix and the thread's number, cut to the kernel's
    /// 15 bytes (observers filter on it; the lab also gives it quotes and newlines, to see
    /// that every sink escapes what a process may call itself).
    #[arg(long, default_value = "ttm-fault-", value_parser = fault_comm)]
    pub fault_comm: String,
    /// DRM device (default: the first /dev/dri/card* with dumb buffers).
    #[arg(long)]
    pub device: Option<PathBuf>,
    /// JSON report instead of text.
    #[arg(long)]
    pub json: bool,
    /// Create this file once the signal handlers are installed and the device is open.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
}

#[derive(Serialize, serde::Deserialize, Debug, Clone, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub max_ns: u64,
    pub mean_ns: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        Self {
            count: h.len(),
            p50_ns: h.value_at_quantile(0.5),
            p90_ns: h.value_at_quantile(0.9),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            mean_ns: h.mean(),
        }
    }
}

#[derive(Serialize, serde::Deserialize, Debug, Clone)]
pub struct StressReport {
    pub scenario: Scenario,
    pub pid: u32,
    pub device: String,
    pub driver: String,
    pub threads: usize,
    pub size: usize,
    pub rounds_done: u32,
    pub holder_lead_ns: u64,
    pub elapsed_ns: u64,
    pub interrupted: bool,
    /// First touch of each faulting thread in each round (or each /proc/PID/mem read).
    pub first_touch: Percentiles,
    /// Every first-touch latency, in order (thread-major within a round).
    pub first_touch_ns: Vec<u64>,
    /// Victim mmap/munmap calls.
    pub victim: Option<Percentiles>,
    /// Sum of all victim call times (ns).
    pub victim_total_ns: u64,
    pub victim_tid: Option<i32>,
    /// Helper process (cross-process, procmem).
    pub holder_pid: Option<u32>,
    /// Time the helper spent populating each buffer.
    pub holder_populate: Option<Percentiles>,
    /// Major faults of this process (a TTM retry counts as one).
    pub majflt: i64,
    pub minflt: i64,
}

/// Set by SIGINT/SIGTERM: finish the current round, report, exit 0.
fn stop_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .context("installing a signal handler")?;
    }
    Ok(flag)
}

pub fn run(args: &StressArgs) -> Result<()> {
    if args.threads == 0 || args.threads > 1024 {
        bail!("--threads must be between 1 and 1024");
    }
    super::set_comm("ttm-stress");
    let stop = stop_flag()?;
    let dev = Device::open(args.device.as_deref())?;
    let mut holder = match args.scenario {
        Scenario::FirstTouch => None,
        Scenario::CrossProcess | Scenario::Procmem => Some(Holder::spawn(&dev)?),
    };
    let victim = (!args.no_victim).then(|| Victim::start(args.victim_interval));
    if let Some(ready) = &args.ready_file {
        std::fs::write(ready, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", ready.display()))?;
    }
    let (minflt0, majflt0) = super::rusage();
    let start = Instant::now();
    let mut first_touch = new_histogram();
    let mut first_touch_ns = Vec::new();
    let mut populate = new_histogram();
    let mut rounds_done = 0u32;
    loop {
        let more = match args.duration {
            Some(d) => start.elapsed() < d,
            None => rounds_done < args.rounds,
        };
        if !more || stop.load(Ordering::Relaxed) {
            break;
        }
        let round = one_round(args, &dev, holder.as_mut())?;
        for &ns in &round.first_touch_ns {
            first_touch.saturating_record(ns);
        }
        first_touch_ns.extend(round.first_touch_ns);
        if let Some(p) = round.populate_ns {
            populate.saturating_record(p);
        }
        rounds_done += 1;
    }
    let elapsed_ns = start.elapsed().as_nanos() as u64;
    let (minflt1, majflt1) = super::rusage();
    let victim = victim.map(Victim::stop).transpose()?;
    let holder_pid = holder.as_ref().map(|h| h.child.id());
    if let Some(h) = holder.take() {
        h.finish()?;
    }
    let report = StressReport {
        scenario: args.scenario,
        pid: std::process::id(),
        device: dev.path.display().to_string(),
        driver: dev.driver(),
        threads: if args.scenario == Scenario::Procmem {
            1
        } else {
            args.threads
        },
        size: args.size,
        rounds_done,
        holder_lead_ns: args.holder_lead.as_nanos() as u64,
        elapsed_ns,
        interrupted: stop.load(Ordering::Relaxed),
        first_touch: Percentiles::of(&first_touch),
        first_touch_ns,
        victim: victim.as_ref().map(|v| Percentiles::of(&v.hist)),
        victim_total_ns: victim.as_ref().map_or(0, |v| v.total_ns),
        victim_tid: victim.as_ref().map(|v| v.tid),
        holder_pid,
        holder_populate: (!populate.is_empty()).then(|| Percentiles::of(&populate)),
        majflt: majflt1 - majflt0,
        minflt: minflt1 - minflt0,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

fn render(r: &StressReport) -> String {
    use crate::report::ns;
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "stress {}: {} rounds of {} threads on a fresh {} B buffer, {} ({}), pid {}, {:.2} s{}",
        clap::ValueEnum::to_possible_value(&r.scenario)
            .map_or_else(|| "—".to_string(), |v| v.get_name().to_string()),
        r.rounds_done,
        r.threads,
        r.size,
        r.device,
        r.driver,
        r.pid,
        r.elapsed_ns as f64 / 1e9,
        if r.interrupted { " (interrupted)" } else { "" }
    );
    let p = |p: &Percentiles| {
        format!(
            "n={} p50={} p90={} p99={} p99.9={} max={}",
            p.count,
            ns(p.p50_ns),
            ns(p.p90_ns),
            ns(p.p99_ns),
            ns(p.p999_ns),
            ns(p.max_ns)
        )
    };
    let _ = writeln!(out, "  first touch:        {}", p(&r.first_touch));
    if let Some(v) = &r.victim {
        let _ = writeln!(out, "  victim mmap/munmap: {}", p(v));
    }
    if let Some(h) = &r.holder_populate {
        let _ = writeln!(out, "  helper populate:    {}", p(h));
    }
    let _ = writeln!(out, "  major faults {} minor faults {}", r.majflt, r.minflt);
    out
}

struct RoundResult {
    first_touch_ns: Vec<u64>,
    populate_ns: Option<u64>,
}

fn one_round(args: &StressArgs, dev: &Device, holder: Option<&mut Holder>) -> Result<RoundResult> {
    let bo = dev.create_dumb(args.size)?;
    let map = bo.map()?;
    let offset = bo.map_offset()?;
    let pages = map.pages();
    match (args.scenario, holder) {
        (Scenario::FirstTouch, _) => Ok(RoundResult {
            first_touch_ns: touch_together(&map, args, pages, || Ok(()))?,
            populate_ns: None,
        }),
        (Scenario::CrossProcess, Some(h)) => {
            h.begin_populate(offset, map.len)?;
            let lead = args.holder_lead;
            let ft = touch_together(&map, args, pages, || {
                std::thread::sleep(lead);
                Ok(())
            })?;
            Ok(RoundResult {
                first_touch_ns: ft,
                populate_ns: Some(h.end_populate()?),
            })
        }
        (Scenario::Procmem, Some(h)) => {
            h.begin_populate(offset, map.len)?;
            std::thread::sleep(args.holder_lead);
            let ns = read_proc_mem(&map)?;
            Ok(RoundResult {
                first_touch_ns: vec![ns],
                populate_ns: Some(h.end_populate()?),
            })
        }
        (_, None) => Err(anyhow!("internal: scenario needs the helper process")),
    }
}

/// `--fault-comm`: any bytes but NUL, at most 12 (room for the thread's number).
fn fault_comm(s: &str) -> Result<String> {
    anyhow::ensure!(
        !s.contains('\0') && s.len() <= 12,
        "--fault-comm must be at most 12 bytes without NUL (the kernel keeps 15 of a comm)"
    );
    Ok(s.to_string())
}

/// T threads wait at a barrier, then each touches its own page of the fresh buffer (spread, or
/// adjacent); returns
/// each thread's first-touch latency. `before_go` runs on this thread before it releases them.
fn touch_together(
    map: &Mapping,
    args: &StressArgs,
    pages: usize,
    before_go: impl FnOnce() -> Result<()>,
) -> Result<Vec<u64>> {
    let (threads, adjacent) = (args.threads, args.adjacent);
    let barrier = Barrier::new(threads + 1);
    let results = Mutex::new(vec![0u64; threads]);
    std::thread::scope(|s| -> Result<()> {
        for i in 0..threads {
            let barrier = &barrier;
            let results = &results;
            // Named threads: the comm "ttm-fault-N" lets an independent observer (tracefs
            // filters in the lab tests) pick out exactly these faults.
            std::thread::Builder::new()
                .name(format!("{}{i}", args.fault_comm))
                .spawn_scoped(s, move || {
                    // Spread threads over the buffer so each takes its own fault, or side by
                    // side (--adjacent) so that one fault maps the others' pages.
                    let page = if adjacent {
                        i.min(pages.saturating_sub(1))
                    } else {
                        i * pages / threads.max(1)
                    };
                    barrier.wait();
                    let t0 = Instant::now();
                    map.touch(page);
                    let ns = t0.elapsed().as_nanos() as u64;
                    if let Ok(mut r) = results.lock() {
                        r[i] = ns;
                    }
                })
                .context("starting a faulting thread")?;
        }
        let go = before_go();
        barrier.wait();
        go
    })?;
    results
        .into_inner()
        .map_err(|_| anyhow!("a faulting thread panicked"))
}

/// Reads one byte of the (not yet faulted) mapping through /proc/self/mem: access_remote_vm
/// → ttm_bo_vm_access, with mmap_lock held.
fn read_proc_mem(map: &Mapping) -> Result<u64> {
    let mem = File::open("/proc/self/mem").context("opening /proc/self/mem")?;
    let mut buf = [0u8; 64];
    let t0 = Instant::now();
    let n = nix::sys::uio::pread(mem.as_fd(), &mut buf, map.addr() as i64)
        .context("reading the mapping through /proc/self/mem")?;
    let ns = t0.elapsed().as_nanos() as u64;
    if n == 0 {
        bail!("/proc/self/mem returned no bytes for the mapping");
    }
    Ok(ns)
}

/// The helper process: its own mm, sharing our DRM file description (inherited fd), so it can
/// map the same buffer and populate it while holding the reservation.
struct Holder {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

impl Holder {
    fn spawn(dev: &Device) -> Result<Self> {
        let fd = dev.as_fd().as_raw_fd();
        let exe = std::env::current_exe().context("locating the ttmlat binary")?;
        let mut cmd = Command::new(exe);
        cmd.arg("stress-helper")
            .env("TTMLAT_HELPER_FD", fd.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        // SAFETY: pre_exec only clears FD_CLOEXEC on one fd, async-signal-safe.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().context("starting the helper process")?;
        let to = child.stdin.take().context("helper stdin")?;
        let from = BufReader::new(child.stdout.take().context("helper stdout")?);
        let mut h = Self { child, to, from };
        h.expect("ready")?;
        Ok(h)
    }

    fn expect(&mut self, word: &str) -> Result<String> {
        let mut line = String::new();
        self.from.read_line(&mut line)?;
        if !line.starts_with(word) {
            bail!("helper process said {line:?}, expected {word:?}");
        }
        Ok(line.trim().to_string())
    }

    /// Asks the helper to map and populate the buffer; returns once it is about to fault.
    fn begin_populate(&mut self, offset: u64, len: usize) -> Result<()> {
        writeln!(self.to, "populate {offset} {len}")?;
        self.to.flush()?;
        self.expect("start").map(drop)
    }

    fn end_populate(&mut self) -> Result<u64> {
        let line = self.expect("done")?;
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .context("helper sent a malformed reply")
    }

    fn finish(mut self) -> Result<()> {
        writeln!(self.to, "quit")?;
        drop(self.to);
        let status = self.child.wait()?;
        if !status.success() {
            bail!("helper process exited with {status}");
        }
        Ok(())
    }
}

/// Entry point of the helper process (`ttmlat stress-helper`, hidden).
pub fn helper_main() -> Result<()> {
    let fd: i32 = std::env::var("TTMLAT_HELPER_FD")
        .context("stress-helper is internal to `ttmlat stress`")?
        .parse()
        .context("bad TTMLAT_HELPER_FD")?;
    super::set_comm("ttm-helper");
    // SAFETY: the parent passed us this fd open, for us to own.
    let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    writeln!(out, "ready")?;
    out.flush()?;
    for line in stdin.lock().lines() {
        let line = line?;
        let mut it = line.split_whitespace();
        match it.next() {
            Some("populate") => {
                let offset: u64 = it.next().and_then(|v| v.parse().ok()).context("offset")?;
                let len: usize = it.next().and_then(|v| v.parse().ok()).context("len")?;
                let map = Mapping::map_fd(file.as_fd(), offset, len)?;
                writeln!(out, "start")?;
                out.flush()?;
                let t0 = Instant::now();
                map.touch(0);
                let ns = t0.elapsed().as_nanos() as u64;
                drop(map);
                writeln!(out, "done {ns}")?;
                out.flush()?;
            }
            Some("quit") | None => break,
            Some(other) => bail!("unknown helper command {other:?}"),
        }
    }
    Ok(())
}

/// The victim: mmap+munmap of a small anonymous region in a loop, each call timed.
struct Victim {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Result<VictimResult>>,
}

struct VictimResult {
    hist: Histogram<u64>,
    total_ns: u64,
    tid: i32,
}

impl Victim {
    fn start(interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("ttm-victim".into())
            .spawn(move || victim_loop(&flag, interval));
        let handle = match handle {
            Ok(h) => h,
            Err(e) => std::thread::spawn(move || Err(anyhow!("cannot start the victim: {e}"))),
        };
        Self { stop, handle }
    }

    fn stop(self) -> Result<VictimResult> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| anyhow!("the victim thread panicked"))?
    }
}

fn victim_loop(stop: &AtomicBool, interval: Duration) -> Result<VictimResult> {
    let len = std::num::NonZeroUsize::new(64 << 10).context("len")?;
    let mut hist = new_histogram();
    let mut total_ns = 0u64;
    let tid = nix::unistd::gettid().as_raw();
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let map = super::AnonMapping::new(len).context("victim mmap")?;
        let t1 = Instant::now();
        map.unmap().context("victim munmap")?;
        let t2 = Instant::now();
        for d in [t1 - t0, t2 - t1] {
            let ns = d.as_nanos() as u64;
            total_ns += ns;
            hist.saturating_record(ns);
        }
        if !interval.is_zero() {
            std::thread::sleep(interval);
        }
    }
    Ok(VictimResult {
        hist,
        total_ns,
        tid,
    })
}
