//! Host tests of `ttmlat serve`: synthetic records through the same feeder, encoders and HTTP
//! router the command uses; the text exposition is checked by Prometheus' own `promtool`
//! (Debian package `prometheus`).

use std::{
    collections::BTreeSet,
    io::Write,
    process::{Command, Stdio},
    sync::Arc,
};

use probe_common::{
    AbandonedEvent, AttemptEvent, EventKind, WaiterEvent, attempt_flag as af, attempt_kind,
    fault_flag, trylock, vm_fault,
};
use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily;

use super::metrics::{Feeder, Metrics, lost_reasons};
use crate::{aggregate::Aggregate, attribution::EpisodePath, events::Record, loader::ProbeStats};

fn comm(s: &[u8]) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[..s.len()].copy_from_slice(s);
    c
}

#[allow(clippy::too_many_arguments)]
fn attempt(tid: u32, n: u16, flags: u32, ret: u32, start: u64, end: u64, name: &[u8]) -> Record {
    Record::Attempt(AttemptEvent {
        kind: EventKind::Attempt as u32,
        flags,
        tid,
        tgid: tid,
        episode_start_ns: start,
        attempt_start_ns: start,
        attempt_end_ns: end,
        mm: 1,
        resv: 0,
        wait_held_ns: 0,
        wait_dropped_ns: 0,
        fence_drop_ns: 0,
        collateral_ns: 0,
        ep_wait_held_ns: if flags & af::WAITED_HELD != 0 {
            (end - start) / 2
        } else {
            0
        },
        ep_wait_dropped_ns: if n > 1 { (end - start) / 3 } else { 0 },
        ep_collateral_ns: if flags & af::WAITED_HELD != 0 {
            1_500
        } else {
            0
        },
        pre_lock_wait_ns: 700,
        vmf_flags: if n > 1 { fault_flag::TRIED } else { 0 },
        ret,
        reserve_ret: 0,
        wait_ret: 0,
        attempt: n,
        waits: 0,
        collateral_waiters: 0,
        attempt_kind: attempt_kind::FAULT,
        trylock: if flags & af::DROPPED_IN_RESERVE != 0 || flags & af::WAITED_HELD != 0 {
            trylock::FAILED
        } else {
            trylock::ACQUIRED
        },
        holder_tid: 0,
        holder_tgid: 0,
        holder_comm: [0; 16],
        comm: comm(name),
        driver: comm(b"bochs"),
        holder_stack_id: -1,
        ..Default::default()
    })
}

/// A stream covering every metric: uncontended, retry, retry-then-held and held episodes,
/// an abandoned one, a stalled waiter.
fn synthetic(name: &[u8]) -> Vec<Record> {
    let mut v = Vec::new();
    for i in 0..50u64 {
        v.push(attempt(
            1,
            1,
            af::RESERVE_CALLED | af::EPISODE_END,
            vm_fault::NOPAGE,
            1_000 * i,
            1_000 * i + 3_000 + 97 * i,
            name,
        ));
    }
    // Quiet episodes counted by the probes.
    v.push(Record::Quiet(crate::events::QuietEpisodes {
        tgid: 1,
        comm: comm(name),
        driver: comm(b"bochs"),
        latency_ns: 40_000,
        count: 7,
    }));
    // retry
    v.push(attempt(
        2,
        1,
        af::RESERVE_CALLED | af::DROPPED_IN_RESERVE | af::WAITED_DROPPED,
        vm_fault::RETRY,
        0,
        400_000,
        name,
    ));
    v.push(attempt(
        2,
        2,
        af::RESERVE_CALLED | af::EPISODE_END,
        vm_fault::NOPAGE,
        0,
        450_000,
        name,
    ));
    // retry-then-held
    v.push(attempt(
        3,
        1,
        af::RESERVE_CALLED | af::DROPPED_IN_RESERVE | af::WAITED_DROPPED,
        vm_fault::RETRY,
        0,
        2_000_000,
        name,
    ));
    v.push(attempt(
        3,
        2,
        af::RESERVE_CALLED | af::WAITED_HELD | af::EPISODE_END,
        vm_fault::NOPAGE,
        0,
        9_000_000,
        name,
    ));
    // held (blocking kernel)
    v.push(attempt(
        4,
        1,
        af::RESERVE_CALLED | af::WAITED_HELD | af::EPISODE_END,
        vm_fault::NOPAGE,
        0,
        5_000_000,
        name,
    ));
    // closed after a RETRY without a retry in a TTM handler
    v.push(attempt(
        5,
        1,
        af::RESERVE_CALLED | af::DROPPED_IN_RESERVE | af::WAITED_DROPPED,
        vm_fault::RETRY,
        0,
        100_000,
        name,
    ));
    v.push(Record::Abandoned(AbandonedEvent {
        kind: EventKind::Abandoned as u32,
        attempts: 1,
        tid: 5,
        tgid: 5,
        episode_start_ns: 0,
        last_attempt_end_ns: 100_000,
        ep_wait_held_ns: 0,
        ep_wait_dropped_ns: 0,
        ep_collateral_ns: 0,
        comm: comm(name),
    }));
    v.push(Record::Waiter(WaiterEvent {
        kind: EventKind::Waiter as u32,
        lock_flags: 0,
        tid: 9,
        tgid: 9,
        mm_lock: 1,
        begin_ns: 0,
        end_ns: 10_000,
        held_overlap_ns: 8_000,
        comm: comm(b"victim"),
    }));
    v
}

