//! Bad input to the workloads gets a clear message and a non-zero exit (runs on any host: no
//! DRM device is needed to be refused).

use std::process::Command;

fn ttmlat(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ttmlat"))
        .args(args)
        .output()
        .expect("run ttmlat");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_device_is_named() {
    for sub in [
        ["stress", "--rounds", "1"].as_slice(),
        ["workload", "touch"].as_slice(),
    ] {
        let mut args = sub.to_vec();
        args.extend(["--device", "/dev/dri/no-such-card"]);
        let (code, err) = ttmlat(&args);
        assert_ne!(code, 0, "{args:?}");
        assert!(
            err.contains("/dev/dri/no-such-card does not exist"),
            "{err}"
        );
    }
}

#[test]
fn a_file_that_is_not_a_drm_device_is_refused() {
    let (code, err) = ttmlat(&["stress", "--rounds", "1", "--device", "/dev/null"]);
    assert_ne!(code, 0);
    assert!(err.contains("/dev/null is not a DRM device"), "{err}");
}

#[test]
fn bad_parameters_are_refused() {
    let (code, err) = ttmlat(&["stress", "--threads", "0"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("--threads must be between 1 and 1024"),
        "{err}"
    );
    let (code, err) = ttmlat(&["workload", "touch", "--size", "12Q"]);
    assert_ne!(code, 0);
    assert!(err.contains("bad size unit"), "{err}");
}

#[test]
fn the_helper_is_internal() {
    let (code, err) = ttmlat(&["stress-helper"]);
    assert_ne!(code, 0);
    assert!(err.contains("internal"), "{err}");
}
