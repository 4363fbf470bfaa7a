//! The lab's independent observer: tracefs kprobes, the x86 `exceptions:page_fault_user`
//! tracepoint and `lock:contention_begin/end`, set up by a shell script in the guest (no BPF, nothing shared with ttmlat), and
//! the parser that turns the trace buffer into facts about each TTM fault attempt and episode.
//! Lab tests compare ttmlat's recordings with these facts.

use std::collections::BTreeMap;

/// Guest shell that creates the observer's kprobe events in group `ttmobs`, filtered to tasks
/// whose comm matches `comm_glob`, and enables them with `page_fault_user` (the exception's
/// entry, before mmap_lock is taken) and the lock contention events (before 5.19: a kprobe on
/// `rwsem_down_read_slowpath`). Return probes get maxactive 256 so no sleeping thread is
/// missed. The trace clock is CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`.
pub fn setup_script(comm_glob: &str) -> String {
    format!(
        r#"TR=/sys/kernel/tracing
echo 16384 > $TR/buffer_size_kb
echo mono > $TR/trace_clock
cat >> $TR/kprobe_events <<'EOF'
p:ttmobs/fault ttm_bo_vm_fault
r256:ttmobs/fault_ret ttm_bo_vm_fault ret=$retval:x64
p:ttmobs/reserve ttm_bo_vm_reserve
r256:ttmobs/reserve_ret ttm_bo_vm_reserve ret=$retval:x64
p:ttmobs/upread up_read sem=%di:x64
p:ttmobs/lockint ww_mutex_lock_interruptible lock=%di:x64
p:ttmobs/hmf handle_mm_fault flags=%dx:x32
r256:ttmobs/hmf_ret handle_mm_fault ret=$retval:x64
EOF
# Before 5.19 there are no lock contention tracepoints: a read wait for mmap_lock is the entry
# of rwsem_down_read_slowpath.
if [ -e $TR/events/lock/contention_begin ]; then
  OBS_EVENTS="exceptions/page_fault_user lock/contention_begin lock/contention_end"
else
  echo 'p:ttmobs/rwsem_read rwsem_down_read_slowpath sem=%di:x64' >> $TR/kprobe_events
  OBS_EVENTS="exceptions/page_fault_user"
fi
echo 'comm ~ "{comm_glob}"' > $TR/events/ttmobs/filter
for e in $OBS_EVENTS; do
  echo 'comm ~ "{comm_glob}"' > $TR/events/$e/filter
  echo 1 > $TR/events/$e/enable
done
echo 1 > $TR/events/ttmobs/enable
"#
    )
}

/// Guest shell that stops the observer and saves the trace and the kprobe hit/miss profile.
pub fn collect_script(out_dir: &str) -> String {
    format!(
        r#"echo 0 > $TR/events/ttmobs/enable
for e in $OBS_EVENTS; do
  echo 0 > $TR/events/$e/enable
done
cat $TR/trace > {out_dir}/trace.txt
cat $TR/kprobe_profile > {out_dir}/kprobe_profile.txt
"#
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    pub tid: u32,
    /// Trace clock timestamp in nanoseconds (microsecond resolution).
    pub ts_ns: u64,
    pub name: String,
    pub ret: Option<u64>,
    /// `flags=0x..` of the `hmf` (handle_mm_fault) entry.
    pub flags: Option<u64>,
    /// `contention_begin` of a read acquisition ("(flags=READ)").
    pub read_wait: bool,
}

/// A `name=value` argument of a trace line, decimal or 0x-hex.
fn numeric_arg(args: &str, name: &str) -> Option<u64> {
    args.split_whitespace()
        .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| {
            v.strip_prefix("0x")
                .map_or_else(|| v.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
        })
}

/// Parses tracefs `trace` text: "<comm>-<tid> [cpu] flags ts: <event>: ... ret=0x..".
pub fn parse_trace(text: &str) -> Vec<TraceEvent> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let (task, rest) = line.split_once(" [")?;
            let (_, tid) = task.trim().rsplit_once('-')?;
            let tid: u32 = tid.parse().ok()?;
            // "...: 12.345678: fault_ret: (...) ret=0x100"
            let (head, after_ts) = rest.split_once(": ")?;
            let ts_ns = parse_timestamp(head.rsplit(' ').next()?)?;
            let (name, args) = after_ts.split_once(':')?;
            Some(TraceEvent {
                tid,
                ts_ns,
                name: name.trim().to_string(),
                ret: numeric_arg(args, "ret"),
                flags: numeric_arg(args, "flags"),
                read_wait: args.contains("flags=READ"),
            })
        })
        .collect()
}

