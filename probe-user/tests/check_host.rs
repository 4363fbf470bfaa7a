//! `ttmlat check`, and the requirement gate of `record`/`live`, on the machine the tests run on.
//! Every assertion about a requirement's state is gated on a fact this test reads itself,
//! independently of ttmlat, so it holds anywhere; on the development host (no kprobes, no DRM,
//! integrity lockdown, tracefs not mounted) it is a real failing machine, and the lab test
//! (xtask/tests/lab_check.rs) is the passing one.

use std::{
    path::Path,
    process::{Command, Output},
};

const TTMLAT: &str = env!("CARGO_BIN_EXE_ttmlat");

/// The requirement names, in the order `ttmlat check` prints them.
const NAMES: [&str; 13] = [
    "privileges",
    "kernel lockdown",
    "BPF syscall",
    "BPF kernel reads",
    "kprobes",
    "tracefs kprobe_events",
    "vmlinux BTF",
    "ttm BTF",
    "TTM loaded",
    "TTM fault handlers",
    "tracepoints",
    "attach strategy",
    "KMS device",
];

fn ttmlat(args: &[&str]) -> Output {
    Command::new(TTMLAT)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {TTMLAT} {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

/// The lockdown mode, read by this test: securityfs if mounted, else (as root) through
/// `unshare -m` with a private securityfs mount, the way an administrator would look.
fn lockdown_mode() -> Option<String> {
    let bracketed = |t: &str| {
        let start = t.find('[')? + 1;
        let end = t[start..].find(']')? + start;
        Some(t[start..end].to_string())
    };
    if let Ok(t) = std::fs::read_to_string("/sys/kernel/security/lockdown") {
        return bracketed(&t);
    }
    if !is_root() {
        return None;
    }
    let out = Command::new("unshare")
        .args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t securityfs securityfs /sys/kernel/security && \
             cat /sys/kernel/security/lockdown",
        ])
        .output()
        .ok()?;
    bracketed(&text(&out.stdout))
}

/// The line of requirement `name` in `ttmlat check` output.
fn line<'a>(stdout: &'a str, name: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| {
            l.get(7..)
                .is_some_and(|rest| rest.starts_with(&format!("{name}: ")))
        })
        .unwrap_or_else(|| panic!("no line for {name:?} in:\n{stdout}"))
}

#[test]
fn check_names_every_requirement_and_its_state() {
    let out = ttmlat(&["check"]);
    let stdout = text(&out.stdout);
    eprintln!("{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("ttmlat check: kernel "), "{stdout}");
    // One line per requirement, in order, then the verdict: one screen.
    assert_eq!(lines.len(), NAMES.len() + 2, "{stdout}");
    for (l, name) in lines[1..].iter().zip(NAMES) {
        assert!(
            ["[ ok ] ", "[warn] ", "[FAIL] ", "[info] "]
                .iter()
                .any(|tag| l.starts_with(&format!("{tag}{name}: "))),
            "expected the {name:?} line, got {l:?}"
        );
    }

    // Facts read here, not by ttmlat.
    if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        assert!(line(&stdout, "kprobes").starts_with("[FAIL] "), "{stdout}");
    }
    match lockdown_mode().as_deref() {
        Some("confidentiality") => assert!(
            line(&stdout, "kernel lockdown").starts_with("[FAIL] kernel lockdown: confidentiality"),
            "{stdout}"
        ),
        Some(mode) => assert!(
            line(&stdout, "kernel lockdown")
                .starts_with(&format!("[ ok ] kernel lockdown: {mode}")),
            "{stdout}"
        ),
        None => eprintln!("lockdown mode not readable by this test: not checked"),
    }
    if !Path::new("/sys/module/ttm").exists() {
        assert!(
            line(&stdout, "TTM loaded").starts_with("[FAIL] "),
            "{stdout}"
        );
        assert!(
            line(&stdout, "TTM fault handlers").starts_with("[FAIL] "),
            "{stdout}"
        );
    }
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        assert!(
            line(&stdout, "vmlinux BTF").starts_with("[FAIL] "),
            "{stdout}"
        );
    } else {
        // This host's layout is real ground truth for the resolver.
        assert!(
            line(&stdout, "vmlinux BTF").starts_with("[ ok ] "),
            "{stdout}"
        );
    }
    if is_root() {
        assert_eq!(line(&stdout, "privileges"), "[ ok ] privileges: root");
    }
    // ttm BTF is never a requirement.
    assert!(line(&stdout, "ttm BTF").starts_with("[info] "), "{stdout}");

    // Exit status 0 exactly when nothing fails, and the verdict says which failed.
    let fails: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("[FAIL]"))
        .copied()
        .collect();
    let verdict = lines[lines.len() - 1];
    if fails.is_empty() {
        assert_eq!(out.status.code(), Some(0), "{stdout}");
        assert!(verdict.starts_with("ttmlat can run here"), "{verdict}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(
            verdict.starts_with(&format!(
                "ttmlat cannot run here: {} requirement",
                fails.len()
            )),
            "{verdict}"
        );
    }
    assert!(text(&out.stderr).is_empty(), "{}", text(&out.stderr));
}

