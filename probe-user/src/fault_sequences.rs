//! Whole fault sequences, fact by fact in the order the probes see them, through the
//! kernel-side decisions (`probe_common::decide`, the very functions probe-ebpf inlines) into
//! the path classification (`attribution`): which facts make which path, for TTM's
//! `ttm_bo_vm_reserve`, the blocking variant, and xe's own 6.18+ sequence (fastpath trylock,
//! `mmap_read_unlock`, `drm_exec_lock_obj`). Test-only.

use probe_common::{
    AttemptEvent, attempt_flag as af, attempt_kind, decide, fault_flag, trylock, vm_fault,
};

use crate::attribution::{AttemptPath, EpisodePath, attempt_path, episode_path};

/// One attempt as the probes build it; each method is one observed fact.
struct Attempt {
    flags: u32,
    vmf_flags: u32,
    trylock: u8,
    waits: u16,
    wait_ret: i32,
}

impl Attempt {
    /// Handler entry (`ttm_bo_vm_fault`, a driver handler, `xe_bo_cpu_fault`).
    fn enter(vmf_flags: u32) -> Self {
        Attempt {
            flags: decide::initial_flags(vmf_flags, false),
            vmf_flags,
            trylock: trylock::UNKNOWN,
            waits: 0,
            wait_ret: 0,
        }
    }

    /// The return of a trylock at a site in reserve or in xe's fastpath (`site_trylock_ret`).
    fn trylock(mut self, acquired: bool) -> Self {
        self.flags |= af::RESERVE_CALLED;
        self.trylock = decide::trylock_after(self.trylock, false, acquired as i32);
        self
    }

    /// `up_read` of the fault's mmap_lock at a site in reserve or in `xe_bo_cpu_fault`.
    fn drop_mmap_lock(mut self) -> Self {
        self.flags |= decide::drop_flag(true);
        self
    }

    /// A reservation wait (`ww_mutex_lock_interruptible` or `drm_exec_lock_obj`) returning
    /// `ret`.
    fn wait(mut self, ret: i32) -> Self {
        self.trylock = decide::trylock_at_wait(self.trylock, true, true);
        self.waits += 1;
        self.wait_ret = ret;
        self.flags |= if decide::wait_is_held(self.flags) {
            af::WAITED_HELD
        } else {
            af::WAITED_DROPPED
        };
        self
    }

    /// The handler's return: the record userspace receives (or `None`: counted as quiet).
    fn exit(mut self, ret: u32) -> Option<AttemptEvent> {
        if !decide::return_retries(attempt_kind::FAULT, ret) {
            self.flags |= af::EPISODE_END;
        }
        let quiet = decide::QuietFacts {
            attempts: 1,
            attempt_kind: attempt_kind::FAULT,
            flags: self.flags,
            trylock: self.trylock,
            waits: self.waits,
            pre_lock_wait_ns: 0,
            holder_stack_id: -1,
            ret,
            vmf_flags: self.vmf_flags,
        };
        if decide::is_quiet(&quiet) {
            return None;
        }
        Some(AttemptEvent {
            flags: self.flags,
            vmf_flags: self.vmf_flags,
            ret,
            wait_ret: self.wait_ret,
            waits: self.waits,
            trylock: self.trylock,
            ..crate::attribution::tests::ev()
        })
    }
}

const FIRST: u32 = fault_flag::ALLOW_RETRY | fault_flag::KILLABLE | fault_flag::USER;
const TRIED: u32 = FIRST | fault_flag::TRIED;
const EINTR: i32 = -4;

fn path(e: Option<AttemptEvent>) -> AttemptPath {
    e.as_ref().map_or(AttemptPath::Uncontended, attempt_path)
}

#[test]
fn uncontended_faults_are_counted_quietly_on_ttm_and_xe() {
    // TTM: reserve's trylock succeeds. xe 6.18+: the fastpath's first trylock succeeds (its
    // second trylock, of another object, does not change the attempt's result).
    assert!(
        Attempt::enter(FIRST)
            .trylock(true)
            .exit(vm_fault::NOPAGE)
            .is_none()
    );
    let xe = Attempt::enter(FIRST).trylock(true).trylock(false);
    assert!(xe.exit(vm_fault::NOPAGE).is_none());
}

#[test]
fn a_contended_first_attempt_drops_mmap_lock_and_retries() {
    // TTM stock and xe: trylock fails, mmap_lock dropped, wait, VM_FAULT_RETRY; then the
    // TRIED attempt finds the buffer free, or reserved again and waits holding mmap_lock.
    let first = Attempt::enter(FIRST)
        .trylock(false)
        .drop_mmap_lock()
        .wait(0)
        .exit(vm_fault::RETRY);
    assert_eq!(path(first), AttemptPath::RetryDropped);
    let free = Attempt::enter(TRIED).trylock(true).exit(vm_fault::NOPAGE);
    assert_eq!(path(free), AttemptPath::Uncontended);
    let held = Attempt::enter(TRIED)
        .trylock(false)
        .wait(0)
        .exit(vm_fault::NOPAGE);
    assert_eq!(path(held), AttemptPath::HeldWait);
    assert_eq!(
        episode_path(&[path(first), path(held)]),
        EpisodePath::RetryThenHeld
    );
    assert_eq!(episode_path(&[path(first), path(free)]), EpisodePath::Retry);
}

#[test]
fn the_blocking_variant_waits_holding_mmap_lock_on_the_first_attempt() {
    let e = Attempt::enter(FIRST)
        .trylock(false)
        .wait(0)
        .exit(vm_fault::NOPAGE);
    assert_eq!(path(e), AttemptPath::HeldWait);
    assert_eq!(episode_path(&[path(e)]), EpisodePath::Held);
}

#[test]
fn xe_retry_nowait_and_interrupted_waits() {
    // FAULT_FLAG_RETRY_NOWAIT: xe returns RETRY without dropping or waiting.
    let nowait = Attempt::enter(FIRST | fault_flag::RETRY_NOWAIT)
        .trylock(false)
        .exit(vm_fault::RETRY);
    assert_eq!(path(nowait), AttemptPath::RetryNowait);
    // A TRIED attempt whose drm_exec wait a signal interrupts: VM_FAULT_NOPAGE.
    let interrupted = Attempt::enter(TRIED)
        .trylock(false)
        .wait(EINTR)
        .exit(vm_fault::NOPAGE);
    assert_eq!(path(interrupted), AttemptPath::Interrupted);
    assert_eq!(episode_path(&[path(interrupted)]), EpisodePath::Interrupted);
    // Under the per-VMA lock (6.4+) nothing holds mmap_lock: the wait is not a held one.
    let vma = Attempt::enter(FIRST | fault_flag::VMA_LOCK)
        .trylock(false)
        .wait(0)
        .exit(vm_fault::RETRY);
    assert_ne!(path(vma), AttemptPath::HeldWait);
}
