//! The fault-episode state machine, one per thread (map `THREADS`).
//!
//! ```text
//!            handler entry (no state)                 handler return, ret & RETRY
//!   idle ─────────────────────────────▶ in attempt ─────────────────────────────▶ between
//!     ▲                                 │    ▲                                       │
//!     │  handler return, no RETRY       │    └──── handler entry with TRIED ─────────┘
//!     └─────── (emit, delete) ◀─────────┘
//!   between ── entry without TRIED / thread exit ──▶ emit Abandoned, start over / delete
//! ```
//! Inside an attempt: `ttm_bo_vm_reserve` entry/return, the trylock result, reservation waits
//! (`ww_mutex_lock*`), and this thread's `up_read(&mm->mmap_lock)` are recorded as observed
//! facts; userspace classifies the path from them.

use core::mem::MaybeUninit;

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id};
use probe_common::{
    AbandonedEvent, AttemptEvent, EventKind, QUIET_SLOTS_PER_CPU, QuietKey, ThreadState,
    attempt_flag, attempt_kind, config_flag, decide, stat, trylock,
};

use crate::{
    kernel,
    maps::{
        CONTENDED, QUIET, QUIET_COUNTS, QUIET_NEXT, RELEASES, THREADS, ZERO_STATE, active_add,
        any_active, atomic_inc, bump, config, reserve_zeroed,
    },
    mem::{self, get_name, put, set_name},
    watch,
};

pub struct Current {
    pub tid: u32,
    pub tgid: u32,
}

#[inline(always)]
pub fn current() -> Current {
    let id = bpf_get_current_pid_tgid();
    Current {
        tid: id as u32,
        tgid: (id >> 32) as u32,
    }
}

/// Userspace filters (pid, comm) and never ourselves; evaluated once per episode start.
#[inline(always)]
fn wanted<R: kernel::Read>(cur: &Current) -> bool {
    if cur.tgid == config!(self_tgid) {
        return false;
    }
    let filter_tgid = config!(filter_tgid);
    if filter_tgid != 0 && filter_tgid != cur.tgid {
        return false;
    }
    if config!(filter_comm_set) != 0 {
        // CONFIG is rewritten by the loader before load; get_name's loads are volatile.
        let want = get_name(&crate::maps::CONFIG.filter_comm);
        if R::current_comm() != want {
            return false;
        }
    }
    true
}

#[inline(always)]
fn state(tid: u32) -> Option<&'static mut ThreadState> {
    // SAFETY: the entry is only touched by its own thread (keyed by tid), and a thread runs on
    // one CPU at a time.
    THREADS.get_ptr_mut(tid).map(|p| unsafe { &mut *p })
}

