//! Which Debian kernel packages the lab uses, and getting their `.deb`s.
//!
//! Names are resolved at set-up time because Debian drops old kernel ABIs from the archive
//! ([`LAB_KERNELS`] says how for each alias). We use the `-unsigned` images: same kernel, no
//! shim. Kernels of other suites (sid, trixie) are resolved through private package lists
//! (see [`super::apt`]), never through the machine's apt sources.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use super::apt::Apt;
use super::apt_output;
use crate::manifest::{Display, KernelInfo, KernelManifest};

/// How an alias names its package.
#[derive(Clone, Copy, Debug)]
pub enum Resolve {
    /// The `linux-image-*` dependency of a meta package, which must start with `prefix`.
    MetaDependency {
        meta: &'static str,
        prefix: &'static str,
    },
    /// The highest-versioned `<prefix><N>...<suffix>` package name.
    Highest {
        regex: &'static str,
        prefix: &'static str,
        suffix: &'static str,
    },
}

/// One kernel of the lab: its alias, where it comes from, and the display it gets.
#[derive(Clone, Copy, Debug)]
pub struct LabKernel {
    pub alias: &'static str,
    /// The Debian suite of its private package lists; `None`: the host's lists (bookworm).
    pub suite: Option<&'static str>,
    pub resolve: Resolve,
    pub display: Display,
    /// Whether set-up builds the blocking-variant ttm.ko for it
    /// (`lab/ttm-blocking/ttm-blocking-<major.minor>.patch`; needs the host's headers package).
    pub blocking_variant: bool,
    /// Whether every lab test of current-kernel behaviour runs on it
    /// (`labtest::CURRENT_KERNELS`).
    pub current: bool,
    /// Why it is in the lab.
    pub why: &'static str,
}

/// The kernels the lab provides, in the order set-up prepares them.
pub const LAB_KERNELS: [LabKernel; 5] = [
    LabKernel {
        alias: "5.10",
        suite: Some("bullseye"),
        resolve: Resolve::MetaDependency {
            meta: "linux-image-amd64",
            prefix: "linux-image-5.10.",
        },
        display: Display::Bochs,
        blocking_variant: false,
        current: false,
        why: "the oldest Debian kernel still in the archive (bullseye): no lock:contention \
              tracepoints (5.19), so the rwsem-slowpath fallback",
    },
    LabKernel {
        alias: "6.1",
        suite: None,
        resolve: Resolve::MetaDependency {
            meta: "linux-image-amd64",
            prefix: "linux-image-6.1.",
        },
        display: Display::Bochs,
        blocking_variant: true,
        current: false,
        why: "bookworm's kernel",
    },
    LabKernel {
        alias: "6.12",
        suite: None,
        resolve: Resolve::Highest {
            regex: r"^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$",
            prefix: "linux-image-6.12.",
            suffix: "+deb12-amd64-unsigned",
        },
        display: Display::Bochs,
        blocking_variant: true,
        current: true,
        why: "bookworm's 6.12 (the last kernel whose bochs uses TTM)",
    },
    LabKernel {
        alias: "6.12-rt",
        suite: Some("trixie"),
        resolve: Resolve::MetaDependency {
            meta: "linux-image-rt-amd64",
            prefix: "linux-image-6.12.",
        },
        display: Display::Bochs,
        blocking_variant: false,
        current: true,
        why: "trixie's PREEMPT_RT kernel: sleeping spinlocks, preemptible everything",
    },
    LabKernel {
        alias: "newest",
        suite: Some("sid"),
        resolve: Resolve::MetaDependency {
            meta: "linux-image-amd64",
            prefix: "linux-image-",
        },
        display: Display::Qxl,
        // Its headers need sid's compiler (gcc-16-for-host), which bookworm's archive lacks.
        blocking_variant: false,
        current: true,
        why: "Debian unstable's current kernel, on qxl (bochs left TTM in 6.13)",
    },
];

/// The lab kernel with this alias.
pub fn lab_kernel(alias: &str) -> Result<&'static LabKernel> {
    LAB_KERNELS
        .iter()
        .find(|k| k.alias == alias)
        .ok_or_else(|| {
            let known: Vec<&str> = LAB_KERNELS.iter().map(|k| k.alias).collect();
            anyhow!(
                "unknown kernel alias {alias:?} (known: {})",
                known.join(", ")
            )
        })
}

/// A kernel whose `.deb`s are present in the download cache.
#[derive(Clone, Debug)]
pub struct FetchedDeb {
    pub alias: String,
    /// The package holding the kernel image (`linux-image-…-unsigned` or
    /// `linux-binary-unsigned-…`).
    pub package: String,
    pub version: String,
    pub deb: PathBuf,
    /// Packages of the same version unpacked beside it (`linux-modules-…`).
    pub extra: Vec<(String, PathBuf)>,
    pub suite: String,
    pub display: Display,
}

