//! Session checks (docs/protocol.md S2, S4–S7): refusing nameless logins, relogin eviction,
//! the new session surviving the old one's end, concurrent logins, and the close
//! handshake.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::check::{flush, login_all, probe, settle, CheckOutcome, Settings};
use super::peer::{Event, Peer};
use super::raw::{self, Answer};
use crate::connection::Connected;

/// How one refused (or not refused) login attempt was answered.
pub(crate) enum Refusal {
    /// Refused: how (`HTTP 400`, `drop before upgrade`, `upgrade then Close 1008`, …).
    Refused(String),
    /// A session was opened and kept.
    Accepted(String),
}

/// Sends an upgrade for `path_and_query` and classifies the answer.
pub(crate) async fn attempt(settings: &Settings, path_and_query: &[u8]) -> Refusal {
    match raw::upgrade(&settings.endpoint, path_and_query).await {
        Err(error) => Refusal::Refused(format!("connection failed ({error})")),
        Ok(Answer::Http { status, body, .. }) if body.is_empty() => {
            Refusal::Refused(format!("HTTP {status}"))
        }
        Ok(Answer::Http { status, body, .. }) => {
            Refusal::Refused(format!("HTTP {status} {body:?}"))
        }
        Ok(Answer::NoResponse(why)) => Refusal::Refused(format!("no upgrade: {why}")),
        Ok(Answer::Upgraded(switched)) => upgraded_then(settings, switched.into_connected()).await,
    }
}

/// After a 101 to a login that should have been refused: was it dropped at once?
async fn upgraded_then(settings: &Settings, connected: Connected) -> Refusal {
    let mut peer = Peer::from_connected("(refused)", connected);
    let deadline = Instant::now() + settings.knobs.close_deadline;
    match peer.expect_end(deadline).await {
        Some(end) => Refusal::Refused(format!("upgrade then {}", end.describe_end())),
        None => Refusal::Accepted(format!(
            "upgraded and still open after {:?}",
            settings.knobs.close_deadline
        )),
    }
}

/// S2: a login with no `user`, or an empty one, opens no session.
pub async fn empty_user_refused(settings: &Settings) -> CheckOutcome {
    let path = settings.endpoint.target.path.clone();
    let attempts = [
        ("no query", path.clone()),
        ("user=", format!("{path}?user=")),
        ("no user key", format!("{path}?name=x")),
    ];
    let mut seen = Vec::new();
    let mut failed = false;
    for (what, path_and_query) in attempts {
        match attempt(settings, path_and_query.as_bytes()).await {
            Refusal::Refused(how) => seen.push(format!("{what}: {how}")),
            Refusal::Accepted(how) => {
                failed = true;
                seen.push(format!("{what}: ACCEPTED, {how}"));
            }
        }
    }
    let seen = seen.join("; ");
    if failed {
        CheckOutcome::fail(seen)
    } else {
        CheckOutcome::pass(seen)
    }
}

/// Counts of how connections ended, for "Close 4001 ×20".
#[derive(Default)]
struct Tally(BTreeMap<String, usize>);

