//! Thin wrappers over apt-get / apt-cache / dpkg used by set-up, for the host's own package
//! lists or for a private list of another Debian suite (sid, trixie) kept under
//! `target/lab/apt/<suite>/`: the machine's apt sources are never changed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow};

use super::apt_output;
use crate::process;

/// Which package lists an [`Apt`] reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AptSource {
    /// The machine's own (`/etc/apt/sources.list*`).
    Host,
    /// A private `sources.list` for `suite` on the host's Debian mirror, with its lists and
    /// cache in `dir`.
    Private { suite: String, dir: PathBuf },
}

/// One source of packages. Remembers whether `apt-get update` already ran in this set-up, so
/// that every "not found, refresh the lists and retry" path updates at most once.
#[derive(Debug)]
pub struct Apt {
    source: AptSource,
    updated: bool,
}

impl Default for Apt {
    fn default() -> Self {
        Self::new(AptSource::Host)
    }
}

impl Apt {
    pub fn new(source: AptSource) -> Self {
        Self {
            source,
            updated: false,
        }
    }

    /// The suite this source resolves in ("" for the host's lists).
    pub fn suite(&self) -> &str {
        match &self.source {
            AptSource::Host => "",
            AptSource::Private { suite, .. } => suite,
        }
    }

    /// `-o` options that point apt at the private lists (none for the host's).
    fn options(&self) -> Vec<String> {
        let AptSource::Private { dir, .. } = &self.source else {
            return Vec::new();
        };
        let d = dir.display();
        vec![
            format!("-oDir::Etc::SourceList={d}/sources.list"),
            "-oDir::Etc::SourceParts=/dev/null".into(),
            format!("-oDir::State::Lists={d}/lists"),
            format!("-oDir::Cache={d}/cache"),
            // Resolve against nothing installed: the host's dpkg status is bookworm's.
            "-oDir::State::status=/dev/null".into(),
            // Downloads land in target/ (root's); apt's sandbox user could not write there.
            "-oAPT::Sandbox::User=root".into(),
        ]
    }

    fn apt_get(&self) -> Command {
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(self.options());
        cmd
    }

    fn apt_cache(&self) -> Command {
        let mut cmd = Command::new("apt-cache");
        cmd.args(self.options());
        cmd
    }

    /// Makes a private source usable: writes its `sources.list` and fetches its lists when it
    /// has none yet. Nothing to do for the host's.
    pub fn ensure_lists(&mut self) -> Result<()> {
        let AptSource::Private { suite, dir } = &self.source else {
            return Ok(());
        };
        let list = private_sources_list(suite)?;
        for sub in ["lists/partial", "cache/archives/partial"] {
            let d = dir.join(sub);
            fs::create_dir_all(&d).with_context(|| format!("could not create {}", d.display()))?;
        }
        let path = dir.join("sources.list");
        let changed = fs::read_to_string(&path).ok().as_deref() != Some(list.as_str());
        if changed {
            fs::write(&path, &list)
                .with_context(|| format!("could not write {}", path.display()))?;
        }
        if changed || !has_lists(&dir.join("lists")) {
            self.update()?;
        }
        Ok(())
    }

    /// `apt-get update`, once per set-up.
    pub fn update(&mut self) -> Result<()> {
        if self.updated {
            return Ok(());
        }
        self.updated = true;
        match self.suite() {
            "" => eprintln!("setup: apt-get update"),
            suite => eprintln!("setup: apt-get update (private lists of {suite})"),
        }
        process::run(self.apt_get().arg("update").arg("-q"))
    }

    pub fn has_updated(&self) -> bool {
        self.updated
    }

    /// Installs `package` on the host unless dpkg says it is installed; refreshes the package
    /// lists and retries once if the first attempt fails. Host lists only.
    pub fn ensure_installed(&mut self, package: &str) -> Result<()> {
        if self.source != AptSource::Host {
            return Err(anyhow!(
                "will not install {package} from the private {} lists",
                self.suite()
            ));
        }
        if is_installed(package) {
            return Ok(());
        }
        eprintln!("setup: installing {package}");
        let install = |apt: &Self| {
            process::run(
                apt.apt_get()
                    .args(["install", "-y", "-q", "--no-install-recommends"])
                    .arg(package),
            )
        };
        if install(self).is_ok() {
            return Ok(());
        }
        self.update()?;
        install(self).with_context(|| format!("could not install {package}"))
    }

    /// `apt-cache depends PACKAGE`.
    pub fn depends(&self, package: &str) -> Result<String> {
        process::stdout_text(self.apt_cache().args(["depends", package]))
    }

    /// `apt-cache search --names-only REGEX`.
    pub fn search_names(&self, regex: &str) -> Result<String> {
        process::stdout_text(self.apt_cache().args(["search", "--names-only", regex]))
    }

    /// The candidate version apt would install/download for `package`.
    pub fn candidate_version(&self, package: &str) -> Result<String> {
        let show =
            process::stdout_text(
                self.apt_cache()
                    .args(["show", "--no-all-versions", package]),
            )?;
        apt_output::show_version(&show)
            .ok_or_else(|| anyhow!("apt-cache show {package} printed no Version"))
    }

    /// `apt-get download PACKAGE=VERSION` into `dir`.
    pub fn download(&self, package: &str, version: &str, dir: &Path) -> Result<()> {
        process::run(
            self.apt_get()
                .current_dir(dir)
                .args(["download", "-q"])
                .arg(format!("{package}={version}")),
        )
    }
}

/// Whether a lists directory holds any `*Packages*` index.
fn has_lists(lists: &Path) -> bool {
    fs::read_dir(lists).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
    })
}

/// The private `sources.list` for `suite`: the host's own Debian mirror and keyring (from
/// `/etc/apt/sources.list.d/debian.sources` or `/etc/apt/sources.list`), main only.
fn private_sources_list(suite: &str) -> Result<String> {
    let deb822 = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let one_line = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    let mirror = apt_output::debian_mirror(&deb822, &one_line).ok_or_else(|| {
        anyhow!(
            "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list \
             (needed to fetch the {suite} kernel)"
        )
    })?;
    let keyring = mirror
        .signed_by
        .unwrap_or_else(|| "/usr/share/keyrings/debian-archive-keyring.gpg".into());
    Ok(format!(
        "# written by ttmlat's set-up (xtask prepare-lab); the machine's sources are untouched\n\
         deb [signed-by={keyring}] {} {suite} main\n",
        mirror.uri
    ))
}

/// Whether dpkg reports `package` as installed.
pub fn is_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout == b"install ok installed")
}

/// A control field of a `.deb` (`dpkg-deb -f DEB FIELD`).
pub fn deb_field(deb: &Path, field: &str) -> Result<String> {
    let text = process::stdout_text(Command::new("dpkg-deb").arg("-f").arg(deb).arg(field))?;
    Ok(text.trim().to_owned())
}
