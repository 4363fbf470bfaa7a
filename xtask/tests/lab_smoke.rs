//! End-to-end checks of the QEMU lab. They boot real kernels (15-20 s each),
//! need root and a completed ./scripts/setup.sh, so they are ignored by
//! default:
//!
//!     cargo test -p xtask --test lab_smoke -- --ignored

use std::fs;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use xtask::lab::{self, FailureKind, LabFailure, LabSpec, TtmVariant};
use xtask::lab_dirs::LabDirs;

fn expect_failure(result: Result<lab::LabRun>) -> Result<LabFailure> {
    match result {
        Ok(run) => bail!(
            "expected a lab failure, got rc {} ({})",
            run.rc,
            run.run_dir.display()
        ),
        Err(e) => e
            .downcast_ref::<LabFailure>()
            .cloned()
            .with_context(|| format!("expected a LabFailure, got: {e:#}")),
    }
}

#[test]
#[ignore = "boots QEMU; needs root and ./scripts/setup.sh"]
fn runs_commands_on_every_kernel() -> Result<()> {
    for kernel in xtask::prepare::kernel_packages::LAB_KERNELS {
        let alias = kernel.alias;
        let spec = LabSpec::new(
            alias,
            "ls /dev/dri; echo \"$LAB_KERNEL $LAB_TTM\" > \"$LAB_OUT/who\"; echo oops-not-really >&2; exit 7",
        );
        let run = lab::run(&spec)?;
        assert_eq!(run.rc, 7);
        assert!(run.stdout.contains("card0"), "{}", run.stdout);
        assert_eq!(run.stderr, "oops-not-really\n");
        assert_eq!(
            fs::read_to_string(run.out_dir.join("who"))?,
            format!("{alias} stock\n")
        );
        assert_eq!(run.kernel.alias, alias);
        assert!(run.console_log.is_file());
    }
    Ok(())
}

#[test]
#[ignore = "boots QEMU; needs root and ./scripts/setup.sh"]
fn a_guest_panic_is_a_failure() -> Result<()> {
    let failure = expect_failure(lab::run(&LabSpec::new(
        "6.1",
        "echo c > /proc/sysrq-trigger",
    )))?;
    assert_eq!(failure.kind, FailureKind::KernelTrouble);
    assert!(
        failure.detail.contains("Kernel panic"),
        "{}",
        failure.detail
    );
    assert!(failure.console_log.is_file());
    Ok(())
}

#[test]
#[ignore = "boots QEMU; needs root and ./scripts/setup.sh"]
fn a_hang_times_out() -> Result<()> {
    let spec = LabSpec::new("6.12", "sleep 600").timeout(Duration::from_secs(30));
    let failure = expect_failure(lab::run(&spec))?;
    assert_eq!(failure.kind, FailureKind::TimedOut);
    assert_eq!(failure.last_stage.as_deref(), Some("command"));
    Ok(())
}

#[test]
#[ignore = "boots QEMU; needs root and ./scripts/setup.sh"]
fn a_driver_load_failure_is_a_failure() -> Result<()> {
    // A lab whose "blocking" ttm.ko is garbage: insmod fails in the guest.
    let real = LabDirs::default();
    let dirs =
        LabDirs::at(std::env::temp_dir().join(format!("xtask-bad-ttm-{}", std::process::id())));
    fs::create_dir_all(dirs.root())?;
    fs::copy(real.manifest(), dirs.manifest())?;
    let manifest = xtask::manifest::KernelManifest::load(&dirs.manifest())?;
    let ko = dirs.ttm_blocking_ko(&manifest.get("6.1")?.release);
    fs::create_dir_all(ko.parent().context("ko has a parent")?)?;
    fs::write(&ko, "not an ELF module")?;
    let result = lab::run_in(
        &dirs,
        &LabSpec::new("6.1", "true").ttm(TtmVariant::Blocking),
    );
    let failure = expect_failure(result)?;
    fs::remove_dir_all(dirs.root())?;
    assert_eq!(failure.kind, FailureKind::GuestSetup);
    assert!(failure.detail.contains("insmod"), "{}", failure.detail);
    Ok(())
}

#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and the blocking ttm.ko"]
fn the_blocking_ttm_is_loaded() -> Result<()> {
    let run =
        lab::run(&LabSpec::new("6.1", "cat /sys/module/ttm/version").ttm(TtmVariant::Blocking))?;
    assert_eq!(run.rc, 0);
    assert_eq!(run.stdout.trim(), "blocking-reserve");
    assert_eq!(run.ttm_version, "blocking-reserve");
    assert!(!run.ttm_srcversion.is_empty());
    Ok(())
}
