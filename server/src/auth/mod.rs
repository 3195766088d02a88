//! Who may take a name (docs/protocol.md A1–A6): with [`Authentication`] configured, a
//! login must carry a JSON Web Token (RFC 7519), signed with the configured key and
//! algorithm, whose `sub` is the name; without it anyone may log in as anyone (the demo's
//! protocol, fine on loopback only).
//!
//! The token comes from `Authorization: Bearer …` or, since browsers cannot set headers on
//! a WebSocket, from `?token=…` (A4). It is checked before the upgrade and before the
//! session registers (R6): signature and algorithm (A2; `alg: none` and an HS256 token
//! keyed with the public key are refused), `exp` and `nbf` with the leeway, `aud` and `iss`
//! when configured (A3). A refusal is one line naming the claim that failed, never echoing
//! the token, and is counted by reason. The session then ends at `exp` itself with Close
//! 4003 (A6): the leeway forgives clock skew at login, nothing more.
//!
//! jsonwebtoken parses and validates; [`provider`] gives it ring for the signatures.

mod provider;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderMap, AUTHORIZATION};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};

use crate::login::{self, Refusal};

pub use jwt_keys::{Algorithm, VerifyingKey};

/// The leeway applied to `exp` and `nbf` at login when none is configured.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The largest leeway accepted: more would let a token live minutes past its `exp`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// Authenticated logins: the key tokens are verified with, and what their claims must say.
#[derive(Debug, Clone)]
pub struct Authentication {
    /// An HS256 secret or a public key; its kind fixes the one algorithm accepted.
    pub key: VerifyingKey,
    /// Clock skew forgiven on `exp` and `nbf` at login (at most [`MAX_LEEWAY`]).
    pub leeway: Duration,
    /// When set, a token's `aud` must name it (and a token without `aud` is refused).
    /// When not, a token that carries an `aud` is refused: it was meant for someone else
    /// (RFC 7519 §4.1.3).
    pub audience: Option<String>,
    /// When set, a token's `iss` must be it (and a token without `iss` is refused).
    pub issuer: Option<String>,
}

impl Authentication {
    /// Tokens verified with `key`, the default leeway, no audience or issuer required.
    pub fn new(key: VerifyingKey) -> Authentication {
        Authentication {
            key,
            leeway: DEFAULT_LEEWAY,
            audience: None,
            issuer: None,
        }
    }

    /// Why this configuration cannot be used, if it cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.leeway > MAX_LEEWAY {
            return Err(format!(
                "JWT leeway must be at most {} s (got {:?})",
                MAX_LEEWAY.as_secs(),
                self.leeway
            ));
        }
        for (what, value) in [("audience", &self.audience), ("issuer", &self.issuer)] {
            if value.as_deref().is_some_and(str::is_empty) {
                return Err(format!("JWT {what} must not be empty"));
            }
        }
        Ok(())
    }
}

/// A login's proof, checked: the name it may take and when its token expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proof {
    /// `sub`, which has passed the name rules (S3).
    pub name: String,
    /// `exp`; `None` when it is past any date this clock can hold (a token that never
    /// expires in practice).
    pub expires: Option<SystemTime>,
}

/// A refusal and its one-line reason for the response body.
pub(crate) type Refused = (Refusal, String);

/// What the server checks tokens with: [`Authentication`] made ready once.
pub(crate) struct Verifier {
    key: DecodingKey,
    algorithm: Algorithm,
    validation: Validation,
    leeway: Duration,
    audience: Option<String>,
    issuer: Option<String>,
    /// A deliberate defect (fault-injection builds only; `None` otherwise).
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    fault: Option<crate::fault::Fault>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The claims a login needs; jsonwebtoken checks `exp`, `nbf`, `aud` and `iss` itself.
#[derive(serde::Deserialize)]
struct Claims {
    sub: String,
    /// A NumericDate may have a fraction (RFC 7519 §2).
    exp: f64,
}

impl Verifier {
    /// The verifier of `auth` (checked by [`Authentication::check`]).
    pub fn new(
        auth: &Authentication,
        fault: Option<crate::fault::Fault>,
    ) -> Result<Verifier, String> {
        provider::install();
        let key = provider::decoding_key(&auth.key).map_err(|e| e.to_string())?;
        let algorithm = auth.key.algorithm();
        let mut validation = Validation::new(provider::algorithm(algorithm));
        validation.leeway = auth.leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(audience) = &auth.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        if let Some(issuer) = &auth.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        #[cfg(feature = "fault-injection")]
        if fault == Some(crate::fault::Fault::JwtIgnoreExpiry) {
            validation.validate_exp = false;
        }
        Ok(Verifier {
            key,
            algorithm,
            validation,
            leeway: auth.leeway,
            audience: auth.audience.clone(),
            issuer: auth.issuer.clone(),
            fault,
        })
    }

