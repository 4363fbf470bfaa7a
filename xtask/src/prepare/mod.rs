//! Second half of set-up (after `scripts/setup.sh` has installed host
//! packages and tools): resolve, fetch and unpack the lab kernels, write the
//! manifest, install the 6.1 headers, build the blocking TTM module and the
//! initramfs images. Idempotent; a fully cached run takes a few seconds.

mod apt;
pub mod apt_output;
pub mod kernel_packages;
mod kernel_tree;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::lab;
use crate::lab_dirs::{LabDirs, repo_root};
use crate::manifest::{KernelInfo, KernelManifest};
use crate::process;
use apt::Apt;
use kernel_packages::{ALIASES, KernelSource};

/// Knobs for [`prepare_lab`].
#[derive(Clone, Debug, Default)]
pub struct PrepareOptions {
    /// Run `apt-get update` first, to pick up newer kernel ABIs.
    pub refresh: bool,
}

/// Does everything set-up needs after the bootstrap; returns the manifest.
pub fn prepare_lab(dirs: &LabDirs, opts: &PrepareOptions) -> Result<KernelManifest> {
    let mut apt = Apt::default();
    if opts.refresh {
        apt.update()?;
    }
    let previous = KernelManifest::load_or_empty(&dirs.manifest())?;

    let mut manifest = KernelManifest::default();
    for alias in ALIASES {
        let info = match kernel_packages::acquire(alias, &dirs.debs(), &mut apt, &previous)? {
            KernelSource::Current(fetched) => kernel_tree::ensure_unpacked(dirs, &fetched)?,
            KernelSource::Cached(info) => info,
        };
        manifest.kernels.push(info);
    }
    manifest.save(&dirs.manifest())?;
    for k in &manifest.kernels {
        eprintln!(
            "setup: kernel {:<5} {} {} (release {})",
            k.alias, k.package, k.version, k.release
        );
    }

    let k61 = manifest.get("6.1")?;
    apt.ensure_installed(&format!("linux-headers-{}", k61.release))?;
    build_blocking_ttm(dirs, k61)?;

    for k in &manifest.kernels {
        let image = lab::ensure_initramfs(dirs, k)?;
        eprintln!("setup: initramfs {:<5} {}", k.alias, image.display());
    }
    eprintln!("setup: manifest {}", dirs.manifest().display());
    Ok(manifest)
}

/// Runs `lab/ttm-blocking/build.sh RELEASE OUT_KO` if that script exists.
fn build_blocking_ttm(dirs: &LabDirs, kernel: &KernelInfo) -> Result<()> {
    let script = repo_root().join("lab/ttm-blocking/build.sh");
    if !script.is_file() {
        eprintln!(
            "setup: {} not present; skipping the blocking TTM module",
            script.display()
        );
        return Ok(());
    }
    let out = dirs.ttm_blocking_ko(&kernel.release);
    run_build_script(&script, &kernel.release, &out)
        .context("building the blocking TTM module failed")?;
    eprintln!("setup: blocking ttm.ko {}", out.display());
    Ok(())
}

fn run_build_script(script: &Path, release: &str, out: &Path) -> Result<()> {
    process::run(Command::new("bash").arg(script).arg(release).arg(out))
}