/// "12.345678" (seconds, up to 9 decimals) → nanoseconds.
fn parse_timestamp(s: &str) -> Option<u64> {
    let (secs, frac) = s.split_once('.')?;
    if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let scale = 10u64.pow(9 - frac.len() as u32);
    secs.parse::<u64>()
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(frac.parse::<u64>().ok()? * scale)
}

const VM_FAULT_RETRY: u64 = 0x400;
/// FAULT_FLAG_TRIED (include/linux/mm_types.h; the same value from 5.x to 7.x).
const FAULT_FLAG_TRIED: u64 = 0x20;

/// One call of ttm_bo_vm_reserve as the observer saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReserveCall {
    /// The attempt follows an attempt of the same thread that returned RETRY (FAULT_FLAG_TRIED).
    pub retry_attempt: bool,
    /// up_read was called before the reservation wait started.
    pub dropped_before_wait: bool,
    /// ww_mutex_lock_interruptible was called: the trylock failed.
    pub waited: bool,
    pub ret: u64,
}

impl ReserveCall {
    pub fn returned_retry(&self) -> bool {
        self.ret & VM_FAULT_RETRY != 0
    }
}

/// What the observer saw of a set of threads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub fault_entries: u64,
    pub fault_returns: u64,
    /// Fault returns without VM_FAULT_RETRY: completed episodes.
    pub completed_faults: u64,
    pub reserve_calls: Vec<ReserveCall>,
    /// Episodes whose RETRY was not followed by a retry entering a TTM handler (ttmlat's
    /// `retry-no-handler`): the retry returned without one, or the thread went back to user
    /// space (a new exception) or ended (in the trace) first.
    pub retry_no_handler: u64,
    /// Of those: the retry did happen (handle_mm_fault with FAULT_FLAG_TRIED right after the
    /// RETRY) and returned without entering a TTM handler: the page was mapped meanwhile.
    pub tried_without_handler: u64,
    /// Completed faults, each from its first handler entry to the return that completed it.
    pub episodes: Vec<ObservedEpisode>,
}

/// One TTM fault as the observer timed it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedEpisode {
    /// First `ttm_bo_vm_fault` entry → the return without VM_FAULT_RETRY.
    pub handler_ns: u64,
    /// ttmlat's definition: from the fault's own read wait for a lock after its exception entry
    /// and before the handler (mmap_lock: nothing else is taken for reading on that path), if
    /// it began after the first TTM fault the observer saw (ttmlat watches an mm from its first
    /// TTM fault on), else from the first handler entry; to the same return.
    pub from_wait_ns: u64,
    /// The fault's exception entry (`page_fault_user`) → the same return: includes the wait for
    /// mmap_lock before the handler and between retries. `None` when no exception entry was
    /// seen since the thread's previous fault episode (the tracepoint is missing).
    pub from_exception_ns: Option<u64>,
}

impl Observed {
    /// Latencies by ttmlat's definition ([`ObservedEpisode::from_wait_ns`]), sorted.
    pub fn from_wait_sorted(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.episodes.iter().map(|e| e.from_wait_ns).collect();
        v.sort_unstable();
        v
    }

    /// Exception-to-return latencies, sorted; `None` if any episode lacks its exception entry.
    pub fn from_exception_sorted(&self) -> Option<Vec<u64>> {
        let mut v = self
            .episodes
            .iter()
            .map(|e| e.from_exception_ns)
            .collect::<Option<Vec<_>>>()?;
        v.sort_unstable();
        Some(v)
    }
}

/// The value of rank ceil(q·n) (1-based) of sorted `v`: the percentile HdrHistogram reports.
pub fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    percentile_band(sorted, q, 0).map(|(v, _)| v)
}

/// The values `slack` ranks below and above [`percentile`]'s (clamped): the range a percentile
/// of the same samples can take when up to `slack` of them are measured differently. Under TCG
/// a vCPU can stall for milliseconds between two probes of the same kernel event, so two
/// observers of the same faults disagree wildly on a few of them, and a percentile of a
/// bimodal distribution can jump between modes on one such sample.
pub fn percentile_band(sorted: &[u64], q: f64, slack: usize) -> Option<(u64, u64)> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    let lo = rank.saturating_sub(slack);
    let hi = (rank + slack).min(sorted.len() - 1);
    Some((sorted[lo], sorted[hi]))
}

