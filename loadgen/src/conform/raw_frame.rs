//! WebSocket frames written byte by byte, for what a client library will not send: an
//! unmasked client frame, a control frame over 125 bytes (docs/protocol.md R2). A
//! [`RawSocket`] is an upgraded connection whose sending side is the bare TCP stream, so
//! a check can write such frames, and whose receiving side reads the server's frames with
//! a deadline.

use std::time::Instant;

use fastwebsockets::OpCode;
use tokio::io::AsyncWriteExt;

use super::peer::Event;
use crate::connection::{FrameReader, Incoming, ReadStream};
use crate::transport::StreamWrite;

/// Largest frame read from the server on a raw socket.
const MAX_FRAME: usize = 1 << 20;

/// The bytes of one frame: FIN set when `fin`, the payload masked with `mask` when given
/// (a client must mask, RFC 6455 section 5.1; leaving it out is the point of `None`).
pub fn encode(fin: bool, opcode: OpCode, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(if fin { 0x80 } else { 0 } | opcode as u8);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        frame.push(mask_bit | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        frame.push(mask_bit | 126);
        frame.extend_from_slice(&len16.to_be_bytes());
    } else {
        frame.push(mask_bit | 127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

/// A fresh masking key (it need not be unpredictable here, only present).
pub fn some_mask() -> [u8; 4] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0x5a5a_5a5a);
    (nanos | 0x0101_0101).to_be_bytes()
}

/// An upgraded connection written to byte by byte.
pub struct RawSocket {
    read: ReadStream,
    write: StreamWrite,
    /// The ending event, once seen.
    ended: Option<Event>,
}

impl RawSocket {
    pub fn new(read: ReadStream, write: StreamWrite) -> RawSocket {
        RawSocket {
            read,
            write,
            ended: None,
        }
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.write
            .write_all(bytes)
            .await
            .map_err(|e| format!("write failed: {e}"))
    }

    /// Sends a well-formed (masked, final) Text frame.
    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.send(&encode(
            true,
            OpCode::Text,
            Some(some_mask()),
            text.as_bytes(),
        ))
        .await
    }

    /// Reads the server's frames until the connection ends (Close or drop) or `deadline`
    /// passes (`None`); Pongs seen on the way are counted into `pongs`.
    pub async fn end(&mut self, deadline: Instant, pongs: &mut usize) -> Option<Event> {
        if let Some(end) = &self.ended {
            return Some(end.clone());
        }
        let mut frames = FrameReader::new(&mut self.read, MAX_FRAME);
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let event = match tokio::time::timeout(wait, frames.next()).await {
                Err(_) => return None,
                Ok(Ok(Incoming::Close { code, reason })) => Event::Close { code, reason },
                Ok(Ok(Incoming::Pong)) => {
                    *pongs += 1;
                    continue;
                }
                Ok(Ok(_)) => continue,
                Ok(Err(error)) => Event::Dropped(error.to_string()),
            };
            self.ended = Some(event.clone());
            return Some(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_frames_carry_the_length_in_the_second_byte() {
        let frame = encode(true, OpCode::Text, None, b"hi");
        assert_eq!(frame, [0x81, 2, b'h', b'i']);
    }

    #[test]
    fn masked_frames_xor_the_payload_with_the_key() {
        let frame = encode(true, OpCode::Ping, Some([1, 2, 3, 4]), b"abcde");
        assert_eq!(frame[..2], [0x89, 0x80 | 5]);
        assert_eq!(frame[2..6], [1, 2, 3, 4]);
        assert_eq!(
            frame[6..],
            [b'a' ^ 1, b'b' ^ 2, b'c' ^ 3, b'd' ^ 4, b'e' ^ 1]
        );
    }

    #[test]
    fn a_126_byte_payload_takes_the_16_bit_length() {
        let frame = encode(true, OpCode::Ping, Some([9; 4]), &[0u8; 126]);
        assert_eq!(frame[1], 0x80 | 126);
        assert_eq!(frame[2..4], 126u16.to_be_bytes());
        assert_eq!(frame.len(), 4 + 4 + 126);
    }

    #[test]
    fn a_mask_is_never_all_zero_bytes() {
        assert!(some_mask().iter().all(|b| *b != 0));
    }
}
