//! Informational checks: rules a server SHOULD follow or that describe ours (docs/protocol.md
//! S1 raw UTF-8 names, S3 name limits and format characters, M4 fragments/ping/binary, O1
//! health and metrics).
//! Their verdict is `info` when the server behaves as ours does and `warn` when it differs;
//! they never fail a run. O2 (idle pings after 30 s) and O3 (shutdown) need a minute of
//! idleness or a server restart, so they are not checked.

use std::time::{Duration, Instant};

use fastwebsockets::{Frame, OpCode, Payload};

use super::check::{settle, CheckOutcome, Settings};
use super::peer::{Event, Peer};
use super::raw::{self, Answer};
use super::session::{attempt, Refusal};

/// S1: a name sent as raw UTF-8 bytes in the query (as the demo's client does) is accepted
/// and shown decoded in ` -- FROM `.
pub async fn raw_utf8_name(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("S1");
    let name = format!("{prefix}张三");
    let mut query = format!("{}?user=", settings.endpoint.target.path).into_bytes();
    query.extend_from_slice(name.as_bytes());
    let mut raw_user = match raw::upgrade(&settings.endpoint, &query).await {
        Ok(Answer::Upgraded(switched)) => Peer::from_connected(&name, switched.into_connected()),
        Ok(Answer::Http { status, body, .. }) => {
            return CheckOutcome::warn(format!("raw UTF-8 name refused: HTTP {status} {body:?}"))
        }
        Ok(Answer::NoResponse(why)) => return CheckOutcome::warn(format!("raw UTF-8 name: {why}")),
        Err(error) => return CheckOutcome::warn(format!("raw UTF-8 name: {error}")),
    };
    let mut observer = match Peer::login(&settings.endpoint, &format!("{prefix}rx")).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::warn(format!("login failed: {error}")),
    };
    if let Err(outcome) = settle(settings, &mut raw_user, std::slice::from_mut(&mut observer)).await
    {
        return CheckOutcome::warn(format!("raw UTF-8 user: {}", outcome.seen));
    }
    let want = format!("<s1> -- FROM {name}");
    let outcome = match raw_user.send_text("<s1>").await {
        Err(error) => CheckOutcome::warn(format!("raw UTF-8 user could not send: {error}")),
        Ok(()) => match observer
            .expect_text_containing("<s1>", Instant::now() + settings.knobs.delivery_deadline)
            .await
        {
            Ok(got) if got == want.as_bytes() => {
                CheckOutcome::info("raw UTF-8 name accepted and shown decoded")
            }
            Ok(got) => CheckOutcome::warn(format!(
                "raw UTF-8 name accepted, shown as {:?}",
                String::from_utf8_lossy(&got)
            )),
            Err(why) => CheckOutcome::warn(format!("raw UTF-8 user's message: {why}")),
        },
    };
    raw_user.close().await;
    observer.close().await;
    outcome
}

/// S3: names too long (65 bytes), with control characters, or not UTF-8 are refused.
pub async fn bad_names_refused(settings: &Settings) -> CheckOutcome {
    let path = &settings.endpoint.target.path;
    let long = "n".repeat(65);
    let attempts = [
        ("65 bytes", format!("{path}?user={long}")),
        ("control char", format!("{path}?user=cf%01x")),
        ("not UTF-8", format!("{path}?user=cf%FFx")),
    ];
    all_refused(settings, &attempts, "accepted").await
}

/// Tries every `(what, path and query)` login: `info` when each is refused, `warn`
/// (naming each one `accepted_as`) when any is accepted.
async fn all_refused(
    settings: &Settings,
    attempts: &[(&str, String)],
    accepted_as: &str,
) -> CheckOutcome {
    let mut seen = Vec::new();
    let mut accepted = false;
    for (what, path_and_query) in attempts {
        match attempt(settings, path_and_query.as_bytes()).await {
            Refusal::Refused(how) => seen.push(format!("{what}: {how}")),
            Refusal::Accepted(_) => {
                accepted = true;
                seen.push(format!("{what}: {accepted_as}"));
            }
        }
    }
    let seen = seen.join("; ");
    if accepted {
        CheckOutcome::warn(seen)
    } else {
        CheckOutcome::info(seen)
    }
}

/// S3's amendment: names holding a Unicode format character (category Cf: the bidi
/// override U+202E, the zero-width space U+200B), which let one name pose as another on
/// screen, are refused.
pub async fn format_chars_refused(settings: &Settings) -> CheckOutcome {
    let path = &settings.endpoint.target.path;
    let prefix = settings.prefix("S3");
    let attempts = [
        ("U+202E", format!("{path}?user={prefix}%E2%80%AEx")),
        ("U+200B", format!("{path}?user={prefix}%E2%80%8Bx")),
    ];
    all_refused(settings, &attempts, "ACCEPTED").await
}

