//! The Socket.IO profile: Socket.IO 5 packets inside Engine.IO 4 packets, over the
//! WebSocket transport only (no long-polling, no upgrade), as socket.io 3 and 4 servers
//! speak it.
//!
//! - Login: `GET <path>?EIO=4&transport=websocket` (a bare `/` path means `/socket.io/`).
//!   The server opens with `0{"sid":…,"pingInterval":…}`; the user answers with
//!   CONNECT `40[/ns,]{auth}`; the login is complete at the server's CONNECT `40…` for that
//!   namespace, refused at a CONNECT_ERROR `44…{"message":…}`.
//! - Sending: EVENT `42[/ns,]["<event>","<message>"]`.
//! - Receiving: any EVENT of the namespace may hold deliveries (stamps anywhere in its
//!   arguments); Engine.IO pings `2` are answered with `3`; the namespace's DISCONNECT
//!   `41` or an Engine.IO close `1` ends the session (an eviction when the user logged in
//!   again). Binary packets are ignored.

use super::settings::ProtocolSettings;
use super::terms::{json_escaped, render, Inbound, LoginStep, Who};
use crate::credentials::TokenPlacement;
use crate::target::encode_name;

/// A Socket.IO profile.
#[derive(Debug, Clone)]
pub struct SocketIo {
    /// `/` or `/name`.
    namespace: String,
    /// `["<event>","` — what a sent message's frame starts with after the packet type.
    event_head: String,
    /// The CONNECT auth payload template.
    auth: String,
    /// Extra query parameters (template).
    query: Option<String>,
    /// The server sends a user's messages back to it too (`io.emit`).
    pub self_delivery: bool,
}

impl SocketIo {
    pub fn new(settings: &ProtocolSettings) -> SocketIo {
        let event = settings.event.as_deref().unwrap_or("chat");
        SocketIo {
            namespace: settings.namespace.clone().unwrap_or_else(|| "/".into()),
            event_head: format!("[\"{}\",\"", json_escaped(event)),
            auth: settings
                .auth
                .clone()
                .unwrap_or_else(|| r#"{"user": "{user}"}"#.into()),
            query: settings.query.clone(),
            self_delivery: settings.self_delivery.unwrap_or(false),
        }
    }

    /// `/ns,` for a namespace other than `/` (how packets name it), else nothing.
    fn namespace_prefix(&self) -> String {
        if self.namespace == "/" {
            String::new()
        } else {
            format!("{},", self.namespace)
        }
    }

    pub(super) fn templates_token(&self) -> bool {
        self.auth.contains("{token}") || self.query.as_ref().is_some_and(|q| q.contains("{token}"))
    }

    pub(super) fn request_target(&self, path: &str, who: Who<'_>) -> String {
        let path = if path == "/" { "/socket.io/" } else { path };
        let mut target = format!("{path}?EIO=4&transport=websocket");
        if let Some(query) = &self.query {
            target.push('&');
            target.push_str(&render(query, who, encode_name));
        }
        if let (Some(token), TokenPlacement::Query, false) =
            (who.token, who.token_in, self.templates_token())
        {
            target.push_str("&token=");
            target.push_str(&encode_name(token));
        }
        target
    }

    /// The CONNECT packet for `who`.
    fn connect_packet(&self, who: Who<'_>) -> Vec<u8> {
        let auth = render(&self.auth, who, json_escaped);
        format!("40{}{auth}", self.namespace_prefix()).into_bytes()
    }

    pub(super) fn login_step(&self, frame: &[u8], who: Who<'_>) -> LoginStep {
        match frame {
            [b'0', ..] => LoginStep::Send(self.connect_packet(who)),
            [b'2'] => LoginStep::Send(b"3".to_vec()),
            [b'1'] => LoginStep::Refused("the server closed the Engine.IO session".into()),
            [b'4', rest @ ..] => match self.packet(rest) {
                Some((b'0', _)) => LoginStep::Ready,
                Some((b'4', payload)) => LoginStep::Refused(connect_error(payload)),
                Some((b'1', _)) => {
                    LoginStep::Refused("the server disconnected the namespace".into())
                }
                _ => LoginStep::Wait,
            },
            _ => LoginStep::Wait,
        }
    }

    pub(super) fn inbound(&self, frame: &[u8]) -> Inbound {
        match frame {
            [b'2'] => Inbound::Reply(b"3".to_vec()),
            [b'1'] => Inbound::Ended("Engine.IO close packet".into()),
            [b'4', rest @ ..] => match self.packet(rest) {
                Some((b'2', _)) => Inbound::Stamps,
                Some((b'1', _)) => Inbound::Ended("Socket.IO DISCONNECT".into()),
                _ => Inbound::Ignore,
            },
            _ => Inbound::Ignore,
        }
    }

    /// A Socket.IO packet (after Engine.IO's `4`) of this profile's namespace: its type
    /// and what follows the namespace. `None` for another namespace or nothing at all.
    fn packet<'f>(&self, packet: &'f [u8]) -> Option<(u8, &'f [u8])> {
        let (&kind, rest) = packet.split_first()?;
        let (namespace, rest): (&[u8], &[u8]) = match rest {
            [b'/', ..] => match rest.iter().position(|&b| b == b',') {
                Some(comma) => (&rest[..comma], &rest[comma + 1..]),
                None => (rest, &[]),
            },
            _ => (b"/", rest),
        };
        (namespace == self.namespace.as_bytes()).then_some((kind, rest))
    }

