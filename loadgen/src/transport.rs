//! The byte stream of one connection to the server — plain TCP for `ws://`, TLS over TCP
//! for `wss://` ([`crate::tls`]) — and its two halves once it is a WebSocket:
//! `either-io`'s connection, with rustls's client stream. Everything above this file
//! (hyper's handshake, the frame reader and writer, the raw requests of `conform`) sees
//! one type either way, so plain and TLS connections share one code path.

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub use either_io::tcp::split;

/// A connection to the server: plain TCP, or TLS.
pub type ClientStream = either_io::tcp::Stream<TlsStream<TcpStream>>;

/// The reading half of a connection.
pub type StreamRead = either_io::tcp::ReadPart<TlsStream<TcpStream>>;

/// The writing half of a connection.
pub type StreamWrite = either_io::tcp::WritePart<TlsStream<TcpStream>>;