/// Entry of a TTM fault handler (`vmf` = its `struct vm_fault *`) or of `ttm_bo_vm_access`
/// (`vma`, kind ACCESS).
/// `R`: how `vmf` and `vma` may be read (see `kernel::Read`).
#[inline(always)]
pub fn attempt_enter<R: kernel::Read>(kind: u8, vmf: u64, vma: u64) {
    let cur = current();
    let now = kernel::now();
    let vmf_flags = if kind == attempt_kind::FAULT {
        kernel::vmf_flags::<R>(vmf)
    } else {
        0
    };
    let st = match state(cur.tid) {
        Some(st) if st.depth > 0 => {
            // A driver handler calling another probed handler: same attempt.
            st.depth += 1;
            return;
        }
        Some(st) => {
            if st.between_attempts == 0 {
                // The thread's entry, idle since its last episode ended: reused in place, so
                // a fault costs no hash-map insert and delete (thread exit deletes it).
                if !wanted::<R>(&cur) {
                    return;
                }
                begin_episode(st, now);
            } else if !decide::entry_continues_episode(kind, vmf_flags) {
                // The retry never came: close the old episode, start a new one.
                emit_abandoned::<R>(&cur, st);
                begin_episode(st, now);
            }
            st
        }
        None => {
            if !wanted::<R>(&cur) {
                return;
            }
            // Inserted from an all-zero map value: a ThreadState built on the stack would
            // not fit beside this program's other locals.
            let Some(zero) = ZERO_STATE.get(0) else {
                bump(stat::THREAD_MAP_FULL);
                return;
            };
            if THREADS.insert(cur.tid, zero, 0).is_err() {
                bump(stat::THREAD_MAP_FULL);
                return;
            }
            let Some(st) = state(cur.tid) else {
                bump(stat::THREAD_MAP_FULL);
                return;
            };
            begin_episode(st, now);
            // A wait that ended before this thread had an entry could not be noted.
            st.pre_wait_pending = 1;
            st
        }
    };
    let vma = if kind == attempt_kind::FAULT {
        kernel::vmf_vma::<R>(vmf)
    } else {
        vma
    };
    if st.attempts == 0 {
        // A file_operations struct belongs to one module for as long as the module is
        // loaded: the name read for it last time is still its name.
        let fops = kernel::vma_fops::<R>(vma);
        if fops == 0 || fops != st.driver_fops {
            set_name(&mut st.driver, kernel::driver_name(fops));
            st.driver_fops = fops;
        }
    }
    st.mm = kernel::vma_mm::<R>(vma);
    st.mm_lock = kernel::mm_lock(st.mm);
    if st.attempts == 0
        && kind == attempt_kind::FAULT
        && st.pre_wait_pending != 0
        && let Some((begin, end)) = take_pre_wait(st, cur.tid, now)
    {
        // The fault queued for mmap_lock before reaching the handler: that is part of its
        // latency (and the stall a held reservation wait inflicts on sibling faults).
        st.episode_start_ns = begin;
        st.pre_lock_wait_ns = end.saturating_sub(begin);
    }
    st.depth = 1;
    active_add(1);
    st.between_attempts = 0;
    st.attempts = st.attempts.saturating_add(1);
    st.attempt_kind = kind;
    st.attempt_start_ns = now;
    st.vmf_flags = vmf_flags;
    st.flags = decide::initial_flags(vmf_flags, st.pre_lock_wait_ns != 0);
    if st.watched_lock != st.mm_lock || st.watch_check == 0 {
        // The mm's watch must exist for its waiters to be followed; looked up once every
        // WATCH_CHECK_EPISODES episodes of this thread, not at every fault.
        if watch::get_or_create(st.mm_lock, now).is_some() {
            st.watched_lock = st.mm_lock;
            st.watch_check = WATCH_CHECK_EPISODES;
        }
    } else if st.attempts == 1 {
        st.watch_check -= 1;
    }
}

/// See `watch`: how many episodes a thread's faults go without looking up their mm's watch.
const WATCH_CHECK_EPISODES: u32 = 64;

#[inline(always)]
fn take_pre_wait(st: &mut ThreadState, tid: u32, now: u64) -> Option<(u64, u64)> {
    st.pre_wait_pending = 0;
    watch::take_preceding_read_wait(tid, st.mm_lock, now)
}

/// A new episode: everything reset but what is kept across episodes (the driver-name cache
/// and the pending pre-lock wait).
#[inline(always)]
fn begin_episode(st: &mut ThreadState, now: u64) {
    let driver = get_name(&st.driver);
    let driver_fops = st.driver_fops;
    let pre_wait_pending = st.pre_wait_pending;
    let watched_lock = st.watched_lock;
    let watch_check = st.watch_check;
    mem::zero(st as *mut ThreadState);
    st.watched_lock = watched_lock;
    st.watch_check = watch_check;
    st.episode_start_ns = now;
    st.holder_stack_id = -1;
    set_name(&mut st.driver, driver);
    st.driver_fops = driver_fops;
    st.pre_wait_pending = pre_wait_pending;
}

/// `watch::waiter_end` kept a finished read wait of this thread: its next TTM fault must look.
#[inline(always)]
pub fn note_pre_wait(tid: u32) {
    if let Some(st) = state(tid) {
        st.pre_wait_pending = 1;
    }
}

