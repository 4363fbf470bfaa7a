//! Reads of kernel structures at offsets resolved from BTF by userspace (`CONFIG.layout`).

use aya_ebpf::helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel};
use probe_common::stat;

use crate::{
    maps::{bump, config},
    mem::Name,
};

/// CLOCK_MONOTONIC nanoseconds.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// How a program reads kernel memory. kprobe programs see raw addresses and must use the
/// `bpf_probe_read_kernel` helper ([`Probe`]); a trampoline program's arguments are pointers
/// typed by BTF, which it may load through directly ([`Btf`]): the verifier checks each load
/// against the struct's BTF and the JIT emits a plain load with an exception-table entry
/// (a fault reads 0), a few instructions instead of a helper call. Only the chain of
/// pointers read from such an argument qualifies; anything read back from a map is a number.
pub trait Read {
    /// A `T` at a non-null `addr`.
    fn load<T: Copy>(addr: u64) -> Option<T>;
    /// The current task's comm, zero-padded.
    fn current_comm() -> Name;

    /// The `T` at `base + off`; `None` if `base` is null. The null check comes before the
    /// offset is added: the verifier accepts a direct load only through the pointer itself
    /// plus a constant, never through a number such as `0 + off`.
    #[inline(always)]
    fn at<T: Copy>(base: u64, off: u32) -> Option<T> {
        if base == 0 {
            return None;
        }
        Self::load::<T>(base + off as u64)
    }
}

/// `bpf_probe_read_kernel`: any address, any program type.
pub struct Probe;

impl Read for Probe {
    #[inline(always)]
    fn load<T: Copy>(addr: u64) -> Option<T> {
        read::<T>(addr)
    }

    #[inline(always)]
    fn current_comm() -> Name {
        crate::mem::current_comm()
    }
}

/// Direct loads through a BTF-typed pointer (fentry/fexit programs only).
pub struct Btf;

impl Read for Btf {
    #[inline(always)]
    fn load<T: Copy>(addr: u64) -> Option<T> {
        // SAFETY: a BTF-typed kernel pointer plus a member offset from the same BTF; the
        // verifier rejects the program otherwise, and a faulting load reads 0.
        Some(unsafe { core::ptr::read_volatile(addr as *const T) })
    }

    /// Two loads from `current->comm` (`bpf_get_current_task_btf`, 5.11+: a trusted task
    /// pointer) instead of `bpf_get_current_comm`'s string copy, cut at the NUL.
    #[inline(always)]
    fn current_comm() -> Name {
        // SAFETY: a helper without arguments; its result is a BTF-typed pointer.
        let task = unsafe { aya_ebpf::helpers::generated::bpf_get_current_task_btf() } as u64;
        let off = config!(layout.task_comm);
        let lo = Self::at::<u64>(task, off).unwrap_or(0);
        let hi = Self::at::<u64>(task, off + 8).unwrap_or(0);
        probe_common::name_before_nul([lo, hi])
    }
}

#[inline(always)]
fn read<T: Copy>(addr: u64) -> Option<T> {
    if addr == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel tolerates any address and fails cleanly.
    match unsafe { bpf_probe_read_kernel(addr as *const T) } {
        Ok(v) => Some(v),
        Err(_) => {
            bump(stat::READ_FAULTS);
            None
        }
    }
}

/// A 16-byte name (comm, module name) at `addr`; zeros if it cannot be read.
#[inline(always)]
fn read_name(addr: u64) -> Name {
    read::<Name>(addr).unwrap_or([0; 2])
}

/// `vmf->vma`.
#[inline(always)]
pub fn vmf_vma<R: Read>(vmf: u64) -> u64 {
    R::at::<u64>(vmf, config!(layout.vm_fault_vma)).unwrap_or(0)
}

/// `vmf->flags`.
#[inline(always)]
pub fn vmf_flags<R: Read>(vmf: u64) -> u32 {
    R::at::<u32>(vmf, config!(layout.vm_fault_flags)).unwrap_or(0)
}

/// `vma->vm_mm`.
#[inline(always)]
pub fn vma_mm<R: Read>(vma: u64) -> u64 {
    R::at::<u64>(vma, config!(layout.vma_vm_mm)).unwrap_or(0)
}

/// `&mm->mmap_lock`.
#[inline(always)]
pub fn mm_lock(mm: u64) -> u64 {
    if mm == 0 {
        0
    } else {
        mm + config!(layout.mm_mmap_lock) as u64
    }
}

/// `vma->vm_file->f_op`: the mapping's file operations (0 if none).
#[inline(always)]
pub fn vma_fops<R: Read>(vma: u64) -> u64 {
    let file = R::at::<u64>(vma, config!(layout.vma_vm_file)).unwrap_or(0);
    R::at::<u64>(file, config!(layout.file_f_op)).unwrap_or(0)
}

/// `fops->owner->name`: the module (DRM driver) that owns the mapping's file operations.
#[inline(always)]
pub fn driver_name(fops: u64) -> Name {
    if fops == 0 {
        return [0; 2];
    }
    let owner = read::<u64>(fops + config!(layout.fops_owner) as u64).unwrap_or(0);
    if owner == 0 {
        // Built-in driver: no module.
        return [0; 2];
    }
    read_name(owner + config!(layout.module_name) as u64)
}

/// `obj->resv` of a `struct drm_gem_object` (xe 6.18+ call sites); 0 if unknown.
#[inline(always)]
pub fn gem_object_resv(obj: u64) -> u64 {
    let off = config!(layout.gem_object_resv);
    if off == 0 {
        return 0;
    }
    read::<u64>(obj + off as u64).unwrap_or(0)
}

/// Owner task of a ww_mutex (mutex or rt_mutex based): the reservation holder.
#[inline(always)]
pub fn ww_mutex_owner(lock: u64) -> u64 {
    // Low bits of the owner word are flags (MUTEX_FLAGS 0x07, RT_MUTEX_HAS_WAITERS 0x1).
    read::<u64>(lock + config!(layout.ww_mutex_owner) as u64).unwrap_or(0) & !0x7
}

/// Faults the current task has completed (min_flt + maj_flt).
#[inline(always)]
pub fn current_faults() -> u64 {
    // SAFETY: a helper without arguments; the pointer is only used with probe reads.
    let task = unsafe { aya_ebpf::helpers::bpf_get_current_task() };
    let min = read::<u64>(task + config!(layout.task_min_flt) as u64).unwrap_or(0);
    let maj = read::<u64>(task + config!(layout.task_maj_flt) as u64).unwrap_or(0);
    min.wrapping_add(maj)
}

pub struct TaskId {
    pub pid: u32,
    pub tgid: u32,
    pub comm: Name,
}

#[inline(always)]
pub fn task_id(task: u64) -> TaskId {
    TaskId {
        pid: read::<u32>(task + config!(layout.task_pid) as u64).unwrap_or(0),
        tgid: read::<u32>(task + config!(layout.task_tgid) as u64).unwrap_or(0),
        comm: read_name(task + config!(layout.task_comm) as u64),
    }
}