impl Tally {
    fn add(&mut self, what: String) {
        *self.0.entry(what).or_default() += 1;
    }
    fn describe(&self) -> String {
        self.0
            .iter()
            .map(|(what, n)| format!("{what} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// S4: a second login of NAME ends the first session (Close 4001 or TCP drop) and the
/// new connection stays open. Repeated to catch races.
pub async fn relogin_evicts(settings: &Settings) -> CheckOutcome {
    let rounds = 20;
    let prefix = settings.prefix("S4");
    let mut ends = Tally::default();
    let mut sender = match Peer::login(&settings.endpoint, &format!("{prefix}tx")).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::fail(format!("login failed: {error}")),
    };
    for round in 0..rounds {
        let name = format!("{prefix}u{round}");
        let mut old = match Peer::login(&settings.endpoint, &name).await {
            Ok(peer) => peer,
            Err(error) => return CheckOutcome::fail(format!("login of {name:?} failed: {error}")),
        };
        // The first session must be registered (receiving) before the relogin, or the
        // relogin would not be "while NAME already has a session" (M7).
        let deadline = Instant::now() + settings.knobs.delivery_deadline;
        if let Err(why) = probe(&mut sender, &mut old, &format!("s4 {round}"), deadline).await {
            return CheckOutcome::fail(format!(
                "the first login of {name:?} never received: {why}"
            ));
        }
        let mut new = match Peer::login(&settings.endpoint, &name).await {
            Ok(peer) => peer,
            Err(error) => {
                return CheckOutcome::fail(format!("relogin of {name:?} failed: {error}"))
            }
        };
        let deadline = Instant::now() + settings.knobs.close_deadline;
        let Some(end) = old.expect_end(deadline).await else {
            return CheckOutcome::fail(format!(
                "round {}/{rounds}: old session still open {:?} after the relogin",
                round + 1,
                settings.knobs.close_deadline
            ));
        };
        let protocol = &settings.endpoint.protocol;
        let how = match &end {
            Event::Dropped(_) => "TCP drop".to_string(),
            Event::Close {
                code: Some(4001), ..
            } => end.describe_end(),
            _ if !protocol.is_chat() => end.describe_end(),
            _ => format!("{} (not 4001)", end.describe_end()),
        };
        // Under a protocol whose eviction is a given Close code or frame, another end is
        // not the eviction it promised.
        let signalled = matches!(&end, Event::Close { code: None, reason } if !reason.is_empty());
        let closed_with = match &end {
            Event::Close { code, .. } => Some(*code),
            _ => None,
        };
        if !protocol.is_chat() && !protocol.ended_by_eviction(closed_with, signalled) {
            return CheckOutcome::fail(format!(
                "round {}/{rounds}: the old session ended with {}, not the protocol's eviction ({:?})",
                round + 1,
                end.describe_end(),
                protocol.eviction()
            ));
        }
        ends.add(how);
        // The new connection must not have been closed along with the old one.
        let settle_until = Instant::now() + Duration::from_millis(20);
        if let Some(end) = new.expect_end(settle_until).await {
            return CheckOutcome::fail(format!(
                "round {}/{rounds}: the NEW connection ended too: {}",
                round + 1,
                end.describe_end()
            ));
        }
        new.close().await;
    }
    CheckOutcome::pass(format!(
        "{rounds}/{rounds} old sessions ended: {}",
        ends.describe()
    ))
}

/// S5: after each relogin, a message sent by another user reaches the new session,
/// whichever order the old connection's end and the new login happen in. Half the
/// relogins happen while another user floods the chat.
pub async fn new_session_survives(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("S5");
    let name = format!("{prefix}u");
    let mut peers = match login_all(settings, &[format!("{prefix}tx"), name.clone()]).await {
        Ok(peers) => peers,
        Err(outcome) => return outcome,
    };
    let Some(mut current) = peers.pop() else {
        return CheckOutcome::fail("no peers");
    };
    let Some(mut sender) = peers.pop() else {
        return CheckOutcome::fail("no peers");
    };
    if let Err(outcome) = settle(settings, &mut sender, std::slice::from_mut(&mut current)).await {
        return outcome;
    }
    let relogins = settings.knobs.relogins.max(1);
    let mut traffic: Option<tokio::task::JoinHandle<()>> = None;
    let mut evictions_seen = 0usize;
    // Stops waiting for old sessions to end once one did not (that is S4's failure; S5
    // only needs the new session to receive).
    let mut wait_for_old = true;
    let result = async {
        for round in 0..relogins {
            if round == relogins / 2 && traffic.is_none() {
                traffic = Some(flood(settings, format!("{prefix}flood")).await?);
            }
            let new = Peer::login(&settings.endpoint, &name)
                .await
                .map_err(|e| format!("relogin {} failed: {e}", round + 1))?;
            // Even rounds: the old connection's teardown completes first (server-side
            // eviction seen). Odd rounds: the client drops the old connection itself,
            // racing the server's eviction.
            let mut old = std::mem::replace(&mut current, new);
            if round % 2 == 0 && wait_for_old {
                let until = Instant::now() + settings.knobs.close_deadline.min(Duration::from_millis(500));
                if old.expect_end(until).await.is_some() {
                    evictions_seen += 1;
                } else {
                    wait_for_old = false;
                }
            }
            drop(old);
            let deadline = Instant::now() + settings.knobs.delivery_deadline;
            if let Err(why) = probe(&mut sender, &mut current, &format!("s5 {round}"), deadline).await {
                return Err(format!(
                    "relogin {}/{relogins}{}: messages sent after it never reached the new session: {why}",
                    round + 1,
                    if traffic.is_some() { " (under traffic)" } else { "" }
                ));
            }
        }
        // The last session must still be online a moment later.
        tokio::time::sleep(Duration::from_millis(200)).await;
        probe(&mut sender, &mut current, "s5 final", Instant::now() + settings.knobs.delivery_deadline)
            .await
            .map_err(|why| format!("200 ms after the last relogin the session stopped receiving: {why}"))?;
        Ok::<(), String>(())
    }
    .await;
    if let Some(task) = traffic {
        task.abort();
    }
    match result {
        Ok(()) => CheckOutcome::pass(format!(
            "{relogins}/{relogins} new sessions received (half under traffic); {evictions_seen} old ends waited for"
        )),
        Err(why) => CheckOutcome::fail(why),
    }
}

/// A user who sends a message every millisecond until aborted (S5's background traffic).
async fn flood(settings: &Settings, name: String) -> Result<tokio::task::JoinHandle<()>, String> {
    let mut peer = Peer::login(&settings.endpoint, &name)
        .await
        .map_err(|e| format!("login of the traffic user failed: {e}"))?;
    Ok(tokio::spawn(async move {
        for n in 0u64..1_000_000 {
            if peer.send_text(&format!("[traffic {n}]")).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }))
}

/// S6: several logins of one name at once end with exactly one open connection; every
/// other connection is closed. Whether the survivor receives is reported (S5 is the rule
/// that requires it).
pub async fn concurrent_logins(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("S6");
    let rounds = settings.knobs.concurrent_rounds.max(1);
    let logins = settings.knobs.concurrent_logins.max(2);
    let mut sender = match Peer::login(&settings.endpoint, &format!("{prefix}tx")).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::fail(format!("login failed: {error}")),
    };
    let mut ends = Tally::default();
    let mut survivor_deaf = 0usize;
    for round in 0..rounds {
        let name = format!("{prefix}u{round}");
        let mut tasks = JoinSet::new();
        for _ in 0..logins {
            let endpoint = settings.endpoint.clone();
            let name = name.clone();
            tasks.spawn(async move { Peer::login(&endpoint, &name).await });
        }
        let mut peers = Vec::with_capacity(logins);
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(peer)) => peers.push(peer),
                Ok(Err(error)) => ends.add(format!("login refused ({error})")),
                Err(error) => return CheckOutcome::fail(format!("login task failed: {error}")),
            }
        }
        let deadline = Instant::now() + settings.knobs.close_deadline;
        loop {
            let open = peers.iter().filter(|p| p.ended().is_none()).count();
            if open <= 1 || Instant::now() >= deadline {
                break;
            }
            let step = (Instant::now() + Duration::from_millis(5)).min(deadline);
            for peer in peers.iter_mut().filter(|p| p.ended().is_none()) {
                let _ = peer.next_event(step).await;
            }
        }
        for peer in &peers {
            if let Some(end) = peer.ended() {
                ends.add(match end {
                    Event::Dropped(_) => "TCP drop".into(),
                    other => other.describe_end(),
                });
            }
        }
        let open: Vec<usize> = (0..peers.len())
            .filter(|i| peers[*i].ended().is_none())
            .collect();
        if open.len() != 1 {
            return CheckOutcome::fail(format!(
                "round {}/{rounds}: {} of {logins} concurrent logins still open {:?} later (want exactly 1)",
                round + 1,
                open.len(),
                settings.knobs.close_deadline
            ));
        }
        let survivor = &mut peers[open[0]];
        let deadline = Instant::now() + settings.knobs.delivery_deadline;
        if probe(&mut sender, survivor, &format!("s6 {round}"), deadline)
            .await
            .is_err()
        {
            survivor_deaf += 1;
        }
        for peer in peers.iter_mut() {
            peer.close().await;
        }
    }
    let seen = format!(
        "{rounds} rounds × {logins} logins: 1 survivor each; others ended by {}",
        ends.describe()
    );
    if survivor_deaf > 0 {
        CheckOutcome::warn(format!(
            "{seen}; but in {survivor_deaf} rounds the survivor received nothing (see S5)"
        ))
    } else {
        CheckOutcome::pass(seen)
    }
}

