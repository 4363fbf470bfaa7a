//! The server's sockets: the connection-capped listener, each connection's progress timeout,
//! and the HTTP server's own thread and runtime.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context as TaskContext, Poll},
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{Router, serve::Listener};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};

use super::{MAX_RENDERS, metrics::Metrics, tls};

/// The server's listener: at most `slots` connections at once, each closed after `timeout`
/// without progress.
pub struct Limited {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    timeout: Duration,
    tls: Option<(tokio_rustls::TlsAcceptor, Arc<Metrics>)>,
}

impl Limited {
    pub fn new(listener: TcpListener, max_connections: usize, timeout: Duration) -> Self {
        Self {
            listener,
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            timeout,
            tls: None,
        }
    }

    /// TLS on every connection; failed handshakes are counted in `metrics`.
    pub fn with_tls(self, config: Arc<rustls::ServerConfig>, metrics: Arc<Metrics>) -> Self {
        Self {
            tls: Some((tokio_rustls::TlsAcceptor::from(config), metrics)),
            ..self
        }
    }
}

impl Listener for Limited {
    type Io = tls::Io;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (tls::Io, SocketAddr) {
        // Not accepting while every slot is taken leaves the clients in the listen backlog.
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        let (io, addr) = Listener::accept(&mut self.listener).await;
        let conn = Conn::new(io, slot, self.timeout);
        let io = match &self.tls {
            Some((acceptor, metrics)) => tls::Io::Tls(Box::new(tls::TlsConn::new(
                conn,
                acceptor,
                self.timeout,
                Arc::clone(metrics),
            ))),
            None => tls::Io::Plain(conn),
        };
        (io, addr)
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

/// The HTTP server on its own thread and runtime: TLS handshakes, bcrypt and renders never
/// take the thread that drains the ring buffer.
pub struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
}

impl Server {
    pub fn start(listener: std::net::TcpListener, app: Router, limits: Limits) -> Result<Self> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ttmlat-http".to_string())
            .spawn(move || -> Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .max_blocking_threads(MAX_RENDERS + usize::from(limits.bcrypt))
                    .build()
                    .context("starting the HTTP server's runtime")?;
                let served = rt.block_on(async move {
                    let listener = TcpListener::from_std(listener)
                        .context("registering the listening socket")?;
                    let mut limited =
                        Limited::new(listener, limits.max_connections, limits.client_timeout);
                    if let Some((config, metrics)) = limits.tls {
                        limited = limited.with_tls(config, metrics);
                    }
                    tokio::select! {
                        r = axum::serve(limited, app) => r.context("serving /metrics"),
                        _ = stopped => Ok(()),
                    }
                });
                // A render or bcrypt comparison in flight is not waited for long.
                rt.shutdown_timeout(Duration::from_secs(1));
                served
            })
            .context("starting the HTTP server's thread")?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("ttmlat: the HTTP server stopped: {e:#}"),
                Err(_) => eprintln!("ttmlat: the HTTP server's thread panicked"),
            }
        }
    }
}

pub struct Limits {
    pub max_connections: usize,
    pub client_timeout: Duration,
    pub tls: Option<(Arc<rustls::ServerConfig>, Arc<Metrics>)>,
    /// Basic auth: one more blocking thread, for the bcrypt comparisons.
    pub bcrypt: bool,
}
