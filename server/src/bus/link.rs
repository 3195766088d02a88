//! The bus link: the one task that owns this node's two Redis connections (one for
//! commands and publications, one subscribed to the channel), keeps them up, and turns
//! what other nodes publish into local deliveries and evictions.
//!
//! Its life is a loop of *connect → serve → lose*. Connecting is also resynchronising
//! (docs/protocol.md C4), done before the node accepts logins again:
//! 1. subscribe first, so nothing published from here on is missed;
//! 2. set the login counter above every number this node has seen and above the wall
//!    clock in microseconds, so a Redis that restarted empty never hands out a number
//!    lower than one already in use;
//! 3. re-announce every local session (name and number) as the owner of its name unless
//!    a newer login owns it, and close the local sessions that a newer login replaced
//!    while the link was down.
//!
//! A lost link (a failed command, the subscription ending, or this node's own probe not
//! coming back through the bus in time) marks the bus down at once: logins get `503`,
//! chat messages are counted as not forwarded (never retried, so never delivered twice),
//! local delivery goes on. Reconnection backs off from 50 ms up to [`BACKOFF_CAP`].

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubStream};
use redis::AsyncConnectionConfig;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::wire::{self, BusMessage};
use super::{Bus, Outbound, BACKOFF_CAP, RESPONSE_TIMEOUT};
use crate::frame::{self, close_code};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::outbox::Outgoing;
use crate::shutdown::ShutdownSignal;

/// How often a node probes its own round trip through the bus.
const PROBE_EVERY: Duration = Duration::from_millis(500);

/// A bus whose probes have not come back for this long is considered down (Redis hung,
/// or the subscription silently dead).
const PROBE_DEADLINE: Duration = Duration::from_secs(3);

/// Publications sent in one pipeline at most.
const BATCH: usize = 256;

/// Local sessions re-announced in one pipeline at most.
const REASSERT_BATCH: usize = 1000;

/// Raises the counter to at least ARGV[1]: KEYS counter.
const RAISE_COUNTER_SCRIPT: &str = r"
local now = tonumber(redis.call('GET', KEYS[1]) or '0')
if now < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1";

/// Re-announces a local session after a reconnect: KEYS owners, channel; ARGV name, seq,
/// notice prefix. Returns the owner's number afterwards (the session's own, or a newer
/// login's). Numbers are below 2^53 (microseconds of the wall clock plus logins), so Lua's
/// doubles hold them exactly; they travel as decimal strings.
const REASSERT_SCRIPT: &str = r"
local owner = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local mine = tonumber(ARGV[2])
if owner < mine then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('PUBLISH', KEYS[2], ARGV[3] .. ARGV[2] .. ' ' .. ARGV[1])
  return mine
end
return owner";

/// Drops a name's owner entry if it is still this login's: KEYS owners; ARGV name, seq.
const FORGET_SCRIPT: &str = r"
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1";

/// Starts the link on a thread of its own (a single-threaded tokio runtime), connects it
/// and returns once the bus is up, or why it could not be joined.
///
/// Why a thread of its own: under load a node's runtime is busy fanning messages out to
/// thousands of writers, and a task there waits its turn behind them; the link's
/// publications and its deliveries from other nodes would wait with it, adding
/// milliseconds to every message that crosses the bus. On its own thread the link only
/// waits for the kernel's scheduler.
pub async fn start(
    shared: Arc<Hub>,
    server_id: String,
    bus: Arc<Bus>,
    outbound: mpsc::Receiver<Outbound>,
    shutdown: ShutdownSignal,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the bus runtime: {e}"))?;
    let (ready, connected) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("chat-bus-{server_id}"))
        .spawn(move || {
            runtime.block_on(async move {
                match connect(&shared, &bus).await {
                    Ok(link) => {
                        let _ = ready.send(Ok(()));
                        run(shared, server_id, bus, outbound, link, shutdown).await;
                    }
                    Err(why) => {
                        let _ = ready.send(Err(why));
                    }
                }
            });
        })
        .map_err(|e| format!("cannot start the bus thread: {e}"))?;
    connected
        .await
        .unwrap_or_else(|_| Err("the bus thread ended before connecting".into()))
}

/// An established, resynchronised link.
pub struct Connected {
    commands: MultiplexedConnection,
    subscription: PubSubStream,
}

