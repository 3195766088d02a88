//! Robustness checks (docs/protocol.md R1–R3, and the judging R4–R7 share with
//! [`super::limits`]): what a server does with handshakes and frames RFC 6455 forbids, and
//! with a flooding sender.
//!
//! These rules are ours, not marked MUST, so each check is informational: `info` when the
//! server does what the rule says and `warn` when it differs, with what was seen. Where
//! the rule names a status or Close code, a different one is a difference; a refusal by
//! dropping the connection is accepted (as S2 accepts it) and reported. What cannot be
//! observed from outside in a bounded way is said in the row: R5 needs the server's
//! session limit (`--max-sessions`), R7 a shutdown, which conform never causes.
//!
//! The judging is pure ([`judge_refusal`], [`judge_close`]) and unit-tested; the rest
//! opens connections and reports what came back.

use std::time::{Duration, Instant};

use fastwebsockets::OpCode;

use super::check::{probe, settle, CheckOutcome, Settings};
use super::peer::{Event, Peer};
use super::raw::{self, Answer, Upgrade};
use super::raw_frame::{self, RawSocket};

/// How a handshake the rules forbid was answered, reduced to what is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An HTTP response other than `101`; `version_13` when it carried
    /// `Sec-WebSocket-Version: 13`.
    Status { status: u16, version_13: bool },
    /// No response: the connection was closed (or nothing came before the deadline).
    NoResponse(String),
    /// `101`: upgraded anyway; `session` when the connection then received a broadcast.
    Upgraded { session: bool },
}

/// Whether `reply` is the refusal a rule asks for (`want`, and for `426` the
/// `Sec-WebSocket-Version: 13` header), and a few words on what was seen. A refusal by
/// dropping the connection counts as a refusal; another status does not match.
pub fn judge_refusal(what: &str, reply: &Reply, want: u16) -> (bool, String) {
    match reply {
        Reply::Status { status, version_13 } if *status == want => {
            if want == 426 && !version_13 {
                (
                    false,
                    format!("{what}: HTTP 426 without Sec-WebSocket-Version: 13"),
                )
            } else if want == 426 {
                (true, format!("{what}: HTTP 426, Sec-WebSocket-Version: 13"))
            } else {
                (true, format!("{what}: HTTP {status}"))
            }
        }
        Reply::Status { status, .. } => (false, format!("{what}: HTTP {status} (rule: {want})")),
        Reply::NoResponse(why) => (true, format!("{what}: no upgrade, {why}")),
        Reply::Upgraded { session: true } => (
            false,
            format!("{what}: UPGRADED (101) and the session received broadcasts"),
        ),
        Reply::Upgraded { session: false } => (
            false,
            format!("{what}: UPGRADED (101), though no broadcast reached it"),
        ),
    }
}

/// Whether a connection's end (`None`: still open at the deadline) is the Close `want`
/// a rule asks for; a TCP drop counts, reported as such.
pub fn judge_close(what: &str, end: Option<&Event>, want: u16) -> (bool, String) {
    match end {
        Some(Event::Close {
            code: Some(code), ..
        }) if *code == want => (true, format!("{what}: Close {code}")),
        Some(Event::Dropped(why)) => (true, format!("{what}: TCP drop without Close ({why})")),
        Some(other) => (
            false,
            format!("{what}: {} (rule: Close {want})", other.describe_end()),
        ),
        None => (
            false,
            format!("{what}: connection still open (rule: Close {want})"),
        ),
    }
}

/// Collects judged observations into one outcome: `info` when all match the rule.
#[derive(Default)]
pub struct Findings {
    seen: Vec<String>,
    differs: bool,
}

impl Findings {
    pub fn add(&mut self, (matches, seen): (bool, String)) {
        self.differs |= !matches;
        self.seen.push(seen);
    }
    pub fn note(&mut self, seen: impl Into<String>) {
        self.seen.push(seen.into());
    }
    pub fn differ(&mut self, seen: impl Into<String>) {
        self.differs = true;
        self.seen.push(seen.into());
    }
    pub fn outcome(self) -> CheckOutcome {
        let seen = self.seen.join("; ");
        if self.differs {
            CheckOutcome::warn(seen)
        } else {
            CheckOutcome::info(seen)
        }
    }
}

