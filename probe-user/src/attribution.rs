//! Which path the kernel took, decided from what the probes observed (never from flags or
//! code layout alone). One function per fact: [`attempt_path`] for an attempt,
//! [`episode_path`] for a whole fault.

use probe_common::{AttemptEvent, attempt_flag as af, attempt_kind, fault_flag, trylock, vm_fault};
use serde::{Deserialize, Serialize};

/// The path one attempt took through the reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttemptPath {
    /// The trylock succeeded (or no wait was needed).
    Uncontended,
    /// Trylock failed; this thread released mmap_lock, waited without it, returned RETRY.
    RetryDropped,
    /// Trylock failed with FAULT_FLAG_RETRY_NOWAIT: RETRY without waiting.
    RetryNowait,
    /// Trylock failed; waited for the reservation while holding mmap_lock.
    HeldWait,
    /// A held wait interrupted by a signal (VM_FAULT_NOPAGE).
    Interrupted,
    /// mmap_lock dropped outside reserve (fence wait in ttm_bo_vm_fault_reserved), RETRY.
    FenceRetry,
    /// The handler failed (SIGBUS/SIGSEGV/OOM).
    Error,
    /// `ttm_bo_vm_access` (ptrace, /proc/PID/mem) without waiting.
    AccessUncontended,
    /// `ttm_bo_vm_access` waited for the reservation with mmap_lock held.
    AccessHeldWait,
    /// A handler that never called ttm_bo_vm_reserve.
    NoReserve,
}

impl AttemptPath {
    pub const ALL: [AttemptPath; 10] = [
        AttemptPath::Uncontended,
        AttemptPath::RetryDropped,
        AttemptPath::RetryNowait,
        AttemptPath::HeldWait,
        AttemptPath::Interrupted,
        AttemptPath::FenceRetry,
        AttemptPath::Error,
        AttemptPath::AccessUncontended,
        AttemptPath::AccessHeldWait,
        AttemptPath::NoReserve,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttemptPath::Uncontended => "uncontended",
            AttemptPath::RetryDropped => "retry-dropped",
            AttemptPath::RetryNowait => "retry-nowait",
            AttemptPath::HeldWait => "held-wait",
            AttemptPath::Interrupted => "interrupted",
            AttemptPath::FenceRetry => "fence-retry",
            AttemptPath::Error => "error",
            AttemptPath::AccessUncontended => "access",
            AttemptPath::AccessHeldWait => "access-held-wait",
            AttemptPath::NoReserve => "no-reserve",
        }
    }

    /// Whether the reservation was contended in this attempt.
    pub fn contended(self) -> bool {
        matches!(
            self,
            AttemptPath::RetryDropped
                | AttemptPath::RetryNowait
                | AttemptPath::HeldWait
                | AttemptPath::Interrupted
                | AttemptPath::AccessHeldWait
        )
    }
}

/// Classifies one attempt from the observed facts.
pub fn attempt_path(e: &AttemptEvent) -> AttemptPath {
    let waited_held = e.flags & af::WAITED_HELD != 0;
    if e.attempt_kind == attempt_kind::ACCESS {
        return if waited_held {
            AttemptPath::AccessHeldWait
        } else {
            AttemptPath::AccessUncontended
        };
    }
    let retry = e.ret & vm_fault::RETRY != 0;
    if e.ret & vm_fault::ERROR_MASK != 0 {
        return AttemptPath::Error;
    }
    if e.flags & af::RESERVE_CALLED == 0 {
        return AttemptPath::NoReserve;
    }
    if e.flags & af::DROPPED_IN_RESERVE != 0 {
        return AttemptPath::RetryDropped;
    }
    if waited_held {
        return if e.wait_ret != 0 || e.reserve_ret & vm_fault::NOPAGE != 0 {
            AttemptPath::Interrupted
        } else {
            AttemptPath::HeldWait
        };
    }
    let contended = e.trylock == trylock::FAILED || e.waits > 0;
    if retry && contended && e.vmf_flags & fault_flag::RETRY_NOWAIT != 0 {
        return AttemptPath::RetryNowait;
    }
    if retry && e.flags & af::DROPPED_OUTSIDE_RESERVE != 0 {
        return AttemptPath::FenceRetry;
    }
    if retry && contended {
        return AttemptPath::RetryNowait;
    }
    AttemptPath::Uncontended
}

/// The path of a whole fault episode, from the paths of its attempts in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EpisodePath {
    /// One attempt, no contention.
    Uncontended,
    /// Retried after waiting with mmap_lock dropped; the retry did not block with it held.
    Retry,
    /// Retried, and the TRIED attempt blocked on the reservation with mmap_lock held.
    RetryThenHeld,
    /// Blocked with mmap_lock held on the first attempt (blocking kernels, !ALLOW_RETRY).
    Held,
    /// A held wait was interrupted by a signal.
    Interrupted,
    /// Retried because of a fence wait, not reservation contention.
    Fence,
    /// ttm_bo_vm_access.
    Access,
    /// The handler failed.
    Error,
    /// RETRY was returned and no retry entered a TTM handler before the thread's next first
    /// fault or its exit (see the README: mostly the retry found the page mapped meanwhile).
    /// Not timed.
    /// (ttmlat 0.1 called it `abandoned`; its recordings are read under this name: see
    /// `Recording::parse`.)
    RetryNoHandler,
}

