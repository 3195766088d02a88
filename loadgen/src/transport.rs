//! The byte stream of one connection to the server — plain TCP for `ws://`, TLS over TCP
//! for `wss://` ([`crate::tls`]) — and its two halves once it is a WebSocket.
//!
//! Everything above this file (hyper's handshake, the frame reader and writer, the raw
//! requests of `conform`) sees one type either way, so plain and TLS connections share one
//! code path (the forwarding is `either-io`'s). A plain connection keeps what makes an
//! idle simulated user cheap: its halves are the socket's own, and an idle reader waits
//! for readability without a buffer. A TLS connection has rustls's buffers anyway, so its
//! reader is made at once.

use std::io;

use either_io::EitherIo;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A connection to the server: plain TCP, or TLS (boxed: its state is a few KiB).
pub type ClientStream = EitherIo<TcpStream, Box<TlsStream<TcpStream>>>;

/// The reading half of a connection.
pub type StreamRead = EitherIo<OwnedReadHalf, ReadHalf<TlsStream<TcpStream>>>;

/// The writing half of a connection.
pub type StreamWrite = EitherIo<OwnedWriteHalf, WriteHalf<TlsStream<TcpStream>>>;

/// The reading and writing halves of a connection, for a user's reader and writer.
pub fn split(stream: ClientStream) -> (StreamRead, StreamWrite) {
    match stream {
        EitherIo::Plain(tcp) => {
            let (read, write) = tcp.into_split();
            (EitherIo::Plain(read), EitherIo::Plain(write))
        }
        EitherIo::Tls(tls) => {
            let (read, write) = tokio::io::split(*tls);
            (EitherIo::Tls(read), EitherIo::Tls(write))
        }
    }
}

/// Waits until the peer has sent something, without a read buffer (plain); a TLS
/// connection is ready at once (its reader buffers anyway).
pub async fn readable(read: &StreamRead) -> io::Result<()> {
    match read {
        EitherIo::Plain(read) => read.readable().await,
        EitherIo::Tls(_) => Ok(()),
    }
}
