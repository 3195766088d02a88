//! `[protocol]` as written in a scenario (and given by `conform` and `client` flags):
//! one table for every kind, each key checked against the kind it belongs to, so a key of
//! another kind is named rather than silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[protocol] kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolKind {
    /// Our chat protocol (docs/protocol.md).
    #[default]
    Chat,
    /// Socket.IO 5 over Engine.IO 4, WebSocket transport only.
    Socketio,
    /// Any text protocol, described by templates.
    Text,
}

impl ProtocolKind {
    fn name(self) -> &'static str {
        match self {
            ProtocolKind::Chat => "chat",
            ProtocolKind::Socketio => "socketio",
            ProtocolKind::Text => "text",
        }
    }
}

/// `[protocol] eviction` (kind `text`): `"close"` (any end, the default), `"none"`,
/// `{ close_code = N }` or `{ frame = "…" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum EvictionSetting {
    /// `"close"` or `"none"`.
    Word(String),
    /// A Close with this code.
    CloseCode { close_code: u16 },
    /// A frame containing this text.
    Frame { frame: String },
}

/// `[protocol]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtocolSettings {
    /// `"chat"` (default), `"socketio"` or `"text"`.
    #[serde(default)]
    pub kind: ProtocolKind,
    /// socketio: the namespace (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// socketio: the event messages are emitted as (default `chat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// socketio: the CONNECT packet's auth payload, a JSON template of `{user}` and
    /// `{token}` (default `{"user": "{user}"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    /// text: the login query (default `user={user}`); socketio: extra query parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// text: frames sent right after the upgrade (templates of `{user}`, `{token}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_open: Option<Vec<String>>,
    /// text: the login completes when a frame containing this arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// text: how a message is sent, a template holding `{message}` (default `{message}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// text: frames answered with a frame (`'{"type":"ping"}' = '{"type":"pong"}'`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replies: Option<BTreeMap<String, String>>,
    /// socketio and text: the server sends a user's messages back to it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_delivery: Option<bool>,
    /// text: how an eviction looks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction: Option<EvictionSetting>,
}

impl ProtocolSettings {
    /// The defaults of `kind`.
    pub fn of_kind(kind: ProtocolKind) -> ProtocolSettings {
        ProtocolSettings {
            kind,
            ..ProtocolSettings::default()
        }
    }

