//! The vocabulary every conformance check shares: a check's verdict and outcome, a row of
//! the report, the run's settings, and the moves most checks start with (log users in,
//! wait until a message gets through, probe, flush). The checks (`session`, `messages`,
//! `slow_consumer`, `extras`, `robustness`) build on this; the runner in `conform` calls them.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::peer::{Endpoint, Peer};

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckVerdict {
    /// A MUST rule holds.
    Pass,
    /// A MUST rule is broken.
    Fail,
    /// An informational rule where the server differs from ours (never fails the run).
    Warn,
    /// An informational rule where the server behaves as ours.
    Info,
}

impl CheckVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckVerdict::Pass => "pass",
            CheckVerdict::Fail => "fail",
            CheckVerdict::Warn => "warn",
            CheckVerdict::Info => "info",
        }
    }
}

/// What one check concluded and what it saw.
#[derive(Debug, Clone)]
pub struct CheckOutcome {
    pub verdict: CheckVerdict,
    /// What was observed, in one line (the failure message when it failed).
    pub seen: String,
}

impl CheckOutcome {
    pub fn pass(seen: impl Into<String>) -> CheckOutcome {
        CheckOutcome {
            verdict: CheckVerdict::Pass,
            seen: seen.into(),
        }
    }
    pub fn fail(seen: impl Into<String>) -> CheckOutcome {
        CheckOutcome {
            verdict: CheckVerdict::Fail,
            seen: seen.into(),
        }
    }
    pub fn info(seen: impl Into<String>) -> CheckOutcome {
        CheckOutcome {
            verdict: CheckVerdict::Info,
            seen: seen.into(),
        }
    }
    pub fn warn(seen: impl Into<String>) -> CheckOutcome {
        CheckOutcome {
            verdict: CheckVerdict::Warn,
            seen: seen.into(),
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// docs/protocol.md rule number, such as `S5`.
    pub rule: &'static str,
    /// Short name of the check.
    pub check: &'static str,
    /// Whether the rule is a MUST (its failure fails the run).
    pub must: bool,
    pub verdict: CheckVerdict,
    pub seen: String,
    /// Wall time the check took, in seconds.
    pub seconds: f64,
}

/// What the checks may spend and wait for: deadlines and repetition counts, from flags.
#[derive(Debug, Clone)]
pub struct Knobs {
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
    /// The server's request-head timeout: R4 waits this plus `close_deadline` for a
    /// connection with an unfinished head to be ended.
    pub header_timeout: Duration,
    /// The server's session limit, if known: R5 fills it and expects `503` (`None`: R5
    /// is not carried out).
    pub max_sessions: Option<usize>,
    /// Upper bound on any single check.
    pub check_timeout: Duration,
}

/// What every check of one run is given: the server and the knobs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub endpoint: Endpoint,
    pub knobs: Knobs,
    /// Distinguishes this run's user names from any other's.
    pub run_id: u32,
}

impl Settings {
    /// A user-name prefix private to `rule`.
    pub fn prefix(&self, rule: &str) -> String {
        format!("cf{:x}-{}-", self.run_id, rule.to_ascii_lowercase())
    }
}

/// Whether every MUST check passed (`warn` on a MUST check is a pass with a remark).
pub fn all_must_passed(results: &[CheckResult]) -> bool {
    results
        .iter()
        .all(|r| !r.must || r.verdict != CheckVerdict::Fail)
}

/// Logs in every name in `names`, or explains which login failed.
pub async fn login_all(settings: &Settings, names: &[String]) -> Result<Vec<Peer>, CheckOutcome> {
    let mut peers = Vec::with_capacity(names.len());
    for name in names {
        match Peer::login(&settings.endpoint, name).await {
            Ok(peer) => peers.push(peer),
            Err(error) => {
                return Err(CheckOutcome::fail(format!(
                    "login of {name:?} failed: {error}"
                )))
            }
        }
    }
    Ok(peers)
}

/// Makes sure every receiver is registered: `sender` sends sync messages until each
/// receiver has seen one (the protocol does not say when a login starts receiving, M7).
pub async fn settle(
    settings: &Settings,
    sender: &mut Peer,
    receivers: &mut [Peer],
) -> Result<(), CheckOutcome> {
    let deadline = Instant::now() + settings.knobs.delivery_deadline.max(Duration::from_secs(1));
    let mut ready = vec![false; receivers.len()];
    let mut round = 0u32;
    while Instant::now() < deadline {
        round += 1;
        let token = format!("[sync {} {round}]", sender.name);
        if let Err(error) = sender.send_text(&token).await {
            return Err(CheckOutcome::fail(format!(
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
    Err(CheckOutcome::fail(format!(
        "messages from {} never reached {} within {:?}",
        sender.name,
        missing.join(", "),
        settings.knobs.delivery_deadline
    )))
}

/// Sends `<probe TAG n>` every 50 ms until `receiver` gets one of them or `deadline`
/// passes: the protocol does not say when a new login starts receiving (M7), so a single
/// message sent right after a login may legitimately be missed.
pub async fn probe(
    sender: &mut Peer,
    receiver: &mut Peer,
    tag: &str,
    deadline: Instant,
) -> Result<(), String> {
    let token = format!("[probe {tag} ");
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        sender
            .send_text(&format!("{token}{attempt}]"))
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
pub async fn flush(sender: &mut Peer) {
    for _ in 0..2 {
        let _ = sender.send_text("[flush]").await;
    }
}
