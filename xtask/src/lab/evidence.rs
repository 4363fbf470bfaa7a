//! What a finished (or killed) guest left behind in its run directory.

use std::fs;
use std::path::Path;

/// Contents of the run's files; missing files read as empty / `None`.
/// Facts (`uname`, taints, TTM versions, `rc`) are trimmed.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub console: String,
    pub dmesg: String,
    pub qemu_log: String,
    /// Stages the guest reached, in order (see `guest_init::STAGES`).
    pub stages: Vec<String>,
    /// Reason /init gave up, if it did.
    pub fail: Option<String>,
    pub card0_missing: bool,
    pub rc: Option<String>,
    pub uname: String,
    pub tainted_start: String,
    pub tainted_end: String,
    pub ttm_srcversion: String,
    pub ttm_version: String,
    pub stdout: String,
    pub stderr: String,
}

impl Evidence {
    /// Reads `<run>/console.log`, `<run>/qemu.log` and the `ctl/` files.
    pub fn collect(run_dir: &Path, ctl: &Path, console_log: &Path) -> Self {
        let text = |name: &str| read_lossy(&ctl.join(name));
        let fact = |name: &str| text(name).map(|s| s.trim().to_owned()).unwrap_or_default();
        Self {
            console: read_lossy(console_log).unwrap_or_default(),
            dmesg: text("dmesg").unwrap_or_default(),
            qemu_log: read_lossy(&run_dir.join("qemu.log")).unwrap_or_default(),
            stages: text("stages")
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect(),
            fail: text("fail").map(|s| s.trim().to_owned()),
            card0_missing: ctl.join("card0-missing").exists(),
            rc: text("rc").map(|s| s.trim().to_owned()),
            uname: fact("uname"),
            tainted_start: fact("tainted_start"),
            tainted_end: fact("tainted_end"),
            ttm_srcversion: fact("ttm_srcversion"),
            ttm_version: fact("ttm_version"),
            stdout: text("stdout").unwrap_or_default(),
            stderr: text("stderr").unwrap_or_default(),
        }
    }
}

fn read_lossy(path: &Path) -> Option<String> {
    fs::read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}
