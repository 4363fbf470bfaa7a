//! `ttmlat serve` against a real Prometheus in the QEMU lab: the real `ttmlat` binary
//! (target/release) serves /metrics while `ttmlat stress` makes contended TTM faults and
//! `ttmlat record` records the same run; Debian's Prometheus (2.42, `/usr/bin/prometheus` of
//! the host root, `--enable-feature=native-histograms`) scrapes it every second, and its
//! HTTP API's p99 must agree with the recording's.
//!
//!     cargo build --release -p probe-user
//!     cargo test -p xtask --test lab_serve -- --ignored
//!
//! Needs Debian's `prometheus` package on the host (prometheus + promtool).

use std::{collections::BTreeMap, fs, time::Duration};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use hdrhistogram::{Histogram, serialization::Deserializer};
use serde_json::Value;
use xtask::{
    lab::{LabRun, TtmVariant},
    lab_web::{self, Transport},
    labtest::{
        self, AttemptPath, Metric, Recording, StressReport, TouchReport, family, nonzero,
        read_recording, read_report,
    },
};

use labtest::{PROM_PORT, SERVE_PORT as PORT};
/// Relative difference allowed between two ttmlat instances timing the same faults in the
/// TCG guest, on top of the native bucket width (see `agrees`).
const INSTANCE_SLACK: f64 = 0.10;
/// Episodes by which the independent recording's rank may differ (see `agrees`).
const RANK_SLACK: f64 = 2.0;

