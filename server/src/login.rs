//! Who is logging in: the `user` query parameter of the upgrade request (or, with
//! authentication on, the token's `sub`: [`crate::auth`]), and every reason a login is
//! refused before the upgrade.
//!
//! docs/protocol.md S1–S3: NAME is percent-decoded UTF-8 (raw UTF-8 bytes are accepted
//! too, as the demo's client sends them), must be present and non-empty, at most
//! `max_name` bytes, and free of control and format characters (the S3 amendment). A
//! refusal carries a [`Refusal`] that names the reason,
//! so the HTTP layer can answer `400` with one line and count refusals by reason.

use std::fmt;

/// Why a login was refused before the WebSocket upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `user` parameter in the query.
    MissingUser,
    /// `user=` with nothing after it.
    EmptyUser,
    /// Longer than the configured limit, in bytes after decoding.
    NameTooLong { limit: usize },
    /// Not valid UTF-8 after percent-decoding.
    InvalidUtf8,
    /// Holds a control character (C0, DEL or C1).
    ControlCharacter,
    /// Holds a Unicode format character (category Cf: bidi overrides, zero-width spaces
    /// and joiners, …), which lets one name pose as another on screen.
    FormatCharacter,
    /// The request asked for an upgrade but is not a valid WebSocket handshake.
    BadHandshake,
    /// The server holds its maximum of sessions (docs/protocol.md R5): `503`.
    ServerFull,
    /// The node's cluster bus is down, so it cannot number the login (docs/protocol.md
    /// C4): `503`.
    BusUnavailable,
    /// Authentication is on and the login carries no token (A1): `401`.
    MissingToken,
    /// The token is not a compact JWT of JSON, or lacks a claim a login needs (`sub`,
    /// `exp`, and `aud`/`iss` when configured): `401`.
    MalformedToken,
    /// The token's `alg` is not the one the key verifies (`none` included, A2): `401`.
    WrongAlgorithm,
    /// The signature does not verify with the configured key (A2): `401`.
    BadSignature,
    /// `exp` is past, beyond the leeway (A3): `401`.
    Expired,
    /// `nbf` is ahead, beyond the leeway (A3): `401`.
    NotYetValid,
    /// `aud` does not name the configured audience (A3): `401`.
    WrongAudience,
    /// `iss` is not the configured issuer (A3): `401`.
    WrongIssuer,
    /// `?user=` differs from the token's `sub` (A4): `403`.
    NameMismatch,
    /// A browser `Origin` not on the allow-list (A7): `403`.
    Origin,
}

impl Refusal {
    /// Every reason, for exporting zero-valued counters in `/metrics`.
    pub const ALL: [Refusal; 19] = [
        Refusal::MissingUser,
        Refusal::EmptyUser,
        Refusal::NameTooLong { limit: 0 },
        Refusal::InvalidUtf8,
        Refusal::ControlCharacter,
        Refusal::FormatCharacter,
        Refusal::BadHandshake,
        Refusal::ServerFull,
        Refusal::BusUnavailable,
        Refusal::MissingToken,
        Refusal::MalformedToken,
        Refusal::WrongAlgorithm,
        Refusal::BadSignature,
        Refusal::Expired,
        Refusal::NotYetValid,
        Refusal::WrongAudience,
        Refusal::WrongIssuer,
        Refusal::NameMismatch,
        Refusal::Origin,
    ];

