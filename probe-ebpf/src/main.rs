//! ttmlat's probes. Each program below names the kernel function it hooks, the kernel
//! versions where that function exists, and why it is probed. The state machines live in
//! `episode` (per-thread fault episodes) and `watch` (collateral stalls on mmap_lock); the
//! programs only decode arguments and call them.
#![no_std]
#![no_main]
// Atomic fetch-add/sub on map values: core's Atomic* types lack RMW ops on the BPF target.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod episode;
mod kernel;
mod maps;
mod mem;
mod watch;

use aya_ebpf::programs::tracing::StackIdContext;
use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe, raw_tracepoint},
    programs::{FEntryContext, FExitContext, ProbeContext, RawTracePointContext, RetProbeContext},
};
use probe_common::{EventKind, HolderRelease, LCB_F_READ, LCB_F_WRITE, WaiterEvent, attempt_kind};

use crate::{
    episode::Seen,
    maps::{CONTENDED, RELEASES, STACKS},
};

/// `ttm_bo_vm_fault(struct vm_fault *vmf)` (ttm.ko, 5.5+; static `ttm_bo_vm_fault` in 5.4) and
/// the driver fault handlers that call `ttm_bo_vm_reserve` (amdgpu_gem_fault, radeon_gem_fault,
/// nouveau_ttm_fault, vmw_bo_vm_fault/mkwrite, i915 vm_fault_ttm, xe_gem_fault; see the
/// discovery module). Start of an attempt: the thread holds mmap_lock here.
#[kprobe]
pub fn ttm_fault_enter(ctx: ProbeContext) -> u32 {
    if let Some(vmf) = ctx.arg::<u64>(0) {
        episode::attempt_enter::<kernel::Probe>(attempt_kind::FAULT, vmf, 0);
    }
    0
}

/// Return of the same handlers: end of the attempt; VM_FAULT_RETRY keeps the episode open.
#[kretprobe]
pub fn ttm_fault_exit(ctx: RetProbeContext) -> u32 {
    episode::attempt_exit::<kernel::Probe>(ctx.ret::<u64>() as u32);
    0
}

/// fentry on the same fault handlers, where the module's BTF lets the kernel build a BPF
/// trampoline (Linux 5.11+ with CONFIG_DEBUG_INFO_BTF_MODULES; aya 0.14 cannot attach to a
/// module function, so `module_trampoline` in probe-user loads it): a direct call from the
/// handler's ftrace site instead of a kprobe's dispatch. Loaded once per handler; the section's
/// function name is only a placeholder.
#[fentry(function = "ttm_bo_vm_fault")]
pub fn ttm_fault_fentry(ctx: FEntryContext) -> i32 {
    // `vmf` is a `struct vm_fault *` typed by the handler's BTF: read directly.
    episode::attempt_enter::<kernel::Btf>(attempt_kind::FAULT, ctx.arg::<u64>(0), 0);
    0
}

/// fexit on the same fault handlers: `vm_fault_t handler(struct vm_fault *vmf)`, so the
/// return value follows the one argument. Replaces a kretprobe (no return-address hijack, no
/// instance to allocate, nothing for `maxactive` to miss).
#[fexit(function = "ttm_bo_vm_fault")]
pub fn ttm_fault_fexit(ctx: FExitContext) -> i32 {
    episode::attempt_exit::<kernel::Btf>(ctx.arg::<u64>(1) as u32);
    0
}

/// `ttm_bo_vm_access(vma, addr, buf, len, write)` (ttm.ko, 5.5–6.18; `ttm_bo_access` from
/// 6.19): ptrace and /proc/PID/mem take the reservation with mmap_lock held on every kernel.
#[kprobe]
pub fn ttm_access_enter(ctx: ProbeContext) -> u32 {
    if let Some(vma) = ctx.arg::<u64>(0) {
        episode::attempt_enter::<kernel::Probe>(attempt_kind::ACCESS, 0, vma);
    }
    0
}

/// Return of `ttm_bo_vm_access`.
#[kretprobe]
pub fn ttm_access_exit(ctx: RetProbeContext) -> u32 {
    episode::attempt_exit::<kernel::Probe>(ctx.ret::<u64>() as u32);
    0
}

/// `ttm_bo_vm_reserve(bo, vmf)` (ttm.ko, 5.5+; exported, not inlined in Debian builds): the
/// trylock / drop mmap_lock / wait / RETRY logic lives here.
#[kprobe]
pub fn ttm_reserve_enter(_ctx: ProbeContext) -> u32 {
    episode::reserve_enter();
    0
}

