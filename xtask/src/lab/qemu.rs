//! The QEMU command line and running it under a host-side timeout.
//!
//! Always TCG, single-threaded: /dev/kvm exists on the lab host but cannot run
//! these kernels, and multi-threaded TCG has oopsed the guest once.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::manifest::Display;

pub const QEMU: &str = "qemu-system-x86_64";

/// Everything that varies between lab boots.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    pub smp: u32,
    pub mem_mib: u32,
    /// `-icount shift=N,sleep=off`: guest time advances by 2^N ns per executed instruction,
    /// so a throughput measured in guest time counts instructions, not host speed.
    pub icount_shift: Option<u32>,
    /// The display device (bochs or qxl: the guest's TTM driver binds it).
    pub display: Display,
    /// Host directory shared read-write as 9p tag `ctl`.
    pub ctl_dir: PathBuf,
    /// Host directory shared read-write as 9p tag `out` (`$LAB_OUT`).
    pub out_dir: PathBuf,
    /// Where the guest serial console goes.
    pub console_log: PathBuf,
}

fn virtfs(path: &Path, tag: &str, readonly: bool) -> OsString {
    let mut s = OsString::from("local,path=");
    s.push(path);
    s.push(format!(
        ",mount_tag={tag},security_model=none,multidevs=remap"
    ));
    if readonly {
        s.push(",readonly=on");
    }
    s
}

/// The arguments after the program name.
pub fn args(cfg: &QemuConfig) -> Vec<OsString> {
    let mut serial = OsString::from("file:");
    serial.push(&cfg.console_log);
    let mut a: Vec<OsString> = [
        "-accel",
        "tcg,thread=single",
        "-cpu",
        "max",
        "-m",
        &format!("{}M", cfg.mem_mib),
        "-smp",
        &cfg.smp.to_string(),
        "-display",
        "none",
        "-vga",
        "none",
        "-nic",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-device",
        cfg.display.qemu_device(),
        "-append",
        "console=ttyS0 panic=-1 quiet",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    if let Some(shift) = cfg.icount_shift {
        a.extend([
            OsString::from("-icount"),
            OsString::from(format!("shift={shift},sleep=off")),
        ]);
    }
    a.extend([OsString::from("-serial"), serial]);
    a.extend([OsString::from("-kernel"), cfg.vmlinuz.clone().into()]);
    a.extend([OsString::from("-initrd"), cfg.initrd.clone().into()]);
    a.extend([
        OsString::from("-virtfs"),
        virtfs(Path::new("/"), "host", true),
    ]);
    a.extend([
        OsString::from("-virtfs"),
        virtfs(&cfg.ctl_dir, "ctl", false),
    ]);
    a.extend([
        OsString::from("-virtfs"),
        virtfs(&cfg.out_dir, "out", false),
    ]);
    a
}

/// How the QEMU process ended.
#[derive(Debug)]
pub enum QemuEnd {
    Exited(ExitStatus),
    /// Killed by us after the timeout.
    TimedOut,
}

/// Runs QEMU (its own stdout/stderr go to `log`), killing it after `timeout`.
pub fn run(cfg: &QemuConfig, timeout: Duration, log: &Path) -> Result<QemuEnd> {
    let log_file =
        File::create(log).with_context(|| format!("could not create {}", log.display()))?;
    let log_err = log_file
        .try_clone()
        .with_context(|| format!("could not reopen {}", log.display()))?;
    let mut child = Command::new(QEMU)
        .args(args(cfg))
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .spawn()
        .with_context(|| format!("could not start {QEMU} (run ./scripts/setup.sh)"))?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("waiting for qemu")? {
            return Ok(QemuEnd::Exited(status));
        }
        if Instant::now() >= deadline {
            // kill() fails only if it already exited; wait() reaps it either way.
            let _ = child.kill();
            child.wait().context("reaping qemu after the timeout")?;
            return Ok(QemuEnd::TimedOut);
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_tcg_command_line_with_three_shares() {
        let cfg = QemuConfig {
            vmlinuz: "/k/vmlinuz".into(),
            initrd: "/i.cpio".into(),
            smp: 2,
            mem_mib: 2048,
            icount_shift: None,
            display: Display::Bochs,
            ctl_dir: "/r/ctl".into(),
            out_dir: "/r/out".into(),
            console_log: "/r/console.log".into(),
        };
        let a: Vec<String> = args(&cfg)
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        let line = a.join(" ");
        assert!(line.contains("-accel tcg,thread=single"));
        assert!(line.contains("-m 2048M -smp 2"));
        assert!(line.contains("-serial file:/r/console.log"));
        assert!(line.contains(
            "-virtfs local,path=/,mount_tag=host,security_model=none,multidevs=remap,readonly=on"
        ));
        assert!(line.contains("path=/r/ctl,mount_tag=ctl,"));
        assert!(line.contains("path=/r/out,mount_tag=out,"));
        assert!(!line.contains("kvm"));
        assert!(!line.contains("icount"));
        let counted = QemuConfig {
            icount_shift: Some(2),
            ..cfg
        };
        let line: Vec<String> = args(&counted)
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert!(line.join(" ").contains("-icount shift=2,sleep=off"));
        assert!(line.join(" ").contains("-device bochs-display "));
        let qxl = QemuConfig {
            display: Display::Qxl,
            ..counted
        };
        let line: Vec<String> = args(&qxl)
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert!(
            line.join(" ")
                .contains("-vga none -nic none -monitor none -no-reboot -device qxl-vga,")
        );
    }
}
