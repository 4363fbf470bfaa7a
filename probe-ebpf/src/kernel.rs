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
pub fn vmf_vma(vmf: u64) -> u64 {
    read::<u64>(vmf + config!(layout.vm_fault_vma) as u64).unwrap_or(0)
}

/// `vmf->flags`.
#[inline(always)]
pub fn vmf_flags(vmf: u64) -> u32 {
    read::<u32>(vmf + config!(layout.vm_fault_flags) as u64).unwrap_or(0)
}

/// `vma->vm_mm`.
#[inline(always)]
pub fn vma_mm(vma: u64) -> u64 {
    read::<u64>(vma + config!(layout.vma_vm_mm) as u64).unwrap_or(0)
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
pub fn vma_fops(vma: u64) -> u64 {
    let file = read::<u64>(vma + config!(layout.vma_vm_file) as u64).unwrap_or(0);
    if file == 0 {
        return 0;
    }
    read::<u64>(file + config!(layout.file_f_op) as u64).unwrap_or(0)
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