fn fed(by_comm: bool, max_comms: usize, name: &[u8]) -> (Arc<Metrics>, Feeder) {
    let metrics = Arc::new(Metrics::new());
    let mut feeder = Feeder::new(Arc::clone(&metrics), by_comm, max_comms);
    for r in synthetic(name) {
        feeder.record(&r);
    }
    feeder.undecodable();
    // A kernel that reports every channel (5.12+).
    feeder.stats(&ProbeStats {
        ringbuf_drops: Some(3),
        retprobe_misses: Some(1),
        ..ProbeStats::zero()
    });
    (metrics, feeder)
}

/// `promtool check metrics` on `text`: Ok(lint output) or Err(why).
fn promtool_check(text: &str) -> Result<String, String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run promtool ({e}): install Debian's `prometheus` package"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(msg)
    } else {
        Err(msg)
    }
}

fn text(metrics: &Metrics) -> String {
    metrics.encode_text().expect("text encoding")
}

#[test]
fn promtool_accepts_the_text_exposition() {
    for by_comm in [false, true] {
        let (metrics, _) = fed(by_comm, 32, b"stress");
        let t = text(&metrics);
        if let Err(e) = promtool_check(&t) {
            panic!("promtool check metrics failed (by_comm {by_comm}):\n{e}\n--- exposition:\n{t}");
        }
        for needle in [
            "# TYPE ttmlat_fault_episode_duration_seconds histogram",
            "# HELP ttmlat_fault_episodes_total ",
            "ttmlat_fault_episodes_total{path=\"retry-then-held\",driver=\"bochs\"",
            "ttmlat_fault_attempts_total{path=\"retry-dropped\"} 3",
            "ttmlat_fault_retries_total 2",
            "ttmlat_held_waits_total 2",
            "ttmlat_lost_events_total{reason=\"ring_buffer_full\"} 3",
            "ttmlat_lost_events_total{reason=\"retprobe_missed\"} 1",
            "ttmlat_lost_events_total{reason=\"undecodable\"} 1",
            "ttmlat_lost_events_total{reason=\"waiter_map_full\"} 0",
            "ttmlat_fault_episodes_total{path=\"retry-no-handler\",driver=\"bochs\"",
            "ttmlat_collateral_stall_seconds_sum{path=\"held\",driver=\"bochs\"} 0.0000015",
            "ttmlat_mmap_lock_waiter_stall_seconds_count 1",
            "le=\"+Inf\"",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
        }
        assert_eq!(t.contains("comm=\"stress\""), by_comm, "{t}");
    }
}

#[test]
fn lost_counters_only_grow_by_the_polled_difference() {
    let (metrics, mut feeder) = fed(false, 32, b"x");
    let s = ProbeStats {
        ringbuf_drops: Some(10),
        retprobe_misses: Some(1),
        ..ProbeStats::zero()
    };
    feeder.stats(&s);
    feeder.stats(&s);
    let t = text(&metrics);
    assert!(
        t.contains("ttmlat_lost_events_total{reason=\"ring_buffer_full\"} 10\n"),
        "{t}"
    );
    assert_eq!(lost_reasons().len(), ProbeStats::CHANNELS + 1);
}

/// A loss channel the kernel does not report (`recursion_misses` before 5.12) is absent from
/// `/metrics`, not exported as 0; the others still are.
#[test]
fn a_channel_the_kernel_does_not_report_has_no_series() {
    let (metrics, mut feeder) = fed(false, 32, b"x");
    let reported = ProbeStats::zero();
    feeder.stats(&reported);
    assert!(text(&metrics).contains("reason=\"program_skipped\"} 0\n"));
    feeder.stats(&ProbeStats {
        recursion_misses: None,
        ..reported
    });
    let t = text(&metrics);
    assert!(!t.contains("program_skipped"), "{t}");
    assert!(t.contains("reason=\"waiter_map_full\"} 0\n"), "{t}");
}

