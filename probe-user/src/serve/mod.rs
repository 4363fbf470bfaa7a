//! `ttmlat serve`: trace continuously and expose Prometheus metrics on `/metrics`.
//!
//! The HTTP server (axum on the session's tokio runtime) and the ring-buffer loop run
//! concurrently; every decoded record goes straight into the metrics ([`metrics::Feeder`])
//! through the session's record sink, and the probes' loss counters are polled every
//! `--stats-interval`. A scrape that asks for the Prometheus protobuf format (Prometheus
//! with `--enable-feature=native-histograms`) gets classic and native histogram buckets;
//! every other scrape gets the text format 0.0.4 with classic buckets.
//!
//! Many clients at once cannot stall the tracing or pin memory: the HTTP server runs on a
//! thread of its own (its own runtime), never the one that drains the ring buffer; scrapes
//! are rendered on that runtime's blocking pool, at most [`MAX_RENDERS`] at a time (others
//! queue; one not answered within [`SCRAPE_TIMEOUT`] gets 503); the families lock only for
//! the moment a render reads them. Connections are capped (`--max-connections`: further ones
//! wait in the listen backlog) and closed after `--client-timeout` without progress (idle
//! keep-alive, slow or stalled clients). With `--web-config` ([`web_config`]): TLS, its
//! handshake inside each connection's task ([`tls`]), and basic auth ([`auth`]).

pub mod auth;
pub mod exemplars;
pub mod metrics;
pub mod net;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod web_config;
#[cfg(test)]
mod web_tests;

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
use tokio::sync::Semaphore;

use crate::{
    events::Record,
    session::{self, RecordSink, Stop, TraceArgs},
};
use metrics::{
    Feeder, Metrics, OPENMETRICS_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE, TEXT_CONTENT_TYPE,
};
pub use net::{Conn, Limited};
use net::{Limits, Server};

/// Default port: outside 9100–9999 (Prometheus' exporter port list, fully allocated since
/// 2023; 9100 node_exporter, 9435 ebpf_exporter), below the Linux ephemeral range.
pub const DEFAULT_PORT: u16 = 10471;
/// Scrapes rendered at once; more wait for a turn. Rendering is CPU work the tracing
/// competes with: a burst of scrapes queues instead of taking every CPU.
pub const MAX_RENDERS: usize = 2;
/// A scrape not rendered within this (its wait for a turn included) is answered 503 (or
/// within half of `--client-timeout`, if shorter).
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub trace: TraceArgs,
    /// Address to serve /metrics on. Binds loopback by default: expose it deliberately, with
    /// --web-config.
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    pub listen: SocketAddr,
    /// TLS and basic-auth users: Prometheus exporter-toolkit's web configuration YAML (the
    /// `--web.config.file` of node_exporter): `tls_server_config` (cert_file, key_file,
    /// client_auth_type, client_ca_file, min_version, max_version) and `basic_auth_users`
    /// (bcrypt hashes). Checked before any probe is attached.
    #[arg(long, value_name = "FILE")]
    pub web_config: Option<PathBuf>,
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
    /// Connections served at once; further clients wait in the listen backlog. Scrapes are
    /// rendered at most 2 at a time, off the thread that reads events (the rest queue; one
    /// not answered within 10 s, or half of --client-timeout, gets 503 with Retry-After).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,
    /// Close a connection that makes no progress (sends nothing, reads nothing of its
    /// response) for this long, idle keep-alive connections included.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub client_timeout: Duration,
    /// `--timeline FILE` written when stopping: the episodes the exemplars' `episode`
    /// label names.
    #[command(flatten)]
    pub timeline: crate::timeline::TimelineArgs,
}

/// The session's record sink: the feeder behind a mutex it shares with the stats poll, and
/// the timeline when one was asked for (both number the episodes alike).
struct Sink(Arc<Mutex<Feeder>>, Option<crate::timeline::Timeline>);

