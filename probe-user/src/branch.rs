//! The two paths a function takes on the result of a call it has just made, decoded from the
//! instructions after the call: `test %eax,%eax` (or `%al`) followed by `je`/`jne`, which is
//! how every Debian build of `ttm_bo_vm_reserve` (6.1–7.2, stock and the lab's blocking
//! variant) and xe's fast path test `ww_mutex_trylock`.
//!
//! Why: a kprobe on the instruction right after the call sees the result in `rax`, but the
//! kernel can only turn a kprobe into a jump (an "optimized" kprobe, no breakpoint trap and no
//! single-step) where no jump lands inside the 5 bytes it overwrites, and after the trylock
//! the `test; je` pair is followed by the success block, itself a jump target. Probing the
//! first instruction of each path instead observes the same fact, which path the code took,
//! and the hot one (the trylock succeeded) is a single long instruction the kernel optimizes.

use std::collections::BTreeSet;

/// Where the code continues after testing the call's result, as section offsets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paths {
    /// Taken when the result is non-zero (for a trylock: acquired).
    pub nonzero: u64,
    /// Taken when it is zero (not acquired).
    pub zero: u64,
}

/// Decodes `test %eax,%eax` / `test %al,%al` then `je`/`jne` (rel8 or rel32) at `at` in
/// `code`, a section's bytes. `None` for any other sequence, a displacement that carries a
/// relocation (`relocated`: section offsets of relocations), or a target outside
/// `[start, end)`, the function the call is in: then the caller keeps its probe after the call.
pub fn after_test(
    code: &[u8],
    at: u64,
    (start, end): (u64, u64),
    relocated: &BTreeSet<u64>,
) -> Option<Paths> {
    let byte = |i: u64| code.get(usize::try_from(i).ok()?).copied();
    // test r/m32, r32 (85 /r) or test r/m8, r8 (84 /r) with ModRM c0: eax/al with itself.
    if !matches!(byte(at)?, 0x84 | 0x85) || byte(at + 1)? != 0xc0 {
        return None;
    }
    let jcc = at + 2;
    let (jump_if_zero, disp_at, disp_len) = match (byte(jcc)?, byte(jcc + 1)?) {
        (0x74, _) => (true, jcc + 1, 1),
        (0x75, _) => (false, jcc + 1, 1),
        (0x0f, 0x84) => (true, jcc + 2, 4),
        (0x0f, 0x85) => (false, jcc + 2, 4),
        _ => return None,
    };
    if relocated
        .range(disp_at..disp_at + disp_len)
        .next()
        .is_some()
    {
        return None;
    }
    let next = disp_at + disp_len;
    let disp: i64 = if disp_len == 1 {
        i64::from(byte(disp_at)? as i8)
    } else {
        let mut b = [0u8; 4];
        for (i, v) in b.iter_mut().enumerate() {
            *v = byte(disp_at + i as u64)?;
        }
        i64::from(i32::from_le_bytes(b))
    };
    let target = next.checked_add_signed(disp)?;
    if !(start..end).contains(&target) || !(start..end).contains(&next) {
        return None;
    }
    Some(if jump_if_zero {
        Paths {
            nonzero: next,
            zero: target,
        }
    } else {
        Paths {
            nonzero: target,
            zero: next,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: &BTreeSet<u64> = &BTreeSet::new();

    #[test]
    fn ttm_6_12_reserve_after_its_trylock() {
        // ttm_bo_vm_reserve+0x1f..: test %eax,%eax; je +0x24; mov 0x188(%rbx),%rax
        let code = [0x85, 0xc0, 0x74, 0x24, 0x48, 0x8b, 0x83, 0x88, 0x01, 0, 0];
        let p = after_test(&code, 0, (0, 0x100), NONE).unwrap();
        assert_eq!(
            p,
            Paths {
                nonzero: 4,
                zero: 0x28
            }
        );
    }

    #[test]
    fn xe_fast_path_forms() {
        // test %eax,%eax; je rel32 (+0xcd)
        let code = [0x85, 0xc0, 0x0f, 0x84, 0xcd, 0, 0, 0];
        assert_eq!(
            after_test(&code, 0, (0, 0x200), NONE),
            Some(Paths {
                nonzero: 8,
                zero: 0xd5
            })
        );
        // test %eax,%eax; jne rel32 backwards (-0x10b) to the success block shared with the
        // first trylock.
        let mut code = vec![0u8; 0x200];
        code[0x110..0x118].copy_from_slice(&[0x85, 0xc0, 0x0f, 0x85, 0xf5, 0xfe, 0xff, 0xff]);
        assert_eq!(
            after_test(&code, 0x110, (0, 0x200), NONE),
            Some(Paths {
                nonzero: 0x118 - 0x10b,
                zero: 0x118
            })
        );
        // test %al,%al; jne rel8
        assert_eq!(
            after_test(&[0x84, 0xc0, 0x75, 0x02, 0, 0, 0], 0, (0, 8), NONE),
            Some(Paths {
                nonzero: 6,
                zero: 4
            })
        );
    }

    #[test]
    fn anything_else_is_left_alone() {
        // test %rax,%rax (48 85 c0), cmp, a jump out of the function, a relocated rel32, and
        // code that ends early.
        assert_eq!(
            after_test(&[0x48, 0x85, 0xc0, 0x74, 2], 0, (0, 9), NONE),
            None
        );
        assert_eq!(
            after_test(&[0x83, 0xf8, 0x00, 0x74, 2], 0, (0, 9), NONE),
            None
        );
        assert_eq!(
            after_test(&[0x85, 0xc0, 0x74, 0x7f], 0, (0, 0x20), NONE),
            None
        );
        let relocated: BTreeSet<u64> = [4].into();
        assert_eq!(
            after_test(&[0x85, 0xc0, 0x0f, 0x84, 0, 0, 0, 0], 0, (0, 9), &relocated),
            None
        );
        assert_eq!(after_test(&[0x85, 0xc0, 0x0f], 0, (0, 9), NONE), None);
        assert_eq!(after_test(&[0x85, 0xc1, 0x74, 0], 0, (0, 9), NONE), None);
    }
}
