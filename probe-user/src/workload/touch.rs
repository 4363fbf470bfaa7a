//! `ttmlat workload touch`: create one dumb buffer, map it, touch every page once. The
//! smallest real TTM fault workload; its fault count is checked against tracefs in the lab.

use std::{path::PathBuf, time::Instant};

use anyhow::Result;
use serde::Serialize;

use super::drm::{Device, Mapping};

#[derive(clap::Args, Debug, Clone)]
pub struct TouchArgs {
    /// DRM device (default: the first /dev/dri/card* with dumb buffers).
    #[arg(long)]
    pub device: Option<PathBuf>,
    /// Buffer size, e.g. 3M, 64M.
    #[arg(long, default_value = "3M", value_parser = super::parse_size)]
    pub size: usize,
    /// Print a JSON report instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize, serde::Deserialize, Debug)]
pub struct TouchReport {
    pub pid: u32,
    pub device: String,
    pub driver: String,
    pub bytes: usize,
    pub pages: usize,
    pub elapsed_ns: u64,
    /// Minor/major faults of this process during the touch loop (getrusage).
    pub minflt: i64,
    pub majflt: i64,
}

pub fn run(args: &TouchArgs) -> Result<()> {
    super::set_comm("ttm-touch");
    let dev = Device::open(args.device.as_deref())?;
    let bo = dev.create_dumb(args.size)?;
    let map: Mapping = bo.map()?;
    let before = super::rusage();
    let start = Instant::now();
    for page in 0..map.pages() {
        map.touch(page);
    }
    let elapsed_ns = start.elapsed().as_nanos() as u64;
    let after = super::rusage();
    let report = TouchReport {
        pid: std::process::id(),
        device: dev.path.display().to_string(),
        driver: dev.driver(),
        bytes: map.len,
        pages: map.pages(),
        elapsed_ns,
        minflt: after.0 - before.0,
        majflt: after.1 - before.1,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "touched {} pages ({} bytes) of a dumb buffer on {} ({}) in {:.3} ms; pid {}",
            report.pages,
            report.bytes,
            report.device,
            report.driver,
            elapsed_ns as f64 / 1e6,
            report.pid
        );
    }
    Ok(())
}
