//! `loadgen conform URL`: checks a chat server, rule by rule, against docs/protocol.md.
//!
//! Each MUST rule (S2, S4, S5, S6, S7, M1, M2, M3, M5, M6) has one named check whose
//! verdict is pass or fail; the SHOULD rules and our own rules (S1 raw UTF-8 names, S3 and
//! its format characters, M4, O1, and the robustness rules R1–R7) are informational:
//! `info` when the server behaves as the rule says, `warn` when it differs. A rule may
//! have more than one check (S3 has two); `--only S3` runs them all. Checks assume nothing beyond the protocol, because they run
//! against servers that are not ours, and where the protocol allows two behaviours
//! (refusal as HTTP 400 or a drop; eviction as Close 4001 or a TCP drop) they accept
//! either and say which they saw.
//!
//! Every check uses its own user-name prefix (`cf<run>-<rule>-…`), so checks do not see
//! each other's users; every loop is bounded in count and in time.
//!
//! Files by concern: [`peer`] (a user whose frames arrive on a channel), [`raw`]
//! (hand-written HTTP), [`raw_frame`] (hand-written frames), [`session`] (S-rules),
//! [`messages`] (M1–M5), [`slow_consumer`] (M6), [`extras`] (informational checks),
//! [`robustness`] (R1–R7), [`output`] (table, JSON, JUnit).

pub mod auth;
pub mod check;
pub mod cluster;
pub mod extras;
pub mod limits;
pub mod messages;
pub mod output;
pub mod peer;
pub mod raw;
pub mod raw_frame;
pub mod robustness;
pub mod session;
pub mod slow_consumer;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use self::check::{CheckOutcome, CheckResult, CheckVerdict, Knobs, Settings};
use self::peer::{Endpoint, Peer};
use crate::protocol::{Eviction, Profile};
use crate::target::Target;

/// Which check to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckId {
    A1,
    A2,
    A3,
    A4,
    A5,
    A6,
    A7,
    C2,
    C3,
    S1,
    S2,
    S3,
    S3Format,
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
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
}

/// Every check in report order: (id, rule, name, must).
const CHECKS: &[(CheckId, &str, &str, bool)] = &[
    (CheckId::S1, "S1", "raw UTF-8 name accepted", false),
    (CheckId::S2, "S2", "missing or empty user refused", true),
    (CheckId::S3, "S3", "bad names refused", false),
    (
        CheckId::S3Format,
        "S3",
        "format characters in names refused",
        false,
    ),
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
    (
        CheckId::R1,
        "R1",
        "handshake: GET, HTTP/1.1, version 13",
        false,
    ),
    (
        CheckId::R2,
        "R2",
        "unmasked / oversized control frame: 1002",
        false,
    ),
    (
        CheckId::R3,
        "R3",
        "flooding sender throttled, reader kept",
        false,
    ),
    (
        CheckId::R4,
        "R4",
        "request heads bounded in size and time",
        false,
    ),
    (CheckId::R5, "R5", "503 at the session limit", false),
    (CheckId::R6, "R6", "login registered before its 101", false),
    (CheckId::R7, "R7", "shutdown flushes before 1001", false),
    (CheckId::A1, "A1", "no token, no session", true),
    (
        CheckId::A2,
        "A2",
        "forged and unsigned tokens refused",
        true,
    ),
    (CheckId::A3, "A3", "exp, nbf, aud, iss enforced", true),
    (CheckId::A4, "A4", "the name is the token's sub", true),
    (CheckId::A5, "A5", "relogin with a fresh token evicts", true),
    (CheckId::A6, "A6", "session closed with 4003 at exp", false),
    (CheckId::A7, "A7", "foreign browser Origin refused", false),
    (CheckId::C2, "C2", "per-sender order across nodes", true),
    (
        CheckId::C3,
        "C3",
        "logins on several nodes leave one session",
        true,
    ),
];

