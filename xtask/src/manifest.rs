//! The kernel manifest (`target/lab/kernels.json`): which Debian kernels set-up
//! unpacked, and where. Written by [`crate::prepare`], read by [`crate::lab`].

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};

/// The emulated display device the lab gives a kernel, and the DRM driver that binds it
/// (both TTM users). bochs left TTM in 6.13 (it moved to GEM shmem); qxl still uses TTM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Display {
    /// `-device bochs-display`, driver `bochs` (drm_vram_helper on TTM), up to 6.12.
    #[default]
    Bochs,
    /// `-device qxl-vga,vram_size_mb=128,ram_size_mb=128`, driver `qxl` (TTM).
    Qxl,
}

impl Display {
    /// The QEMU `-device` argument.
    pub fn qemu_device(self) -> &'static str {
        match self {
            Self::Bochs => "bochs-display",
            Self::Qxl => "qxl-vga,vram_size_mb=128,ram_size_mb=128",
        }
    }

    /// The DRM driver's name (`/sys/class/drm/card0/device/driver`).
    pub fn drm_name(self) -> &'static str {
        match self {
            Self::Bochs => "bochs-drm",
            Self::Qxl => "qxl",
        }
    }

    /// The DRM driver's module names, newest first (bochs was `bochs-drm` until 5.14).
    pub fn driver_modules(self) -> &'static [&'static str] {
        match self {
            Self::Bochs => &["bochs", "bochs-drm"],
            Self::Qxl => &["qxl"],
        }
    }
}

/// One unpacked Debian kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// Short name commands take: "6.1", "6.12", "6.12-rt" or "newest".
    pub alias: String,
    /// Debian package, e.g. `linux-image-6.1.0-56-amd64-unsigned`.
    pub package: String,
    /// Debian package version, e.g. `6.1.192-2`.
    pub version: String,
    /// `uname -r` of the kernel (directory name under `lib/modules`).
    pub release: String,
    /// The kernel image to boot.
    pub vmlinuz: PathBuf,
    /// Root of the unpacked package (holds `boot/` and `lib/modules/`).
    pub root: PathBuf,
    /// The `.deb` it was unpacked from.
    pub deb: PathBuf,
    /// More packages unpacked into the same tree, same version (Debian's 7.x kernels, seen on
    /// sid's 7.2.13, come as `linux-binary-unsigned-<release>`, `linux-modules-<release>` and
    /// `linux-base-<release>`).
    #[serde(default)]
    pub extra_packages: Vec<String>,
    #[serde(default)]
    pub extra_debs: Vec<PathBuf>,
    /// The Debian suite it was resolved in (empty: the host's own package lists).
    #[serde(default)]
    pub suite: String,
    /// The display device (and so the TTM driver) the lab gives it.
    #[serde(default)]
    pub display: Display,
    /// The driver's module name in this kernel (one of `display.driver_modules()`, found by
    /// set-up; empty in older manifests: the newest name).
    #[serde(default)]
    pub driver: String,
}

impl KernelInfo {
    /// The DRM driver module the guest loads.
    pub fn driver_module(&self) -> &str {
        if self.driver.is_empty() {
            self.display.driver_modules()[0]
        } else {
            &self.driver
        }
    }

    /// Every package of the kernel with its version, for humans and recordings:
    /// `linux-image-6.1.0-57-amd64-unsigned=6.1.192-3`, or two joined by " + ".
    pub fn packages_label(&self) -> String {
        std::iter::once(&self.package)
            .chain(&self.extra_packages)
            .map(|p| format!("{p}={}", self.version))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// Contents of `kernels.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelManifest {
    pub kernels: Vec<KernelInfo>,
}

impl KernelManifest {
    /// Reads the manifest; a missing file means set-up has not been run.
    pub fn load(path: &Path) -> Result<Self> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(anyhow!(
                    "no kernel manifest at {}: run ./scripts/setup.sh (or `cargo xtask setup`) first",
                    path.display()
                ));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("could not read {}", path.display()));
            }
        };
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid kernel manifest; re-run ./scripts/setup.sh",
                path.display()
            )
        })
    }

    /// Like [`Self::load`], but a missing file yields an empty manifest.
    pub fn load_or_empty(path: &Path) -> Result<Self> {
        if path.exists() {
            Self::load(path)
        } else {
            Ok(Self::default())
        }
    }

    /// Writes the manifest atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("could not encode manifest")?;
        let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)
                .with_context(|| format!("could not create {}", dir.display()))?;
        }
        fs::write(&tmp, text + "\n")
            .with_context(|| format!("could not write {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("could not replace {}", path.display()))
    }

    /// The kernel with this alias, or an error naming the known aliases.
    pub fn get(&self, alias: &str) -> Result<&KernelInfo> {
        self.kernels.iter().find(|k| k.alias == alias).ok_or_else(|| {
            let known: Vec<&str> = self.kernels.iter().map(|k| k.alias.as_str()).collect();
            anyhow!(
                "no kernel with alias {alias:?} in the manifest (known: {}); re-run ./scripts/setup.sh",
                known.join(", ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KernelManifest {
        KernelManifest {
            kernels: vec![KernelInfo {
                alias: "6.1".into(),
                package: "linux-image-6.1.0-56-amd64-unsigned".into(),
                version: "6.1.192-2".into(),
                release: "6.1.0-56-amd64".into(),
                vmlinuz: "/k/boot/vmlinuz-6.1.0-56-amd64".into(),
                root: "/k".into(),
                deb: "/d.deb".into(),
                extra_packages: Vec::new(),
                extra_debs: Vec::new(),
                suite: String::new(),
                display: Display::Bochs,
                driver: String::new(),
            }],
        }
    }

    #[test]
    fn round_trips_and_looks_up_by_alias() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-manifest-{}", std::process::id()));
        let path = dir.join("kernels.json");
        sample().save(&path)?;
        let back = KernelManifest::load(&path)?;
        fs::remove_dir_all(&dir)?;
        assert_eq!(back, sample());
        assert_eq!(back.get("6.1")?.release, "6.1.0-56-amd64");
        let err = back.get("6.12").map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("known: 6.1"), "{err}");
        Ok(())
    }

    #[test]
    fn missing_manifest_points_at_setup() {
        let err = KernelManifest::load(Path::new("/nonexistent/kernels.json"))
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("setup.sh"), "{err}");
    }
}
