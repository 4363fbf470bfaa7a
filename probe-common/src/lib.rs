//! The one ABI shared by `probe-ebpf` (kernel side) and `probe-user` (userspace).
//!
//! Everything that crosses the ring buffer or is handed to the probes as global data is defined
//! here, `#[repr(C)]`, with explicit padding fields so that no byte is left uninitialised (the
//! verifier rejects reads of uninitialised stack, and userspace must never see garbage).
//!
//! Data path: probes fill [`AttemptEvent`] / [`WaiterEvent`] records → ring buffer `EVENTS` →
//! userspace decodes them with [`EventKind`] and classifies attempts with its attribution module.
#![no_std]

/// Length of `task_struct::comm`.
pub const COMM_LEN: usize = 16;
/// Length we keep of `module::name` (MODULE_NAME_LEN is 56; driver names are short).
pub const DRIVER_LEN: usize = 16;

pub mod decide;

/// Names of the maps and globals, used by both sides so that a rename cannot silently break.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
    pub const THREADS: &str = "THREADS";
    pub const MM_WATCH: &str = "MM_WATCH";
    pub const WAITERS: &str = "WAITERS";
    pub const STATS: &str = "STATS";
    pub const CONFIG: &str = "CONFIG";
    pub const STACKS: &str = "STACKS";
    pub const CONTENDED: &str = "CONTENDED";
    pub const RELEASES: &str = "RELEASES";
    pub const QUIET: &str = "QUIET";
    pub const QUIET_NEXT: &str = "QUIET_NEXT";
    pub const QUIET_COUNTS: &str = "QUIET_COUNTS";
}

/// `vm_fault->flags` bits (include/linux/mm_types.h); identical from 5.4 to 6.19 on x86.
pub mod fault_flag {
    pub const WRITE: u32 = 0x1;
    pub const ALLOW_RETRY: u32 = 0x4;
    pub const RETRY_NOWAIT: u32 = 0x8;
    pub const KILLABLE: u32 = 0x10;
    pub const TRIED: u32 = 0x20;
    pub const USER: u32 = 0x40;
    pub const INTERRUPTIBLE: u32 = 0x200;
    /// 6.4+: the fault runs under the per-VMA lock instead of mmap_lock.
    pub const VMA_LOCK: u32 = 0x1000;
}

/// `vm_fault_t` bits (include/linux/mm_types.h).
pub mod vm_fault {
    pub const SIGBUS: u32 = 0x2;
    pub const MAJOR: u32 = 0x4;
    pub const SIGSEGV: u32 = 0x40;
    pub const NOPAGE: u32 = 0x100;
    pub const RETRY: u32 = 0x400;
    pub const ERROR_MASK: u32 = 0x0001 | SIGBUS | SIGSEGV | 0x10 | 0x20 | 0x800;
}

/// Struct member offsets in bytes, resolved from vmlinux BTF by userspace (aya-ebpf in Rust has
/// no CO-RE field relocations). Only vmlinux types are used, so a ttm.ko without BTF (a
/// self-built one) still works.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    /// `struct vm_fault` → `vma` (inside an anonymous struct since 5.18).
    pub vm_fault_vma: u32,
    /// `struct vm_fault` → `flags`.
    pub vm_fault_flags: u32,
    /// `struct vm_area_struct` → `vm_mm`.
    pub vma_vm_mm: u32,
    /// `struct vm_area_struct` → `vm_file`.
    pub vma_vm_file: u32,
    /// `struct file` → `f_op`.
    pub file_f_op: u32,
    /// `struct file_operations` → `owner`.
    pub fops_owner: u32,
    /// `struct module` → `name`.
    pub module_name: u32,
    /// `struct mm_struct` → `mmap_lock` (was `mmap_sem` before 5.8).
    pub mm_mmap_lock: u32,
    /// `struct ww_mutex` → owner word (`base.owner` for mutex, `base.rtmutex.owner` on RT).
    pub ww_mutex_owner: u32,
    /// `struct task_struct` → `pid`.
    pub task_pid: u32,
    /// `struct task_struct` → `tgid`.
    pub task_tgid: u32,
    /// `struct task_struct` → `comm`.
    pub task_comm: u32,
    /// `struct task_struct` → `min_flt` / `maj_flt` (faults completed by the task).
    pub task_min_flt: u32,
    pub task_maj_flt: u32,
    /// `struct drm_gem_object` → `resv` (drm module BTF): the reservation of the GEM object
    /// passed to `drm_exec_lock_obj` by xe's fault handler (6.18+). 0 when not needed.
    pub gem_object_resv: u32,
    pub _pad: u32,
}

/// Run-time configuration handed to the probes as the global `CONFIG` before load.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProbeConfig {
    pub layout: KernelLayout,
    /// Only follow faults of this thread group (0: every process).
    pub filter_tgid: u32,
    /// Non-zero: only follow faults of tasks whose comm equals `filter_comm`.
    pub filter_comm_set: u32,
    pub filter_comm: [u8; COMM_LEN],
    /// Our own thread group, never traced (the tool must not observe itself).
    pub self_tgid: u32,
    /// Bit set of [`config_flag`].
    pub flags: u32,
    /// A finished mmap_lock read wait starts the episode of a TTM fault whose handler is
    /// entered at most this long after it, with no fault completed in between.
    pub pre_lock_link_ns: u64,
    /// Records are submitted without waking the reader until this many bytes wait in the
    /// ring buffer (0: wake on every record). The reader also drains on a short timer, so a
    /// fault costs no wakeup, context switch or epoll round trip of its own.
    pub wake_bytes: u64,
}

