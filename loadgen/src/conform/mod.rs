//! `loadgen conform URL`: checks a chat server, rule by rule, against PROTOCOL.md.
//!
//! Each MUST rule (S2, S4, S5, S6, S7, M1, M2, M3, M5, M6) has one named check whose
//! verdict is pass or fail; the SHOULD rules and our own operational rules (S1 raw UTF-8
//! names, S3, M4, O1) are informational: `info` when the server behaves as ours does,
//! `warn` when it differs. Checks assume nothing beyond the protocol, because they run
//! against servers that are not ours, and where the protocol allows two behaviours
//! (refusal as HTTP 400 or a drop; eviction as Close 4001 or a TCP drop) they accept
//! either and say which they saw.
//!
//! Every check uses its own user-name prefix (`cf<run>-<rule>-…`), so checks do not see
//! each other's users; every loop is bounded in count and in time.
//!
//! Files by concern: [`peer`] (a user whose frames arrive on a channel), [`raw`]
//! (hand-written HTTP), [`session`] (S-rules), [`messages`] (M1–M5), [`slow_consumer`]
//! (M6), [`extras`] (informational checks), [`output`] (table, JSON, JUnit).

pub mod command;
pub mod extras;
pub mod messages;
pub mod output;
pub mod peer;
pub mod raw;
pub mod session;
pub mod slow_consumer;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;

use self::peer::Endpoint;
use crate::target::Target;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// A MUST rule holds.
    Pass,
    /// A MUST rule is broken.
    Fail,
    /// An informational rule where the server differs from ours (never fails the run).
    Warn,
    /// An informational rule where the server behaves as ours.
    Info,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Warn => "warn",
            Verdict::Info => "info",
        }
    }
}

/// What one check concluded and what it saw.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub verdict: Verdict,
    /// What was observed, in one line (the failure message when it failed).
    pub seen: String,
}

impl Outcome {
    pub fn pass(seen: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Pass,
            seen: seen.into(),
        }
    }
    pub fn fail(seen: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Fail,
            seen: seen.into(),
        }
    }
    pub fn info(seen: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Info,
            seen: seen.into(),
        }
    }
    pub fn warn(seen: impl Into<String>) -> Outcome {
        Outcome {
            verdict: Verdict::Warn,
            seen: seen.into(),
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// PROTOCOL.md rule number, such as `S5`.
    pub rule: &'static str,
    /// Short name of the check.
    pub check: &'static str,
    /// Whether the rule is a MUST (its failure fails the run).
    pub must: bool,
    pub verdict: Verdict,
    pub seen: String,
    /// Wall time the check took, in seconds.
    pub seconds: f64,
}

/// Knobs of a run (deadlines and repetition counts come from flags).
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoint: Endpoint,
    /// How long a message may take to arrive before it counts as not delivered.
    pub delivery_deadline: Duration,
    /// How long an evicted or refused connection may take to be closed.
    pub close_deadline: Duration,
    /// Relogins for S5 (half of them while other traffic flows).
    pub relogins: usize,
    /// Rounds of concurrent logins for S6, and logins per round.
    pub concurrent_rounds: usize,
    pub concurrent_logins: usize,
    /// Messages per sender for M3.
    pub order_messages: usize,
    /// Bytes sent past a stalled receiver in M6, and how long the healthy receiver may
    /// go without progress.
    pub slow_bytes: usize,
    pub slow_stall: Duration,
    /// The server's message size limit (M5 sends one byte more).
    pub max_message: usize,
    /// Upper bound on any single check.
    pub check_timeout: Duration,
    /// Distinguishes this run's user names from any other's.
    pub run_id: u32,
}

impl Settings {
    /// A user-name prefix private to `rule`.
    pub fn prefix(&self, rule: &str) -> String {
        format!("cf{:x}-{}-", self.run_id, rule.to_ascii_lowercase())
    }
}

/// Which check to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckId {
    S1,
    S2,
    S3,
    S4,
    S5,
    S6,
    S7,
    M1,
    M2,
    M3,
    M4,
    M5,
    M6,
    O1,
}

/// Every check in report order: (id, rule, name, must).
const CHECKS: &[(CheckId, &str, &str, bool)] = &[
    (CheckId::S1, "S1", "raw UTF-8 name accepted", false),
    (CheckId::S2, "S2", "missing or empty user refused", true),
    (CheckId::S3, "S3", "bad names refused", false),
    (CheckId::S4, "S4", "relogin evicts the old session", true),
    (
        CheckId::S5,
        "S5",
        "new session survives old one's end",
        true,
    ),
    (
        CheckId::S6,
        "S6",
        "concurrent logins leave one session",
        true,
    ),
    (
        CheckId::S7,
        "S7",
        "client Close answered, user offline",
        true,
    ),
    (
        CheckId::M1,
        "M1",
        "delivered to others as MSG -- FROM NAME",
        true,
    ),
    (
        CheckId::M2,
        "M2",
        "sender does not get its own message",
        true,
    ),
    (CheckId::M3, "M3", "per-sender order under load", true),
    (CheckId::M4, "M4", "fragments, ping, binary", false),
    (
        CheckId::M5,
        "M5",
        "too big / invalid UTF-8 closes, not sent",
        true,
    ),
    (CheckId::M6, "M6", "stalled receiver delays no one", true),
    (CheckId::O1, "O1", "healthz and metrics", false),
];

