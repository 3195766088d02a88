//! Robustness checks of a server's bounds (docs/protocol.md R4–R7): request heads that
//! never end or never stop (R4), a full server (R5), logins racing their own `101` (R6),
//! and shutdown (R7, which conform cannot cause, and says so). Informational like the
//! other R-rules ([`super::robustness`], whose judging they share).

use std::time::{Duration, Instant};

use super::check::{probe, CheckOutcome, Settings};
use super::peer::Peer;
use super::raw::{self, Answer, Unfinished, Upgrade};
use super::robustness::{judge_refusal, Findings, Reply};
use crate::connection::ConnectError;

/// Bytes of padding that make R4's request head larger than 16 KiB.
const BIG_HEAD_PADDING: usize = 20 * 1024;

/// R4: a request head over 16 KiB gets `431`; a connection that sends part of a head and
/// then nothing is ended within `--header-timeout` (plus `--close-deadline`). Whether an
/// unread response ends the connection is not checked (it needs the server's bound and a
/// client that stops reading mid-response).
pub async fn heads_bounded(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("R4");
    let path = &settings.endpoint.target.path;
    let mut findings = Findings::default();

    let query = format!("{path}?user={prefix}big");
    let big = Upgrade {
        padding: BIG_HEAD_PADDING,
        ..Upgrade::login(query.as_bytes())
    };
    let reply = match raw::send(&settings.endpoint, &big).await {
        Err(error) => Reply::NoResponse(format!("connection failed ({error})")),
        Ok(Answer::Http { status, .. }) => Reply::Status {
            status,
            version_13: false,
        },
        Ok(Answer::NoResponse(why)) => Reply::NoResponse(why),
        Ok(Answer::Upgraded(_)) => Reply::Upgraded { session: false },
    };
    findings.add(judge_refusal("20 KiB head", &reply, 431));

    let query = format!("{path}?user={prefix}slow");
    let bound = settings.knobs.header_timeout + settings.knobs.close_deadline;
    match raw::unfinished(&settings.endpoint, &Upgrade::login(query.as_bytes()), bound).await {
        Ok(Unfinished::Ended { after, status }) => findings.note(format!(
            "unfinished head: ended after {:.1} s{}",
            after.as_secs_f64(),
            status.map_or(String::new(), |s| format!(" (HTTP {s})"))
        )),
        Ok(Unfinished::StillOpen) => findings.differ(format!(
            "unfinished head: connection STILL OPEN after {bound:?} (--header-timeout {:?} + --close-deadline)",
            settings.knobs.header_timeout
        )),
        Err(error) => findings.note(format!("unfinished head: connection failed ({error})")),
    }
    findings.note("unread-response bound not checked");
    findings.outcome()
}

/// Most sessions R5 fills a server with (bounds the check's own connections).
const MAX_FILL: usize = 5000;

