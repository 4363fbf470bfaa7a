//! Which Debian kernel packages the lab uses, and getting their `.deb`s.
//!
//! Names are resolved at set-up time because Debian drops old kernel ABIs from
//! the archive: "6.1" is whatever `linux-image-amd64` depends on, "6.12" the
//! highest `linux-image-6.12.N+deb12-amd64-unsigned` (bookworm-backports /
//! proposed updates). We use the `-unsigned` images: same kernel, no shim.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::apt::{self, Apt};
use super::apt_output;
use crate::manifest::{KernelInfo, KernelManifest};

/// The kernels the lab provides, by alias.
pub const ALIASES: [&str; 2] = ["6.1", "6.12"];

const SEARCH_612: &str = r"^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$";

/// A kernel package whose `.deb` is present in the download cache.
#[derive(Clone, Debug)]
pub struct FetchedDeb {
    pub alias: String,
    pub package: String,
    pub deb: PathBuf,
}

/// Where a kernel for an alias comes from in this set-up.
#[derive(Clone, Debug)]
pub enum KernelSource {
    /// Resolved against the current package lists; `.deb` present.
    Current(FetchedDeb),
    /// Resolution or download failed; an earlier set-up's kernel is reused.
    Cached(KernelInfo),
}

/// The package name for `alias` according to the local package lists.
pub fn resolve_package(alias: &str) -> Result<String> {
    match alias {
        "6.1" => {
            let out = apt::depends("linux-image-amd64")?;
            let dep = apt_output::default_image_dependency(&out)
                .ok_or_else(|| anyhow!("linux-image-amd64 has no linux-image-* dependency"))?;
            if !dep.starts_with("linux-image-6.1.") {
                bail!("linux-image-amd64 depends on {dep}, not a 6.1 kernel");
            }
            Ok(format!("{dep}-unsigned"))
        }
        "6.12" => {
            let out = apt::search_names(SEARCH_612)?;
            apt_output::highest_versioned(&out, "linux-image-6.12.", "+deb12-amd64-unsigned")
                .ok_or_else(|| anyhow!("apt-cache finds no package matching {SEARCH_612}"))
        }
        other => bail!("unknown kernel alias {other:?}"),
    }
}

/// Resolves `alias` and makes sure its `.deb` is in `debs` (downloading it
/// unless a file of the candidate version is already there).
fn fetch(alias: &str, debs: &Path) -> Result<FetchedDeb> {
    let package = resolve_package(alias)?;
    let version = apt::candidate_version(&package)?;
    let deb = debs.join(apt_output::deb_file_name(&package, &version, "amd64"));
    if !deb.is_file() {
        eprintln!("setup: downloading {package}={version}");
        std::fs::create_dir_all(debs)
            .with_context(|| format!("could not create {}", debs.display()))?;
        apt::download(&package, &version, debs)?;
        if !deb.is_file() {
            bail!("apt-get download did not produce {}", deb.display());
        }
    }
    Ok(FetchedDeb {
        alias: alias.to_owned(),
        package,
        deb,
    })
}

/// Resolves and fetches the kernel for `alias`. On failure the package lists
/// are refreshed once and it is retried; if that fails too, the kernel from
/// the previous manifest is reused (with a warning) when it is still on disk.
pub fn acquire(
    alias: &str,
    debs: &Path,
    apt: &mut Apt,
    previous: &KernelManifest,
) -> Result<KernelSource> {
    let first = match fetch(alias, debs) {
        Ok(f) => return Ok(KernelSource::Current(f)),
        Err(e) => e,
    };
    let last = if apt.has_updated() {
        first
    } else {
        eprintln!("setup: kernel {alias}: {first:#}; refreshing package lists");
        match apt.update() {
            Ok(()) => match fetch(alias, debs) {
                Ok(f) => return Ok(KernelSource::Current(f)),
                Err(e) => e,
            },
            Err(e) => anyhow!("{first:#}; then {e:#}"),
        }
    };
    match previous.get(alias) {
        Ok(cached) if cached.vmlinuz.is_file() && cached.root.is_dir() => {
            eprintln!(
                "setup: WARNING: could not resolve the current {alias} kernel ({last:#}); \
                 using the cached {} {}",
                cached.package, cached.version
            );
            Ok(KernelSource::Cached(cached.clone()))
        }
        _ => Err(last.context(format!(
            "could not resolve/download the {alias} kernel and none is cached"
        ))),
    }
}
