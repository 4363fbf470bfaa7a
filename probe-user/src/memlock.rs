//! Lifting RLIMIT_MEMLOCK before anything BPF is loaded.
//!
//! Before 5.11 the kernel charges BPF maps and programs to the user's locked memory
//! (`user->locked_vm`, summed over all of that user's processes) against RLIMIT_MEMLOCK, and
//! fails `BPF_PROG_LOAD`/`BPF_MAP_CREATE` with EPERM beyond it: measured on Debian's 5.10 in the
//! lab, a second `ttmlat record` started beside a first failed `check`'s program load. From
//! 5.11 on BPF memory is charged to the memory cgroup and the limit does not matter. Like
//! libbpf-tools, ttmlat raises its limit to infinity (root may); if it cannot, it says so and
//! goes on (the kernel's EPERM then names the failing step).

use nix::sys::resource::{RLIM_INFINITY, Resource, setrlimit};

/// Raises RLIMIT_MEMLOCK to infinity. `Err` describes why it could not.
pub fn lift() -> Result<(), String> {
    setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY)
        .map_err(|e| format!("could not raise RLIMIT_MEMLOCK ({e}): on kernels before 5.11 BPF maps and programs count against it"))
}
