//! Deciding whether a lab run can be trusted (pure; unit-tested).

use std::time::Duration;

use super::evidence::Evidence;
use super::failure::FailureKind;
use super::kernel_trouble::{bad_taints, emulator_artifacts, first_trouble, tail};
use super::qemu::QemuEnd;

/// The guest command's exit status if the run is trustworthy, otherwise why
/// not. Checked in order: timeout, QEMU error, kernel messages (console,
/// then dmesg), /init failure, missing exit status, bad taints, wrong kernel.
pub fn judge(
    end: &QemuEnd,
    timeout: Duration,
    ev: &Evidence,
    release: &str,
) -> Result<i32, (FailureKind, String)> {
    let trouble = first_trouble(&ev.console)
        .map(|l| format!("console: {l}"))
        .or_else(|| first_trouble(&ev.dmesg).map(|l| format!("dmesg: {l}")));
    match end {
        QemuEnd::TimedOut => {
            let mut detail = format!("killed after {} s", timeout.as_secs());
            if let Some(t) = &trouble {
                detail.push_str(&format!(" ({t})"));
            }
            return Err((FailureKind::TimedOut, detail));
        }
        QemuEnd::Exited(status) if !status.success() => {
            let log = tail(ev.qemu_log.trim(), 5);
            return Err((FailureKind::Qemu, format!("{status}: {log}")));
        }
        QemuEnd::Exited(_) => {}
    }
    if let Some(t) = trouble {
        return Err((FailureKind::KernelTrouble, t));
    }
    if let Some(reason) = &ev.fail {
        let kind = if ev.card0_missing {
            FailureKind::MissingCard
        } else {
            FailureKind::GuestSetup
        };
        return Err((kind, reason.clone()));
    }
    let Some(rc) = ev.rc.as_deref().and_then(|s| s.parse::<i32>().ok()) else {
        return Err((
            FailureKind::NoExitStatus,
            "no ctl/rc written (guest crashed or powered off early)".into(),
        ));
    };
    // Reached only when no other warning was logged (first_trouble above).
    let only_artifacts =
        !emulator_artifacts(&ev.dmesg).is_empty() || !emulator_artifacts(&ev.console).is_empty();
    let bad = bad_taints(&ev.tainted_end, only_artifacts);
    if !bad.is_empty() {
        let detail = format!("kernel tainted {}: {}", ev.tainted_end, bad.join(", "));
        return Err((FailureKind::KernelTrouble, detail));
    }
    if ev.uname != release {
        let detail = format!("guest runs {:?}, expected {release}", ev.uname);
        return Err((FailureKind::GuestSetup, detail));
    }
    Ok(rc)
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;

    const REL: &str = "6.1.0-56-amd64";
    const T: Duration = Duration::from_secs(60);

    fn ok_end() -> QemuEnd {
        QemuEnd::Exited(ExitStatus::from_raw(0))
    }

    fn finished(rc: &str) -> Evidence {
        Evidence {
            console: "lab-init: stage boot\nlab-init: stage finished\n[ 9.0] reboot: Power down\n"
                .into(),
            dmesg: "[ 0.0] Linux version 6.1.0-56-amd64\n".into(),
            stages: ["boot", "mounted", "driver", "command", "finished"]
                .map(String::from)
                .to_vec(),
            rc: Some(rc.into()),
            uname: REL.into(),
            tainted_start: "0".into(),
            tainted_end: "0".into(),
            ..Evidence::default()
        }
    }

    fn kind(r: Result<i32, (FailureKind, String)>) -> Option<FailureKind> {
        r.err().map(|(k, _)| k)
    }

    #[test]
    fn a_clean_run_returns_the_command_status() {
        assert_eq!(judge(&ok_end(), T, &finished("0"), REL), Ok(0));
        assert_eq!(judge(&ok_end(), T, &finished("1"), REL), Ok(1));
        let mut tainted_oe = finished("0");
        tainted_oe.tainted_end = "12288".into();
        assert_eq!(judge(&ok_end(), T, &tainted_oe, REL), Ok(0));
    }

    #[test]
    fn kernel_trouble_fails_even_with_rc_zero() {
        let mut ev = finished("0");
        ev.console
            .push_str("[ 8.2] Kernel panic - not syncing: sysrq triggered crash\n");
        let (k, detail) = judge(&ok_end(), T, &ev, REL).unwrap_err();
        assert_eq!(k, FailureKind::KernelTrouble);
        assert!(
            detail.starts_with("console: [ 8.2] Kernel panic"),
            "{detail}"
        );

        let mut ev = finished("0");
        ev.dmesg
            .push_str("[ 5.0] WARNING: CPU: 0 PID: 9 at drivers/gpu/drm/ttm/ttm_bo.c:1\n");
        assert_eq!(
            kind(judge(&ok_end(), T, &ev, REL)),
            Some(FailureKind::KernelTrouble)
        );

        let mut ev = finished("0");
        ev.tainted_end = "128".into();
        assert_eq!(
            kind(judge(&ok_end(), T, &ev, REL)),
            Some(FailureKind::KernelTrouble)
        );
    }

    #[test]
    fn timeouts_and_qemu_errors_fail() {
        let (k, detail) = judge(&QemuEnd::TimedOut, T, &finished("0"), REL).unwrap_err();
        assert_eq!(k, FailureKind::TimedOut);
        assert_eq!(detail, "killed after 60 s");
        let mut ev = finished("0");
        ev.console
            .push_str("[ 30.0] watchdog: BUG: soft lockup - CPU#1 stuck for 22s!\n");
        let (_, detail) = judge(&QemuEnd::TimedOut, T, &ev, REL).unwrap_err();
        assert!(detail.contains("soft lockup"), "{detail}");
        let bad = QemuEnd::Exited(ExitStatus::from_raw(1 << 8));
        assert_eq!(
            kind(judge(&bad, T, &finished("0"), REL)),
            Some(FailureKind::Qemu)
        );
    }

    #[test]
    fn guest_set_up_failures_are_reported() {
        let mut ev = finished("0");
        ev.rc = None;
        ev.fail = Some("no /dev/dri/card0 after loading bochs".into());
        ev.card0_missing = true;
        assert_eq!(
            kind(judge(&ok_end(), T, &ev, REL)),
            Some(FailureKind::MissingCard)
        );
        ev.card0_missing = false;
        ev.fail = Some("modprobe bochs failed".into());
        assert_eq!(
            kind(judge(&ok_end(), T, &ev, REL)),
            Some(FailureKind::GuestSetup)
        );
        ev.fail = None;
        assert_eq!(
            kind(judge(&ok_end(), T, &ev, REL)),
            Some(FailureKind::NoExitStatus)
        );
        let mut wrong = finished("0");
        wrong.uname = "6.12.117+deb12-amd64".into();
        assert_eq!(
            kind(judge(&ok_end(), T, &wrong, REL)),
            Some(FailureKind::GuestSetup)
        );
    }
}
