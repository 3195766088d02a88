//! The cluster bus: how several chat-server nodes act as one server over Redis
//! (docs/protocol.md C1–C6).
//!
//! Without a bus the server is a complete single node (C6) and none of this runs. With
//! one (`--bus redis://HOST:PORT`), each node:
//! - publishes every chat message it receives on one channel, through one connection in
//!   the order its senders' read loops handed them over, so a sender's order holds on
//!   every node (C2), and delivers what other nodes publish to its own users; it ignores
//!   its own publications by an instance nonce (no self-delivery, no double local
//!   delivery);
//! - numbers every login with `INCR` on one counter before the login registers (and
//!   before its `101`), announcing it to every node in the same Redis script, so the
//!   highest number is the one live session of a name cluster-wide (C3); the registry
//!   ([`crate::registry`]) applies the rule;
//! - while Redis is unreachable (C4), goes on delivering locally, refuses logins with
//!   `503` (it could not number them), counts what it could not forward, reconnects with
//!   capped backoff ([`link`]) and, before it accepts logins again, resynchronises.
//!
//! The [`Bus`] is the handle sessions use (never awaiting on a hot path: a chat message is
//! queued for the publisher without waiting); [`link`] is the task that owns the
//! connections; [`wire`] is the byte format of publications.

pub mod link;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Chat messages (and other publications) waiting for the publisher; beyond this the bus
/// is too slow and a message is counted as not forwarded rather than waited for.
const OUTBOUND_QUEUE: usize = 64 * 1024;

/// How long a Redis command may take before the bus is considered down.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest wait between reconnection attempts. Together with [`RESPONSE_TIMEOUT`] it
/// bounds resynchronisation: once Redis is reachable again, a node is back (and has closed
/// every local session a newer login replaced during the outage) within
/// `BACKOFF_CAP + 2 x RESPONSE_TIMEOUT` plus one round trip per local session, pipelined.
pub const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// Redis key names; every node of one cluster must use the same.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The pub/sub channel every node publishes to and subscribes to.
    pub channel: String,
    /// The login counter (C3).
    pub counter: String,
    /// Hash: NAME → the sequence number of its newest login, for resynchronisation.
    pub owners: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            channel: "chat:events".into(),
            counter: "chat:login-seq".into(),
            owners: "chat:owners".into(),
        }
    }
}

/// Why the bus could not be joined at start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The URL is not a Redis URL.
    #[error("bad bus URL {url:?}: {why} (expected redis://HOST:PORT)")]
    Url { url: String, why: String },
    /// Redis did not answer.
    #[error("cannot reach the bus at {url}: {why}")]
    Unreachable { url: String, why: String },
}

/// The bus is down: a login cannot be numbered now.
#[derive(Debug, thiserror::Error)]
#[error("chat bus unavailable: {0}")]
pub struct BusDown(pub String);

/// What the publisher sends, in order.
#[derive(Debug)]
pub enum Outbound {
    /// A chat message, already encoded ([`wire::chat`]).
    Chat(Bytes),
    /// A probe of this node's own round trip ([`wire::probe`]).
    Probe(Bytes),
    /// A session ended: drop its name's owner entry if it is still this login's.
    Forget { name: Arc<str>, seq: u64 },
}

/// The handle every session holds (through `Shared`).
#[derive(Debug)]
pub struct Bus {
    /// The URL, for logs.
    url: String,
    client: redis::Client,
    keys: Keys,
    /// Random per process: tells this node's publications from everyone else's.
    nonce: u64,
    /// Whether the link is up (connected, subscribed and resynchronised).
    up: AtomicBool,
    /// The command connection while the link is up (cloned out, never held across an
    /// await under the lock).
    commands: Mutex<Option<MultiplexedConnection>>,
    outbound: mpsc::Sender<Outbound>,
    /// The highest login number this node has seen, so that a counter Redis lost (a
    /// restart) is set above it again before any login is numbered.
    highest_seen: AtomicU64,
    /// The deliberate `Fault::BusSwapPairs`: each sender's message held back until its
    /// next one.
    #[cfg(feature = "fault-injection")]
    swap_held: Option<Mutex<std::collections::HashMap<String, Bytes>>>,
}