/// Every rule `--only` accepts.
pub fn known_rules() -> Vec<&'static str> {
    CHECKS.iter().map(|c| c.1).collect()
}

/// Why a conformance run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ConformError {
    #[error("{0}")]
    Target(#[from] crate::target::TargetError),
    #[error("--only: unknown rule {0:?} (known: {known})", known = known_rules().join(","))]
    UnknownRule(String),
    #[error("cannot resolve {host}: {why}")]
    Resolve { host: String, why: String },
    #[error("cannot reach the server at {addr}: {why}")]
    Unreachable { addr: SocketAddr, why: String },
}

impl ConformError {
    /// Whether the server could not be reached (as opposed to bad usage).
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            ConformError::Resolve { .. } | ConformError::Unreachable { .. }
        )
    }
}

/// What to check and how.
#[derive(Debug, Clone)]
pub struct Request {
    pub url: String,
    /// Rules to run (`None`: all).
    pub only: Option<Vec<String>>,
    pub connect_timeout: Duration,
    pub delivery_deadline: Duration,
    pub close_deadline: Duration,
    pub relogins: usize,
    pub concurrent_rounds: usize,
    pub concurrent_logins: usize,
    pub order_messages: usize,
    pub slow_bytes: usize,
    pub slow_stall: Duration,
    pub max_message: usize,
    pub check_timeout: Duration,
}

/// Selected checks, validated before anything touches the network.
fn select(
    only: &Option<Vec<String>>,
) -> Result<Vec<(CheckId, &'static str, &'static str, bool)>, ConformError> {
    let Some(only) = only else {
        return Ok(CHECKS.to_vec());
    };
    let mut wanted = Vec::new();
    for rule in only.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
        let found = CHECKS
            .iter()
            .find(|c| c.1.eq_ignore_ascii_case(rule))
            .ok_or_else(|| ConformError::UnknownRule(rule.to_string()))?;
        if !wanted.contains(&found.0) {
            wanted.push(found.0);
        }
    }
    Ok(CHECKS
        .iter()
        .filter(|c| wanted.contains(&c.0))
        .copied()
        .collect())
}

/// Runs the selected checks one after another, calling `progress` after each.
pub async fn run(
    request: &Request,
    mut progress: impl FnMut(&CheckResult),
) -> Result<Vec<CheckResult>, ConformError> {
    let target: Target = request.url.parse()?;
    let selected = select(&request.only)?;
    let addr = resolve(&target).await?;
    match tokio::time::timeout(
        request.connect_timeout,
        tokio::net::TcpStream::connect(addr),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => {
            return Err(ConformError::Unreachable {
                addr,
                why: error.to_string(),
            });
        }
        Err(_) => {
            return Err(ConformError::Unreachable {
                addr,
                why: format!("no TCP connection within {:?}", request.connect_timeout),
            });
        }
    }
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16))
        .unwrap_or(0)
        ^ std::process::id();
    let settings = Settings {
        endpoint: Endpoint {
            target,
            addr,
            connect_timeout: request.connect_timeout,
        },
        delivery_deadline: request.delivery_deadline,
        close_deadline: request.close_deadline,
        relogins: request.relogins,
        concurrent_rounds: request.concurrent_rounds,
        concurrent_logins: request.concurrent_logins,
        order_messages: request.order_messages,
        slow_bytes: request.slow_bytes,
        slow_stall: request.slow_stall,
        max_message: request.max_message,
        check_timeout: request.check_timeout,
        run_id,
    };
    let mut results = Vec::with_capacity(selected.len());
    for (id, rule, check, must) in selected {
        let started = Instant::now();
        let outcome =
            match tokio::time::timeout(settings.check_timeout, run_one(id, &settings)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::fail(format!(
                    "check did not finish within {:?} (--check-timeout)",
                    settings.check_timeout
                )),
            };
        let verdict = match (must, outcome.verdict) {
            // An informational check never fails the run.
            (false, Verdict::Fail) => Verdict::Warn,
            (false, Verdict::Pass) => Verdict::Info,
            (_, verdict) => verdict,
        };
        let result = CheckResult {
            rule,
            check,
            must,
            verdict,
            seen: outcome.seen,
            seconds: started.elapsed().as_secs_f64(),
        };
        progress(&result);
        results.push(result);
    }
    Ok(results)
}

