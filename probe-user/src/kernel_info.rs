//! Facts about the running kernel, read once: release, ttm module, taint, lockdown, symbols.
//! Also the small readers `ttmlat check` builds on: capabilities, kernel config, tracefs,
//! tracepoints, lockdown (with where it was read from).

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

use crate::discovery::{self, AttachPlan, SymbolTable};

#[derive(Clone, Debug, Default)]
pub struct KernelInfo {
    pub release: String,
    pub version: String,
    pub hostname: String,
    pub ttm_srcversion: Option<String>,
    /// /sys/module/ttm/taint ("OE" for an unsigned out-of-tree ttm.ko, "" when clean).
    pub ttm_taint: Option<String>,
    /// /sys/module/ttm/version (MODULE_VERSION; the lab's blocking variant sets one).
    pub ttm_version: Option<String>,
    pub taint: Option<u64>,
    /// Active lockdown mode ("none", "integrity", "confidentiality"), when securityfs says.
    pub lockdown: Option<String>,
    pub has_lock_tracepoints: bool,
    /// The preemption model the kernel runs with.
    pub preemption: Preemption,
}

/// The kernel's preemption model: whether kernel code, a BPF program included, can be
/// preempted at any point. A trampoline (fentry/fexit) program runs with migration disabled
/// but preemption enabled; if it is preempted and another task on that CPU reaches the same
/// program, the kernel skips that run (`recursion_misses`). kprobe programs run with
/// preemption off, so they are never skipped that way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preemption {
    None,
    Voluntary,
    Full,
    /// PREEMPT_LAZY (6.13+): preempted at the next tick at the latest.
    Lazy,
    Rt,
    /// PREEMPT_DYNAMIC with debugfs unreadable: any of the above but RT.
    #[default]
    Unknown,
}

impl Preemption {
    /// Whether a running BPF program can be preempted (so that a trampoline program can be
    /// skipped). Unknown counts as yes.
    pub fn preempts_programs(self) -> bool {
        !matches!(self, Preemption::None | Preemption::Voluntary)
    }

    pub fn name(self) -> &'static str {
        match self {
            Preemption::None => "none",
            Preemption::Voluntary => "voluntary",
            Preemption::Full => "full",
            Preemption::Lazy => "lazy",
            Preemption::Rt => "PREEMPT_RT",
            Preemption::Unknown => "unknown (PREEMPT_DYNAMIC; debugfs sched/preempt unreadable)",
        }
    }

    /// The current mode of a PREEMPT_DYNAMIC kernel from debugfs's `sched/preempt`, where it
    /// is the parenthesised word: "none voluntary (full) lazy".
    pub fn from_sched_preempt(text: &str) -> Option<Self> {
        let start = text.find('(')?;
        let end = text[start..].find(')')? + start;
        match &text[start + 1..end] {
            "none" => Some(Preemption::None),
            "voluntary" => Some(Preemption::Voluntary),
            "full" => Some(Preemption::Full),
            "lazy" => Some(Preemption::Lazy),
            _ => None,
        }
    }

    /// The model from `/proc/version` ("... SMP PREEMPT_DYNAMIC Debian ..."), which names the
    /// build's model: PREEMPT_RT, PREEMPT_LAZY, PREEMPT (full) or PREEMPT_DYNAMIC (chosen at
    /// boot: `Unknown`); none of them is a voluntary or non-preemptible build.
    pub fn from_version(version: &str) -> Self {
        let words: Vec<&str> = version.split_whitespace().collect();
        if words.contains(&"PREEMPT_RT") {
            Preemption::Rt
        } else if words.contains(&"PREEMPT_DYNAMIC") {
            Preemption::Unknown
        } else if words.contains(&"PREEMPT_LAZY") {
            Preemption::Lazy
        } else if words.contains(&"PREEMPT") {
            Preemption::Full
        } else {
            Preemption::Voluntary
        }
    }

    /// The running kernel's model.
    pub fn current() -> Self {
        Self::read(&read_trim("/proc/version").unwrap_or_default())
    }

    pub fn read(version: &str) -> Self {
        let from_version = Self::from_version(version);
        if from_version != Preemption::Unknown {
            return from_version;
        }
        read_trim("/sys/kernel/debug/sched/preempt")
            .and_then(|t| Self::from_sched_preempt(&t))
            .unwrap_or(Preemption::Unknown)
    }
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
        let version = read_trim("/proc/version").unwrap_or_default();
        Self {
            release: uts
                .as_ref()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            hostname: uts
                .as_ref()
                .map(|u| u.nodename().to_string_lossy().into_owned())
                .unwrap_or_default(),
            version: version.clone(),
            preemption: Preemption::read(&version),
            ttm_srcversion: read_trim("/sys/module/ttm/srcversion"),
            ttm_taint: read_trim("/sys/module/ttm/taint"),
            ttm_version: read_trim("/sys/module/ttm/version"),
            taint: read_trim("/proc/sys/kernel/tainted").and_then(|t| t.parse().ok()),
            lockdown: read_trim("/sys/kernel/security/lockdown").and_then(|t| parse_lockdown(&t)),
            has_lock_tracepoints: tracepoint_source("lock", "contention_begin").is_some(),
        }
    }

    /// Function symbols of the running kernel and its modules.
    pub fn symbols(&self) -> Result<SymbolTable> {
        let text = std::fs::read_to_string("/proc/kallsyms").context("reading /proc/kallsyms")?;
        Ok(SymbolTable::queried_from_kallsyms(&text))
    }

    pub fn plan(&self) -> Result<AttachPlan> {
        let symbols = self.symbols()?;
        Ok(discovery::plan(&symbols, self.has_lock_tracepoints)?)
    }
}