/// Return of `ttm_bo_vm_reserve`: 0, VM_FAULT_RETRY or VM_FAULT_NOPAGE.
#[kretprobe]
pub fn ttm_reserve_exit(ctx: RetProbeContext) -> u32 {
    episode::reserve_exit(ctx.ret::<u64>() as u32);
    0
}

/// `ww_mutex_trylock(lock, ctx)` (vmlinux, a real function since 5.16; inline before):
/// the result of `dma_resv_trylock` inside reserve. System-wide: one map lookup.
#[kretprobe]
pub fn resv_trylock_exit(ctx: RetProbeContext) -> u32 {
    episode::trylock_exit(ctx.ret::<u64>() as i32, Seen::SystemWide);
    0
}

/// `ww_mutex_lock_interruptible(lock, ctx)` and `ww_mutex_lock` (vmlinux, all versions,
/// rt_mutex based on PREEMPT_RT): the reservation wait. System-wide: one map lookup.
#[kprobe]
pub fn resv_lock_enter(ctx: ProbeContext) -> u32 {
    if let Some(lock) = ctx.arg::<u64>(0) {
        episode::wait_enter(lock, Seen::SystemWide);
    }
    0
}

/// Return of the reservation wait (0, -EINTR, -EDEADLK, -EALREADY).
#[kretprobe]
pub fn resv_lock_exit(ctx: RetProbeContext) -> u32 {
    episode::wait_exit(ctx.ret::<u64>() as i32);
    0
}

/// `ww_mutex_unlock(lock)` (vmlinux, all versions; `dma_resv_unlock` ends here). Attached only
/// with `--holder-stack`: when the released lock is a reservation a TTM fault waits for, record
/// the releasing task's kernel stack. System-wide: one map lookup.
#[kprobe]
pub fn resv_unlock_enter(ctx: ProbeContext) -> u32 {
    let Some(lock) = ctx.arg::<u64>(0) else {
        return 0;
    };
    if CONTENDED.get_ptr(lock).is_none() {
        return 0;
    }
    let stack_id = ctx.get_stackid(&STACKS, 0).map_or(-1, |id| id as i32);
    let who = episode::current();
    let release = HolderRelease {
        released_ns: kernel::now(),
        stack_id,
        tid: who.tid,
        tgid: who.tgid,
        _pad: 0,
    };
    let _ = RELEASES.insert(lock, release, 0);
    0
}

/// `up_read(struct rw_semaphore *sem)` (vmlinux, all versions): `mmap_read_unlock` ends here.
/// Observes whether this thread released *its fault's* mmap_lock before waiting. The hottest
/// probe: one map lookup for every thread not inside a TTM attempt.
#[kprobe]
pub fn mmap_read_unlock(ctx: ProbeContext) -> u32 {
    if let Some(sem) = ctx.arg::<u64>(0) {
        episode::read_unlock(sem, Seen::SystemWide);
    }
    0
}

// Call-site hooks (the default where the loaded module's file is found; see probe-user's
// `callsites`): kprobes on instructions inside TTM's own functions, placed from the module's
// relocations. They run only when a TTM fault executes that call, never for the rest of the
// system, and (unlike trampolines) with preemption off, so a preempted program cannot make
// the kernel skip another thread's run. On a call instruction the arguments are still in
// their registers; on the instruction after it, `rax` holds the return value.

#[inline(always)]
fn regs(ctx: &ProbeContext) -> Option<&aya_ebpf::bindings::pt_regs> {
    // SAFETY: a kprobe's context is the trapped task's pt_regs, valid for the program's run.
    unsafe { ctx.regs.as_ref() }
}

/// After `call ww_mutex_trylock` in `ttm_bo_vm_reserve` (5.16+, every version since): the
/// trylock's result, and the fact that reserve ran.
#[kprobe]
pub fn site_trylock_ret(ctx: ProbeContext) -> u32 {
    if let Some(r) = regs(&ctx) {
        episode::trylock_exit(r.rax as i32, Seen::InReserveSite);
    }
    0
}

/// The first instruction of the path `ttm_bo_vm_reserve` (or xe's fast path) takes when its
/// trylock succeeded, found by decoding the `test; je` after the call (probe-user `branch`):
/// the same fact as [`site_trylock_ret`], at a place the kernel can optimize the kprobe into a
/// jump (no breakpoint trap, no single-step). Also reached after a reservation wait; the
/// first trylock result of an attempt is kept, so that does not count.
#[kprobe]
pub fn site_trylock_acquired(_ctx: ProbeContext) -> u32 {
    episode::trylock_exit(1, Seen::InReserveSite);
    0
}