/// R1: a POST upgrade gets `405`, an HTTP/1.0 upgrade `400`, `Sec-WebSocket-Version: 8`
/// gets `426` naming 13; none of them opens a session (a handshake that was upgraded
/// anyway is probed for broadcasts).
pub async fn handshake_refused(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("R1");
    let path = &settings.endpoint.target.path;
    let queries: Vec<String> = ["post", "http10", "v8"]
        .iter()
        .map(|tag| format!("{path}?user={prefix}{tag}"))
        .collect();
    let cases = [
        (
            "POST",
            Upgrade {
                method: "POST",
                ..Upgrade::login(queries[0].as_bytes())
            },
            405,
        ),
        (
            "HTTP/1.0",
            Upgrade {
                http_version: "HTTP/1.0",
                ..Upgrade::login(queries[1].as_bytes())
            },
            400,
        ),
        (
            "version 8",
            Upgrade {
                ws_version: "8",
                ..Upgrade::login(queries[2].as_bytes())
            },
            426,
        ),
    ];
    let mut sender = None;
    let mut findings = Findings::default();
    for (what, request, want) in cases {
        let reply = match raw::send(&settings.endpoint, &request).await {
            Err(error) => Reply::NoResponse(format!("connection failed ({error})")),
            Ok(Answer::Http {
                status, headers, ..
            }) => Reply::Status {
                status,
                version_13: raw::header(&headers, "Sec-WebSocket-Version")
                    .is_some_and(|v| v.trim() == "13"),
            },
            Ok(Answer::NoResponse(why)) => Reply::NoResponse(why),
            Ok(Answer::Upgraded(switched)) => {
                let mut peer = Peer::from_connected(what, switched.into_connected());
                Reply::Upgraded {
                    session: receives(settings, &mut sender, &mut peer, what).await,
                }
            }
        };
        findings.add(judge_refusal(what, &reply, want));
    }
    if let Some(mut sender) = sender {
        sender.close().await;
    }
    findings.outcome()
}

/// Whether `peer` (a connection that should not be a session) receives a broadcast from
/// `sender`, logged in on first use.
async fn receives(
    settings: &Settings,
    sender: &mut Option<Peer>,
    peer: &mut Peer,
    tag: &str,
) -> bool {
    if sender.is_none() {
        *sender = Peer::login(&settings.endpoint, &format!("{}tx", settings.prefix("R1")))
            .await
            .ok();
    }
    let Some(sender) = sender else {
        return false;
    };
    let deadline = Instant::now() + settings.knobs.delivery_deadline;
    probe(sender, peer, &format!("r1 {tag}"), deadline)
        .await
        .is_ok()
}

/// R2: an unmasked Text frame closes its connection with 1002 and is not broadcast; a
/// Ping with 126 bytes of payload closes its connection with 1002.
pub async fn frames_checked(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("R2");
    let mut observer = match Peer::login(&settings.endpoint, &format!("{prefix}rx")).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::warn(format!("login failed: {error}")),
    };
    let mut findings = Findings::default();

    let mut unmasked = match raw_login(settings, &format!("{prefix}unmasked")).await {
        Ok(socket) => socket,
        Err(why) => return CheckOutcome::warn(why),
    };
    // The hand-built connection must be a session first, and its well-formed (masked)
    // frames must get through, or an unbroadcast unmasked one would prove nothing.
    if let Err(why) = raw_settle(settings, &mut unmasked, &mut observer).await {
        return CheckOutcome::warn(format!(
            "a hand-framed (masked) message never reached another user: {why}"
        ));
    }
    let frame = raw_frame::encode(true, OpCode::Text, None, b"<r2 unmasked>");
    let end = match unmasked.send(&frame).await {
        Ok(()) => {
            let mut pongs = 0;
            unmasked
                .end(Instant::now() + settings.knobs.close_deadline, &mut pongs)
                .await
        }
        Err(why) => Some(Event::Dropped(why)),
    };
    findings.add(judge_close("unmasked Text", end.as_ref(), 1002));
    let broadcast = observer
        .texts_until(Instant::now() + Duration::from_millis(300))
        .await
        .iter()
        .any(|text| super::peer::contains(text, b"<r2 unmasked>"));
    if broadcast {
        findings.differ("the unmasked message was BROADCAST");
    } else {
        findings.note("not broadcast");
    }

    let mut pinger = match raw_login(settings, &format!("{prefix}ping")).await {
        Ok(socket) => socket,
        Err(why) => return CheckOutcome::warn(why),
    };
    let frame = raw_frame::encode(
        true,
        OpCode::Ping,
        Some(raw_frame::some_mask()),
        &[b'p'; 126],
    );
    let mut pongs = 0;
    let end = match pinger.send(&frame).await {
        Ok(()) => {
            pinger
                .end(Instant::now() + settings.knobs.close_deadline, &mut pongs)
                .await
        }
        Err(why) => Some(Event::Dropped(why)),
    };
    findings.add(judge_close("126-byte Ping", end.as_ref(), 1002));
    if pongs > 0 {
        findings.differ("the 126-byte Ping was answered with a Pong");
    }
    observer.close().await;
    findings.outcome()
}

