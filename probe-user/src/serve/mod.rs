//! `ttmlat serve`: trace continuously and expose Prometheus metrics on `/metrics`.
//!
//! The HTTP server (axum on the session's tokio runtime) and the ring-buffer loop run
//! concurrently; every decoded record goes straight into the metrics ([`metrics::Feeder`])
//! through the session's record sink, and the probes' loss counters are polled every
//! `--stats-interval`. A scrape that asks for the Prometheus protobuf format (Prometheus
//! with `--enable-feature=native-histograms`) gets classic and native histogram buckets;
//! every other scrape gets the text format 0.0.4 with classic buckets.
//!
//! Many clients at once cannot stall the tracing or pin memory: scrapes are rendered on
//! tokio's blocking pool, at most [`MAX_RENDERS`] at a time (others queue; one not answered
//! within [`SCRAPE_TIMEOUT`] gets 503), so the thread that drains the ring buffer never
//! renders; the families lock only for the moment a render reads them. Connections are
//! capped (`--max-connections`: further ones wait in the listen backlog) and closed after
//! `--client-timeout` without progress (idle keep-alive, slow or stalled clients).

pub mod exemplars;
pub mod metrics;
#[cfg(test)]
mod tests;

use std::{
    future::Future,
    io,
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
    serve::Listener,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};

use crate::{
    events::Record,
    session::{self, RecordSink, Stop, TraceArgs},
};
use metrics::{
    Feeder, Metrics, OPENMETRICS_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE, TEXT_CONTENT_TYPE,
};

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

/// The server's listener: at most `slots` connections at once, each closed after `timeout`
/// without progress.
pub struct Limited {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl Limited {
    pub fn new(listener: TcpListener, max_connections: usize, timeout: Duration) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            timeout,
        }
    }
}

impl Listener for Limited {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        // Not accepting while every slot is taken leaves the clients in the listen backlog.
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        let (io, addr) = Listener::accept(&mut self.listener).await;
        (Conn::new(io, slot, self.timeout), addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// One accepted connection: holds its slot until dropped, and fails reads and writes that
/// have made no progress for `timeout` (hyper then closes the connection).
pub struct Conn {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl Conn {
    fn new(io: TcpStream, slot: OwnedSemaphorePermit, timeout: Duration) -> Self {
        Self {
            io,
            _slot: slot,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Restarts the clock on progress; on `Pending`, an error once the clock ran out.
    fn check<T>(
        &mut self,
        cx: &mut TaskContext<'_>,
        p: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match p {
            Poll::Ready(r) => {
                self.deadline.as_mut().reset(Instant::now() + self.timeout);
                Poll::Ready(r)
            }
            Poll::Pending if self.deadline.as_mut().poll(cx).is_ready() => Poll::Ready(Err(
                io::Error::new(io::ErrorKind::TimedOut, "client made no progress"),
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_read(cx, buf);
        this.check(cx, p)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write(cx, buf);
        this.check(cx, p)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_flush(cx);
        this.check(cx, p)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = Pin::new(&mut this.io).poll_shutdown(cx);
        this.check(cx, p)
    }
}

pub fn run(args: &ServeArgs) -> Result<()> {
    // One thread reads events and serves connections; renders run on the blocking pool,
    // at most MAX_RENDERS at once.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(MAX_RENDERS)
        .build()
        .context("starting the async runtime")?;
    rt.block_on(serve(args))
}

async fn serve(args: &ServeArgs) -> Result<()> {
    if let Some(path) = &args.output {
        crate::check_writable(path)?;
    }
    args.timeline.check_writable()?;
    let mut trace = args.trace.clone();
    trace.every_episode |= args.timeline.timeline_uncontended;
    let metrics = Arc::new(Metrics::new());
    let feeder = Arc::new(Mutex::new(Feeder::new(
        Arc::clone(&metrics),
        args.by_comm,
        usize::from(args.max_comms),
    )));
    // Bind before loading probes: a taken port fails fast, and /metrics answers by the time
    // the ready file exists.
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr().unwrap_or(args.listen);
    let client_timeout = args.client_timeout.max(Duration::from_millis(100));
    let listener = Limited::new(listener, args.max_connections as usize, client_timeout);
    // hyper watches a connection for EOF while its request is in flight: a scrape must be
    // answered well before the connection's own timeout would close it unanswered.
    let app = router_with(
        Arc::clone(&metrics),
        MAX_RENDERS,
        SCRAPE_TIMEOUT.min(client_timeout / 2),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    eprintln!("ttmlat: serving metrics on http://{local}/metrics");

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
    server.abort();
    let outcome = outcome?;
    if let Ok(mut f) = feeder.lock() {
        f.stats(&outcome.stats);
    }
    if let Some(path) = &args.output {
        outcome.recording(None)?.write(path)?;
    }
    args.timeline.write(sink.1)
}
