//! `cargo xtask lab --kernel K [...] -- CMD [ARGS...]`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use xtask::lab::shell_quote;
use xtask::lab::{LabFailure, LabSpec, TtmVariant};

/// Exit status when the lab itself failed (as opposed to the guest command).
const LAB_FAILED: u8 = 125;

#[derive(Args)]
pub struct LabArgs {
    /// Kernel alias from target/lab/kernels.json ("6.1" or "6.12").
    #[arg(long)]
    kernel: String,
    /// TTM module to load: stock (Debian's) or blocking (patched, 6.1 only).
    #[arg(long, default_value = "stock")]
    ttm: TtmVariant,
    /// Host-side timeout for the whole run, in seconds.
    #[arg(long, default_value_t = LabSpec::DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,
    /// Guest CPUs.
    #[arg(long, default_value_t = LabSpec::DEFAULT_SMP)]
    smp: u32,
    /// Count instructions instead of host time (`-icount shift=N,sleep=off`: guest time
    /// advances 2^N ns per executed instruction; use with --smp 1, as bench-overhead does).
    #[arg(long, value_name = "SHIFT")]
    icount: Option<u32>,
    /// Guest memory in MiB.
    #[arg(long = "mem", default_value_t = LabSpec::DEFAULT_MEM_MIB)]
    mem_mib: u32,
    /// Extra environment for the command (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// The command to run in the guest (as root, cwd = the current directory).
    #[arg(last = true, required = true, num_args = 1..)]
    command: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String)> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("expected NAME=VALUE, got {s:?}"))?;
    Ok((name.to_owned(), value.to_owned()))
}

pub fn lab(args: &LabArgs) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<LabFailure>() {
                Some(failure) => eprintln!("error: {failure}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(LAB_FAILED)
        }
    }
}

fn run(args: &LabArgs) -> Result<ExitCode> {
    let cwd = std::env::current_dir().context("could not read the current directory")?;
    let mut spec = LabSpec::new(&args.kernel, shell_quote::join(&args.command))
        .ttm(args.ttm)
        .cwd(cwd)
        .timeout(Duration::from_secs(args.timeout))
        .smp(args.smp)
        .mem_mib(args.mem_mib);
    if let Some(shift) = args.icount {
        spec = spec.icount(shift);
    }
    spec.env.extend(args.env.iter().cloned());

    let run = xtask::lab::run(&spec)?;
    std::io::stdout()
        .write_all(run.stdout.as_bytes())
        .context("could not write stdout")?;
    std::io::stderr()
        .write_all(run.stderr.as_bytes())
        .context("could not write stderr")?;
    eprintln!(
        "lab: {} ({}, ttm {}{}) rc {} in {:.1} s; tainted {}; run dir {}",
        run.kernel.alias,
        run.kernel.release,
        run.ttm,
        if run.ttm_srcversion.is_empty() {
            String::new()
        } else {
            format!(" srcversion {}", run.ttm_srcversion)
        },
        run.rc,
        run.elapsed.as_secs_f64(),
        run.tainted,
        run.run_dir.display()
    );
    Ok(ExitCode::from(u8::try_from(run.rc).unwrap_or(LAB_FAILED)))
}
