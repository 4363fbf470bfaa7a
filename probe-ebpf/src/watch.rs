//! Collateral stalls: tasks waiting for an mm's mmap_lock while a TTM fault of that mm sleeps
//! on a reservation holding it. One state machine, keyed by `&mm->mmap_lock`:
//!
//! * a watch is created by the first TTM attempt of an mm and then kept (the LRU map bounds
//!   them): the mms that take TTM faults are few (compositor, GL/Vulkan clients), and a fault
//!   that queues for mmap_lock before it reaches the handler must be seen waiting even when no
//!   other TTM fault of the mm is in progress at that moment. A thread's faults look the watch
//!   up only every `WATCH_CHECK_EPISODES` episodes (to re-create it if the LRU evicted it) and
//!   at every held wait, not at every fault. Whenever no waiter and no held wait is left, the
//!   watch is rebased (new generation, times relative to now), so its packed sums never grow
//!   with the watch's age;
//! * waiters add themselves to a packed (count, sum of begin times) word with one atomic add,
//!   so a holder's single load is always consistent;
//! * holders in a held reservation wait are counted, and the time with at least one holder is
//!   accumulated, so each waiter can tell how much of its wait a held reservation wait covered.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::bindings::BPF_NOEXIST;
use probe_common::{LCB_F_READ, MmWatch, WAITER_COUNT_SHIFT, WaiterState, stat};

use crate::{
    maps::{MM_WATCH, WAITERS, bump},
    mem::put,
};

/// Atomic add on a u64 in a map value, result unused (BPF_XADD: every kernel and BPF cpu
/// version; fetching variants need cpu v3 and 5.12+). Followed by [`load`] where the new value
/// matters: two CPUs updating at the same instant may both see the final value, which can only
/// make a deletion or a coverage transition happen twice or late, never corrupt a count.
#[inline(always)]
fn add(p: *mut u64, v: u64) {
    // SAFETY: p points into a map value, which lives as long as the program may use it, and
    // u64 map fields are 8-byte aligned.
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, v);
    }
}

#[inline(always)]
fn load(p: *const u64) -> u64 {
    // SAFETY: as for add.
    unsafe { core::ptr::read_volatile(p) }
}

/// The watch of `lock`, created if the mm has none (its first TTM fault, or after the LRU
/// evicted it). `None` only when the map refuses the insert.
#[inline(always)]
pub fn get_or_create(lock: u64, now: u64) -> Option<*mut MmWatch> {
    if lock == 0 {
        return None;
    }
    if let Some(w) = MM_WATCH.get_ptr_mut(lock) {
        return Some(w);
    }
    let mut fresh = core::mem::MaybeUninit::<MmWatch>::uninit();
    crate::mem::zero(fresh.as_mut_ptr());
    // SAFETY: zeroed, so a valid MmWatch; used in place, not moved.
    let fresh = unsafe { &mut *fresh.as_mut_ptr() };
    put(&mut fresh.base_ns, now);
    // Another CPU may win the race; either way an entry exists afterwards.
    #[allow(clippy::needless_borrows_for_generic_args)] // by value would copy it (see `mem`)
    let _ = MM_WATCH.insert(lock, &*fresh, BPF_NOEXIST as u64);
    let w = MM_WATCH.get_ptr_mut(lock);
    if w.is_none() {
        bump(stat::WATCH_MAP_FULL);
    }
    w
}

/// Starts a new generation when the watch is idle (no waiter, no held reservation wait):
/// relative times restart from `now`. Nothing else refers to the old generation then: a
/// fault takes the generation when its held wait begins, which blocks rebasing.
#[inline(always)]
unsafe fn rebase_if_idle(w: *mut MmWatch, now: u64) {
    // SAFETY: the caller passes a valid map value pointer.
    unsafe {
        if load(&raw const (*w).waiters) >> WAITER_COUNT_SHIFT == 0
            && load(&raw const (*w).holders) == 0
        {
            (*w).waiters = 0;
            (*w).covered_ns = 0;
            (*w).base_ns = now;
        }
    }
}

/// A held reservation wait starts: returns the waiter snapshot and the watch generation
/// (`base_ns`, which cannot change until [`held_wait_end`]), or `None` without a watch.
#[inline(always)]
pub fn held_wait_begin(lock: u64, now: u64) -> Option<(u64, u64)> {
    let w = get_or_create(lock, now)?;
    // SAFETY: valid map value pointer.
    unsafe {
        add(&raw mut (*w).holders, 1);
        if load(&raw const (*w).holders) == 1 {
            (*w).cover_start_ns = now;
        }
        Some((load(&raw const (*w).waiters), (*w).base_ns))
    }
}

/// A held reservation wait ends: returns (collateral ns, waiters) for the waits overlapping
/// `[start, now)`.
#[inline(always)]
pub fn held_wait_end(lock: u64, base: u64, snapshot: u64, start: u64, now: u64) -> (u64, u64) {
    match MM_WATCH.get_ptr_mut(lock) {
        Some(w) => unsafe {
            // SAFETY: valid map value pointer.
            let current = load(&raw const (*w).waiters);
            add(&raw mut (*w).holders, u64::MAX);
            if load(&raw const (*w).holders) == 0 {
                let covered = now.saturating_sub((*w).cover_start_ns);
                add(&raw mut (*w).covered_ns, covered);
            }
            if (*w).base_ns != base {
                return (0, 0);
            }
            probe_common::collateral_from_snapshots(
                snapshot,
                current,
                start.saturating_sub(base),
                now.saturating_sub(base),
            )
        },
        None => (0, 0),
    }
}

