//! The text profile: any text protocol, described by templates — a login query, frames
//! sent after the upgrade, a frame that says the login is complete, a message template,
//! frames to answer, and how an eviction looks. A JSON chat is the usual case:
//!
//! ```toml
//! [protocol]
//! kind = "text"
//! on_open = ['{"type":"join","user":"{user}"}']
//! ready = '"type":"joined"'
//! send = '{"type":"say","text":"{message}"}'
//! replies = { '{"type":"ping"}' = '{"type":"pong"}' }
//! eviction = { close_code = 4001 }
//! ```
//!
//! Templates hold `{user}` and `{token}`: in the query they are percent-encoded, in frames
//! they are put in as they are (a name for a JSON template must not hold `"` or `\`).

use std::collections::BTreeMap;

use super::settings::{EvictionSetting, ProtocolSettings};
use super::terms::{contains, render, Eviction, Inbound, LoginStep, Who};
use crate::credentials::TokenPlacement;
use crate::target::encode_name;

/// A text profile.
#[derive(Debug, Clone)]
pub struct TextProtocol {
    query: String,
    on_open: Vec<String>,
    ready: Option<String>,
    /// The send template, split at `{message}`.
    send_before: String,
    send_after: String,
    replies: BTreeMap<Vec<u8>, Vec<u8>>,
    pub self_delivery: bool,
    pub eviction: Eviction,
}

impl TextProtocol {
    pub fn new(settings: &ProtocolSettings) -> TextProtocol {
        let send = settings.send.as_deref().unwrap_or("{message}");
        let (before, after) = send.split_once("{message}").unwrap_or((send, ""));
        TextProtocol {
            query: settings
                .query
                .clone()
                .unwrap_or_else(|| "user={user}".into()),
            on_open: settings.on_open.clone().unwrap_or_default(),
            ready: settings.ready.clone(),
            send_before: before.to_string(),
            send_after: after.to_string(),
            replies: settings
                .replies
                .iter()
                .flatten()
                .map(|(on, answer)| (on.as_bytes().to_vec(), answer.as_bytes().to_vec()))
                .collect(),
            self_delivery: settings.self_delivery.unwrap_or(false),
            eviction: match &settings.eviction {
                None => Eviction::AnyEnd,
                Some(EvictionSetting::Word(word)) if word == "none" => Eviction::None,
                Some(EvictionSetting::Word(_)) => Eviction::AnyEnd,
                Some(EvictionSetting::CloseCode { close_code }) => Eviction::CloseCode(*close_code),
                Some(EvictionSetting::Frame { frame }) => Eviction::Frame(frame.clone()),
            },
        }
    }

    pub(super) fn templates_token(&self) -> bool {
        std::iter::once(&self.query)
            .chain(&self.on_open)
            .any(|t| t.contains("{token}"))
    }

    pub(super) fn request_target(&self, path: &str, who: Who<'_>) -> String {
        let mut params = Vec::new();
        let query = render(&self.query, who, encode_name);
        if !query.is_empty() {
            params.push(query);
        }
        if let (Some(token), TokenPlacement::Query, false) =
            (who.token, who.token_in, self.templates_token())
        {
            params.push(format!("token={}", encode_name(token)));
        }
        if params.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", params.join("&"))
        }
    }

    pub(super) fn opening_frames(&self, who: Who<'_>) -> Vec<Vec<u8>> {
        self.on_open
            .iter()
            .map(|t| render(t, who, str::to_string).into_bytes())
            .collect()
    }

    pub(super) fn waits_for_ready(&self) -> bool {
        self.ready.is_some()
    }

    pub(super) fn login_step(&self, frame: &[u8]) -> LoginStep {
        if let Some(answer) = self.replies.get(frame) {
            return LoginStep::Send(answer.clone());
        }
        match &self.ready {
            Some(ready) if contains(frame, ready.as_bytes()) => LoginStep::Ready,
            Some(_) => LoginStep::Wait,
            None => LoginStep::Ready,
        }
    }

    pub(super) fn inbound(&self, frame: &[u8]) -> Inbound {
        if let Some(answer) = self.replies.get(frame) {
            return Inbound::Reply(answer.clone());
        }
        if let Eviction::Frame(text) = &self.eviction {
            if contains(frame, text.as_bytes()) {
                return Inbound::Ended(format!(
                    "eviction frame {:?}",
                    String::from_utf8_lossy(&frame[..frame.len().min(80)])
                ));
            }
        }
        Inbound::Stamps
    }

    pub(super) fn frame_message(&self, message: &str, user: &str) -> Vec<u8> {
        let mut frame =
            Vec::with_capacity(self.send_before.len() + message.len() + self.send_after.len());
        for (part, last) in [(&self.send_before, false), (&self.send_after, true)] {
            if part.contains("{user}") {
                frame.extend_from_slice(part.replace("{user}", user).as_bytes());
            } else {
                frame.extend_from_slice(part.as_bytes());
            }
            if !last {
                frame.extend_from_slice(message.as_bytes());
            }
        }
        frame
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::settings::ProtocolKind;

    fn json_chat() -> TextProtocol {
        TextProtocol::new(&ProtocolSettings {
            query: Some(String::new()),
            on_open: Some(vec![r#"{"type":"join","user":"{user}"}"#.into()]),
            ready: Some(r#""type":"joined""#.into()),
            send: Some(r#"{"type":"say","text":"{message}"}"#.into()),
            replies: Some([(r#"{"type":"ping"}"#.into(), r#"{"type":"pong"}"#.into())].into()),
            eviction: Some(EvictionSetting::Frame {
                frame: r#""type":"evicted""#.into(),
            }),
            ..ProtocolSettings::of_kind(ProtocolKind::Text)
        })
    }

    #[test]
    fn a_json_chat_is_described_by_its_templates() {
        let p = json_chat();
        let who = Who {
            user: "ann",
            token: Some("tok"),
            token_in: TokenPlacement::Query,
        };
        assert_eq!(p.request_target("/ws", who), "/ws?token=tok");
        assert_eq!(
            p.opening_frames(who),
            vec![br#"{"type":"join","user":"ann"}"#.to_vec()]
        );
        assert_eq!(p.login_step(br#"{"type":"hello"}"#), LoginStep::Wait);
        assert_eq!(
            p.login_step(br#"{"type":"joined","user":"ann"}"#),
            LoginStep::Ready
        );
        assert_eq!(
            p.inbound(br#"{"type":"ping"}"#),
            Inbound::Reply(br#"{"type":"pong"}"#.to_vec())
        );
        assert!(matches!(
            p.inbound(br#"{"type":"evicted"}"#),
            Inbound::Ended(_)
        ));
        assert_eq!(p.inbound(br#"{"type":"said","text":"x"}"#), Inbound::Stamps);
        assert_eq!(
            p.frame_message("m", "ann"),
            br#"{"type":"say","text":"m"}"#.to_vec()
        );
        let plain = TextProtocol::new(&ProtocolSettings::of_kind(ProtocolKind::Text));
        assert_eq!(plain.request_target("/", who), "/?user=ann&token=tok");
        assert_eq!(plain.login_step(b"anything"), LoginStep::Ready);
        assert_eq!(plain.frame_message("m", "ann"), b"m".to_vec());
        assert_eq!(plain.eviction, Eviction::AnyEnd);
    }
}
