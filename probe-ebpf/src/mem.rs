//! Word-wise zeroing and copying of map values, records and names.
//!
//! Why this exists: the BPF backend turns a zero-initialised struct or array
//! (`ThreadState { .., ..Default::default() }`, `[0u8; 16]`) into a call to compiler-builtins'
//! `memset`, a byte loop, and copies of byte arrays at 4-aligned offsets into byte loads and
//! stores. Measured with `--program-costs` under the lab's instruction counter (6.12): the
//! handler-entry program ran ~2,200 instructions per TTM fault, ~1,200 of them in the byte
//! loop that reset the 240-byte per-thread state. Volatile 8-byte stores are never merged
//! back into a `memset` call, so these helpers cost one instruction per word.

use core::mem::{align_of, size_of};

use probe_common::COMM_LEN;

/// Writes zeros over `*p`, one 8-byte store per word. Zero a `MaybeUninit` where it will be
/// used and pass it by reference: moving it afterwards lets the backend turn the copy back
/// into a `memset` call. `T` must be a whole number of words
/// and 8-aligned (checked at compile time).
#[inline(always)]
pub fn zero<T>(p: *mut T) {
    const { assert!(size_of::<T>().is_multiple_of(8) && align_of::<T>() >= 8) };
    let words = p.cast::<u64>();
    let mut i = 0;
    while i < size_of::<T>() / 8 {
        // SAFETY: `p` is valid for writes of `T`, which spans `size_of::<T>() / 8` aligned
        // words; a map value or a reserved ring-buffer record.
        unsafe { words.add(i).write_volatile(0) };
        i += 1;
    }
}

/// Stores `v` in `*p` with one store that the backend cannot merge with its neighbours
/// into a `memset` call (plain stores of zeros to adjacent fields are merged).
#[inline(always)]
pub fn put<T: Copy>(p: &mut T, v: T) {
    // SAFETY: `p` is a valid, aligned, exclusive reference.
    unsafe { core::ptr::write_volatile(p, v) }
}

/// A task or module name as two words: what `bpf_get_current_comm` and kernel reads fill.
pub type Name = [u64; COMM_LEN / 8];

/// The current task's comm, zero-padded, without a byte loop. The helper pads with zeros only
/// from 6.x's `strscpy_pad` on; 6.1 uses `strscpy`, which leaves the bytes after the NUL as
/// they were, so the buffer is zeroed first (two stores). Comparisons and map keys use all
/// 16 bytes.
#[inline(always)]
pub fn current_comm() -> Name {
    let mut name = core::mem::MaybeUninit::<Name>::uninit();
    zero(name.as_mut_ptr());
    // SAFETY: `name` is COMM_LEN writable, zeroed bytes; on failure the helper zeroes them.
    unsafe {
        aya_ebpf::helpers::generated::bpf_get_current_comm(
            name.as_mut_ptr().cast(),
            COMM_LEN as u32,
        );
        name.assume_init()
    }
}

/// Stores a name into a 16-byte field that its struct places at an 8-aligned offset (see
/// the layout assertions in probe-common).
#[inline(always)]
pub fn set_name(dst: &mut [u8; COMM_LEN], name: Name) {
    let p = dst.as_mut_ptr().cast::<u64>();
    debug_assert!(p.is_aligned());
    // SAFETY: 16 writable bytes at an 8-aligned address (layout asserted in probe-common).
    unsafe {
        p.write_volatile(name[0]);
        p.add(1).write_volatile(name[1]);
    }
}

/// Loads a name from a 16-byte field at an 8-aligned offset.
#[inline(always)]
pub fn get_name(src: &[u8; COMM_LEN]) -> Name {
    let p = src.as_ptr().cast::<u64>();
    // SAFETY: as for `set_name`.
    unsafe { [p.read_volatile(), p.add(1).read_volatile()] }
}
