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

/// Guest shell: start `ttmlat record -o $LAB_OUT/<name>.json <extra>` in the background as
/// `$<VAR>` (VAR = name in upper case) and wait until its probes are attached.
pub fn record_start(name: &str, extra: &str) -> String {
    let var = name.to_ascii_uppercase();
    format!(
        r#"$TTMLAT record -o $LAB_OUT/{name}.json --ready-file /tmp/{name}.ready {extra} > $LAB_OUT/{name}.txt 2>&1 &
{var}=$!
for i in $(seq 1 600); do [ -f /tmp/{name}.ready ] && break; kill -0 ${var} 2>/dev/null || break; sleep 0.1; done
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

/// A recording's count map (path → n), zeros dropped.
pub fn count_map(v: &Value) -> std::collections::BTreeMap<String, u64> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .filter(|(_, n)| *n > 0)
                .collect()
        })
        .unwrap_or_default()
}

/// A JSON number as u64 (0 when absent).
pub fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
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

/// Fails unless the recording says, for every loss channel, that nothing was lost.
pub fn assert_nothing_lost(name: &str, rec: &Value) -> anyhow::Result<()> {
    let stats = rec["probe_stats"]
        .as_object()
        .ok_or_else(|| anyhow::anyhow!("{name}: recording has no probe_stats object"))?;
    for k in LOSS_FIELDS {
        match stats.get(k).and_then(Value::as_u64) {
            Some(0) => {}
            Some(n) => anyhow::bail!("{name}: lost: {k} = {n}"),
            None => anyhow::bail!("{name}: probe_stats.{k} is missing or not a count: {stats:?}"),
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
