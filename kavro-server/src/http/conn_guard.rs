//! Per-connection protections below HTTP: a cap on connections served at
//! once, and a deadline for each request head (the slowloris defence: a
//! client that dribbles its headers is cut off after `header_timeout`).
//!
//! poem does not expose hyper's header timeout, so this watches the bytes of
//! an HTTP/1 connection: the first byte of a request starts the clock, the
//! blank line ending the head stops it, and the response written back means
//! the next byte read starts a new request. Request bodies have their own
//! deadline in [`super::body_limit`]. HTTP/2 connections (recognised by their
//! preface) are left to h2's own flow control.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

pub struct GuardedAcceptor<A> {
    inner: A,
    slots: Arc<Semaphore>,
    header_timeout: Duration,
}

impl<A: Acceptor> GuardedAcceptor<A> {
    pub fn new(inner: A, max_connections: usize, header_timeout: Duration) -> Self {
        Self {
            inner,
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            header_timeout,
        }
    }
}

impl<A: Acceptor> Acceptor for GuardedAcceptor<A> {
    type Io = GuardedIo<A::Io>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        // At the cap, stop accepting: further clients wait in the kernel's backlog.
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| io::Error::other("connection slots closed"))?;
        let (io, local, remote, scheme) = self.inner.accept().await?;
        Ok((
            GuardedIo {
                inner: io,
                _permit: permit,
                state: State::Idle,
                tail: [0; 3],
                seen: 0,
                timeout: self.header_timeout,
                deadline: None,
            },
            local,
            remote,
            scheme,
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests (or before the first).
    Idle,
    /// Reading a request head; the deadline runs.
    Head,
    /// Head complete; the request is being handled.
    Handling,
    /// HTTP/2: not watched.
    Unwatched,
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

pub struct GuardedIo<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
    state: State,
    /// The last three bytes read, to find `\r\n\r\n` across reads.
    tail: [u8; 3],
    /// Bytes read on this connection, up to the length of the h2 preface.
    seen: usize,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> GuardedIo<S> {
    fn observe(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || self.state == State::Unwatched {
            return;
        }
        if self.seen < H2_PREFACE.len() {
            let n = (H2_PREFACE.len() - self.seen).min(bytes.len());
            if bytes[..n] == H2_PREFACE[self.seen..self.seen + n] {
                self.seen += n;
                if self.seen == H2_PREFACE.len() {
                    self.state = State::Unwatched;
                    self.deadline = None;
                    return;
                }
            } else {
                self.seen = usize::MAX / 2; // not HTTP/2; stop checking
            }
        }
        if self.state == State::Idle {
            self.state = State::Head;
            self.deadline = Some(Box::pin(tokio::time::sleep(self.timeout)));
        }
        if self.state == State::Head {
            let mut window = self.tail.to_vec();
            window.extend_from_slice(bytes);
            if window.windows(4).any(|w| w == b"\r\n\r\n") {
                self.state = State::Handling;
                self.deadline = None;
            }
        }
        let keep = bytes.len().min(3);
        self.tail.rotate_left(keep);
        self.tail[3 - keep..].copy_from_slice(&bytes[bytes.len() - keep..]);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GuardedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = buf.filled()[before..].to_vec();
                this.observe(&new);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if let Some(deadline) = this.deadline.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    metrics::counter!("kavro_slow_clients_cut_total").increment(1);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request head not received in time",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) && this.state == State::Handling {
            // A response is going out: the next byte read begins a new request.
            this.state = State::Idle;
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io() -> GuardedIo<tokio::io::Empty> {
        GuardedIo {
            inner: tokio::io::empty(),
            _permit: Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap(),
            state: State::Idle,
            tail: [0; 3],
            seen: 0,
            timeout: Duration::from_secs(10),
            deadline: None,
        }
    }

    #[tokio::test]
    async fn head_end_is_found_across_reads() {
        let mut io = io();
        io.observe(b"GET / HTTP/1.1\r\nHost: x\r");
        assert_eq!(io.state, State::Head);
        assert!(io.deadline.is_some());
        io.observe(b"\n\r");
        assert_eq!(io.state, State::Head);
        io.observe(b"\n");
        assert_eq!(io.state, State::Handling);
        assert!(io.deadline.is_none());
    }

    #[tokio::test]
    async fn http2_is_not_watched() {
        let mut io = io();
        io.observe(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(io.state, State::Unwatched);
        io.observe(b"\x00\x00\x12\x04");
        assert_eq!(io.state, State::Unwatched);
    }
}
