//! One conformance user: a logged-in connection whose frames are read by a background
//! task into a channel, so a check can wait for "the next text", "a close" or "silence"
//! with a deadline instead of blocking on the socket.
//!
//! Checks recognise their own messages by a unique token *inside* the text, never by the
//! exact ` -- FROM ` format, so that a server breaking one rule (say the format, M1) does
//! not make the checks of other rules (order, echo) fail as well.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, OpCode, Payload};
use tokio::sync::mpsc;

use crate::connection::{self, ConnectError, Connected, FrameReader, Incoming, Writer};
use crate::credentials::Credentials;
use crate::protocol::{Inbound, Profile};
use crate::target::Target;
use crate::tls::TlsClient;

/// Largest frame a conformance reader accepts (a check may provoke big ones).
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// What the reader task saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A Text message's bytes.
    Text(Vec<u8>),
    /// A Binary message.
    Binary,
    /// A Pong.
    Pong,
    /// A Close frame (the reader stops after it).
    Close { code: Option<u16>, reason: String },
    /// The connection ended without a Close frame (EOF, reset, protocol error).
    Dropped(String),
}

impl Event {
    /// Whether this event ends the connection.
    pub fn is_end(&self) -> bool {
        matches!(self, Event::Close { .. } | Event::Dropped(_))
    }

    /// The event described for a report: `Close 4001 "replaced…"` or `TCP drop (eof)`.
    pub fn describe_end(&self) -> String {
        match self {
            Event::Close {
                code: Some(code),
                reason,
            } => format!("Close {code} {reason:?}"),
            Event::Close { code: None, reason } if !reason.is_empty() => reason.clone(),
            Event::Close { code: None, .. } => "Close (no code)".into(),
            Event::Dropped(why) => format!("TCP drop ({why})"),
            Event::Text(_) => "a text message".into(),
            Event::Binary => "a binary message".into(),
            Event::Pong => "a pong".into(),
        }
    }
}

/// Where and how checks connect.
///
/// With several nodes of one cluster, chat logins ([`Peer::login`]) take the nodes in
/// turn, starting again from the first at every check, so each check's users are spread
/// over the nodes and its rule is checked *across* them (docs/protocol.md C1). Checks
/// that speak raw HTTP use the first node.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The first node.
    pub target: Target,
    pub addr: SocketAddr,
    /// Handshake deadline.
    pub connect_timeout: Duration,
    /// Every node, the first included.
    pub nodes: Vec<(Target, SocketAddr)>,
    /// The node the next login goes to (shared by the clones one check hands out).
    turn: Arc<AtomicUsize>,
    /// How `wss://` connections are made (`--ca-file`, `--insecure`); defaults when `None`.
    pub tls: Option<TlsClient>,
    /// What logins prove their names with (`--jwt-secret-file`, `--jwt-private-key`):
    /// every login of every check carries a token minted for its name. `None`: no token.
    pub credentials: Option<Arc<Credentials>>,
    /// The protocol the server speaks (`--protocol`): how peers log in, frame what they
    /// send, and which frames they answer or take as the session's end.
    pub protocol: Arc<Profile>,
}

impl Endpoint {
    /// An endpoint of `nodes` (at least one).
    pub fn new(nodes: Vec<(Target, SocketAddr)>, connect_timeout: Duration) -> Option<Endpoint> {
        let (target, addr) = nodes.first()?.clone();
        Some(Endpoint {
            target,
            addr,
            connect_timeout,
            nodes,
            turn: Arc::new(AtomicUsize::new(0)),
            tls: None,
            credentials: None,
            protocol: Arc::new(Profile::Chat),
        })
    }

    /// Where tokens go (`--token-in`).
    pub fn token_in(&self) -> crate::credentials::TokenPlacement {
        self.credentials
            .as_ref()
            .map_or(Default::default(), |c| c.placement)
    }

    /// A token proving `name`, when conform was given a key (a tokens file's token when
    /// it has a row for `name`).
    pub fn token_for(&self, name: &str) -> Option<String> {
        self.credentials
            .as_ref()?
            .token_for(name)
            .ok()
            .map(|token| token.text)
    }

    /// Where the first node's `/metrics` is.
    pub fn metrics_at(&self) -> crate::scrape::MetricsAt {
        crate::scrape::MetricsAt {
            target: self.target.clone(),
            addr: self.addr,
            tls: self.tls.clone(),
        }
    }

    /// Starts the turns again from the first node (at the start of each check).
    pub fn restart_turns(&self) {
        self.turn.store(0, Relaxed);
    }

    /// The node whose turn it is, advancing the turn.
    fn take_turn(&self) -> usize {
        self.turn.fetch_add(1, Relaxed) % self.nodes.len()
    }
}