/// Connects, subscribes and resynchronises (see the module doc), then marks the bus up.
async fn connect(shared: &Hub, bus: &Bus) -> Result<Connected, String> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(RESPONSE_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut commands = bus
        .client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("command connection: {e}"))?;
    let mut pubsub = tokio::time::timeout(RESPONSE_TIMEOUT, bus.client.get_async_pubsub())
        .await
        .map_err(|_| "subscription connection: timed out".to_string())?
        .map_err(|e| format!("subscription connection: {e}"))?;
    tokio::time::timeout(RESPONSE_TIMEOUT, pubsub.subscribe(&bus.keys.channel))
        .await
        .map_err(|_| "subscribe: timed out".to_string())?
        .map_err(|e| format!("subscribe: {e}"))?;
    let subscription = pubsub.into_on_message();

    let floor = wall_clock_micros().max(bus.highest_seen.load(Relaxed) + 1);
    redis::cmd("EVAL")
        .arg(RAISE_COUNTER_SCRIPT)
        .arg(1)
        .arg(&bus.keys.counter)
        .arg(floor)
        .query_async::<()>(&mut commands)
        .await
        .map_err(|e| format!("raising the login counter: {e}"))?;
    let (kept, closed) = reassert(shared, bus, &mut commands).await?;

    *bus.lock_commands() = Some(commands.clone());
    bus.up.store(true, Relaxed);
    shared.metrics.bus_connected.store(1, Relaxed);
    debug!(kept, closed, "bus resynchronised");
    Ok(Connected {
        commands,
        subscription,
    })
}

/// Step 3 of resynchronising: returns (sessions kept, sessions closed).
async fn reassert(
    shared: &Hub,
    bus: &Bus,
    commands: &mut MultiplexedConnection,
) -> Result<(usize, usize), String> {
    let local: Vec<_> = shared
        .registry
        .snapshot()
        .into_iter()
        .filter(|s| s.seq > 0)
        .collect();
    let prefix = wire::login_prefix(bus.nonce);
    let (mut kept, mut closed) = (0, 0);
    for chunk in local.chunks(REASSERT_BATCH) {
        let mut pipe = redis::pipe();
        for session in chunk {
            pipe.cmd("EVAL")
                .arg(REASSERT_SCRIPT)
                .arg(2)
                .arg(&bus.keys.owners)
                .arg(&bus.keys.channel)
                .arg(&*session.name)
                .arg(session.seq)
                .arg(&prefix);
        }
        let owners: Vec<u64> = pipe
            .query_async(commands)
            .await
            .map_err(|e| format!("resynchronising sessions: {e}"))?;
        for (session, owner) in chunk.iter().zip(owners) {
            if owner > session.seq {
                evict_for(shared, &session.name, owner, Instant::now());
                closed += 1;
            } else {
                kept += 1;
            }
        }
    }
    Ok((kept, closed))
}

