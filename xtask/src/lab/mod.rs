//! The kernel lab: boot a Debian kernel in QEMU (TCG), with the host's root
//! file system shared read-only over 9p, load the bochs DRM driver (stock or
//! blocking TTM) and run a bash script as root in a chroot of the host.
//!
//! ```no_run
//! use xtask::lab::{self, LabSpec, TtmVariant};
//! let run = lab::run(&LabSpec::new("6.1", "ls -l /dev/dri").ttm(TtmVariant::Stock))?;
//! assert_eq!(run.rc, 0);
//! # anyhow::Ok(())
//! ```

mod cpio_newc;
mod evidence;
mod failure;
mod guest_init;
mod initramfs;
pub mod kernel_trouble;
mod qemu;
mod run;
mod run_dir;
pub mod shell_quote;
mod spec;
mod verdict;

pub use failure::{FailureKind, LabFailure};
pub use guest_init::{GUEST_OUT, STAGES};
pub use initramfs::ensure as ensure_initramfs;
pub use run::{LabRun, run, run_in};
pub use spec::{LabSpec, TtmVariant};
