//! OpenMetrics exemplars of `ttmlat serve` as a real Prometheus stores them: Debian's
//! Prometheus with `--enable-feature=exemplar-storage` (so it scrapes the OpenMetrics text)
//! scrapes `serve` during contended stress on the blocking 6.1 variant, and
//! `/api/v1/query_exemplars` must return, for the held-wait, collateral-stall and episode
//! latency histograms, exemplars whose `episode` is an episode of the same run's timeline
//! (`serve --timeline`), of that `pid` and `comm`, with the value the timeline has for it.
//!
//!     cargo build --release -p probe-user
//!     cargo test -p xtask --test lab_exemplars -- --ignored

use std::{collections::HashMap, time::Duration};

use anyhow::{Context, Result, ensure};
use probe_user::timeline::trace::{TraceFile, cat};
use serde_json::Value;
use xtask::{
    lab::TtmVariant,
    labtest::{self, family, read_report},
};

use labtest::{PROM_PORT, SERVE_PORT as PORT};

fn script() -> String {
    format!(
        r#"set -eu
ip link set lo up 2>/dev/null || busybox ip link set lo up
$TTMLAT serve --listen 127.0.0.1:{PORT} --timeline $LAB_OUT/timeline.json --ready-file /tmp/serve.ready > $LAB_OUT/serve.txt 2>&1 &
SERVE=$!
for i in $(seq 1 {wait}); do [ -f /tmp/serve.ready ] && break; kill -0 $SERVE 2>/dev/null || break; sleep 0.1; done
[ -f /tmp/serve.ready ] || {{ echo "ttmlat serve did not attach"; cat $LAB_OUT/serve.txt; exit 3; }}
{prom}T0=$(date +%s)
$TTMLAT stress --scenario cross-process --threads 4 --size 16M --rounds 10 --json > $LAB_OUT/stress.json
# Two more scrapes after the last fault.
sleep 4
T1=$(date +%s)
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

/// What the timeline says of one episode: pid, comm, and its values by exemplar family.
struct Drawn {
    pid: u32,
    comm: String,
    values_s: HashMap<&'static str, f64>,
}

fn episodes(f: &TraceFile) -> Result<HashMap<u64, Drawn>> {
    let names: HashMap<(u32, u32), String> = f
        .trace_events
        .iter()
        .filter(|e| e.ph == "M" && e.name == "thread_name")
        .filter_map(|e| Some(((e.pid, e.tid), e.args.get("name")?.as_str()?.to_string())))
        .collect();
    let arg = |e: &probe_user::timeline::trace::TraceEvent, k: &str| {
        e.args.get(k).and_then(Value::as_u64).unwrap_or(0)
    };
    let mut out: HashMap<u64, Drawn> = HashMap::new();
    for e in f.trace_events.iter().filter(|e| e.ph == "X") {
        let id = arg(e, "episode");
        if e.cat == cat::EPISODE {
            let name = names.get(&(e.pid, e.tid)).context("an unnamed track")?;
            let comm = name.rsplit_once('[').map_or(name.as_str(), |(c, _)| c);
            let d = out.entry(id).or_insert_with(|| Drawn {
                pid: e.pid,
                comm: comm.to_string(),
                values_s: HashMap::new(),
            });
            d.values_s
                .insert(family::EPISODE_DURATION, arg(e, "latency_ns") as f64 / 1e9);
        }
    }
    for e in f
        .trace_events
        .iter()
        .filter(|e| e.ph == "X" && e.cat == cat::ATTEMPT)
    {
        if let Some(d) = out.get_mut(&arg(e, "episode")) {
            for (family, key) in [
                (family::WAIT_HELD, "wait_held_ns"),
                (family::COLLATERAL_STALL, "collateral_ns"),
            ] {
                *d.values_s.entry(family).or_insert(0.0) += arg(e, key) as f64 / 1e9;
            }
        }
    }
    Ok(out)
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
    let scrape = std::fs::read_to_string(run.out_dir.join("scrape.om"))?;
    ensure!(
        scrape.contains(" # {pid=\"") && scrape.trim_end().ends_with("# EOF"),
        "serve's OpenMetrics scrape has no exemplars:\n{scrape}"
    );
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
                let id: u64 = episode.parse().context("episode id")?;
                let d = drawn
                    .get(&id)
                    .with_context(|| format!("{family}: episode {id} is not on the timeline"))?;
                ensure!(
                    d.pid.to_string() == pid && d.comm == comm,
                    "{family}: episode {id} is {}[{}] on the timeline, {comm} pid {pid} in the exemplar",
                    d.comm,
                    d.pid
                );
                let want = d.values_s.get(family).copied().unwrap_or(0.0);
                ensure!(
                    (value - want).abs() <= 1e-9 + want * 1e-9,
                    "{family}: episode {id}: exemplar {value} s, timeline {want} s"
                );
                ensure!(!holder.is_empty(), "{family}: empty holder");
                seen += 1;
            }
        }
        eprintln!(
            "{family}: {seen} exemplars over {} series, all episodes of the timeline",
            series.len()
        );
        ensure!(seen > 0, "{family}: Prometheus stored no exemplar");
    }
    Ok(())
}

/// Host test: the guest script parses (a typo would otherwise show only in the lab).
#[test]
fn the_guest_script_is_valid_bash() {
    if let Err(e) = xtask::lab::shell_quote::bash_syntax(&script()) {
        panic!("{e}\n{}", script());
    }
}