    /// The `reason` label used in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MissingUser => "missing_user",
            Refusal::EmptyUser => "empty_user",
            Refusal::NameTooLong { .. } => "name_too_long",
            Refusal::InvalidUtf8 => "invalid_utf8",
            Refusal::ControlCharacter => "control_character",
            Refusal::FormatCharacter => "format_character",
            Refusal::BadHandshake => "bad_handshake",
            Refusal::ServerFull => "server_full",
            Refusal::BusUnavailable => "bus_unavailable",
            Refusal::MissingToken => "missing_token",
            Refusal::MalformedToken => "malformed_token",
            Refusal::WrongAlgorithm => "wrong_algorithm",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::WrongIssuer => "wrong_issuer",
            Refusal::NameMismatch => "name_mismatch",
            Refusal::Origin => "origin",
        }
    }

    /// Position in [`Refusal::ALL`], for indexing counters.
    pub fn index(self) -> usize {
        match self {
            Refusal::MissingUser => 0,
            Refusal::EmptyUser => 1,
            Refusal::NameTooLong { .. } => 2,
            Refusal::InvalidUtf8 => 3,
            Refusal::ControlCharacter => 4,
            Refusal::FormatCharacter => 5,
            Refusal::BadHandshake => 6,
            Refusal::ServerFull => 7,
            Refusal::BusUnavailable => 8,
            Refusal::MissingToken => 9,
            Refusal::MalformedToken => 10,
            Refusal::WrongAlgorithm => 11,
            Refusal::BadSignature => 12,
            Refusal::Expired => 13,
            Refusal::NotYetValid => 14,
            Refusal::WrongAudience => 15,
            Refusal::WrongIssuer => 16,
            Refusal::NameMismatch => 17,
            Refusal::Origin => 18,
        }
    }

    /// Whether this is a refusal of authentication (A1–A4, A7), counted apart in
    /// [`crate::MetricsSnapshot::refused_auth`].
    pub fn is_auth(self) -> bool {
        self.index() >= Refusal::MissingToken.index()
    }

    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            Refusal::ServerFull | Refusal::BusUnavailable => 503,
            Refusal::NameMismatch | Refusal::Origin => 403,
            reason if reason.is_auth() => 401,
            _ => 400,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::MissingUser => write!(f, "missing user: log in with GET /?user=NAME"),
            Refusal::EmptyUser => write!(f, "empty user: NAME must not be empty"),
            Refusal::NameTooLong { limit } => {
                write!(f, "user name too long: at most {limit} bytes")
            }
            Refusal::InvalidUtf8 => write!(f, "user name is not valid UTF-8"),
            Refusal::ControlCharacter => write!(f, "user name holds a control character"),
            Refusal::FormatCharacter => write!(
                f,
                "user name holds an invisible format character (such as U+202E or U+200B)"
            ),
            Refusal::BadHandshake => write!(f, "bad WebSocket handshake"),
            Refusal::ServerFull => write!(
                f,
                "server full: it holds its maximum of sessions; try again later"
            ),
            Refusal::BusUnavailable => write!(
                f,
                "cluster bus unavailable: this node cannot order logins across the cluster now; try again shortly"
            ),
            // The authentication refusals' lines are written where the token is checked
            // ([`crate::auth`]), with the claim that failed; this is their short form.
            reason => write!(f, "{}", reason.label()),
        }
    }
}

/// Extracts and validates the user name from a raw query string (the part after `?`).
///
/// The first `user` parameter wins, as in Go's `url.Values.Get`. `+` decodes to a space,
/// as in HTML form encoding and Go; a malformed `%` escape is kept literally.
pub fn user_from_query(query: Option<&str>, max_name: usize) -> Result<String, Refusal> {
    let user = user_param(query).ok_or(Refusal::MissingUser)?;
    validate(user, max_name)
}

/// The first `user` parameter of a raw query string, percent-decoded; `None` when there
/// is none.
pub fn user_param(query: Option<&str>) -> Option<Vec<u8>> {
    query_param(query, "user")
}

/// The first `key` parameter of a raw query string, percent-decoded (`+` is a space);
/// `None` when there is none.
pub fn query_param(query: Option<&str>, key: &str) -> Option<Vec<u8>> {
    query?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(name) == key.as_bytes()).then(|| percent_decode(value))
    })
}

