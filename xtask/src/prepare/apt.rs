//! Thin wrappers over apt-get / apt-cache / dpkg used by set-up.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, anyhow};

use super::apt_output;
use crate::process;

/// Remembers whether `apt-get update` already ran in this set-up, so that
/// every "not found, refresh the lists and retry" path updates at most once.
#[derive(Debug, Default)]
pub struct Apt {
    updated: bool,
}

fn apt_get() -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

impl Apt {
    /// `apt-get update`, once per set-up.
    pub fn update(&mut self) -> Result<()> {
        if self.updated {
            return Ok(());
        }
        self.updated = true;
        eprintln!("setup: apt-get update");
        process::run(apt_get().arg("update").arg("-q"))
    }

    pub fn has_updated(&self) -> bool {
        self.updated
    }

    /// Installs `package` unless dpkg says it is installed; refreshes the
    /// package lists and retries once if the first attempt fails.
    pub fn ensure_installed(&mut self, package: &str) -> Result<()> {
        if is_installed(package) {
            return Ok(());
        }
        eprintln!("setup: installing {package}");
        let install = || {
            process::run(
                apt_get()
                    .args(["install", "-y", "-q", "--no-install-recommends"])
                    .arg(package),
            )
        };
        if install().is_ok() {
            return Ok(());
        }
        self.update()?;
        install().with_context(|| format!("could not install {package}"))
    }
}

/// Whether dpkg reports `package` as installed.
pub fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"install ok installed")
}

/// `apt-cache depends PACKAGE`.
pub fn depends(package: &str) -> Result<String> {
    process::stdout_text(Command::new("apt-cache").args(["depends", package]))
}

/// `apt-cache search --names-only REGEX`.
pub fn search_names(regex: &str) -> Result<String> {
    process::stdout_text(Command::new("apt-cache").args(["search", "--names-only", regex]))
}

/// The candidate version apt would install/download for `package`.
pub fn candidate_version(package: &str) -> Result<String> {
    let show = process::stdout_text(Command::new("apt-cache").args([
        "show",
        "--no-all-versions",
        package,
    ]))?;
    apt_output::show_version(&show)
        .ok_or_else(|| anyhow!("apt-cache show {package} printed no Version"))
}

/// `apt-get download PACKAGE=VERSION` into `dir`.
pub fn download(package: &str, version: &str, dir: &Path) -> Result<()> {
    process::run(
        apt_get()
            .current_dir(dir)
            .args(["download", "-q"])
            .arg(format!("{package}={version}")),
    )
}

/// A control field of a `.deb` (`dpkg-deb -f DEB FIELD`).
pub fn deb_field(deb: &Path, field: &str) -> Result<String> {
    let text = process::stdout_text(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field))?;
    Ok(text.trim().to_owned())
}
