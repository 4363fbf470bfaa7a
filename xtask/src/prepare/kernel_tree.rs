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

/// Where a kernel package keeps its image: `boot/vmlinuz-<release>`, or (7.x, merged /usr)
/// `usr/lib/modules/<release>/vmlinuz.unsigned`.
const VMLINUZ_PLACES: [&str; 3] = [
    "boot/vmlinuz-{release}",
    "usr/lib/modules/{release}/vmlinuz.unsigned",
    "usr/lib/modules/{release}/vmlinuz",
];

/// Unpacks `fetched` into `kernels/<release>/` and runs depmod there, unless
/// a complete unpack of the same package version is already present.
pub fn ensure_unpacked(dirs: &LabDirs, fetched: &FetchedDeb) -> Result<KernelInfo> {
    let release = apt_output::release_of_image_package(&fetched.package)
        .ok_or_else(|| anyhow!("{} is not a linux-image package", fetched.package))?
        .to_owned();
    let version = apt::deb_field(&fetched.deb, "Version")?;
    let root = dirs.kernel_root(&release);
    let mut info = KernelInfo {
        alias: fetched.alias.clone(),
        package: fetched.package.clone(),
        version: version.clone(),
        vmlinuz: root.join("boot").join(format!("vmlinuz-{release}")),
        release: release.clone(),
        root: root.clone(),
        deb: fetched.deb.clone(),
        extra_packages: fetched.extra.iter().map(|(p, _)| p.clone()).collect(),
        extra_debs: fetched.extra.iter().map(|(_, d)| d.clone()).collect(),
        suite: fetched.suite.clone(),
        display: fetched.display,
        driver: String::new(),
    };
    let stamp_text = format!("{}\n", info.packages_label());
    if fs::read_to_string(root.join(STAMP)).is_ok_and(|s| s == stamp_text)
        && let Some(vmlinuz) = find_vmlinuz(&root, &release)
    {
        info.vmlinuz = vmlinuz;
        info.driver = find_driver(&info)?;
        return Ok(info);
    }

    eprintln!("setup: unpacking {} {version}", fetched.package);
    let kernels = dirs.kernels();
    let tmp = kernels.join(format!(".tmp-{release}-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("could not remove {}", tmp.display()))?;
    }
    fs::create_dir_all(&tmp).with_context(|| format!("could not create {}", tmp.display()))?;
    for deb in std::iter::once(&fetched.deb).chain(&info.extra_debs) {
        process::run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp))?;
    }
    link_merged_usr(&tmp)?;
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
    info.vmlinuz = find_vmlinuz(&root, &release)
        .ok_or_else(|| anyhow!("no kernel image in {}", root.display()))?;
    info.driver = find_driver(&info)?;
    Ok(info)
}

/// Which of the display's driver module names this kernel has (from its `modules.dep`).
fn find_driver(info: &KernelInfo) -> Result<String> {
    let dep = info
        .root
        .join("lib/modules")
        .join(&info.release)
        .join("modules.dep");
    let text =
        fs::read_to_string(&dep).with_context(|| format!("could not read {}", dep.display()))?;
    let names = info.display.driver_modules();
    names
        .iter()
        .find(|name| {
            text.lines().any(|l| {
                let path = l.split(':').next().unwrap_or("");
                let file = path.rsplit('/').next().unwrap_or("");
                [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                    .iter()
                    .any(|ext| file == format!("{name}{ext}"))
            })
        })
        .map(|n| (*n).to_owned())
        .ok_or_else(|| anyhow!("{} has none of the modules {names:?}", info.release))
}

/// The kernel image of an unpacked tree, if any.
fn find_vmlinuz(tree: &Path, release: &str) -> Option<std::path::PathBuf> {
    VMLINUZ_PLACES
        .iter()
        .map(|p| tree.join(p.replace("{release}", release)))
        .find(|p| p.is_file())
}

/// Merged-/usr packages (trixie on) put modules in `usr/lib/modules`; `depmod -b`, `modprobe
/// -d` and the guest's bind of `<tree>/lib/modules` look in `lib/modules`: link `lib` to
/// `usr/lib` when the package has no `lib` of its own.
fn link_merged_usr(tree: &Path) -> Result<()> {
    let lib = tree.join("lib");
    if lib.symlink_metadata().is_err() && tree.join("usr/lib/modules").is_dir() {
        std::os::unix::fs::symlink("usr/lib", &lib)
            .with_context(|| format!("could not link {} to usr/lib", lib.display()))?;
    }
    Ok(())
}

fn check_layout(tree: &Path, release: &str) -> Result<()> {
    let modules = tree.join("lib/modules").join(release);
    if !modules.is_dir() || find_vmlinuz(tree, release).is_none() {
        bail!(
            "unpacked package lacks {} or a kernel image ({})",
            modules.display(),
            VMLINUZ_PLACES.join(", ")
        );
    }
    Ok(())
}