/// The guest script: serve, Prometheus, record + stress, then the API queries.
fn script(transport: Transport) -> String {
    format!(
        r#"set -eu
ip link set lo up 2>/dev/null || busybox ip link set lo up
{web}$TTMLAT serve --listen 127.0.0.1:{PORT} $SERVE_WEB -o $LAB_OUT/serve_rec.json --ready-file /tmp/serve.ready > $LAB_OUT/serve.txt 2>&1 &
SERVE=$!
for i in $(seq 1 600); do [ -f /tmp/serve.ready ] && break; kill -0 $SERVE 2>/dev/null || break; sleep 0.1; done
[ -f /tmp/serve.ready ] || {{ echo "ttmlat serve did not attach"; cat $LAB_OUT/serve.txt; exit 3; }}
$CURL $SCHEME://127.0.0.1:{PORT}/metrics > $LAB_OUT/scrape_idle.txt
promtool check metrics < $LAB_OUT/scrape_idle.txt > $LAB_OUT/promtool_idle.txt 2>&1 || {{ echo "promtool rejects the idle scrape"; cat $LAB_OUT/promtool_idle.txt; exit 5; }}

{prom}# At a fixed evaluation time: queries in a TCG guest take seconds each.
qt() {{ curl -fsS -G "$API/query" --data-urlencode "query=$1" --data-urlencode "time=$TEND"; }}

$TTMLAT record -o $LAB_OUT/rec.json --ready-file /tmp/rec.ready > $LAB_OUT/record.txt 2>&1 &
REC=$!
for i in $(seq 1 600); do [ -f /tmp/rec.ready ] && break; kill -0 $REC 2>/dev/null || break; sleep 0.1; done
[ -f /tmp/rec.ready ] || {{ echo "ttmlat record did not attach"; cat $LAB_OUT/record.txt; exit 3; }}
# A warm-up fault makes ttmlat export every path of the driver (at 0); once Prometheus has
# scraped those, rate() over the stress run sees all of its episodes.
$TTMLAT workload touch --size 64K --json > $LAB_OUT/touch.json
for i in $(seq 1 120); do
    q '{episodes}{{path="retry"}}' | grep -q '"value"' && break
    sleep 0.5
done
sleep 3
T0=$(date +%s)
$TTMLAT stress --scenario cross-process --threads 4 --size 16M --rounds 15 --json > $LAB_OUT/stress.json
kill -INT $REC; wait $REC || {{ echo "ttmlat record failed"; cat $LAB_OUT/record.txt; exit 4; }}
$CURL $SCHEME://127.0.0.1:{PORT}/metrics > $LAB_OUT/scrape_final.txt
promtool check metrics < $LAB_OUT/scrape_final.txt > $LAB_OUT/promtool_final.txt 2>&1 || {{ echo "promtool rejects the live scrape"; cat $LAB_OUT/promtool_final.txt; exit 5; }}
# Until Prometheus has scraped everything ttmlat counted.
WANT=$(awk '/^{duration}_count/ {{ s += $2 }} END {{ print s + 0 }}' $LAB_OUT/scrape_final.txt)
for i in $(seq 1 120); do
    GOT=$(q 'sum(histogram_count({duration}))' | sed -n 's/.*"value":\[[^,]*,"\([0-9.e+]*\)"\].*/\1/p')
    [ "${{GOT:-0}}" = "$WANT" ] && break
    sleep 0.5
done
echo "$WANT" > $LAB_OUT/serve_count.txt
TEND=$(date +%s)
W=$(( TEND - T0 + 2 ))s
q 'histogram_quantile(0.99, sum({duration}))' > $LAB_OUT/q_p99.json
qt "histogram_quantile(0.99, sum(rate({duration}[$W])))" > $LAB_OUT/q_p99_rate.json
q 'histogram_quantile(0.5, sum({duration}))' > $LAB_OUT/q_p50.json
q 'sum(histogram_count({duration}))' > $LAB_OUT/q_count.json
q 'sum({duration})' > $LAB_OUT/q_hist.json
qt "sum(rate({duration}[$W]))" > $LAB_OUT/q_hist_rate.json
echo "$W" > $LAB_OUT/window.txt
q 'sum by (path) (histogram_sum({duration}))' > $LAB_OUT/q_sums.json
q 'sum by (path) ({episodes})' > $LAB_OUT/q_episodes.json
q 'sum({lost})' > $LAB_OUT/q_lost.json
q 'sum by (path) ({attempts})' > $LAB_OUT/q_attempts.json
q 'sum({held})' > $LAB_OUT/q_held.json
q 'sum({retries})' > $LAB_OUT/q_retries.json
q 'sum(histogram_sum({collateral}))' > $LAB_OUT/q_collateral.json
{refusals}kill -INT $SERVE; wait $SERVE || {{ echo "ttmlat serve failed"; cat $LAB_OUT/serve.txt; exit 7; }}
kill $PROM; wait $PROM || true
"#,
        web = transport.setup(),
        refusals = transport.refusals(PORT),
        prom = labtest::prometheus_start_with(
            PORT,
            PROM_PORT,
            "native-histograms",
            &transport.prometheus_job()
        ),
        episodes = family::exposed(family::EPISODES),
        duration = family::EPISODE_DURATION,
        lost = family::exposed(family::LOST),
        attempts = family::exposed(family::ATTEMPTS),
        held = family::exposed(family::HELD_WAITS),
        retries = family::exposed(family::RETRIES),
        collateral = family::COLLATERAL_STALL,
    )
}

/// A Prometheus HTTP API answer the guest saved (Prometheus' schema, not ttmlat's).
fn json(run: &LabRun, name: &str) -> Result<Value> {
    labtest::read_json(run, name)
}

/// `sum by (path)` answer as path → value, zeros dropped (ttmlat exports every path).
fn by_path(v: &Value) -> Result<BTreeMap<String, u64>> {
    ensure!(v["status"] == "success", "query failed: {v}");
    let mut out = BTreeMap::new();
    for r in v["data"]["result"].as_array().context("result")? {
        let path = r["metric"]["path"].as_str().context("path label")?;
        let value: f64 = r["value"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no value in {r}"))?;
        if value > 0.0 {
            out.insert(path.to_string(), value as u64);
        }
    }
    Ok(out)
}

/// The single scalar of an instant-vector query answer, 0 when the vector is empty.
fn scalar_or_zero(v: &Value) -> Result<f64> {
    ensure!(v["status"] == "success", "query failed: {v}");
    if v["data"]["result"].as_array().is_some_and(Vec::is_empty) {
        return Ok(0.0);
    }
    scalar(v)
}

/// The single scalar of an instant-vector query answer.
fn scalar(v: &Value) -> Result<f64> {
    ensure!(v["status"] == "success", "query failed: {v}");
    let r = v["data"]["result"]
        .as_array()
        .and_then(|a| a.first())
        .with_context(|| format!("empty query result: {v}"))?;
    r["value"][1]
        .as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .with_context(|| format!("no value in {r}"))
}

/// An HdrHistogram of a recording, decoded here with the hdrhistogram crate (not ttmlat's
/// decoder): the encoding is the interchange format the README promises.
fn decode(encoded: &str) -> Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded.as_bytes())?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("bad HdrHistogram: {e:?}"))
}