pub mod config_flag {
    /// `ww_mutex_trylock` is a real function (5.16+) and its kretprobe is attached.
    pub const TRYLOCK_PROBED: u32 = 0x1;
    /// `--holder-stack`: capture the reservation holder's kernel stack when it releases a
    /// reservation a TTM fault waits for (kprobe on ww_mutex_unlock).
    pub const HOLDER_STACKS: u32 = 0x2;
    /// Count quiet episodes (see [`QuietKey`]) in the kernel instead of sending a record for
    /// each (`--every-episode` clears it).
    pub const QUIET_IN_KERNEL: u32 = 0x4;
}

/// A quiet episode: one fault attempt that called `ttm_bo_vm_reserve`, whose trylock
/// succeeded, that did not wait, drop mmap_lock, retry, fail, queue for mmap_lock first or
/// meet a holder; the common case, and the one nothing but its latency is to be said of. The
/// probes count these per (process, comm, driver, latency bucket) in [`QuietSlot`]s of the
/// memory-mapped array `QUIET_COUNTS` instead of sending a ring-buffer record each; userspace
/// reads the counts from the mapping (no bpf() syscall) once a second. When this CPU's slots
/// or the index `QUIET` are full the episode is sent as a record instead, so none is lost.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuietKey {
    pub tgid: u32,
    /// [`latency_bucket`] of the episode's latency.
    pub bucket: u32,
    pub comm: [u8; COMM_LEN],
    pub driver: [u8; DRIVER_LEN],
}

/// Slots of `QUIET_COUNTS` each CPU owns: CPU `c` fills `c * QUIET_SLOTS_PER_CPU ..` in
/// order, one per key it sees first (the per-CPU hash `QUIET` maps the key to it), so a slot
/// is only ever written by programs on its CPU and userspace finds a CPU's slots in use
/// before its first slot with count 0.
pub const QUIET_SLOTS_PER_CPU: u32 = 2048;

/// One slot of the memory-mapped array `QUIET_COUNTS`: a quiet-episode key, written once
/// when the slot is taken, and the episodes counted under it on this slot's CPU. `count` is
/// 0 until `key` is written, so userspace reads `key` only after a non-zero `count`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default)]
pub struct QuietSlot {
    pub key: QuietKey,
    pub count: u64,
}

/// Sub-buckets per power of two in [`latency_bucket`]: a bucket spans 1/32 of its lower
/// bound (3.1 %), so its midpoint is within 1.6 % of every value in it.
pub const LATENCY_SUB_BITS: u32 = 5;
const LATENCY_EXACT: u64 = 2 << LATENCY_SUB_BITS;

/// A 16-byte name read straight from `task_struct::comm`, as two little-endian words, with
/// every byte from the first NUL on cleared. The kernel keeps comm NUL-terminated but, before
/// 6.x's `strscpy_pad`, not NUL-padded: bytes of an older, longer name can follow the NUL, and
/// map keys and filters compare all 16 bytes. No loop: the lowest byte the classic
/// has-zero-byte test flags is the first zero byte (borrows only flag bytes above it).
#[inline(always)]
pub fn name_before_nul(words: [u64; 2]) -> [u64; 2] {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut out = [0u64; 2];
    let mut i = 0;
    while i < 2 {
        let w = words[i];
        let zero_bytes = w.wrapping_sub(ONES) & !w & HIGHS;
        if zero_bytes != 0 {
            let first = zero_bytes & zero_bytes.wrapping_neg();
            out[i] = w & ((first >> 7) - 1);
            return out;
        }
        out[i] = w;
        i += 1;
    }
    out
}

/// floor(log2(v)) for v > 0, in six comparisons (no loop, no count-leading-zeros: the BPF
/// target has neither).
#[inline(always)]
pub fn log2_floor(mut v: u64) -> u32 {
    let mut r = 0;
    for shift in [32u32, 16, 8, 4, 2, 1] {
        if v >= 1u64 << shift {
            v >>= shift;
            r += shift;
        }
    }
    r
}

/// Log-linear bucket of a latency in ns: exact below 64 ns, then 32 buckets per power of two.
#[inline(always)]
pub fn latency_bucket(ns: u64) -> u32 {
    if ns < LATENCY_EXACT {
        return ns as u32;
    }
    let e = log2_floor(ns);
    let shift = e - LATENCY_SUB_BITS;
    let m = ((ns >> shift) as u32) & ((1 << LATENCY_SUB_BITS) - 1);
    LATENCY_EXACT as u32 + (e - LATENCY_SUB_BITS - 1) * (1 << LATENCY_SUB_BITS) + m
}

/// The values `[low, high]` of a [`latency_bucket`]; `None` for a bucket no u64 maps to.
pub fn latency_bucket_bounds(bucket: u32) -> Option<(u64, u64)> {
    let exact = LATENCY_EXACT as u32;
    if bucket < exact {
        return Some((u64::from(bucket), u64::from(bucket)));
    }
    let per = 1u32 << LATENCY_SUB_BITS;
    let e = (bucket - exact) / per + LATENCY_SUB_BITS + 1;
    if e > 63 {
        return None;
    }
    let m = u64::from((bucket - exact) % per);
    let shift = e - LATENCY_SUB_BITS;
    let low = (u64::from(per) + m) << shift;
    Some((low, low + ((1u64 << shift) - 1)))
}

