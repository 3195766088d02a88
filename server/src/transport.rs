//! The byte stream of one client connection — plain TCP, or TLS over TCP when the server
//! terminates TLS ([`crate::tls`]) — and its two halves once the connection is a session:
//! `either-io`'s connection, with rustls's server stream. Everything above this file
//! (hyper before the upgrade, the session's reader and writer after it) sees one type
//! either way, so plain and TLS connections share one code path.

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub(crate) use either_io::tcp::split;

/// An accepted connection: plain TCP, or TLS.
pub(crate) type ClientStream = either_io::tcp::Stream<TlsStream<TcpStream>>;

/// The reading half of a connection.
pub(crate) type SessionRead = either_io::tcp::ReadPart<TlsStream<TcpStream>>;

/// The writing half of a connection.
pub(crate) type SessionWrite = either_io::tcp::WritePart<TlsStream<TcpStream>>;