/// Checks that need several nodes of one cluster (two or more URLs).
const CLUSTER_ONLY: [CheckId; 2] = [CheckId::C2, CheckId::C3];

/// Checks that need the server's signing key (`--jwt-secret-file`, `--jwt-private-key`).
const AUTH_ONLY: [CheckId; 7] = [
    CheckId::A1,
    CheckId::A2,
    CheckId::A3,
    CheckId::A4,
    CheckId::A5,
    CheckId::A6,
    CheckId::A7,
];

/// Every rule `--only` accepts.
pub fn known_rules() -> Vec<&'static str> {
    let mut rules: Vec<&'static str> = CHECKS.iter().map(|c| c.1).collect();
    rules.dedup();
    rules
}

/// Why a conformance run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ConformError {
    #[error("{0}")]
    Target(#[from] crate::target::TargetError),
    #[error("--only: unknown rule {0:?} (known: {known})", known = known_rules().join(","))]
    UnknownRule(String),
    #[error("--only {0}: a cluster rule needs the URLs of two or more nodes of one cluster")]
    NeedsCluster(String),
    #[error("--only {0}: not applicable under protocol {1} (it is a rule of our chat protocol itself, or needs an eviction)")]
    NotApplicable(String, &'static str),
    #[error("--only {0}: an authentication rule needs the key tokens are signed with (--jwt-secret-file or --jwt-private-key)")]
    NeedsKey(String),
    #[error("{0}")]
    Credentials(String),
    #[error("every login refused: {0}")]
    Refused(String),
    #[error("no server URL given")]
    NoUrl,
    #[error("cannot resolve {host}: {why}")]
    Resolve { host: String, why: String },
    #[error("cannot reach the server at {addr}: {why}")]
    Unreachable { addr: SocketAddr, why: String },
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

impl ConformError {
    /// Whether the server could not be reached (as opposed to bad usage).
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            ConformError::Resolve { .. }
                | ConformError::Unreachable { .. }
                | ConformError::Refused(_)
        )
    }
}

/// What to check and how.
#[derive(Debug, Clone)]
pub struct Request {
    /// The server's URL, or the URLs of several nodes of one cluster (then every check's
    /// users are spread over them, and the cluster checks C2 and C3 run too).
    pub urls: Vec<String>,
    /// Rules to run (`None`: all).
    pub only: Option<Vec<String>>,
    pub connect_timeout: Duration,
    pub knobs: Knobs,
    /// How `wss://` URLs are verified (`--ca-file`, `--insecure`).
    pub tls: crate::tls::TlsSettings,
    /// What every login proves its name with, when the server authenticates (`None`: no
    /// token; the A-rules are then not checked).
    pub credentials: Option<std::sync::Arc<crate::credentials::Credentials>>,
    /// The protocol the server speaks; under any but ours only [`PROFILE_RULES`] apply.
    pub protocol: std::sync::Arc<Profile>,
}

/// The checks that apply to a server of any protocol (a profile other than ours): the
/// message rules, and the session rules when the protocol evicts.
const PROFILE_RULES: [CheckId; 4] = [CheckId::M1, CheckId::M2, CheckId::M3, CheckId::M6];

/// The eviction checks, under a profile whose protocol evicts.
const PROFILE_EVICTION_RULES: [CheckId; 4] = [CheckId::S4, CheckId::S5, CheckId::S6, CheckId::C3];

/// Whether check `id` applies under `protocol`.
fn applies_under(protocol: &Profile, id: CheckId) -> bool {
    protocol.is_chat()
        || PROFILE_RULES.contains(&id)
        || (CLUSTER_ONLY.contains(&id) && id != CheckId::C3)
        || (PROFILE_EVICTION_RULES.contains(&id) && protocol.eviction() != Eviction::None)
}