/// securityfs's lockdown file.
pub const LOCKDOWN_FILE: &str = "/sys/kernel/security/lockdown";

/// The kernel's own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Where tracefs is usually found, in the order ttmlat tries them.
pub const TRACEFS_DIRS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// Capability numbers (linux/capability.h).
pub mod cap {
    pub const SYS_ADMIN: u32 = 21;
    pub const PERFMON: u32 = 38;
    pub const BPF: u32 = 39;
}

/// The effective capability set (`CapEff:` of /proc/PID/status text).
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// This process's effective capabilities.
pub fn cap_eff() -> Option<u64> {
    parse_cap_eff(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// Whether capability `bit` is in the set `caps`.
pub fn has_cap(caps: u64, bit: u32) -> bool {
    bit < 64 && caps & (1u64 << bit) != 0
}

/// A kernel build configuration (`CONFIG_FOO=y`, `# CONFIG_BAR is not set`).
#[derive(Clone, Debug, Default)]
pub struct KernelConfig {
    values: std::collections::BTreeMap<String, String>,
    /// Where it was read from.
    pub source: PathBuf,
}

impl KernelConfig {
    pub fn parse(text: &str, source: PathBuf) -> Self {
        let mut values = std::collections::BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("# ") {
                if let Some(name) = rest.strip_suffix(" is not set")
                    && name.starts_with("CONFIG_")
                {
                    values.insert(name.to_string(), "n".to_string());
                }
            } else if let Some((name, value)) = line.split_once('=')
                && name.starts_with("CONFIG_")
            {
                values.insert(name.to_string(), value.trim_matches('"').to_string());
            }
        }
        Self { values, source }
    }

    /// The value of `name` ("y", "m", "n", a number or string); `None` when the config does
    /// not mention it (which for a bool means "n" on that kernel's architecture).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether `name` is built in or a module.
    pub fn enabled(&self, name: &str) -> bool {
        matches!(self.get(name), Some("y" | "m"))
    }

    /// The running kernel's config: /proc/config.gz, else /boot/config-RELEASE.
    pub fn read(release: &str) -> Option<Self> {
        let gz = Path::new("/proc/config.gz");
        if let Ok(file) = std::fs::File::open(gz) {
            let mut text = String::new();
            if flate2::read::GzDecoder::new(file)
                .read_to_string(&mut text)
                .is_ok()
            {
                return Some(Self::parse(&text, gz.to_path_buf()));
            }
        }
        let boot = PathBuf::from(format!("/boot/config-{release}"));
        let text = std::fs::read_to_string(&boot).ok()?;
        Some(Self::parse(&text, boot))
    }
}

/// The mounted tracefs (a directory with `events/` in it), if any.
pub fn tracefs_root() -> Option<PathBuf> {
    TRACEFS_DIRS
        .iter()
        .map(Path::new)
        .find(|p| p.join("events").is_dir())
        .map(Path::to_path_buf)
}

/// Mount points of file systems of type `fstype` in /proc/self/mounts text.
pub fn parse_mount_points(mounts: &str, fstype: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut it = line.split_whitespace();
            let (_dev, dir, ty) = (it.next()?, it.next()?, it.next()?);
            // Spaces etc. are octal-escaped (\040); the directories we look for have none.
            (ty == fstype).then(|| PathBuf::from(dir))
        })
        .collect()
}

