//! `ttmlat workload throughput`: single-threaded fault and mmap loops for the overhead
//! benchmark (`cargo xtask bench-overhead`). Each loop runs for a fixed time and reports how
//! many operations it completed, so an observer's cost shows as lost throughput.
//!
//! - `ttm`: map a dumb buffer, write one byte per page, unmap; every first touch of a
//!   TTM_BO_VM_NUM_PREFAULT-page window enters the TTM fault handler (uncontended path).
//! - `anon`: map private anonymous memory (no THP), write one byte per page, unmap; one
//!   anonymous page fault per page.
//! - `mmap`: map and unmap 64 KiB of anonymous memory without touching it.
//! - `resv`: create a 64 KiB dumb buffer, look up its mmap offset and destroy it, without
//!   faulting: creation reserves the buffer object (`ttm_bo_init_reserved` trylocks its
//!   dma_resv) and destruction releases it. A stand-in for a GPU driver's command
//!   submission, which takes reservations thousands of times a second.

use std::{
    num::NonZeroUsize,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use nix::sys::mman::{MmapAdvise, madvise};
use serde::Serialize;

use super::{
    AnonMapping,
    drm::{Device, Mapping},
};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Faults on a mapped dumb buffer (TTM fault handler).
    Ttm,
    /// Anonymous page faults.
    Anon,
    /// mmap + munmap of 64 KiB, no faults.
    Mmap,
    /// Dumb-buffer create + destroy: buffer reservations without faults.
    Resv,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ThroughputArgs {
    /// Which loop to run.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// How long to run, e.g. 3s, 500ms.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Bytes mapped per iteration of the `ttm` and `anon` loops.
    #[arg(long, default_value = "4M", value_parser = super::parse_size)]
    pub size: usize,
    /// DRM device for `ttm` (default: the first /dev/dri/card* with dumb buffers).
    #[arg(long)]
    pub device: Option<PathBuf>,
}

#[derive(Serialize, serde::Deserialize, Debug)]
pub struct ThroughputReport {
    pub kind: Kind,
    pub pid: u32,
    /// Loop iterations (one map + touch + unmap, or one mmap + munmap).
    pub iterations: u64,
    /// Pages written.
    pub pages: u64,
    /// Minor + major faults of this thread during the loop (getrusage RUSAGE_THREAD).
    pub faults: i64,
    pub elapsed_ns: u64,
    /// `faults` per second for `ttm` and `anon`, iterations per second for `mmap` and `resv`.
    pub ops_per_sec: f64,
}

pub fn run(args: &ThroughputArgs) -> Result<()> {
    super::set_comm(match args.kind {
        Kind::Ttm => "tput-ttm",
        Kind::Anon => "tput-anon",
        Kind::Mmap => "tput-mmap",
        Kind::Resv => "tput-resv",
    });
    let report = measure(args)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn measure(args: &ThroughputArgs) -> Result<ThroughputReport> {
    let page = Mapping::page_size();
    let before = super::thread_faults();
    let start = Instant::now();
    let (mut iterations, mut pages) = (0u64, 0u64);
    match args.kind {
        Kind::Ttm => {
            let dev = Device::open(args.device.as_deref())?;
            let bo = dev.create_dumb(args.size)?;
            let offset = bo.map_offset()?;
            while start.elapsed() < args.duration {
                let map = Mapping::map_fd(dev.as_fd(), offset, bo.size)?;
                for p in 0..map.pages() {
                    map.touch(p);
                }
                pages += map.pages() as u64;
                iterations += 1;
            }
        }
        Kind::Anon => {
            let len = NonZeroUsize::new(args.size).context("--size must be > 0")?;
            while start.elapsed() < args.duration {
                let map = AnonMapping::new(len)?;
                // SAFETY: the mapping is ours. Without THP every page is one fault.
                unsafe { madvise(map.ptr(), len.get(), MmapAdvise::MADV_NOHUGEPAGE) }
                    .context("madvise(MADV_NOHUGEPAGE)")?;
                let n = len.get().div_ceil(page);
                for p in 0..n {
                    // SAFETY: p * page < len, inside the mapping.
                    unsafe {
                        std::ptr::write_volatile(map.ptr().as_ptr().cast::<u8>().add(p * page), 1)
                    };
                }
                map.unmap()?;
                pages += n as u64;
                iterations += 1;
            }
        }
        Kind::Mmap => {
            let len = NonZeroUsize::new(64 << 10).context("zero length")?;
            while start.elapsed() < args.duration {
                for _ in 0..64 {
                    AnonMapping::new(len)?.unmap()?;
                }
                iterations += 64;
            }
        }
        Kind::Resv => {
            let dev = Device::open(args.device.as_deref())?;
            while start.elapsed() < args.duration {
                for _ in 0..16 {
                    let bo = dev.create_dumb(64 << 10)?;
                    bo.map_offset()?;
                }
                iterations += 16;
            }
        }
    }
    let elapsed = start.elapsed();
    let faults = super::thread_faults() - before;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let ops = match args.kind {
        Kind::Mmap | Kind::Resv => iterations as f64,
        Kind::Ttm | Kind::Anon => faults as f64,
    };
    Ok(ThroughputReport {
        kind: args.kind,
        pid: std::process::id(),
        iterations,
        pages,
        faults,
        elapsed_ns: elapsed.as_nanos() as u64,
        ops_per_sec: ops / secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short(kind: Kind) -> ThroughputArgs {
        ThroughputArgs {
            kind,
            duration: Duration::from_millis(50),
            size: 1 << 20,
            device: None,
        }
    }

    /// The anonymous loops run anywhere: a short run counts at least one fault per page.
    #[test]
    fn anon_loop_counts_its_faults() -> Result<()> {
        let r = measure(&short(Kind::Anon))?;
        assert!(r.iterations >= 1);
        assert_eq!(
            r.pages,
            r.iterations * (1 << 20) as u64 / Mapping::page_size() as u64
        );
        assert!(r.faults as u64 >= r.pages, "{r:?}");
        Ok(())
    }

    #[test]
    fn mmap_loop_makes_no_faults_per_iteration() -> Result<()> {
        let r = measure(&short(Kind::Mmap))?;
        assert!(r.iterations >= 64);
        assert!((r.faults as u64) < r.iterations / 8, "{r:?}");
        Ok(())
    }
}
