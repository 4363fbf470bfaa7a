//! OpenMetrics exemplars of `ttmlat serve` as a real Prometheus stores them: Debian's
//! Prometheus with `--enable-feature=exemplar-storage` (so it scrapes the OpenMetrics text)
//! scrapes `serve` during contended stress on the blocking 6.1 variant, and
//! `/api/v1/query_exemplars` must return, for the held-wait, collateral-stall and episode
//! latency histograms, exemplars whose `episode` is an episode of the same run's timeline
//! (`serve --timeline`), of that `pid`, `comm` and `holder`, with the value the timeline has
//! for it, stamped within the run. The faulting threads are named with quotes, a backslash,
//! braces and a newline ([`HOSTILE_COMM`]): Prometheus' own OpenMetrics parser must accept
//! the scrape and give the name back whole. The recording `serve --output` writes must name
//! its slowest episodes with the same ids.
//!
//!     cargo build --release -p probe-user
//!     cargo test -p xtask --test lab_exemplars -- --ignored

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use probe_user::timeline::trace::TraceFile;
use serde_json::Value;
use xtask::{
    lab::TtmVariant,
    lab_timeline::{episodes, slowest_are_on_the_timeline},
    labtest::{self, family, read_recording, read_report},
};

use labtest::{PROM_PORT, SERVE_PORT as PORT};

/// The faulting threads' comm prefix (each adds its number): what printf makes of
/// [`HOSTILE_PRINTF`].
const HOSTILE_COMM: &str = "q\"\\{\n},=";
const HOSTILE_PRINTF: &str = r#"q"\\{\n},="#;

fn script() -> String {
    format!(
        r#"set -eu
COMM=$(printf '{HOSTILE_PRINTF}')
ip link set lo up 2>/dev/null || busybox ip link set lo up
$TTMLAT serve --listen 127.0.0.1:{PORT} --timeline $LAB_OUT/timeline.json --output $LAB_OUT/rec.json --ready-file /tmp/serve.ready > $LAB_OUT/serve.txt 2>&1 &
SERVE=$!
for i in $(seq 1 {wait}); do [ -f /tmp/serve.ready ] && break; kill -0 $SERVE 2>/dev/null || break; sleep 0.1; done
[ -f /tmp/serve.ready ] || {{ echo "ttmlat serve did not attach"; cat $LAB_OUT/serve.txt; exit 3; }}
{prom}T0=$(date +%s)
$TTMLAT stress --scenario cross-process --threads 4 --size 16M --rounds 10 --fault-comm "$COMM" --json > $LAB_OUT/stress.json
# Two more scrapes after the last fault.
sleep 4
T1=$(date +%s)
echo "$T0 $T1" > $LAB_OUT/window
for m in {held} {collateral} {duration}; do
    curl -fsS -G "$API/query_exemplars" --data-urlencode "query=${{m}}_bucket" \
        --data-urlencode "start=$T0" --data-urlencode "end=$T1" > $LAB_OUT/ex_$m.json
done
curl -fsS -H 'Accept: application/openmetrics-text;version=1.0.0' http://127.0.0.1:{PORT}/metrics > $LAB_OUT/scrape.om
kill -INT $SERVE; wait $SERVE || {{ echo "ttmlat serve failed"; cat $LAB_OUT/serve.txt; exit 7; }}
kill $PROM; wait $PROM || true
"#,
        wait = labtest::ATTACH_WAIT_TENTHS,
        prom = labtest::prometheus_start(PORT, PROM_PORT, "exemplar-storage"),
        held = family::WAIT_HELD,
        collateral = family::COLLATERAL_STALL,
        duration = family::EPISODE_DURATION,
    )
}

