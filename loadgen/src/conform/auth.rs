//! Authentication checks (docs/protocol.md A1–A7), run when conform is given the key the
//! server's tokens are signed with (`--jwt-secret-file`, `--jwt-private-key`). With a key,
//! every other check's logins carry tokens too, so S- and M-rules are checked on the
//! server as it is deployed.
//!
//! The MUST rules A1–A5 pass only when each bad login opens no session: no token (A1);
//! `alg: none`, another key, a payload changed after signing, an altered signature and,
//! for a public key, an HS256 token keyed with that public key (A2); an expired or not yet
//! valid token, and a wrong `aud` or `iss` when the tokens carry one (A3, whose refusals
//! must not echo the token); a `?user=` that is not the token's `sub` (A4, where a token
//! in the header and in `?token=` must each log in as its `sub`); a relogin with a fresh
//! token evicting the first session (A5). A refusal by another status than the rule's is
//! a pass with a remark (`warn`). A6 (Close 4003 at `exp`) and A7 (a foreign `Origin`
//! refused) are informational: the protocol does not mark them MUST, and A7 depends on
//! the server's allow-list.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jwt_keys::{token, Algorithm, SigningKey};
use serde_json::{json, Value};

use super::check::{probe, settle, CheckOutcome, Settings};
use super::peer::{Event, Peer};
use super::raw::{self, Answer, Upgrade};
use crate::connection::{self, Connected};
use crate::credentials::TokenPlacement;
use crate::target::encode_name;

/// How a login that should have been refused was answered.
enum Seen {
    /// Refused: the status (`None`: dropped, or upgraded then closed) and what was said.
    Refused { status: Option<u16>, said: String },
    /// A session opened and stayed open.
    Accepted(String),
}

/// Sends `request` and says how it was answered.
async fn answer(settings: &Settings, request: &Upgrade<'_>) -> Seen {
    match raw::send(&settings.endpoint, request).await {
        Err(error) => Seen::Refused {
            status: None,
            said: format!("connection failed ({error})"),
        },
        Ok(Answer::Http { status, body, .. }) => Seen::Refused {
            status: Some(status),
            said: body,
        },
        Ok(Answer::NoResponse(why)) => Seen::Refused {
            status: None,
            said: format!("no upgrade: {why}"),
        },
        Ok(Answer::Upgraded(switched)) => {
            let mut peer = Peer::from_connected("(refused)", switched.into_connected());
            let deadline = Instant::now() + settings.knobs.close_deadline;
            match peer.expect_end(deadline).await {
                Some(end) => Seen::Refused {
                    status: None,
                    said: format!("upgrade then {}", end.describe_end()),
                },
                None => Seen::Accepted(format!(
                    "upgraded and still open after {:?}",
                    settings.knobs.close_deadline
                )),
            }
        }
    }
}

/// A login as `user` (in `?user=`, when given) with `Authorization: Bearer token`.
fn with_token<'a>(path: &'a [u8], token: &str) -> Upgrade<'a> {
    Upgrade {
        authorization: Some(format!("Bearer {token}")),
        ..Upgrade::login(path)
    }
}

/// `path?user=NAME` of the endpoint.
fn path_for(settings: &Settings, user: &str) -> String {
    format!(
        "{}?user={}",
        settings.endpoint.target.path,
        encode_name(user)
    )
}

/// Judges attempts that must each be refused, ideally with `want`: `fail` when any opened
/// a session, `warn` when one was refused otherwise, `pass` when all got `want`.
fn judge(attempts: Vec<(String, Seen)>, want: u16) -> CheckOutcome {
    let mut seen = Vec::new();
    let (mut accepted, mut other) = (false, false);
    for (what, answer) in attempts {
        match answer {
            Seen::Accepted(how) => {
                accepted = true;
                seen.push(format!("{what}: ACCEPTED ({how})"));
            }
            Seen::Refused {
                status: Some(status),
                said,
            } => {
                other |= status != want;
                let reason = said.split(':').next().unwrap_or("").trim();
                seen.push(if reason.is_empty() || reason.len() > 24 {
                    format!("{what}: {status}")
                } else {
                    format!("{what}: {status} {reason}")
                });
            }
            Seen::Refused { status: None, said } => {
                other = true;
                seen.push(format!("{what}: {said}"));
            }
        }
    }
    let seen = seen.join("; ");
    if accepted {
        CheckOutcome::fail(seen)
    } else if other {
        CheckOutcome::warn(format!("refused, not always with {want}: {seen}"))
    } else {
        CheckOutcome::pass(seen)
    }
}

