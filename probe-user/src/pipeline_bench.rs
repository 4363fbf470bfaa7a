//! `ttmlat bench-pipeline`: pushes synthetic ring-buffer records (attempts, waiters, abandoned
//! episodes, with tids, processes and holders churning far beyond every cap) through the same
//! decode → aggregate path as a live session, and prints throughput and peak memory at each
//! decade: the userspace pipeline's cost and its bound, measured without a kernel.

use std::time::Instant;

use anyhow::Result;
use probe_common::{
    AbandonedEvent, AttemptEvent, EventKind, WaiterEvent, attempt_flag as af, attempt_kind,
    fault_flag, trylock, vm_fault,
};

use crate::{aggregate::Aggregate, events};

#[derive(clap::Args, Debug, Clone)]
pub struct PipelineArgs {
    /// Records to push through.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
}

/// xorshift64*: deterministic, dependency-free pseudo-random numbers for synthetic load.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn bytes_of<T>(v: &T) -> &[u8] {
    // SAFETY: viewing a #[repr(C)] plain-old-data record as bytes, as the kernel writes it.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

fn comm(n: u64) -> [u8; 16] {
    let mut c = [0u8; 16];
    let s = format!("task-{}", n % 100_000);
    c[..s.len().min(15)].copy_from_slice(&s.as_bytes()[..s.len().min(15)]);
    c
}

/// Feeds `n` synthetic records into `agg`, calling `at_decade` after 10^k records.
pub fn feed(n: u64, agg: &mut Aggregate, mut at_decade: impl FnMut(u64, &Aggregate)) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut next_report = 10u64;
    for i in 1..=n {
        let r = rng.next();
        let tid = (r % 1_000_000) as u32 + 1;
        let tgid = tid / 4 + 1;
        let t = i * 1000;
        let bytes: Vec<u8> = match r % 10 {
            0 => bytes_of(&WaiterEvent {
                kind: EventKind::Waiter as u32,
                lock_flags: 4,
                tid,
                tgid,
                mm_lock: 0xffff_8880_0000_0000 + u64::from(tgid),
                begin_ns: t,
                end_ns: t + r % 1_000_000,
                held_overlap_ns: r % 500_000,
                comm: comm(r >> 20),
            })
            .to_vec(),
            1 => bytes_of(&AbandonedEvent {
                kind: EventKind::Abandoned as u32,
                attempts: 1,
                tid,
                tgid,
                episode_start_ns: t,
                last_attempt_end_ns: t + 10,
                ep_wait_held_ns: 0,
                ep_wait_dropped_ns: 5,
                ep_collateral_ns: 0,
                comm: comm(r >> 20),
            })
            .to_vec(),
            k => {
                let contended = k >= 7;
                let second = k == 9;
                bytes_of(&AttemptEvent {
                    kind: EventKind::Attempt as u32,
                    flags: af::RESERVE_CALLED
                        | if contended { af::HOLDER_KNOWN } else { 0 }
                        | if contended && !second {
                            af::DROPPED_IN_RESERVE | af::WAITED_DROPPED
                        } else {
                            0
                        }
                        | if !contended || second {
                            af::EPISODE_END
                        } else {
                            0
                        },
                    tid,
                    tgid,
                    episode_start_ns: t,
                    attempt_start_ns: t,
                    attempt_end_ns: t + r % 10_000_000,
                    mm: u64::from(tgid),
                    resv: r,
                    wait_held_ns: 0,
                    wait_dropped_ns: if contended { r % 1_000_000 } else { 0 },
                    fence_drop_ns: 0,
                    collateral_ns: 0,
                    ep_wait_held_ns: 0,
                    ep_wait_dropped_ns: if contended { r % 1_000_000 } else { 0 },
                    ep_collateral_ns: 0,
                    pre_lock_wait_ns: 0,
                    vmf_flags: fault_flag::ALLOW_RETRY | if second { fault_flag::TRIED } else { 0 },
                    ret: if contended && !second {
                        vm_fault::RETRY
                    } else {
                        vm_fault::NOPAGE
                    },
                    reserve_ret: 0,
                    wait_ret: 0,
                    attempt: if second { 2 } else { 1 },
                    waits: u16::from(contended),
                    collateral_waiters: 0,
                    attempt_kind: attempt_kind::FAULT,
                    trylock: if contended {
                        trylock::FAILED
                    } else {
                        trylock::ACQUIRED
                    },
                    holder_tid: (r >> 32) as u32,
                    holder_tgid: (r >> 40) as u32,
                    holder_comm: comm(r >> 40),
                    comm: comm(u64::from(tgid)),
                    driver: *b"amdgpu\0\0\0\0\0\0\0\0\0\0",
                    holder_stack_id: -1,
                    ..Default::default()
                })
                .to_vec()
            }
        };
        if let Ok(rec) = events::decode(&bytes) {
            agg.add(&rec);
        }
        if i == next_report {
            at_decade(i, agg);
            next_report = next_report.saturating_mul(10);
        }
    }
}

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

pub fn run(args: &PipelineArgs) -> Result<()> {
    let mut agg = Aggregate::new();
    let start = Instant::now();
    println!(
        "{:>12} {:>12} {:>14} {:>10} {:>8} {:>8} {:>8}",
        "records", "seconds", "records/s", "peak RSS", "procs", "waiters", "holders"
    );
    feed(args.events, &mut agg, |n, agg| {
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{n:>12} {secs:>12.2} {:>14.0} {:>7} MiB {:>8} {:>8} {:>8}",
            n as f64 / secs.max(1e-9),
            peak_rss_kib() / 1024,
            agg.processes.len(),
            agg.waiters.len(),
            agg.holders().len()
        );
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{MAX_HOLDERS, MAX_PROCESSES, MAX_WAITERS};

    #[test]
    fn every_map_stays_within_its_cap_under_churn() {
        let mut agg = Aggregate::new();
        feed(200_000, &mut agg, |_, _| {});
        assert!(
            agg.processes.len() <= MAX_PROCESSES + 1,
            "{}",
            agg.processes.len()
        );
        assert!(
            agg.waiters.len() <= MAX_WAITERS + 1,
            "{}",
            agg.waiters.len()
        );
        assert!(agg.holders().len() <= MAX_HOLDERS + 1);
        // Nothing was dropped on the way: every record was counted somewhere.
        assert!(agg.attempts_total() > 100_000);
        assert!(agg.waiter_records > 10_000);
    }
}