/// A hostile comm (quote, backslash, newline, braces, `=`, `,`) stays one label value: the
/// text is still valid for promtool, no line or label is injected, and the protobuf carries
/// the comm verbatim.
#[test]
fn label_values_are_escaped() {
    let evil: &[u8] = b"a\"b\\c\n}{x=\"1\",";
    assert!(evil.len() < 16);
    let (metrics, _) = fed(true, 32, evil);
    let t = text(&metrics);
    if let Err(e) = promtool_check(&t) {
        panic!("promtool rejects the escaped exposition:\n{e}\n{t}");
    }
    assert!(
        t.contains(r#"comm="a\"b\\c\n}{x=\"1\",""#),
        "escaped comm missing:\n{t}"
    );
    // Every line is a comment or starts with a ttmlat_ metric name: nothing injected.
    for line in t.lines() {
        assert!(
            line.is_empty() || line.starts_with('#') || line.starts_with("ttmlat_"),
            "injected line {line:?}"
        );
    }
    // No sample gained an `x` label.
    assert!(!t.contains(",x=\"1\"} "), "{t}");
    let fams = metrics.families().expect("protobuf families");
    let value = fams
        .iter()
        .find(|f| f.name == "ttmlat_fault_episodes_total")
        .and_then(|f| {
            f.metric.iter().find_map(|m| {
                m.label
                    .iter()
                    .find(|l| l.name == "comm")
                    .map(|l| l.value.clone())
            })
        })
        .expect("a comm label in the protobuf");
    assert_eq!(value.as_bytes(), evil);
}

#[test]
fn comm_labels_are_capped() {
    let metrics = Arc::new(Metrics::new());
    let mut feeder = Feeder::new(Arc::clone(&metrics), true, 2);
    for (tid, name) in [
        (1, b"one"),
        (2, b"two"),
        (3, b"thr"),
        (4, b"for"),
        (5, b"one"),
    ] {
        feeder.record(&attempt(
            tid,
            1,
            af::RESERVE_CALLED | af::EPISODE_END,
            vm_fault::NOPAGE,
            0,
            1_000,
            name,
        ));
    }
    let t = text(&metrics);
    let comms: BTreeSet<&str> = t
        .lines()
        .filter(|l| l.starts_with("ttmlat_fault_episodes_total{"))
        .filter_map(|l| l.split("comm=\"").nth(1))
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(comms, BTreeSet::from(["one", "other", "two"]), "{t}");
    assert!(
        t.contains(
            "ttmlat_fault_episodes_total{path=\"uncontended\",driver=\"bochs\",comm=\"one\"} 2"
        ),
        "{t}"
    );
    assert!(
        t.contains(
            "ttmlat_fault_episodes_total{path=\"uncontended\",driver=\"bochs\",comm=\"other\"} 2"
        ),
        "{t}"
    );
}

/// The feeder's episode attribution is the aggregate's (the one recordings use).
#[test]
fn episode_counts_agree_with_the_aggregate() {
    let (metrics, _) = fed(false, 32, b"w");
    let mut agg = Aggregate::new();
    for r in synthetic(b"w") {
        agg.add(&r);
    }
    let t = text(&metrics);
    for p in EpisodePath::ALL {
        let want = agg.episodes.get(&p).copied().unwrap_or(0);
        let got: u64 = t
            .lines()
            .filter(|l| {
                l.starts_with(&format!(
                    "ttmlat_fault_episodes_total{{path=\"{}\",",
                    p.name()
                ))
            })
            .filter_map(|l| l.rsplit(' ').next())
            .filter_map(|v| v.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum();
        assert_eq!(got, want, "episodes of path {}", p.name());
    }
}

/// The protobuf exposition carries native buckets (schema 3) next to the classic ones.
#[test]
fn protobuf_has_native_histograms() {
    let (metrics, _) = fed(false, 32, b"n");
    let fams: Vec<MetricFamily> = metrics.families().expect("families");
    let f = fams
        .iter()
        .find(|f| f.name == "ttmlat_fault_episode_duration_seconds")
        .expect("episode family");
    let h = f
        .metric
        .iter()
        .filter_map(|m| m.histogram.as_ref())
        .find(|h| !h.positive_span.is_empty())
        .expect("a histogram sample with observations");
    assert_eq!(h.schema, 3);
    assert!(!h.positive_span.is_empty() && !h.positive_delta.is_empty());
    assert!(
        h.bucket.len() >= 26,
        "classic buckets too: {}",
        h.bucket.len()
    );
    assert!(!metrics.encode_protobuf().expect("protobuf").is_empty());
}

/// The real router over a real socket: text by default, protobuf when asked for.
#[test]
fn http_negotiates_text_and_protobuf() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (metrics, _) = fed(false, 32, b"h");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move { axum::serve(listener, super::router(metrics)).await });
        let get = |accept: &'static str| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let req = format!(
                "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await.expect("write");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).await.expect("read");
            String::from_utf8_lossy(&buf).into_owned()
        };
        let text = get("text/plain").await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.contains("content-type: text/plain; version=0.0.4"),
            "{text}"
        );
        assert!(text.contains("ttmlat_fault_episodes_total"), "{text}");
        let proto = get(
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3",
        )
        .await;
        assert!(
            proto.contains("content-type: application/vnd.google.protobuf"),
            "{proto}"
        );
        // What Prometheus sends with --enable-feature=exemplar-storage.
        let om = get(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .await;
        assert!(
            om.contains("content-type: application/openmetrics-text; version=1.0.0"),
            "{om}"
        );
        assert!(om.contains(" # {pid=\"") && om.trim_end().ends_with("# EOF"), "{om}");
        server.abort();
    });
}