/// What kind of TTM entry point an attempt went through.
pub mod attempt_kind {
    /// A page fault: `ttm_bo_vm_fault` or a driver handler calling `ttm_bo_vm_reserve`.
    pub const FAULT: u8 = 1;
    /// `ttm_bo_vm_access` (ptrace, /proc/PID/mem): reservation taken with mmap_lock held.
    pub const ACCESS: u8 = 2;
}

/// Observed result of `dma_resv_trylock` inside `ttm_bo_vm_reserve`.
pub mod trylock {
    /// Not observed (kernel < 5.16 inlines the trylock; no reserve call in this attempt).
    pub const UNKNOWN: u8 = 0;
    pub const ACQUIRED: u8 = 1;
    pub const FAILED: u8 = 2;
}

/// Discriminant at offset 0 of every ring-buffer record.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// One attempt of a fault episode (or one `ttm_bo_vm_access` call) ended.
    Attempt = 1,
    /// A task stopped waiting for an mmap_lock that a TTM fault held.
    Waiter = 2,
    /// An episode ended without a completing attempt (thread exit, signal after RETRY).
    Abandoned = 3,
}

impl EventKind {
    pub fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Attempt),
            2 => Some(Self::Waiter),
            3 => Some(Self::Abandoned),
            _ => None,
        }
    }
}

/// Flag bits in [`AttemptEvent::flags`].
pub mod attempt_flag {
    /// This attempt ended its episode (it did not return VM_FAULT_RETRY).
    pub const EPISODE_END: u32 = 0x1;
    /// `ttm_bo_vm_reserve` was called in this attempt.
    pub const RESERVE_CALLED: u32 = 0x2;
    /// This thread released *this mm's* mmap_lock (up_read on &mm->mmap_lock observed) inside
    /// `ttm_bo_vm_reserve`, i.e. before waiting for the reservation.
    pub const DROPPED_IN_RESERVE: u32 = 0x4;
    /// mmap_lock released inside the handler but outside reserve (fence wait in
    /// `ttm_bo_vm_fault_reserved`/`ttm_bo_vm_fault_idle`).
    pub const DROPPED_OUTSIDE_RESERVE: u32 = 0x8;
    /// A reservation wait (ww_mutex_lock*) happened while mmap_lock was still held.
    pub const WAITED_HELD: u32 = 0x10;
    /// A reservation wait happened after mmap_lock had been dropped.
    pub const WAITED_DROPPED: u32 = 0x20;
    /// The reservation holder could be read at trylock failure.
    pub const HOLDER_KNOWN: u32 = 0x40;
    /// The fault ran under the per-VMA lock (FAULT_FLAG_VMA_LOCK), not mmap_lock.
    pub const UNDER_VMA_LOCK: u32 = 0x80;
    /// The return of the handler was reached with unbalanced nesting (a missed kretprobe).
    pub const UNBALANCED: u32 = 0x100;
    /// The episode began with a wait for mmap_lock (see `pre_lock_wait_ns`).
    pub const PRE_LOCK_WAIT: u32 = 0x200;
}

/// One attempt (one call of a TTM fault handler, or of `ttm_bo_vm_access`). Times are
/// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) nanoseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptEvent {
    pub kind: u32,
    /// Bit set of [`attempt_flag`].
    pub flags: u32,
    pub tid: u32,
    pub tgid: u32,
    /// Start of the episode this attempt belongs to (first entry into a TTM handler).
    pub episode_start_ns: u64,
    pub attempt_start_ns: u64,
    pub attempt_end_ns: u64,
    /// `vm_area_struct->vm_mm`.
    pub mm: u64,
    /// Address of the reservation's ww_mutex we waited on (0: no wait).
    pub resv: u64,
    /// Sum of reservation waits in this attempt while mmap_lock was held.
    pub wait_held_ns: u64,
    /// Sum of reservation waits in this attempt after mmap_lock was dropped.
    pub wait_dropped_ns: u64,
    /// Time from dropping mmap_lock outside reserve (fence wait) to the handler's return.
    pub fence_drop_ns: u64,
    /// Time other tasks waited for this mm's mmap_lock while this attempt waited on the
    /// reservation with the lock held (sum over waiters of the overlap).
    pub collateral_ns: u64,
    /// Episode totals, valid when [`attempt_flag::EPISODE_END`] is set.
    pub ep_wait_held_ns: u64,
    pub ep_wait_dropped_ns: u64,
    pub ep_collateral_ns: u64,
    /// Time this thread waited for this mm's mmap_lock right before the episode's first
    /// handler entry (a fault queued behind a writer); included in the episode, which then
    /// starts at that wait's beginning. 0 when the lock was taken without waiting.
    pub pre_lock_wait_ns: u64,
    /// `vm_fault->flags` (0 for access).
    pub vmf_flags: u32,
    /// Handler return value (`vm_fault_t`; for access: the byte count or -errno as u32).
    pub ret: u32,
    /// `ttm_bo_vm_reserve` return value (valid with RESERVE_CALLED).
    pub reserve_ret: u32,
    /// Return of the last reservation wait (0, -EINTR, -EDEADLK...).
    pub wait_ret: i32,
    /// 1-based attempt number within the episode.
    pub attempt: u16,
    /// Number of reservation waits in this attempt.
    pub waits: u16,
    /// Number of waiters on this mm's mmap_lock that overlapped our held wait.
    pub collateral_waiters: u16,
    /// [`attempt_kind`].
    pub attempt_kind: u8,
    /// [`trylock`].
    pub trylock: u8,
    pub holder_tid: u32,
    pub holder_tgid: u32,
    pub holder_comm: [u8; COMM_LEN],
    pub comm: [u8; COMM_LEN],
    /// Module owning the mapping's file operations (the DRM driver, e.g. "bochs", "amdgpu").
    pub driver: [u8; DRIVER_LEN],
    /// `STACKS` id of the holder's kernel stack when it released the reservation we waited
    /// for (`--holder-stack`), or -1.
    pub holder_stack_id: i32,
    /// Thread that released the reservation the last wait ended on (`--holder-stack`; 0:
    /// not seen).
    pub release_tid: u32,
    /// The attempt's last reservation wait: start and end (0: no wait). With `waits` > 1 the
    /// earlier ones are only in the sums.
    pub wait_start_ns: u64,
    pub wait_end_ns: u64,
    /// When the holder released the reservation the last wait ended on (`--holder-stack`;
    /// 0: not seen).
    pub release_ns: u64,
    /// `&mm->mmap_lock` of the faulting mm: the lock [`WaiterEvent::mm_lock`] names.
    pub mm_lock: u64,
    /// Process of [`Self::release_tid`].
    pub release_tgid: u32,
    pub _pad: u32,
}

