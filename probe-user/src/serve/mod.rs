//! `ttmlat serve`: trace continuously and expose Prometheus metrics on `/metrics`.
//!
//! The HTTP server (axum on the session's tokio runtime) and the ring-buffer loop run
//! concurrently; every decoded record goes straight into the metrics ([`metrics::Feeder`])
//! through the session's record sink, and the probes' loss counters are polled every
//! `--stats-interval`. A scrape that asks for the Prometheus protobuf format (Prometheus
//! with `--enable-feature=native-histograms`) gets classic and native histogram buckets;
//! every other scrape gets the text format 0.0.4 with classic buckets.

pub mod metrics;
#[cfg(test)]
mod tests;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{
    events::Record,
    session::{self, RecordSink, Stop, TraceArgs},
};
use metrics::{Feeder, Metrics, PROTOBUF_CONTENT_TYPE, TEXT_CONTENT_TYPE};

/// Default port: outside 9100–9999 (Prometheus' exporter port list, fully allocated since
/// 2023; 9100 node_exporter, 9435 ebpf_exporter), below the Linux ephemeral range.
pub const DEFAULT_PORT: u16 = 10471;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub trace: TraceArgs,
    /// Address to serve /metrics on. Binds loopback by default: expose it deliberately.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    pub listen: SocketAddr,
    /// Add a `comm` label (command name of the faulting task) to the episode metrics.
    #[arg(long)]
    pub by_comm: bool,
    /// With --by-comm: distinct comm values kept; later ones are counted as comm="other".
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_comms: u16,
    /// How often the probes' loss counters (ring buffer drops, missed return probes, full
    /// maps) are read into ttmlat_lost_events_total.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub stats_interval: Duration,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(short, long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Also write the whole session as a recording (as `ttmlat record -o`) when stopping:
    /// the same probes' measurements as the metrics served.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// The session's record sink: the feeder behind a mutex it shares with the stats poll.
struct Sink(Arc<Mutex<Feeder>>);

impl RecordSink for Sink {
    fn record(&mut self, rec: &Record) {
        if let Ok(mut f) = self.0.lock() {
            f.record(rec);
        }
    }
    fn undecodable(&mut self) {
        if let Ok(mut f) = self.0.lock() {
            f.undecodable();
        }
    }
}

/// Whether a scrape's Accept header asks for the Prometheus protobuf format.
pub fn wants_protobuf(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.contains("application/vnd.google.protobuf")
                && v.contains("proto=io.prometheus.client.MetricFamily")
        })
}

/// One scrape's response body and content type.
pub fn exposition(metrics: &Metrics, protobuf: bool) -> Result<(&'static str, Vec<u8>), String> {
    if protobuf {
        Ok((PROTOBUF_CONTENT_TYPE, metrics.encode_protobuf()?))
    } else {
        metrics
            .encode_text()
            .map(|t| (TEXT_CONTENT_TYPE, t.into_bytes()))
            .map_err(|e| e.to_string())
    }
}

async fn scrape(State(metrics): State<Arc<Metrics>>, headers: HeaderMap) -> Response {
    match exposition(&metrics, wants_protobuf(&headers)) {
        Ok((ctype, body)) => ([(header::CONTENT_TYPE, ctype)], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
    }
}

async fn index() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<html><head><title>ttmlat</title></head><body><h1>ttmlat</h1>\
         <p><a href=\"/metrics\">/metrics</a></p></body></html>\n",
    )
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/", get(index))
        .with_state(metrics)
}

pub fn run(args: &ServeArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> Result<()> {
    if let Some(path) = &args.output {
        crate::check_writable(path)?;
    }
    let metrics = Arc::new(Metrics::new());
    let feeder = Arc::new(Mutex::new(Feeder::new(
        Arc::clone(&metrics),
        args.by_comm,
        usize::from(args.max_comms),
    )));
    // Bind before loading probes: a taken port fails fast, and /metrics answers by the time
    // the ready file exists.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr().unwrap_or(args.listen);
    let app = router(Arc::clone(&metrics));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    eprintln!("ttmlat: serving metrics on http://{local}/metrics");

    let stop = args.duration.map_or(Stop::Signal, Stop::After);
    let poll = Arc::clone(&feeder);
    let outcome = session::run_with_sink(
        &args.trace,
        stop,
        Some(args.stats_interval.max(Duration::from_millis(100))),
        move |_, stats| {
            if let Ok(mut f) = poll.lock() {
                f.stats(stats);
            }
        },
        &mut Sink(Arc::clone(&feeder)),
    )
    .await;
    server.abort();
    let outcome = outcome?;
    if let Ok(mut f) = feeder.lock() {
        f.stats(&outcome.stats);
    }
    if let Some(path) = &args.output {
        outcome.recording(None)?.write(path)?;
    }
    Ok(())
}