/// M4: a fragmented Text is reassembled before broadcast, Ping gets Pong, Binary is not
/// broadcast.
pub async fn fragments_ping_binary(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("M4");
    let mut peers =
        match super::check::login_all(settings, &[format!("{prefix}tx"), format!("{prefix}rx")])
            .await
        {
            Ok(peers) => peers,
            Err(outcome) => return CheckOutcome::warn(outcome.seen),
        };
    let (Some(mut receiver), Some(mut sender)) = (peers.pop(), peers.pop()) else {
        return CheckOutcome::warn("no peers");
    };
    if let Err(outcome) = settle(settings, &mut sender, std::slice::from_mut(&mut receiver)).await {
        return CheckOutcome::warn(outcome.seen);
    }
    let mut seen = Vec::new();
    let mut differs = false;
    // Fragments.
    let _ = sender
        .send_raw(false, OpCode::Text, b"<m4 frag>one,".to_vec())
        .await;
    let _ = sender
        .send_raw(true, OpCode::Continuation, b"two".to_vec())
        .await;
    let want = format!("<m4 frag>one,two -- FROM {}", sender.name);
    match receiver
        .expect_text_containing(
            "<m4 frag>",
            Instant::now() + settings.knobs.delivery_deadline,
        )
        .await
    {
        Ok(got) if got == want.as_bytes() => seen.push("fragments reassembled".to_string()),
        Ok(got) => {
            differs = true;
            seen.push(format!(
                "fragments arrived as {:?}",
                String::from_utf8_lossy(&got)
            ));
        }
        Err(why) => {
            differs = true;
            seen.push(format!("fragmented message: {why}"));
        }
    }
    // Binary, then a text marker: the receiver should see the marker and no binary.
    let _ = sender
        .send_frame(Frame::binary(Payload::Owned(b"<m4 binary>".to_vec())))
        .await;
    let _ = sender.send_text("<m4 after binary>").await;
    let deadline = Instant::now() + settings.knobs.delivery_deadline;
    let mut binary = false;
    loop {
        match receiver.next_event(deadline).await {
            Some(Event::Binary) => binary = true,
            Some(Event::Text(text)) if super::peer::contains(&text, b"<m4 binary>") => {
                binary = true
            }
            Some(Event::Text(text)) if super::peer::contains(&text, b"<m4 after binary>") => break,
            Some(end) if end.is_end() => {
                differs = true;
                seen.push(format!("after a binary message: {}", end.describe_end()));
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    if binary {
        differs = true;
        seen.push("binary broadcast".into());
    } else {
        seen.push("binary ignored".into());
    }
    // Ping.
    let _ = sender
        .send_frame(Frame::new(
            true,
            OpCode::Ping,
            None,
            Payload::Owned(b"m4".to_vec()),
        ))
        .await;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut pong = false;
    while let Some(event) = sender.next_event(deadline).await {
        match event {
            Event::Pong => {
                pong = true;
                break;
            }
            end if end.is_end() => break,
            _ => {}
        }
    }
    if pong {
        seen.push("Ping answered".into());
    } else {
        differs = true;
        seen.push("no Pong".into());
    }
    sender.close().await;
    receiver.close().await;
    let seen = seen.join("; ");
    if differs {
        CheckOutcome::warn(seen)
    } else {
        CheckOutcome::info(seen)
    }
}

/// O1: `GET /healthz` answers 200 `ok`, `GET /metrics` answers 200.
pub async fn health_and_metrics(settings: &Settings) -> CheckOutcome {
    let mut seen = Vec::new();
    let mut ours = true;
    for (path, want_body) in [("/healthz", Some("ok")), ("/metrics", None)] {
        match raw::get(&settings.endpoint, path).await {
            Ok(Answer::Http {
                status: 200, body, ..
            }) => {
                if want_body.is_some_and(|want| body != want) {
                    ours = false;
                    seen.push(format!("{path}: 200 {body:?}"));
                } else {
                    seen.push(format!("{path}: 200"));
                }
            }
            Ok(Answer::Http { status, .. }) => {
                ours = false;
                seen.push(format!("{path}: HTTP {status}"));
            }
            Ok(Answer::NoResponse(why)) => {
                ours = false;
                seen.push(format!("{path}: {why}"));
            }
            Ok(Answer::Upgraded(_)) => {
                ours = false;
                seen.push(format!("{path}: upgraded?"));
            }
            Err(error) => {
                ours = false;
                seen.push(format!("{path}: {error}"));
            }
        }
    }
    let seen = seen.join("; ");
    if ours {
        CheckOutcome::info(seen)
    } else {
        CheckOutcome::warn(seen)
    }
}