/// The key conform signs with (these checks run only with one).
fn key(settings: &Settings) -> Option<&SigningKey> {
    settings.endpoint.credentials.as_ref()?.signing_key()
}

/// Claims for `sub` valid from now for `ttl` (negative: expired that long ago), with the
/// extra claims conform was given (`--jwt-claim`).
fn claims(settings: &Settings, sub: &str, exp_in: i64) -> Value {
    let now = now_secs();
    let mut claims = json!({"sub": sub, "iat": now, "exp": (now as i64 + exp_in).max(0)});
    if let Some(extra) = settings
        .endpoint
        .credentials
        .as_ref()
        .and_then(|c| c.claims())
    {
        for (name, value) in extra {
            claims[name] = json!(value);
        }
    }
    claims
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A token of `claims` signed with conform's key.
fn signed(settings: &Settings, claims: &Value) -> Result<String, CheckOutcome> {
    let key = key(settings).ok_or_else(|| CheckOutcome::fail("no signing key"))?;
    key.mint(claims)
        .map_err(|error| CheckOutcome::fail(format!("cannot mint a token: {error}")))
}

/// A1: a login without a token opens no session, whatever `?user=` says.
pub async fn token_required(settings: &Settings) -> CheckOutcome {
    let name = format!("{}u", settings.prefix("A1"));
    let path = path_for(settings, &name);
    let mut attempts = Vec::new();
    let none = Upgrade {
        authorization: Some(String::new()),
        ..Upgrade::login(path.as_bytes())
    };
    attempts.push(("?user= alone".to_string(), answer(settings, &none).await));
    let basic = Upgrade {
        authorization: Some("Basic Y29uZm9ybTpjb25mb3Jt".into()),
        ..Upgrade::login(path.as_bytes())
    };
    attempts.push((
        "Basic credentials".to_string(),
        answer(settings, &basic).await,
    ));
    judge(attempts, 401)
}

/// A2: only the configured key and algorithm verify: `alg: none`, another key, a changed
/// payload, an altered signature and algorithm confusion are refused.
pub async fn signature_verified(settings: &Settings) -> CheckOutcome {
    let Some(key) = key(settings) else {
        return CheckOutcome::fail("no signing key");
    };
    let prefix = settings.prefix("A2");
    let name = format!("{prefix}u");
    let mut tokens: Vec<(String, String)> = Vec::new();
    let good = match signed(settings, &claims(settings, &name, 300)) {
        Ok(token) => token,
        Err(outcome) => return outcome,
    };
    match token::unsecured(&claims(settings, &name, 300)) {
        Ok(unsecured) => tokens.push(("alg none".into(), unsecured)),
        Err(error) => return CheckOutcome::fail(format!("cannot make a token: {error}")),
    }
    if let Some(other) = other_key(key.algorithm()) {
        if let Ok(token) = other.mint(&claims(settings, &name, 300)) {
            tokens.push(("another key".into(), token));
        }
    }
    if let Some(changed) = token::with_payload(&good, &claims(settings, &format!("{prefix}x"), 300))
    {
        tokens.push(("payload changed after signing".into(), changed));
    }
    tokens.push(("signature altered".into(), altered_signature(&good)));
    if let Some(public) = key.verifying_key().public_pem() {
        for (what, bytes) in [
            ("HS256 keyed with the public key", public.as_bytes()),
            (
                "HS256 keyed with the public key, trimmed",
                public.trim_end().as_bytes(),
            ),
        ] {
            if let Ok(token) = token::hs256_keyed_with(bytes, &claims(settings, &name, 300)) {
                tokens.push((what.into(), token));
            }
        }
    }
    let mut attempts = Vec::new();
    for (what, token) in tokens {
        // The tampered token names another user; every other one names `name`.
        let user = token::payload(&token)
            .and_then(|p| p.get("sub").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| name.clone());
        let path = path_for(settings, &user);
        attempts.push((
            what,
            answer(settings, &with_token(path.as_bytes(), &token)).await,
        ));
    }
    judge(attempts, 401)
}

/// A key of `algorithm` that is not conform's (ring cannot make RSA keys: `None`).
fn other_key(algorithm: Algorithm) -> Option<SigningKey> {
    match algorithm {
        Algorithm::HS256 => {
            let secret: Vec<u8> = (0..48u8)
                .map(|i| i.wrapping_mul(37).wrapping_add(11))
                .collect();
            SigningKey::hs256(&secret).ok()
        }
        Algorithm::ES256 | Algorithm::EdDSA => {
            let pem = jwt_keys::generate_private_pem(algorithm).ok()?;
            SigningKey::from_private_pem(pem.as_bytes()).ok()
        }
        Algorithm::RS256 => None,
    }
}

/// `token` with one character in the middle of its signature changed.
fn altered_signature(token: &str) -> String {
    let Some(dot) = token.rfind('.') else {
        return token.to_string();
    };
    let mut bytes = token.as_bytes().to_vec();
    let at = dot + 1 + (bytes.len() - dot - 1) / 2;
    if let Some(byte) = bytes.get_mut(at) {
        *byte = if *byte == b'A' { b'B' } else { b'A' };
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A3: `exp` and `nbf` are enforced (an hour out, beyond any sane leeway), `aud` and `iss`
/// when the tokens carry them, and no refusal echoes the token.
pub async fn claims_enforced(settings: &Settings) -> CheckOutcome {
    let name = format!("{}u", settings.prefix("A3"));
    let path = path_for(settings, &name);
    let mut cases: Vec<(String, Value)> = vec![
        ("expired an hour ago".into(), claims(settings, &name, -3600)),
        ("nbf an hour ahead".into(), {
            let mut c = claims(settings, &name, 7200);
            c["nbf"] = json!(now_secs() + 3600);
            c
        }),
    ];
    for claim in ["aud", "iss"] {
        let base = claims(settings, &name, 300);
        if base.get(claim).is_some() {
            let mut wrong = base;
            wrong[claim] = json!("conform-not-this-server");
            cases.push((format!("wrong {claim}"), wrong));
        }
    }
    let mut attempts = Vec::new();
    let mut echoed = Vec::new();
    for (what, claims) in cases {
        let token = match signed(settings, &claims) {
            Ok(token) => token,
            Err(outcome) => return outcome,
        };
        let seen = answer(settings, &with_token(path.as_bytes(), &token)).await;
        if let Seen::Refused { said, .. } = &seen {
            if echoes(said, &token) {
                echoed.push(what.clone());
            }
        }
        attempts.push((what, seen));
    }
    if !echoed.is_empty() {
        return CheckOutcome::fail(format!(
            "the refusal echoes the token ({}): a token must never be written back",
            echoed.join(", ")
        ));
    }
    judge(attempts, 401)
}

/// Whether `said` holds a recognisable piece of `token` (its signature's or payload's
/// first 16 characters).
fn echoes(said: &str, token: &str) -> bool {
    token
        .split('.')
        .skip(1)
        .filter(|part| part.len() >= 16)
        .any(|part| said.contains(&part[..16]))
}

/// A4: a token in the header and one in `?token=` each log in as its `sub` (so named in
/// `-- FROM`); a login without `?user=` takes `sub`; a `?user=` that differs from `sub`
/// opens no session (`403`).
pub async fn name_is_sub(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("A4");
    let mut observer = match Peer::login(&settings.endpoint, &format!("{prefix}rx")).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::fail(format!("login failed: {error}")),
    };
    let mut seen = Vec::new();
    for (what, placement, user_in_query) in [
        ("header", TokenPlacement::Header, true),
        ("?token=", TokenPlacement::Query, true),
        ("header, no ?user=", TokenPlacement::Header, false),
    ] {
        let sub = format!("{prefix}{}", seen.len());
        let token = match signed(settings, &claims(settings, &sub, 300)) {
            Ok(token) => token,
            Err(outcome) => return outcome,
        };
        let connected = if user_in_query {
            login_with(settings, &sub, &token, placement).await
        } else {
            let path = settings.endpoint.target.path.clone();
            match raw::send(&settings.endpoint, &with_token(path.as_bytes(), &token)).await {
                Ok(Answer::Upgraded(switched)) => Ok(switched.into_connected()),
                Ok(Answer::Http { status, body, .. }) => Err(format!("HTTP {status} {body:?}")),
                Ok(Answer::NoResponse(why)) => Err(why),
                Err(error) => Err(error.to_string()),
            }
        };
        let mut user = match connected {
            Ok(connected) => Peer::from_connected(&sub, connected),
            Err(why) => {
                return CheckOutcome::fail(format!("a token in the {what}: login refused: {why}"))
            }
        };
        if let Err(outcome) = settle(settings, &mut user, std::slice::from_mut(&mut observer)).await
        {
            return CheckOutcome::fail(format!("a token in the {what}: {}", outcome.seen));
        }
        let tag = format!("<a4 {}>", seen.len());
        if let Err(error) = user.send_text(&tag).await {
            return CheckOutcome::fail(format!("a token in the {what}: cannot send: {error}"));
        }
        let deadline = Instant::now() + settings.knobs.delivery_deadline;
        match observer.expect_text_containing(&tag, deadline).await {
            Ok(text) if text.ends_with(sub.as_bytes()) => seen.push(format!("{what}: named {sub}")),
            Ok(text) => {
                return CheckOutcome::fail(format!(
                    "a token in the {what} for sub {sub:?}: delivered as {:?}",
                    String::from_utf8_lossy(&text)
                ))
            }
            Err(why) => return CheckOutcome::fail(format!("a token in the {what}: message {why}")),
        }
        user.close().await;
    }
    // A token of one name with another in ?user=.
    let token = match signed(settings, &claims(settings, &format!("{prefix}owner"), 300)) {
        Ok(token) => token,
        Err(outcome) => return outcome,
    };
    let path = path_for(settings, &format!("{prefix}other"));
    let mismatch = answer(settings, &with_token(path.as_bytes(), &token)).await;
    observer.close().await;
    let outcome = judge(vec![("?user= other than sub".into(), mismatch)], 403);
    let seen = format!("{}; {}", seen.join("; "), outcome.seen);
    CheckOutcome { seen, ..outcome }
}

/// A logged-in connection as `user` with `token` placed as asked.
async fn login_with(
    settings: &Settings,
    user: &str,
    token: &str,
    placement: TokenPlacement,
) -> Result<Connected, String> {
    let endpoint = &settings.endpoint;
    let login = connection::Login {
        tls: endpoint.tls.as_ref(),
        token: Some(token),
        token_in: placement,
        ..connection::Login::plain(user, endpoint.connect_timeout)
    };
    connection::connect(&endpoint.target, endpoint.addr, &login)
        .await
        .map_err(|error| error.to_string())
}

/// A5: a second login of a `sub` with a fresh token evicts the first session and itself
/// keeps receiving.
pub async fn relogin_evicts(settings: &Settings) -> CheckOutcome {
    let prefix = settings.prefix("A5");
    let name = format!("{prefix}u");
    let endpoint = &settings.endpoint;
    let mut sender = match Peer::login(endpoint, &format!("{prefix}tx")).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::fail(format!("login failed: {error}")),
    };
    let mut first = match Peer::login(endpoint, &name).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::fail(format!("first login failed: {error}")),
    };
    let deadline = Instant::now() + settings.knobs.delivery_deadline;
    if let Err(why) = probe(&mut sender, &mut first, "a5 first", deadline).await {
        return CheckOutcome::fail(format!("the first session never received: {why}"));
    }
    let mut second = match Peer::login(endpoint, &name).await {
        Ok(peer) => peer,
        Err(error) => return CheckOutcome::fail(format!("the relogin failed: {error}")),
    };
    let Some(end) = first
        .expect_end(Instant::now() + settings.knobs.close_deadline)
        .await
    else {
        return CheckOutcome::fail(format!(
            "the first session was still open {:?} after a relogin with a fresh token",
            settings.knobs.close_deadline
        ));
    };
    let deadline = Instant::now() + settings.knobs.delivery_deadline;
    if let Err(why) = probe(&mut sender, &mut second, "a5 second", deadline).await {
        return CheckOutcome::fail(format!("the new session does not receive: {why}"));
    }
    second.close().await;
    sender.close().await;
    let how = end.describe_end();
    match end {
        Event::Close {
            code: Some(4001), ..
        }
        | Event::Dropped(_) => {
            CheckOutcome::pass(format!("first session ended: {how}; the new one receives"))
        }
        _ => CheckOutcome::warn(format!(
            "first session ended with {how} (not 4001); the new one receives"
        )),
    }
}