/// The OpenMetrics exposition carries, on the latency, held-wait and collateral-stall
/// histograms, the slowest episode of each series as an exemplar on the first bucket that
/// holds it, with the episode id the tracker gave it (the timeline's id).
#[test]
fn openmetrics_carries_exemplars_of_the_slowest_episodes() {
    let (metrics, _) = fed(false, 32, b"ex");
    let om = metrics.encode_openmetrics().expect("encodes");
    let with: Vec<&str> = om.lines().filter(|l| l.contains(" # {")).collect();
    for family in [
        super::metrics::family::EPISODE_DURATION,
        super::metrics::family::WAIT_HELD,
        super::metrics::family::COLLATERAL_STALL,
    ] {
        assert!(
            with.iter()
                .any(|l| l.starts_with(&format!("{family}_bucket{{"))),
            "no exemplar on {family}: {om}"
        );
    }
    for line in &with {
        let (bucket, exemplar) = line.split_once(" # ").expect("an exemplar");
        assert!(bucket.contains("_bucket{"), "{line}");
        assert!(
            exemplar.starts_with("{pid=\"") && exemplar.contains(",comm=\"ex\",holder=\""),
            "{line}"
        );
        assert!(exemplar.contains(",episode=\""), "{line}");
        // value ≤ the bucket's bound
        let le: f64 = bucket
            .split("le=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .map(|v| {
                if v == "+Inf" {
                    f64::INFINITY
                } else {
                    v.parse().expect("le")
                }
            })
            .expect("le");
        let value: f64 = exemplar
            .rsplit(' ')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("value");
        assert!(value <= le, "{line}");
    }
    // The 0.0.4 text has none.
    assert!(!metrics.encode_text().expect("encodes").contains(" # {"));
}

/// `GET /metrics` over a fresh connection: the whole response, or why not.
async fn get_metrics(addr: std::net::SocketAddr) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// The server as `ttmlat serve` runs it: the connection-capped listener and the router.
async fn limited_server(
    metrics: Arc<Metrics>,
    max_connections: usize,
    client_timeout: std::time::Duration,
) -> (
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let listener = super::Limited::new(listener, max_connections, client_timeout);
    let app = super::router(metrics);
    (
        addr,
        tokio::spawn(async move { axum::serve(listener, app).await }),
    )
}

/// 100 clients at once against 8 connection slots and 2 render turns: every one gets a
/// complete exposition (the rest wait in the backlog and the render queue, none is refused).
#[test]
fn hundred_concurrent_scrapes_all_complete() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(super::MAX_RENDERS)
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (metrics, _) = fed(true, 32, b"c");
        let families = text(&metrics).matches("# TYPE ").count();
        let (addr, server) = limited_server(metrics, 8, std::time::Duration::from_secs(30)).await;
        let clients: Vec<_> = (0..100).map(|_| tokio::spawn(get_metrics(addr))).collect();
        for c in clients {
            let r = c.await.expect("client task").expect("client I/O");
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            assert_eq!(r.matches("# TYPE ").count(), families, "{r}");
            assert_eq!(
                r.matches("\nttmlat_lost_events_total{").count(),
                lost_reasons().len(),
                "{r}"
            );
        }
        server.abort();
    });
}

