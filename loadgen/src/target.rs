//! A server to load: `ws://HOST[:PORT][/PATH]` or `wss://…` (TLS, [`crate::tls`]), parsed
//! without a URL crate because the protocol only ever needs these parts.

use std::fmt;
use std::str::FromStr;

/// A WebSocket endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 for `ws://`, 443 for `wss://` when the URL has none).
    pub port: u16,
    /// Path without the query; `/` when the URL has none.
    pub path: String,
    /// `wss://`: the connection is TLS.
    pub tls: bool,
}

/// Why a URL is not a usable target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{0:?}: not a ws:// or wss:// URL")]
    Scheme(String),
    #[error("{0:?}: no host")]
    NoHost(String),
    #[error("{0:?}: bad port")]
    Port(String),
    #[error("{0:?}: the query is loadgen's (it adds ?user=NAME); leave it out")]
    Query(String),
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(url: &str) -> Result<Target, TargetError> {
        let owned = || url.to_string();
        let (rest, tls) = if let Some(rest) = url.strip_prefix("ws://") {
            (rest, false)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (rest, true)
        } else {
            return Err(TargetError::Scheme(owned()));
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if path.contains('?') || authority.contains('?') {
            return Err(TargetError::Query(owned()));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']').ok_or_else(|| TargetError::NoHost(owned()))?;
            let port = v6[end + 1..].strip_prefix(':');
            (&v6[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(TargetError::NoHost(owned()));
        }
        let port = match port {
            None if tls => 443,
            None => 80,
            Some(port) => port.parse().map_err(|_| TargetError::Port(owned()))?,
        };
        Ok(Target {
            host: host.to_string(),
            port,
            path: path.to_string(),
            tls,
        })
    }
}

impl Target {
    /// `host:port` as a socket address string (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

/// Checks every URL of a `--target` list, naming the first one that is not usable.
pub fn check_all(urls: &[String]) -> Result<(), TargetError> {
    urls.iter()
        .try_for_each(|url| url.parse::<Target>().map(|_| ()))
}

/// Percent-encodes a user name for the query (everything but unreserved ASCII).
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 3);
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_paths() {
        let t: Target = "ws://127.0.0.1:6789/".parse().unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 6789, "/")
        );
        let t: Target = "ws://localhost".parse().unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t: Target = "ws://[::1]:9/chat".parse().unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 9, "/chat")
        );
        assert_eq!(t.to_string(), "ws://[::1]:9/chat");
        let t: Target = "wss://chat.example/ws".parse().unwrap();
        assert_eq!((t.port, t.tls, t.path.as_str()), (443, true, "/ws"));
        assert_eq!(t.to_string(), "wss://chat.example:443/ws");
        assert!(!"ws://x/".parse::<Target>().unwrap().tls);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        assert!(matches!(
            "http://x/".parse::<Target>(),
            Err(TargetError::Scheme(_))
        ));
        assert!(matches!(
            "ws://:1/".parse::<Target>(),
            Err(TargetError::NoHost(_))
        ));
        assert!(matches!(
            "ws://x:http/".parse::<Target>(),
            Err(TargetError::Port(_))
        ));
        assert!(matches!(
            "ws://x:1/?user=a".parse::<Target>(),
            Err(TargetError::Query(_))
        ));
    }

    #[test]
    fn encodes_names() {
        assert_eq!(encode_name("张三"), "%E5%BC%A0%E4%B8%89");
        assert_eq!(encode_name("a b+c"), "a%20b%2Bc");
    }
}
