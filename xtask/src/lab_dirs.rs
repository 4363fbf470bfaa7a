//! Where the lab's cached artefacts live: everything under `<repo>/target/lab`.

use std::path::{Path, PathBuf};

/// The repository root (the parent of the `xtask` crate).
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// Layout of `target/lab` (downloaded debs, unpacked kernels, manifest,
/// initramfs images, run directories, the blocking TTM build).
#[derive(Clone, Debug)]
pub struct LabDirs {
    root: PathBuf,
}

impl Default for LabDirs {
    fn default() -> Self {
        Self::at(repo_root().join("target").join("lab"))
    }
}

impl LabDirs {
    /// A lab rooted somewhere else than `<repo>/target/lab` (tests).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Downloaded kernel packages (`*.deb`).
    pub fn debs(&self) -> PathBuf {
        self.root.join("debs")
    }

    /// Private apt lists and cache for another Debian suite (never the machine's sources).
    pub fn private_apt(&self, suite: &str) -> PathBuf {
        self.root.join("apt").join(suite)
    }

    /// Parent of the unpacked kernel trees.
    pub fn kernels(&self) -> PathBuf {
        self.root.join("kernels")
    }

    /// Unpacked kernel tree for one release (`uname -r` string).
    pub fn kernel_root(&self, release: &str) -> PathBuf {
        self.kernels().join(release)
    }

    /// The kernel manifest written by set-up.
    pub fn manifest(&self) -> PathBuf {
        self.root.join("kernels.json")
    }

    /// Cached initramfs images, one per kernel release.
    pub fn initramfs(&self) -> PathBuf {
        self.root.join("initramfs")
    }

    /// One directory per lab run.
    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    /// The patched ("blocking") `ttm.ko` built by `lab/ttm-blocking/build.sh`.
    pub fn ttm_blocking_ko(&self, release: &str) -> PathBuf {
        self.root.join("ttm-blocking").join(release).join("ttm.ko")
    }
}
