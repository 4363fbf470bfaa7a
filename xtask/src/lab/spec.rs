//! What to run in the lab: [`LabSpec`] and the TTM module variant.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::lab_dirs::repo_root;

/// Which `ttm.ko` the guest loads before the bochs DRM driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TtmVariant {
    /// Debian's own module, loaded as a dependency of bochs.
    #[default]
    Stock,
    /// The patched "blocking reserve" build from `lab/ttm-blocking/`
    /// (6.1 and 6.12), inserted by hand after `drm`.
    Blocking,
}

impl TtmVariant {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stock => "stock",
            Self::Blocking => "blocking",
        }
    }
}

impl fmt::Display for TtmVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TtmVariant {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "stock" => Ok(Self::Stock),
            "blocking" => Ok(Self::Blocking),
            other => bail!("unknown TTM variant {other:?} (expected stock or blocking)"),
        }
    }
}

/// One lab run: boot `kernel`, load the GPU driver with the `ttm` variant,
/// run `script` with bash as root in the guest (in `cwd`, on the read-only
/// host root), and collect its output.
///
/// The script sees `LAB_OUT` (a writable directory whose contents end up in
/// [`super::LabRun::out_dir`]), `LAB_KERNEL` (alias), `LAB_RELEASE`
/// (`uname -r`), `LAB_TTM` (`stock`/`blocking`), a standard `PATH`,
/// `HOME=/root`, plus `env`. `/tmp`, `/run` and `/dev/shm` are tmpfs;
/// tracefs, debugfs and bpffs are mounted.
#[derive(Clone, Debug)]
pub struct LabSpec {
    /// Kernel alias from the manifest: "6.1", "6.12", "6.12-rt" or "newest".
    pub kernel: String,
    pub ttm: TtmVariant,
    /// Bash script text run in the guest.
    pub script: String,
    /// Working directory in the guest (a host path; the host root is
    /// mounted read-only). Defaults to the repository root.
    pub cwd: PathBuf,
    /// Extra environment variables for the script.
    pub env: Vec<(String, String)>,
    /// Host-side limit for the whole run, boot included.
    pub timeout: Duration,
    pub smp: u32,
    pub mem_mib: u32,
    /// Deterministic guest time (`-icount shift=N,sleep=off`); see `QemuConfig`.
    pub icount_shift: Option<u32>,
}

impl LabSpec {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
    pub const DEFAULT_SMP: u32 = 2;
    pub const DEFAULT_MEM_MIB: u32 = 2048;

    /// A stock-TTM run of `script` on `kernel` with default resources.
    pub fn new(kernel: impl Into<String>, script: impl Into<String>) -> Self {
        Self {
            kernel: kernel.into(),
            ttm: TtmVariant::Stock,
            script: script.into(),
            cwd: repo_root(),
            env: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            smp: Self::DEFAULT_SMP,
            mem_mib: Self::DEFAULT_MEM_MIB,
            icount_shift: None,
        }
    }

    pub fn ttm(mut self, ttm: TtmVariant) -> Self {
        self.ttm = ttm;
        self
    }

    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = cwd.into();
        self
    }

    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn smp(mut self, smp: u32) -> Self {
        self.smp = smp;
        self
    }

    /// Guest time counts executed instructions (2^shift ns each).
    pub fn icount(mut self, shift: u32) -> Self {
        self.icount_shift = Some(shift);
        self
    }

    pub fn mem_mib(mut self, mem_mib: u32) -> Self {
        self.mem_mib = mem_mib;
        self
    }

    /// Rejects specs that cannot work before anything is booted.
    pub fn validate(&self) -> Result<()> {
        if self.kernel.is_empty()
            || !self
                .kernel
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        {
            bail!("bad kernel alias {:?}", self.kernel);
        }
        if !self.cwd.is_absolute() {
            bail!(
                "guest working directory must be absolute: {}",
                self.cwd.display()
            );
        }
        if self.smp == 0 || self.mem_mib < 256 {
            bail!(
                "need at least 1 CPU and 256 MiB (got {} / {})",
                self.smp,
                self.mem_mib
            );
        }
        for (name, _) in &self.env {
            let mut chars = name.chars();
            let ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                bail!("bad environment variable name {name:?}");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_variants() -> Result<()> {
        assert_eq!("stock".parse::<TtmVariant>()?, TtmVariant::Stock);
        assert_eq!("blocking".parse::<TtmVariant>()?, TtmVariant::Blocking);
        assert!("fast".parse::<TtmVariant>().is_err());
        Ok(())
    }

    #[test]
    fn validates_specs() {
        assert!(LabSpec::new("6.1", "true").validate().is_ok());
        assert!(LabSpec::new("6.1; rm", "true").validate().is_err());
        assert!(LabSpec::new("6.1", "true").cwd("rel").validate().is_err());
        assert!(
            LabSpec::new("6.1", "true")
                .env("A-B", "x")
                .validate()
                .is_err()
        );
        assert!(
            LabSpec::new("6.1", "true")
                .env("_A1", "x")
                .validate()
                .is_ok()
        );
        assert!(LabSpec::new("6.1", "true").smp(0).validate().is_err());
    }
}
