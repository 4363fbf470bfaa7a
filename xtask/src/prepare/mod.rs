//! Second half of set-up (after `scripts/setup.sh` has installed host
//! packages and tools): resolve, fetch and unpack the lab kernels, write the
//! manifest, install the 6.1 and 6.12 headers, build the blocking TTM modules and the
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
use apt::{Apt, AptSource};
use kernel_packages::{KernelSource, LAB_KERNELS};

/// Knobs for [`prepare_lab`].
#[derive(Clone, Debug, Default)]
pub struct PrepareOptions {
    /// Run `apt-get update` first, to pick up newer kernel ABIs.
    pub refresh: bool,
}

/// Does everything set-up needs after the bootstrap; returns the manifest.
pub fn prepare_lab(dirs: &LabDirs, opts: &PrepareOptions) -> Result<KernelManifest> {
    let mut host = Apt::default();
    // One private source per other suite, its lists under target/lab/apt/<suite>/.
    let mut private: Vec<Apt> = Vec::new();
    if opts.refresh {
        host.update()?;
    }
    let previous = KernelManifest::load_or_empty(&dirs.manifest()).unwrap_or_else(|e| {
        eprintln!("setup: WARNING: {e:#}; resolving every kernel afresh");
        KernelManifest::default()
    });

    let mut manifest = KernelManifest::default();
    for kernel in &LAB_KERNELS {
        let apt = match kernel.suite {
            None => &mut host,
            Some(suite) => {
                let at = match private.iter().position(|a| a.suite() == suite) {
                    Some(at) => at,
                    None => {
                        let mut apt = Apt::new(AptSource::Private {
                            suite: suite.to_owned(),
                            dir: dirs.private_apt(suite),
                        });
                        if opts.refresh {
                            apt.update()?;
                        }
                        private.push(apt);
                        private.len() - 1
                    }
                };
                &mut private[at]
            }
        };
        let info = match kernel_packages::acquire(kernel, &dirs.debs(), apt, &previous)? {
            KernelSource::Current(fetched) => kernel_tree::ensure_unpacked(dirs, &fetched)?,
            KernelSource::Cached(info) => info,
        };
        manifest.kernels.push(info);
    }
    manifest.save(&dirs.manifest())?;
    for k in &manifest.kernels {
        eprintln!(
            "setup: kernel {:<7} {} (release {}, {}, {})",
            k.alias,
            k.packages_label(),
            k.release,
            if k.suite.is_empty() {
                "host lists"
            } else {
                &k.suite
            },
            k.driver_module()
        );
    }

    for kernel in LAB_KERNELS.iter().filter(|k| k.blocking_variant) {
        let k = manifest.get(kernel.alias)?;
        // The 6.12 headers package depends on its image: apt installs that kernel on the host
        // too (in /boot; nothing boots it unless the host's bootloader is pointed at it).
        host.ensure_installed(&format!("linux-headers-{}", k.release))?;
        build_blocking_ttm(dirs, k)?;
    }

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