/// The `n` largest of `sorted`: when each of `n` events lies inside a distinct one of the
/// timed intervals in `sorted`, the k-th largest event is at most the k-th largest of these, so
/// their percentiles bound the events' percentiles from above. `None` if there are fewer than
/// `n` intervals, when no such bound exists.
pub fn slowest(sorted: &[u64], n: usize) -> Option<&[u64]> {
    sorted.len().checked_sub(n).map(|skip| &sorted[skip..])
}

/// Folds the per-thread event sequences into attempts and reserve calls.
pub fn observe(events: &[TraceEvent]) -> Observed {
    #[derive(Default)]
    struct Thread {
        last_fault_retry: bool,
        in_fault_is_retry: bool,
        reserve: Option<ReserveCall>,
        /// The latest exception entry outside an episode.
        exception_ts: Option<u64>,
        /// The first read wait since that exception entry.
        wait_ts: Option<u64>,
        /// (first handler entry, start by ttmlat's definition, exception entry) of the open
        /// episode.
        episode: Option<(u64, u64, Option<u64>)>,
        /// A TRIED handle_mm_fault after a RETRY is running: whether it entered a TTM handler.
        hmf_tried: Option<bool>,
    }
    let mut threads: BTreeMap<u32, Thread> = BTreeMap::new();
    let mut obs = Observed::default();
    let mut first_fault_seen = false;
    for e in events {
        let t = threads.entry(e.tid).or_default();
        match e.name.as_str() {
            "page_fault_user" => {
                if t.last_fault_retry {
                    // A new exception after a RETRY: the retry did not happen (a signal sent the
                    // thread back to user space).
                    obs.retry_no_handler += 1;
                    t.last_fault_retry = false;
                    t.episode = None;
                }
                if t.episode.is_none() {
                    t.exception_ts = Some(e.ts_ns);
                    t.wait_ts = None;
                }
            }
            "hmf" if t.last_fault_retry && e.flags.is_some_and(|f| f & FAULT_FLAG_TRIED != 0) => {
                t.hmf_tried = Some(false);
            }
            "hmf_ret" => {
                let retry_entered_ttm = t.hmf_tried.take();
                if retry_entered_ttm == Some(false) {
                    obs.tried_without_handler += 1;
                    obs.retry_no_handler += 1;
                    t.last_fault_retry = false;
                    t.episode = None;
                }
            }
            "contention_begin" | "rwsem_read"
                if (e.read_wait || e.name == "rwsem_read")
                    && first_fault_seen
                    && t.episode.is_none()
                    && t.exception_ts.is_some()
                    && t.wait_ts.is_none() =>
            {
                t.wait_ts = Some(e.ts_ns);
            }
            "fault" => {
                obs.fault_entries += 1;
                first_fault_seen = true;
                if let Some(saw) = t.hmf_tried.as_mut() {
                    *saw = true;
                }
                t.in_fault_is_retry = t.last_fault_retry;
                if t.episode.is_none() {
                    let start = t.wait_ts.take().unwrap_or(e.ts_ns);
                    t.episode = Some((e.ts_ns, start, t.exception_ts.take()));
                }
            }
            "fault_ret" => {
                obs.fault_returns += 1;
                let retry = e.ret.is_some_and(|r| r & VM_FAULT_RETRY != 0);
                if !retry {
                    obs.completed_faults += 1;
                    if let Some((entry, start, exception)) = t.episode.take() {
                        obs.episodes.push(ObservedEpisode {
                            handler_ns: e.ts_ns.saturating_sub(entry),
                            from_wait_ns: e.ts_ns.saturating_sub(start),
                            from_exception_ns: exception.map(|x| e.ts_ns.saturating_sub(x)),
                        });
                    }
                }
                t.last_fault_retry = retry;
            }
            "reserve" => {
                t.reserve = Some(ReserveCall {
                    retry_attempt: t.in_fault_is_retry,
                    ..Default::default()
                });
            }
            "upread" => {
                if let Some(r) = t.reserve.as_mut()
                    && !r.waited
                {
                    r.dropped_before_wait = true;
                }
            }
            "lockint" => {
                if let Some(r) = t.reserve.as_mut() {
                    r.waited = true;
                }
            }
            "reserve_ret" => {
                if let Some(mut r) = t.reserve.take() {
                    r.ret = e.ret.unwrap_or(0);
                    obs.reserve_calls.push(r);
                }
            }
            _ => {}
        }
    }
    // RETRY as the thread's last word in the trace: it ended (or the trace did) first.
    obs.retry_no_handler += threads.values().filter(|t| t.last_fault_retry).count() as u64;
    obs
}

