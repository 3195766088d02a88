//! The terms every profile answers in: who logs in, what a frame received during the
//! login or after it means, and how an eviction looks; and the template helpers the
//! profiles share.

use crate::credentials::TokenPlacement;

/// What a received text frame is to a simulated user (after the login).
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    /// A chat-protocol delivery: stamp and ` -- FROM <NAME>` ([`crate::stamp`]).
    Chat,
    /// May hold deliveries: every stamp in it is one.
    Stamps,
    /// Must be answered with this frame (an Engine.IO ping, an application ping).
    Reply(Vec<u8>),
    /// The server ended the session in its protocol's own words (a Socket.IO
    /// DISCONNECT, an eviction frame): the reason.
    Ended(String),
    /// Nothing to act on.
    Ignore,
}

/// What a frame received during the login exchange means.
#[derive(Debug, PartialEq, Eq)]
pub enum LoginStep {
    /// Keep waiting.
    Wait,
    /// Send this frame, then keep waiting.
    Send(Vec<u8>),
    /// The login is complete.
    Ready,
    /// The server refused the login, saying this.
    Refused(String),
}

/// What ends a session when its user logs in again, under a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eviction {
    /// Any end: a Close (any code), a drop, or the protocol's own end (Socket.IO
    /// DISCONNECT).
    AnyEnd,
    /// A Close with this code.
    CloseCode(u16),
    /// A frame containing this text.
    Frame(String),
    /// The server does not evict: relogins are timed, not checked.
    None,
}

/// Who logs in: what the templates are filled with.
#[derive(Debug, Clone, Copy)]
pub struct Who<'a> {
    pub user: &'a str,
    pub token: Option<&'a str>,
    pub token_in: TokenPlacement,
}

/// `template` with `{user}` and `{token}` replaced by what `fill` makes of them.
pub(crate) fn render(template: &str, who: Who<'_>, fill: impl Fn(&str) -> String) -> String {
    let mut out = template.replace("{user}", &fill(who.user));
    if out.contains("{token}") {
        out = out.replace("{token}", &fill(who.token.unwrap_or("")));
    }
    out
}

/// `text` as the inside of a JSON string.
pub(crate) fn json_escaped(text: &str) -> String {
    let quoted = serde_json::Value::String(text.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

/// Whether `haystack` contains `needle`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
