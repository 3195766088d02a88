//! What nodes say to each other on the bus channel, byte for byte.
//!
//! Every publication starts with a kind byte and the sending node's 8-byte instance
//! nonce, so a node recognises (and ignores) its own publications even when two nodes
//! were given the same `--id`. Chat messages travel as the finished WebSocket frame the
//! sender's node already encoded for its local receivers, so a receiving node queues the
//! same bytes without re-encoding. A login notice is written by the login script inside
//! Redis (see `link.rs`), which is why its sequence number is decimal text.
//!
//! Layouts (integers big-endian):
//! - chat:  `M` nonce(8) name_len(u16) name frame
//! - login: `L` nonce(8) seq(decimal) ` ` name
//! - probe: `P` nonce(8) sent_ns(u64)   (a node's own round trip through the bus)

use bytes::{BufMut, Bytes, BytesMut};

/// One publication, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    /// `sender` said something; `frame` is the Text frame to queue for everyone else.
    Chat {
        nonce: u64,
        sender: String,
        frame: Bytes,
    },
    /// `name` logged in on some node and took sequence number `seq` (C3).
    Login { nonce: u64, seq: u64, name: String },
    /// A node's probe of its own round trip through the bus.
    Probe { nonce: u64, sent_ns: u64 },
}

/// Why a publication could not be decoded (a foreign publisher on our channel, or a
/// version mismatch between nodes); such a publication is counted and ignored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("empty publication")]
    Empty,
    #[error("unknown kind byte {0:#04x}")]
    UnknownKind(u8),
    #[error("publication cut short")]
    Short,
    #[error("login sequence number is not a decimal number")]
    BadSequence,
    #[error("user name is not UTF-8")]
    BadName,
}

impl BusMessage {
    /// The nonce of the node that published this.
    pub fn nonce(&self) -> u64 {
        match self {
            BusMessage::Chat { nonce, .. }
            | BusMessage::Login { nonce, .. }
            | BusMessage::Probe { nonce, .. } => *nonce,
        }
    }

    /// Decodes one publication.
    pub fn decode(bytes: &[u8]) -> Result<BusMessage, WireError> {
        let (&kind, rest) = bytes.split_first().ok_or(WireError::Empty)?;
        if !matches!(kind, b'M' | b'L' | b'P') {
            return Err(WireError::UnknownKind(kind));
        }
        let (nonce, rest) = take_u64(rest)?;
        match kind {
            b'M' => {
                let (len, rest) = rest.split_at_checked(2).ok_or(WireError::Short)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let (name, frame) = rest.split_at_checked(len).ok_or(WireError::Short)?;
                Ok(BusMessage::Chat {
                    nonce,
                    sender: utf8(name)?,
                    frame: Bytes::copy_from_slice(frame),
                })
            }
            b'L' => {
                let space = rest
                    .iter()
                    .position(|&b| b == b' ')
                    .ok_or(WireError::Short)?;
                let digits =
                    std::str::from_utf8(&rest[..space]).map_err(|_| WireError::BadSequence)?;
                let seq = digits.parse().map_err(|_| WireError::BadSequence)?;
                Ok(BusMessage::Login {
                    nonce,
                    seq,
                    name: utf8(&rest[space + 1..])?,
                })
            }
            _ => {
                let (sent_ns, _) = take_u64(rest)?;
                Ok(BusMessage::Probe { nonce, sent_ns })
            }
        }
    }
}

/// The publication of a chat message: `frame` as encoded for local receivers.
pub fn chat(nonce: u64, sender: &str, frame: &[u8]) -> Bytes {
    // Names are at most a few hundred bytes (the server's --max-name); a longer one could
    // not have logged in, but is cut rather than mis-encoded.
    let name = &sender.as_bytes()[..sender.len().min(usize::from(u16::MAX))];
    let mut buf = BytesMut::with_capacity(11 + name.len() + frame.len());
    buf.put_u8(b'M');
    buf.put_u64(nonce);
    buf.put_u16(name.len() as u16);
    buf.put_slice(name);
    buf.put_slice(frame);
    buf.freeze()
}

/// The first bytes of this node's login notices; the login script appends `seq NAME`.
pub fn login_prefix(nonce: u64) -> Vec<u8> {
    let mut buf = Vec::with_capacity(9);
    buf.push(b'L');
    buf.extend_from_slice(&nonce.to_be_bytes());
    buf
}

/// A login notice as the login script writes it.
#[cfg(test)]
pub fn login(nonce: u64, seq: u64, name: &str) -> Bytes {
    let mut buf = login_prefix(nonce);
    buf.extend_from_slice(format!("{seq} {name}").as_bytes());
    buf.into()
}

/// A probe of this node's round trip through the bus.
pub fn probe(nonce: u64, sent_ns: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(17);
    buf.put_u8(b'P');
    buf.put_u64(nonce);
    buf.put_u64(sent_ns);
    buf.freeze()
}

fn take_u64(bytes: &[u8]) -> Result<(u64, &[u8]), WireError> {
    let (head, rest) = bytes.split_at_checked(8).ok_or(WireError::Short)?;
    let mut array = [0u8; 8];
    array.copy_from_slice(head);
    Ok((u64::from_be_bytes(array), rest))
}

fn utf8(bytes: &[u8]) -> Result<String, WireError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| WireError::BadName)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let frame = crate::frame::chat(b"hi", "张三");
        assert_eq!(
            BusMessage::decode(&chat(7, "张三", &frame)),
            Ok(BusMessage::Chat {
                nonce: 7,
                sender: "张三".into(),
                frame: frame.clone()
            })
        );
        assert_eq!(
            BusMessage::decode(&login(u64::MAX, 1_700_000_000_000_001, "a b")),
            Ok(BusMessage::Login {
                nonce: u64::MAX,
                seq: 1_700_000_000_000_001,
                name: "a b".into()
            })
        );
        assert_eq!(
            BusMessage::decode(&probe(3, 99)),
            Ok(BusMessage::Probe {
                nonce: 3,
                sent_ns: 99
            })
        );
    }

    #[test]
    fn foreign_or_cut_publications_are_errors_not_panics() {
        assert_eq!(BusMessage::decode(b""), Err(WireError::Empty));
        assert_eq!(
            BusMessage::decode(b"hello"),
            Err(WireError::UnknownKind(b'h'))
        );
        assert_eq!(BusMessage::decode(b"M1234"), Err(WireError::Short));
        let whole = chat(1, "ann", b"frame");
        for cut in 1..(1 + 8 + 2 + 3) {
            assert!(BusMessage::decode(&whole[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = login_prefix(1);
        bad.extend_from_slice(b"12x ann");
        assert_eq!(BusMessage::decode(&bad), Err(WireError::BadSequence));
        let mut no_space = login_prefix(1);
        no_space.extend_from_slice(b"12");
        assert_eq!(BusMessage::decode(&no_space), Err(WireError::Short));
        let mut bad_name = login_prefix(1);
        bad_name.extend_from_slice(b"12 \xff");
        assert_eq!(BusMessage::decode(&bad_name), Err(WireError::BadName));
        assert_eq!(
            BusMessage::decode(&probe(1, 2)[..12]),
            Err(WireError::Short)
        );
    }
}