/// Checks a decoded name against S2/S3.
pub fn validate(bytes: Vec<u8>, max_name: usize) -> Result<String, Refusal> {
    if bytes.is_empty() {
        return Err(Refusal::EmptyUser);
    }
    if bytes.len() > max_name {
        return Err(Refusal::NameTooLong { limit: max_name });
    }
    let name = String::from_utf8(bytes).map_err(|_| Refusal::InvalidUtf8)?;
    if name.chars().any(char::is_control) {
        return Err(Refusal::ControlCharacter);
    }
    if name.chars().any(is_format) {
        return Err(Refusal::FormatCharacter);
    }
    Ok(name)
}

/// Unicode general category Cf (format), as of Unicode 15.1: invisible characters that
/// change how text around them is shown (bidi overrides and isolates, zero-width space,
/// joiners, word joiner, BOM, tags, …).
const FORMAT: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` is a format character (docs/protocol.md S3 amendment).
pub fn is_format(c: char) -> bool {
    let c = u32::from(c);
    FORMAT.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

/// Decodes `%XX` escapes and `+`; bytes that are not part of a valid escape pass through.
pub fn percent_decode(input: &str) -> Vec<u8> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_encoded_utf8() {
        let name = user_from_query(Some("user=%E5%BC%A0%E4%B8%89"), 64).unwrap();
        assert_eq!(name, "张三");
    }

    #[test]
    fn accepts_raw_utf8_and_plus_as_space() {
        assert_eq!(user_from_query(Some("user=张三"), 64).unwrap(), "张三");
        assert_eq!(user_from_query(Some("a=1&user=a+b"), 64).unwrap(), "a b");
    }

    #[test]
    fn first_user_parameter_wins() {
        assert_eq!(user_from_query(Some("user=x&user=y"), 64).unwrap(), "x");
    }

    #[test]
    fn malformed_escapes_are_literal() {
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%4"), b"%4");
        assert_eq!(percent_decode("%zz"), b"%zz");
        assert_eq!(percent_decode("%41"), b"A");
    }

    #[test]
    fn refusals() {
        assert_eq!(user_from_query(None, 64), Err(Refusal::MissingUser));
        assert_eq!(
            user_from_query(Some("name=x"), 64),
            Err(Refusal::MissingUser)
        );
        assert_eq!(user_from_query(Some("user="), 64), Err(Refusal::EmptyUser));
        assert_eq!(user_from_query(Some("user"), 64), Err(Refusal::EmptyUser));
        assert_eq!(
            user_from_query(Some(&format!("user={}", "a".repeat(65))), 64),
            Err(Refusal::NameTooLong { limit: 64 })
        );
        assert!(user_from_query(Some(&format!("user={}", "a".repeat(64))), 64).is_ok());
        assert_eq!(
            user_from_query(Some("user=%FF"), 64),
            Err(Refusal::InvalidUtf8)
        );
        assert_eq!(
            user_from_query(Some("user=a%0Ab"), 64),
            Err(Refusal::ControlCharacter)
        );
        assert_eq!(
            user_from_query(Some("user=a%7F"), 64),
            Err(Refusal::ControlCharacter)
        );
        assert_eq!(
            user_from_query(Some("user=a%C2%85"), 64),
            Err(Refusal::ControlCharacter)
        );
    }

    #[test]
    fn labels_index_all() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn format_characters_are_refused() {
        for name in [
            "ann\u{202E}nna",
            "a\u{200B}b",
            "\u{FEFF}bob",
            "x\u{2066}y",
            "t\u{E0041}",
        ] {
            assert_eq!(
                validate(name.as_bytes().to_vec(), 64),
                Err(Refusal::FormatCharacter),
                "{name:?}"
            );
        }
        // Visible letters of any script, and emoji with their variation selector, stay.
        for name in ["张三", "Ñandú", "עברית", "😀\u{FE0F}", "a-b_c.d"] {
            assert_eq!(validate(name.as_bytes().to_vec(), 64).as_deref(), Ok(name));
        }
    }
}