/// R5: given the server's session limit (`--max-sessions N`), N more logins than the
/// server holds are refused with `503` before the upgrade, and a login succeeds again
/// once they are gone. Without the flag the check is not carried out: the limit cannot be
/// found from outside without filling the server, which is not bounded.
pub async fn session_limit(settings: &Settings) -> CheckOutcome {
    let Some(limit) = settings.knobs.max_sessions else {
        return CheckOutcome::info(
            "not checked: the server's session limit is unknown from outside (pass --max-sessions N to check it)",
        );
    };
    if limit >= MAX_FILL {
        return CheckOutcome::info(format!(
            "not checked: --max-sessions {limit} is more than the {MAX_FILL} sessions conform opens"
        ));
    }
    let prefix = settings.prefix("R5");
    let mut peers = Vec::with_capacity(limit + 1);
    let mut refusal = None;
    for n in 0..=limit {
        match Peer::login(&settings.endpoint, &format!("{prefix}u{n}")).await {
            Ok(peer) => peers.push(peer),
            Err(error) => {
                refusal = Some(error);
                break;
            }
        }
    }
    let accepted = peers.len();
    let mut findings = Findings::default();
    match refusal {
        None => findings.differ(format!(
            "all {accepted} logins ACCEPTED with --max-sessions {limit}"
        )),
        Some(ConnectError::Refused { status: 503, .. }) => findings.note(format!(
            "{accepted} logins accepted, the next refused with HTTP 503 before the upgrade{}",
            if accepted < limit {
                " (others were online)"
            } else {
                ""
            }
        )),
        Some(ConnectError::Refused { status, .. }) => findings.differ(format!(
            "{accepted} logins accepted, the next refused with HTTP {status} (rule: 503)"
        )),
        Some(other) => findings.differ(format!(
            "{accepted} logins accepted, the next failed: {other} (rule: HTTP 503)"
        )),
    }
    for peer in peers.iter_mut() {
        peer.close().await;
    }
    drop(peers);
    // Once they are gone, a login is accepted again (the server frees its sessions).
    let deadline = Instant::now() + settings.knobs.close_deadline;
    loop {
        match Peer::login(&settings.endpoint, &format!("{prefix}after")).await {
            Ok(mut peer) => {
                findings.note("a login succeeded again after they closed");
                peer.close().await;
                break;
            }
            Err(error) if Instant::now() >= deadline => {
                findings.differ(format!(
                    "{:?} after they closed a login still failed: {error}",
                    settings.knobs.close_deadline
                ));
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    findings.outcome()
}

/// Rounds of R6 logins.
const RELOGIN_ROUNDS: usize = 20;

/// R6: a login whose `101` the client has seen is registered: in each round the same name
/// logs in 2 or 3 times in a row, each login sent only after the previous one's `101`;
/// the last must survive (and receive), every earlier one must be ended. Alternating
/// chains of 2 and 3 vary which logins of the server's sequence fall on which place.
pub async fn registered_before_101(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("R6");
    let mut sender = match Peer::login(&settings.endpoint, &format!("{prefix}tx")).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::warn(format!("login failed: {error}")),
    };
    for round in 0..RELOGIN_ROUNDS {
        let name = format!("{prefix}u{round}");
        let chain = 2 + round % 2;
        let mut logins = Vec::with_capacity(chain);
        for _ in 0..chain {
            match Peer::login(&settings.endpoint, &name).await {
                Ok(peer) => logins.push(peer),
                Err(error) => {
                    return CheckOutcome::warn(format!(
                        "round {}: a login of {name:?} failed: {error}",
                        round + 1
                    ))
                }
            }
        }
        let Some(mut last) = logins.pop() else {
            return CheckOutcome::warn("no logins");
        };
        let deadline = Instant::now() + settings.knobs.close_deadline;
        for (place, earlier) in logins.iter_mut().enumerate() {
            if earlier.expect_end(deadline).await.is_none() {
                return CheckOutcome::warn(format!(
                    "round {}: login {} of {chain} still open {:?} after a later login's 101{}",
                    round + 1,
                    place + 1,
                    settings.knobs.close_deadline,
                    match last.ended() {
                        Some(end) => format!(", and the LAST login ended: {}", end.describe_end()),
                        None => String::new(),
                    }
                ));
            }
        }
        let deadline = Instant::now() + settings.knobs.delivery_deadline;
        if let Err(why) = probe(&mut sender, &mut last, &format!("r6 {round}"), deadline).await {
            return CheckOutcome::warn(format!(
                "round {}: the last of {chain} logins (sent after the others' 101) is not the session: {why}",
                round + 1
            ));
        }
        last.close().await;
    }
    sender.close().await;
    CheckOutcome::info(format!(
        "{RELOGIN_ROUNDS} rounds of 2–3 logins, each sent after the previous 101: the last survived and received every time"
    ))
}

/// R7: not checkable by conform: seeing that queued messages are written before `1001`
/// needs the server shut down, which conform never does.
pub async fn shutdown_flushes(_settings: &Settings) -> CheckOutcome {
    CheckOutcome::info(
        "not checked: it needs a server shutdown, which conform never causes (chat-server: tests r7_* in server/tests/robustness.rs)",
    )
}
