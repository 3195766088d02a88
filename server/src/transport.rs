//! The byte stream of one client connection — plain TCP, or TLS over TCP when the server
//! terminates TLS ([`crate::tls`]) — and its two halves once the connection is a session.
//!
//! Everything above this file (hyper before the upgrade, the session's reader and writer
//! after it) sees one type either way, so plain and TLS connections share one code path.
//! A plain connection keeps what makes an idle session cheap: its halves are the socket's
//! own, and an idle reader waits for readability without a buffer. A TLS session always
//! has rustls's buffers, so its reader is made at once.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// An accepted connection.
#[derive(Debug)]
pub(crate) enum ClientStream {
    Plain(TcpStream),
    /// Boxed: a TLS connection's state is a few KiB.
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    /// The reading and writing halves, for a session's reader and writer tasks.
    pub(crate) fn into_split(self) -> (SessionRead, SessionWrite) {
        match self {
            ClientStream::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (SessionRead::Plain(read), SessionWrite::Plain(write))
            }
            ClientStream::Tls(tls) => {
                let (read, write) = tokio::io::split(*tls);
                (SessionRead::Tls(read), SessionWrite::Tls(write))
            }
        }
    }
}

/// The reading half of a session's connection.
#[derive(Debug)]
pub(crate) enum SessionRead {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

impl SessionRead {
    /// Waits until the peer has sent something, without a read buffer (plain); a TLS
    /// connection is ready at once (its reader buffers anyway).
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            SessionRead::Plain(read) => read.readable().await,
            SessionRead::Tls(_) => Ok(()),
        }
    }
}

/// The writing half of a session's connection.
#[derive(Debug)]
pub(crate) enum SessionWrite {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

/// Forwards `AsyncRead` to whichever variant `$self` is.
macro_rules! read_either {
    ($self:ident, $inner:ident => $call:expr) => {
        match $self.get_mut() {
            Self::Plain($inner) => $call,
            Self::Tls($inner) => $call,
        }
    };
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        read_either!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncRead for SessionRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        read_either!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

/// Implements `AsyncWrite` by forwarding to whichever variant the value is.
macro_rules! write_either {
    ($type:ty) => {
        impl AsyncWrite for $type {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                read_either!(self, s => Pin::new(s).poll_write(cx, buf))
            }

            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                read_either!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
            }

            fn is_write_vectored(&self) -> bool {
                match self {
                    Self::Plain(s) => s.is_write_vectored(),
                    Self::Tls(s) => s.is_write_vectored(),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                read_either!(self, s => Pin::new(s).poll_flush(cx))
            }

            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                read_either!(self, s => Pin::new(s).poll_shutdown(cx))
            }
        }
    };
}

write_either!(ClientStream);
write_either!(SessionWrite);
