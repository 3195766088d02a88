//! Which browser pages may open sessions (docs/protocol.md A7): an allow-list of `Origin`
//! values. A browser sends the page's origin with every WebSocket login and lets any page
//! connect anywhere, with the user's cookies; without a list, a hostile page can open a
//! session in its visitor's name (cross-site WebSocket hijacking). A login whose `Origin`
//! is not listed is refused with `403`; a login without `Origin` (not a browser) is not a
//! browser page's and passes. An empty list allows every origin.

use std::fmt;

/// The origins allowed to log in, normalised (lower case, no trailing `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

/// Why a configured origin is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an origin: write scheme://host[:port], e.g. https://chat.example")]
pub struct BadOrigin(pub String);

impl AllowedOrigins {
    /// The list of `origins`, each `scheme://host[:port]`.
    pub fn new<S: AsRef<str>>(origins: &[S]) -> Result<AllowedOrigins, BadOrigin> {
        let mut list = Vec::with_capacity(origins.len());
        for origin in origins {
            let origin = origin.as_ref();
            let normal = normalise(origin);
            let well_formed = normal.split_once("://").is_some_and(|(scheme, host)| {
                !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                    && !host.is_empty()
                    && !host.contains(['/', '?', '#', ' ', '@'])
            });
            if !well_formed {
                return Err(BadOrigin(origin.to_string()));
            }
            list.push(normal);
        }
        Ok(AllowedOrigins(list))
    }

    /// Whether every origin is allowed (no list).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a login with this `Origin` header value (if any) may proceed.
    pub fn admits(&self, origin: Option<&[u8]>) -> bool {
        match origin {
            _ if self.0.is_empty() => true,
            None => true,
            Some(value) => {
                let value = String::from_utf8_lossy(value);
                let value = normalise(&value);
                self.0.contains(&value)
            }
        }
    }
}

impl fmt::Display for AllowedOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(", "))
    }
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_origins_pass_others_do_not_and_non_browsers_do() {
        let list =
            AllowedOrigins::new(&["https://Chat.example/", "http://localhost:8080"]).unwrap();
        assert!(list.admits(Some(b"https://chat.example")));
        assert!(list.admits(Some(b"http://localhost:8080")));
        assert!(!list.admits(Some(b"https://evil.example")));
        assert!(!list.admits(Some(b"null")));
        assert!(!list.admits(Some(b"http://localhost:8081")));
        assert!(list.admits(None));
        assert!(AllowedOrigins::default().admits(Some(b"https://anything")));
    }

    #[test]
    fn a_bad_origin_is_named() {
        for bad in [
            "chat.example",
            "https://",
            "https://chat.example/path",
            "://x",
            "",
        ] {
            assert_eq!(
                AllowedOrigins::new(&[bad]),
                Err(BadOrigin(bad.to_string())),
                "{bad}"
            );
        }
    }
}