/// A logged-in user whose incoming frames arrive on a channel.
pub struct Peer {
    /// The name it logged in with.
    pub name: String,
    /// Shared with the reader, which answers the protocol's pings itself.
    write: Arc<tokio::sync::Mutex<Writer>>,
    protocol: Arc<Profile>,
    events: mpsc::UnboundedReceiver<Event>,
    /// Set once an ending event has been taken from the channel.
    ended: Option<Event>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Peer {
    /// Logs in as `name`, on the node whose turn it is.
    pub async fn login(endpoint: &Endpoint, name: &str) -> Result<Peer, ConnectError> {
        Peer::login_at(endpoint, endpoint.take_turn(), name).await
    }

    /// Logs in as `name` on node `node` (counted modulo the number of nodes).
    pub async fn login_at(
        endpoint: &Endpoint,
        node: usize,
        name: &str,
    ) -> Result<Peer, ConnectError> {
        let (target, addr) = &endpoint.nodes[node % endpoint.nodes.len()];
        let token = endpoint.token_for(name);
        let connected = connection::connect(
            target,
            *addr,
            &connection::Login {
                tls: endpoint.tls.as_ref(),
                token: token.as_deref(),
                token_in: endpoint.token_in(),
                protocol: &endpoint.protocol,
                ..connection::Login::plain(name, endpoint.connect_timeout)
            },
        )
        .await?;
        Ok(Peer::speaking(name, connected, endpoint.protocol.clone()))
    }

    /// Wraps an already upgraded connection of the chat protocol.
    pub fn from_connected(name: &str, connected: Connected) -> Peer {
        Peer::speaking(name, connected, Arc::new(Profile::Chat))
    }

    /// Wraps an already logged-in connection of `protocol`.
    pub fn speaking(name: &str, connected: Connected, protocol: Arc<Profile>) -> Peer {
        let Connected {
            mut read, write, ..
        } = connected;
        let write = Arc::new(tokio::sync::Mutex::new(write));
        let (tx, events) = mpsc::unbounded_channel();
        let answers = write.clone();
        let inbound = protocol.clone();
        let reader = tokio::spawn(async move {
            let mut frames = FrameReader::new(&mut read, MAX_FRAME);
            loop {
                let event = match frames.next().await {
                    Ok(Incoming::Text(bytes)) => match inbound.inbound(&bytes) {
                        Inbound::Reply(answer) => {
                            let frame = Frame::text(Payload::Owned(answer));
                            let _ = answers.lock().await.write_frame(frame).await;
                            continue;
                        }
                        Inbound::Ended(reason) => {
                            let close = Frame::close(1000, b"");
                            let _ = answers.lock().await.write_frame(close).await;
                            Event::Close { code: None, reason }
                        }
                        Inbound::Chat | Inbound::Stamps | Inbound::Ignore => {
                            Event::Text(bytes.to_vec())
                        }
                    },
                    Ok(Incoming::Binary) => Event::Binary,
                    Ok(Incoming::Pong) => Event::Pong,
                    Ok(Incoming::Ping(_)) => continue,
                    Ok(Incoming::Close { code, reason }) => Event::Close { code, reason },
                    Err(error) => Event::Dropped(short_error(&error.to_string())),
                };
                let end = event.is_end();
                if tx.send(event).is_err() || end {
                    return;
                }
            }
        });
        Peer {
            name: name.to_string(),
            write,
            protocol,
            events,
            ended: None,
            reader,
        }
    }

    /// Sends a chat message, framed as the protocol frames one (as it is, for ours).
    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        let frame = self.protocol.frame_message(text.to_string(), &self.name);
        self.send_frame(Frame::text(Payload::Owned(frame))).await
    }

    /// Sends any frame (the writer masks it).
    pub async fn send_frame(&mut self, frame: Frame<'_>) -> Result<(), String> {
        self.write
            .lock()
            .await
            .write_frame(frame)
            .await
            .map_err(|e| short_error(&e.to_string()))
    }

    /// Sends a raw frame built from parts (for fragments and invalid payloads).
    pub async fn send_raw(
        &mut self,
        fin: bool,
        opcode: OpCode,
        payload: Vec<u8>,
    ) -> Result<(), String> {
        self.send_frame(Frame::new(fin, opcode, None, Payload::Owned(payload)))
            .await
    }

    /// Sends Close 1000, without waiting for the answer.
    pub async fn close(&mut self) {
        let _ = self.send_frame(Frame::close(1000, b"conform done")).await;
    }

    /// The next event before `deadline`, or `None` on timeout. After the connection has
    /// ended, returns the ending event again.
    pub async fn next_event(&mut self, deadline: Instant) -> Option<Event> {
        if let Some(end) = &self.ended {
            return Some(end.clone());
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, self.events.recv()).await {
            Ok(Some(event)) => {
                if event.is_end() {
                    self.ended = Some(event.clone());
                }
                Some(event)
            }
            Ok(None) => {
                let end = Event::Dropped("reader stopped".into());
                self.ended = Some(end.clone());
                Some(end)
            }
            Err(_) => None,
        }
    }

    /// Waits for the next Text containing `token`, skipping others. `Err` describes why
    /// it did not come: the connection ended, or the deadline passed.
    pub async fn expect_text_containing(
        &mut self,
        token: &str,
        deadline: Instant,
    ) -> Result<Vec<u8>, String> {
        loop {
            match self.next_event(deadline).await {
                Some(Event::Text(bytes)) if contains(&bytes, token.as_bytes()) => return Ok(bytes),
                Some(end) if end.is_end() => {
                    return Err(format!("connection ended first: {}", end.describe_end()))
                }
                Some(_) => continue,
                None => return Err("not received before the deadline".into()),
            }
        }
    }

    /// Waits for the connection to end (Close frame or drop), discarding messages.
    pub async fn expect_end(&mut self, deadline: Instant) -> Option<Event> {
        loop {
            match self.next_event(deadline).await {
                Some(end) if end.is_end() => return Some(end),
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// Every Text received until `deadline` (stops early if the connection ends).
    pub async fn texts_until(&mut self, deadline: Instant) -> Vec<Vec<u8>> {
        let mut texts = Vec::new();
        while let Some(event) = self.next_event(deadline).await {
            match event {
                Event::Text(bytes) => texts.push(bytes),
                end if end.is_end() => break,
                _ => {}
            }
        }
        texts
    }

    /// Whether the connection has been seen to end.
    pub fn ended(&self) -> Option<&Event> {
        self.ended.as_ref()
    }
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fn short_error(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}
