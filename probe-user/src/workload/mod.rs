//! Built-in workloads that make real TTM faults: `touch` (one pass over a dumb buffer) and
//! `stress` (reservation contention scenarios).

pub mod drm;
pub mod stress;
pub mod throughput;
pub mod touch;

use std::{num::NonZeroUsize, ptr::NonNull};

use anyhow::{Context, Result, bail};
use nix::sys::{
    mman::{MapFlags, ProtFlags, mmap_anonymous, munmap},
    resource::{UsageWho, getrusage},
};

/// Parses "4096", "3M", "64MiB", "1G".
pub fn parse_size(s: &str) -> Result<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().with_context(|| format!("bad size {s:?}"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => bail!("bad size unit {other:?} in {s:?}"),
    };
    n.checked_mul(mult)
        .filter(|&v| v > 0)
        .with_context(|| format!("size {s:?} is zero or too large"))
}

/// Names this thread (its comm), so observers can filter on it.
pub fn set_comm(name: &str) {
    if let Ok(c) = std::ffi::CString::new(name) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string of up to 16 bytes.
        unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr()) };
    }
}

/// Minor + major page faults of the calling thread so far (RUSAGE_THREAD: other threads of
/// the process, e.g. a test harness's, do not count).
pub fn thread_faults() -> i64 {
    let (minor, major) = faults(UsageWho::RUSAGE_THREAD);
    minor + major
}

/// (minor, major) page faults of this process so far.
pub fn rusage() -> (i64, i64) {
    faults(UsageWho::RUSAGE_SELF)
}

fn faults(who: UsageWho) -> (i64, i64) {
    getrusage(who).map_or((0, 0), |u| (u.minor_page_faults(), u.major_page_faults()))
}

/// A private anonymous read/write mapping (the throughput loops, the stress victim).
/// Unmapped by [`AnonMapping::unmap`], which reports errors, or on drop.
pub struct AnonMapping {
    ptr: NonNull<libc::c_void>,
    len: NonZeroUsize,
}

impl AnonMapping {
    pub fn new(len: NonZeroUsize) -> Result<Self> {
        // SAFETY: a fresh private anonymous mapping; nothing else aliases it.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE,
            )
        }
        .context("mmap of anonymous memory")?;
        Ok(Self { ptr, len })
    }

    pub fn ptr(&self) -> NonNull<libc::c_void> {
        self.ptr
    }

    pub fn unmap(self) -> Result<()> {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: exactly the mapping returned by mmap, unmapped once (no Drop after this).
        unsafe { munmap(me.ptr, me.len.get()) }.context("munmap of anonymous memory")
    }
}

impl Drop for AnonMapping {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping returned by mmap.
        let _ = unsafe { munmap(self.ptr, self.len.get()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").ok(), Some(4096));
        assert_eq!(parse_size("3M").ok(), Some(3 << 20));
        assert_eq!(parse_size("64MiB").ok(), Some(64 << 20));
        assert_eq!(parse_size("1g").ok(), Some(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("M").is_err());
    }
}
