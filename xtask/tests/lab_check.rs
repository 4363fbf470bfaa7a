//! `ttmlat check` on machines that can trace — every lab kernel (Debian's 6.1, 6.12, 6.12-rt
//! with bochs → drm_vram_helper → ttm, the newest with qxl → ttm) — and on one that cannot
//! because TTM is not loaded (a 6.12 guest after unloading the driver stack: what is tested is
//! ttmlat's message, which no kernel difference changes, so it runs on 6.12 only). The failing case with
//! lockdown/kprobes is the development host itself (probe-user/tests/check_host.rs).
//!
//!     cargo build --release -p probe-user
//!     cargo test -p xtask --test lab_check -- --ignored

use std::fs;

use anyhow::{Context, Result, ensure};
use probe_user::{check::Report, discovery::ContentionSource};
use xtask::{
    lab::{LabRun, TtmVariant},
    labtest,
};

/// `check --json`, read into the type the binary wrote it from.
fn report(run: &LabRun) -> Result<Report> {
    serde_json::from_str(&out(run, "check.json")?).context("check --json")
}

/// Runs `body` in the guest; the script itself must succeed (it records ttmlat's exit codes
/// in files rather than failing on them, hence no `set -e`).
fn run(kernel: &str, ttm: TtmVariant, body: &str) -> Result<LabRun> {
    labtest::run_guest(kernel, ttm, &format!("set -u\n{body}"))
}

fn out(run: &LabRun, name: &str) -> Result<String> {
    let path = run.out_dir.join(name);
    fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

fn rc(run: &LabRun, name: &str) -> Result<i32> {
    let text = out(run, name)?;
    text.trim()
        .parse()
        .with_context(|| format!("{name}: not an exit status: {text:?}"))
}

/// The line of requirement `name`.
fn line<'a>(text: &'a str, name: &str) -> Result<&'a str> {
    text.lines()
        .find(|l| {
            l.get(7..)
                .is_some_and(|r| r.starts_with(&format!("{name}: ")))
        })
        .with_context(|| format!("no {name:?} line in:\n{text}"))
}

const CHECK: &str = r#"$TTMLAT check > $LAB_OUT/check.txt 2> $LAB_OUT/check.err
echo $? > $LAB_OUT/check.rc
$TTMLAT check --json > $LAB_OUT/check.json 2>> $LAB_OUT/check.err
echo $? > $LAB_OUT/json.rc
"#;

/// Everything ok on a guest with TTM loaded; returns the text report.
fn assert_passes(run: &LabRun) -> Result<String> {
    let text = out(run, "check.txt")?;
    eprintln!("{} ({}):\n{text}", run.kernel.alias, run.ttm);
    ensure!(rc(run, "check.rc")? == 0, "check exited non-zero:\n{text}");
    ensure!(rc(run, "json.rc")? == 0, "check --json exited non-zero");
    ensure!(
        !text.contains("[FAIL]"),
        "a requirement fails in the lab:\n{text}"
    );
    ensure!(
        text.trim_end().ends_with("ttmlat can run here"),
        "no verdict:\n{text}"
    );
    for name in [
        "privileges",
        "kernel lockdown",
        "BPF syscall",
        "BPF kernel reads",
        "kprobes",
        "tracefs kprobe_events",
        "vmlinux BTF",
        "TTM loaded",
        "TTM fault handlers",
        "tracepoints",
        "attach strategy",
    ] {
        let l = line(&text, name)?;
        ensure!(l.starts_with("[ ok ] "), "{l}");
    }
    let handlers = line(&text, "TTM fault handlers")?;
    ensure!(
        handlers.contains("ttm_bo_vm_fault [ttm]")
            && handlers.contains("reserve ttm_bo_vm_reserve"),
        "{handlers}"
    );
    let tps = line(&text, "tracepoints")?;
    ensure!(
        tps.contains("lock:contention_begin")
            && tps.contains("lock:contention_end")
            && tps.contains("sched:sched_process_exit")
            && !tps.contains("missing"),
        "{tps}"
    );
    let strategy = line(&text, "attach strategy")?;
    ensure!(
        strategy.contains("contention: raw tracepoints lock:contention_begin/end"),
        "{strategy}"
    );
    ensure!(line(&text, "kernel lockdown")?.starts_with("[ ok ] kernel lockdown: none"));
    let card = format!("card0 ({})", run.kernel.display.drm_name());
    ensure!(line(&text, "KMS device")?.contains(&card), "no {card}");

    let json = report(run)?;
    ensure!(json.can_run && json.failing.is_empty(), "{json:?}");
    let plan = json.plan.context("check --json has no attach plan")?;
    ensure!(plan.contention == ContentionSource::Tracepoints, "{plan:?}");
    ensure!(
        plan.fault_handlers.first() == Some(&("ttm_bo_vm_fault".to_string(), "ttm".to_string())),
        "{plan:?}"
    );
    ensure!(
        out(run, "check.err")?.is_empty(),
        "stderr: {}",
        out(run, "check.err")?
    );
    Ok(text)
}