/// The last release of a reservation while TTM faults waited for it (`RELEASES`, keyed by
/// lock): at a wait's end, the release that handed the reservation on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HolderRelease {
    pub released_ns: u64,
    pub stack_id: i32,
    /// The releasing thread and its process.
    pub tid: u32,
    pub tgid: u32,
    pub _pad: u32,
}

/// A task that waited for an mmap_lock of an mm in which a TTM fault was in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaiterEvent {
    pub kind: u32,
    /// Contention flags from lock:contention_begin (LCB_F_READ 0x2, LCB_F_WRITE 0x4...), or
    /// 0x4 / 0x2 for the write / read rwsem slowpath probes.
    pub lock_flags: u32,
    pub tid: u32,
    pub tgid: u32,
    pub mm_lock: u64,
    pub begin_ns: u64,
    pub end_ns: u64,
    /// Part of [begin, end] during which at least one TTM fault of this mm waited on a
    /// reservation with the lock held.
    pub held_overlap_ns: u64,
    pub comm: [u8; COMM_LEN],
}

/// An episode whose last attempt returned RETRY but no retry followed (the thread exited or
/// took another, unrelated fault first).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbandonedEvent {
    pub kind: u32,
    pub attempts: u32,
    pub tid: u32,
    pub tgid: u32,
    pub episode_start_ns: u64,
    pub last_attempt_end_ns: u64,
    pub ep_wait_held_ns: u64,
    pub ep_wait_dropped_ns: u64,
    pub ep_collateral_ns: u64,
    pub comm: [u8; COMM_LEN],
}

/// Indices of the `STATS` array (one array shared by all CPUs, atomic adds, memory-mapped by
/// userspace): the losses the probes count themselves. Each slot is one row of
/// [`loss::CHANNELS`], which names it for recordings, reports and `/metrics`, unless it is
/// listed in [`stat::NOT_LOSSES`]; `loss` checks at compile time that every slot below
/// [`stat::COUNT`] is exactly one of the two.
pub mod stat {
    /// Ring buffer full: a record was lost.
    pub const RINGBUF_DROPS: u32 = 0;
    /// The per-thread map was full and an episode could not be followed.
    pub const THREAD_MAP_FULL: u32 = 1;
    /// A handler return without a matching entry (missed kprobe), ignored.
    pub const ORPHAN_RETURNS: u32 = 2;
    /// The mm watch map was full: collateral stalls of that mm are not measured.
    pub const WATCH_MAP_FULL: u32 = 3;
    /// Waiter map full.
    pub const WAITER_MAP_FULL: u32 = 4;
    /// A kernel read (bpf_probe_read_kernel) failed.
    pub const READ_FAULTS: u32 = 5;
    /// Slots that are not loss counters, each with a comment saying what it counts (none
    /// today). A slot that is neither here nor a channel's fails the build.
    pub const NOT_LOSSES: [u32; 0] = [];
    /// Entries of `STATS` (its `max_entries` in probe-ebpf): the slots above, no spares.
    /// Nothing else depends on it: userspace maps the array with the size the kernel reports
    /// for it and reads only the channels' slots, and the eBPF object is built into the same
    /// binary, so both sides always agree. (It was 8, with slots 6 and 7 never used.)
    pub const COUNT: u32 = 6;
}

/// Every way the kernel can lose what ttmlat would have observed, in one table: the probes'
/// own counters ([`stat`]) and what the kernel counts for ttmlat's probes and programs.
/// Userspace's `ProbeStats`, the terminal report, recordings, `compare`, `/metrics` and the
/// lab tests' "nothing lost" checks all iterate [`CHANNELS`].
pub mod loss {
    use super::stat;