/// Serves the link until shutdown; reconnects whenever it is lost.
async fn run(
    shared: Arc<Hub>,
    id: String,
    bus: Arc<Bus>,
    mut outbound: mpsc::Receiver<Outbound>,
    first: Connected,
    mut shutdown: ShutdownSignal,
) {
    let mut connected = first;
    loop {
        let lost = serve(&shared, &bus, &mut outbound, connected, &mut shutdown).await;
        bus.up.store(false, Relaxed);
        *bus.lock_commands() = None;
        shared.metrics.bus_connected.store(0, Relaxed);
        let dropped = drain(&mut outbound, &shared.metrics);
        let Some(why) = lost else { return };
        warn!(%id, url = bus.url(), %why, dropped, "bus link lost: local delivery goes on, logins are refused until it is back");
        let down_since = Instant::now();
        let mut backoff = Duration::from_millis(50);
        connected = loop {
            tokio::select! {
                _ = shutdown.fired() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            // Messages sent meanwhile were counted as not forwarded when they were sent;
            // anything queued since the link went down is stale.
            drain(&mut outbound, &shared.metrics);
            match connect(&shared, &bus).await {
                Ok(connected) => break connected,
                Err(why) => {
                    debug!(%id, %why, ?backoff, "bus reconnect failed");
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        };
        Metrics::inc(&shared.metrics.bus_reconnects);
        info!(%id, url = bus.url(), down_ms = down_since.elapsed().as_millis() as u64, "bus link back, resynchronised; logins accepted again");
    }
}

/// Counts what is left in the publisher queue as not forwarded and empties it.
fn drain(outbound: &mut mpsc::Receiver<Outbound>, metrics: &Metrics) -> u64 {
    let mut dropped = 0;
    while let Ok(item) = outbound.try_recv() {
        if matches!(item, Outbound::Chat(_)) {
            Metrics::inc(&metrics.bus_unforwarded);
            dropped += 1;
        }
    }
    dropped
}

/// Serves one established link. Returns `None` on shutdown, or why the link was lost.
async fn serve(
    shared: &Hub,
    bus: &Bus,
    outbound: &mut mpsc::Receiver<Outbound>,
    connected: Connected,
    shutdown: &mut ShutdownSignal,
) -> Option<String> {
    let Connected {
        commands,
        mut subscription,
    } = connected;
    let publisher = publish(outbound, commands, bus, &shared.metrics);
    tokio::pin!(publisher);
    let mut probes = tokio::time::interval(PROBE_EVERY);
    probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe_heard = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.fired() => return None,
            why = &mut publisher => return Some(why),
            message = subscription.next() => match message {
                Some(message) => receive(shared, bus, message.get_payload_bytes(), &mut probe_heard),
                None => return Some("the subscription ended".into()),
            },
            _ = probes.tick() => {
                let now = Instant::now();
                if now.saturating_duration_since(probe_heard) > PROBE_DEADLINE {
                    return Some(format!("no probe came back through the bus for {PROBE_DEADLINE:?}"));
                }
                let sent_ns = shared.epoch.elapsed().as_nanos() as u64;
                let _ = bus.outbound.try_send(Outbound::Probe(wire::probe(bus.nonce, sent_ns)));
                shared.registry.forget_heard(now);
            }
        }
    }
}

/// Sends queued publications in order, a pipeline at a time, until a command fails.
/// Returns why.
async fn publish(
    outbound: &mut mpsc::Receiver<Outbound>,
    mut commands: MultiplexedConnection,
    bus: &Bus,
    metrics: &Metrics,
) -> String {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if outbound.recv_many(&mut batch, BATCH).await == 0 {
            // The bus (which holds the sender) is gone: the server is stopping.
            std::future::pending::<()>().await;
        }
        let mut pipe = redis::pipe();
        let mut chats = 0;
        for item in batch.drain(..) {
            match item {
                Outbound::Chat(bytes) => {
                    chats += 1;
                    pipe.cmd("PUBLISH")
                        .arg(&bus.keys.channel)
                        .arg(&bytes[..])
                        .ignore();
                }
                Outbound::Probe(bytes) => {
                    pipe.cmd("PUBLISH")
                        .arg(&bus.keys.channel)
                        .arg(&bytes[..])
                        .ignore();
                }
                Outbound::Forget { name, seq } => {
                    pipe.cmd("EVAL")
                        .arg(FORGET_SCRIPT)
                        .arg(1)
                        .arg(&bus.keys.owners)
                        .arg(&*name)
                        .arg(seq)
                        .ignore();
                }
            }
        }
        match pipe.query_async::<()>(&mut commands).await {
            Ok(()) => {
                metrics.bus_published.fetch_add(chats, Relaxed);
            }
            Err(error) => {
                // Whether Redis took any of them is unknown; none is retried, so none
                // can arrive twice.
                metrics.bus_unforwarded.fetch_add(chats, Relaxed);
                return format!("publishing: {error}");
            }
        }
    }
}

/// Handles one publication heard on the channel.
fn receive(shared: &Hub, bus: &Bus, payload: &[u8], probe_heard: &mut Instant) {
    let message = match BusMessage::decode(payload) {
        Ok(message) => message,
        Err(error) => {
            Metrics::inc(&shared.metrics.bus_undecodable);
            debug!(%error, "undecodable bus publication ignored");
            return;
        }
    };
    if message.nonce() == bus.nonce {
        if let BusMessage::Probe { sent_ns, .. } = message {
            let now_ns = shared.epoch.elapsed().as_nanos() as u64;
            shared
                .metrics
                .bus_round_trip
                .observe(now_ns.saturating_sub(sent_ns));
            *probe_heard = Instant::now();
        }
        return;
    }
    match message {
        BusMessage::Chat { sender, frame, .. } => {
            Metrics::inc(&shared.metrics.bus_received);
            shared.registry.for_each_other(&sender, |receiver| {
                receiver.send(
                    Outgoing {
                        bytes: frame.clone(),
                        chat: true,
                    },
                    shared.queue_limit,
                    &shared.metrics,
                );
            });
        }
        BusMessage::Login { seq, name, .. } => {
            bus.highest_seen.fetch_max(seq, Relaxed);
            #[cfg(feature = "fault-injection")]
            if shared.fault == Some(crate::fault::Fault::LocalEvictionOnly) {
                return;
            }
            evict_for(shared, &name, seq, Instant::now());
        }
        BusMessage::Probe { .. } => {}
    }
}

/// A login of `name` numbered `seq` exists elsewhere: closes the local session of `name`
/// if it is older (C3).
fn evict_for(shared: &Hub, name: &str, seq: u64, now: Instant) {
    if let Some(older) = shared.registry.heard_login(name, seq, now, &shared.metrics) {
        let bye = frame::close(close_code::REPLACED, "replaced by a new login");
        if older.close(Some(bye), false) {
            Metrics::inc(&shared.metrics.evictions);
            Metrics::inc(&shared.metrics.cross_node_evictions);
            debug!(user = %older.name, id = older.id, "evicted by a login on another node");
        }
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
fn wall_clock_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