/// Logs `name` in with a hand-written handshake, for a connection written byte by byte.
async fn raw_login(settings: &Settings, name: &str) -> Result<RawSocket, String> {
    let query = format!(
        "{}?user={}",
        settings.endpoint.target.path,
        crate::target::encode_name(name)
    );
    match raw::upgrade(&settings.endpoint, query.as_bytes()).await {
        Ok(Answer::Upgraded(switched)) => Ok(switched.into_raw()),
        Ok(Answer::Http { status, .. }) => Err(format!("login of {name:?}: HTTP {status}")),
        Ok(Answer::NoResponse(why)) => Err(format!("login of {name:?}: {why}")),
        Err(error) => Err(format!("login of {name:?}: {error}")),
    }
}

/// Sends `<r2 sync N>` from `socket` every 50 ms until `observer` receives one.
async fn raw_settle(
    settings: &Settings,
    socket: &mut RawSocket,
    observer: &mut Peer,
) -> Result<(), String> {
    let deadline = Instant::now() + settings.knobs.delivery_deadline;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        socket.send_text(&format!("<r2 sync {attempt}>")).await?;
        let step = (Instant::now() + Duration::from_millis(50)).min(deadline);
        match observer.expect_text_containing("<r2 sync ", step).await {
            Ok(_) => return Ok(()),
            Err(why) if observer.ended().is_some() || Instant::now() >= deadline => {
                return Err(format!("{why} ({attempt} sent)"))
            }
            Err(_) => continue,
        }
    }
}

/// Messages the R3 flood sends, as fast as the connection takes them: more than a
/// second's worth at chat-server's default budget (1000 msg/s, 1 s burst), so it is
/// throttled there for about 1.5 s.
const FLOOD: usize = 2500;