impl Bus {
    /// A bus handle for `url` and the receiving end of its publisher queue, for
    /// [`link::run`]. Nothing is connected yet.
    #[cfg_attr(not(feature = "fault-injection"), allow(unused_variables))]
    pub fn new(
        url: &str,
        keys: Keys,
        fault: Option<crate::fault::Fault>,
    ) -> Result<(Arc<Bus>, mpsc::Receiver<Outbound>), BusError> {
        use redis::IntoConnectionInfo;
        let bad_url = |error: redis::RedisError| BusError::Url {
            url: url.into(),
            why: error.to_string(),
        };
        // TCP_NODELAY: the client's default leaves Nagle's algorithm on, which holds a
        // pipelined publication back until the previous one is acknowledged.
        let info = url
            .into_connection_info()
            .map_err(bad_url)?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client = redis::Client::open(info).map_err(bad_url)?;
        let (outbound, receiver) = mpsc::channel(OUTBOUND_QUEUE);
        let bus = Bus {
            url: url.into(),
            client,
            keys,
            nonce: instance_nonce(),
            up: AtomicBool::new(false),
            commands: Mutex::new(None),
            outbound,
            highest_seen: AtomicU64::new(0),
            #[cfg(feature = "fault-injection")]
            swap_held: (fault == Some(crate::fault::Fault::BusSwapPairs)).then(Default::default),
        };
        Ok((Arc::new(bus), receiver))
    }

    /// Whether logins can be numbered and messages forwarded now.
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }

    /// The URL the bus was given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Numbers a login of `name` and announces it to every node, in one script inside
    /// Redis: `INCR` the counter, record the number as the name's owner, publish the
    /// notice.
    pub async fn take_login(&self, name: &str) -> Result<u64, BusDown> {
        if !self.is_up() {
            return Err(BusDown("the node is not connected to Redis".into()));
        }
        let mut connection = self
            .lock_commands()
            .clone()
            .ok_or_else(|| BusDown("the node is not connected to Redis".into()))?;
        let seq: u64 = redis::cmd("EVAL")
            .arg(LOGIN_SCRIPT)
            .arg(3)
            .arg(&self.keys.counter)
            .arg(&self.keys.owners)
            .arg(&self.keys.channel)
            .arg(wire::login_prefix(self.nonce))
            .arg(name)
            .query_async(&mut connection)
            .await
            .map_err(|error| BusDown(error.to_string()))?;
        self.highest_seen.fetch_max(seq, Relaxed);
        Ok(seq)
    }

    /// Queues a chat message for the other nodes without waiting; counts it as not
    /// forwarded when the bus is down or too far behind (C4).
    pub fn publish_chat(&self, sender: &str, frame: &[u8], metrics: &Metrics) {
        if !self.is_up() {
            Metrics::inc(&metrics.bus_unforwarded);
            return;
        }
        let publication = wire::chat(self.nonce, sender, frame);
        #[cfg(feature = "fault-injection")]
        if let Some(held) = &self.swap_held {
            let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
            match held.remove(sender) {
                None => {
                    held.insert(sender.to_string(), publication);
                    return;
                }
                Some(first) => {
                    self.forward(Outbound::Chat(publication), metrics);
                    self.forward(Outbound::Chat(first), metrics);
                    return;
                }
            }
        }
        self.forward(Outbound::Chat(publication), metrics);
    }

    fn forward(&self, item: Outbound, metrics: &Metrics) {
        if self.outbound.try_send(item).is_err() {
            Metrics::inc(&metrics.bus_unforwarded);
        }
    }

    /// A session of `name` numbered `seq` ended: its owner entry can go (best effort; a
    /// stale entry only costs memory, as any later login has a higher number).
    pub fn forget(&self, name: Arc<str>, seq: u64) {
        if seq > 0 && self.is_up() {
            let _ = self.outbound.try_send(Outbound::Forget { name, seq });
        }
    }

    fn lock_commands(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        // Poisoning means a panic under the lock (a bug); the slot is still usable.
        self.commands.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Numbers a login (C3): KEYS counter, owners, channel; ARGV notice prefix, name.
/// (`%d`, because Lua would print a number of 16 digits in exponent form.)
const LOGIN_SCRIPT: &str = r"
local seq = redis.call('INCR', KEYS[1])
local text = string.format('%d', seq)
redis.call('HSET', KEYS[2], ARGV[2], text)
redis.call('PUBLISH', KEYS[3], ARGV[1] .. text .. ' ' .. ARGV[2])
return seq";

/// One per server instance: the time, the process id and a per-process count mixed, so
/// two nodes started at the same instant, in one process or on one machine, still differ.
fn instance_nonce() -> u64 {
    static INSTANCES: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let count = INSTANCES.fetch_add(1, Relaxed);
    let mut z = nanos ^ (u64::from(std::process::id()) << 32) ^ count.rotate_right(16);
    // SplitMix64's finaliser: spreads nearby inputs over the whole range.
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
