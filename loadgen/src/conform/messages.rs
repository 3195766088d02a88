//! Message checks (docs/protocol.md M1, M2, M3, M5): delivery to every other user in the exact
//! `<message> -- FROM <NAME>` form, no echo to the sender, per-sender order under load,
//! and the size and UTF-8 limits.
//!
//! Messages carry a unique token, found anywhere in what arrives, so only M1 looks at the
//! exact format.

use std::time::{Duration, Instant};

use fastwebsockets::OpCode;

use super::check::{flush, login_all, settle, CheckOutcome, Settings};
use super::peer::{contains, Event, Peer};

/// The separator the protocol puts between a message and its sender (M1).
const FROM: &[u8] = b" -- FROM ";

/// M1: every user's messages reach every other user, byte for byte, as
/// `<message> -- FROM <NAME>`, including non-ASCII text and text that itself contains
/// ` -- FROM `.
pub async fn delivered_with_from(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("M1");
    let names: Vec<String> = (0..3).map(|i| format!("{prefix}u{i}")).collect();
    let mut peers = match login_all(settings, &names).await {
        Ok(peers) => peers,
        Err(outcome) => return outcome,
    };
    if let Err(outcome) = settle_all(settings, &mut peers).await {
        return outcome;
    }
    // Under another protocol a delivery is whatever frame holds the message (JSON
    // escapes non-ASCII and tabs as it likes), so only ASCII is sent and looked for.
    let chat = settings.endpoint.protocol.is_chat();
    let bodies: &[&str] = if chat {
        &[
            "hello",
            "张三说：你好 ✓",
            "spaces  and\ttabs",
            "quoting -- FROM nobody",
        ]
    } else {
        &["hello", "spaces  and more", "quoting -- FROM nobody"]
    };
    let mut expected = Vec::new();
    for (sender, peer) in peers.iter_mut().enumerate() {
        for (n, body) in bodies.iter().enumerate() {
            let message = format!("[m1 {sender} {n}] {body}");
            if let Err(error) = peer.send_text(&message).await {
                return CheckOutcome::fail(format!("{} could not send: {error}", peer.name));
            }
            let mut delivery = message.clone().into_bytes();
            if chat {
                delivery.extend_from_slice(FROM);
                delivery.extend_from_slice(peer.name.as_bytes());
            }
            expected.push((sender, format!("[m1 {sender} {n}]"), delivery));
        }
        flush(peer).await;
    }
    let deadline = Instant::now() + settings.knobs.delivery_deadline;
    let mut checked = 0;
    for receiver in 0..peers.len() {
        let wanted: Vec<_> = expected.iter().filter(|e| e.0 != receiver).collect();
        // Collect until every expected token has arrived (in any interleaving of senders).
        let mut arrived: Vec<Option<Vec<u8>>> = vec![None; wanted.len()];
        while arrived.iter().any(Option::is_none) {
            match peers[receiver].next_event(deadline).await {
                Some(Event::Text(text)) => {
                    if let Some(at) = wanted.iter().position(|w| contains(&text, w.1.as_bytes())) {
                        arrived[at].get_or_insert(text);
                    }
                }
                Some(end) if end.is_end() => break,
                Some(_) => {}
                None => break,
            }
        }
        for ((sender, token, delivery), got) in
            wanted.into_iter().map(|w| (w.0, &w.1, &w.2)).zip(arrived)
        {
            match got {
                Some(got) if &got == delivery => checked += 1,
                Some(got) if !chat && contains(&got, delivery) => checked += 1,
                Some(got) => {
                    return CheckOutcome::fail(format!(
                        "{} got {:?}, want {:?}",
                        peers[receiver].name,
                        String::from_utf8_lossy(&got),
                        String::from_utf8_lossy(delivery)
                    ))
                }
                None => {
                    let why = match peers[receiver].ended() {
                        Some(end) => format!("connection ended: {}", end.describe_end()),
                        None => {
                            format!("not received within {:?}", settings.knobs.delivery_deadline)
                        }
                    };
                    return CheckOutcome::fail(format!(
                        "message {token} from {} to {}: {why}",
                        peers[sender].name, peers[receiver].name
                    ));
                }
            }
        }
    }
    for peer in peers.iter_mut() {
        peer.close().await;
    }
    if chat {
        CheckOutcome::pass(format!(
            "{checked} deliveries exact (3 users, UTF-8, embedded \" -- FROM \")"
        ))
    } else {
        CheckOutcome::pass(format!(
            "{checked} deliveries, each message whole inside the frame (3 users)"
        ))
    }
}

