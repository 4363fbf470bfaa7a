//! Maps and the global configuration shared with userspace (names in `probe_common::names`).

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{
        Array, LruHashMap, PerCpuArray, PerCpuHashMap, RingBuf, StackTrace, ring_buf::RingBufEntry,
    },
};
use probe_common::{
    HolderRelease, KernelLayout, MmWatch, ProbeConfig, QUIET_SLOTS_PER_CPU, QuietKey, QuietSlot,
    ThreadState, WaiterState, stat,
};

/// Filled by userspace before load (offsets from BTF, filters).
#[unsafe(no_mangle)]
pub static CONFIG: ProbeConfig = ProbeConfig {
    layout: KernelLayout {
        vm_fault_vma: 0,
        vm_fault_flags: 0,
        vma_vm_mm: 0,
        vma_vm_file: 0,
        file_f_op: 0,
        fops_owner: 0,
        module_name: 0,
        mm_mmap_lock: 0,
        ww_mutex_owner: 0,
        task_pid: 0,
        task_tgid: 0,
        task_comm: 0,
        task_min_flt: 0,
        task_maj_flt: 0,
        gem_object_resv: 0,
        _pad: 0,
    },
    filter_tgid: 0,
    filter_comm_set: 0,
    filter_comm: [0; 16],
    self_tgid: 0,
    flags: 0,
    pre_lock_link_ns: 0,
    wake_bytes: 0,
};

/// Attempt, waiter and abandoned-episode records to userspace. 4 MiB; resized by userspace
/// before load (`--ring-buffer-kib`).
#[map(name = "EVENTS")]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Per-thread fault state, keyed by tid. An entry exists only while a thread is inside a TTM
/// fault episode; it is deleted when the episode ends, so the map returns to empty.
#[map(name = "THREADS")]
pub static THREADS: LruHashMap<u32, ThreadState> = LruHashMap::with_max_entries(16384, 0);

/// One all-zero ThreadState, never written: what a thread's first fault inserts into
/// `THREADS`.
#[map(name = "ZERO_STATE")]
pub static ZERO_STATE: Array<ThreadState> = Array::with_max_entries(1, 0);

/// Per-mm watch keyed by `&mm->mmap_lock`, created by the mm's first TTM attempt, kept and
/// rebased when idle; the LRU bound limits how many mms are followed.
#[map(name = "MM_WATCH")]
pub static MM_WATCH: LruHashMap<u64, MmWatch> = LruHashMap::with_max_entries(4096, 0);

/// Tasks waiting on a watched mmap_lock, keyed by tid.
#[map(name = "WAITERS")]
pub static WAITERS: LruHashMap<u32, WaiterState> = LruHashMap::with_max_entries(16384, 0);

// What userspace reads while tracing lives in BPF_F_MMAPABLE arrays, read from a shared
// mapping: a bpf() map lookup runs with this CPU's BPF programs disabled
// (`bpf_disable_instrumentation`), and where the syscall can be preempted in that window
// (PREEMPT_RT, full or lazy preemption) a fault's kprobe program on that CPU is skipped
// (`recursion_misses`; seen on 6.12-rt with `serve`, which read these once a second).

/// Per-CPU index of quiet-episode keys (see `probe_common::QuietKey`): this CPU's value is
/// 1 + the `QUIET_COUNTS` slot counting the key on this CPU, 0 if this CPU has none yet.
/// Never deleted: a plain hash, not an LRU, so no count is evicted. When it is full an
/// episode is sent as a record instead.
#[map(name = "QUIET")]
pub static QUIET: PerCpuHashMap<QuietKey, u32> = PerCpuHashMap::with_max_entries(8192, 0);

