//! A served connection, plain or TLS. The TLS handshake runs inside the connection's own
//! task, driven by its first read or write (hyper reads first), not in the accept loop: a
//! slow or failing client holds only its own connection slot, and the handshake must finish
//! within `--client-timeout` however slowly the client trickles bytes. A failed handshake (a
//! missing or untrusted client certificate included) is counted in
//! `ttmlat_http_refused_total{reason="tls_handshake"}`.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};
use tokio_rustls::{Accept, TlsAcceptor, server::TlsStream};

use super::{
    Conn,
    metrics::{Metrics, refusal},
};

pub enum Io {
    Plain(Conn),
    Tls(Box<TlsConn>),
}

/// TLS on one accepted connection.
pub struct TlsConn {
    state: State,
    metrics: Arc<Metrics>,
}

enum State {
    Handshake(Accept<Conn>, Pin<Box<Sleep>>),
    Ready(TlsStream<Conn>),
    Failed,
}

impl TlsConn {
    pub fn new(
        conn: Conn,
        acceptor: &TlsAcceptor,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            state: State::Handshake(acceptor.accept(conn), Box::pin(tokio::time::sleep(timeout))),
            metrics,
        }
    }

    /// The TLS stream once the handshake is done; an error (counted) if it failed.
    fn poll_stream(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut TlsStream<Conn>>> {
        if let State::Handshake(accept, deadline) = &mut self.state {
            let done = match Pin::new(accept).poll(cx) {
                Poll::Ready(r) => r,
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake not done within --client-timeout",
                )),
                Poll::Pending => return Poll::Pending,
            };
            match done {
                Ok(stream) => self.state = State::Ready(stream),
                Err(e) => {
                    self.state = State::Failed;
                    self.metrics.refused(refusal::TLS_HANDSHAKE);
                    log::debug!("TLS handshake failed: {e}");
                    return Poll::Ready(Err(e));
                }
            }
        }
        match &mut self.state {
            State::Ready(stream) => Poll::Ready(Ok(stream)),
            _ => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "the TLS handshake failed",
            ))),
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_stream(cx))?;
        Pin::new(stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let stream = ready!(self.get_mut().poll_stream(cx))?;
        Pin::new(stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let stream = ready!(self.get_mut().poll_stream(cx))?;
        Pin::new(stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.state {
            State::Ready(stream) => Pin::new(stream).poll_shutdown(cx),
            // Nothing to close politely before the handshake is done.
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_read(cx, buf),
            Io::Tls(c) => Pin::new(c.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_write(cx, buf),
            Io::Tls(c) => Pin::new(c.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_write_vectored(cx, bufs),
            Io::Tls(c) => Pin::new(c.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(c) => c.is_write_vectored(),
            Io::Tls(c) => c.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_flush(cx),
            Io::Tls(c) => Pin::new(c.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(c) => Pin::new(c).poll_shutdown(cx),
            Io::Tls(c) => Pin::new(c.as_mut()).poll_shutdown(cx),
        }
    }
}
