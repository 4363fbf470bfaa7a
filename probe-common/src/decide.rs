//! The decisions of the kernel-side state machine (probe-ebpf `episode`), as pure functions of
//! the facts a thread's state holds. The probes call them (inlined); host unit tests exercise
//! them, and probe-user's tests drive whole TTM and xe fault sequences through them into the
//! path classification (`attribution`). Nothing here reads the kernel.

use crate::{attempt_flag, attempt_kind, fault_flag, trylock, vm_fault};

/// A handler entry while the thread's previous attempt returned VM_FAULT_RETRY: does it
/// continue that episode? Only a fault entry with FAULT_FLAG_TRIED is its retry; anything
/// else means the retry never came (the episode ends without it).
#[inline(always)]
pub fn entry_continues_episode(kind: u8, vmf_flags: u32) -> bool {
    kind == attempt_kind::FAULT && vmf_flags & fault_flag::TRIED != 0
}

/// Flags an attempt starts with, from the fault's `vmf->flags`.
#[inline(always)]
pub fn initial_flags(vmf_flags: u32, pre_lock_wait: bool) -> u32 {
    let mut flags = 0;
    if vmf_flags & fault_flag::VMA_LOCK != 0 {
        flags |= attempt_flag::UNDER_VMA_LOCK;
    }
    if pre_lock_wait {
        flags |= attempt_flag::PRE_LOCK_WAIT;
    }
    flags
}

/// The trylock state after a trylock returned `ret`: the first result of an attempt, seen
/// outside a reservation wait, is kept (a lock call's own trylocks do not count).
#[inline(always)]
pub fn trylock_after(current: u8, in_wait: bool, ret: i32) -> u8 {
    if in_wait || current != trylock::UNKNOWN {
        return current;
    }
    if ret != 0 {
        trylock::ACQUIRED
    } else {
        trylock::FAILED
    }
}

/// The trylock state when a reservation wait begins in reserve (or at a site in it): on
/// kernels where the trylock cannot be probed (inlined before 5.16) a wait there means it
/// failed; where it is probed, its own observation stands.
#[inline(always)]
pub fn trylock_at_wait(current: u8, in_reserve: bool, trylock_probed: bool) -> u8 {
    if current == trylock::UNKNOWN && in_reserve && !trylock_probed {
        trylock::FAILED
    } else {
        current
    }
}

/// Whether a reservation wait beginning now holds mmap_lock: no drop of this mm's mmap_lock
/// was observed for it, and the fault is not under the per-VMA lock.
#[inline(always)]
pub fn wait_is_held(flags: u32) -> bool {
    flags & (attempt_flag::DROPPED_IN_RESERVE | attempt_flag::UNDER_VMA_LOCK) == 0
}

/// The flag an observed drop of the fault's mmap_lock sets: before the reservation wait
/// (inside reserve, or xe's drop before its drm_exec wait), or elsewhere in the handler (a
/// fence wait).
#[inline(always)]
pub fn drop_flag(in_reserve: bool) -> u32 {
    if in_reserve {
        attempt_flag::DROPPED_IN_RESERVE
    } else {
        attempt_flag::DROPPED_OUTSIDE_RESERVE
    }
}

/// Whether the outermost handler's return `ret` leaves the episode open for a retry.
#[inline(always)]
pub fn return_retries(kind: u8, ret: u32) -> bool {
    kind == attempt_kind::FAULT && ret & vm_fault::RETRY != 0
}

/// The facts that decide whether an episode is quiet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuietFacts {
    pub attempts: u16,
    pub attempt_kind: u8,
    pub flags: u32,
    pub trylock: u8,
    pub waits: u16,
    pub pre_lock_wait_ns: u64,
    pub holder_stack_id: i32,
    pub ret: u32,
    pub vmf_flags: u32,
}