/// Slots of `QUIET_COUNTS` this CPU has taken.
#[map(name = "QUIET_NEXT")]
pub static QUIET_NEXT: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Quiet-episode counts, `QUIET_SLOTS_PER_CPU` slots per possible CPU (userspace sets the
/// size before load), memory-mapped by userspace.
#[map(name = "QUIET_COUNTS")]
pub static QUIET_COUNTS: Array<QuietSlot> =
    Array::with_max_entries(QUIET_SLOTS_PER_CPU, BPF_F_MMAPABLE);

/// Kernel stacks of reservation holders at release (`--holder-stack` only).
#[map(name = "STACKS")]
pub static STACKS: StackTrace = StackTrace::with_max_entries(1024, 0);

/// Reservations a TTM fault is waiting for, keyed by ww_mutex address (`--holder-stack`).
#[map(name = "CONTENDED")]
pub static CONTENDED: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

/// Last release of each contended reservation: when, by whom, with which stack.
#[map(name = "RELEASES")]
pub static RELEASES: LruHashMap<u64, HolderRelease> = LruHashMap::with_max_entries(4096, 0);

/// Threads inside a TTM attempt right now (slot 0), system-wide. A pre-filter for the hooks
/// on hot kernel functions (`up_read`, the ww_mutex calls): while it is 0 they return after
/// one load, without a hash lookup. Verifier-inlined array lookup, updated with XADD. A
/// missed return can only leave it too high, which costs a lookup, never a lost fact.
#[map(name = "ACTIVE")]
pub static ACTIVE: Array<u64> = Array::with_max_entries(1, 0);

#[inline(always)]
pub fn active_add(delta: u64) {
    if let Some(p) = ACTIVE.get_ptr_mut(0) {
        // SAFETY: a valid, 8-byte aligned map value pointer.
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                p, delta,
            );
        }
    }
}

/// Adds one with one atomic add (XADD, which 5.10 has). For a counter shared by CPUs; and
/// for one only this CPU writes, because a trampoline program runs with migration, not
/// preemption, disabled, so on a preemptible kernel another program can run on the same
/// CPU between a load and a store.
#[inline(always)]
pub fn atomic_inc(p: *mut u64) {
    // SAFETY: a valid, 8-byte aligned map value pointer.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            p, 1,
        );
    }
}

/// Whether any thread is inside a TTM attempt.
#[inline(always)]
pub fn any_active() -> bool {
    match ACTIVE.get_ptr(0) {
        Some(p) => {
            // SAFETY: a valid map value pointer.
            let n = unsafe { core::ptr::read_volatile(p) };
            n != 0
        }
        None => true,
    }
}

/// Counters of things that went wrong (`probe_common::stat`), shared by all CPUs (each is
/// rare) and memory-mapped by userspace.
#[map(name = "STATS")]
pub static STATS: Array<u64> = Array::with_max_entries(stat::COUNT, BPF_F_MMAPABLE);

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(p) = STATS.get_ptr_mut(index) {
        atomic_inc(p);
    }
}

/// A zeroed record of type `T` reserved in `EVENTS`, to be filled field by field and
/// submitted; `None` (counted as a ring-buffer drop) when the ring is full. Zeroed in place
/// with word stores (see `mem`): building the record on the stack and copying it in costs a
/// byte-wise copy.
#[inline(always)]
pub fn reserve_zeroed<T: 'static>() -> Option<RingBufEntry<T>> {
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        bump(stat::RINGBUF_DROPS);
        return None;
    };
    crate::mem::zero(entry.as_mut_ptr());
    Some(entry)
}

/// Flags for `submit`: wake the reader only once `wake_bytes` are waiting.
#[inline(always)]
pub fn submit_flags() -> u64 {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
    let wake = config!(wake_bytes);
    if wake == 0 {
        0
    } else if EVENTS.query(BPF_RB_AVAIL_DATA.into()) >= wake {
        BPF_RB_FORCE_WAKEUP.into()
    } else {
        BPF_RB_NO_WAKEUP.into()
    }
}

/// Reads one field of the configuration without copying the whole struct to the stack.
macro_rules! config {
    ($($field:tt)+) => {
        // SAFETY: CONFIG is a read-only global rewritten by the loader before load.
        unsafe { core::ptr::read_volatile(&raw const $crate::maps::CONFIG.$($field)+) }
    };
}
pub(crate) use config;