#[inline(always)]
fn coverage(w: *const MmWatch, now: u64) -> u64 {
    // SAFETY: valid map value pointer.
    unsafe {
        let open = if (*w).holders > 0 {
            now.saturating_sub((*w).cover_start_ns)
        } else {
            0
        };
        (*w).covered_ns + open
    }
}

/// `lock:contention_begin` / rwsem slowpath entry. One map lookup unless `lock` is watched.
#[inline(always)]
pub fn waiter_begin(tid: u32, lock: u64, lock_flags: u32, now: u64) {
    let Some(w) = MM_WATCH.get_ptr_mut(lock) else {
        return;
    };
    // SAFETY: valid map value pointer.
    let base = unsafe { (*w).base_ns };
    let mut state = core::mem::MaybeUninit::<WaiterState>::uninit();
    crate::mem::zero(state.as_mut_ptr());
    // SAFETY: zeroed, so a valid WaiterState; used in place, not moved.
    let state = unsafe { &mut *state.as_mut_ptr() };
    put(&mut state.mm_lock, lock);
    put(&mut state.watch_base_ns, base);
    put(&mut state.begin_ns, now);
    put(&mut state.covered_at_begin_ns, coverage(w, now));
    put(&mut state.lock_flags, lock_flags);
    #[allow(clippy::needless_borrows_for_generic_args)] // by value would copy it (see `mem`)
    let inserted = WAITERS.insert(tid, &*state, 0);
    if inserted.is_err() {
        bump(stat::WAITER_MAP_FULL);
        return;
    }
    let packed = (1u64 << WAITER_COUNT_SHIFT) + now.saturating_sub(base);
    // SAFETY: valid map value pointer.
    unsafe { add(&raw mut (*w).waiters, packed) };
}

/// A read wait for `lock` that ended at most `pre_lock_link_ns` before `now`, with no fault
/// completed since: the mmap_lock acquisition of the fault now entering a TTM handler.
/// Consumed (removed) when found.
#[inline(always)]
pub fn take_preceding_read_wait(tid: u32, lock: u64, now: u64) -> Option<(u64, u64)> {
    let st = WAITERS.get_ptr(tid)?;
    // SAFETY: valid map value pointer.
    let w = unsafe { *st };
    if w.end_ns == 0 || w.mm_lock != lock {
        return None;
    }
    let _ = WAITERS.remove(tid);
    if now.saturating_sub(w.end_ns) > crate::maps::config!(pre_lock_link_ns)
        || crate::kernel::current_faults() != w.faults_at_end
    {
        // Too long ago, or a fault completed since: that wait belonged to something else.
        return None;
    }
    Some((w.begin_ns, w.end_ns))
}

/// Drops whatever waiter record a thread has (thread exit).
#[inline(always)]
pub fn forget_waiter(tid: u32) {
    let _ = WAITERS.remove(tid);
}

pub struct WaiterEnd {
    pub state: WaiterState,
    pub held_overlap_ns: u64,
}

/// `lock:contention_end` / rwsem slowpath return. One map lookup unless this task waits on a
/// watched lock.
#[inline(always)]
pub fn waiter_end(tid: u32, lock: u64, now: u64) -> Option<WaiterEnd> {
    let st = WAITERS.get_ptr_mut(tid)?;
    // SAFETY: valid map value pointer; copied before it changes.
    let state = unsafe { *st };
    if state.end_ns != 0 || (lock != 0 && state.mm_lock != lock) {
        // Already finished, or the end of a nested contention (the rwsem's own wait_lock).
        return None;
    }
    // `lock` is 0 from the rwsem slowpaths' return probe, which has no argument to give.
    if state.lock_flags & LCB_F_READ != 0 {
        // Keep a finished read wait for the fault that may follow (see episode::begin).
        let faults = crate::kernel::current_faults();
        // SAFETY: valid map value pointer.
        unsafe {
            (*st).end_ns = now;
            (*st).faults_at_end = faults;
        }
        crate::episode::note_pre_wait(tid);
    } else {
        let _ = WAITERS.remove(tid);
    }
    let mut held_overlap_ns = 0;
    if let Some(w) = MM_WATCH.get_ptr_mut(state.mm_lock) {
        // SAFETY: valid map value pointer.
        unsafe {
            if (*w).base_ns == state.watch_base_ns {
                held_overlap_ns = coverage(w, now).saturating_sub(state.covered_at_begin_ns);
                let packed = (1u64 << WAITER_COUNT_SHIFT)
                    + state.begin_ns.saturating_sub(state.watch_base_ns);
                add(&raw mut (*w).waiters, packed.wrapping_neg());
                rebase_if_idle(w, now);
            }
        }
    }
    Some(WaiterEnd {
        state,
        held_overlap_ns,
    })
}