#[test]
#[ignore = "boots QEMU; needs root, ./scripts/setup.sh and a release build"]
fn prometheus_stores_exemplars_that_name_timeline_episodes_6_1_blocking() -> Result<()> {
    let run = labtest::run_guest_for(
        "6.1",
        TtmVariant::Blocking,
        &script(),
        Duration::from_secs(900),
    )?;
    let timeline: TraceFile = read_report(&run, "timeline.json")?;
    let drawn = episodes(&timeline)?;
    let rec = read_recording(&run, "rec.json")?;
    labtest::assert_nothing_lost("ttmlat serve", &rec)?;
    slowest_are_on_the_timeline(&rec, &drawn)?;
    let window = std::fs::read_to_string(run.out_dir.join("window"))?;
    let (t0, t1) = window
        .split_once(' ')
        .and_then(|(a, b)| Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)))
        .with_context(|| format!("the run's window: {window:?}"))?;
    let scrape = std::fs::read_to_string(run.out_dir.join("scrape.om"))?;
    ensure!(
        scrape.contains(" # {pid=\"") && scrape.trim_end().ends_with("# EOF"),
        "serve's OpenMetrics scrape has no exemplars:\n{scrape}"
    );
    let escaped = format!("comm=\"{}", om_escape(HOSTILE_COMM));
    ensure!(
        scrape.contains(&escaped),
        "serve's scrape does not carry the faulting threads' comm escaped once ({escaped}):\n{scrape}"
    );
    let mut hostile = 0;
    for family in [
        family::WAIT_HELD,
        family::COLLATERAL_STALL,
        family::EPISODE_DURATION,
    ] {
        let v: Value = read_report(&run, &format!("ex_{family}.json"))?;
        ensure!(v["status"] == "success", "{family}: {v}");
        let series = v["data"].as_array().context("data")?;
        let mut seen = 0;
        for s in series {
            for x in s["exemplars"].as_array().context("exemplars")? {
                let l = &x["labels"];
                let label = |k: &str| l[k].as_str().map(str::to_string);
                let (Some(pid), Some(comm), Some(holder), Some(episode)) = (
                    label("pid"),
                    label("comm"),
                    label("holder"),
                    label("episode"),
                ) else {
                    anyhow::bail!("{family}: an exemplar without pid/comm/holder/episode: {x}");
                };
                let value: f64 = x["value"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .context("exemplar value")?;
                let at = x["timestamp"].as_f64().context("exemplar timestamp")?;
                let id: u64 = episode.parse().context("episode id")?;
                let d = drawn
                    .get(&id)
                    .with_context(|| format!("{family}: episode {id} is not on the timeline"))?;
                // Debian's Prometheus (2.42) stores an exemplar's label values as the text
                // has them, escapes included (it unescapes only series labels): either form
                // names the thread.
                let stored_as_written = om_escape(&d.comm) == comm;
                ensure!(
                    d.pid.to_string() == pid && (d.comm == comm || stored_as_written),
                    "{family}: episode {id} is {}[{}] on the timeline, {comm:?} pid {pid} in the exemplar",
                    d.comm,
                    d.pid
                );
                // "?": no holder was read.
                ensure!(
                    d.holder.as_deref() == Some(holder.as_str())
                        || (holder == "?" && d.holder.is_none()),
                    "{family}: episode {id}: holder {:?} on the timeline, {holder:?} in the exemplar",
                    d.holder
                );
                let want = d
                    .values_s
                    .get(family)
                    .copied()
                    .with_context(|| format!("{family}: episode {id} has no such value"))?;
                ensure!(
                    (value - want).abs() <= 1e-9 + want * 1e-9,
                    "{family}: episode {id}: exemplar {value} s, timeline {want} s"
                );
                // When the episode ended: inside the stress run (the date is read in whole
                // seconds on either side).
                ensure!(
                    t0 - 1.0 <= at && at <= t1 + 1.0,
                    "{family}: episode {id} stamped {at}, outside the run [{t0}, {t1}]"
                );
                if d.comm.starts_with(HOSTILE_COMM) {
                    hostile += 1;
                }
                seen += 1;
            }
        }
        eprintln!(
            "{family}: {seen} exemplars over {} series, all episodes of the timeline",
            series.len()
        );
        ensure!(seen > 0, "{family}: Prometheus stored no exemplar");
    }
    ensure!(
        hostile > 0,
        "no exemplar carried the faulting threads' comm {HOSTILE_COMM:?} whole"
    );
    Ok(())
}

/// OpenMetrics' escaping of a label value.
fn om_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Host test: the guest script parses (a typo would otherwise show only in the lab).
#[test]
fn the_guest_script_is_valid_bash() {
    if let Err(e) = xtask::lab::shell_quote::bash_syntax(&script()) {
        panic!("{e}\n{}", script());
    }
}
