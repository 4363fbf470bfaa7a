// Generator of recording-0.1.0.json: NOT part of the current build (cargo compiles only
// tests/*.rs and tests/*/main.rs). It belongs in the tree of commit 24b53f6 as
// probe-user/src/fixture_0_1_0.rs, with `#[cfg(test)] mod fixture_0_1_0;` in src/main.rs;
// see README.md here.

//! THROWAWAY (not part of ttmlat): writes a recording exactly as this tree (24b53f6) writes
//! one, from synthetic ring-buffer records fed through this tree's own Aggregate, session
//! interval merging, Recording::from_aggregate, holder-stack symbolizer and Recording::write.
//! Run: FIXTURE_OUT=/path/recording-0.1.0.json cargo test --bin ttmlat fixture_0_1_0 -- --ignored

use std::io::Read;

use probe_common::{
    AbandonedEvent, AttemptEvent, EventKind, WaiterEvent, attempt_flag as af, attempt_kind,
    fault_flag, trylock, vm_fault,
};

use crate::{
    aggregate::{Aggregate, HolderStack},
    discovery::{self, ContentionSource, SymbolTable},
    events::Record,
    loader::{ProbeStats, StateEntries},
    recording::{Meta, Recording},
};

fn comm(s: &str) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..s.len()].copy_from_slice(s.as_bytes());
    c
}

/// The lab's 6.1 guest: Debian's 6.1.0-56-amd64 symbol lists (vmlinux, ttm, drm_vram_helper, bochs).
fn debian_6_1() -> SymbolTable {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/symbols/6.1.0-56-amd64");
    let mut t = SymbolTable::default();
    for m in ["vmlinux", "ttm", "drm_vram_helper", "bochs"] {
        let f = std::fs::File::open(dir.join(format!("{m}.gz"))).expect("symbols");
        let mut text = String::new();
        flate2::read::GzDecoder::new(f)
            .read_to_string(&mut text)
            .expect("gz");
        for name in text.lines() {
            t.insert(name, m);
        }
    }
    t
}

/// What Probes::load pushes to `attached` for `plan` with trampolines and --holder-stack.
fn attached(plan: &discovery::AttachPlan) -> Vec<String> {
    let mut a = Vec::new();
    for (sym, _) in &plan.fault_handlers {
        a.push(format!("kprobe:{sym}"));
        a.push(format!("kretprobe:{sym}"));
    }
    if let Some(sym) = &plan.reserve {
        a.push(format!("kprobe:{sym}"));
        a.push(format!("kretprobe:{sym}"));
    }
    if let Some(sym) = &plan.access {
        a.push(format!("kprobe:{sym}"));
        a.push(format!("kretprobe:{sym}"));
    }
    if plan.trylock.is_some() {
        a.push("fexit:ww_mutex_trylock".into());
    }
    for sym in &plan.resv_lock {
        a.push(format!("fentry:{sym}"));
        a.push(format!("fexit:{sym}"));
    }
    a.push("fentry:up_read".into());
    a.push("kprobe:ww_mutex_unlock".into());
    match &plan.contention {
        ContentionSource::Tracepoints => {
            a.push("raw_tp:contention_begin".into());
            a.push("raw_tp:contention_end".into());
        }
        ContentionSource::RwsemSlowpath(syms) => {
            for s in syms {
                a.push(format!("kprobe:{s}"));
                a.push(format!("kretprobe:{s}"));
            }
        }
        ContentionSource::Unavailable => {}
    }
    a.push("raw_tp:sched_process_exit".into());
    a
}

struct Ep {
    tid: u32,
    tgid: u32,
    comm: &'static str,
}