/// The first instruction of the path taken when that trylock failed.
#[kprobe]
pub fn site_trylock_failed(_ctx: ProbeContext) -> u32 {
    episode::trylock_exit(0, Seen::InReserveSite);
    0
}

/// `call up_read` in `ttm_bo_vm_reserve` (5.8+ `mmap_read_unlock`, `up_read(&mm->mmap_sem)`
/// before): the fault drops mmap_lock before waiting for the reservation.
#[kprobe]
pub fn site_unlock_in_reserve(ctx: ProbeContext) -> u32 {
    if let Some(sem) = ctx.arg::<u64>(0) {
        episode::read_unlock(sem, Seen::InReserveSite);
    }
    0
}

/// `call up_read` in a fault handler outside reserve (`ttm_bo_vm_fault_reserved`, which
/// inlines `ttm_bo_vm_fault_idle`, 5.5+): mmap_lock dropped for a fence wait.
#[kprobe]
pub fn site_unlock_in_handler(ctx: ProbeContext) -> u32 {
    if let Some(sem) = ctx.arg::<u64>(0) {
        episode::read_unlock(sem, Seen::InHandlerSite);
    }
    0
}

/// `call ww_mutex_lock_interruptible` / `call ww_mutex_lock` in reserve (both the held and
/// the dropped wait) or in `ttm_bo_vm_access` / `ttm_bo_access`: a reservation wait begins.
#[kprobe]
pub fn site_lock_call(ctx: ProbeContext) -> u32 {
    if let Some(lock) = ctx.arg::<u64>(0) {
        episode::wait_enter(lock, Seen::InReserveSite);
    }
    0
}

/// `call drm_exec_lock_obj(exec, obj)` in xe's `xe_bo_cpu_fault` (xe 6.18+, which no longer
/// calls `ttm_bo_vm_reserve`): xe's reservation wait begins, after its fastpath's trylock
/// failed; the ww_mutex is `obj->resv->lock` (offset 0 of `struct dma_resv`). Its end is the
/// `site_lock_ret` after the call.
#[kprobe]
pub fn site_exec_lock_call(ctx: ProbeContext) -> u32 {
    if let Some(obj) = ctx.arg::<u64>(1) {
        let resv = kernel::gem_object_resv(obj);
        if resv != 0 {
            episode::wait_enter(resv, Seen::InReserveSite);
        }
    }
    0
}

/// The instruction after such a call: the wait ended with `rax` (0, -EINTR, -EDEADLK...).
#[kprobe]
pub fn site_lock_ret(ctx: ProbeContext) -> u32 {
    if let Some(r) = regs(&ctx) {
        episode::wait_exit(r.rax as i32);
    }
    0
}

// BTF-trampoline variants of the vmlinux hooks above (fentry/fexit, x86-64 5.5+, arm64
// 6.0+). Same facts, a fraction of a kprobe's cost: a direct call from the function's
// ftrace site, no pt_regs, no kprobe dispatch. The loader uses them whenever the kernel
// accepts them and falls back to the kprobes otherwise. An fentry program is bound to one
// function at load time, hence one per function. For fexit, the return value follows the
// arguments in the context.

/// fentry on `up_read`; see [`mmap_read_unlock`]. The hottest hook: every mmap_read_unlock
/// in the system (every page fault before per-VMA locks, 6.4).
#[fentry(function = "up_read")]
pub fn up_read_fentry(ctx: FEntryContext) -> i32 {
    episode::read_unlock(ctx.arg::<u64>(0), Seen::SystemWide);
    0
}

/// fexit on `ww_mutex_trylock(lock, ctx)`; see [`resv_trylock_exit`].
#[fexit(function = "ww_mutex_trylock")]
pub fn ww_mutex_trylock_fexit(ctx: FExitContext) -> i32 {
    episode::trylock_exit(ctx.arg::<u64>(2) as i32, Seen::SystemWide);
    0
}

/// fentry on `ww_mutex_lock_interruptible(lock, ctx)`; see [`resv_lock_enter`].
#[fentry(function = "ww_mutex_lock_interruptible")]
pub fn ww_mutex_lock_interruptible_fentry(ctx: FEntryContext) -> i32 {
    episode::wait_enter(ctx.arg::<u64>(0), Seen::SystemWide);
    0
}

/// fexit on `ww_mutex_lock_interruptible`; see [`resv_lock_exit`].
#[fexit(function = "ww_mutex_lock_interruptible")]
pub fn ww_mutex_lock_interruptible_fexit(ctx: FExitContext) -> i32 {
    episode::wait_exit(ctx.arg::<u64>(2) as i32);
    0
}

