//! A loopback TCP proxy for the accuracy tests (`tests/accuracy.rs`): it holds every
//! server-to-client chunk for a fixed delay, can drop one proxied connection (both sides
//! closed) and can silently throw away what the server sends one connection.
//!
//! Client-to-server bytes are forwarded as soon as they are read. Each chunk read from the
//! server is stamped with the instant its read returned and written to the client at
//! `stamp + delay`: one thread keeps reading while another sleeps until each chunk's own
//! deadline, so one chunk's wait never postpones the next one's, and since every deadline
//! is an absolute instant, timer errors do not accumulate.
//!
//! **The proxy's own error.** Plain threads and blocking sockets rather than tokio, on
//! purpose: tokio's timer has a resolution of one millisecond and rounds a deadline up to
//! its next tick, and its runtime then parks with a timeout also rounded up to the
//! millisecond, so a tokio version of this proxy held a 20 ms chunk for 20–22 ms (median
//! 21.3 ms) — most of the test's 1.5 ms bound. `std::thread::sleep` is a `clock_nanosleep`
//! on Linux (high-resolution timers, 50 µs default timer slack), so a chunk is held for the
//! delay plus tens of µs plus however long the thread waits for a core. The proxy does not
//! assume this: [`DelayProxy::holds_us`] is the hold of every chunk as measured (from the
//! read's return to the start of its write), and the test prints and bounds it.
//!
//! Compiled only into `accuracy.rs` (by `#[path]`), not through `support/mod.rs`, which
//! every test binary includes.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running proxy. Dropping it closes every proxied connection and joins its threads.
pub struct DelayProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

/// What the proxy's threads and its handle share.
struct Shared {
    upstream: SocketAddr,
    delay: Duration,
    /// Set when the proxy is dropped: the accept loop ends.
    stopping: AtomicBool,
    /// Hold of every server-to-client chunk, in µs.
    holds_us: Mutex<Vec<u64>>,
    /// Every connection accepted so far.
    connections: Mutex<Vec<Arc<Proxied>>>,
}

/// One proxied connection.
struct Proxied {
    /// The client's socket and the server's (clones), to shut both down.
    sockets: [TcpStream; 2],
    /// The first line the client sent (the WebSocket handshake's request line), to tell
    /// which user a connection belongs to.
    request_line: Mutex<String>,
    /// Set: what the server sends is read and thrown away instead of forwarded.
    discard: AtomicBool,
    /// Its three threads (client to server, server reader, client writer).
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Proxied {
    /// Shuts down both sides: every thread of the connection sees an end or an error.
    fn close(&self) {
        for socket in &self.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

impl DelayProxy {
    /// Listens on a free loopback port and forwards each connection to `upstream`,
    /// holding server-to-client bytes for `delay`.
    pub fn start(upstream: SocketAddr, delay: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            upstream,
            delay,
            stopping: AtomicBool::new(false),
            holds_us: Mutex::new(Vec::new()),
            connections: Mutex::new(Vec::new()),
        });
        let accept = std::thread::spawn({
            let shared = shared.clone();
            move || accept_loop(listener, shared)
        });
        DelayProxy {
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// The `ws://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// The hold of every server-to-client chunk so far, in µs, sorted.
    pub fn holds_us(&self) -> Vec<u64> {
        let mut holds = lock(&self.shared.holds_us).clone();
        holds.sort_unstable();
        holds
    }

    /// Closes both sides of the connection of user `name` (found by its handshake);
    /// returns whether there was one.
    pub fn drop_user(&self, name: &str) -> bool {
        self.find_user(name).map(|conn| conn.close()).is_some()
    }

    /// From now on, throws away what the server sends to user `name` while keeping the
    /// connection open; returns whether there was one.
    pub fn discard_user(&self, name: &str) -> bool {
        self.find_user(name)
            .map(|conn| conn.discard.store(true, Ordering::Relaxed))
            .is_some()
    }

    fn find_user(&self, name: &str) -> Option<Arc<Proxied>> {
        // `GET /?user=NAME HTTP/1.1` (loadgen's handshake; NAME percent-encoded).
        let needle = format!("?user={name} ");
        lock(&self.shared.connections)
            .iter()
            .find(|c| lock(&c.request_line).contains(&needle))
            .cloned()
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        // Wake the accept loop, which then sees `stopping`.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let connections = std::mem::take(&mut *lock(&self.shared.connections));
        for conn in &connections {
            conn.close();
        }
        for conn in &connections {
            for thread in std::mem::take(&mut *lock(&conn.threads)) {
                let _ = thread.join();
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::Relaxed) {
            return;
        }
        let Ok(client) = client else { continue };
        let Ok(server) = TcpStream::connect(shared.upstream) else {
            continue; // dropping `client` closes it: the server is not there
        };
        // Both sides: no Nagle, or small chunks would wait for ACKs and add delay.
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let (Ok(client_c), Ok(server_c)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let conn = Arc::new(Proxied {
            sockets: [client_c, server_c],
            request_line: Mutex::new(String::new()),
            discard: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
        });
        let (Ok(client_read), Ok(server_write)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let (chunks, queued) = mpsc::channel();
        let threads = vec![
            std::thread::spawn({
                let conn = conn.clone();
                move || client_to_server(client_read, server_write, &conn)
            }),
            std::thread::spawn({
                let conn = conn.clone();
                move || read_server(server, chunks, &conn)
            }),
            std::thread::spawn({
                let shared = shared.clone();
                move || write_client(queued, client, &shared)
            }),
        ];
        *lock(&conn.threads) = threads;
        lock(&shared.connections).push(conn);
    }
}

/// Forwards the client's bytes at once, noting its first line.
fn client_to_server(mut from: TcpStream, mut to: TcpStream, conn: &Proxied) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = true;
    while let Ok(n @ 1..) = from.read(&mut buf) {
        if first {
            first = false;
            let line = buf[..n].split(|&b| b == b'\n').next().unwrap_or_default();
            *lock(&conn.request_line) = String::from_utf8_lossy(line).into_owned();
        }
        if to.write_all(&buf[..n]).is_err() {
            return;
        }
    }
    // The client closed its sending side: pass that on.
    let _ = to.shutdown(Shutdown::Write);
}

/// Reads the server's bytes as fast as they come, stamping each chunk with the instant
/// its read returned.
fn read_server(mut from: TcpStream, chunks: mpsc::Sender<(Instant, Vec<u8>)>, conn: &Proxied) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        let read_at = Instant::now();
        if conn.discard.load(Ordering::Relaxed) {
            continue;
        }
        if chunks.send((read_at, buf[..n].to_vec())).is_err() {
            return;
        }
    }
    // Returning drops `chunks`: the writer finishes the queue, then closes the client side.
}

/// Writes each chunk to the client at its read instant plus the delay.
fn write_client(queued: mpsc::Receiver<(Instant, Vec<u8>)>, mut to: TcpStream, shared: &Shared) {
    for (read_at, chunk) in queued {
        let due = read_at + shared.delay;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let hold = read_at.elapsed().as_micros() as u64;
        lock(&shared.holds_us).push(hold);
        if to.write_all(&chunk).is_err() {
            return;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