    /// Checks a login request's token and returns who it proves, or why it proves
    /// nothing. `query` is the raw query string. The name rules (S3) apply to `sub`, and a
    /// `?user=` that differs from `sub` is refused (A4).
    pub fn verify(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        max_name: usize,
    ) -> Result<Proof, Refused> {
        let token = token_of(headers, query)?;
        let claims = self.claims(&token)?;
        let name = login::validate(claims.sub.into_bytes(), max_name)
            .map_err(|reason| (reason, format!("{reason} (in the token's sub)")))?;
        let user = login::user_param(query);
        #[cfg(feature = "fault-injection")]
        if self.fault == Some(crate::fault::Fault::JwtNameFromUser) {
            if let Some(user) = user {
                let user = login::validate(user, max_name).map_err(|r| (r, r.to_string()))?;
                return Ok(Proof {
                    name: user,
                    expires: expiry(claims.exp),
                });
            }
        }
        if user.is_some_and(|user| user != name.as_bytes()) {
            return Err((
                Refusal::NameMismatch,
                "name_mismatch: ?user= differs from the token's sub (leave ?user= out, or make it the sub)".into(),
            ));
        }
        #[cfg(feature = "fault-injection")]
        if self.fault == Some(crate::fault::Fault::JwtIgnoreExpiry) {
            return Ok(Proof {
                name,
                expires: None,
            });
        }
        Ok(Proof {
            name,
            expires: expiry(claims.exp),
        })
    }

    /// The claims of `token` if it is valid.
    fn claims(&self, token: &str) -> Result<Claims, Refused> {
        let alg = jwt_keys::token::algorithm_name(token);
        #[cfg(feature = "fault-injection")]
        if let Some(claims) = self.faulty_claims(token, alg.as_deref()) {
            return claims;
        }
        if let Some(alg) = alg.as_deref().filter(|alg| *alg != self.algorithm.as_str()) {
            return Err((
                Refusal::WrongAlgorithm,
                format!(
                    "wrong_algorithm: alg {:?} is not accepted; this server takes {} tokens only",
                    printable(alg),
                    self.algorithm
                ),
            ));
        }
        match jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(error) => Err(self.refusal(error.kind(), token)),
        }
    }

    /// The refusal for a jsonwebtoken error.
    fn refusal(&self, kind: &ErrorKind, token: &str) -> Refused {
        let leeway = self.leeway.as_secs();
        let claim_secs = |name: &str| {
            jwt_keys::token::payload(token)
                .and_then(|p| p.get(name).and_then(serde_json::Value::as_f64))
                .map(|at| at - now_secs())
        };
        match kind {
            ErrorKind::InvalidSignature => (
                Refusal::BadSignature,
                format!(
                    "bad_signature: the signature does not verify with this server's {} key",
                    self.algorithm
                ),
            ),
            ErrorKind::ExpiredSignature => (
                Refusal::Expired,
                match claim_secs("exp") {
                    Some(ago) => format!(
                        "expired: exp is {:.0} s in the past (leeway {leeway} s)",
                        -ago
                    ),
                    None => format!("expired: exp is in the past (leeway {leeway} s)"),
                },
            ),
            ErrorKind::ImmatureSignature => (
                Refusal::NotYetValid,
                match claim_secs("nbf") {
                    Some(ahead) => format!(
                        "not_yet_valid: nbf is {ahead:.0} s in the future (leeway {leeway} s)"
                    ),
                    None => format!("not_yet_valid: nbf is in the future (leeway {leeway} s)"),
                },
            ),
            ErrorKind::InvalidAudience => (
                Refusal::WrongAudience,
                match &self.audience {
                    Some(aud) => format!("wrong_audience: aud does not name {aud:?}"),
                    None => "wrong_audience: the token names an aud and this server is none of them (it checks no audience)".into(),
                },
            ),
            ErrorKind::InvalidIssuer => (
                Refusal::WrongIssuer,
                format!(
                    "wrong_issuer: iss is not {:?}",
                    self.issuer.as_deref().unwrap_or("")
                ),
            ),
            ErrorKind::MissingRequiredClaim(claim) => (
                Refusal::MalformedToken,
                format!("malformed_token: no {} claim", printable(claim)),
            ),
            ErrorKind::InvalidClaimFormat(_) | ErrorKind::Json(_) => (
                Refusal::MalformedToken,
                format!("malformed_token: {}", malformed(token)),
            ),
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => (
                Refusal::WrongAlgorithm,
                format!(
                    "wrong_algorithm: this server takes {} tokens only",
                    self.algorithm
                ),
            ),
            _ => (
                Refusal::MalformedToken,
                "malformed_token: not a compact JWT (three base64url parts of JSON)".into(),
            ),
        }
    }

