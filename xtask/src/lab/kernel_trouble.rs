//! Recognising a guest kernel in trouble from its console log, its dmesg and
//! its taint flags. Any of these turns a lab run into a failure.

/// Substrings of kernel messages that mean the run cannot be trusted.
pub const TROUBLE_MARKERS: [&str; 10] = [
    "Kernel panic",
    "BUG:",
    "kernel BUG at",
    "Oops",
    "general protection fault",
    "WARNING:",
    "UBSAN:",
    "KASAN:",
    "blocked for more than",
    "Unable to handle kernel",
];

/// The first line of `log` containing a trouble marker.
pub fn first_trouble(log: &str) -> Option<&str> {
    log.lines()
        .find(|line| TROUBLE_MARKERS.iter().any(|m| line.contains(m)))
        .map(str::trim)
}

/// Taint bits that mean something went wrong during the run
/// (see Documentation/admin-guide/tainted-kernels.rst).
const BAD_TAINTS: [(u32, &str); 5] = [
    (4, "machine check (M)"),
    (5, "bad page (B)"),
    (7, "kernel died / oops (D)"),
    (9, "kernel warning (W)"),
    (14, "soft lockup (L)"),
];

/// Names of the bad taint flags set in `tainted` (the decimal contents of
/// /proc/sys/kernel/tainted); empty when none are (or it does not parse).
pub fn bad_taints(tainted: &str) -> Vec<&'static str> {
    let Ok(value) = tainted.trim().parse::<u64>() else {
        return Vec::new();
    };
    BAD_TAINTS
        .iter()
        .filter(|(bit, _)| value & (1 << bit) != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spots_panics_oopses_and_bugs() {
        let panic = "lab-init: stage command\n[   12.3] Kernel panic - not syncing: sysrq triggered crash\n";
        assert_eq!(
            first_trouble(panic),
            Some("[   12.3] Kernel panic - not syncing: sysrq triggered crash")
        );
        let bug = "[ 1.0] BUG: kernel NULL pointer dereference, address: 0000000000000008\n[ 1.0] Oops: 0000 [#1] PREEMPT SMP NOPTI\n";
        assert!(first_trouble(bug).is_some_and(|l| l.contains("NULL pointer")));
        assert!(
            first_trouble(
                "[ 2.0] Oops: general protection fault, probably for non-canonical address\n"
            )
            .is_some()
        );
        assert!(
            first_trouble("[ 3.0] general protection fault, maybe for address 0x1: 0000 [#1]\n")
                .is_some()
        );
        assert!(
            first_trouble("[ 4.0] watchdog: BUG: soft lockup - CPU#0 stuck for 22s!\n").is_some()
        );
        assert!(
            first_trouble("[ 5.0] WARNING: CPU: 1 PID: 1 at drivers/gpu/drm/ttm/ttm_bo.c:100\n")
                .is_some()
        );
        assert!(
            first_trouble("[ 6.0] INFO: task kworker:1 blocked for more than 120 seconds.\n")
                .is_some()
        );
    }

    #[test]
    fn a_clean_boot_is_not_trouble() {
        let clean = "\
[    0.000000] Linux version 6.1.0-56-amd64
[    1.2] bochs-drm 0000:00:02.0: vgaarb: deactivate vga console
lab-init: stage driver
lab-init: stage finished
";
        assert_eq!(first_trouble(clean), None);
    }

    #[test]
    fn decodes_bad_taints() {
        assert!(bad_taints("0").is_empty());
        assert!(bad_taints("12288").is_empty()); // O + E: out-of-tree, unsigned
        assert_eq!(bad_taints("128"), ["kernel died / oops (D)"]);
        assert_eq!(
            bad_taints("640\n"),
            ["kernel died / oops (D)", "kernel warning (W)"]
        );
        assert!(bad_taints("").is_empty());
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