/// The recording's episode latency, merged over paths (ns).
fn merged_episode_latency(rec: &Recording) -> Result<Histogram<u64>> {
    let mut merged: Option<Histogram<u64>> = None;
    for h in &rec.histograms {
        if h.metric != Metric::EpisodeLatency.name() {
            continue;
        }
        let one = decode(&h.encoded)?;
        match &mut merged {
            None => merged = Some(one),
            Some(m) => m
                .add(&one)
                .map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?,
        }
    }
    merged.context("the recording has no episode_latency histogram")
}

/// Native histogram buckets of `sum(metric)` as (lower, upper, count).
fn native_buckets(v: &Value) -> Result<Vec<(f64, f64, f64)>> {
    let r = v["data"]["result"]
        .as_array()
        .and_then(|a| a.first())
        .with_context(|| format!("no histogram in {v}"))?;
    let h = &r["histogram"][1];
    let buckets = h["buckets"]
        .as_array()
        .with_context(|| format!("not a native histogram (was it scraped as classic?): {r}"))?;
    let num = |x: &Value| -> Option<f64> { x.as_str()?.parse().ok() };
    buckets
        .iter()
        .map(|b| {
            (|| Some((num(&b[1])?, num(&b[2])?, num(&b[3])?)))()
                .with_context(|| format!("bad bucket {b}"))
        })
        .collect()
}

fn agrees_stock(kernel: &str) -> Result<()> {
    agrees(kernel, TtmVariant::Stock)
}

/// Stock 6.12: contended faults drop mmap_lock and retry.
#[test]
#[ignore = "boots the QEMU lab; needs target/release/ttmlat and Debian's prometheus"]
fn prometheus_agrees_with_the_recording_6_12() -> Result<()> {
    agrees_stock("6.12")
}

/// Stock 6.12 PREEMPT_RT: many TRIED attempts block holding mmap_lock.
#[test]
#[ignore = "boots the QEMU lab; needs target/release/ttmlat and Debian's prometheus"]
fn prometheus_agrees_with_the_recording_6_12_rt() -> Result<()> {
    agrees_stock("6.12-rt")
}

/// Stock newest (7.2, qxl). Under this test's process churn (a curl per scrape) the kernel
/// once skipped runs of the `sched_process_exit` raw-tracepoint program that then ended a
/// thread's state (recursion_misses 1 in `record`, 3 in `serve`, CI of 2026-12-01): the
/// thread-exit hook is now a kprobe on `exit_files` (after exit_mm, preemption off).
#[test]
#[ignore = "boots the QEMU lab; needs target/release/ttmlat and Debian's prometheus"]
fn prometheus_agrees_with_the_recording_newest() -> Result<()> {
    agrees_stock("newest")
}

/// The blocking ttm.ko on 6.1: held waits and collateral stalls on every contended fault.
#[test]
#[ignore = "boots the QEMU lab; needs target/release/ttmlat and Debian's prometheus"]
fn prometheus_agrees_with_the_recording_6_1_blocking() -> Result<()> {
    agrees("6.1", TtmVariant::Blocking)
}

/// `ttmlat serve` as scraped by Prometheus against `ttmlat record` of the same run: equal
/// counts per path, and p50/p99 in the same native bucket.
fn agrees(kernel: &str, ttm: TtmVariant) -> Result<()> {
    agrees_over(kernel, ttm, Transport::Http)
}

