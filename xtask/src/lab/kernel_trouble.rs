//! Recognising a guest kernel in trouble from its console log, its dmesg and
//! its taint flags. Any of these turns a lab run into a failure, except the
//! warnings the kernel's own source attributes to emulator bugs
//! ([`EMULATOR_ARTIFACTS`]): those are tolerated, printed and kept in the run
//! directory, never hidden.

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

/// Kernel warnings that the kernel's source says emulators cause, as (what the
/// `WARNING:` line names, why it is not the kernel's or ttmlat's doing).
pub const EMULATOR_ARTIFACTS: [(&str, &str); 1] = [(
    "arch/x86/kernel/traps.c",
    "exc_debug_kernel: a single-step #DB in kernel mode that no kprobe or debugger \
     asked for (x86 kprobes stopped single-stepping in 5.11); the comment above this \
     WARN_ON_ONCE names QEMU bugs as a known cause; seen once under TCG (QEMU 7.2) in \
     a stock-6.12 contention run with kprobes; the kernel clears TF and goes on",
)];

/// Whether `line` is a warning listed in [`EMULATOR_ARTIFACTS`].
fn is_emulator_artifact(line: &str) -> bool {
    line.contains("WARNING:")
        && line.contains("exc_debug_kernel+")
        && EMULATOR_ARTIFACTS.iter().any(|(at, _)| line.contains(at))
}

/// The first line of `log` containing a trouble marker (emulator artifacts
/// excepted).
pub fn first_trouble(log: &str) -> Option<&str> {
    log.lines()
        .find(|line| {
            TROUBLE_MARKERS.iter().any(|m| line.contains(m)) && !is_emulator_artifact(line)
        })
        .map(str::trim)
}

/// The lines of `log` that are tolerated emulator artifacts.
pub fn emulator_artifacts(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| is_emulator_artifact(line))
        .map(str::trim)
        .collect()
}

/// Taint bits that mean something went wrong during the run
/// (see Documentation/admin-guide/tainted-kernels.rst).
const BAD_TAINTS: [(u32, &str); 5] = [
    (4, "machine check (M)"),
    (5, "bad page (B)"),
    (7, "kernel died / oops (D)"),
    (WARNING_TAINT_BIT, "kernel warning (W)"),
    (14, "soft lockup (L)"),
];

/// The warning taint: tolerated when every warning was an emulator artifact.
const WARNING_TAINT_BIT: u32 = 9;

/// Names of the bad taint flags set in `tainted` (the decimal contents of
/// /proc/sys/kernel/tainted); empty when none are (or it does not parse).
/// `only_artifact_warnings`: every warning the kernel logged is an emulator
/// artifact, so the warning taint is not a bad one.
pub fn bad_taints(tainted: &str, only_artifact_warnings: bool) -> Vec<&'static str> {
    let Ok(value) = tainted.trim().parse::<u64>() else {
        return Vec::new();
    };
    BAD_TAINTS
        .iter()
        .filter(|(bit, _)| value & (1 << bit) != 0)
        .filter(|(bit, _)| !(only_artifact_warnings && *bit == WARNING_TAINT_BIT))
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
    fn tolerates_only_the_named_emulator_artifact() {
        let db = "[   19.712296] WARNING: CPU: 0 PID: 176 at arch/x86/kernel/traps.c:1120 exc_debug_kernel+0xca/0x160\n";
        assert_eq!(first_trouble(db), None);
        assert_eq!(emulator_artifacts(db).len(), 1);
        let other =
            "[ 1.0] WARNING: CPU: 0 PID: 1 at arch/x86/kernel/traps.c:700 do_int3+0x1/0x2\n";
        assert!(first_trouble(other).is_some());
        assert!(emulator_artifacts(other).is_empty());
        let both = format!("{db}{other}");
        assert!(first_trouble(&both).is_some_and(|l| l.contains("do_int3")));
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
        assert!(bad_taints("0", false).is_empty());
        assert!(bad_taints("12288", false).is_empty()); // O + E: out-of-tree, unsigned
        assert_eq!(bad_taints("128", false), ["kernel died / oops (D)"]);
        assert_eq!(
            bad_taints("640\n", false),
            ["kernel died / oops (D)", "kernel warning (W)"]
        );
        assert_eq!(bad_taints("640", true), ["kernel died / oops (D)"]);
        assert!(bad_taints("", false).is_empty());
    }

    #[test]
    fn tails() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