#[allow(clippy::too_many_arguments)]
fn att(
    p: &Ep,
    n: u16,
    flags: u32,
    ret: u32,
    start: u64,
    a_start: u64,
    end: u64,
    tl: u8,
    holder: Option<(u32, u32, &str, i32)>,
) -> AttemptEvent {
    let (htid, htgid, hcomm, hstack) = holder.unwrap_or((0, 0, "", -1));
    AttemptEvent {
        kind: EventKind::Attempt as u32,
        flags: flags
            | if holder.is_some() {
                af::HOLDER_KNOWN
            } else {
                0
            },
        tid: p.tid,
        tgid: p.tgid,
        episode_start_ns: start,
        attempt_start_ns: a_start,
        attempt_end_ns: end,
        mm: 0xffff_8880_0a1b_2c00,
        resv: 0xffff_8880_1234_5600,
        wait_held_ns: 0,
        wait_dropped_ns: 0,
        fence_drop_ns: 0,
        collateral_ns: 0,
        ep_wait_held_ns: 0,
        ep_wait_dropped_ns: 0,
        ep_collateral_ns: 0,
        pre_lock_wait_ns: 0,
        vmf_flags: fault_flag::WRITE
            | fault_flag::ALLOW_RETRY
            | fault_flag::KILLABLE
            | fault_flag::USER
            | fault_flag::INTERRUPTIBLE
            | if n > 1 { fault_flag::TRIED } else { 0 },
        ret,
        reserve_ret: 0,
        wait_ret: 0,
        attempt: n,
        waits: 0,
        collateral_waiters: 0,
        attempt_kind: attempt_kind::FAULT,
        trylock: tl,
        holder_tid: htid,
        holder_tgid: htgid,
        holder_comm: comm(hcomm),
        comm: comm(p.comm),
        driver: comm("bochs"),
        holder_stack_id: hstack,
        _pad: 0,
    }
}

