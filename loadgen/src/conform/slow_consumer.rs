//! M6: a stalled receiver never delays delivery to anyone else.
//!
//! One user logs in and never reads; a healthy user reads everything; a sender pushes
//! `--slow-bytes` of messages through the server, paced by the healthy receiver (at most
//! a window of messages ahead of it, so it cannot itself become a slow consumer). The
//! stalled socket's kernel buffers fill after a few MiB; a server that writes to its
//! receivers in sequence then blocks on it, and the healthy user stops receiving. A
//! server that passes lets the healthy user receive everything, and usually disconnects
//! the stalled one (ours: Close 1013), which is reported.

use std::time::{Duration, Instant};

use fastwebsockets::{Frame, Payload};

use super::check::{flush, settle, CheckOutcome, Settings};
use super::peer::{contains, Event, Peer};
use crate::connection::{self, FrameReader, Incoming};

/// Bytes per message (well under the 64 KiB limit).
const MESSAGE_BYTES: usize = 16 * 1024;
/// How many messages the sender may be ahead of the healthy receiver.
const WINDOW: usize = 32;

pub async fn stalled_receiver(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("M6");
    let endpoint = &settings.endpoint;
    let timeout = endpoint.connect_timeout;
    let mut sender = match Peer::login(endpoint, &format!("{prefix}tx")).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::fail(format!("login failed: {error}")),
    };
    let mut healthy = match Peer::login(endpoint, &format!("{prefix}rx")).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::fail(format!("login failed: {error}")),
    };
    let stalled_name = format!("{prefix}stalled");
    // On a third node when there are several: the stall must not hold up any node.
    let (target, addr) = &endpoint.nodes[2 % endpoint.nodes.len()];
    let token = endpoint.token_for(&stalled_name);
    let mut stalled = match connection::connect(
        target,
        *addr,
        &connection::Login {
            tls: endpoint.tls.as_ref(),
            token: token.as_deref(),
            token_in: endpoint.token_in(),
            protocol: &endpoint.protocol,
            ..connection::Login::plain(&stalled_name, timeout)
        },
    )
    .await
    {
        Ok(connected) => connected,
        Err(error) => return CheckOutcome::fail(format!("login failed: {error}")),
    };
    if let Err(outcome) = settle(settings, &mut sender, std::slice::from_mut(&mut healthy)).await {
        return outcome;
    }
    // The stalled user cannot confirm it is registered (it never reads); give it time.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let count = (settings.knobs.slow_bytes / MESSAGE_BYTES).max(WINDOW * 2);
    let mut received = 0usize;
    let mut last_progress = Instant::now();
    let started = Instant::now();
    let mut failure = None;
    let mut buffer = vec![b'.'; MESSAGE_BYTES];
    'send: for seq in 0..count {
        while seq >= received + WINDOW {
            let step = last_progress + settings.knobs.slow_stall;
            match healthy.next_event(step).await {
                Some(Event::Text(text)) if contains(&text, b"[m6 ") => {
                    received += 1;
                    last_progress = Instant::now();
                }
                Some(end) if end.is_end() => {
                    failure = Some(format!(
                        "the healthy receiver was closed after {received} of {count} messages: {}",
                        end.describe_end()
                    ));
                    break 'send;
                }
                Some(_) => {}
                None => {
                    failure = Some(format!(
                        "the healthy receiver got nothing for {:?} after {received} of {count} messages ({} MiB) while another receiver stalled",
                        settings.knobs.slow_stall,
                        received * MESSAGE_BYTES / (1024 * 1024)
                    ));
                    break 'send;
                }
            }
        }
        let tag = format!("[m6 {seq}]");
        buffer[..tag.len()].copy_from_slice(tag.as_bytes());
        let sent = if endpoint.protocol.is_chat() {
            sender
                .send_frame(Frame::text(Payload::Borrowed(&buffer)))
                .await
        } else {
            sender.send_text(&String::from_utf8_lossy(&buffer)).await
        };
        if let Err(error) = sent {
            failure = Some(format!("the sender could not send message {seq}: {error}"));
            break;
        }
    }
    if failure.is_none() {
        flush(&mut sender).await;
    }
    while failure.is_none() && received < count {
        match healthy
            .next_event(last_progress + settings.knobs.slow_stall)
            .await
        {
            Some(Event::Text(text)) if contains(&text, b"[m6 ") => {
                received += 1;
                last_progress = Instant::now();
            }
            Some(end) if end.is_end() => {
                failure = Some(format!(
                    "the healthy receiver was closed: {}",
                    end.describe_end()
                ));
            }
            Some(_) => {}
            None => {
                failure = Some(format!(
                    "the healthy receiver got nothing for {:?} after {received} of {count} messages while another receiver stalled",
                    settings.knobs.slow_stall
                ));
            }
        }
    }
    let elapsed = started.elapsed();
    let fate = stalled_fate(&mut stalled.read).await;
    sender.close().await;
    healthy.close().await;
    match failure {
        Some(why) => CheckOutcome::fail(format!("{why}; stalled receiver: {fate}")),
        None => CheckOutcome::pass(format!(
            "{count} × 16 KiB reached the healthy receiver in {:.1} s; stalled receiver: {fate}",
            elapsed.as_secs_f64()
        )),
    }
}

/// What became of the stalled connection: reads what the server left for it, quickly.
async fn stalled_fate(read: &mut connection::ReadStream) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut frames = FrameReader::new(read, 1 << 26);
    let mut texts = 0usize;
    loop {
        let wait = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(wait, frames.next()).await {
            Err(_) => return format!("still connected, {texts} messages buffered"),
            Ok(Ok(Incoming::Text(_))) => texts += 1,
            Ok(Ok(Incoming::Close { code, reason })) => {
                return format!(
                    "Close {} {reason:?} after {texts} messages",
                    code.map_or("(no code)".into(), |c| c.to_string())
                )
            }
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return format!("dropped after {texts} messages ({error})"),
        }
    }
}