impl RecordSink for Sink {
    fn record(&mut self, rec: &Record) {
        if let Ok(mut f) = self.0.lock() {
            f.record(rec);
        }
        self.1.record(rec);
    }
    fn undecodable(&mut self) {
        if let Ok(mut f) = self.0.lock() {
            f.undecodable();
        }
    }
    /// Every scrape shows the counts of the last second.
    fn wants_fresh_counts(&self) -> bool {
        true
    }
}

/// The exposition formats `/metrics` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus protobuf: classic and native buckets (asked for by Prometheus with
    /// native histograms on).
    Protobuf,
    /// OpenMetrics text: classic buckets and exemplars.
    OpenMetrics,
    /// Prometheus text 0.0.4: classic buckets (the default).
    Text,
}

/// The format a scrape's Accept header asks for, in that order of preference.
pub fn negotiate(headers: &HeaderMap) -> Format {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if accept.iter().any(|v| {
        v.contains("application/vnd.google.protobuf")
            && v.contains("proto=io.prometheus.client.MetricFamily")
    }) {
        Format::Protobuf
    } else if accept
        .iter()
        .any(|v| v.contains("application/openmetrics-text"))
    {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// One scrape's response body and content type.
pub fn exposition(metrics: &Metrics, format: Format) -> Result<(&'static str, Vec<u8>), String> {
    match format {
        Format::Protobuf => Ok((PROTOBUF_CONTENT_TYPE, metrics.encode_protobuf()?)),
        Format::OpenMetrics => metrics
            .encode_openmetrics()
            .map(|t| (OPENMETRICS_CONTENT_TYPE, t.into_bytes()))
            .map_err(|e| e.to_string()),
        Format::Text => metrics
            .encode_text()
            .map(|t| (TEXT_CONTENT_TYPE, t.into_bytes()))
            .map_err(|e| e.to_string()),
    }
}

/// What the `/metrics` handler shares: the metrics and the render turns.
#[derive(Clone)]
struct Scrapes {
    metrics: Arc<Metrics>,
    renders: Arc<Semaphore>,
    timeout: Duration,
}

async fn scrape(State(s): State<Scrapes>, headers: HeaderMap) -> Response {
    let format = negotiate(&headers);
    let render = async {
        // The turn moves into the render: a scrape that times out while rendering still
        // holds it until the render ends, so at most MAX_RENDERS ever run.
        let turn = Arc::clone(&s.renders).acquire_owned().await.ok();
        let metrics = Arc::clone(&s.metrics);
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            exposition(&metrics, format)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
    };
    match tokio::time::timeout(s.timeout, render).await {
        Ok(Ok((ctype, body))) => ([(header::CONTENT_TYPE, ctype)], body).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            format!("busy: the scrape was not rendered within {:?}\n", s.timeout),
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

/// The router with the default render turns and scrape timeout.
#[cfg(test)]
pub fn router(metrics: Arc<Metrics>) -> Router {
    router_with(metrics, MAX_RENDERS, SCRAPE_TIMEOUT)
}

/// The router with `renders` render turns and a per-scrape `timeout` (503 past it).
pub fn router_with(metrics: Arc<Metrics>, renders: usize, timeout: Duration) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/", get(index))
        .with_state(Scrapes {
            metrics,
            renders: Arc::new(Semaphore::new(renders.max(1))),
            timeout,
        })
}

/// `router` behind basic auth, when there are users.
pub fn guarded(router: Router, auth: Option<Arc<auth::BasicAuth>>) -> Router {
    match auth {
        Some(a) => router.layer(axum::middleware::from_fn_with_state(a, auth::require)),
        None => router,
    }
}

pub fn run(args: &ServeArgs) -> Result<()> {
    crate::runtime()?.block_on(serve(args))
}

/// What binding `listen` without a web configuration risks, unless it is loopback.
pub fn exposure_warning(listen: SocketAddr, web_config: bool) -> Option<String> {
    (!web_config && !listen.ip().is_loopback()).then(|| {
        format!(
            "serving {listen} over plain HTTP without authentication: anyone who can reach the \
             port reads which commands and processes fault on GPU buffers, and can load this \
             root process with scrapes. Pass --web-config with tls_server_config and \
             basic_auth_users (README, \"Securing /metrics\")."
        )
    })
}

async fn serve(args: &ServeArgs) -> Result<()> {
    // Everything a user can get wrong is said before the probes attach.
    let web = match &args.web_config {
        Some(path) => Some(web_config::WebConfig::load(path)?),
        None => None,
    };
    if let Some(path) = &args.output {
        crate::check_writable(path)?;
    }
    args.timeline.check_writable()?;
    if let Some(w) = exposure_warning(args.listen, web.is_some()) {
        eprintln!("ttmlat: WARNING: {w}");
    }
    for w in web.iter().flat_map(|w| &w.warnings) {
        eprintln!("ttmlat: WARNING: web configuration: {w}");
    }
    let mut trace = args.trace.clone();
    trace.every_episode |= args.timeline.timeline_uncontended;
    let metrics = Arc::new(Metrics::new());
    let feeder = Arc::new(Mutex::new(Feeder::new(
        Arc::clone(&metrics),
        args.by_comm,
        usize::from(args.max_comms),
    )));
    let (auth, tls) = match web {
        Some(w) => {
            let m = Arc::clone(&metrics);
            tokio::task::spawn_blocking(move || w.secure(&m))
                .await
                .context("making the decoy bcrypt hash")??
        }
        None => (None, None),
    };
    // Bind before loading probes: a taken port fails fast, and /metrics answers by the time
    // the ready file exists.
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("listening on {}", args.listen))?;
    listener
        .set_nonblocking(true)
        .context("making the listening socket non-blocking")?;
    let local = listener.local_addr().unwrap_or(args.listen);
    let client_timeout = args.client_timeout.max(Duration::from_millis(100));
    // hyper watches a connection for EOF while its request is in flight: a scrape must be
    // answered well before the connection's own timeout would close it unanswered.
    let app = guarded(
        router_with(
            Arc::clone(&metrics),
            MAX_RENDERS,
            SCRAPE_TIMEOUT.min(client_timeout / 2),
        ),
        auth.clone(),
    );
    let scheme = if tls.is_some() { "https" } else { "http" };
    let how = match (&tls, &auth) {
        (Some(t), Some(_)) => format!(" (TLS, {}; basic auth)", t.client_auth),
        (Some(t), None) => format!(" (TLS, {})", t.client_auth),
        (None, Some(_)) => " (basic auth over plain HTTP)".to_string(),
        (None, None) => String::new(),
    };
    let server = Server::start(
        listener,
        app,
        Limits {
            max_connections: args.max_connections as usize,
            client_timeout,
            tls: tls.map(|t| (t.config, Arc::clone(&metrics))),
            bcrypt: auth.is_some(),
        },
    )?;
    eprintln!("ttmlat: serving metrics on {scheme}://{local}/metrics{how}");

    let stop = args.duration.map_or(Stop::Signal, Stop::After);
    let poll = Arc::clone(&feeder);
    let mut sink = Sink(Arc::clone(&feeder), args.timeline.sink());
    let outcome = session::run_with_sink(
        &trace,
        stop,
        Some(args.stats_interval.max(Duration::from_millis(100))),
        move |_, stats| {
            if let Ok(mut f) = poll.lock() {
                f.stats(stats);
            }
        },
        &mut sink,
    )
    .await;
    server.stop();
    let outcome = outcome?;
    eprint!("{}", crate::prog_fdinfo::render(&outcome.program_costs));
    outcome.warn_read_errors();
    if let Ok(mut f) = feeder.lock() {
        f.stats(&outcome.stats);
    }
    if let Some(path) = &args.output {
        outcome.recording(None)?.write(path)?;
    }
    args.timeline.write(sink.1)
}