/// R3: a sender flooding the chat beside a reader that reads everything: the reader keeps
/// its session and receives every message in order, and the sender is not disconnected.
/// Throttling is seen only through a `chat_throttled_total` counter in `/metrics`, if
/// the server has one (the rule does not require other servers to expose it).
pub async fn flood_throttled(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("R3");
    let mut flooder = match Peer::login(&settings.endpoint, &format!("{prefix}flood")).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::warn(format!("login failed: {error}")),
    };
    let mut reader = match Peer::login(&settings.endpoint, &format!("{prefix}rx")).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::warn(format!("login failed: {error}")),
    };
    if let Err(outcome) = settle(settings, &mut flooder, std::slice::from_mut(&mut reader)).await {
        return CheckOutcome::warn(outcome.seen);
    }
    let throttled_before =
        crate::scrape::counter(&settings.endpoint.metrics_at(), "chat_throttled_total").await;
    let started = Instant::now();
    let send_all = async {
        let padding = ".".repeat(40);
        for seq in 0..FLOOD {
            if let Err(why) = flooder.send_text(&format!("<r3 {seq}> {padding}")).await {
                return Err(format!(
                    "the flooding sender was cut off after {seq} of {FLOOD} messages ({why})"
                ));
            }
        }
        Ok(started.elapsed())
    };
    let stall = settings.knobs.delivery_deadline;
    let receive_all = async {
        let mut received = 0usize;
        let mut disorder = None;
        let mut last_progress = Instant::now();
        let mut end = None;
        while received < FLOOD {
            match reader.next_event(last_progress + stall).await {
                Some(Event::Text(text)) => {
                    let Some(seq) = flood_seq(&text) else {
                        continue;
                    };
                    if seq != received && disorder.is_none() {
                        disorder =
                            Some(format!("message #{seq} arrived where #{received} was due"));
                    }
                    received += 1;
                    last_progress = Instant::now();
                }
                Some(ending) if ending.is_end() => {
                    end = Some(ending);
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        (received, disorder, end, started.elapsed())
    };
    let (sent, (received, disorder, reader_end, took)) = tokio::join!(send_all, receive_all);
    let throttled_after =
        crate::scrape::counter(&settings.endpoint.metrics_at(), "chat_throttled_total").await;
    let flooder_end = flooder
        .expect_end(Instant::now() + Duration::from_millis(100))
        .await;

    let mut findings = Findings::default();
    match sent {
        Ok(elapsed) => findings.note(format!(
            "{FLOOD} messages written in {:.1} s",
            elapsed.as_secs_f64()
        )),
        Err(why) => findings.differ(why),
    }
    match (&reader_end, received) {
        (Some(end), _) => findings.differ(format!(
            "the READER was closed after {received} of {FLOOD}: {}",
            end.describe_end()
        )),
        (None, n) if n < FLOOD => findings.differ(format!(
            "the reader got {n} of {FLOOD}, then nothing for {stall:?}"
        )),
        (None, _) => findings.note(format!(
            "the reader got all {FLOOD} in {:.1} s",
            took.as_secs_f64()
        )),
    }
    match disorder {
        Some(why) => findings.differ(why),
        None if received > 0 => findings.note("in order"),
        None => {}
    }
    if let Some(end) = flooder_end {
        findings.differ(format!(
            "the flooding sender was closed: {}",
            end.describe_end()
        ));
    }
    match (throttled_before, throttled_after) {
        (Some(before), Some(after)) => findings.note(format!(
            "chat_throttled_total +{}",
            after.saturating_sub(before)
        )),
        _ => findings.note("throttling not observable (no chat_throttled_total in /metrics)"),
    }
    reader.close().await;
    flooder.close().await;
    findings.outcome()
}

/// The sequence number of an R3 flood message (`<r3 N> …`).
fn flood_seq(text: &[u8]) -> Option<usize> {
    let rest = text.strip_prefix(b"<r3 ")?;
    let end = rest.iter().position(|b| *b == b'>')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conform_r_the_named_status_matches() {
        let reply = Reply::Status {
            status: 405,
            version_13: false,
        };
        assert_eq!(
            judge_refusal("POST", &reply, 405),
            (true, "POST: HTTP 405".into())
        );
    }

    #[test]
    fn conform_r_another_status_differs() {
        let reply = Reply::Status {
            status: 400,
            version_13: false,
        };
        let (matches, seen) = judge_refusal("POST", &reply, 405);
        assert!(!matches);
        assert!(seen.contains("rule: 405"), "{seen}");
    }

    #[test]
    fn conform_r_426_needs_the_version_header() {
        let without = Reply::Status {
            status: 426,
            version_13: false,
        };
        let with = Reply::Status {
            status: 426,
            version_13: true,
        };
        assert!(!judge_refusal("v8", &without, 426).0);
        assert!(judge_refusal("v8", &with, 426).0);
    }

    #[test]
    fn conform_r_a_drop_is_a_refusal_an_upgrade_is_not() {
        assert!(judge_refusal("x", &Reply::NoResponse("closed".into()), 400).0);
        assert!(!judge_refusal("x", &Reply::Upgraded { session: false }, 400).0);
        let (_, seen) = judge_refusal("x", &Reply::Upgraded { session: true }, 400);
        assert!(seen.contains("received broadcasts"), "{seen}");
    }

    #[test]
    fn conform_r_close_codes_are_judged() {
        let close = |code| Event::Close {
            code: Some(code),
            reason: String::new(),
        };
        assert!(judge_close("f", Some(&close(1002)), 1002).0);
        assert!(!judge_close("f", Some(&close(1008)), 1002).0);
        assert!(judge_close("f", Some(&Event::Dropped("eof".into())), 1002).0);
        assert!(!judge_close("f", None, 1002).0);
    }

    #[test]
    fn conform_r_flood_numbers_are_read() {
        assert_eq!(flood_seq(b"<r3 17> .... -- FROM x"), Some(17));
        assert_eq!(flood_seq(b"<sync x 1>"), None);
        assert_eq!(flood_seq(b"<r3 x>"), None);
    }
}
