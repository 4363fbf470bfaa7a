//! Read-only views of the probes' `BPF_F_MMAPABLE` array maps (`STATS`, `QUIET_COUNTS`).
//!
//! What the session reads while tracing is read from a shared mapping, not with bpf()
//! syscalls: a map lookup runs with BPF programs disabled on its CPU
//! (`bpf_disable_instrumentation`), and where the syscall can be preempted inside that window
//! (PREEMPT_RT, full or lazy preemption) a fault's kprobe program on that CPU is skipped, a
//! fact lost (`recursion_misses`; seen on 6.12-rt, where `serve` read the quiet counts and
//! loss counters every second or two). A load from the mapping holds nothing of the kernel's.

use std::{
    ffi::c_void,
    num::NonZeroUsize,
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use anyhow::{Context, Result, bail, ensure};
use aya::maps::{Map, MapData};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};

/// `BPF_F_MMAPABLE` (include/uapi/linux/bpf.h, 5.5+).
const BPF_F_MMAPABLE: u32 = 1 << 10;

/// A read-only shared mapping of an array map's values.
pub struct MappedArray {
    ptr: NonNull<c_void>,
    len: NonZeroUsize,
    /// Bytes from one value to the next (the value size rounded up to 8, as the kernel lays
    /// array values out).
    stride: usize,
    entries: u32,
}

// SAFETY: the mapping is plain shared memory, read only through atomic or volatile loads;
// nothing in it is tied to the thread that created it.
unsafe impl Send for MappedArray {}

impl MappedArray {
    /// Maps the array map `name` of the loaded object; its values must be `value_size` bytes.
    pub fn new(map: Option<&Map>, name: &str, value_size: usize) -> Result<Self> {
        let data: &MapData = match map {
            Some(Map::Array(data)) => data,
            Some(_) => bail!("map {name} is not an array map"),
            None => bail!("map {name} missing"),
        };
        let info = data
            .info()
            .with_context(|| format!("reading the kernel's information on map {name}"))?;
        ensure!(
            info.map_flags() & BPF_F_MMAPABLE != 0,
            "map {name} was not created memory-mappable (BPF_F_MMAPABLE)"
        );
        ensure!(
            info.value_size() as usize == value_size,
            "map {name} holds {}-byte values, not {value_size}",
            info.value_size()
        );
        let stride = value_size.next_multiple_of(8);
        let entries = info.max_entries();
        let len = NonZeroUsize::new(stride * entries as usize)
            .with_context(|| format!("map {name} is empty"))?;
        // SAFETY: a fresh shared, read-only mapping of the map's values; the kernel keeps the
        // map alive while it is mapped.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                data.fd(),
                0,
            )
        }
        .with_context(|| format!("memory-mapping map {name}"))?;
        Ok(Self {
            ptr,
            len,
            stride,
            entries,
        })
    }

    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// The 8-byte aligned u64 at `offset` bytes into value `index`, as an acquire load: what
    /// the probes wrote before adding to it is visible.
    pub fn u64_at(&self, index: u32, offset: usize) -> Option<u64> {
        let at = self.offset(index, offset, 8)?;
        if !at.is_multiple_of(8) {
            return None;
        }
        // SAFETY: in bounds and 8-byte aligned (the mapping is page-aligned); the kernel
        // updates it with atomic adds.
        let word = unsafe { &*(self.ptr.as_ptr().cast::<u8>().add(at).cast::<AtomicU64>()) };
        Some(word.load(Ordering::Acquire))
    }

    /// A copy of the `T` at `offset` bytes into value `index` (volatile: the kernel writes it).
    pub fn read<T: aya::Pod>(&self, index: u32, offset: usize) -> Option<T> {
        let at = self.offset(index, offset, size_of::<T>())?;
        if !at.is_multiple_of(align_of::<T>()) {
            return None;
        }
        // SAFETY: in bounds and aligned; T is plain data (Pod), valid for any bytes.
        Some(unsafe { std::ptr::read_volatile(self.ptr.as_ptr().cast::<u8>().add(at).cast::<T>()) })
    }

    fn offset(&self, index: u32, offset: usize, size: usize) -> Option<usize> {
        if index >= self.entries || offset + size > self.stride {
            return None;
        }
        Some(index as usize * self.stride + offset)
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        if let Err(e) = unsafe { munmap(self.ptr, self.len.get()) } {
            log::warn!("unmapping a map: {e}");
        }
    }
}