/// Makes every peer's messages reach every other peer once (registration settled).
async fn settle_all(settings: &Settings, peers: &mut [Peer]) -> Result<(), CheckOutcome> {
    for index in 0..peers.len() {
        let (before, rest) = peers.split_at_mut(index);
        let Some((sender, after)) = rest.split_first_mut() else {
            continue;
        };
        settle(settings, sender, before).await?;
        settle(settings, sender, after).await?;
    }
    Ok(())
}

/// M2: the sender never receives its own message, while the receiver gets them all.
pub async fn no_echo(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("M2");
    let mut peers = match login_all(settings, &[format!("{prefix}tx"), format!("{prefix}rx")]).await
    {
        Ok(peers) => peers,
        Err(outcome) => return outcome,
    };
    let (Some(mut receiver), Some(mut sender)) = (peers.pop(), peers.pop()) else {
        return CheckOutcome::fail("no peers");
    };
    if let Err(outcome) = settle(settings, &mut sender, std::slice::from_mut(&mut receiver)).await {
        return outcome;
    }
    let count = 20;
    for n in 0..count {
        if let Err(error) = sender.send_text(&format!("[m2 {n}]")).await {
            return CheckOutcome::fail(format!("sender could not send: {error}"));
        }
    }
    flush(&mut sender).await;
    let deadline = Instant::now() + settings.knobs.delivery_deadline;
    if let Err(why) = receiver
        .expect_text_containing(&format!("[m2 {}]", count - 1), deadline)
        .await
    {
        return CheckOutcome::fail(format!("the receiver did not get the messages ({why})"));
    }
    // The sender's own copies, if any, would have arrived by now; wait a little more.
    let echoes = sender
        .texts_until(Instant::now() + Duration::from_millis(300))
        .await
        .iter()
        .filter(|text| contains(text, b"[m2 "))
        .count();
    sender.close().await;
    receiver.close().await;
    if settings.endpoint.protocol.self_delivery() {
        // The protocol declares that senders get their own messages back (io.emit).
        return if echoes >= count {
            CheckOutcome::pass(format!(
                "{count} sent; self-delivery declared, and the sender got all {count} back"
            ))
        } else {
            CheckOutcome::fail(format!(
                "self-delivery declared, but the sender got {echoes} of its own {count} messages back"
            ))
        };
    }
    if echoes > 0 {
        CheckOutcome::fail(format!(
            "the sender received {echoes} of its own {count} messages"
        ))
    } else {
        CheckOutcome::pass(format!(
            "{count} sent, receiver got them, sender got none back"
        ))
    }
}