/// Where a kernel for an alias comes from in this set-up.
#[derive(Clone, Debug)]
pub enum KernelSource {
    /// Resolved against the current package lists; `.deb` present.
    Current(FetchedDeb),
    /// Resolution or download failed; an earlier set-up's kernel is reused.
    Cached(KernelInfo),
}

/// The packages (image first) for `kernel` according to `apt`'s lists.
pub fn resolve_packages(kernel: &LabKernel, apt: &Apt) -> Result<Vec<String>> {
    let image = match kernel.resolve {
        Resolve::MetaDependency { meta, prefix } => {
            let out = apt.depends(meta)?;
            let dep = apt_output::default_image_dependency(&out)
                .ok_or_else(|| anyhow!("{meta} has no linux-image-* dependency"))?;
            if !dep.starts_with(prefix) {
                bail!("{meta} depends on {dep}, not a {prefix}* kernel");
            }
            dep
        }
        Resolve::Highest {
            regex,
            prefix,
            suffix,
        } => {
            let out = apt.search_names(regex)?;
            return apt_output::highest_versioned(&out, prefix, suffix)
                .map(|p| vec![p])
                .ok_or_else(|| anyhow!("apt-cache finds no package matching {regex}"));
        }
    };
    // Split layout (7.x): linux-image-<rel> is a meta package over a binary, a modules and a
    // base package (modules.builtin, modules.order, config); otherwise
    // linux-image-<rel>-unsigned holds everything.
    let release = apt_output::release_of_image_package(&image)
        .ok_or_else(|| anyhow!("{image} is not a linux-image package"))?;
    let image_deps = apt.depends(&image)?;
    let modules = format!("linux-modules-{release}");
    if apt_output::has_dependency(&image_deps, &modules) {
        Ok(vec![
            format!("linux-binary-unsigned-{release}"),
            modules,
            format!("linux-base-{release}"),
        ])
    } else {
        Ok(vec![format!("{image}-unsigned")])
    }
}

/// Makes sure the `.deb` of `package=version` is in `debs`.
fn fetch_one(apt: &Apt, package: &str, version: &str, debs: &Path) -> Result<PathBuf> {
    let deb = debs.join(apt_output::deb_file_name(package, version, "amd64"));
    if !deb.is_file() {
        eprintln!("setup: downloading {package}={version}");
        std::fs::create_dir_all(debs)
            .with_context(|| format!("could not create {}", debs.display()))?;
        apt.download(package, version, debs)?;
        if !deb.is_file() {
            bail!("apt-get download did not produce {}", deb.display());
        }
    }
    Ok(deb)
}

/// Resolves `kernel` and makes sure its `.deb`s are in `debs` (downloading them unless files
/// of the candidate version are already there).
fn fetch(kernel: &LabKernel, debs: &Path, apt: &mut Apt) -> Result<FetchedDeb> {
    apt.ensure_lists()?;
    let packages = resolve_packages(kernel, apt)?;
    let version = apt.candidate_version(&packages[0])?;
    let mut fetched = Vec::new();
    for package in &packages {
        let v = apt.candidate_version(package)?;
        if v != version {
            bail!("{package} is at {v}, but {} at {version}", packages[0]);
        }
        fetched.push((package.clone(), fetch_one(apt, package, &version, debs)?));
    }
    let (package, deb) = fetched.remove(0);
    Ok(FetchedDeb {
        alias: kernel.alias.to_owned(),
        package,
        version,
        deb,
        extra: fetched,
        suite: apt.suite().to_owned(),
        display: kernel.display,
    })
}

/// Resolves and fetches `kernel`. On failure the package lists are refreshed once and it is
/// retried; if that fails too, the kernel from the previous manifest is reused (with a
/// warning) when it is still on disk.
pub fn acquire(
    kernel: &LabKernel,
    debs: &Path,
    apt: &mut Apt,
    previous: &KernelManifest,
) -> Result<KernelSource> {
    let alias = kernel.alias;
    let first = match fetch(kernel, debs, apt) {
        Ok(f) => return Ok(KernelSource::Current(f)),
        Err(e) => e,
    };
    let last = if apt.has_updated() {
        first
    } else {
        eprintln!("setup: kernel {alias}: {first:#}; refreshing package lists");
        match apt.update() {
            Ok(()) => match fetch(kernel, debs, apt) {
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
                 using the cached {}",
                cached.packages_label()
            );
            Ok(KernelSource::Cached(cached.clone()))
        }
        _ => Err(last.context(format!(
            "could not resolve/download the {alias} kernel and none is cached"
        ))),
    }
}
