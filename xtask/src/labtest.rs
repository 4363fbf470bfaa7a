//! Building blocks of the lab tests (xtask/tests/lab_*.rs): the ttmlat binary they run in the
//! guest, guest-shell snippets to start and stop a recorder, and reading what the guest wrote.

use std::{fs, path::PathBuf, sync::OnceLock, time::Duration};

use anyhow::{Context, Result, ensure};
use serde_json::Value;

pub use probe_user::{
    aggregate::Metric,
    attribution::{AttemptPath, EpisodePath},
    loss::{CHANNELS, Counter, ProbeStats},
    recording::{ProcessEntry, Recording},
    serve::metrics::family,
    workload::{stress::StressReport, throughput::ThroughputReport, touch::TouchReport},
};

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

/// Port `ttmlat serve` listens on in the Prometheus lab tests (its default).
pub const SERVE_PORT: u16 = 10471;
/// Port of the guest's Prometheus.
pub const PROM_PORT: u16 = 9090;

/// Guest shell: start Debian's Prometheus (`$PROM`, API at `$API`, `q QUERY`) scraping
/// 127.0.0.1:`target` every second with `--enable-feature=feature`, and wait until it has
/// scraped it once.
pub fn prometheus_start(target: u16, port: u16, feature: &str) -> String {
    prometheus_start_with(target, port, feature, "")
}

/// [`prometheus_start`] with more of the scrape job's configuration (`scheme`,
/// `tls_config`, `basic_auth`: YAML lines indented for the job).
pub fn prometheus_start_with(target: u16, port: u16, feature: &str, job: &str) -> String {
    format!(
        r#"command -v prometheus >/dev/null || {{ echo "prometheus is not installed on the host (apt-get install prometheus)"; exit 2; }}
mkdir -p /tmp/prom
cat > /tmp/prom/prometheus.yml <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ttmlat
{job}    static_configs:
      - targets: ['127.0.0.1:{target}']
EOF
prometheus --config.file=/tmp/prom/prometheus.yml --storage.tsdb.path=/tmp/prom/data \
    --web.listen-address=127.0.0.1:{port} --enable-feature={feature} \
    > $LAB_OUT/prometheus.log 2>&1 &
PROM=$!
API=http://127.0.0.1:{port}/api/v1
q() {{ curl -fsS -G "$API/query" --data-urlencode "query=$1"; }}
for i in $(seq 1 300); do
    q 'up{{job="ttmlat"}} == 1' 2>/dev/null | grep -q '"value"' && break
    kill -0 $PROM 2>/dev/null || {{ echo "prometheus died"; cat $LAB_OUT/prometheus.log; exit 6; }}
    sleep 0.5
done
q 'up{{job="ttmlat"}} == 1' | grep -q '"value"' || {{ echo "prometheus never scraped ttmlat"; cat $LAB_OUT/prometheus.log; exit 6; }}
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

/// A JSON file the guest wrote to $LAB_OUT that is not ttmlat's (Prometheus' API answers):
/// ttmlat's own go through [`read_recording`] and [`read_report`].
pub fn read_json(run: &LabRun, name: &str) -> Result<Value> {
    let path = run.out_dir.join(name);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(text.trim()).with_context(|| format!("parsing {}", path.display()))
}

/// A recording the guest wrote to $LAB_OUT, read and validated by the binary's own parser
/// ([`Recording::read`]): a field the binary renamed or left out fails here.
pub fn read_recording(run: &LabRun, name: &str) -> Result<Recording> {
    Recording::read(&run.out_dir.join(name))
}

/// A report a ttmlat command wrote to $LAB_OUT (`stress --json`, `workload touch --json`,
/// …), parsed into the type the binary serialised it from.
pub fn read_report<T: serde::de::DeserializeOwned>(run: &LabRun, name: &str) -> Result<T> {
    let path = run.out_dir.join(name);
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(text.trim()).with_context(|| format!("parsing {}", path.display()))
}

/// One process's entry of a recording.
pub fn process(rec: &Recording, pid: u32) -> Result<&ProcessEntry> {
    rec.processes.get(&pid).with_context(|| {
        format!(
            "the recording has no process {pid} (it has {:?})",
            rec.processes.keys().collect::<Vec<_>>()
        )
    })
}

/// A process's attempts by `path` (its map leaves out paths it did not take).
pub fn attempts_of(p: &ProcessEntry, path: AttemptPath) -> u64 {
    p.attempt_paths.get(path.name()).copied().unwrap_or(0)
}

/// A process's episodes by `path`.
pub fn episodes_of(p: &ProcessEntry, path: EpisodePath) -> u64 {
    p.episode_paths.get(path.name()).copied().unwrap_or(0)
}

/// A count map (path → n) without its zeros: two recordings' maps compare equal when they
/// say the same.
pub fn nonzero(
    m: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    m.iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k.clone(), *n))
        .collect()
}

/// Whether the kernel `release` (`uname -r`) offers no count for loss channel `counter`, so
/// that the recording rightly says "unknown": `recursion_misses` is in fdinfo from 5.12.
pub fn unknown_on(counter: Counter, release: &str) -> bool {
    let mut v = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (v.next().flatten(), v.next().flatten()) {
        (Some(major), Some(minor)) => counter == Counter::Programs && (major, minor) < (5, 12),
        _ => false,
    }
}