/// Return of the outermost handler: emit the attempt, then end or suspend the episode.
#[inline(always)]
/// `R`: how the current task may be read (see `kernel::Read`).
pub fn attempt_exit<R: kernel::Read>(ret: u32) {
    let cur = current();
    let now = kernel::now();
    let Some(st) = state(cur.tid) else {
        return;
    };
    if st.depth == 0 {
        bump(stat::ORPHAN_RETURNS);
        return;
    }
    st.depth -= 1;
    if st.depth > 0 {
        return;
    }
    active_add(u64::MAX);
    if st.in_wait != 0 {
        // The wait's kretprobe was missed; close it here so the numbers stay bounded.
        st.flags |= attempt_flag::UNBALANCED;
        wait_exit_inner(st, now, 0);
    }
    let fence_drop_ns = if st.flags & attempt_flag::DROPPED_OUTSIDE_RESERVE != 0 {
        now.saturating_sub(st.fence_drop_ns)
    } else {
        0
    };
    st.ep_wait_held_ns += st.wait_held_ns;
    st.ep_wait_dropped_ns += st.wait_dropped_ns;
    st.ep_collateral_ns += st.collateral_ns;
    let retry = decide::return_retries(st.attempt_kind, ret);
    if !retry {
        st.flags |= attempt_flag::EPISODE_END;
    }
    if retry || !count_quiet::<R>(&cur, st, ret, now) {
        emit_attempt::<R>(&cur, st, ret, now, fence_drop_ns);
    }
    if retry {
        st.between_attempts = 1;
        st.last_attempt_end_ns = now;
        reset_attempt(st);
    } else {
        // Idle until the thread's next TTM fault (or its exit).
        st.between_attempts = 0;
    }
}

/// A quiet episode (`probe_common::QuietKey`: one attempt, reserve called, trylock acquired,
/// nothing else observed) is counted in `QUIET` instead of sent. Returns false when the
/// episode is not quiet or could not be counted (map full): then it is sent as a record.
#[inline(always)]
fn count_quiet<R: kernel::Read>(cur: &Current, st: &ThreadState, ret: u32, now: u64) -> bool {
    let facts = decide::QuietFacts {
        attempts: st.attempts,
        attempt_kind: st.attempt_kind,
        flags: st.flags,
        trylock: st.trylock,
        waits: st.waits,
        pre_lock_wait_ns: st.pre_lock_wait_ns,
        holder_stack_id: st.holder_stack_id,
        ret,
        vmf_flags: st.vmf_flags,
    };
    if config!(flags) & config_flag::QUIET_IN_KERNEL == 0 || !decide::is_quiet(&facts) {
        return false;
    }
    // Every field is written (QuietKey has no padding), in place: no zeroing, no copy.
    let mut key = MaybeUninit::<QuietKey>::uninit();
    // SAFETY: the fields are plain integers and byte arrays; each is written before the key
    // is read.
    let key = unsafe {
        let k = key.as_mut_ptr();
        (&raw mut (*k).tgid).write(cur.tgid);
        let latency = now.saturating_sub(st.episode_start_ns);
        (&raw mut (*k).bucket).write(probe_common::latency_bucket(latency));
        set_name(&mut (*k).comm, R::current_comm());
        set_name(&mut (*k).driver, get_name(&st.driver));
        &*k
    };
    // This CPU's slot for the key: found through the per-CPU index `QUIET`, or taken now. A
    // CPU's slots are taken and written only by programs on that CPU, and two programs that
    // end episodes never run interleaved on one CPU: they are kprobes (preemption off), or
    // trampolines on a kernel that does not preempt them (userspace clears QUIET_IN_KERNEL
    // otherwise).
    let index = QUIET.get_ptr_mut(key);
    if let Some(i) = index {
        // SAFETY: a valid map value pointer (this CPU's value).
        let i = unsafe { *i };
        if i != 0 {
            return match QUIET_COUNTS.get_ptr_mut(i - 1) {
                Some(slot) => {
                    // SAFETY: a valid, 8-byte aligned map value pointer.
                    atomic_inc(unsafe { &raw mut (*slot).count });
                    true
                }
                None => false,
            };
        }
    }
    let Some(next) = QUIET_NEXT.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a valid map value pointer (this CPU's value).
    let n = unsafe { *next };
    if n >= QUIET_SLOTS_PER_CPU {
        return false;
    }
    // SAFETY: a helper without arguments.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let taken = cpu.wrapping_mul(QUIET_SLOTS_PER_CPU).wrapping_add(n);
    let Some(slot) = QUIET_COUNTS.get_ptr_mut(taken) else {
        return false;
    };
    // The key first, the count (0 until now) last: userspace reads a key only once its count
    // is non-zero.
    // Field by field in words (a struct copy becomes a `memmove` byte loop).
    // SAFETY: a valid map value pointer; QuietKey is plain data.
    let k = unsafe { &mut (*slot).key };
    put(&mut k.tgid, key.tgid);
    put(&mut k.bucket, key.bucket);
    set_name(&mut k.comm, get_name(&key.comm));
    set_name(&mut k.driver, get_name(&key.driver));
    let indexed = match index {
        Some(i) => {
            // SAFETY: as above.
            unsafe { *i = taken + 1 };
            true
        }
        None => QUIET.insert(key, taken + 1, 0).is_ok(),
    };
    if !indexed {
        // The index is full: the slot stays at count 0, for this CPU's next key.
        return false;
    }
    // SAFETY: as above.
    unsafe { *next = n + 1 };
    // SAFETY: a valid, 8-byte aligned map value pointer.
    atomic_inc(unsafe { &raw mut (*slot).count });
    true
}

#[inline(always)]
fn reset_attempt(st: &mut ThreadState) {
    // One store each (`mem::put`): plain zero stores to neighbouring fields are merged into
    // a byte-loop memset.
    put(&mut st.flags, 0);
    put(&mut st.resv, 0);
    put(&mut st.wait_start_ns, 0);
    put(&mut st.wait_end_ns, 0);
    put(&mut st.release_ns, 0);
    put(&mut st.release_tid, 0);
    put(&mut st.release_tgid, 0);
    put(&mut st.fence_drop_ns, 0);
    put(&mut st.wait_held_ns, 0);
    put(&mut st.wait_dropped_ns, 0);
    put(&mut st.collateral_ns, 0);
    put(&mut st.waiters_snapshot, 0);
    put(&mut st.reserve_ret, 0);
    put(&mut st.wait_ret, 0);
    put(&mut st.in_reserve, 0);
    put(&mut st.in_wait, 0);
    put(&mut st.wait_is_held, 0);
    put(&mut st.waits, 0);
    put(&mut st.collateral_waiters, 0);
    put(&mut st.trylock, trylock::UNKNOWN);
    put(&mut st.holder_tid, 0);
    put(&mut st.holder_tgid, 0);
    set_name(&mut st.holder_comm, [0; 2]);
    put(&mut st.holder_stack_id, -1);
}

#[inline(always)]
fn in_attempt(tid: u32) -> Option<&'static mut ThreadState> {
    if !any_active() {
        return None;
    }
    state(tid).filter(|st| st.depth > 0)
}

