//! Unpacking a kernel `.deb` (never installing it) and indexing its modules.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};

use super::apt;
use super::apt_output;
use super::kernel_packages::FetchedDeb;
use crate::lab_dirs::LabDirs;
use crate::manifest::KernelInfo;
use crate::process;

const STAMP: &str = ".ttmlat-unpacked";

/// Unpacks `fetched` into `kernels/<release>/` and runs depmod there, unless
/// a complete unpack of the same package version is already present.
pub fn ensure_unpacked(dirs: &LabDirs, fetched: &FetchedDeb) -> Result<KernelInfo> {
    let release = apt_output::release_of_image_package(&fetched.package)
        .ok_or_else(|| anyhow!("{} is not a linux-image package", fetched.package))?
        .to_owned();
    let version = apt::deb_field(&fetched.deb, "Version")?;
    let root = dirs.kernel_root(&release);
    let info = KernelInfo {
        alias: fetched.alias.clone(),
        package: fetched.package.clone(),
        version: version.clone(),
        vmlinuz: root.join("boot").join(format!("vmlinuz-{release}")),
        release: release.clone(),
        root: root.clone(),
        deb: fetched.deb.clone(),
    };
    let stamp_text = format!("{} {}\n", fetched.package, version);
    if fs::read_to_string(root.join(STAMP)).is_ok_and(|s| s == stamp_text) && info.vmlinuz.is_file()
    {
        return Ok(info);
    }

    eprintln!("setup: unpacking {} {version}", fetched.package);
    let kernels = dirs.kernels();
    let tmp = kernels.join(format!(".tmp-{release}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("could not remove {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("could not create {}", tmp.display()))?;
    process::run(
        Command::new("dpkg-deb")
            .arg("-x")
            .arg(&fetched.deb)
            .arg(&tmp),
    )?;
    check_layout(&tmp, &release)?;
    process::run(Command::new("depmod").arg("-b").arg(&tmp).arg(&release))?;
    fs::write(tmp.join(STAMP), &stamp_text)
        .with_context(|| format!("could not write stamp in {}", tmp.display()))?;
    if root.exists() {
        fs::remove_dir_all(&root)
            .with_context(|| format!("could not remove stale {}", root.display()))?;
    }
    fs::rename(&tmp, &root)
        .with_context(|| format!("could not move {} to {}", tmp.display(), root.display()))?;
    Ok(info)
}

fn check_layout(tree: &Path, release: &str) -> Result<()> {
    let modules = tree.join("lib/modules").join(release);
    let vmlinuz = tree.join("boot").join(format!("vmlinuz-{release}"));
    if !modules.is_dir() || !vmlinuz.is_file() {
        bail!(
            "unpacked package lacks {} or {}",
            modules.display(),
            vmlinuz.display()
        );
    }
    Ok(())
}