/// M3: several senders send as fast as they can at once; every receiver sees each
/// sender's messages in the order sent.
pub async fn per_sender_order(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("M3");
    let senders = 3usize;
    let per_sender = settings.knobs.order_messages.max(2);
    let names: Vec<String> = (0..senders)
        .map(|i| format!("{prefix}tx{i}"))
        .chain((0..2).map(|i| format!("{prefix}rx{i}")))
        .collect();
    let mut peers = match login_all(settings, &names).await {
        Ok(peers) => peers,
        Err(outcome) => return outcome,
    };
    let mut receivers = peers.split_off(senders);
    for sender in peers.iter_mut() {
        if let Err(outcome) = settle(settings, sender, &mut receivers).await {
            return outcome;
        }
    }
    let mut tasks = Vec::new();
    for (index, mut sender) in peers.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for seq in 0..per_sender {
                if sender
                    .send_text(&format!("[m3 {index} {seq}]"))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            flush(&mut sender).await;
            sender
        }));
    }
    let total = senders * per_sender;
    let deadline = Instant::now() + settings.knobs.delivery_deadline + Duration::from_secs(3);
    let mut problems = Vec::new();
    let mut lost = 0usize;
    for receiver in receivers.iter_mut() {
        let mut last: Vec<Option<usize>> = vec![None; senders];
        let mut got = 0usize;
        while got < total {
            match receiver.next_event(deadline).await {
                Some(Event::Text(text)) => {
                    let Some((sender, seq)) = parse_m3(&text) else {
                        continue;
                    };
                    if sender >= senders {
                        continue;
                    }
                    got += 1;
                    if let Some(previous) = last[sender] {
                        if seq <= previous && problems.len() < 3 {
                            problems.push(format!(
                                "{} got #{seq} from sender {sender} after #{previous}",
                                receiver.name
                            ));
                        }
                    }
                    last[sender] = Some(seq);
                }
                Some(end) if end.is_end() => {
                    problems.push(format!(
                        "{} was closed: {}",
                        receiver.name,
                        end.describe_end()
                    ));
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        lost += total.saturating_sub(got);
    }
    for task in tasks {
        if let Ok(mut sender) = task.await {
            sender.close().await;
        }
    }
    if !problems.is_empty() {
        return CheckOutcome::fail(problems.join("; "));
    }
    let seen = format!("{senders} senders × {per_sender} msgs to 2 receivers: in order");
    if lost > 0 {
        CheckOutcome::warn(format!("{seen}, but {lost} of {} never arrived", total * 2))
    } else {
        CheckOutcome::pass(seen)
    }
}

/// Finds `[m3 SENDER SEQ]` anywhere in a delivery.
fn parse_m3(text: &[u8]) -> Option<(usize, usize)> {
    let start = text.windows(4).position(|w| w == b"[m3 ")? + 4;
    let rest = &text[start..];
    let end = rest.iter().position(|b| *b == b']')?;
    let inner = std::str::from_utf8(&rest[..end]).ok()?;
    let (sender, seq) = inner.split_once(' ')?;
    Some((sender.parse().ok()?, seq.parse().ok()?))
}

/// M5: a Text message one byte over the limit closes the connection with 1009, invalid
/// UTF-8 closes it with 1007; neither is broadcast.
pub async fn limits_close(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("M5");
    let names = [
        format!("{prefix}rx"),
        format!("{prefix}big"),
        format!("{prefix}bad"),
    ];
    let mut peers = match login_all(settings, &names).await {
        Ok(peers) => peers,
        Err(outcome) => return outcome,
    };
    let (Some(mut bad), Some(mut big), Some(mut observer)) =
        (peers.pop(), peers.pop(), peers.pop())
    else {
        return CheckOutcome::fail("no peers");
    };
    if let Err(outcome) = settle(settings, &mut big, std::slice::from_mut(&mut observer)).await {
        return outcome;
    }
    if let Err(outcome) = settle(settings, &mut bad, std::slice::from_mut(&mut observer)).await {
        return outcome;
    }
    let mut oversized = b"<m5 big>".to_vec();
    oversized.resize(settings.knobs.max_message + 1, b'x');
    let _ = big.send_raw(true, OpCode::Text, oversized).await;
    let mut invalid = b"<m5 bad>".to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe, 0xfd]);
    let _ = bad.send_raw(true, OpCode::Text, invalid).await;

    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut seen = Vec::new();
    for (peer, want, what) in [
        (&mut big, 1009u16, "too big"),
        (&mut bad, 1007, "invalid UTF-8"),
    ] {
        match peer
            .expect_end(Instant::now() + settings.knobs.close_deadline)
            .await
        {
            Some(Event::Close {
                code: Some(code), ..
            }) if code == want => seen.push(format!("{what}: Close {code}")),
            Some(Event::Dropped(why)) => {
                warnings.push(format!("{what}: TCP drop without Close {want} ({why})"))
            }
            Some(end) => problems.push(format!(
                "{what}: {} (want Close {want})",
                end.describe_end()
            )),
            None => problems.push(format!(
                "{what}: connection still open {:?} later (want Close {want})",
                settings.knobs.close_deadline
            )),
        }
    }
    let broadcast: Vec<&str> = observer
        .texts_until(Instant::now() + Duration::from_millis(300))
        .await
        .iter()
        .filter_map(|text| {
            if contains(text, b"<m5 big>") {
                Some("the oversized message")
            } else if contains(text, b"<m5 bad>") {
                Some("the invalid message")
            } else {
                None
            }
        })
        .collect();
    for what in broadcast {
        problems.push(format!("{what} was broadcast"));
    }
    observer.close().await;
    if !problems.is_empty() {
        problems.extend(warnings);
        return CheckOutcome::fail(problems.join("; "));
    }
    seen.extend(warnings.iter().cloned());
    let seen = format!(
        "limit {} B; {}; nothing broadcast",
        settings.knobs.max_message,
        seen.join("; ")
    );
    if warnings.is_empty() {
        CheckOutcome::pass(seen)
    } else {
        CheckOutcome::warn(seen)
    }
}
