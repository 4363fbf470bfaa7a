//! ttmlat as a library: every stage of the data path, for the `ttmlat` binary (src/main.rs)
//! and for the lab and host tests, which read what the binary writes (recordings, summaries,
//! workload reports) through these same types.
//!
//! Data path: probes (probe-ebpf) → records and quiet-episode counts (probe-common) →
//! `events` (decoding) → `episodes` (attempts and episodes, with `attribution`'s paths) →
//! `aggregate` and `serve`'s metrics → sinks (`report` terminal, `recording` file, `/metrics`).

pub mod aggregate;
pub mod attribution;
pub mod bench;
pub mod branch;
pub mod callsites;
pub mod check;
pub mod compare;
pub mod discovery;
pub mod episodes;
pub mod events;
#[cfg(test)]
pub mod fault_sequences;
pub mod kernel_info;
pub mod layout;
pub mod loader;
pub mod loss;
pub mod mapped;
pub mod memlock;
pub mod module_trampoline;
pub mod perf_event;
pub mod pipeline_bench;
pub mod preflight;
pub mod prog_fdinfo;
pub mod recording;
pub mod report;
pub mod retprobe;
pub mod serve;
pub mod session;
pub mod session_report;
pub mod slowest;
pub mod symbolize;
pub mod timeline;
pub mod workload;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The single-threaded async runtime of `serve`, `bench` and the command line.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Fails unless a recording can be written next to `output` (checked before probes attach,
/// so that a session's data is not lost at the end).
pub fn check_writable(output: &Path) -> Result<()> {
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tempfile::NamedTempFile::new_in(&dir)
        .map(drop)
        .with_context(|| format!("cannot write the recording into {}", dir.display()))
}