/// A client that connects and sends nothing is disconnected after the client timeout, and
/// frees its connection slot for the next client.
#[test]
fn stalled_client_is_disconnected_and_frees_its_slot() {
    use tokio::io::AsyncReadExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (metrics, _) = fed(false, 32, b"s");
        let timeout = std::time::Duration::from_millis(300);
        let (addr, server) = limited_server(metrics, 1, timeout).await;
        let start = std::time::Instant::now();
        let mut stalled = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // Give the server time to accept it (the only slot) before the scrape comes in.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let scrape = tokio::spawn(get_metrics(addr));
        let mut buf = Vec::new();
        let n = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stalled.read_to_end(&mut buf),
        )
        .await
        .expect("the stalled connection was never closed")
        .unwrap_or(0);
        assert_eq!(n, 0, "the stalled client got data: {buf:?}");
        let r = tokio::time::timeout(std::time::Duration::from_secs(10), scrape)
            .await
            .expect("the waiting scrape never got the slot")
            .expect("client task")
            .expect("client I/O");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(
            start.elapsed() >= timeout,
            "answered before the slot was freed"
        );
        server.abort();
    });
}

/// Every metric the Grafana dashboard queries exists in ttmlat's /metrics output.
#[test]
fn dashboard_uses_only_exported_metrics() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/grafana/ttmlat.json");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("dashboard is JSON");
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    if (k == "expr" || k == "query" || k == "definition") && v.is_string() {
                        out.push(v.as_str().unwrap_or_default().to_string());
                    } else {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&json, &mut exprs);
    assert!(exprs.len() >= 5, "dashboard has too few queries: {exprs:?}");
    let (metrics, _) = fed(true, 32, b"d");
    let t = text(&metrics);
    let mut exported: BTreeSet<String> = BTreeSet::new();
    for line in t.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            if let (Some(name), Some(kind)) = (it.next(), it.next()) {
                exported.insert(name.to_string());
                if kind == "histogram" {
                    for s in ["_bucket", "_sum", "_count"] {
                        exported.insert(format!("{name}{s}"));
                    }
                }
            }
        } else if !line.starts_with('#')
            && let Some(name) = line.split(['{', ' ']).next()
        {
            exported.insert(name.to_string());
        }
    }
    let mut used = BTreeSet::new();
    for e in &exprs {
        let bytes = e.as_bytes();
        let mut i = 0;
        while let Some(pos) = e[i..].find("ttmlat_") {
            let start = i + pos;
            let boundary = start == 0
                || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            let end = e[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(e.len(), |n| start + n);
            if boundary {
                used.insert(e[start..end].to_string());
            }
            i = end;
        }
    }
    assert!(!used.is_empty(), "no ttmlat metric in the dashboard");
    let missing: Vec<&String> = used.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "dashboard queries metrics ttmlat does not export: {missing:?}\nexported: {exported:?}"
    );
    // Every label the dashboard groups by is one ttmlat (or Prometheus) sets.
    let known = ["instance", "job", "path", "driver", "comm", "reason", "le"];
    for e in &exprs {
        for part in e.split("by (").skip(1) {
            let labels = part.split(')').next().unwrap_or_default();
            for l in labels.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                assert!(
                    known.contains(&l),
                    "dashboard groups by unknown label {l:?} in {e}"
                );
            }
        }
    }
}

/// The family table is what `/metrics` serves: one `# TYPE` line per row, of its kind, and
/// samples under the exposed name (the lab tests read the scrape through this table).
#[test]
fn the_family_table_is_the_exposition() {
    use super::metrics::{family, refusal};
    let (metrics, _) = fed(true, 32, b"c");
    // Refusals are exported where --web-config can refuse.
    let without = text(&metrics);
    assert_eq!(
        without.matches("# TYPE ").count(),
        family::ALL.len() - family::WEB_CONFIG_ONLY.len(),
        "{without}"
    );
    for f in family::WEB_CONFIG_ONLY {
        assert!(!without.contains(f), "{without}");
    }
    metrics.may_refuse(&[refusal::TLS_HANDSHAKE, refusal::UNAUTHORIZED]);
    let t = text(&metrics);
    assert_eq!(t.matches("# TYPE ").count(), family::ALL.len(), "{t}");
    for (name, counter) in family::ALL {
        let kind = if counter { "counter" } else { "histogram" };
        let typed = format!("# TYPE {} {kind}\n", family::exposed(name));
        assert!(t.contains(&typed), "{typed}: {t}");
        let sample = if counter {
            family::exposed(name)
        } else {
            format!("{name}_count")
        };
        assert!(t.contains(&format!("\n{sample}")), "{sample}: {t}");
    }
}