/// What check `id` is called under `protocol`: M1 and M2 say what they check there.
fn check_name(id: CheckId, name: &'static str, protocol: &Profile) -> &'static str {
    match id {
        CheckId::M1 if !protocol.is_chat() => "delivered to every other user",
        CheckId::M2 if protocol.self_delivery() => "sender gets its own message (declared)",
        _ => name,
    }
}

/// The rules that do not apply under `protocol` (none under ours).
pub fn not_applicable(protocol: &Profile) -> Vec<&'static str> {
    let mut rules: Vec<&'static str> = CHECKS
        .iter()
        .filter(|c| !applies_under(protocol, c.0))
        .map(|c| c.1)
        .collect();
    rules.dedup();
    rules
}

/// Selected checks, validated before anything touches the network.
fn select(
    only: &Option<Vec<String>>,
    cluster: bool,
    signing: bool,
    protocol: &Profile,
) -> Result<Vec<(CheckId, &'static str, &'static str, bool)>, ConformError> {
    let applicable = |id: &CheckId| {
        (cluster || !CLUSTER_ONLY.contains(id))
            && (signing || !AUTH_ONLY.contains(id))
            && applies_under(protocol, *id)
    };
    let Some(only) = only else {
        return Ok(CHECKS
            .iter()
            .filter(|c| applicable(&c.0))
            .copied()
            .collect());
    };
    let mut wanted = Vec::new();
    for rule in only.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
        let found: Vec<CheckId> = CHECKS
            .iter()
            .filter(|c| c.1.eq_ignore_ascii_case(rule))
            .map(|c| c.0)
            .collect();
        if found.is_empty() {
            return Err(ConformError::UnknownRule(rule.to_string()));
        }
        if !found.iter().any(applicable) {
            return Err(if !found.iter().any(|id| applies_under(protocol, *id)) {
                ConformError::NotApplicable(rule.to_string(), protocol.kind())
            } else if found.iter().any(|id| AUTH_ONLY.contains(id)) {
                ConformError::NeedsKey(rule.to_string())
            } else {
                ConformError::NeedsCluster(rule.to_string())
            });
        }
        wanted.extend(found);
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
    let targets: Vec<Target> = request
        .urls
        .iter()
        .map(|url| url.parse())
        .collect::<Result<_, _>>()?;
    let signing = request
        .credentials
        .as_ref()
        .is_some_and(|c| c.signing_key().is_some());
    let selected = select(&request.only, targets.len() > 1, signing, &request.protocol)?;
    let tls = crate::tls::TlsClient::new(&request.tls)?;
    let mut nodes = Vec::with_capacity(targets.len());
    for target in targets {
        let addr = resolve(&target).await?;
        reachable(&target, addr, request.connect_timeout, &tls).await?;
        nodes.push((target, addr));
    }
    let mut endpoint = Endpoint::new(nodes, request.connect_timeout).ok_or(ConformError::NoUrl)?;
    endpoint.tls = Some(tls);
    endpoint.credentials = request.credentials.clone();
    endpoint.protocol = request.protocol.clone();
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32).rotate_left(16))
        .unwrap_or(0)
        ^ std::process::id();
    let settings = Settings {
        endpoint,
        knobs: request.knobs.clone(),
        run_id,
    };
    logins_accepted(&settings).await?;
    let mut results = Vec::with_capacity(selected.len());
    for (id, rule, check, must) in selected {
        settings.endpoint.restart_turns();
        let started = Instant::now();
        let outcome = match tokio::time::timeout(
            settings.knobs.check_timeout,
            run_one(id, &settings),
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(_) => CheckOutcome::fail(format!(
                "check did not finish within {:?} (--check-timeout)",
                settings.knobs.check_timeout
            )),
        };
        let verdict = match (must, outcome.verdict) {
            // An informational check never fails the run.
            (false, CheckVerdict::Fail) => CheckVerdict::Warn,
            (false, CheckVerdict::Pass) => CheckVerdict::Info,
            (_, verdict) => verdict,
        };
        let result = CheckResult {
            rule,
            check: check_name(id, check, &request.protocol),
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

/// Fails in one line when the server refuses logins with 401 or 403: without the proof
/// it wants, every check would fail for that one reason. With credentials, one login with
/// a token shows it (a wrong key); without, a login with an empty `user` does — refused by
/// every server, with 401 by one that wants a token before it looks at names — so that
/// no session is opened, and no server's count of logins moves, before the checks. Under
/// another protocol, one login shows it (a Socket.IO CONNECT_ERROR, a close before the
/// login completed).
async fn logins_accepted(settings: &Settings) -> Result<(), ConformError> {
    let refused =
        |status, body: &str| ConformError::Refused(crate::connection::refusal_said(status, body));
    if settings.endpoint.credentials.is_none() && settings.endpoint.protocol.is_chat() {
        let path = format!("{}?user=", settings.endpoint.target.path);
        return match raw::upgrade(&settings.endpoint, path.as_bytes()).await {
            Ok(raw::Answer::Http {
                status: status @ (401 | 403),
                body,
                ..
            }) => Err(refused(status, &body)),
            _ => Ok(()),
        };
    }
    let name = format!("{}u", settings.prefix("login"));
    match Peer::login(&settings.endpoint, &name).await {
        Ok(mut peer) => {
            peer.close().await;
            Ok(())
        }
        Err(crate::connection::ConnectError::Refused {
            status: status @ (401 | 403),
            body,
        }) => Err(refused(status, &body)),
        Err(crate::connection::ConnectError::Rejected(said)) => Err(ConformError::Refused(said)),
        Err(_) => Ok(()),
    }
}

async fn run_one(id: CheckId, settings: &Settings) -> CheckOutcome {
    match id {
        CheckId::A1 => auth::token_required(settings).await,
        CheckId::A2 => auth::signature_verified(settings).await,
        CheckId::A3 => auth::claims_enforced(settings).await,
        CheckId::A4 => auth::name_is_sub(settings).await,
        CheckId::A5 => auth::relogin_evicts(settings).await,
        CheckId::A6 => auth::session_ends_at_expiry(settings).await,
        CheckId::A7 => auth::foreign_origin_refused(settings).await,
        CheckId::S1 => extras::raw_utf8_name(settings).await,
        CheckId::S2 => session::empty_user_refused(settings).await,
        CheckId::S3 => extras::bad_names_refused(settings).await,
        CheckId::S3Format => extras::format_chars_refused(settings).await,
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
        CheckId::R1 => robustness::handshake_refused(settings).await,
        CheckId::R2 => robustness::frames_checked(settings).await,
        CheckId::R3 => robustness::flood_throttled(settings).await,
        CheckId::R4 => limits::heads_bounded(settings).await,
        CheckId::R5 => limits::session_limit(settings).await,
        CheckId::R6 => limits::registered_before_101(settings).await,
        CheckId::R7 => limits::shutdown_flushes(settings).await,
        CheckId::C2 => cluster::order_across_nodes(settings).await,
        CheckId::C3 => cluster::one_session_cluster_wide(settings).await,
    }
}

/// Fails unless a TCP connection to `addr` opens within `timeout`.
/// Whether `target` answers at `addr`: a TCP connection, and for `wss://` a TLS handshake
/// (so a certificate problem is named before any check runs).
async fn reachable(
    target: &Target,
    addr: SocketAddr,
    timeout: Duration,
    tls: &crate::tls::TlsClient,
) -> Result<(), ConformError> {
    let open = crate::connection::open(target, addr, None, Some(tls));
    match tokio::time::timeout(timeout, open).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(ConformError::Unreachable {
            addr,
            why: error.to_string(),
        }),
        Err(_) => Err(ConformError::Unreachable {
            addr,
            why: format!("no connection within {timeout:?}"),
        }),
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