/// Where tracefs is mounted in this mount namespace (from /proc/self/mounts, which unlike
/// looking into the directories also works without permission to enter them).
pub fn tracefs_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|t| parse_mount_points(&t, "tracefs"))
        .unwrap_or_default()
}

/// Whether the kernel knows file system `fstype` (/proc/filesystems).
pub fn filesystem_supported(fstype: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().next_back() == Some(fstype))
    })
}

/// How a tracepoint was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TracepointSource {
    /// `events/SYSTEM/NAME` under this tracefs.
    Tracefs(PathBuf),
    /// A `btf_trace_NAME` typedef in vmlinux BTF (every built-in tracepoint has one; raw
    /// tracepoints attach by name without tracefs).
    Btf,
}

/// Whether `name` is one of the NUL-terminated strings of a BTF blob's string section.
/// (A whole-file search: strings are NUL-separated, and the type section holds no text.)
pub fn btf_has_string(btf: &[u8], name: &str) -> bool {
    btf.split(|&b| b == 0).any(|s| s == name.as_bytes())
}

/// Finds tracepoint SYSTEM:NAME in tracefs, else in the given vmlinux BTF bytes.
pub fn find_tracepoint(
    tracefs: Option<&Path>,
    vmlinux_btf: Option<&[u8]>,
    system: &str,
    name: &str,
) -> Option<TracepointSource> {
    if let Some(root) = tracefs
        && root.join("events").join(system).join(name).is_dir()
    {
        return Some(TracepointSource::Tracefs(root.to_path_buf()));
    }
    vmlinux_btf
        .filter(|btf| btf_has_string(btf, &format!("btf_trace_{name}")))
        .map(|_| TracepointSource::Btf)
}

