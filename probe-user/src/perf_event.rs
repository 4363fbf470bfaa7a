//! `perf_event_open(2)`: the attribute struct and the syscall, shared by the return probes
//! (tracepoint events) and `ttmlat check` (a test kprobe through the kprobe PMU).

use std::os::fd::{FromRawFd, OwnedFd};

pub const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `perf_event_attr.flags` bit 0.
pub const ATTR_FLAG_DISABLED: u64 = 1;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// The leading part of `struct perf_event_attr` (PERF_ATTR_SIZE_VER5 = 112 bytes).
#[repr(C)]
#[derive(Default)]
pub struct PerfEventAttr {
    pub type_: u32,
    pub size: u32,
    pub config: u64,
    pub sample_period: u64,
    pub sample_type: u64,
    pub read_format: u64,
    pub flags: u64,
    pub wakeup_events: u32,
    pub bp_type: u32,
    pub config1: u64,
    pub config2: u64,
    pub branch_sample_type: u64,
    pub sample_regs_user: u64,
    pub sample_stack_user: u32,
    pub clockid: i32,
    pub sample_regs_intr: u64,
    pub aux_watermark: u32,
    pub sample_max_stack: u16,
    pub reserved: u16,
}

impl PerfEventAttr {
    pub fn new(type_: u32) -> Self {
        Self {
            type_,
            size: std::mem::size_of::<Self>() as u32,
            ..Default::default()
        }
    }
}

/// Opens a system-wide event on CPU 0 (a BPF program on a tracepoint or kprobe event runs for
/// every CPU; one event is enough).
///
/// # Safety
/// Pointers stored in `attr` (config1 for a kprobe's symbol name) must be valid for the call.
pub unsafe fn open(attr: &PerfEventAttr) -> std::io::Result<OwnedFd> {
    // SAFETY: attr is a valid, fully initialised perf_event_attr of the size it declares; the
    // caller vouches for the pointers inside.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr as *const PerfEventAttr,
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn attr_has_the_kernel_v5_size() {
        assert_eq!(std::mem::size_of::<super::PerfEventAttr>(), 112);
    }
}
