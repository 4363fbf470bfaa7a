//! The lab's independent observer: tracefs kprobes set up by a shell script in the guest (no
//! BPF, nothing shared with ttmlat), and the parser that turns the trace buffer into facts
//! about each TTM fault attempt. Lab tests compare ttmlat's recordings with these facts.

use std::collections::BTreeMap;

/// Guest shell that creates the observer's kprobe events in group `ttmobs`, filtered to tasks
/// whose comm matches `comm_glob`, and enables them. Return probes get maxactive 256 so no
/// sleeping thread is missed.
pub fn setup_script(comm_glob: &str) -> String {
    format!(
        r#"TR=/sys/kernel/tracing
echo 16384 > $TR/buffer_size_kb
cat >> $TR/kprobe_events <<'EOF'
p:ttmobs/fault ttm_bo_vm_fault
r256:ttmobs/fault_ret ttm_bo_vm_fault ret=$retval:x64
p:ttmobs/reserve ttm_bo_vm_reserve
r256:ttmobs/reserve_ret ttm_bo_vm_reserve ret=$retval:x64
p:ttmobs/upread up_read sem=%di:x64
p:ttmobs/lockint ww_mutex_lock_interruptible lock=%di:x64
EOF
echo 'comm ~ "{comm_glob}"' > $TR/events/ttmobs/filter
echo 1 > $TR/events/ttmobs/enable
"#
    )
}

/// Guest shell that stops the observer and saves the trace and the kprobe hit/miss profile.
pub fn collect_script(out_dir: &str) -> String {
    format!(
        r#"echo 0 > $TR/events/ttmobs/enable
cat $TR/trace > {out_dir}/trace.txt
cat $TR/kprobe_profile > {out_dir}/kprobe_profile.txt
"#
    )
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    pub tid: u32,
    pub name: String,
    pub ret: Option<u64>,
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
            let after_ts = rest.split_once(": ")?.1;
            let (name, args) = after_ts.split_once(':')?;
            let ret = args
                .split_whitespace()
                .find_map(|a| a.strip_prefix("ret="))
                .and_then(|v| {
                    v.strip_prefix("0x")
                        .map_or_else(|| v.parse().ok(), |h| u64::from_str_radix(h, 16).ok())
                });
            Some(TraceEvent {
                tid,
                name: name.trim().to_string(),
                ret,
            })
        })
        .collect()
}

const VM_FAULT_RETRY: u64 = 0x400;

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
}

/// Folds the per-thread event sequences into attempts and reserve calls.
pub fn observe(events: &[TraceEvent]) -> Observed {
    #[derive(Default)]
    struct Thread {
        last_fault_retry: bool,
        in_fault_is_retry: bool,
        reserve: Option<ReserveCall>,
    }
    let mut threads: BTreeMap<u32, Thread> = BTreeMap::new();
    let mut obs = Observed::default();
    for e in events {
        let t = threads.entry(e.tid).or_default();
        match e.name.as_str() {
            "fault" => {
                obs.fault_entries += 1;
                t.in_fault_is_retry = t.last_fault_retry;
            }
            "fault_ret" => {
                obs.fault_returns += 1;
                let retry = e.ret.is_some_and(|r| r & VM_FAULT_RETRY != 0);
                if !retry {
                    obs.completed_faults += 1;
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
   ttm-fault-1-202     [000] d.... 10.000005: fault: (ttm_bo_vm_fault+0x0/0x230 [ttm])
   ttm-fault-1-202     [000] d.... 10.000006: reserve: (ttm_bo_vm_reserve+0x0/0x150 [ttm])
   ttm-fault-1-202     [000] d.... 10.300000: reserve_ret: (ttm_bo_vm_fault+0x2d/0x230 [ttm] <- ttm_bo_vm_reserve) ret=0x0
   ttm-fault-1-202     [000] d.... 10.300001: fault_ret: (__do_fault+0x33/0x130 <- ttm_bo_vm_fault) ret=0x100
";

    #[test]
    fn parses_events() {
        let ev = parse_trace(TRACE);
        assert_eq!(ev.len(), 15);
        assert_eq!(ev[0].tid, 201);
        assert_eq!(ev[4].name, "reserve_ret");
        assert_eq!(ev[4].ret, Some(0x400));
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
    fn sums_return_probe_misses() {
        let p = "  fault  10  0\n  fault_ret  10  2\n  reserve_ret 9 1\n  upread 100 0\n";
        assert_eq!(profile_misses(p), 3);
    }
}