    pub(super) fn frame_message(&self, message: &str) -> Vec<u8> {
        let prefix = self.namespace_prefix();
        let escaped;
        let message = if message.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
            escaped = json_escaped(message);
            escaped.as_str()
        } else {
            message
        };
        let mut frame =
            Vec::with_capacity(2 + prefix.len() + self.event_head.len() + message.len() + 2);
        frame.extend_from_slice(b"42");
        frame.extend_from_slice(prefix.as_bytes());
        frame.extend_from_slice(self.event_head.as_bytes());
        frame.extend_from_slice(message.as_bytes());
        frame.extend_from_slice(b"\"]");
        frame
    }
}

/// The message of a CONNECT_ERROR payload (`{"message":"…"}`), or the payload itself.
fn connect_error(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) => match value.get("message").and_then(|m| m.as_str()) {
            Some(message) => format!("Socket.IO CONNECT_ERROR: {message}"),
            None => format!("Socket.IO CONNECT_ERROR: {text}"),
        },
        Err(_) if text.is_empty() => "Socket.IO CONNECT_ERROR".into(),
        Err(_) => format!("Socket.IO CONNECT_ERROR: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::settings::ProtocolKind;

    fn profile(namespace: Option<&str>) -> SocketIo {
        SocketIo::new(&ProtocolSettings {
            namespace: namespace.map(str::to_string),
            ..ProtocolSettings::of_kind(ProtocolKind::Socketio)
        })
    }

    const ANN: Who<'static> = Who {
        user: "ann \"a\"",
        token: Some("t.k"),
        token_in: TokenPlacement::Header,
    };

    #[test]
    fn login_connects_to_the_namespace_and_reads_the_answer() {
        let root = profile(None);
        assert_eq!(
            root.request_target("/", ANN),
            "/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            root.request_target("/io/", ANN),
            "/io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            root.login_step(br#"0{"sid":"x","pingInterval":25000}"#, ANN),
            LoginStep::Send(br#"40{"user": "ann \"a\""}"#.to_vec())
        );
        assert_eq!(root.login_step(br#"40{"sid":"y"}"#, ANN), LoginStep::Ready);
        assert_eq!(
            root.login_step(br#"44{"message":"bad token"}"#, ANN),
            LoginStep::Refused("Socket.IO CONNECT_ERROR: bad token".into())
        );
        assert_eq!(root.login_step(b"2", ANN), LoginStep::Send(b"3".to_vec()));
        let chat = profile(Some("/chat"));
        assert_eq!(
            root.login_step(br#"40/chat,{"sid":"y"}"#, ANN),
            LoginStep::Wait
        );
        assert_eq!(
            chat.login_step(br#"40/chat,{"sid":"y"}"#, ANN),
            LoginStep::Ready
        );
        assert_eq!(
            chat.login_step(b"0{}", ANN),
            LoginStep::Send(br#"40/chat,{"user": "ann \"a\""}"#.to_vec())
        );
    }

    #[test]
    fn events_pings_and_disconnects_are_told_apart() {
        let chat = profile(Some("/chat"));
        assert_eq!(
            chat.inbound(br#"42/chat,["chat",{"text":"x"}]"#),
            Inbound::Stamps
        );
        assert_eq!(chat.inbound(br#"42/chat,7["chat","x"]"#), Inbound::Stamps);
        assert_eq!(chat.inbound(br#"42["chat","x"]"#), Inbound::Ignore);
        assert_eq!(chat.inbound(b"2"), Inbound::Reply(b"3".to_vec()));
        assert!(matches!(chat.inbound(b"41/chat,"), Inbound::Ended(_)));
        assert!(matches!(chat.inbound(b"1"), Inbound::Ended(_)));
        assert_eq!(chat.inbound(b"41"), Inbound::Ignore);
        assert_eq!(
            chat.frame_message("lg2_1_m_0_1_0_..."),
            br#"42/chat,["chat","lg2_1_m_0_1_0_..."]"#.to_vec()
        );
        assert_eq!(
            profile(None).frame_message("say \"hi\""),
            br#"42["chat","say \"hi\""]"#.to_vec()
        );
    }
}