/// `check --json` read through the type it serializes (`check::Report`): a renamed or
/// retyped field fails to parse (or to compile here) instead of reading as absent, and the
/// document holds nothing the type does not.
#[test]
fn json_agrees_with_the_exit_status() {
    use probe_user::check::{Report, State};

    let out = ttmlat(&["check", "--json"]);
    let raw: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    let report: Report = serde_json::from_value(raw.clone())
        .unwrap_or_else(|e| panic!("check --json is not a check::Report: {e}: {raw}"));
    assert_eq!(
        serde_json::to_value(&report).expect("re-encode"),
        raw,
        "check --json has fields check::Report does not"
    );
    assert_eq!(report.checks.len(), NAMES.len());
    for (c, name) in report.checks.iter().zip(NAMES) {
        assert_eq!(c.name, name);
        assert!(!c.id.is_empty(), "{c:?}");
    }
    let failing: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.state == State::Fail)
        .map(|c| c.id.as_ref())
        .collect();
    let listed: Vec<&str> = report.failing.iter().map(|id| id.as_ref()).collect();
    assert_eq!(failing, listed);
    assert_eq!(report.can_run, failing.is_empty());
    assert_eq!(
        out.status.code(),
        Some(if failing.is_empty() { 0 } else { 1 })
    );
}

/// On a machine that cannot trace, `record` and `live` print the failing requirement lines
/// (those of `ttmlat check`; the gate skips the kallsyms and BTF parsing the session does next),
/// not an errno, and `record` writes nothing.
#[test]
fn record_and_live_name_the_failing_requirement() {
    let check = ttmlat(&["check"]);
    if check.status.success() {
        eprintln!("SKIP: this machine can trace");
        return;
    }
    let check_out = text(&check.stdout);
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("x.json");
    let output_arg = output.to_string_lossy().into_owned();
    for args in [
        vec!["record", "-d", "1s", "-o", output_arg.as_str()],
        vec!["live", "-d", "1s"],
    ] {
        let out = ttmlat(&args);
        let stderr = text(&out.stderr);
        eprintln!("{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("ttmlat: error: this machine cannot run ttmlat's probes"),
            "{stderr}"
        );
        let fails: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("[FAIL] "))
            .collect();
        assert!(!fails.is_empty(), "{stderr}");
        for l in &fails {
            assert!(
                check_out.lines().any(|c| c == *l),
                "{l:?} is not a line of `ttmlat check`:\n{check_out}"
            );
        }
        if !Path::new("/sys/bus/event_source/devices/kprobe").exists() {
            assert!(stderr.contains("\n[FAIL] kprobes: "), "{stderr}");
        }
        if lockdown_mode().as_deref() == Some("confidentiality") {
            assert!(
                stderr.contains("\n[FAIL] kernel lockdown: confidentiality"),
                "{stderr}"
            );
        }
        if !Path::new("/sys/module/ttm").exists() {
            assert!(stderr.contains("\n[FAIL] TTM loaded: "), "{stderr}");
        }
        assert!(!stderr.contains("os error"), "a raw errno: {stderr}");
    }
    assert!(!output.exists(), "record created {}", output.display());
}

/// Without root or capabilities, privileges are the failing requirement.
#[test]
fn unprivileged_user_is_told_to_use_root() {
    if !is_root() || !Path::new("/usr/bin/setpriv").exists() {
        eprintln!("SKIP: needs root and setpriv to drop privileges");
        return;
    }
    let out = Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            TTMLAT,
            "check",
        ])
        .output()
        .expect("setpriv");
    let stdout = text(&out.stdout);
    eprintln!("{stdout}{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(
        line(&stdout, "privileges"),
        "[FAIL] privileges: euid 65534 without CAP_BPF+CAP_PERFMON — run ttmlat as root (sudo) \
         or with CAP_BPF+CAP_PERFMON"
    );
}