/// S7: a client's Close is answered with Close; afterwards, and after a TCP drop, the
/// user is offline and others are unaffected (the server does not stall writing to a
/// closed session, and the name can log in again and receive).
pub async fn close_handshake(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("S7");
    let names = [
        format!("{prefix}a"),
        format!("{prefix}b"),
        format!("{prefix}c"),
    ];
    let mut peers = match login_all(settings, &names).await {
        Ok(peers) => peers,
        Err(outcome) => return outcome,
    };
    let (Some(dropper), Some(mut observer), Some(mut closer)) =
        (peers.pop(), peers.pop(), peers.pop())
    else {
        return CheckOutcome::fail("no peers");
    };
    // closer = a, observer = b, dropper = c.
    if let Err(outcome) = settle(settings, &mut observer, std::slice::from_mut(&mut closer)).await {
        return outcome;
    }
    closer.close().await;
    let answer = match closer
        .expect_end(Instant::now() + settings.knobs.close_deadline)
        .await
    {
        Some(Event::Close { code, .. }) => {
            format!(
                "Close answered with Close {}",
                code.map_or("(no code)".into(), |c| c.to_string())
            )
        }
        Some(Event::Dropped(why)) => {
            return CheckOutcome::fail(format!(
                "client Close answered by a TCP drop, not Close ({why})"
            ))
        }
        _ => {
            return CheckOutcome::fail(format!(
                "client Close not answered within {:?}",
                settings.knobs.close_deadline
            ))
        }
    };
    // c drops its TCP connection without a Close; b's messages must still flow.
    drop(dropper);
    // Let the closed session's teardown finish before its name logs in again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut again = match Peer::login(&settings.endpoint, &names[0]).await {
        Ok(peer) => peer,
        Err(error) => {
            return CheckOutcome::fail(format!("{answer}; but logging in again failed: {error}"))
        }
    };
    if let Err(outcome) = settle(settings, &mut observer, std::slice::from_mut(&mut again)).await {
        return CheckOutcome::fail(format!(
            "{answer}; after close and relogin: {}",
            outcome.seen
        ));
    }
    for n in 0..50 {
        if observer
            .send_text(&format!("[s7 after {n}]"))
            .await
            .is_err()
        {
            return CheckOutcome::fail(format!("{answer}; the observer could no longer send"));
        }
    }
    flush(&mut observer).await;
    if let Err(why) = again
        .expect_text_containing(
            "[s7 after 49]",
            Instant::now() + settings.knobs.delivery_deadline,
        )
        .await
    {
        return CheckOutcome::fail(format!(
            "{answer}; after another user's TCP drop, messages stopped flowing ({why})"
        ));
    }
    again.close().await;
    observer.close().await;
    CheckOutcome::pass(format!(
        "{answer}; relogin after Close and a peer's TCP drop: delivery continues"
    ))
}
