//! `cargo xtask setup` (runs scripts/setup.sh) and its hidden second half,
//! `cargo xtask prepare-lab`.

use std::process::{Command, ExitCode};

use clap::Args;
use xtask::lab_dirs::{LabDirs, repo_root};
use xtask::prepare::{PrepareOptions, prepare_lab as prepare};

#[derive(Args)]
pub struct SetupArgs {
    /// Run `apt-get update` first (picks up newer kernel ABIs).
    #[arg(long)]
    refresh: bool,
}

#[derive(Args)]
pub struct PrepareLabArgs {
    /// Run `apt-get update` first (picks up newer kernel ABIs).
    #[arg(long)]
    refresh: bool,
}

pub fn setup(args: &SetupArgs) -> ExitCode {
    let script = repo_root().join("scripts/setup.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    if args.refresh {
        cmd.arg("--refresh");
    }
    match cmd.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("error: {} failed ({status})", script.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: could not run {}: {e}", script.display());
            ExitCode::FAILURE
        }
    }
}

pub fn prepare_lab(args: &PrepareLabArgs) -> ExitCode {
    let opts = PrepareOptions {
        refresh: args.refresh,
    };
    match prepare(&LabDirs::default(), &opts) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