/// A6: a session ends at its token's `exp` with Close 4003 "token expired".
pub async fn session_ends_at_expiry(settings: &Settings) -> CheckOutcome {
    let name = format!("{}u", settings.prefix("A6"));
    let exp = now_secs() + 2;
    let mut claims = claims(settings, &name, 0);
    claims["exp"] = json!(exp);
    let token = match signed(settings, &claims) {
        Ok(token) => token,
        Err(outcome) => return outcome,
    };
    let connected = match login_with(settings, &name, &token, settings.endpoint.token_in()).await {
        Ok(connected) => connected,
        Err(why) => return CheckOutcome::warn(format!("a token valid for 2 s was refused: {why}")),
    };
    let mut user = Peer::from_connected(&name, connected);
    let exp_at = UNIX_EPOCH + Duration::from_secs(exp);
    let until_exp = exp_at
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    let deadline = Instant::now() + until_exp + settings.knobs.close_deadline;
    let Some(end) = user.expect_end(deadline).await else {
        return CheckOutcome::warn(format!(
            "the session was still open {:?} after its token's exp",
            settings.knobs.close_deadline
        ));
    };
    let ended = SystemTime::now();
    let offset = match ended.duration_since(exp_at) {
        Ok(after) => format!("{:.2} s after exp", after.as_secs_f64()),
        Err(before) => format!("{:.2} s before exp", before.duration().as_secs_f64()),
    };
    let early = exp_at
        .duration_since(ended)
        .is_ok_and(|before| before > Duration::from_secs(1));
    match end {
        Event::Close {
            code: Some(4003), ..
        } if !early => CheckOutcome::info(format!("{}, {offset}", end.describe_end())),
        _ if early => CheckOutcome::warn(format!("ended {offset}: {}", end.describe_end())),
        _ => CheckOutcome::warn(format!(
            "ended {offset} with {} (not 4003)",
            end.describe_end()
        )),
    }
}

/// A7: a browser `Origin` the server does not list is refused (`403`); a login without
/// one is not a browser's and passes.
pub async fn foreign_origin_refused(settings: &Settings) -> CheckOutcome {
    let name = format!("{}u", settings.prefix("A7"));
    let path = path_for(settings, &name);
    let request = Upgrade {
        headers: vec![("Origin".into(), "https://conform-foreign.invalid".into())],
        ..Upgrade::login(path.as_bytes())
    };
    match answer(settings, &request).await {
        Seen::Accepted(_) => CheckOutcome::warn(
            "a login from Origin https://conform-foreign.invalid was accepted (no allow-list configured?)",
        ),
        refused => judge(vec![("foreign Origin".into(), refused)], 403),
    }
}
