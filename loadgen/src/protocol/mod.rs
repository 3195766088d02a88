//! Protocol profiles: how a simulated user of a given kind of server logs in, how a
//! message it sends is framed, how a delivery is recognised, which frames must be
//! answered, and how an eviction looks. Everything else — schedules, stamps, checks,
//! reports, workers — is protocol-neutral and never asks which profile runs.
//!
//! - [`chat`]: our chat protocol (docs/protocol.md), the default: `?user=NAME`, the
//!   message as the frame, a delivery `<message> -- FROM <NAME>` whose name is checked.
//! - [`socketio`]: Socket.IO 5 packets in Engine.IO 4 over the WebSocket transport.
//! - [`text`]: any text protocol, described by templates (`{"type":"say",…}`).
//!
//! Under the last two a delivery is recognised by its stamp alone, found anywhere in a
//! received text frame ([`crate::stamp::Stamp::find_all`]).

pub mod chat;
mod settings;
pub mod socketio;
mod terms;
pub mod text;

pub use settings::{ProtocolKind, ProtocolSettings};
pub use terms::{Eviction, Inbound, LoginStep, Who};

use crate::credentials::TokenPlacement;

/// A profile, ready to use (built from [`ProtocolSettings`], which the scenario validated).
#[derive(Debug, Clone, Default)]
pub enum Profile {
    /// Our chat protocol.
    #[default]
    Chat,
    SocketIo(socketio::SocketIo),
    Text(text::TextProtocol),
}

/// The chat profile, for logins that name no other.
pub static CHAT: Profile = Profile::Chat;

impl Profile {
    /// The profile `settings` describe (validated: see [`ProtocolSettings::check`]).
    pub fn from_settings(settings: &ProtocolSettings) -> Profile {
        match settings.kind {
            ProtocolKind::Chat => Profile::Chat,
            ProtocolKind::Socketio => Profile::SocketIo(socketio::SocketIo::new(settings)),
            ProtocolKind::Text => Profile::Text(text::TextProtocol::new(settings)),
        }
    }

    /// The scenario's name of this kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Profile::Chat => "chat",
            Profile::SocketIo(_) => "socketio",
            Profile::Text(_) => "text",
        }
    }

    /// Whether this is the chat protocol (whose server-side rules conform also checks).
    pub fn is_chat(&self) -> bool {
        matches!(self, Profile::Chat)
    }

    /// The path and query of the upgrade request, for a target at `path`.
    pub fn request_target(&self, path: &str, who: Who<'_>) -> String {
        match self {
            Profile::Chat => chat::request_target(path, who),
            Profile::SocketIo(p) => p.request_target(path, who),
            Profile::Text(p) => p.request_target(path, who),
        }
    }

    /// Whether the token goes into the request's `Authorization` header (not into a
    /// template or the query).
    pub fn token_in_header(&self, who: Who<'_>) -> bool {
        who.token.is_some() && who.token_in == TokenPlacement::Header && !self.templates_token()
    }

    fn templates_token(&self) -> bool {
        match self {
            Profile::Chat => false,
            Profile::SocketIo(p) => p.templates_token(),
            Profile::Text(p) => p.templates_token(),
        }
    }

    /// Frames to send as soon as the WebSocket is open.
    pub fn opening_frames(&self, who: Who<'_>) -> Vec<Vec<u8>> {
        match self {
            Profile::Text(p) => p.opening_frames(who),
            _ => Vec::new(),
        }
    }

    /// Whether the login completes only when the server says so ([`Profile::login_step`]).
    pub fn waits_for_ready(&self) -> bool {
        match self {
            Profile::Chat => false,
            Profile::SocketIo(_) => true,
            Profile::Text(p) => p.waits_for_ready(),
        }
    }

    /// What a text frame received before the login completed means.
    pub fn login_step(&self, frame: &[u8], who: Who<'_>) -> LoginStep {
        match self {
            Profile::Chat => LoginStep::Ready,
            Profile::SocketIo(p) => p.login_step(frame, who),
            Profile::Text(p) => p.login_step(frame),
        }
    }

    /// What a text frame received after the login is.
    pub fn inbound(&self, frame: &[u8]) -> Inbound {
        match self {
            Profile::Chat => Inbound::Chat,
            Profile::SocketIo(p) => p.inbound(frame),
            Profile::Text(p) => p.inbound(frame),
        }
    }

    /// The frame that sends `message` as `user` (the chat profile sends it as it is).
    pub fn frame_message(&self, message: String, user: &str) -> Vec<u8> {
        match self {
            Profile::Chat => message.into_bytes(),
            Profile::SocketIo(p) => p.frame_message(&message),
            Profile::Text(p) => p.frame_message(&message, user),
        }
    }

    /// Whether the server sends a user's messages back to it too (then they are expected
    /// like everyone else's; otherwise one is an M2 violation).
    pub fn self_delivery(&self) -> bool {
        match self {
            Profile::Chat => false,
            Profile::SocketIo(p) => p.self_delivery,
            Profile::Text(p) => p.self_delivery,
        }
    }

    /// How an eviction looks.
    pub fn eviction(&self) -> Eviction {
        match self {
            Profile::Chat | Profile::SocketIo(_) => Eviction::AnyEnd,
            Profile::Text(p) => p.eviction.clone(),
        }
    }

    /// Whether a session that ended so (`closed_with` as in the run's `Ended`;
    /// `signalled`: by the protocol's own end, [`Inbound::Ended`]) was evicted.
    pub fn ended_by_eviction(&self, closed_with: Option<Option<u16>>, signalled: bool) -> bool {
        match self.eviction() {
            Eviction::AnyEnd => true,
            Eviction::CloseCode(code) => closed_with == Some(Some(code)),
            Eviction::Frame(_) => signalled,
            Eviction::None => false,
        }
    }
}