    /// Where a loss is counted.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Counter {
        /// A slot of the probes' memory-mapped `STATS` array ([`stat`]).
        Probe(u32),
        /// `nmissed` of ttmlat's return probes (tracefs `kprobe_profile`).
        ReturnProbes,
        /// `nmissed` of ttmlat's entry and call-site kprobes (tracefs `kprobe_profile`).
        Kprobes,
        /// `recursion_misses` in each of ttmlat's programs' fdinfo (5.12+): runs the kernel
        /// skipped because a program was already running on that CPU.
        Programs,
    }

    /// One loss channel.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Channel {
        /// Field of `probe_stats` in recordings and JSON.
        pub field: &'static str,
        /// `reason` label of `ttmlat_lost_events_total`.
        pub reason: &'static str,
        /// Words for the terminal report.
        pub words: &'static str,
        pub counter: Counter,
    }

    const fn ch(
        field: &'static str,
        reason: &'static str,
        words: &'static str,
        counter: Counter,
    ) -> Channel {
        Channel {
            field,
            reason,
            words,
            counter,
        }
    }

    /// Number of [`CHANNELS`].
    pub const COUNT: usize = 9;

    /// The table, in report order.
    #[rustfmt::skip]
    pub const CHANNELS: [Channel; COUNT] = [
        ch("ringbuf_drops", "ring_buffer_full", "ring buffer full", Counter::Probe(stat::RINGBUF_DROPS)),
        ch("retprobe_misses", "retprobe_missed", "return probes missed", Counter::ReturnProbes),
        ch("kprobe_misses", "kprobe_missed", "kprobes missed", Counter::Kprobes),
        ch("recursion_misses", "program_skipped", "programs skipped (recursion)", Counter::Programs),
        ch("thread_map_full", "thread_map_full", "thread map full", Counter::Probe(stat::THREAD_MAP_FULL)),
        ch("watch_map_full", "watch_map_full", "mm watch map full", Counter::Probe(stat::WATCH_MAP_FULL)),
        ch("waiter_map_full", "waiter_map_full", "waiter map full", Counter::Probe(stat::WAITER_MAP_FULL)),
        ch("orphan_returns", "orphan_return", "orphan returns", Counter::Probe(stat::ORPHAN_RETURNS)),
        ch("read_faults", "read_fault", "kernel reads failed", Counter::Probe(stat::READ_FAULTS)),
    ];

    /// Why `table` and `not_losses` do not account one-to-one for the `slots` slots of
    /// `STATS`, or `None` when they do: every probe channel's slot and every listed non-loss
    /// slot is below `slots`, and every slot below it is exactly one channel's or listed (no
    /// two channels share a slot, no slot is a spare nobody counts in, none is both).
    pub const fn slot_error(
        table: &[Channel],
        not_losses: &[u32],
        slots: u32,
    ) -> Option<&'static str> {
        let mut i = 0;
        while i < table.len() {
            if let Counter::Probe(slot) = table[i].counter
                && slot >= slots
            {
                return Some("a loss channel's STATS slot is not below stat::COUNT");
            }
            i += 1;
        }
        let mut i = 0;
        while i < not_losses.len() {
            if not_losses[i] >= slots {
                return Some("a stat::NOT_LOSSES slot is not below stat::COUNT");
            }
            i += 1;
        }
        let mut slot = 0;
        while slot < slots {
            let mut owners = 0;
            let mut i = 0;
            while i < table.len() {
                if let Counter::Probe(s) = table[i].counter
                    && s == slot
                {
                    owners += 1;
                }
                i += 1;
            }
            let mut i = 0;
            while i < not_losses.len() {
                if not_losses[i] == slot {
                    owners += 1;
                }
                i += 1;
            }
            if owners > 1 {
                return Some(
                    "a STATS slot has two owners (channels, or a channel and stat::NOT_LOSSES)",
                );
            }
            if owners == 0 {
                return Some(
                    "a STATS slot is neither a loss channel's nor listed in stat::NOT_LOSSES",
                );
            }
            slot += 1;
        }
        None
    }

    // The probes' counters and the table derive from one another, checked whenever
    // probe-common is built (for the eBPF object and userspace alike).
    const _: () = {
        if let Some(e) = slot_error(&CHANNELS, &stat::NOT_LOSSES, stat::COUNT) {
            panic!("{}", e);
        }
    };
}

