//! Compact tokens taken apart and put together by hand, for what a signing key must never
//! make and a server must refuse: `alg: none` (RFC 7519 §6, an "unsecured" token), an
//! HS256 token keyed with the server's *public* key (algorithm confusion), and a token
//! whose payload was changed after signing. Conformance checks send these; nothing else
//! should.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;

use crate::MintError;

/// `bytes` in base64url without padding, as every part of a compact token is.
pub fn encode_part(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A part of a compact token decoded; `None` when it is not base64url.
pub fn decode_part(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part).ok()
}

/// An unsecured token (`{"alg":"none"}`, empty signature) of `claims`.
pub fn unsecured(claims: &impl Serialize) -> Result<String, MintError> {
    let payload = serde_json::to_vec(claims)?;
    Ok(format!(
        "{}.{}.",
        encode_part(br#"{"alg":"none","typ":"JWT"}"#),
        encode_part(&payload)
    ))
}

/// An HS256 token of `claims` whose HMAC key is `key` — any bytes, such as the text of a
/// server's public key file (the algorithm-confusion attack).
pub fn hs256_keyed_with(key: &[u8], claims: &impl Serialize) -> Result<String, MintError> {
    let message = format!(
        "{}.{}",
        encode_part(br#"{"alg":"HS256","typ":"JWT"}"#),
        encode_part(&serde_json::to_vec(claims)?)
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let signature = ring::hmac::sign(&key, message.as_bytes());
    Ok(format!("{message}.{}", encode_part(signature.as_ref())))
}

/// `token` with its payload replaced by `claims` and its signature kept: a tampered token.
/// `None` when `token` is not three parts.
pub fn with_payload(token: &str, claims: &impl Serialize) -> Option<String> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let payload = serde_json::to_vec(claims).ok()?;
    Some(format!("{header}.{}.{signature}", encode_part(&payload)))
}

/// The payload of a compact token as JSON, unverified; `None` when it is not one.
pub fn payload(token: &str) -> Option<serde_json::Value> {
    let part = token.split('.').nth(1)?;
    serde_json::from_slice(&decode_part(part)?).ok()
}

/// The `alg` of a compact token's header, unverified; `None` when it has none.
pub fn algorithm_name(token: &str) -> Option<String> {
    let part = token.split('.').next()?;
    let header: serde_json::Value = serde_json::from_slice(&decode_part(part)?).ok()?;
    header.get("alg")?.as_str().map(str::to_string)
}