fn records() -> Vec<Vec<Record>> {
    let toucher = Ep {
        tid: 4101,
        tgid: 4100,
        comm: "ttm-fault-0",
    };
    let toucher2 = Ep {
        tid: 4102,
        tgid: 4100,
        comm: "ttm-fault-1",
    };
    let touch = Ep {
        tid: 5200,
        tgid: 5200,
        comm: "ttm-touch",
    };
    let holder = Some((4200u32, 4200u32, "ttm-helper", 0i32));
    let holder2 = Some((4200u32, 4200u32, "ttm-helper", 1i32));
    let mut first = Vec::new();
    let mut second = Vec::new();
    let t0 = 1_000_000_000u64;
    // Uncontended episodes of two processes.
    for (i, lat) in [31_200u64, 48_700, 52_100, 120_400, 9_800_000]
        .iter()
        .enumerate()
    {
        let s = t0 + i as u64 * 10_000_000;
        first.push(Record::Attempt(att(
            &toucher,
            1,
            af::RESERVE_CALLED | af::EPISODE_END,
            vm_fault::NOPAGE,
            s,
            s,
            s + lat,
            trylock::ACQUIRED,
            None,
        )));
    }
    for (i, lat) in [22_000u64, 27_500, 301_000].iter().enumerate() {
        let s = t0 + 200_000_000 + i as u64 * 5_000_000;
        second.push(Record::Attempt(att(
            &touch,
            1,
            af::RESERVE_CALLED | af::EPISODE_END,
            vm_fault::NOPAGE,
            s,
            s,
            s + lat,
            trylock::ACQUIRED,
            None,
        )));
    }
    // Retry episodes: trylock failed, mmap_lock dropped in reserve, waited dropped, RETRY; the
    // TRIED attempt completes.
    for (i, (wait, lat)) in [
        (40_100_000u64, 58_560_000u64),
        (61_000_000, 65_370_000),
        (12_500_000, 14_100_000),
    ]
    .iter()
    .enumerate()
    {
        let s = t0 + 400_000_000 + i as u64 * 100_000_000;
        let mut a1 = att(
            &toucher,
            1,
            af::RESERVE_CALLED | af::DROPPED_IN_RESERVE | af::WAITED_DROPPED,
            vm_fault::RETRY,
            s,
            s,
            s + wait,
            trylock::FAILED,
            holder,
        );
        a1.wait_dropped_ns = wait - 20_000;
        a1.waits = 1;
        a1.ep_wait_dropped_ns = wait - 20_000;
        let mut a2 = att(
            &toucher,
            2,
            af::RESERVE_CALLED | af::EPISODE_END,
            vm_fault::NOPAGE,
            s,
            s + wait + 5_000,
            s + lat,
            trylock::ACQUIRED,
            None,
        );
        a2.ep_wait_dropped_ns = wait - 20_000;
        if i == 0 {
            // This one queued for mmap_lock before reaching the handler.
            a1.flags |= af::PRE_LOCK_WAIT;
            a1.pre_lock_wait_ns = 2_300_000;
            a2.flags |= af::PRE_LOCK_WAIT;
            a2.pre_lock_wait_ns = 2_300_000;
        }
        let out = if i < 2 { &mut first } else { &mut second };
        out.push(Record::Attempt(a1));
        out.push(Record::Attempt(a2));
    }
    // Retry-then-held: the TRIED attempt waits with mmap_lock held; a waiter stalls behind it.
    {
        let s = t0 + 900_000_000;
        let mut a1 = att(
            &toucher2,
            1,
            af::RESERVE_CALLED | af::DROPPED_IN_RESERVE | af::WAITED_DROPPED,
            vm_fault::RETRY,
            s,
            s,
            s + 20_000_000,
            trylock::FAILED,
            holder,
        );
        a1.wait_dropped_ns = 19_900_000;
        a1.ep_wait_dropped_ns = 19_900_000;
        a1.waits = 1;
        let mut a2 = att(
            &toucher2,
            2,
            af::RESERVE_CALLED | af::WAITED_HELD | af::EPISODE_END,
            vm_fault::NOPAGE,
            s,
            s + 20_010_000,
            s + 35_000_000,
            trylock::FAILED,
            holder2,
        );
        a2.wait_held_ns = 14_800_000;
        a2.collateral_ns = 9_000_000;
        a2.collateral_waiters = 1;
        a2.waits = 1;
        a2.ep_wait_held_ns = 14_800_000;
        a2.ep_wait_dropped_ns = 19_900_000;
        a2.ep_collateral_ns = 9_000_000;
        first.push(Record::Attempt(a1));
        first.push(Record::Attempt(a2));
        first.push(Record::Waiter(WaiterEvent {
            kind: EventKind::Waiter as u32,
            lock_flags: 0x2,
            tid: 4100,
            tgid: 4100,
            mm_lock: 0xffff_8880_0a1b_2c78,
            begin_ns: s + 25_000_000,
            end_ns: s + 35_100_000,
            held_overlap_ns: 9_000_000,
            comm: comm("ttm-stress"),
        }));
    }
    // Held: the blocking variant's first attempt waits with mmap_lock held (no ALLOW_RETRY).
    {
        let s = t0 + 1_100_000_000;
        let mut a1 = att(
            &touch,
            1,
            af::RESERVE_CALLED | af::WAITED_HELD | af::EPISODE_END,
            vm_fault::NOPAGE,
            s,
            s,
            s + 34_830_000,
            trylock::FAILED,
            holder,
        );
        a1.vmf_flags &= !fault_flag::ALLOW_RETRY;
        a1.wait_held_ns = 34_700_000;
        a1.ep_wait_held_ns = 34_700_000;
        a1.collateral_ns = 30_000_000;
        a1.ep_collateral_ns = 30_000_000;
        a1.collateral_waiters = 1;
        a1.waits = 1;
        second.push(Record::Attempt(a1));
        second.push(Record::Waiter(WaiterEvent {
            kind: EventKind::Waiter as u32,
            lock_flags: 0x4,
            tid: 5201,
            tgid: 5200,
            mm_lock: 0xffff_8880_0b00_0078,
            begin_ns: s + 4_000_000,
            end_ns: s + 34_900_000,
            held_overlap_ns: 30_000_000,
            comm: comm("ttm-touch-mmap"),
        }));
        // A waiter that waited on the lock without any held reservation wait overlapping.
        second.push(Record::Waiter(WaiterEvent {
            kind: EventKind::Waiter as u32,
            lock_flags: 0x2,
            tid: 5202,
            tgid: 5200,
            mm_lock: 0xffff_8880_0b00_0078,
            begin_ns: s + 50_000_000,
            end_ns: s + 50_400_000,
            held_overlap_ns: 0,
            comm: comm("ttm-touch-mmap"),
        }));
    }
    // Fence: mmap_lock dropped outside reserve (fence wait), RETRY, then the retry.
    {
        let s = t0 + 1_300_000_000;
        let mut a1 = att(
            &toucher,
            1,
            af::RESERVE_CALLED | af::DROPPED_OUTSIDE_RESERVE,
            vm_fault::RETRY,
            s,
            s,
            s + 3_000_000,
            trylock::ACQUIRED,
            None,
        );
        a1.fence_drop_ns = 2_900_000;
        let a2 = att(
            &toucher,
            2,
            af::RESERVE_CALLED | af::EPISODE_END,
            vm_fault::NOPAGE,
            s,
            s + 3_010_000,
            s + 3_200_000,
            trylock::ACQUIRED,
            None,
        );
        second.push(Record::Attempt(a1));
        second.push(Record::Attempt(a2));
    }
    // Access (ptrace / /proc/PID/mem).
    {
        let s = t0 + 1_400_000_000;
        let mut a1 = att(
            &touch,
            1,
            af::RESERVE_CALLED | af::EPISODE_END,
            0,
            s,
            s,
            s + 80_000,
            trylock::UNKNOWN,
            None,
        );
        a1.attempt_kind = attempt_kind::ACCESS;
        a1.vmf_flags = 0;
        second.push(Record::Attempt(a1));
    }
    // Abandoned: RETRY after a dropped wait, and the thread exited before retrying.
    {
        let s = t0 + 1_500_000_000;
        let mut a1 = att(
            &toucher2,
            1,
            af::RESERVE_CALLED | af::DROPPED_IN_RESERVE | af::WAITED_DROPPED,
            vm_fault::RETRY,
            s,
            s,
            s + 7_000_000,
            trylock::FAILED,
            holder,
        );
        a1.wait_dropped_ns = 6_900_000;
        a1.ep_wait_dropped_ns = 6_900_000;
        a1.waits = 1;
        second.push(Record::Attempt(a1));
        second.push(Record::Abandoned(AbandonedEvent {
            kind: EventKind::Abandoned as u32,
            attempts: 1,
            tid: toucher2.tid,
            tgid: toucher2.tgid,
            episode_start_ns: s,
            last_attempt_end_ns: s + 7_000_000,
            ep_wait_held_ns: 0,
            ep_wait_dropped_ns: 6_900_000,
            ep_collateral_ns: 0,
            comm: comm("ttm-fault-1"),
        }));
    }
    // An episode open across the interval boundary: first attempt in one interval, retry in
    // the next (take_interval keeps open episodes).
    {
        let s = t0 + 1_600_000_000;
        let mut a1 = att(
            &touch,
            1,
            af::RESERVE_CALLED | af::DROPPED_IN_RESERVE | af::WAITED_DROPPED,
            vm_fault::RETRY,
            s,
            s,
            s + 5_000_000,
            trylock::FAILED,
            Some((4200, 4200, "ttm-helper", 0)),
        );
        a1.wait_dropped_ns = 4_950_000;
        a1.ep_wait_dropped_ns = 4_950_000;
        a1.waits = 1;
        let mut a2 = att(
            &touch,
            2,
            af::RESERVE_CALLED | af::EPISODE_END,
            vm_fault::NOPAGE,
            s,
            s + 5_004_000,
            s + 5_300_000,
            trylock::ACQUIRED,
            None,
        );
        a2.ep_wait_dropped_ns = 4_950_000;
        first.push(Record::Attempt(a1));
        second.insert(0, Record::Attempt(a2));
    }
    vec![first, second]
}

