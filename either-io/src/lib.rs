//! One of two byte streams as one type: [`EitherIo`] is `AsyncRead` and `AsyncWrite`
//! (vectored writes included) whichever it holds.
//!
//! chat-server and loadgen both carry a connection that is plain TCP or TLS over TCP, and
//! everything above it (hyper, the WebSocket frames, the session's reader and writer)
//! must not care which. This crate is that stream, written once: the forwarding here, the
//! connection and its halves in [`tcp`].

pub mod tcp;

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `Plain` or `Tls`: by convention the first is the plain stream, the second the TLS one.
#[derive(Debug)]
pub enum EitherIo<P, T> {
    Plain(P),
    Tls(T),
}

/// Runs `$call` on whichever stream `$self` (a pinned `EitherIo`) holds.
macro_rules! either {
    ($self:ident, $inner:ident => $call:expr) => {
        match $self.get_mut() {
            EitherIo::Plain($inner) => $call,
            EitherIo::Tls($inner) => $call,
        }
    };
}

impl<P, T> AsyncRead for EitherIo<P, T>
where
    P: AsyncRead + Unpin,
    T: AsyncRead + Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl<P, T> AsyncWrite for EitherIo<P, T>
where
    P: AsyncWrite + Unpin,
    T: AsyncWrite + Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        either!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            EitherIo::Plain(s) => s.is_write_vectored(),
            EitherIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn both_sides_read_and_write_through() {
        let (a, mut a_peer) = tokio::io::duplex(64);
        let (b, mut b_peer) = tokio::io::duplex(64);
        let mut plain: EitherIo<_, tokio::io::DuplexStream> = EitherIo::Plain(a);
        let mut tls: EitherIo<tokio::io::DuplexStream, _> = EitherIo::Tls(b);
        plain.write_all(b"left").await.unwrap();
        let written = tls
            .write_vectored(&[IoSlice::new(b"ri"), IoSlice::new(b"ght")])
            .await
            .unwrap();
        assert!(written >= 2, "at least the first slice");
        let mut buf = [0u8; 4];
        a_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"left");
        let mut buf = [0u8; 2];
        b_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ri");
        b_peer.write_all(b"ok").await.unwrap();
        let mut buf = [0u8; 2];
        tls.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ok");
    }
}
