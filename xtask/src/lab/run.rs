//! Running one [`LabSpec`] and collecting a [`LabRun`].

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

use super::evidence::Evidence;
use super::failure::LabFailure;
use super::guest_init::{render_command, render_config};
use super::kernel_trouble::{self, tail};
use super::qemu::{self, QemuConfig};
use super::spec::{LabSpec, TtmVariant};
use super::verdict::judge;
use super::{initramfs, run_dir};
use crate::lab_dirs::LabDirs;
use crate::manifest::{KernelInfo, KernelManifest};

const CONSOLE_TAIL_LINES: usize = 40;

/// A lab run that completed: the guest kernel stayed healthy and the command
/// ran to completion (whatever its exit status).
#[derive(Clone, Debug)]
pub struct LabRun {
    /// Exit status of the guest command (128+N if killed by signal N).
    pub rc: i32,
    pub stdout: String,
    pub stderr: String,
    /// Host directory holding what the guest wrote to `$LAB_OUT`.
    pub out_dir: PathBuf,
    /// `target/lab/runs/<stamp>-<alias>/`.
    pub run_dir: PathBuf,
    pub console_log: PathBuf,
    /// The guest's full `dmesg` after the command.
    pub dmesg: PathBuf,
    pub kernel: KernelInfo,
    pub ttm: TtmVariant,
    /// `/sys/module/ttm/srcversion` ("" when the module has none, as
    /// Debian's stock build: it lacks MODULE_VERSION and SRCVERSION_ALL).
    pub ttm_srcversion: String,
    /// `/sys/module/ttm/version` ("" for stock, "blocking-reserve" for the
    /// patched build).
    pub ttm_version: String,
    /// `/proc/sys/kernel/tainted` after the driver loaded, before the command.
    pub tainted_at_start: String,
    /// `/proc/sys/kernel/tainted` after the command.
    pub tainted: String,
    /// Wall time of the QEMU process (boot + command + shutdown).
    pub elapsed: Duration,
}

/// Runs `spec` in the lab under `target/lab`. See [`run_in`].
pub fn run(spec: &LabSpec) -> Result<LabRun> {
    run_in(&LabDirs::default(), spec)
}

/// Boots the spec's kernel in QEMU, loads bochs (with the chosen TTM
/// variant), runs the script and returns its results. Any sign of kernel
/// trouble, a timeout, a missing `/dev/dri/card0` or a boot failure is an
/// `Err` holding a [`LabFailure`] (console tail included).
pub fn run_in(dirs: &LabDirs, spec: &LabSpec) -> Result<LabRun> {
    spec.validate()?;
    let manifest = KernelManifest::load(&dirs.manifest())?;
    let kernel = manifest.get(&spec.kernel)?.clone();
    if !kernel.vmlinuz.is_file() {
        bail!(
            "{} is missing; re-run ./scripts/setup.sh",
            kernel.vmlinuz.display()
        );
    }
    let ttm_ko = match spec.ttm {
        TtmVariant::Stock => None,
        TtmVariant::Blocking => {
            let ko = dirs.ttm_blocking_ko(&kernel.release);
            if !ko.is_file() {
                bail!(
                    "the blocking TTM module for {} is not built ({}); \
                     ./scripts/setup.sh builds it for the 6.1 kernel only",
                    kernel.release,
                    ko.display()
                );
            }
            Some(ko)
        }
    };
    let initrd = initramfs::ensure(dirs, &kernel)?;

    let dir = run_dir::create(&dirs.runs(), &kernel.alias, SystemTime::now())?;
    let ctl = dir.join("ctl");
    let out = dir.join("out");
    for d in [&ctl, &out] {
        fs::create_dir(d).with_context(|| format!("could not create {}", d.display()))?;
    }
    write(
        &ctl.join("config"),
        &render_config(&kernel, spec.ttm, ttm_ko.as_deref()),
    )?;
    write(&ctl.join("cmd.sh"), &render_command(spec, &kernel))?;

    let cfg = QemuConfig {
        vmlinuz: kernel.vmlinuz.clone(),
        initrd,
        smp: spec.smp,
        mem_mib: spec.mem_mib,
        icount_shift: spec.icount_shift,
        display: kernel.display,
        ctl_dir: ctl.clone(),
        out_dir: out.clone(),
        console_log: dir.join("console.log"),
    };
    eprintln!(
        "lab: booting {} ({}, {}, ttm {}) in {}",
        kernel.alias,
        kernel.packages_label(),
        kernel.driver_module(),
        spec.ttm,
        dir.display()
    );
    let started = Instant::now();
    let end = qemu::run(&cfg, spec.timeout, &dir.join("qemu.log"))?;
    let elapsed = started.elapsed();

    let ev = Evidence::collect(&dir, &ctl, &cfg.console_log);
    let rc = judge(&end, spec.timeout, &ev, &kernel.release).map_err(|(kind, detail)| {
        anyhow::Error::from(LabFailure {
            kind,
            detail,
            kernel: kernel.alias.clone(),
            run_dir: dir.clone(),
            console_log: cfg.console_log.clone(),
            last_stage: ev.stages.last().cloned(),
            console_tail: tail(&ev.console, CONSOLE_TAIL_LINES),
        })
    })?;

    note_emulator_artifacts(&dir, &ev)?;
    Ok(LabRun {
        rc,
        stdout: ev.stdout,
        stderr: ev.stderr,
        out_dir: out,
        console_log: cfg.console_log,
        dmesg: ctl.join("dmesg"),
        kernel,
        ttm: spec.ttm,
        ttm_srcversion: ev.ttm_srcversion,
        ttm_version: ev.ttm_version,
        tainted_at_start: ev.tainted_start,
        tainted: ev.tainted_end,
        elapsed,
        run_dir: dir,
    })
}

/// Prints the tolerated emulator warnings of a trusted run and keeps them in
/// `<run>/emulator-artifacts`.
fn note_emulator_artifacts(dir: &Path, ev: &Evidence) -> Result<()> {
    let mut lines = kernel_trouble::emulator_artifacts(&ev.dmesg);
    if lines.is_empty() {
        lines = kernel_trouble::emulator_artifacts(&ev.console);
    }
    if lines.is_empty() {
        return Ok(());
    }
    for line in &lines {
        eprintln!("lab: tolerated emulator artifact: {line}");
    }
    for (at, why) in kernel_trouble::EMULATOR_ARTIFACTS {
        eprintln!("lab:   ({at}) {why}");
    }
    write(&dir.join("emulator-artifacts"), &(lines.join("\n") + "\n"))
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("could not write {}", path.display()))
}