    /// The settings a `--protocol` flag names: a kind (`chat`, `socketio`, `text`) with
    /// its defaults, or a TOML file whose `[protocol]` table says more (a scenario file
    /// will do; its other tables are not read). Checked.
    pub fn from_flag(value: &str) -> Result<ProtocolSettings, String> {
        let settings = match value {
            "chat" => ProtocolSettings::of_kind(ProtocolKind::Chat),
            "socketio" => ProtocolSettings::of_kind(ProtocolKind::Socketio),
            "text" => ProtocolSettings::of_kind(ProtocolKind::Text),
            path => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    format!("{path}: {e} (give chat, socketio, text or a TOML file with a [protocol] table)")
                })?;
                #[derive(Deserialize)]
                struct File {
                    protocol: Option<toml::Value>,
                }
                let file: File =
                    toml::from_str(&text).map_err(|e| format!("{path}: {}", e.message()))?;
                let table = file
                    .protocol
                    .ok_or_else(|| format!("{path}: no [protocol] table"))?;
                table
                    .try_into()
                    .map_err(|e: toml::de::Error| format!("{path}: [protocol]: {}", e.message()))?
            }
        };
        settings
            .check()
            .map_err(|(key, reason)| format!("{value}: {key}: {reason}"))?;
        Ok(settings)
    }

    /// Whether this is the chat protocol with nothing else set (what no `[protocol]`
    /// means).
    pub fn is_default(&self) -> bool {
        *self == ProtocolSettings::default()
    }

    /// Checks the keys against the kind and each value: `Err((key, reason))`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let kind = self.kind;
        let fail = |key: &str, reason: String| Err((format!("protocol.{key}"), reason));
        let set: [(&str, bool, &[ProtocolKind]); 10] = [
            (
                "namespace",
                self.namespace.is_some(),
                &[ProtocolKind::Socketio],
            ),
            ("event", self.event.is_some(), &[ProtocolKind::Socketio]),
            ("auth", self.auth.is_some(), &[ProtocolKind::Socketio]),
            (
                "query",
                self.query.is_some(),
                &[ProtocolKind::Socketio, ProtocolKind::Text],
            ),
            ("on_open", self.on_open.is_some(), &[ProtocolKind::Text]),
            ("ready", self.ready.is_some(), &[ProtocolKind::Text]),
            ("send", self.send.is_some(), &[ProtocolKind::Text]),
            ("replies", self.replies.is_some(), &[ProtocolKind::Text]),
            (
                "self_delivery",
                self.self_delivery.is_some(),
                &[ProtocolKind::Socketio, ProtocolKind::Text],
            ),
            ("eviction", self.eviction.is_some(), &[ProtocolKind::Text]),
        ];
        for (key, given, kinds) in set {
            if given && !kinds.contains(&kind) {
                let of: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                return fail(
                    key,
                    format!(
                        "not a key of kind \"{}\" (it belongs to kind {})",
                        kind.name(),
                        of.join(" and ")
                    ),
                );
            }
        }
        if let Some(namespace) = &self.namespace {
            if !namespace.starts_with('/') || namespace.contains(',') {
                return fail(
                    "namespace",
                    format!("{namespace:?}: a namespace starts with / and holds no comma"),
                );
            }
        }
        if let Some(event) = &self.event {
            if event.is_empty() {
                return fail("event", "the event name is empty".into());
            }
            // Reserved by Socket.IO: the server's own events.
            if [
                "connect",
                "connect_error",
                "disconnect",
                "disconnecting",
                "newListener",
                "removeListener",
            ]
            .contains(&event.as_str())
            {
                return fail("event", format!("{event:?} is reserved by Socket.IO"));
            }
        }
        if let Some(auth) = &self.auth {
            let sample = auth.replace("{user}", "u").replace("{token}", "t");
            match serde_json::from_str::<serde_json::Value>(&sample) {
                Ok(serde_json::Value::Object(_)) => {}
                _ => {
                    return fail(
                        "auth",
                        format!("{auth:?} is not a JSON object (with \"{{user}}\" and \"{{token}}\" inside strings)"),
                    )
                }
            }
        }
        if let Some(query) = &self.query {
            if query.starts_with('?') || query.contains(['#', ' ']) {
                return fail(
                    "query",
                    format!("{query:?}: give the query without its ?, spaces or #"),
                );
            }
        }
        if let Some(send) = &self.send {
            if send.matches("{message}").count() != 1 {
                return fail(
                    "send",
                    format!("{send:?} must hold {{message}} exactly once"),
                );
            }
        }
        if let Some(ready) = &self.ready {
            if ready.is_empty() {
                return fail(
                    "ready",
                    "empty: leave ready out to count the upgrade as the login".into(),
                );
            }
        }
        if let Some(replies) = &self.replies {
            if replies.keys().any(String::is_empty) {
                return fail("replies", "a frame to answer is empty".into());
            }
        }
        if let Some(EvictionSetting::Word(word)) = &self.eviction {
            if word != "close" && word != "none" {
                return fail(
                    "eviction",
                    format!("{word:?}: give \"close\", \"none\", {{ close_code = N }} or {{ frame = \"…\" }}"),
                );
            }
        }
        if let Some(EvictionSetting::Frame { frame }) = &self.eviction {
            if frame.is_empty() {
                return fail("eviction", "the eviction frame text is empty".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<ProtocolSettings, String> {
        let settings: ProtocolSettings =
            toml::from_str(text).map_err(|e| e.message().to_string())?;
        settings
            .check()
            .map_err(|(key, reason)| format!("{key}: {reason}"))?;
        Ok(settings)
    }

    #[test]
    fn every_mistake_names_its_key() {
        for (text, wanted) in [
            (
                "kind = \"text\"\nevent = \"x\"",
                "protocol.event: not a key of kind \"text\"",
            ),
            (
                "kind = \"socketio\"\nsend = \"{message}\"",
                "protocol.send: not a key of kind \"socketio\"",
            ),
            (
                "kind = \"chat\"\nself_delivery = true",
                "protocol.self_delivery: not a key of kind \"chat\"",
            ),
            (
                "kind = \"socketio\"\nevent = \"\"",
                "protocol.event: the event name is empty",
            ),
            (
                "kind = \"socketio\"\nevent = \"disconnect\"",
                "reserved by Socket.IO",
            ),
            (
                "kind = \"socketio\"\nnamespace = \"chat\"",
                "protocol.namespace",
            ),
            (
                "kind = \"socketio\"\nauth = \"user={user}\"",
                "protocol.auth",
            ),
            (
                "kind = \"text\"\nsend = \"say it\"",
                "must hold {message} exactly once",
            ),
            (
                "kind = \"text\"\nsend = \"{message}{message}\"",
                "exactly once",
            ),
            ("kind = \"text\"\nready = \"\"", "protocol.ready"),
            (
                "kind = \"text\"\nquery = \"?user={user}\"",
                "protocol.query",
            ),
            (
                "kind = \"text\"\neviction = \"sometimes\"",
                "protocol.eviction",
            ),
            (
                "kind = \"text\"\neviction = { frame = \"\" }",
                "protocol.eviction",
            ),
            (
                "kind = \"text\"\nreplies = { \"\" = \"x\" }",
                "protocol.replies",
            ),
            ("kind = \"mqtt\"", "unknown variant"),
            (
                "kind = \"text\"\nsend_template = \"x\"",
                "unknown field `send_template`",
            ),
        ] {
            let error = parsed(text).expect_err(text);
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }

    #[test]
    fn good_tables_parse_and_the_flag_takes_a_kind_or_a_file() {
        assert!(parsed(
            "kind = \"socketio\"\nnamespace = \"/chat\"\nauth = '{\"token\": \"{token}\"}'"
        )
        .is_ok());
        assert!(parsed("kind = \"text\"\neviction = { close_code = 4001 }").is_ok());
        assert!(parsed("kind = \"text\"\neviction = \"none\"").is_ok());
        assert_eq!(
            ProtocolSettings::from_flag("socketio").unwrap().kind,
            ProtocolKind::Socketio
        );
        let error = ProtocolSettings::from_flag("/nonexistent/p.toml").unwrap_err();
        assert!(error.contains("give chat, socketio, text"), "{error}");
        let dir = std::env::temp_dir().join(format!("loadgen-protocol-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p.toml");
        std::fs::write(
            &file,
            "[users]\ncount = 1\n[protocol]\nkind = \"text\"\nsend = \"x\"\n",
        )
        .unwrap();
        let error = ProtocolSettings::from_flag(file.to_str().unwrap()).unwrap_err();
        assert!(error.contains("protocol.send"), "{error}");
        std::fs::write(&file, "[users]\ncount = 1\n").unwrap();
        let error = ProtocolSettings::from_flag(file.to_str().unwrap()).unwrap_err();
        assert!(error.contains("no [protocol] table"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