impl EpisodePath {
    pub const ALL: [EpisodePath; 9] = [
        EpisodePath::Uncontended,
        EpisodePath::Retry,
        EpisodePath::RetryThenHeld,
        EpisodePath::Held,
        EpisodePath::Interrupted,
        EpisodePath::Fence,
        EpisodePath::Access,
        EpisodePath::Error,
        EpisodePath::RetryNoHandler,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EpisodePath::Uncontended => "uncontended",
            EpisodePath::Retry => "retry",
            EpisodePath::RetryThenHeld => "retry-then-held",
            EpisodePath::Held => "held",
            EpisodePath::Interrupted => "interrupted",
            EpisodePath::Fence => "fence",
            EpisodePath::Access => "access",
            EpisodePath::Error => "error",
            EpisodePath::RetryNoHandler => "retry-no-handler",
        }
    }
}

/// Folds attempt paths (in order) into the episode path.
pub fn episode_path(paths: &[AttemptPath]) -> EpisodePath {
    let any = |p: AttemptPath| paths.contains(&p);
    if any(AttemptPath::AccessUncontended) || any(AttemptPath::AccessHeldWait) {
        return EpisodePath::Access;
    }
    if any(AttemptPath::Error) {
        return EpisodePath::Error;
    }
    if any(AttemptPath::Interrupted) {
        return EpisodePath::Interrupted;
    }
    let retried = any(AttemptPath::RetryDropped) || any(AttemptPath::RetryNowait);
    match (retried, any(AttemptPath::HeldWait)) {
        (true, true) => EpisodePath::RetryThenHeld,
        (true, false) => EpisodePath::Retry,
        (false, true) => EpisodePath::Held,
        (false, false) if any(AttemptPath::FenceRetry) => EpisodePath::Fence,
        (false, false) => EpisodePath::Uncontended,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An uncontended first attempt that called reserve; tests change what they need.
    pub(crate) fn ev() -> AttemptEvent {
        AttemptEvent {
            kind: 1,
            flags: af::RESERVE_CALLED,
            tid: 1,
            tgid: 1,
            episode_start_ns: 0,
            attempt_start_ns: 0,
            attempt_end_ns: 0,
            mm: 0,
            resv: 0,
            wait_held_ns: 0,
            wait_dropped_ns: 0,
            fence_drop_ns: 0,
            collateral_ns: 0,
            ep_wait_held_ns: 0,
            ep_wait_dropped_ns: 0,
            ep_collateral_ns: 0,
            pre_lock_wait_ns: 0,
            vmf_flags: fault_flag::ALLOW_RETRY | fault_flag::KILLABLE | fault_flag::USER,
            ret: vm_fault::NOPAGE,
            reserve_ret: 0,
            wait_ret: 0,
            attempt: 1,
            waits: 0,
            collateral_waiters: 0,
            attempt_kind: attempt_kind::FAULT,
            trylock: trylock::ACQUIRED,
            holder_tid: 0,
            holder_tgid: 0,
            holder_comm: [0; 16],
            comm: [0; 16],
            driver: [0; 16],
            holder_stack_id: -1,
            ..Default::default()
        }
    }

    #[test]
    fn stock_first_attempt_contended_is_retry_dropped() {
        let mut e = ev();
        e.trylock = trylock::FAILED;
        e.waits = 1;
        e.flags |= af::DROPPED_IN_RESERVE | af::WAITED_DROPPED;
        e.ret = vm_fault::RETRY;
        e.reserve_ret = vm_fault::RETRY;
        assert_eq!(attempt_path(&e), AttemptPath::RetryDropped);
    }

    #[test]
    fn tried_attempt_blocking_with_lock_held() {
        let mut e = ev();
        e.vmf_flags |= fault_flag::TRIED;
        e.trylock = trylock::FAILED;
        e.waits = 1;
        e.flags |= af::WAITED_HELD;
        assert_eq!(attempt_path(&e), AttemptPath::HeldWait);
        e.wait_ret = -4;
        e.reserve_ret = vm_fault::NOPAGE;
        assert_eq!(attempt_path(&e), AttemptPath::Interrupted);
    }

    #[test]
    fn fence_drop_is_not_reservation_contention() {
        let mut e = ev();
        e.flags |= af::DROPPED_OUTSIDE_RESERVE;
        e.ret = vm_fault::RETRY;
        assert_eq!(attempt_path(&e), AttemptPath::FenceRetry);
        assert!(!AttemptPath::FenceRetry.contended());
    }

    #[test]
    fn uncontended_and_errors() {
        assert_eq!(attempt_path(&ev()), AttemptPath::Uncontended);
        let mut e = ev();
        e.ret = vm_fault::SIGBUS;
        assert_eq!(attempt_path(&e), AttemptPath::Error);
        let mut e = ev();
        e.flags = 0;
        assert_eq!(attempt_path(&e), AttemptPath::NoReserve);
    }

    #[test]
    fn access_paths() {
        let mut e = ev();
        e.attempt_kind = attempt_kind::ACCESS;
        e.ret = 4096;
        assert_eq!(attempt_path(&e), AttemptPath::AccessUncontended);
        e.flags |= af::WAITED_HELD;
        assert_eq!(attempt_path(&e), AttemptPath::AccessHeldWait);
    }

    #[test]
    fn episode_paths() {
        use AttemptPath as A;
        assert_eq!(episode_path(&[A::Uncontended]), EpisodePath::Uncontended);
        assert_eq!(
            episode_path(&[A::RetryDropped, A::Uncontended]),
            EpisodePath::Retry
        );
        assert_eq!(
            episode_path(&[A::RetryDropped, A::HeldWait]),
            EpisodePath::RetryThenHeld
        );
        assert_eq!(episode_path(&[A::HeldWait]), EpisodePath::Held);
        assert_eq!(
            episode_path(&[A::RetryDropped, A::Interrupted]),
            EpisodePath::Interrupted
        );
        assert_eq!(
            episode_path(&[A::FenceRetry, A::Uncontended]),
            EpisodePath::Fence
        );
    }
}