/// `ttm_bo_vm_reserve` entry.
#[inline(always)]
pub fn reserve_enter() {
    if let Some(st) = in_attempt(current().tid) {
        st.in_reserve = 1;
        st.flags |= attempt_flag::RESERVE_CALLED;
    }
}

/// `ttm_bo_vm_reserve` return.
#[inline(always)]
pub fn reserve_exit(ret: u32) {
    if let Some(st) = in_attempt(current().tid) {
        st.in_reserve = 0;
        st.reserve_ret = ret;
    }
}

/// Where a fact was observed: at a call site inside a TTM function (the site says where the
/// thread is), or on a system-wide vmlinux function (the per-thread state must say it).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// At a call site in `ttm_bo_vm_reserve` (or, for waits, in the access function).
    InReserveSite,
    /// At a call site in a fault handler, outside reserve.
    InHandlerSite,
    /// On the vmlinux function itself, for every caller in the system.
    SystemWide,
}

/// `ww_mutex_trylock` return (5.16+): the result of `dma_resv_trylock` inside reserve.
#[inline(always)]
pub fn trylock_exit(ret: i32, seen: Seen) {
    let Some(st) = in_attempt(current().tid) else {
        return;
    };
    if seen == Seen::InReserveSite {
        // The site is in reserve: this is also the observation that reserve was called.
        st.flags |= attempt_flag::RESERVE_CALLED;
    } else if st.in_reserve == 0 {
        return;
    }
    st.trylock = decide::trylock_after(st.trylock, st.in_wait != 0, ret);
}

/// Whether a reservation wait of this thread belongs to the attempt: inside reserve, or
/// anywhere inside `ttm_bo_vm_access`.
#[inline(always)]
fn wait_belongs(st: &ThreadState) -> bool {
    st.in_wait == 0 && (st.in_reserve != 0 || st.attempt_kind == attempt_kind::ACCESS)
}