/// Stock 6.12, scraped over HTTPS with basic auth (`--web-config`): the same agreement, and
/// a wrong password, no credentials and a client without the CA are refused and counted.
#[test]
#[ignore = "boots the QEMU lab; needs target/release/ttmlat and Debian's prometheus"]
fn prometheus_agrees_over_https_with_basic_auth_6_12() -> Result<()> {
    agrees_over("6.12", TtmVariant::Stock, Transport::Https)
}

fn agrees_over(kernel: &str, ttm: TtmVariant, transport: Transport) -> Result<()> {
    let run = labtest::run_guest_for(kernel, ttm, &script(transport), Duration::from_secs(900))?;
    if transport == Transport::Https {
        let serving = fs::read_to_string(run.out_dir.join("serve.txt"))?;
        ensure!(
            serving.contains(&format!(
                "serving metrics on https://127.0.0.1:{PORT}/metrics"
            )),
            "serve did not say it serves HTTPS:\n{serving}"
        );
        lab_web::check_refusals(&run, &family::exposed(family::REFUSED))?;
    }
    let rec = read_recording(&run, "rec.json")?;
    let lat_other = merged_episode_latency(&rec)?;
    // serve's own recording: the very measurements it exported.
    let serve_rec = read_recording(&run, "serve_rec.json")?;
    let lat = merged_episode_latency(&serve_rec)?;
    let serve_count: f64 = fs::read_to_string(run.out_dir.join("serve_count.txt"))?
        .trim()
        .parse()
        .context("serve_count.txt")?;
    let prom_count = scalar(&json(&run, "q_count.json")?)?;
    let prom_p99 = scalar(&json(&run, "q_p99.json")?)?;
    let prom_p99_rate = scalar(&json(&run, "q_p99_rate.json")?).ok();
    let prom_p50 = scalar(&json(&run, "q_p50.json")?)?;
    let rec_p99 = lat.value_at_quantile(0.99) as f64 / 1e9;
    let rec_p50 = lat.value_at_quantile(0.5) as f64 / 1e9;
    let other_p99 = lat_other.value_at_quantile(0.99) as f64 / 1e9;
    let other_p50 = lat_other.value_at_quantile(0.5) as f64 / 1e9;
    let buckets = native_buckets(&json(&run, "q_hist.json")?)?;
    eprintln!(
        "episodes: ttmlat record {} (timed: not retry-no-handler), serve's recording {}, serve /metrics {serve_count}, prometheus {prom_count}",
        lat_other.len(),
        lat.len()
    );
    eprintln!(
        "p99: prometheus {prom_p99:.6} s, serve's recording {rec_p99:.6} s, ttmlat record {other_p99:.6} s ({:+.2}%)",
        (prom_p99 / other_p99 - 1.0) * 100.0
    );
    eprintln!(
        "p50: prometheus {prom_p50:.6} s, serve's recording {rec_p50:.6} s, ttmlat record {other_p50:.6} s ({:+.2}%)",
        (prom_p50 / other_p50 - 1.0) * 100.0
    );
    eprintln!("rate-form p99 over the stress run: {prom_p99_rate:?}");
    ensure!(lat.len() > 50, "too few episodes to compare: {}", lat.len());
    ensure!(
        prom_count == serve_count
            && serve_count == lat.len() as f64
            && lat.len() == lat_other.len(),
        "episode counts differ: prometheus {prom_count}, serve {serve_count}, serve's recording {}, ttmlat record {}",
        lat.len(),
        lat_other.len()
    );
    // The recordings first: they name the channel.
    labtest::assert_nothing_lost("ttmlat record", &rec)?;
    labtest::assert_nothing_lost("ttmlat serve", &serve_rec)?;
    ensure!(
        scalar(&json(&run, "q_lost.json")?)? == 0.0,
        "ttmlat serve's /metrics counted lost events: {}",
        json(&run, "q_lost.json")?
    );
    // Counts: exactly the recording's, path by path.
    let c = &rec.counts;
    let prom_episodes = by_path(&json(&run, "q_episodes.json")?)?;
    let prom_attempts = by_path(&json(&run, "q_attempts.json")?)?;
    eprintln!("{kernel} {ttm:?}: episodes by path {prom_episodes:?}, attempts {prom_attempts:?}");
    ensure!(
        prom_episodes == nonzero(&c.episodes),
        "episodes by path: prometheus {prom_episodes:?}, recording {:?}",
        c.episodes
    );
    ensure!(
        prom_attempts == nonzero(&c.attempts),
        "attempts by path: prometheus {prom_attempts:?}, recording {:?}",
        c.attempts
    );
    let held: u64 = [
        AttemptPath::HeldWait,
        AttemptPath::Interrupted,
        AttemptPath::AccessHeldWait,
    ]
    .iter()
    .map(|p| c.attempts.get(p.name()).copied().unwrap_or(0))
    .sum();
    let prom_held = scalar_or_zero(&json(&run, "q_held.json")?)? as u64;
    ensure!(
        prom_held == held,
        "held waits: prometheus {prom_held}, recording {held}"
    );
    let tried = c.tried_attempts;
    let prom_retries = scalar_or_zero(&json(&run, "q_retries.json")?)? as u64;
    ensure!(
        prom_retries == tried,
        "retries: prometheus {prom_retries}, recording's TRIED attempts {tried}"
    );
    // Collateral stall: Prometheus' exact sum vs the recording's HdrHistogram (mean · n).
    let rec_collateral: f64 = serve_rec
        .histograms
        .iter()
        .filter(|h| h.metric == Metric::CollateralStall.name())
        .map(|h| h.mean * h.count as f64 / 1e9)
        .sum();
    let prom_collateral = scalar_or_zero(&json(&run, "q_collateral.json")?)?;
    eprintln!(
        "collateral stall: prometheus {prom_collateral:.6} s, recording {rec_collateral:.6} s"
    );
    ensure!(
        (prom_collateral - rec_collateral).abs() <= 0.002 * rec_collateral.max(1e-9),
        "collateral stall: prometheus {prom_collateral} s, recording {rec_collateral} s"
    );
    // Tolerance: Prometheus picks the native bucket holding the ceil(q·n)-th observation
    // and interpolates inside it; HdrHistogram's value_at_quantile is that same order
    // statistic, to 3 significant digits (reported as its bucket's highest equivalent
    // value, ≤ 0.1% high). Were both fed the same values, both would lie in one bucket
    // (lower, upper]: relative error below upper/lower − 1 = 2^(2^−schema) − 1 (9.05% at
    // schema 3) plus 0.1%. But serve and record are two probe sets timing the same faults:
    // their handlers run one after the other, and a TCG vCPU can be descheduled between
    // them, so one episode's two measurements differ slightly (seen: up to ~1% of a path's
    // sum, 5.7% on the slowest of 75 episodes). Where the distribution has a gap at the
    // quantile, one such episode crossing it moves the order statistic across the gap (CI of
    // 2026-12-02, blocking 6.1: serve's 38th of 76 episodes 1.79 ms, record's 2.52 ms, per-
    // path sums within 1.4%). Hence: serve's own recording must fall in the estimate's bucket
    // (± 0.1%); the independent `ttmlat record` must bracket the estimate within RANK_SLACK
    // episodes either side of the same rank, widened by the bucket width plus INSTANCE_SLACK.
    // Measured instance difference: per path, serve's exact sum vs the recording's.
    let sums = json(&run, "q_sums.json")?;
    let prom_sum = |class: &str| -> Option<f64> {
        sums["data"]["result"]
            .as_array()?
            .iter()
            .find(|r| r["metric"]["path"] == class)?["value"][1]
            .as_str()?
            .parse()
            .ok()
    };
    for h in &rec.histograms {
        if h.metric != Metric::EpisodeLatency.name() {
            continue;
        }
        let class = h.class.as_str();
        let rec_sum = h.mean * h.count as f64 / 1e9;
        if let Some(p) = prom_sum(class) {
            eprintln!(
                "episode_latency sum, path {class}: prometheus {p:.6} s, recording {rec_sum:.6} s ({:+.2}%)",
                (p / rec_sum - 1.0) * 100.0
            );
        }
    }
    for (q, prom, recv, other) in [
        (0.99, prom_p99, rec_p99, other_p99),
        (0.5, prom_p50, rec_p50, other_p50),
    ] {
        let Some(&(lo, hi, _)) = buckets.iter().find(|(lo, hi, _)| prom > *lo && prom <= *hi)
        else {
            bail!("no native bucket holds the estimate {prom}: {buckets:?}");
        };
        let width = hi / lo - 1.0;
        eprintln!(
            "q{q}: native bucket ({lo:.6}, {hi:.6}] s, relative width {:.2}%, recording {recv:.6} s, relative difference {:.2}%",
            width * 100.0,
            (prom / recv - 1.0) * 100.0
        );
        ensure!(
            width < 0.0906,
            "native bucket wider than schema 3 ({width}): resolution was reduced"
        );
        ensure!(
            recv > lo * (1.0 - 1e-3) && recv <= hi * (1.0 + 1e-3),
            "q{q}: serve's recording {recv} s is outside Prometheus' bucket ({lo}, {hi}] of its estimate {prom}"
        );
        let n = lat_other.len() as f64;
        let at = |q: f64| lat_other.value_at_quantile(q.clamp(0.0, 1.0)) as f64 / 1e9;
        let (below, above) = (at(q - RANK_SLACK / n), at(q + RANK_SLACK / n));
        let slack = width + INSTANCE_SLACK;
        ensure!(
            prom >= below * (1.0 - slack) && prom <= above * (1.0 + slack),
            "q{q}: prometheus {prom} is outside ttmlat record's [{below}, {above}] (its {other} \
             ± {RANK_SLACK} episodes) widened by the bucket width + {INSTANCE_SLACK}"
        );
    }
    // The rate form over the stress run: every stress episode, not the warm-up touch (its
    // series appeared with it). Compared with the recording's stress processes only.
    let touch_pid = read_report::<TouchReport>(&run, "touch.json")?.pid;
    let mut stress_lat: Option<Histogram<u64>> = None;
    for (pid, p) in &serve_rec.processes {
        if *pid == touch_pid {
            continue;
        }
        let h = decode(&p.episode_latency.encoded)?;
        match &mut stress_lat {
            None => stress_lat = Some(h),
            Some(m) => m
                .add(&h)
                .map_err(|e| anyhow::anyhow!("merging histograms: {e:?}"))?,
        }
    }
    let stress_lat = stress_lat.context("no stress process in the recording")?;
    let rate_p99 = prom_p99_rate.context("the rate-form p99 query returned nothing")?;
    let stress_p99 = stress_lat.value_at_quantile(0.99) as f64 / 1e9;
    let rate_buckets = native_buckets(&json(&run, "q_hist_rate.json")?)?;
    let window = fs::read_to_string(run.out_dir.join("window.txt")).unwrap_or_default();
    eprintln!(
        "rate form [{}]: prometheus p99 {rate_p99:.6} s, recording (stress processes, {} episodes) {stress_p99:.6} s, relative difference {:.2}%",
        window.trim(),
        stress_lat.len(),
        (rate_p99 / stress_p99 - 1.0) * 100.0
    );
    let Some(&(lo, hi, _)) = rate_buckets
        .iter()
        .find(|(lo, hi, _)| rate_p99 > *lo && rate_p99 <= *hi)
    else {
        bail!("no native bucket holds the rate-form estimate {rate_p99}");
    };
    ensure!(
        stress_p99 > lo * (1.0 - 1e-3) && stress_p99 <= hi * (1.0 + 1e-3),
        "rate form: the recording's stress p99 {stress_p99} s is outside ({lo}, {hi}] of Prometheus' estimate {rate_p99}"
    );
    let stress: StressReport = read_report(&run, "stress.json")?;
    eprintln!(
        "stress: rounds {} (kernel {}, run dir {})",
        stress.rounds_done,
        run.kernel.release,
        run.run_dir.display()
    );
    Ok(())
}

/// Host test: the guest script parses (a typo would otherwise show only in the lab).
#[test]
fn the_guest_script_is_valid_bash() {
    for t in [Transport::Http, Transport::Https] {
        if let Err(e) = xtask::lab::shell_quote::bash_syntax(&script(t)) {
            panic!("{e}\n{}", script(t));
        }
    }
}