/// Per-thread state followed by the probes. Lives in the `THREADS` map, keyed by tid.
/// Exposed here so userspace can size/inspect the map (issue: per-thread entries return to
/// baseline); only the probes interpret it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadState {
    pub episode_start_ns: u64,
    pub attempt_start_ns: u64,
    pub last_attempt_end_ns: u64,
    pub mm: u64,
    /// `&mm->mmap_lock`.
    pub mm_lock: u64,
    /// Generation (`base_ns`) of the mm's MM_WATCH entry, taken when the current held wait
    /// began (0: none, or no watch); `held_wait_end` compares it.
    pub watch_base_ns: u64,
    pub resv: u64,
    pub wait_start_ns: u64,
    pub fence_drop_ns: u64,
    pub wait_held_ns: u64,
    pub wait_dropped_ns: u64,
    pub collateral_ns: u64,
    pub ep_wait_held_ns: u64,
    pub ep_wait_dropped_ns: u64,
    pub ep_collateral_ns: u64,
    /// MM_WATCH.waiters snapshot at the start of a held wait.
    pub waiters_snapshot: u64,
    pub pre_lock_wait_ns: u64,
    /// `vma->vm_file->f_op` whose module name is in `driver`: a thread's next fault on a file
    /// with the same file operations reuses the name instead of reading it again. Kept
    /// across episodes.
    pub driver_fops: u64,
    // Names at 8-aligned offsets, written and read as two words by the probes.
    pub holder_comm: [u8; COMM_LEN],
    pub driver: [u8; DRIVER_LEN],
    pub flags: u32,
    pub vmf_flags: u32,
    pub reserve_ret: u32,
    pub wait_ret: i32,
    /// Nesting depth of TTM handlers (a driver handler may call ttm_bo_vm_fault).
    pub depth: u32,
    /// 1 while inside ttm_bo_vm_reserve.
    pub in_reserve: u32,
    /// 1 while inside a reservation wait.
    pub in_wait: u32,
    /// 1 while the current wait is a held one (counted in MM_WATCH.holders).
    pub wait_is_held: u32,
    /// 1: an episode is open between attempts (the last attempt returned RETRY).
    pub between_attempts: u32,
    pub attempts: u16,
    pub waits: u16,
    pub collateral_waiters: u16,
    pub attempt_kind: u8,
    pub trylock: u8,
    pub holder_tid: u32,
    pub holder_tgid: u32,
    /// See [`AttemptEvent::holder_stack_id`].
    pub holder_stack_id: i32,
    /// Set when this thread finished an mmap_lock read wait that its next TTM fault may
    /// take as its own (`WAITERS`); only then does the fault look it up. Kept across
    /// episodes.
    pub pre_wait_pending: u32,
    /// Episodes left before this thread looks up its mm's watch again (see
    /// `watched_lock`). Kept across episodes.
    pub watch_check: u32,
    /// The `&mm->mmap_lock` whose MM_WATCH entry this thread last found or created: its
    /// faults do not look the watch up again for the next `watch_check` episodes. Kept
    /// across episodes.
    pub watched_lock: u64,
    /// End of the current attempt's last reservation wait (see [`AttemptEvent`]).
    pub wait_end_ns: u64,
    /// Release that ended it (`--holder-stack`): when, and by which thread of which process.
    pub release_ns: u64,
    pub release_tid: u32,
    pub release_tgid: u32,
}

// The probes store and load these 16-byte names as two 8-byte words (probe-ebpf `mem`):
// each must sit at an 8-aligned offset of an 8-aligned struct.
const _: () = {
    use core::mem::{align_of, offset_of};
    const fn words(offset: usize) -> bool {
        offset.is_multiple_of(8)
    }
    assert!(align_of::<ThreadState>() == 8 && align_of::<QuietKey>() == 8);
    assert!(align_of::<AttemptEvent>() == 8 && align_of::<WaiterEvent>() == 8);
    assert!(align_of::<AbandonedEvent>() == 8);
    assert!(words(offset_of!(ThreadState, holder_comm)) && words(offset_of!(ThreadState, driver)));
    assert!(words(offset_of!(QuietKey, comm)) && words(offset_of!(QuietKey, driver)));
    assert!(words(offset_of!(QuietSlot, count)) && align_of::<QuietSlot>() == 8);
    assert!(words(offset_of!(AttemptEvent, holder_comm)) && words(offset_of!(AttemptEvent, comm)));
    assert!(words(offset_of!(AttemptEvent, driver)) && words(offset_of!(WaiterEvent, comm)));
    assert!(words(offset_of!(AbandonedEvent, comm)) && words(offset_of!(ProbeConfig, filter_comm)));
};

/// Per-mm watch, keyed by `&mm->mmap_lock`, created by the mm's first TTM attempt and kept
/// (LRU-bounded). Waiters on that lock are only followed while a watch exists.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmWatch {
    /// Creation time; also the generation that waiter records refer to.
    pub base_ns: u64,
    /// Packed waiter set: `count << WAITER_COUNT_SHIFT | sum(begin - base_ns)` of the tasks
    /// currently waiting on the lock; updated with single atomic adds so one load is consistent.
    pub waiters: u64,
    /// Number of attempts currently in a held reservation wait on this mm.
    pub holders: u64,
    /// Start of the current period with `holders > 0`.
    pub cover_start_ns: u64,
    /// Sum of finished periods with `holders > 0`.
    pub covered_ns: u64,
}

/// Bits of [`MmWatch::waiters`] below the count.
pub const WAITER_COUNT_SHIFT: u32 = 44;
/// Mask of the begin-time sum in [`MmWatch::waiters`] (2^44 ns ≈ 4.9 hours).
pub const WAITER_SUM_MASK: u64 = (1 << WAITER_COUNT_SHIFT) - 1;

/// A task waiting on a watched mmap_lock. `WAITERS` map, keyed by tid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WaiterState {
    pub mm_lock: u64,
    pub watch_base_ns: u64,
    pub begin_ns: u64,
    /// Coverage (covered_ns + open period) at begin.
    pub covered_at_begin_ns: u64,
    /// 0 while waiting. A finished read wait is kept (with its end) so that a TTM fault
    /// starting right after it can count the wait as part of its latency.
    pub end_ns: u64,
    /// The task's completed faults (min_flt + maj_flt) when the wait ended: a TTM handler
    /// entered with the same count is the fault that waited (fault accounting happens when a
    /// fault completes, after the handler).
    pub faults_at_end: u64,
    pub lock_flags: u32,
    pub _pad: u32,
}

