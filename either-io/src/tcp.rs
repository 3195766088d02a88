//! A connection that is plain TCP or TLS over TCP, and its two halves once it carries a
//! WebSocket — the same for chat-server (a server-side TLS stream) and loadgen (a client
//! side one), so it is written here once, generic over the TLS stream.
//!
//! A plain connection keeps what makes an idle WebSocket cheap: its halves are the
//! socket's own ([`TcpStream::into_split`]), and an idle reader waits for readability
//! without a buffer ([`readable`]). A TLS connection has rustls's buffers anyway, so its
//! reader is made at once.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::EitherIo;

/// A connection: plain TCP, or the TLS stream `T` over TCP (boxed: its state is a few KiB).
pub type Stream<T> = EitherIo<TcpStream, Box<T>>;

/// The reading half of a [`Stream`].
pub type ReadPart<T> = EitherIo<OwnedReadHalf, ReadHalf<T>>;

/// The writing half of a [`Stream`].
pub type WritePart<T> = EitherIo<OwnedWriteHalf, WriteHalf<T>>;

/// The reading and writing halves of a connection, for a reader and a writer task.
pub fn split<T: AsyncRead + AsyncWrite>(stream: Stream<T>) -> (ReadPart<T>, WritePart<T>) {
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
///
/// It waits in the socket's own reader slot (`poll_read_ready`), as a read would, not in
/// the list of `readable()` waiters. That slot still holds the waker of whichever task
/// last read the socket before it was handed over — the HTTP task that read the upgrade
/// request — and a waker keeps its task's memory (its whole future, about a KiB) alive.
/// `readable()` would leave that finished task allocated for as long as the connection
/// lives, because a reader that waits for readability and then finds data never makes a
/// read that stores its own waker in the slot.
pub async fn readable<T>(read: &ReadPart<T>) -> io::Result<()> {
    match read {
        EitherIo::Plain(read) => {
            let socket: &TcpStream = read.as_ref();
            std::future::poll_fn(|cx| socket.poll_read_ready(cx)).await
        }
        EitherIo::Tls(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_plain_connection_splits_into_the_sockets_own_halves() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let stream: Stream<TcpStream> = EitherIo::Plain(client);
        let (mut read, mut write) = split(stream);
        assert!(matches!(read, EitherIo::Plain(_)));
        server.write_all(b"hi").await.unwrap();
        readable(&read).await.unwrap();
        let mut buf = [0u8; 2];
        read.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        write.write_all(b"yo").await.unwrap();
        server.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"yo");
    }
}