/// `ww_mutex_lock_interruptible` / `ww_mutex_lock` entry: a reservation wait begins.
#[inline(always)]
pub fn wait_enter(lock: u64, seen: Seen) {
    let Some(st) = in_attempt(current().tid) else {
        return;
    };
    let belongs = match seen {
        Seen::SystemWide => wait_belongs(st),
        _ => st.in_wait == 0,
    };
    if !belongs {
        return;
    }
    let now = kernel::now();
    st.in_wait = 1;
    st.wait_start_ns = now;
    st.resv = lock;
    st.waits = st.waits.saturating_add(1);
    // Kernels without an out-of-line trylock: a lock call inside reserve means it failed.
    st.trylock = decide::trylock_at_wait(
        st.trylock,
        st.in_reserve != 0 || seen == Seen::InReserveSite,
        config!(flags) & probe_common::config_flag::TRYLOCK_PROBED != 0,
    );
    let owner = kernel::ww_mutex_owner(lock);
    if owner != 0 {
        let who = kernel::task_id(owner);
        st.holder_tid = who.pid;
        st.holder_tgid = who.tgid;
        set_name(&mut st.holder_comm, who.comm);
        st.flags |= attempt_flag::HOLDER_KNOWN;
    }
    if config!(flags) & probe_common::config_flag::HOLDER_STACKS != 0 {
        // Waiters of this lock: its releases are recorded while there is one, so each
        // waiter finds the release that handed the lock on, not only the first holder's.
        // (A plain update: two CPUs registering at the same instant may miss one count,
        // which ends the recording early for the other; `--holder-stack` only.)
        match CONTENDED.get_ptr_mut(lock) {
            // SAFETY: valid map value pointer.
            Some(n) => unsafe { *n += 1 },
            None => {
                let _ = CONTENDED.insert(lock, 1u64, 0);
            }
        }
    }
    let held = decide::wait_is_held(st.flags);
    st.wait_is_held = held as u32;
    st.watch_base_ns = 0;
    if held && let Some((snapshot, base)) = watch::held_wait_begin(st.mm_lock, now) {
        st.waiters_snapshot = snapshot;
        st.watch_base_ns = base;
    }
}

/// `ww_mutex_lock*` return.
#[inline(always)]
pub fn wait_exit(ret: i32) {
    let Some(st) = in_attempt(current().tid) else {
        return;
    };
    if st.in_wait == 0 {
        return;
    }
    wait_exit_inner(st, kernel::now(), ret);
}

#[inline(always)]
fn wait_exit_inner(st: &mut ThreadState, now: u64, ret: i32) {
    let took = now.saturating_sub(st.wait_start_ns);
    if config!(flags) & probe_common::config_flag::HOLDER_STACKS != 0 {
        match CONTENDED.get_ptr_mut(st.resv) {
            // SAFETY: valid map value pointer.
            Some(n) if unsafe { *n } > 1 => unsafe { *n -= 1 },
            _ => {
                let _ = CONTENDED.remove(st.resv);
            }
        }
        if let Some(rel) = RELEASES.get_ptr(st.resv) {
            // SAFETY: valid map value pointer.
            let rel = unsafe { *rel };
            if rel.released_ns >= st.wait_start_ns {
                st.holder_stack_id = rel.stack_id;
                st.release_ns = rel.released_ns;
                st.release_tid = rel.tid;
                st.release_tgid = rel.tgid;
            }
        }
    }
    st.in_wait = 0;
    st.wait_ret = ret;
    st.wait_end_ns = now;
    if st.wait_is_held != 0 {
        st.wait_held_ns += took;
        st.flags |= attempt_flag::WAITED_HELD;
        if st.watch_base_ns != 0 {
            // Registered as a holder at the wait's start (no watch: nothing to undo).
            let (collateral, waiters) = watch::held_wait_end(
                st.mm_lock,
                st.watch_base_ns,
                st.waiters_snapshot,
                st.wait_start_ns,
                now,
            );
            st.collateral_ns += collateral;
            st.collateral_waiters = st.collateral_waiters.saturating_add(waiters as u16);
        }
    } else {
        st.wait_dropped_ns += took;
        st.flags |= attempt_flag::WAITED_DROPPED;
    }
    st.wait_is_held = 0;
}

/// `up_read(sem)`: this thread released a semaphore; a drop of its fault's mmap_lock when
/// `sem` is `&mm->mmap_lock`. System-wide (the `up_read` hook), this is the hottest probe:
/// one array load while no TTM attempt is in progress, one hash lookup otherwise.
#[inline(always)]
pub fn read_unlock(sem: u64, seen: Seen) {
    if !any_active() {
        return;
    }
    let Some(st) = state(current().tid) else {
        return;
    };
    if st.depth == 0 || sem != st.mm_lock || st.mm_lock == 0 {
        return;
    }
    let in_reserve = match seen {
        Seen::InReserveSite => true,
        Seen::InHandlerSite => false,
        Seen::SystemWide => st.in_reserve != 0,
    };
    st.flags |= decide::drop_flag(in_reserve);
    st.fence_drop_ns = kernel::now();
}