/// `lock:contention_begin` flag of a read acquisition (LCB_F_READ); the rwsem read-slowpath
/// probe (kernels before 5.19) reports the same.
pub const LCB_F_READ: u32 = 1 << 1;
/// `lock:contention_begin` flag of a write acquisition (LCB_F_WRITE); likewise the write
/// slowpath.
pub const LCB_F_WRITE: u32 = 1 << 2;
/// Default of [`ProbeConfig::pre_lock_link_ns`]. The path from the wait to the handler
/// (lock_mm_and_find_vma → handle_mm_fault → __do_fault) takes microseconds; the margin covers
/// a preempted CPU. The fault-count check makes a wider window (`--pre-lock-link`) safe for
/// emulated guests, whose vCPUs stall for up to 100 ms.
pub const PRE_LOCK_WAIT_LINK_NS: u64 = 10_000_000;

/// Collateral stall of a held wait from two snapshots of [`MmWatch::waiters`]: the waiters
/// present at the start (count `n0`) overlap the whole wait; those that arrived during it
/// overlap from their arrival to the end. `start`/`end` are relative to the watch base.
/// Saturating so a race can only under-count.
#[inline(always)]
pub fn collateral_from_snapshots(
    snap0: u64,
    snap1: u64,
    start_rel: u64,
    end_rel: u64,
) -> (u64, u64) {
    // Products stay below 2^63 with these clamps (≤ 2^19 waiters, ≤ 2^44 ns), and no 128-bit
    // multiply is emitted: the BPF backend has none.
    const MAX_N: u64 = 1 << 19;
    let n0 = (snap0 >> WAITER_COUNT_SHIFT).min(MAX_N);
    let n1 = (snap1 >> WAITER_COUNT_SHIFT).min(MAX_N);
    let s0 = snap0 & WAITER_SUM_MASK;
    let s1 = snap1 & WAITER_SUM_MASK;
    let end_rel = end_rel & WAITER_SUM_MASK;
    let wait = end_rel.saturating_sub(start_rel);
    let arrived = n1.saturating_sub(n0);
    let arrived_sum = s1.saturating_sub(s0);
    let total = (n0.wrapping_mul(wait))
        .saturating_add((arrived.wrapping_mul(end_rel)).saturating_sub(arrived_sum));
    (total, n1)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are #[repr(C)], made only of integers and byte arrays, with no
    // implicit padding (checked by the size assertions in the tests below).
    unsafe impl aya::Pod for super::ProbeConfig {}
    unsafe impl aya::Pod for super::KernelLayout {}
    unsafe impl aya::Pod for super::ThreadState {}
    unsafe impl aya::Pod for super::MmWatch {}
    unsafe impl aya::Pod for super::WaiterState {}
    unsafe impl aya::Pod for super::HolderRelease {}
    unsafe impl aya::Pod for super::QuietKey {}
    unsafe impl aya::Pod for super::QuietSlot {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(b: &[u8; 16]) -> [u64; 2] {
        [
            u64::from_le_bytes(b[..8].try_into().unwrap()),
            u64::from_le_bytes(b[8..].try_into().unwrap()),
        ]
    }

    #[test]
    fn names_are_cut_at_the_first_nul() {
        // "gfx" over the leftovers of "kworker/u8:2-ev" (strscpy without padding).
        let mut stale = *b"kworker/u8:2-ev\0";
        stale[..4].copy_from_slice(b"gfx\0");
        assert_eq!(
            name_before_nul(words(&stale)),
            words(b"gfx\0\0\0\0\0\0\0\0\0\0\0\0\0")
        );
        // A 15-byte name: the NUL is the last byte.
        let full = *b"0123456789abcde\0";
        assert_eq!(name_before_nul(words(&full)), words(&full));
        // NUL first, NUL at a word boundary, and 0x80/0x01 bytes that the test must not
        // take for zeros.
        assert_eq!(
            name_before_nul(words(&[0xffu8; 16]).map(|w| w & !0xff)),
            [0, 0]
        );
        let mut b = [0x81u8; 16];
        b[8] = 0;
        b[9] = 0x41;
        assert_eq!(
            name_before_nul(words(&b)),
            [u64::from_le_bytes([0x81; 8]), 0]
        );
        let mut b = [0x01u8; 16];
        b[3] = 0;
        b[4] = 0x02;
        assert_eq!(
            name_before_nul(words(&b)),
            [u64::from_le_bytes([1, 1, 1, 0, 0, 0, 0, 0]), 0]
        );
        // No NUL at all (not a kernel comm): kept whole.
        assert_eq!(name_before_nul([u64::MAX, u64::MAX]), [u64::MAX, u64::MAX]);
    }
    use core::mem::size_of;

    #[test]
    fn records_have_no_implicit_padding() {
        assert_eq!(size_of::<KernelLayout>(), 16 * 4);
        assert_eq!(size_of::<ProbeConfig>(), 64 + 4 + 4 + 16 + 4 + 4 + 8 + 8);
        assert_eq!(
            size_of::<AttemptEvent>(),
            4 * 4 + 13 * 8 + 4 * 4 + 3 * 2 + 2 + 2 * 4 + 3 * 16 + 8 + 4 * 8 + 2 * 4
        );
        assert_eq!(size_of::<WaiterEvent>(), 4 * 4 + 4 * 8 + 16);
        assert_eq!(size_of::<AbandonedEvent>(), 4 * 4 + 5 * 8 + 16);
        assert_eq!(size_of::<WaiterState>(), 6 * 8 + 2 * 4);
        assert_eq!(size_of::<MmWatch>(), 5 * 8);
        assert_eq!(size_of::<HolderRelease>(), 24);
        assert_eq!(
            size_of::<ThreadState>(),
            17 * 8 + 9 * 4 + 3 * 2 + 2 + 2 * 4 + 2 * 16 + 4 + 8 + 2 * 4 + 8 + 2 * 8 + 2 * 4
        );
    }

    #[test]
    fn latency_buckets_hold_their_values() {
        assert_eq!(size_of::<QuietKey>(), 8 + 2 * 16);
        let mut samples: [u64; 12] = [
            0,
            1,
            63,
            64,
            65,
            127,
            128,
            1_000,
            93_192_191,
            1 << 40,
            u64::MAX - 1,
            u64::MAX,
        ];
        samples.sort_unstable();
        let mut last = 0;
        for v in samples {
            let b = latency_bucket(v);
            assert!(b >= last, "buckets are monotonic in the value");
            last = b;
            let (lo, hi) = latency_bucket_bounds(b).expect("a bucket of a real value");
            assert!(lo <= v && v <= hi, "{v} in [{lo}, {hi}]");
            assert_eq!(latency_bucket(lo), b);
            assert_eq!(latency_bucket(hi), b);
            // Relative width at most 1/32.
            assert!((hi - lo) <= lo / 32, "{v}: [{lo}, {hi}]");
        }
        // Every value from 1 to 5000 and around powers of two.
        for v in (1..5000u64).chain((7..64).flat_map(|e| [(1u64 << e) - 1, 1 << e, (1 << e) + 1])) {
            let (lo, hi) = latency_bucket_bounds(latency_bucket(v)).expect("bucket");
            assert!(lo <= v && v <= hi, "{v} in [{lo}, {hi}]");
        }
        for v in [1u64, 2, 5, 1 << 33, u64::MAX] {
            assert_eq!(log2_floor(v), 63 - v.leading_zeros());
        }
        assert_eq!(latency_bucket_bounds(latency_bucket(u64::MAX) + 1), None);
    }

    #[test]
    fn collateral_counts_present_and_arriving_waiters() {
        let pack = |n: u64, sum: u64| (n << WAITER_COUNT_SHIFT) | sum;
        // One waiter present since before the held wait [100, 300): overlaps 200.
        assert_eq!(
            collateral_from_snapshots(pack(1, 50), pack(1, 50), 100, 300),
            (200, 1)
        );
        // A waiter arriving at 250 during the wait [100, 300): overlaps 50.
        assert_eq!(
            collateral_from_snapshots(pack(0, 0), pack(1, 250), 100, 300),
            (50, 1)
        );
        // Both.
        assert_eq!(
            collateral_from_snapshots(pack(1, 50), pack(2, 300), 100, 300),
            (250, 2)
        );
        // No waiter: nothing.
        assert_eq!(collateral_from_snapshots(0, 0, 100, 300), (0, 0));
        // A waiter that gave up during the wait (count went down) never wraps around.
        assert_eq!(
            collateral_from_snapshots(pack(2, 100), pack(1, 40), 100, 300),
            (400, 1)
        );
    }

    /// The STATS slots and the loss table account for each other one-to-one (the build
    /// checks the real table with `slot_error`; here the check itself is shown to catch each
    /// kind of mismatch).
    #[test]
    fn stats_slots_and_loss_channels_match_one_to_one() {
        use loss::{CHANNELS, Channel, Counter, slot_error};
        assert_eq!(slot_error(&CHANNELS, &stat::NOT_LOSSES, stat::COUNT), None);
        // Every slot below COUNT is exactly one channel's or listed, and each named slot is
        // a channel's.
        for slot in 0..stat::COUNT {
            let channels = CHANNELS
                .iter()
                .filter(|c| c.counter == Counter::Probe(slot))
                .count();
            let listed = stat::NOT_LOSSES.iter().filter(|&&s| s == slot).count();
            assert_eq!(channels + listed, 1, "STATS slot {slot}");
        }
        for s in [
            stat::RINGBUF_DROPS,
            stat::THREAD_MAP_FULL,
            stat::ORPHAN_RETURNS,
            stat::WATCH_MAP_FULL,
            stat::WAITER_MAP_FULL,
            stat::READ_FAULTS,
        ] {
            assert!(
                CHANNELS.iter().any(|c| c.counter == Counter::Probe(s)),
                "slot {s} has no loss channel"
            );
        }

        let probe = |field, slot| Channel {
            field,
            reason: field,
            words: field,
            counter: Counter::Probe(slot),
        };
        let other = Channel {
            counter: Counter::Kprobes,
            ..probe("kprobes", 0)
        };
        let good = [probe("a", 0), other, probe("b", 1)];
        assert_eq!(slot_error(&good, &[], 2), None);
        assert_eq!(slot_error(&good, &[2], 3), None);
        let err = |t: &[Channel], n: &[u32], slots| slot_error(t, n, slots).unwrap_or("");
        assert!(err(&good, &[], 1).contains("not below stat::COUNT"));
        assert!(err(&good, &[5], 3).contains("NOT_LOSSES slot is not below"));
        assert!(err(&good, &[], 3).contains("neither a loss channel's"));
        assert!(err(&[probe("a", 0), probe("b", 0)], &[], 1).contains("two owners"));
        assert!(err(&good, &[1], 2).contains("two owners"));
    }
}