/// Whether every MUST check passed (`warn` on a MUST check is a pass with a remark).
pub fn all_must_passed(results: &[CheckResult]) -> bool {
    results
        .iter()
        .all(|r| !r.must || r.verdict != Verdict::Fail)
}

async fn run_one(id: CheckId, settings: &Settings) -> Outcome {
    match id {
        CheckId::S1 => extras::raw_utf8_name(settings).await,
        CheckId::S2 => session::empty_user_refused(settings).await,
        CheckId::S3 => extras::bad_names_refused(settings).await,
        CheckId::S4 => session::relogin_evicts(settings).await,
        CheckId::S5 => session::new_session_survives(settings).await,
        CheckId::S6 => session::concurrent_logins(settings).await,
        CheckId::S7 => session::close_handshake(settings).await,
        CheckId::M1 => messages::delivered_with_from(settings).await,
        CheckId::M2 => messages::no_echo(settings).await,
        CheckId::M3 => messages::per_sender_order(settings).await,
        CheckId::M4 => extras::fragments_ping_binary(settings).await,
        CheckId::M5 => messages::limits_close(settings).await,
        CheckId::M6 => slow_consumer::stalled_receiver(settings).await,
        CheckId::O1 => extras::health_and_metrics(settings).await,
    }
}

async fn resolve(target: &Target) -> Result<SocketAddr, ConformError> {
    let fail = |why: String| ConformError::Resolve {
        host: target.host.clone(),
        why,
    };
    let mut addrs = tokio::net::lookup_host(target.authority())
        .await
        .map_err(|e| fail(e.to_string()))?;
    addrs.next().ok_or_else(|| fail("no address".into()))
}

/// Logs in every name in `names`, or explains which login failed.
pub(crate) async fn login_all(
    settings: &Settings,
    names: &[String],
) -> Result<Vec<peer::Peer>, Outcome> {
    let mut peers = Vec::with_capacity(names.len());
    for name in names {
        match peer::Peer::login(&settings.endpoint, name).await {
            Ok(peer) => peers.push(peer),
            Err(error) => return Err(Outcome::fail(format!("login of {name:?} failed: {error}"))),
        }
    }
    Ok(peers)
}

/// Makes sure every receiver is registered: `sender` sends sync messages until each
/// receiver has seen one (the protocol does not say when a login starts receiving, M7).
pub(crate) async fn settle(
    settings: &Settings,
    sender: &mut peer::Peer,
    receivers: &mut [peer::Peer],
) -> Result<(), Outcome> {
    let deadline = Instant::now() + settings.delivery_deadline.max(Duration::from_secs(1));
    let mut ready = vec![false; receivers.len()];
    let mut round = 0u32;
    while Instant::now() < deadline {
        round += 1;
        let token = format!("<sync {} {round}>", sender.name);
        if let Err(error) = sender.send_text(&token).await {
            return Err(Outcome::fail(format!(
                "{} could not send: {error}",
                sender.name
            )));
        }
        let step = (Instant::now() + Duration::from_millis(100)).min(deadline);
        for (receiver, ready) in receivers.iter_mut().zip(ready.iter_mut()) {
            if !*ready && receiver.expect_text_containing(&token, step).await.is_ok() {
                *ready = true;
            }
        }
        if ready.iter().all(|r| *r) {
            return Ok(());
        }
    }
    let missing: Vec<_> = receivers
        .iter()
        .zip(&ready)
        .filter(|(_, r)| !**r)
        .map(|(p, _)| p.name.clone())
        .collect();
    Err(Outcome::fail(format!(
        "messages from {} never reached {} within {:?}",
        sender.name,
        missing.join(", "),
        settings.delivery_deadline
    )))
}

/// Sends `<probe TAG n>` every 50 ms until `receiver` gets one of them or `deadline`
/// passes: the protocol does not say when a new login starts receiving (M7), so a single
/// message sent right after a login may legitimately be missed.
pub(crate) async fn probe(
    sender: &mut peer::Peer,
    receiver: &mut peer::Peer,
    tag: &str,
    deadline: Instant,
) -> Result<(), String> {
    let token = format!("<probe {tag} ");
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        sender
            .send_text(&format!("{token}{attempt}>"))
            .await
            .map_err(|e| format!("{} could not send: {e}", sender.name))?;
        let step = (Instant::now() + Duration::from_millis(50)).min(deadline);
        match receiver.expect_text_containing(&token, step).await {
            Ok(_) => return Ok(()),
            Err(why) if receiver.ended().is_some() || Instant::now() >= deadline => {
                return Err(format!("{why} ({attempt} probes sent)"))
            }
            Err(_) => continue,
        }
    }
}

/// Two throw-away messages, so a server that holds a message back until the next one
/// (as one that swaps pairs does) releases everything a check waits for.
pub(crate) async fn flush(sender: &mut peer::Peer) {
    for _ in 0..2 {
        let _ = sender.send_text("<flush>").await;
    }
}
