//! The byte stream of one client connection — plain TCP, or TLS over TCP when the server
//! terminates TLS ([`crate::tls`]) — and its two halves once the connection is a session.
//!
//! Everything above this file (hyper before the upgrade, the session's reader and writer
//! after it) sees one type either way, so plain and TLS connections share one code path
//! (the forwarding is `either-io`'s). A plain connection keeps what makes an idle session
//! cheap: its halves are the socket's own, and an idle reader waits for readability
//! without a buffer. A TLS session always has rustls's buffers, so its reader is made at
//! once.

use std::io;

use either_io::EitherIo;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// An accepted connection: plain TCP, or TLS (boxed: its state is a few KiB).
pub(crate) type ClientStream = EitherIo<TcpStream, Box<TlsStream<TcpStream>>>;

/// The reading half of a connection.
pub(crate) type SessionRead = EitherIo<OwnedReadHalf, ReadHalf<TlsStream<TcpStream>>>;

/// The writing half of a connection.
pub(crate) type SessionWrite = EitherIo<OwnedWriteHalf, WriteHalf<TlsStream<TcpStream>>>;

/// The reading and writing halves of a connection, for a session's reader and writer tasks.
pub(crate) fn split(stream: ClientStream) -> (SessionRead, SessionWrite) {
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
pub(crate) async fn readable(read: &SessionRead) -> io::Result<()> {
    match read {
        EitherIo::Plain(read) => read.readable().await,
        EitherIo::Tls(_) => Ok(()),
    }
}