#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and target/release/ttmlat"]
fn check_passes_on_debian_6_1() -> Result<()> {
    let run = run("6.1", TtmVariant::Stock, CHECK)?;
    let text = assert_passes(&run)?;
    // Debian's ttm.ko has BTF; not needed, but reported.
    ensure!(line(&text, "ttm BTF")?.starts_with("[info] ttm BTF: /sys/kernel/btf/ttm present"));
    Ok(())
}

fn check_passes(kernel: &str) -> Result<()> {
    assert_passes(&run(kernel, TtmVariant::Stock, CHECK)?)?;
    Ok(())
}

xtask::on_current_kernels!(check_passes_on_debian => check_passes);

/// The oldest kernel in the lab (bullseye's 5.10): check passes with two warnings, each
/// naming what ttmlat does instead — no lock contention tracepoints (5.19) → rwsem-slowpath
/// kprobes; `ww_mutex_trylock` inlined into `ttm_bo_vm_reserve` (before 5.16) → no call
/// sites, the vmlinux hooks.
#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and target/release/ttmlat"]
fn check_passes_with_warnings_on_debian_5_10() -> Result<()> {
    let run = run("5.10", TtmVariant::Stock, CHECK)?;
    let text = out(&run, "check.txt")?;
    eprintln!("5.10:\n{text}");
    ensure!(rc(&run, "check.rc")? == 0, "check exited non-zero:\n{text}");
    ensure!(!text.contains("[FAIL]"), "{text}");
    ensure!(
        text.trim_end()
            .ends_with("ttmlat can run here (2 warnings)"),
        "{text}"
    );
    let tps = line(&text, "tracepoints")?;
    ensure!(
        tps.starts_with("[warn] ") && tps.contains("rwsem slowpath kprobes"),
        "{tps}"
    );
    let strategy = line(&text, "attach strategy")?;
    ensure!(
        strategy
            .contains("contention: kprobes on rwsem_down_read_slowpath, rwsem_down_write_slowpath"),
        "{strategy}"
    );
    let sites = line(&text, "call-site hooks")?;
    ensure!(
        sites.starts_with("[warn] ") && sites.contains("no call of ww_mutex_trylock"),
        "{sites}"
    );
    ensure!(line(&text, "KMS device")?.contains("card0 (bochs-drm)"));
    Ok(())
}

/// The self-built blocking ttm.ko has no BTF: that is information, not a failure.
#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and the blocking ttm.ko"]
fn check_passes_with_a_ttm_without_btf() -> Result<()> {
    let run = run("6.1", TtmVariant::Blocking, CHECK)?;
    let text = assert_passes(&run)?;
    ensure!(
        line(&text, "ttm BTF")?.starts_with("[info] ttm BTF: absent — not needed"),
        "{text}"
    );
    ensure!(
        line(&text, "TTM loaded")?.contains("version blocking-reserve"),
        "{text}"
    );
    Ok(())
}

/// With the driver stack unloaded (bochs → drm_vram_helper → drm_ttm_helper → ttm), check
/// names TTM as the failing requirement and exits non-zero, and `record` refuses with the
/// same line and writes nothing.
#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and target/release/ttmlat"]
fn check_fails_on_6_12_without_ttm() -> Result<()> {
    let body = format!(
        r#"rmmod bochs drm_vram_helper drm_ttm_helper ttm || {{ echo "rmmod failed"; lsmod; exit 2; }}
[ ! -e /sys/module/ttm ] || {{ echo "ttm still loaded"; exit 2; }}
{CHECK}$TTMLAT record -d 1s -o $LAB_OUT/rec.json > $LAB_OUT/record.out 2> $LAB_OUT/record.err
echo $? > $LAB_OUT/record.rc
"#
    );
    let run = run("6.12", TtmVariant::Stock, &body)?;
    let text = out(&run, "check.txt")?;
    eprintln!("{text}");
    ensure!(rc(&run, "check.rc")? == 1, "check must exit 1:\n{text}");
    ensure!(rc(&run, "json.rc")? == 1, "check --json must exit 1");
    let ttm = line(&text, "TTM loaded")?;
    ensure!(
        ttm.starts_with("[FAIL] TTM loaded: no ttm module (/sys/module/ttm) — load the GPU driver"),
        "{ttm}"
    );
    ensure!(line(&text, "TTM fault handlers")?.starts_with("[FAIL] TTM fault handlers: none"));
    // Everything else still holds: only TTM is missing.
    ensure!(
        text.lines().filter(|l| l.starts_with("[FAIL]")).count() == 2,
        "{text}"
    );
    ensure!(
        text.trim_end().ends_with(
            "ttmlat cannot run here: 2 requirements not met (TTM loaded, TTM fault handlers)"
        ),
        "{text}"
    );
    let json = report(&run)?;
    ensure!(
        json.failing == ["ttm_loaded", "fault_handlers"] && !json.can_run,
        "{json:?}"
    );

    let err = out(&run, "record.err")?;
    eprintln!("record: {err}");
    ensure!(rc(&run, "record.rc")? == 1, "record must fail:\n{err}");
    ensure!(
        err.contains(&format!("\n{ttm}\n")),
        "record did not name TTM:\n{err}"
    );
    ensure!(!err.contains("os error"), "a raw errno:\n{err}");
    ensure!(
        !run.out_dir.join("rec.json").exists(),
        "record wrote a recording"
    );
    Ok(())
}
