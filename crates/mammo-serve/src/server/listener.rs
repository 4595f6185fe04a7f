//! The accept loop. Ours rather than `axum::serve`, which has no connection cap, no header or write
//! timeout, and at shutdown waits for every connection, however stalled:
//!
//! - at most `max_connections` open connections; one more gets a canned 503 and is closed at once, so a
//!   flood of idle sockets cannot fill the listen backlog in front of `/ping`;
//! - hyper's header timer: a request head must arrive within `header_timeout` of the server starting to
//!   wait for it. hyper starts that timer whenever it waits for a head, on a new connection and between
//!   keep-alive requests alike, so it is the idle keep-alive timeout as well;
//! - hyper's read buffer, and so a request head, is capped at [`MAX_BUF`];
//! - a response the client does not read for `write_timeout` ends the connection ([`WriteDeadline`]);
//! - on shutdown: stop accepting, let open connections finish the request in progress for up to
//!   `grace`, then return, whatever is still open.
//!
//! The body has its own deadline where it is read (`body::read`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;

/// The largest read buffer of a connection, and so the largest request head.
pub const MAX_BUF: usize = 64 * 1024;

pub struct ConnLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub write_timeout: Duration,
    pub grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` completes, then for `grace` at most.
pub async fn run(listener: TcpListener, app: Router, limits: &ConnLimits, shutdown: impl Future<Output = ()>) {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(MAX_BUF).keep_alive(true);
    let busy = canned_503();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning on the error.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // A fresh socket's send buffer is empty, so this short write completes at once; dropping
            // closes it. Written on the std socket: tokio's `try_write` answers "would block" until its
            // reactor has seen the new socket writable, and on a loaded machine it had not yet, so the
            // client got a bare close instead of the 503.
            if let Ok(socket) = stream.into_std() {
                let _ = io::Write::write(&mut &socket, busy.as_bytes());
            }
            tracing::warn!("{peer}: refused, {max} connections open");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(WriteDeadline::new(stream, limits.write_timeout));
        let conn = http.serve_connection(io, TowerToHyperService::new(app.clone()));
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            tokio::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    // Finishes the request in progress, closes an idle connection.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            // Timeouts, resets and malformed requests are the client's business: not worth a warning each.
            if let Err(e) = ended {
                tracing::debug!("{peer}: connection ended: {e}");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = max - slots.available_permits();
    if open > 0 {
        tracing::info!("stopping: {open} connection(s) open, waiting up to {:.1} s", limits.grace.as_secs_f64());
        let all = slots.acquire_many(max as u32);
        if tokio::time::timeout(limits.grace, all).await.is_err() {
            tracing::warn!("grace period over: dropping {} connection(s)", max - slots.available_permits());
        }
    }
}

fn canned_503() -> String {
    let body = r#"{"error":"too many open connections; retry in a second"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A stream whose writes fail once they have made no progress for `limit`: a client that stops reading
/// its response cannot hold a connection (and its buffers) for ever.
pub struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline { inner, limit, stalled: None }
    }

    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let timer = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading the response")))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A peer that never reads: writes fill the pipe, then fail after the limit instead of waiting for ever.
    #[tokio::test]
    async fn a_write_nobody_reads_times_out() {
        let (near, _far) = tokio::io::duplex(1024);
        let mut w = WriteDeadline::new(near, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let e = w.write_all(&[0u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
