//! Requirements for tracing, each checked with a message that says what to do.

use anyhow::{Result, bail};

use crate::kernel_info::KernelInfo;

/// Fails with a clear message when this machine cannot run ttmlat's probes.
pub fn require_tracing(kernel: &KernelInfo) -> Result<()> {
    if !nix::unistd::geteuid().is_root() && !has_bpf_caps() {
        bail!("ttmlat needs root or CAP_BPF+CAP_PERFMON to load kernel probes (run it with sudo)");
    }
    if kernel.lockdown.as_deref() == Some("confidentiality") {
        bail!(
            "kernel lockdown is in confidentiality mode: the kernel refuses BPF tracing and \
             kprobes (see /sys/kernel/security/lockdown); ttmlat cannot run on this boot"
        );
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!(
            "no /sys/kernel/btf/vmlinux: this kernel was built without CONFIG_DEBUG_INFO_BTF, \
             which ttmlat needs to find struct layouts"
        );
    }
    Ok(())
}

/// CAP_BPF (39) and CAP_PERFMON (38) in the effective set.
fn has_bpf_caps() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|eff| eff & (1 << 39) != 0 && eff & (1 << 38) != 0)
}
