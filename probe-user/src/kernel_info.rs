//! Facts about the running kernel, read once: release, ttm module, taint, lockdown, symbols.

use std::path::Path;

use anyhow::{Context, Result};

use crate::discovery::{self, AttachPlan, SymbolTable};

#[derive(Clone, Debug, Default)]
pub struct KernelInfo {
    pub release: String,
    pub version: String,
    pub hostname: String,
    pub ttm_srcversion: Option<String>,
    pub taint: Option<u64>,
    /// Active lockdown mode ("none", "integrity", "confidentiality"), when securityfs says.
    pub lockdown: Option<String>,
    pub has_lock_tracepoints: bool,
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The bracketed word of /sys/kernel/security/lockdown ("none [integrity] confidentiality").
pub fn parse_lockdown(text: &str) -> Option<String> {
    let start = text.find('[')?;
    let end = text[start..].find(']')? + start;
    Some(text[start + 1..end].to_string())
}

impl KernelInfo {
    pub fn read() -> Self {
        let uts = nix::sys::utsname::uname().ok();
        Self {
            release: uts
                .as_ref()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            hostname: uts
                .as_ref()
                .map(|u| u.nodename().to_string_lossy().into_owned())
                .unwrap_or_default(),
            version: read_trim("/proc/version").unwrap_or_default(),
            ttm_srcversion: read_trim("/sys/module/ttm/srcversion"),
            taint: read_trim("/proc/sys/kernel/tainted").and_then(|t| t.parse().ok()),
            lockdown: read_trim("/sys/kernel/security/lockdown").and_then(|t| parse_lockdown(&t)),
            has_lock_tracepoints: [
                "/sys/kernel/tracing/events/lock/contention_begin",
                "/sys/kernel/debug/tracing/events/lock/contention_begin",
            ]
            .iter()
            .any(|p| Path::new(p).exists()),
        }
    }

    /// Function symbols of the running kernel and its modules.
    pub fn symbols(&self) -> Result<SymbolTable> {
        let text = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        Ok(SymbolTable::from_kallsyms(&text))
    }

    pub fn plan(&self) -> Result<AttachPlan> {
        let symbols = self.symbols()?;
        Ok(discovery::plan(&symbols, self.has_lock_tracepoints)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockdown_mode() {
        assert_eq!(
            parse_lockdown("none integrity [confidentiality]\n").as_deref(),
            Some("confidentiality")
        );
        assert_eq!(
            parse_lockdown("[none] integrity confidentiality").as_deref(),
            Some("none")
        );
        assert_eq!(parse_lockdown("garbage"), None);
    }
}
