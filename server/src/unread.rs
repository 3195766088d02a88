//! A client's stream (plain or TLS), before the upgrade, that gives up on a client that does not read
//! (docs/protocol.md R4): when a write has waited `limit` for room in the socket, the
//! write fails and hyper ends the connection.
//!
//! hyper has no write timeout of its own. Without one, a client that pipelines thousands
//! of `GET /metrics` and reads none of the answers holds its connection (a file descriptor
//! and the responses in memory) forever. Waiting counts only while a write cannot
//! proceed: a slow reader that keeps taking bytes is never cut off.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::transport::ClientStream;
use tokio::time::{Instant, Sleep};

/// A stream whose writes fail after waiting `limit` for a peer that does not read.
#[derive(Debug)]
pub(crate) struct UnreadLimit {
    stream: ClientStream,
    limit: Duration,
    /// Running while a write is blocked; `None` while writes proceed.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl UnreadLimit {
    pub(crate) fn new(stream: ClientStream, limit: Duration) -> Self {
        UnreadLimit {
            stream,
            limit,
            stalled: None,
        }
    }

    /// The stream itself (after the upgrade, when the session takes over writing).
    pub(crate) fn into_inner(self) -> ClientStream {
        self.stream
    }

    /// A write could not proceed: start or check the stall timer.
    fn blocked(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client has not read its responses",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for UnreadLimit {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for UnreadLimit {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Pending => self.blocked(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.blocked(cx),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