    /// The deliberate defects' way with a token, or `None` to check it properly.
    #[cfg(feature = "fault-injection")]
    fn faulty_claims(&self, token: &str, alg: Option<&str>) -> Option<Result<Claims, Refused>> {
        use crate::fault::Fault;
        let unchecked = matches!(
            (self.fault, alg),
            (Some(Fault::JwtAcceptAlgNone), Some("none")) | (Some(Fault::JwtIgnoreSignature), _)
        );
        if !unchecked {
            return None;
        }
        // The signature goes unchecked; the claims are checked as always.
        let Some(payload) = jwt_keys::token::payload(token) else {
            return Some(Err((Refusal::MalformedToken, "malformed_token".into())));
        };
        let leeway = self.leeway.as_secs() as f64;
        let number = |claim: &str| payload.get(claim).and_then(serde_json::Value::as_f64);
        let text = |claim: &str| payload.get(claim).and_then(serde_json::Value::as_str);
        Some(match serde_json::from_value::<Claims>(payload.clone()) {
            Err(_) => Err((Refusal::MalformedToken, "malformed_token".into())),
            Ok(claims) if claims.exp + leeway < now_secs() => {
                Err((Refusal::Expired, "expired".into()))
            }
            Ok(_) if number("nbf").is_some_and(|nbf| nbf > now_secs() + leeway) => {
                Err((Refusal::NotYetValid, "not_yet_valid".into()))
            }
            Ok(_) if text("aud") != self.audience.as_deref() => {
                Err((Refusal::WrongAudience, "wrong_audience".into()))
            }
            Ok(_) if self.issuer.is_some() && text("iss") != self.issuer.as_deref() => {
                Err((Refusal::WrongIssuer, "wrong_issuer".into()))
            }
            Ok(claims) => Ok(claims),
        })
    }
}

/// What is wrong with a token that is not one a login can use, in a few words naming the
/// part or claim.
fn malformed(token: &str) -> String {
    let mut parts = token.split('.');
    let header = parts.next().and_then(jwt_keys::token::decode_part);
    if header.is_none_or(|h| serde_json::from_slice::<serde_json::Value>(&h).is_err()) {
        return "the header is not base64url JSON".into();
    }
    let Some(payload) = jwt_keys::token::payload(token) else {
        return "the payload is not base64url JSON".into();
    };
    let Some(claims) = payload.as_object() else {
        return "the payload is not a JSON object".into();
    };
    match claims.get("sub") {
        None => return "no sub claim".into(),
        Some(sub) if !sub.is_string() => return "the sub claim is not a string".into(),
        _ => {}
    }
    for claim in ["exp", "nbf", "iat"] {
        match claims.get(claim) {
            None if claim == "exp" => return "no exp claim".into(),
            Some(value) if !value.as_f64().is_some_and(|n| n >= 0.0) => {
                return format!("the {claim} claim is not a NumericDate (seconds since 1970)")
            }
            _ => {}
        }
    }
    for claim in ["aud", "iss"] {
        match claims.get(claim) {
            Some(serde_json::Value::String(_)) | None => {}
            Some(serde_json::Value::Array(items))
                if claim == "aud" && items.iter().all(serde_json::Value::is_string) => {}
            Some(_) => return format!("the {claim} claim is not a string"),
        }
    }
    "not a compact JWT (three base64url parts of JSON)".into()
}

/// The token of a login request: `Authorization: Bearer …` first, then `?token=`.
fn token_of(headers: &HeaderMap, query: Option<&str>) -> Result<String, Refused> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().unwrap_or("").trim();
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err((
                Refusal::MissingToken,
                "missing_token: Authorization is not a Bearer token".into(),
            ));
        }
        let token = token.trim();
        if !token.is_empty() {
            return Ok(token.to_string());
        }
    }
    match login::query_param(query, "token") {
        Some(token) if !token.is_empty() => Ok(String::from_utf8_lossy(&token).into_owned()),
        _ => Err((
            Refusal::MissingToken,
            "missing_token: log in with Authorization: Bearer <token> or ?token=<token>".into(),
        )),
    }
}

/// The moment a NumericDate names, if this clock can hold it.
fn expiry(exp: f64) -> Option<SystemTime> {
    if exp.is_nan() || exp <= 0.0 {
        return Some(UNIX_EPOCH);
    }
    Duration::try_from_secs_f64(exp)
        .ok()
        .and_then(|since| UNIX_EPOCH.checked_add(since))
}

/// Seconds since the Unix epoch now.
fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `text` cut to 60 characters of printable ASCII, for a refusal's one line.
fn printable(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(60)
        .collect()
}