/// fentry on `ww_mutex_lock(lock, ctx)`; see [`resv_lock_enter`].
#[fentry(function = "ww_mutex_lock")]
pub fn ww_mutex_lock_fentry(ctx: FEntryContext) -> i32 {
    episode::wait_enter(ctx.arg::<u64>(0), Seen::SystemWide);
    0
}

/// fexit on `ww_mutex_lock`; see [`resv_lock_exit`].
#[fexit(function = "ww_mutex_lock")]
pub fn ww_mutex_lock_fexit(ctx: FExitContext) -> i32 {
    episode::wait_exit(ctx.arg::<u64>(2) as i32);
    0
}

/// `lock:contention_begin(void *lock, unsigned int flags)` (5.19+), raw tracepoint: a task
/// starts waiting for a contended lock. One map lookup unless it is a watched mmap_lock.
#[raw_tracepoint(tracepoint = "contention_begin")]
pub fn lock_contention_begin(ctx: RawTracePointContext) -> i32 {
    let lock: u64 = ctx.arg(0);
    let flags: u64 = ctx.arg(1);
    watch::waiter_begin(episode::current().tid, lock, flags as u32, kernel::now());
    0
}

/// `lock:contention_end(void *lock, int ret)` (5.19+).
#[raw_tracepoint(tracepoint = "contention_end")]
pub fn lock_contention_end(ctx: RawTracePointContext) -> i32 {
    let lock: u64 = ctx.arg(0);
    waiter_done(lock);
    0
}

/// `rwsem_down_read_slowpath(sem, ...)` (vmlinux, static; used only on kernels without
/// lock:contention_* tracepoints, < 5.19): a read wait for `sem` begins. Reported as a read
/// wait, like the tracepoint's LCB_F_READ, so that a fault's own mmap_lock wait is kept for
/// the handler entry that follows it.
#[kprobe]
pub fn rwsem_read_slow_enter(ctx: ProbeContext) -> u32 {
    if let Some(sem) = ctx.arg::<u64>(0) {
        watch::waiter_begin(episode::current().tid, sem, LCB_F_READ, kernel::now());
    }
    0
}

/// `rwsem_down_write_slowpath(sem, ...)` (vmlinux, static, < 5.19): a write wait begins.
#[kprobe]
pub fn rwsem_write_slow_enter(ctx: ProbeContext) -> u32 {
    if let Some(sem) = ctx.arg::<u64>(0) {
        watch::waiter_begin(episode::current().tid, sem, LCB_F_WRITE, kernel::now());
    }
    0
}

/// Return of the rwsem slowpaths.
#[kretprobe]
pub fn rwsem_slow_exit(_ctx: RetProbeContext) -> u32 {
    waiter_done(0);
    0
}

fn waiter_done(lock: u64) {
    let cur = episode::current();
    let now = kernel::now();
    let Some(done) = watch::waiter_end(cur.tid, lock, now) else {
        return;
    };
    let Some(mut entry) = maps::reserve_zeroed::<WaiterEvent>() else {
        return;
    };
    // SAFETY: the reserved record, zeroed: a valid WaiterEvent.
    let e = unsafe { &mut *entry.as_mut_ptr() };
    e.kind = EventKind::Waiter as u32;
    e.lock_flags = done.state.lock_flags;
    e.tid = cur.tid;
    e.tgid = cur.tgid;
    e.mm_lock = done.state.mm_lock;
    e.begin_ns = done.state.begin_ns;
    e.end_ns = now;
    e.held_overlap_ns = done.held_overlap_ns;
    mem::set_name(&mut e.comm, mem::current_comm());
    entry.submit(crate::maps::submit_flags());
}

/// `sched:sched_process_exit` raw tracepoint (all versions): fires for every exiting thread;
/// drops its state so per-thread maps return to baseline even when a fault was SIGKILLed.
#[raw_tracepoint(tracepoint = "sched_process_exit")]
pub fn thread_exit(_ctx: RawTracePointContext) -> i32 {
    episode::thread_exit();
    0
}

/// Entry of `exit_files(tsk)` (vmlinux, every version 5.10–7.2; `do_exit` calls it for the
/// exiting task after `exit_mm`, so the thread's last mmap_lock wait is over). The thread-exit
/// hook where the function exists: a kprobe program runs with preemption off and cannot be
/// skipped the way the raw-tracepoint program above was on 7.2 (preempted mid-run, its next
/// run on that CPU is refused).
#[kprobe]
pub fn thread_exit_kprobe(_ctx: ProbeContext) -> u32 {
    episode::thread_exit();
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