/// Finds tracepoint SYSTEM:NAME on the running kernel (tracefs first; vmlinux BTF only read
/// when tracefs does not answer).
pub fn tracepoint_source(system: &str, name: &str) -> Option<TracepointSource> {
    let tracefs = tracefs_root();
    if let Some(found) = find_tracepoint(tracefs.as_deref(), None, system, name) {
        return Some(found);
    }
    let btf = std::fs::read(VMLINUX_BTF).ok()?;
    find_tracepoint(None, Some(&btf), system, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preemption_models() {
        use Preemption::*;
        let debian = "Linux version 6.12.57+deb13-amd64 (debian-kernel@lists.debian.org) \
                      (gcc 14.2.0) #1 SMP PREEMPT_DYNAMIC Debian 6.12.57-1 (2025-11-05)";
        assert_eq!(Preemption::from_version(debian), Unknown);
        let rt = "Linux version 6.12.57+deb13-rt-amd64 #1 SMP PREEMPT_RT Debian 6.12.57-1";
        assert_eq!(Preemption::from_version(rt), Rt);
        assert_eq!(
            Preemption::from_version("Linux version 5.10.0 #1 SMP PREEMPT Mon"),
            Full
        );
        assert_eq!(
            Preemption::from_version("Linux version 5.10.0 #1 SMP Debian"),
            Voluntary
        );
        assert_eq!(
            Preemption::from_sched_preempt("none (voluntary) full"),
            Some(Voluntary)
        );
        assert_eq!(
            Preemption::from_sched_preempt("none voluntary full (lazy)"),
            Some(Lazy)
        );
        assert_eq!(
            Preemption::from_sched_preempt("(none) voluntary full"),
            Some(None)
        );
        assert_eq!(
            Preemption::from_sched_preempt("none voluntary (full) lazy"),
            Some(Full)
        );
        assert_eq!(
            Preemption::from_sched_preempt("none voluntary full"),
            Option::None
        );
        assert!(!Voluntary.preempts_programs() && !None.preempts_programs());
        for m in [Full, Lazy, Rt, Unknown] {
            assert!(m.preempts_programs(), "{m:?}");
        }
    }

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
    #[test]
    fn cap_eff_from_status() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n\
                      CapEff:\t000000c000000000\nCapBnd:\t000001fffeffffff\n";
        let caps = parse_cap_eff(status).expect("CapEff");
        assert!(has_cap(caps, cap::BPF) && has_cap(caps, cap::PERFMON));
        assert!(!has_cap(caps, cap::SYS_ADMIN));
        assert!(!has_cap(caps, 64));
        assert_eq!(parse_cap_eff("CapEff:\tzz\n"), None);
        assert_eq!(parse_cap_eff("Name:\tx\n"), None);
    }

    #[test]
    fn kernel_config_values() {
        let c = KernelConfig::parse(
            "# comment\nCONFIG_KPROBES=y\n# CONFIG_DRM is not set\nCONFIG_TTM=m\n\
             CONFIG_LSM=\"lockdown,yama\"\n",
            PathBuf::from("/x"),
        );
        assert!(c.enabled("CONFIG_KPROBES") && c.enabled("CONFIG_TTM"));
        assert_eq!(c.get("CONFIG_DRM"), Some("n"));
        assert!(!c.enabled("CONFIG_DRM") && !c.enabled("CONFIG_ABSENT"));
        assert_eq!(c.get("CONFIG_LSM"), Some("lockdown,yama"));
    }

    #[test]
    fn btf_strings_match_whole_names_only() {
        let blob =
            b"\x9f\xeb\x01\x00junk\0btf_trace_contention_begin\0btf_trace_sched_process_exit\0";
        assert!(btf_has_string(blob, "btf_trace_contention_begin"));
        assert!(btf_has_string(blob, "btf_trace_sched_process_exit"));
        assert!(!btf_has_string(blob, "btf_trace_contention"));
        assert!(!btf_has_string(blob, "trace_contention_begin"));
        assert_eq!(
            find_tracepoint(None, Some(blob), "lock", "contention_begin"),
            Some(TracepointSource::Btf)
        );
        assert_eq!(
            find_tracepoint(None, Some(blob), "lock", "contention_end"),
            None
        );
    }
    #[test]
    fn tracefs_mount_points() {
        let mounts = "sysfs /sys sysfs rw,nosuid 0 0\n\
                      tracefs /sys/kernel/tracing tracefs rw,nosuid,nodev,noexec 0 0\n\
                      debugfs /sys/kernel/debug debugfs rw 0 0\n\
                      tracefs /sys/kernel/debug/tracing tracefs rw 0 0\n";
        assert_eq!(
            parse_mount_points(mounts, "tracefs"),
            vec![
                PathBuf::from("/sys/kernel/tracing"),
                PathBuf::from("/sys/kernel/debug/tracing")
            ]
        );
        assert!(parse_mount_points("garbage\n", "tracefs").is_empty());
    }
}
