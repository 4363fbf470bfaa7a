//! Building blocks of the lab tests (xtask/tests/lab_*.rs): the ttmlat binary they run in the
//! guest, guest-shell snippets to start and stop a recorder, and reading what the guest wrote.

use std::{fs, path::PathBuf, sync::OnceLock, time::Duration};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::{
    lab::{self, LabRun, LabSpec, TtmVariant},
    lab_dirs::repo_root,
};

/// A private copy of target/release/ttmlat for this test process: the guest execs it over 9p,
/// and a concurrent `cargo build` replacing the file under a running guest would crash the
/// dynamic loader there (seen once: a segfault in ld-linux during a parallel rebuild).
pub fn ttmlat_binary() -> Result<PathBuf> {
    static COPY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    COPY.get_or_init(|| {
        let built = repo_root().join("target/release/ttmlat");
        if !built.is_file() {
            return Err(format!(
                "{} is missing: run `cargo build --release -p probe-user` first",
                built.display()
            ));
        }
        let dir = repo_root().join("target/lab/bin");
        fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let copy = dir.join(format!("ttmlat-{}", std::process::id()));
        fs::copy(&built, &copy).map_err(|e| format!("copying {}: {e}", built.display()))?;
        Ok(copy)
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// How long (tenths of a second) guest scripts wait for ttmlat to attach: on 5.10 under TCG it
/// takes about a minute (of which ~50 s are system time before the first probe: measured, not
/// yet explained), elsewhere seconds.
pub const ATTACH_WAIT_TENTHS: u32 = 3000;

/// Guest shell: start `ttmlat record -o $LAB_OUT/<name>.json <extra>` in the background as
/// `$<VAR>` (VAR = name in upper case) and wait until its probes are attached.
pub fn record_start(name: &str, extra: &str) -> String {
    let var = name.to_ascii_uppercase();
    format!(
        r#"$TTMLAT record -o $LAB_OUT/{name}.json --ready-file /tmp/{name}.ready {extra} > $LAB_OUT/{name}.txt 2>&1 &
{var}=$!
for i in $(seq 1 {ATTACH_WAIT_TENTHS}); do [ -f /tmp/{name}.ready ] && break; kill -0 ${var} 2>/dev/null || break; sleep 0.1; done
[ -f /tmp/{name}.ready ] || {{ echo "ttmlat ({name}) did not attach"; cat $LAB_OUT/{name}.txt; exit 3; }}
"#
    )
}

/// Guest shell: stop the recorder started by [`record_start`] with `signal` and require a
/// successful exit.
pub fn record_stop(name: &str, signal: &str) -> String {
    let var = name.to_ascii_uppercase();
    format!(
        r#"kill -{signal} ${var}; wait ${var} || {{ echo "ttmlat ({name}) failed"; cat $LAB_OUT/{name}.txt; exit 4; }}
"#
    )
}

/// Runs `body` (bash, `set -eu`) in a guest with `$TTMLAT` set; fails unless it exits 0.
pub fn run_script(kernel: &str, ttm: TtmVariant, body: &str) -> Result<LabRun> {
    run_guest(kernel, ttm, &format!("set -eu\n{body}"))
}

/// Runs `script` as given in a guest with `$TTMLAT` set; fails unless it exits 0.
pub fn run_guest(kernel: &str, ttm: TtmVariant, script: &str) -> Result<LabRun> {
    run_guest_for(kernel, ttm, script, Duration::from_secs(600))
}

/// [`run_guest`] with another guest timeout.
pub fn run_guest_for(
    kernel: &str,
    ttm: TtmVariant,
    script: &str,
    timeout: Duration,
) -> Result<LabRun> {
    let spec = LabSpec::new(kernel, script)
        .ttm(ttm)
        .env("TTMLAT", ttmlat_binary()?.display().to_string())
        .timeout(timeout);
    let run = lab::run(&spec)?;
    ensure!(
        run.rc == 0,
        "guest script failed with rc {} (run dir {}):\n{}\n{}",
        run.rc,
        run.run_dir.display(),
        run.stdout,
        run.stderr
    );
    Ok(run)
}

/// A JSON file the guest wrote to $LAB_OUT.
pub fn read_json(run: &LabRun, name: &str) -> Result<Value> {
    let path = run.out_dir.join(name);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(text.trim()).with_context(|| format!("parsing {}", path.display()))
}

/// A recording's count map (path → n), zeros dropped. The map must be there and hold only
/// counts (see [`num`]): two missing maps must not compare equal as empty.
pub fn count_map(v: &Value) -> std::collections::BTreeMap<String, u64> {
    v.as_object()
        .unwrap_or_else(|| panic!("expected a count map in the output, found {v}"))
        .iter()
        .map(|(k, v)| (k.clone(), num(v)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A count ttmlat (or a workload) must have written. Fails the test, by panicking, when `v`
/// is missing or not an unsigned integer: a renamed or dropped field cannot read as 0 and
/// make a "nothing lost" or "state returned to zero" check pass.
pub fn num(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("expected a count in the output, found {v}"))
}

/// `map[key]` of a map that leaves out zero entries (counts by path, processes): the map
/// itself must be there; a key it lacks is 0.
pub fn entry(map: &Value, key: &str) -> u64 {
    entry_field(map, key, None)
}

/// `map[key][field]`, 0 when the map lacks `key` (a process with no episodes); the map and,
/// for a present key, the field must be there.
pub fn entry_field(map: &Value, key: &str, field: Option<&str>) -> u64 {
    let obj = map
        .as_object()
        .unwrap_or_else(|| panic!("expected a map in the output, found {map}"));
    match (obj.get(key), field) {
        (None, _) => 0,
        (Some(v), None) => num(v),
        (Some(v), Some(f)) => num(&v[f]),
    }
}

/// Every loss channel a recording's `probe_stats` must carry (ttmlat's `ProbeStats`), and
/// `undecodable_records`. A missing, renamed or non-numeric field fails, as does any loss:
/// ring buffer, return probes, kprobes (`nmissed`), programs the kernel skipped
/// (`recursion_misses`), full maps, orphan returns, failed reads.
pub const LOSS_FIELDS: [&str; 9] = [
    "ringbuf_drops",
    "retprobe_misses",
    "kprobe_misses",
    "recursion_misses",
    "thread_map_full",
    "watch_map_full",
    "waiter_map_full",
    "orphan_returns",
    "read_faults",
];

/// Whether the kernel `release` (`uname -r`) offers no count for loss channel `k`, so that the
/// recording rightly says "unknown" (null): `recursion_misses` is in fdinfo from 5.12.
pub fn unknown_on(k: &str, release: &str) -> bool {
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (v.next().flatten(), v.next().flatten()) {
        (Some(major), Some(minor)) => k == "recursion_misses" && (major, minor) < (5, 12),
        _ => false,
    }
}

/// Fails unless the recording says, for every loss channel, that nothing was lost (or, for a
/// channel the kernel does not offer, that it is unknown: [`unknown_on`]).
pub fn assert_nothing_lost(name: &str, rec: &Value) -> anyhow::Result<()> {
    let stats = rec["probe_stats"]
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("{name}: recording has no probe_stats object"))?;
    let release = rec["meta"]["kernel_release"].as_str().unwrap_or("");
    for k in LOSS_FIELDS {
        match stats.get(k) {
            Some(v) if v.as_u64() == Some(0) => {}
            Some(v) if v.is_null() && unknown_on(k, release) => {}
            Some(v) if v.as_u64().is_some() => anyhow::bail!(
                "{name}: lost: {k} = {v} (programs the kernel skipped: {})",
                rec["skipped_programs"]
            ),
            _ => anyhow::bail!("{name}: probe_stats.{k} is missing or not a count: {stats:?}"),
        }
    }
    for k in stats.keys() {
        anyhow::ensure!(
            LOSS_FIELDS.contains(&k.as_str()),
            "{name}: probe_stats.{k} is a loss channel this test does not know"
        );
    }
    match rec["undecodable_records"].as_u64() {
        Some(0) => Ok(()),
        other => anyhow::bail!("{name}: undecodable_records = {other:?}"),
    }
}

/// The kernels every lab test of current-kernel behaviour runs on, through
/// [`on_current_kernels!`](crate::on_current_kernels): Debian's 6.12 (bookworm-backports), its
/// PREEMPT_RT build (trixie) and the newest (sid, on qxl): the lab kernels marked `current`.
/// 6.1 has its own tests (and the blocking variant); 5.10, the oldest, a smaller set.
pub const CURRENT_KERNELS: [&str; 3] = ["6.12", "6.12-rt", "newest"];

/// `on_current_kernels!(name => f)`: a module `name` with one ignored lab test per kernel of
/// [`CURRENT_KERNELS`] (`name::on_6_12`, `name::on_6_12_rt`, `name::on_newest`), each calling
/// `f(alias) -> anyhow::Result<()>` of the enclosing module.
#[macro_export]
macro_rules! on_current_kernels {
    ($(#[$attr:meta])* $name:ident => $f:ident) => {
        $(#[$attr])*
        mod $name {
            #[test]
            #[ignore = "boots QEMU; needs root, ./scripts/setup.sh and a release build"]
            fn on_6_12() -> anyhow::Result<()> {
                super::$f("6.12")
            }

            #[test]
            #[ignore = "boots QEMU; needs root, ./scripts/setup.sh and a release build"]
            fn on_6_12_rt() -> anyhow::Result<()> {
                super::$f("6.12-rt")
            }

            #[test]
            #[ignore = "boots QEMU; needs root, ./scripts/setup.sh and a release build"]
            fn on_newest() -> anyhow::Result<()> {
                super::$f("newest")
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::CURRENT_KERNELS;
    use crate::prepare::kernel_packages::LAB_KERNELS;

    #[test]
    fn counts_that_are_missing_fail_and_maps_may_omit_zeros() {
        use super::{count_map, entry, entry_field, num};
        let v = serde_json::json!({"n": 3, "paths": {"retry": 2, "quiet": 0},
                                   "procs": {"7": {"episodes": 5}}});
        assert_eq!(num(&v["n"]), 3);
        assert_eq!(entry(&v["paths"], "retry"), 2);
        assert_eq!(entry(&v["paths"], "held-wait"), 0);
        assert_eq!(entry_field(&v["procs"], "7", Some("episodes")), 5);
        assert_eq!(entry_field(&v["procs"], "8", Some("episodes")), 0);
        assert_eq!(count_map(&v["paths"]).len(), 1);
        for bad in [
            std::panic::catch_unwind(|| num(&v["renamed"])),
            std::panic::catch_unwind(|| num(&serde_json::json!(-1))),
            std::panic::catch_unwind(|| entry(&v["no_such_map"], "retry")),
            std::panic::catch_unwind(|| entry_field(&v["procs"], "7", Some("episode"))),
            std::panic::catch_unwind(|| count_map(&v["no_such_map"]).len() as u64),
        ] {
            assert!(bad.is_err());
        }
    }

    #[test]
    fn only_recursion_misses_before_5_12_may_be_unknown() {
        use super::unknown_on;
        assert!(unknown_on("recursion_misses", "5.10.0-32-amd64"));
        assert!(!unknown_on("recursion_misses", "5.12.0-1-amd64"));
        assert!(!unknown_on("recursion_misses", "6.1.0-57-amd64"));
        assert!(!unknown_on("kprobe_misses", "5.10.0-32-amd64"));
        assert!(!unknown_on("recursion_misses", ""));
    }

    #[test]
    fn current_kernels_are_the_lab_kernels_marked_current() {
        let current: Vec<&str> = LAB_KERNELS
            .iter()
            .filter(|k| k.current)
            .map(|k| k.alias)
            .collect();
        assert_eq!(current, CURRENT_KERNELS);
    }
}