/// Fails unless the recording says, for every loss channel of the binary's table
/// ([`ProbeStats::channels`]: ring buffer, return probes, kprobes, programs the kernel
/// skipped, full maps, orphan returns, failed reads), that nothing was lost, or, for a
/// channel the kernel does not offer ([`unknown_on`]), that it is unknown; and that every
/// record decoded.
pub fn assert_nothing_lost(name: &str, rec: &Recording) -> Result<()> {
    let release = &rec.meta.kernel_release;
    for (c, row) in rec.probe_stats.channels().iter().zip(CHANNELS) {
        match c.value {
            Some(0) => {}
            None if unknown_on(row.counter, release) => {}
            None => anyhow::bail!(
                "{name}: probe_stats.{} is unknown on {release}, which reports it",
                c.field
            ),
            Some(n) => anyhow::bail!(
                "{name}: lost: {} = {n} (programs the kernel skipped: {:?})",
                c.field,
                rec.skipped_programs
            ),
        }
    }
    ensure!(
        rec.undecodable_records == 0,
        "{name}: undecodable_records = {}",
        rec.undecodable_records
    );
    ensure!(
        rec.read_errors.is_empty(),
        "{name}: reads of the probes' maps failed: {:?}",
        rec.read_errors
    );
    Ok(())
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

/// The samples of metric `name` in a text exposition: (value of label `label`, or "" without
/// it; sample value). Label values are
/// unescaped (`\\`, `\"`, `\n`), so a hostile comm cannot shift labels. prometheus-parse 0.2,
/// the crate for this, silently drops samples whose label values hold escaped quotes. A line of
/// `name` that does not parse is an error, never skipped.
pub fn series(text: &str, name: &str, label: &str) -> Result<Vec<(String, f64)>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue; // another metric sharing the prefix
        }
        let parsed =
            sample(rest, label).with_context(|| format!("unparsable sample line {line:?}"))?;
        out.push(parsed);
    }
    Ok(out)
}

/// `{k="v",...} value` or ` value` → (the value of label `label`, value).
fn sample(rest: &str, label: &str) -> Option<(String, f64)> {
    let mut path = String::new();
    let mut chars = rest.char_indices().peekable();
    if rest.starts_with('{') {
        chars.next();
        loop {
            let (i, c) = chars.next()?;
            if c == '}' {
                let value = rest[i + 1..].trim().parse().ok()?;
                return Some((path, value));
            }
            if c == ',' {
                continue;
            }
            let key_end = chars.by_ref().find(|&(_, c)| c == '=')?.0;
            let key = &rest[i..key_end];
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
            if key == label {
                path = value;
            }
        }
    }
    Some((path, rest.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::CURRENT_KERNELS;
    use crate::prepare::kernel_packages::LAB_KERNELS;

    #[test]
    fn only_recursion_misses_before_5_12_may_be_unknown() {
        use super::{Counter, unknown_on};
        assert!(unknown_on(Counter::Programs, "5.10.0-32-amd64"));
        assert!(!unknown_on(Counter::Programs, "5.12.0-1-amd64"));
        assert!(!unknown_on(Counter::Programs, "6.1.0-57-amd64"));
        assert!(!unknown_on(Counter::Kprobes, "5.10.0-32-amd64"));
        assert!(!unknown_on(Counter::Programs, ""));
    }

    /// Every channel of the binary's table is checked: a loss on any of them, an unknown
    /// value where the kernel reports it, an undecodable record or a failed read fails.
    #[test]
    fn any_loss_on_any_channel_fails_nothing_lost() {
        use super::{CHANNELS, ProbeStats, Recording, assert_nothing_lost};
        let mut rec: Recording = probe_user::recording::Recording::from_aggregate(
            probe_user::recording::Meta {
                kernel_release: "6.12.48+deb13-amd64".into(),
                ..Default::default()
            },
            &probe_user::aggregate::Aggregate::new(),
            ProbeStats::zero(),
            0,
            Default::default(),
        )
        .expect("an empty recording");
        assert!(assert_nothing_lost("t", &rec).is_ok());
        for i in 0..CHANNELS.len() {
            let mut v = [Some(0); CHANNELS.len()];
            v[i] = Some(1);
            rec.probe_stats = ProbeStats::from_values(v);
            assert!(
                assert_nothing_lost("t", &rec).is_err(),
                "{}",
                CHANNELS[i].field
            );
            // Unknown (not read, or not in the file) on a kernel that reports it.
            v[i] = None;
            rec.probe_stats = ProbeStats::from_values(v);
            assert!(
                assert_nothing_lost("t", &rec).is_err(),
                "{}",
                CHANNELS[i].field
            );
        }
        rec.probe_stats = ProbeStats::zero();
        rec.undecodable_records = 1;
        assert!(assert_nothing_lost("t", &rec).is_err());
        rec.undecodable_records = 0;
        rec.read_errors.push("STATS: EPERM".into());
        assert!(assert_nothing_lost("t", &rec).is_err());
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
