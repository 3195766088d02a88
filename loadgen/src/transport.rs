//! The byte stream of one connection to the server — plain TCP for `ws://`, TLS over TCP
//! for `wss://` ([`crate::tls`]) — and its two halves once it is a WebSocket.
//!
//! Everything above this file (hyper's handshake, the frame reader and writer, the raw
//! requests of `conform`) sees one type either way, so plain and TLS connections share one
//! code path. A plain connection keeps what makes an idle simulated user cheap: its halves
//! are the socket's own, and an idle reader waits for readability without a buffer. A TLS
//! connection has rustls's buffers anyway, so its reader is made at once.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A connection to the server.
#[derive(Debug)]
pub enum ClientStream {
    Plain(TcpStream),
    /// Boxed: a TLS connection's state is a few KiB.
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    /// The reading and writing halves, for a user's reader and writer.
    pub fn into_split(self) -> (StreamRead, StreamWrite) {
        match self {
            ClientStream::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (StreamRead::Plain(read), StreamWrite::Plain(write))
            }
            ClientStream::Tls(tls) => {
                let (read, write) = tokio::io::split(*tls);
                (StreamRead::Tls(read), StreamWrite::Tls(write))
            }
        }
    }
}

/// The reading half of a connection.
#[derive(Debug)]
pub enum StreamRead {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

impl StreamRead {
    /// Waits until the peer has sent something, without a read buffer (plain); a TLS
    /// connection is ready at once (its reader buffers anyway).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            StreamRead::Plain(read) => read.readable().await,
            StreamRead::Tls(_) => Ok(()),
        }
    }
}

/// The writing half of a connection.
#[derive(Debug)]
pub enum StreamWrite {
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

impl AsyncRead for StreamRead {
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
write_either!(StreamWrite);