/// Misses of the observer's return probes (kprobe_profile: "name hits misses").
pub fn profile_misses(profile: &str) -> u64 {
    profile
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let name = it.next()?;
            if !matches!(name, "fault_ret" | "reserve_ret") {
                return None;
            }
            it.nth(1)?.parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "\
# tracer: nop
#
   ttm-fault-0-201     [001] d.... 9.999000: page_fault_user: address=0x7f1234567000 ip=0x55d0c0ffee00 error_code=0x6
   ttm-fault-0-201     [001] d.... 9.999100: contention_begin: 00000000d0fb65c4 (flags=READ)
   ttm-fault-0-201     [001] d.... 9.999900: contention_end: 00000000d0fb65c4 (ret=0)
   ttm-fault-0-201     [001] d.... 10.000001: fault: (ttm_bo_vm_fault+0x0/0x230 [ttm])
   ttm-fault-0-201     [001] d.... 10.000002: reserve: (ttm_bo_vm_reserve+0x0/0x150 [ttm])
   ttm-fault-0-201     [001] d.... 10.000003: upread: (up_read+0x0/0x90) sem=0xffff888003d1e0a8
   ttm-fault-0-201     [001] d.... 10.000004: lockint: (ww_mutex_lock_interruptible+0x0/0xb0) lock=0xffff888004000000
   ttm-fault-0-201     [001] d.... 10.100000: reserve_ret: (ttm_bo_vm_fault+0x2d/0x230 [ttm] <- ttm_bo_vm_reserve) ret=0x400
   ttm-fault-0-201     [001] d.... 10.100001: fault_ret: (__do_fault+0x33/0x130 <- ttm_bo_vm_fault) ret=0x400
   ttm-fault-0-201     [001] d.... 10.100010: fault: (ttm_bo_vm_fault+0x0/0x230 [ttm])
   ttm-fault-0-201     [001] d.... 10.100011: reserve: (ttm_bo_vm_reserve+0x0/0x150 [ttm])
   ttm-fault-0-201     [001] d.... 10.100012: lockint: (ww_mutex_lock_interruptible+0x0/0xb0) lock=0xffff888004000000
   ttm-fault-0-201     [001] d.... 10.200000: reserve_ret: (ttm_bo_vm_fault+0x2d/0x230 [ttm] <- ttm_bo_vm_reserve) ret=0x0
   ttm-fault-0-201     [001] d.... 10.200001: fault_ret: (__do_fault+0x33/0x130 <- ttm_bo_vm_fault) ret=0x100
   ttm-fault-1-202     [000] d.... 10.000002: contention_begin: 00000000d0fb65c4 (flags=READ)
   ttm-fault-1-202     [000] d.... 10.000003: contention_end: 00000000d0fb65c4 (ret=0)
   ttm-fault-1-202     [000] d.... 10.000005: fault: (ttm_bo_vm_fault+0x0/0x230 [ttm])
   ttm-fault-1-202     [000] d.... 10.000006: reserve: (ttm_bo_vm_reserve+0x0/0x150 [ttm])
   ttm-fault-1-202     [000] d.... 10.300000: reserve_ret: (ttm_bo_vm_fault+0x2d/0x230 [ttm] <- ttm_bo_vm_reserve) ret=0x0
   ttm-fault-1-202     [000] d.... 10.300001: fault_ret: (__do_fault+0x33/0x130 <- ttm_bo_vm_fault) ret=0x100
";

    #[test]
    fn parses_events() {
        let ev = parse_trace(TRACE);
        assert_eq!(ev.len(), 20);
        assert_eq!(ev[0].tid, 201);
        assert_eq!(ev[0].name, "page_fault_user");
        assert_eq!(ev[0].ts_ns, 9_999_000_000);
        assert!(ev[1].read_wait && !ev[2].read_wait);
        assert_eq!(ev[7].name, "reserve_ret");
        assert_eq!(ev[7].ret, Some(0x400));
        assert_eq!(ev[7].ts_ns, 10_100_000_000);
    }

    #[test]
    fn folds_attempts_into_reserve_calls() {
        let obs = observe(&parse_trace(TRACE));
        assert_eq!(obs.fault_entries, 3);
        assert_eq!(obs.completed_faults, 2);
        assert_eq!(obs.reserve_calls.len(), 3);
        let first = &obs.reserve_calls[0];
        assert!(first.waited && first.dropped_before_wait && first.returned_retry());
        assert!(!first.retry_attempt);
        let second = &obs.reserve_calls[1];
        assert!(second.retry_attempt && second.waited && !second.dropped_before_wait);
        let third = &obs.reserve_calls[2];
        assert!(!third.waited && !third.retry_attempt);
    }

    #[test]
    fn times_episodes_across_retries() {
        let obs = observe(&parse_trace(TRACE));
        assert_eq!(
            obs.episodes,
            vec![
                // Thread 201: exception at 9.999, its read wait at 9.9991 came before any TTM
                // fault (ttmlat watches an mm from its first one), first entry 10.000001,
                // completed 10.200001.
                ObservedEpisode {
                    handler_ns: 200_000_000,
                    from_wait_ns: 200_000_000,
                    from_exception_ns: Some(201_001_000),
                },
                // Thread 202: no exception entry was traced, so its wait is not the fault's.
                ObservedEpisode {
                    handler_ns: 299_996_000,
                    from_wait_ns: 299_996_000,
                    from_exception_ns: None,
                },
            ]
        );
        assert_eq!(obs.from_exception_sorted(), None);
    }

    /// Thread 301: RETRY, the TRIED retry returns without entering TTM (the page was mapped
    /// meanwhile), then a new fault. Thread 302: RETRY, then a new exception (a signal came
    /// first), then a new fault. Thread 303: RETRY, then it ends. One retry-no-handler
    /// episode each, not timed.
    #[test]
    fn retries_that_never_reach_a_ttm_handler() {
        let trace = "\
   ttm-touch-301     [000] d.... 1.000000: page_fault_user: address=0x1 ip=0x1 error_code=0x6
   ttm-touch-301     [000] d.... 1.000001: hmf: (handle_mm_fault+0x0/0x290) flags=0x1255
   ttm-touch-301     [000] d.... 1.000002: fault: (ttm_bo_vm_fault+0x0/0x230 [ttm])
   ttm-touch-301     [000] d.... 1.000100: fault_ret: (__do_fault+0x33/0x130 <- ttm_bo_vm_fault) ret=0x400
   ttm-touch-301     [000] d.... 1.000200: hmf_ret: (do_user_addr_fault+0x1/0x2 <- handle_mm_fault) ret=0x400
   ttm-touch-301     [000] d.... 1.000300: hmf: (handle_mm_fault+0x0/0x290) flags=0x1275
   ttm-touch-301     [000] d.... 1.000400: hmf_ret: (do_user_addr_fault+0x1/0x2 <- handle_mm_fault) ret=0x0
   ttm-touch-301     [000] d.... 1.001000: page_fault_user: address=0x2 ip=0x1 error_code=0x6
   ttm-touch-301     [000] d.... 1.001001: hmf: (handle_mm_fault+0x0/0x290) flags=0x1255
   ttm-touch-301     [000] d.... 1.001002: fault: (ttm_bo_vm_fault+0x0/0x230 [ttm])
   ttm-touch-301     [000] d.... 1.001100: fault_ret: (__do_fault+0x33/0x130 <- ttm_bo_vm_fault) ret=0x100
   ttm-touch-302     [000] d.... 2.000000: page_fault_user: address=0x1 ip=0x1 error_code=0x6
   ttm-touch-302     [000] d.... 2.000002: fault: (ttm_bo_vm_fault+0x0/0x230 [ttm])
   ttm-touch-302     [000] d.... 2.000100: fault_ret: (__do_fault+0x33/0x130 <- ttm_bo_vm_fault) ret=0x400
   ttm-touch-302     [000] d.... 2.001000: page_fault_user: address=0x1 ip=0x1 error_code=0x6
   ttm-touch-302     [000] d.... 2.001002: fault: (ttm_bo_vm_fault+0x0/0x230 [ttm])
   ttm-touch-302     [000] d.... 2.001100: fault_ret: (__do_fault+0x33/0x130 <- ttm_bo_vm_fault) ret=0x100
";
        let mut trace = trace.to_string();
        // Thread 303: RETRY, then nothing (it exited).
        trace.push_str(
            "   ttm-touch-303     [000] d.... 3.000002: fault: (ttm_bo_vm_fault+0x0/0x230 [ttm])\n\
             ttm-touch-303     [000] d.... 3.000100: fault_ret: (__do_fault+0x33/0x130 <- ttm_bo_vm_fault) ret=0x400\n",
        );
        let obs = observe(&parse_trace(&trace));
        assert_eq!((obs.retry_no_handler, obs.tried_without_handler), (3, 1));
        assert_eq!(obs.completed_faults, 2);
        // The new faults are episodes of their own, timed from their own exception entries.
        assert_eq!(
            obs.episodes
                .iter()
                .map(|e| (e.handler_ns, e.from_exception_ns))
                .collect::<Vec<_>>(),
            vec![(98_000, Some(100_000)), (98_000, Some(100_000))]
        );
    }

    #[test]
    fn a_read_wait_after_the_first_fault_starts_the_episode() {
        let trace = "\
   ttm-fault-0-201     [001] d.... 1.000000: fault: (ttm_bo_vm_fault+0x0/0x230 [ttm])
   ttm-fault-0-201     [001] d.... 1.000100: fault_ret: (__do_fault+0x33/0x130 <- ttm_bo_vm_fault) ret=0x100
   ttm-fault-1-202     [000] d.... 2.000000: page_fault_user: address=0x7f0000001000 ip=0x1 error_code=0x6
   ttm-fault-1-202     [000] d.... 2.000010: contention_begin: 00000000d0fb65c4 (flags=READ)
   ttm-fault-1-202     [000] d.... 2.000020: contention_begin: 00000000aaaaaaaa (flags=SPIN)
   ttm-fault-1-202     [000] d.... 2.000030: contention_end: 00000000aaaaaaaa (ret=0)
   ttm-fault-1-202     [000] d.... 2.005000: contention_end: 00000000d0fb65c4 (ret=0)
   ttm-fault-1-202     [000] d.... 2.006000: fault: (ttm_bo_vm_fault+0x0/0x230 [ttm])
   ttm-fault-1-202     [000] d.... 2.007000: fault_ret: (__do_fault+0x33/0x130 <- ttm_bo_vm_fault) ret=0x100
";
        let obs = observe(&parse_trace(trace));
        assert_eq!(obs.episodes[1].handler_ns, 1_000_000);
        assert_eq!(obs.episodes[1].from_wait_ns, 6_990_000);
        assert_eq!(obs.episodes[1].from_exception_ns, Some(7_000_000));
        assert_eq!(obs.from_wait_sorted(), vec![100_000, 6_990_000]);
    }

    #[test]
    fn timestamps_and_percentiles() {
        assert_eq!(parse_timestamp("1.5"), Some(1_500_000_000));
        assert_eq!(parse_timestamp("12.000000001"), Some(12_000_000_001));
        assert_eq!(parse_timestamp("12"), None);
        assert_eq!(parse_timestamp("1.x"), None);
        let v: Vec<u64> = (1..=48).collect();
        assert_eq!(percentile(&v, 0.5), Some(24));
        assert_eq!(percentile(&v, 0.9), Some(44));
        assert_eq!(percentile(&v, 1.0), Some(48));
        assert_eq!(percentile(&[], 0.5), None);
        assert_eq!(percentile_band(&v, 0.5, 3), Some((21, 27)));
        assert_eq!(percentile_band(&v, 0.9, 5), Some((39, 48)));
        assert_eq!(percentile_band(&v, 0.01, 2), Some((1, 3)));
    }

    #[test]
    fn the_slowest_intervals_bound_the_events_they_contain() {
        // 30 faults, each inside one of 48 touches; 18 touches made no fault and were fast.
        let faults: Vec<u64> = (0..30).map(|i| 1_000 + i * 10).collect();
        let mut touches: Vec<u64> = faults.iter().map(|f| f + 5).collect();
        touches.extend(std::iter::repeat_n(3, 18));
        touches.sort_unstable();
        // The touches' own median (a fast one) is below the faults' median: no bound.
        assert!(percentile(&touches, 0.5) < percentile(&faults, 0.5));
        let top = slowest(&touches, faults.len()).unwrap();
        assert_eq!(top.len(), 30);
        for q in [0.5, 0.9, 1.0] {
            assert!(percentile(&faults, q) <= percentile(top, q));
        }
        assert_eq!(slowest(&touches, 49), None);
        assert_eq!(slowest(&touches, 48), Some(&touches[..]));
    }

    #[test]
    fn sums_return_probe_misses() {
        let p = "  fault  10  0\n  fault_ret  10  2\n  reserve_ret 9 1\n  upread 100 0\n";
        assert_eq!(profile_misses(p), 3);
    }
}