#[test]
#[ignore = "writes the 0.1.0 fixture; run by hand"]
fn fixture_0_1_0() {
    let out = std::env::var("FIXTURE_OUT").expect("FIXTURE_OUT");
    let plan = discovery::plan(&debian_6_1(), true).expect("plan");
    // session::run_with_sink: per-interval aggregates merged into the total.
    let mut current = Aggregate::new();
    let mut total = Aggregate::new();
    for interval in records() {
        for r in &interval {
            current.add(r);
        }
        let i = current.take_interval();
        total.merge(&i);
    }
    total.merge(&current.take_interval());
    // session::symbolize_stacks, with the STACKS map and kallsyms of the lab guest replaced by
    // two fixed stacks and the symbols they fall in.
    let kallsyms = "\
ffffffff81a0c2a0 T ww_mutex_unlock
ffffffffc0412340 t ttm_bo_vm_fault\t[ttm]
ffffffffc0414100 t ttm_bo_init_reserved\t[ttm]
ffffffffc0414500 t ttm_bo_init_validate\t[ttm]
ffffffffc0430120 t drm_gem_vram_create\t[drm_vram_helper]
ffffffffc0430600 t drm_gem_vram_fill_create_dumb\t[drm_vram_helper]
ffffffff812a1000 T __do_fault
ffffffff812a5000 T do_fault
ffffffff812a9000 T __handle_mm_fault
ffffffff812aa000 T handle_mm_fault
ffffffff81090000 T do_user_addr_fault
ffffffff81c10000 T exc_page_fault
ffffffff81e00b00 T asm_exc_page_fault
ffffffff81700000 T drm_mode_create_dumb
ffffffff81701000 T drm_mode_create_dumb_ioctl
ffffffff81702000 T drm_ioctl_kernel
ffffffff81702400 T drm_ioctl
ffffffff81400000 T __x64_sys_ioctl
ffffffff81c00000 T do_syscall_64
ffffffff81e000a0 T entry_SYSCALL_64_after_hwframe
";
    let sym = crate::symbolize::Symbolizer::from_kallsyms(kallsyms);
    let stack = |id: i32| -> Vec<u64> {
        match id {
            // The helper populating its buffer: a fault of its own releases the reservation.
            0 => vec![
                0xffffffff81a0c2a4,
                0xffffffffc04123bc,
                0xffffffff812a1036,
                0xffffffff812a51c5,
                0xffffffff812a95e0,
                0xffffffff812aa0db,
                0xffffffff810901b3,
                0xffffffff81c1006d,
                0xffffffff81e00b22,
            ],
            // Creating the buffer (dumb create): the new BO's reservation released.
            _ => vec![
                0xffffffff81a0c2a4,
                0xffffffffc04141e2,
                0xffffffffc0414531,
                0xffffffffc04301a5,
                0xffffffffc0430648,
                0xffffffff8170002d,
                0xffffffff81701019,
                0xffffffff817020c7,
                0xffffffff8170252b,
                0xffffffff8140008f,
                0xffffffff81c00041,
                0xffffffff81e00116,
            ],
        }
    };
    let mut holder_stacks: Vec<HolderStack> = total
        .holder_stacks
        .iter()
        .map(|((tgid, comm, id), count)| HolderStack {
            tgid: *tgid,
            comm: comm.clone(),
            count: *count,
            frames: stack(*id).iter().map(|ip| sym.resolve(*ip)).collect(),
        })
        .collect();
    holder_stacks.sort_by(|a, b| b.count.cmp(&a.count).then(a.tgid.cmp(&b.tgid)));
    // No -p/-c filter: the run saw every process.
    let filters = std::collections::BTreeMap::new();
    let meta = Meta {
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        command_line: ["ttmlat", "record", "--duration", "10s", "--holder-stack", "--pre-lock-link", "250ms", "-o", "/work/main/target/lab/rec.json", "--label", "fixture-0.1.0"].map(String::from).to_vec(),
        kernel_release: "6.1.0-56-amd64".into(),
        kernel_version: "Linux version 6.1.0-56-amd64 (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)".into(),
        kernel_package: Some("linux-image-6.1.0-56-amd64-unsigned".into()),
        ttm_srcversion: Some("5C8C7F3BDC2E4F7A1B9E0D1".into()),
        ttm_taint: Some(String::new()),
        ttm_version: None,
        kernel_taint: Some(0),
        ttm_variant: Some("stock".into()),
        attach_points: attached(&plan),
        handlers: plan.handler_notes(),
        contention_source: format!("{:?}", plan.contention),
        drivers_seen: total.drivers.iter().cloned().collect(),
        filters,
        start_unix_ns: 1_795_000_000_000_000_000,
        end_unix_ns: 1_795_000_010_004_000_000,
        hostname: "ttmlat-lab".into(),
        label: Some("fixture-0.1.0".into()),
    };
    let stats = ProbeStats {
        ringbuf_drops: 0,
        thread_map_full: 0,
        orphan_returns: 1,
        watch_map_full: 0,
        waiter_map_full: 0,
        read_faults: 0,
        retprobe_misses: 0,
    };
    let state = StateEntries {
        threads: 0,
        waiters: 0,
        mm_watches: 2,
    };
    // session::Outcome::recording
    let mut rec = Recording::from_aggregate(meta, &total, stats, 0, state).expect("recording");
    rec.holder_stacks = holder_stacks;
    rec.write(std::path::Path::new(&out)).expect("write");
    // The old reader accepts it.
    let back = Recording::read(std::path::Path::new(&out)).expect("read back");
    assert_eq!(back, rec);
}