/// Thread exit: an episode still open (last attempt returned RETRY, no retry came) is
/// reported as abandoned; the entry is deleted either way.
#[inline(always)]
pub fn thread_exit() {
    let cur = current();
    if let Some(st) = state(cur.tid) {
        if st.depth != 0 {
            // Exiting inside a handler means its return probe was missed.
            active_add(u64::MAX);
        }
        if st.between_attempts != 0 || st.depth != 0 {
            emit_abandoned::<kernel::Probe>(&cur, st);
        }
        let _ = THREADS.remove(cur.tid);
    }
    // A thread dying while it waits: take it off the waiter set, then forget it.
    let _ = watch::waiter_end(cur.tid, 0, kernel::now());
    watch::forget_waiter(cur.tid);
}

#[inline(always)]
fn emit_attempt<R: kernel::Read>(
    cur: &Current,
    st: &ThreadState,
    ret: u32,
    now: u64,
    fence_drop_ns: u64,
) {
    let Some(mut entry) = reserve_zeroed::<AttemptEvent>() else {
        return;
    };
    // SAFETY: the reserved record, zeroed: a valid AttemptEvent.
    let e = unsafe { &mut *entry.as_mut_ptr() };
    e.kind = EventKind::Attempt as u32;
    e.flags = st.flags;
    e.tid = cur.tid;
    e.tgid = cur.tgid;
    e.episode_start_ns = st.episode_start_ns;
    e.attempt_start_ns = st.attempt_start_ns;
    e.attempt_end_ns = now;
    e.mm = st.mm;
    e.resv = st.resv;
    e.wait_held_ns = st.wait_held_ns;
    e.wait_dropped_ns = st.wait_dropped_ns;
    e.fence_drop_ns = fence_drop_ns;
    e.collateral_ns = st.collateral_ns;
    e.ep_wait_held_ns = st.ep_wait_held_ns;
    e.ep_wait_dropped_ns = st.ep_wait_dropped_ns;
    e.ep_collateral_ns = st.ep_collateral_ns;
    e.pre_lock_wait_ns = st.pre_lock_wait_ns;
    e.vmf_flags = st.vmf_flags;
    e.ret = ret;
    e.reserve_ret = st.reserve_ret;
    e.wait_ret = st.wait_ret;
    e.attempt = st.attempts;
    e.waits = st.waits;
    e.collateral_waiters = st.collateral_waiters;
    e.attempt_kind = st.attempt_kind;
    e.trylock = st.trylock;
    e.holder_tid = st.holder_tid;
    e.holder_tgid = st.holder_tgid;
    set_name(&mut e.holder_comm, get_name(&st.holder_comm));
    set_name(&mut e.comm, R::current_comm());
    set_name(&mut e.driver, get_name(&st.driver));
    e.holder_stack_id = st.holder_stack_id;
    e.release_tid = st.release_tid;
    e.release_tgid = st.release_tgid;
    e.wait_start_ns = st.wait_start_ns;
    e.wait_end_ns = st.wait_end_ns;
    e.release_ns = st.release_ns;
    e.mm_lock = st.mm_lock;
    entry.submit(crate::maps::submit_flags());
}

#[inline(always)]
fn emit_abandoned<R: kernel::Read>(cur: &Current, st: &ThreadState) {
    let Some(mut entry) = reserve_zeroed::<AbandonedEvent>() else {
        return;
    };
    // SAFETY: the reserved record, zeroed: a valid AbandonedEvent.
    let e = unsafe { &mut *entry.as_mut_ptr() };
    e.kind = EventKind::Abandoned as u32;
    e.attempts = st.attempts as u32;
    e.tid = cur.tid;
    e.tgid = cur.tgid;
    e.episode_start_ns = st.episode_start_ns;
    e.last_attempt_end_ns = st.last_attempt_end_ns;
    e.ep_wait_held_ns = st.ep_wait_held_ns;
    e.ep_wait_dropped_ns = st.ep_wait_dropped_ns;
    e.ep_collateral_ns = st.ep_collateral_ns;
    set_name(&mut e.comm, R::current_comm());
    entry.submit(crate::maps::submit_flags());
}
