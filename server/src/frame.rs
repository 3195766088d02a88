//! Server-to-client WebSocket frames, encoded once into shared bytes.
//!
//! A broadcast encodes its frame a single time and every receiver's queue holds a
//! reference-counted clone of the same [`Bytes`], so fan-out to N users copies nothing
//! N times. Server frames are never masked (RFC 6455 §5.1), so the encoding is just a
//! header followed by the payload parts.

use bytes::{BufMut, Bytes, BytesMut};

/// RFC 6455 opcodes the server sends.
const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// Close codes the server uses (docs/protocol.md S4, S7, M5, M6, O2, A6).
pub mod close_code {
    /// Server shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Malformed frames or an out-of-place continuation.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A Text message that is not UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// A Text message over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The receiver's outbound queue overflowed (slow consumer).
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// The same name logged in again.
    pub const REPLACED: u16 = 4001;
    /// Silent for two ping intervals.
    pub const IDLE: u16 = 4002;
    /// The session's token reached its `exp` (docs/protocol.md A6).
    pub const TOKEN_EXPIRED: u16 = 4003;
}

/// Encodes a final (FIN) frame whose payload is the concatenation of `parts`.
fn encode(opcode: u8, parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut buf = BytesMut::with_capacity(len + 10);
    buf.put_u8(0x80 | opcode);
    if len < 126 {
        buf.put_u8(len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        buf.put_u8(126);
        buf.put_u16(len16);
    } else {
        buf.put_u8(127);
        buf.put_u64(len as u64);
    }
    for part in parts {
        buf.put_slice(part);
    }
    buf.freeze()
}

/// The chat broadcast of M1: `<message> -- FROM <NAME>` as one Text frame.
pub fn chat(message: &[u8], sender: &str) -> Bytes {
    encode(TEXT, &[message, b" -- FROM ", sender.as_bytes()])
}

/// A Close frame with a code and a reason (the reason is cut to fit 123 bytes).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    encode(CLOSE, &[&code.to_be_bytes(), &reason.as_bytes()[..end]])
}

/// A Close frame with no payload (the answer to an empty Close).
pub fn close_empty() -> Bytes {
    encode(CLOSE, &[])
}

/// A Pong echoing a Ping's payload.
pub fn pong(payload: &[u8]) -> Bytes {
    encode(PONG, &[payload])
}

/// A Ping from the idle sweeper.
pub fn ping() -> Bytes {
    encode(PING, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_medium_and_long_headers() {
        let f = chat(b"hi", "bob");
        assert_eq!(&f[..2], &[0x81, 14]);
        assert_eq!(&f[2..], b"hi -- FROM bob");

        let msg = vec![b'x'; 200];
        let f = chat(&msg, "b");
        assert_eq!(&f[..4], &[0x81, 126, 0, 210]);
        assert_eq!(f.len(), 4 + 210);

        let msg = vec![b'x'; 70_000];
        let f = chat(&msg, "b");
        assert_eq!(f[1], 127);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 70_010);
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let f = close(4001, "replaced by a new login");
        assert_eq!(&f[..4], &[0x88, 25, 0x0f, 0xa1]);
        let f = close(1000, &"é".repeat(100));
        assert!(f.len() - 2 <= 125);
        assert!(std::str::from_utf8(&f[4..]).is_ok());
    }
}