/// A quiet episode (`QuietKey`): one fault attempt that called reserve (or xe's fastpath),
/// got the trylock, returned without error and observed nothing else. It is counted in the
/// kernel instead of sent as a record.
#[inline(always)]
pub fn is_quiet(f: &QuietFacts) -> bool {
    f.attempts == 1
        && f.attempt_kind == attempt_kind::FAULT
        && f.flags == attempt_flag::RESERVE_CALLED | attempt_flag::EPISODE_END
        && f.trylock == trylock::ACQUIRED
        && f.waits == 0
        && f.pre_lock_wait_ns == 0
        && f.holder_stack_id < 0
        && f.ret & vm_fault::ERROR_MASK == 0
        && f.vmf_flags & fault_flag::TRIED == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt_flag as af;

    #[test]
    fn only_a_tried_fault_continues_a_retried_episode() {
        assert!(entry_continues_episode(
            attempt_kind::FAULT,
            fault_flag::TRIED
        ));
        assert!(!entry_continues_episode(
            attempt_kind::FAULT,
            fault_flag::ALLOW_RETRY
        ));
        assert!(!entry_continues_episode(
            attempt_kind::ACCESS,
            fault_flag::TRIED
        ));
    }

    #[test]
    fn the_first_trylock_outside_a_wait_is_kept() {
        assert_eq!(trylock_after(trylock::UNKNOWN, false, 1), trylock::ACQUIRED);
        assert_eq!(trylock_after(trylock::UNKNOWN, false, 0), trylock::FAILED);
        // xe's fastpath has a second trylock; the first result stands.
        assert_eq!(trylock_after(trylock::FAILED, false, 1), trylock::FAILED);
        assert_eq!(trylock_after(trylock::UNKNOWN, true, 0), trylock::UNKNOWN);
        assert_eq!(
            trylock_at_wait(trylock::UNKNOWN, true, false),
            trylock::FAILED
        );
        assert_eq!(
            trylock_at_wait(trylock::UNKNOWN, true, true),
            trylock::UNKNOWN
        );
        assert_eq!(
            trylock_at_wait(trylock::ACQUIRED, true, false),
            trylock::ACQUIRED
        );
    }

    #[test]
    fn a_wait_holds_mmap_lock_unless_it_was_dropped_or_the_vma_lock_is_used() {
        assert!(wait_is_held(0));
        assert!(wait_is_held(
            af::RESERVE_CALLED | af::DROPPED_OUTSIDE_RESERVE
        ));
        assert!(!wait_is_held(drop_flag(true)));
        assert!(!wait_is_held(initial_flags(fault_flag::VMA_LOCK, false)));
        assert_eq!(initial_flags(0, true), af::PRE_LOCK_WAIT);
    }

    #[test]
    fn quiet_means_one_clean_uncontended_attempt() {
        let quiet = QuietFacts {
            attempts: 1,
            attempt_kind: attempt_kind::FAULT,
            flags: af::RESERVE_CALLED | af::EPISODE_END,
            trylock: trylock::ACQUIRED,
            holder_stack_id: -1,
            ret: vm_fault::NOPAGE,
            ..QuietFacts::default()
        };
        assert!(is_quiet(&quiet));
        for not in [
            QuietFacts {
                attempts: 2,
                ..quiet
            },
            QuietFacts {
                trylock: trylock::UNKNOWN,
                ..quiet
            },
            QuietFacts { waits: 1, ..quiet },
            QuietFacts {
                pre_lock_wait_ns: 5,
                ..quiet
            },
            QuietFacts {
                holder_stack_id: 0,
                ..quiet
            },
            QuietFacts {
                ret: vm_fault::SIGBUS,
                ..quiet
            },
            QuietFacts {
                vmf_flags: fault_flag::TRIED,
                ..quiet
            },
            QuietFacts {
                flags: quiet.flags | af::DROPPED_OUTSIDE_RESERVE,
                ..quiet
            },
            QuietFacts {
                attempt_kind: attempt_kind::ACCESS,
                ..quiet
            },
        ] {
            assert!(!is_quiet(&not), "{not:?}");
        }
        assert!(return_retries(attempt_kind::FAULT, vm_fault::RETRY));
        assert!(!return_retries(attempt_kind::ACCESS, vm_fault::RETRY));
    }
}
