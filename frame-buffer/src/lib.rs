//! WebSocket frames read off a connection into a buffer that exists only while bytes wait
//! to be parsed.
//!
//! fastwebsockets' reader gives a connection an 8 KiB buffer for the rest of its life once
//! it has read anything. A chat connection is idle nearly all the time — a receiver of one
//! broadcast a second holds its ~150 bytes for microseconds — so with 10,000 connections
//! those buffers were most of both sides' memory per user (and, as each frame was
//! appended further into the buffer, their pages were touched one after another until
//! all 8 KiB were resident). A [`FrameBuffer`] waits for the socket to be readable without
//! a buffer, reads what is there into one, hands out the complete frames, and lets the
//! buffer go as soon as nothing is left in it; a frame split across reads keeps it until
//! the rest has arrived, and so does a busy connection (one whose reads fill what they
//! ask for) until its reads are small again. Between messages a connection holds the few dozen bytes of a
//! [`FrameBuffer`].
//!
//! It parses what fastwebsockets' reader parses and refuses what it refuses, with the same
//! [`WebSocketError`]s (RFC 6455 §5.2): reserved bits, unknown opcodes, a fragmented
//! control frame, a Ping over 125 bytes, a payload over the limit (as soon as the header
//! says so, before any of it is read), invalid UTF-8 in a whole Text frame, the end of the
//! stream. Read as a server, a client's frame is unmasked; whether a frame came masked is
//! kept for the caller to judge.

use std::io::Cursor;

use bytes::{Buf, Bytes, BytesMut};
use either_io::tcp::ReadPart;
pub use fastwebsockets::{OpCode, Role, WebSocketError};
use tokio::io::{AsyncRead, AsyncReadExt};

/// What a read asks the kernel for at first: a frame or two of chat. Small enough for the
/// allocator's per-thread cache, and for 10,000 connections closing at once.
pub const FIRST_READ: usize = 1024;

/// The most a read asks for once reads keep filling what they were given: a burst of
/// frames in one read (fastwebsockets read 8 KiB at a time; chat-server writes up to 64
/// frames, ~9.4 KiB of chat, in one go).
pub const MOST_READ: usize = 16 * 1024;

/// The bytes of a connection after the WebSocket handshake: whatever the HTTP layer had
/// already read past it, then the socket (plain or TLS).
pub type ReadStream<T> = tokio::io::Chain<Cursor<Bytes>, ReadPart<T>>;

/// One frame as it came, unmasked when read as a server.
#[derive(Debug)]
pub struct Frame {
    pub fin: bool,
    pub opcode: OpCode,
    /// Whether the peer masked it (a client must, a server must not).
    pub masked: bool,
    pub payload: BytesMut,
}

/// The frames of one connection, parsed from a buffer that is let go whenever it is empty.
pub struct FrameBuffer {
    bytes: BytesMut,
    role: Role,
    max_payload: u64,
    /// Bytes still to come before the frame at the front is whole (once parsing said so).
    missing: usize,
    /// What the next read asks for: doubled while reads fill it, halved when they come
    /// back with less than a quarter ([`FIRST_READ`]..=[`MOST_READ`]).
    read_size: usize,
}

/// What the front of the buffer holds.
enum Front {
    /// A frame whose header is whole: its header's length and its payload's.
    Frame {
        fin: bool,
        opcode: OpCode,
        mask: Option<[u8; 4]>,
        header_len: usize,
        payload_len: usize,
    },
    /// Not even a whole header: this many more bytes at least.
    Needs(usize),
}

impl FrameBuffer {
    /// A reader of frames for `role`'s end of a connection, refusing payloads over
    /// `max_payload` bytes.
    pub fn new(role: Role, max_payload: usize) -> Self {
        FrameBuffer {
            bytes: BytesMut::new(),
            role,
            max_payload: max_payload as u64,
            missing: 0,
            read_size: FIRST_READ,
        }
    }

    /// The next frame, waiting for it as long as it takes.
    pub async fn next<T>(&mut self, stream: &mut ReadStream<T>) -> Result<Frame, WebSocketError>
    where
        T: AsyncRead + Unpin,
    {
        loop {
            if let Some(frame) = self.parse()? {
                return Ok(frame);
            }
            if self.bytes.is_empty() && self.read_size == FIRST_READ {
                // Nothing pending, and reads have been small: wait without a buffer. A
                // connection whose reads keep filling their room keeps it (freeing and
                // touching fresh pages on every read costs more than the memory saves).
                self.bytes = BytesMut::new();
                readable(stream).await?;
            }
            self.bytes.reserve(self.missing.max(self.read_size));
            let room = self.bytes.capacity() - self.bytes.len();
            let read = stream.read_buf(&mut self.bytes).await?;
            if read == 0 {
                return Err(WebSocketError::UnexpectedEOF);
            }
            self.read_size = if read == room {
                (self.read_size * 2).min(MOST_READ)
            } else if read < self.read_size / 4 {
                (self.read_size / 2).max(FIRST_READ)
            } else {
                self.read_size
            };
        }
    }

    /// Bytes read and not yet handed out as frames.
    pub fn pending(&self) -> usize {
        self.bytes.len()
    }

    /// The frame at the front if it is whole; otherwise notes how much is missing.
    fn parse(&mut self) -> Result<Option<Frame>, WebSocketError> {
        let (fin, opcode, mask, header_len, payload_len) =
            match front(&self.bytes, self.max_payload)? {
                Front::Needs(more) => {
                    self.missing = more;
                    return Ok(None);
                }
                Front::Frame {
                    fin,
                    opcode,
                    mask,
                    header_len,
                    payload_len,
                } => (fin, opcode, mask, header_len, payload_len),
            };
        let whole = header_len + payload_len;
        if self.bytes.len() < whole {
            self.missing = whole - self.bytes.len();
            return Ok(None);
        }
        self.missing = 0;
        self.bytes.advance(header_len);
        let mut payload = self.bytes.split_to(payload_len);
        if let (Role::Server, Some(mask)) = (self.role, mask) {
            fastwebsockets::unmask(&mut payload, mask);
        }
        if opcode == OpCode::Text && fin && std::str::from_utf8(&payload).is_err() {
            return Err(WebSocketError::InvalidUTF8);
        }
        Ok(Some(Frame {
            fin,
            opcode,
            masked: mask.is_some(),
            payload,
        }))
    }
}

/// Waits until the stream has something to read, without a buffer: at once when bytes
/// from the handshake are left over, or for a TLS connection (whose reader buffers anyway).
pub async fn readable<T: AsyncRead>(stream: &ReadStream<T>) -> std::io::Result<()> {
    let (leftover, socket) = stream.get_ref();
    if leftover.has_remaining() {
        return Ok(());
    }
    either_io::tcp::readable(socket).await
}

/// Reads the header at the front of `bytes` (RFC 6455 §5.2) and refuses what may not be
/// read on.
fn front(bytes: &[u8], max_payload: u64) -> Result<Front, WebSocketError> {
    let [first, second, ..] = *bytes else {
        return Ok(Front::Needs(2 - bytes.len()));
    };
    if first & 0b0111_0000 != 0 {
        return Err(WebSocketError::ReservedBitsNotZero);
    }
    let fin = first & 0b1000_0000 != 0;
    let opcode = match first & 0x0f {
        0x0 => OpCode::Continuation,
        0x1 => OpCode::Text,
        0x2 => OpCode::Binary,
        0x8 => OpCode::Close,
        0x9 => OpCode::Ping,
        0xa => OpCode::Pong,
        _ => return Err(WebSocketError::InvalidValue),
    };
    let masked = second & 0x80 != 0;
    let extra = match second & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + extra + if masked { 4 } else { 0 };
    if bytes.len() < header_len {
        return Ok(Front::Needs(header_len - bytes.len()));
    }
    let payload_len = match extra {
        2 => u64::from(u16::from_be_bytes([bytes[2], bytes[3]])),
        8 => {
            let mut be = [0u8; 8];
            be.copy_from_slice(&bytes[2..10]);
            u64::from_be_bytes(be)
        }
        _ => u64::from(second & 0x7f),
    };
    let mask = masked.then(|| {
        let at = 2 + extra;
        [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
    });
    let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
    if control && !fin {
        return Err(WebSocketError::ControlFrameFragmented);
    }
    if opcode == OpCode::Ping && payload_len > 125 {
        return Err(WebSocketError::PingFrameTooLarge);
    }
    if payload_len > max_payload {
        return Err(WebSocketError::FrameTooLarge);
    }
    Ok(Front::Frame {
        fin,
        opcode,
        mask,
        header_len,
        // At most `max_payload`, a usize.
        payload_len: payload_len as usize,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    /// A loopback connection: the reading end as a [`ReadStream`] with `leftover` in
    /// front, and the other end to write frames into.
    async fn pair(leftover: &[u8]) -> (ReadStream<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let near = TcpStream::connect(addr).await.unwrap();
        let (far, _) = listener.accept().await.unwrap();
        let (read, _write) = either_io::tcp::split(either_io::EitherIo::Plain(near));
        let stream = AsyncReadExt::chain(Cursor::new(Bytes::copy_from_slice(leftover)), read);
        (stream, far)
    }

    /// A frame as a client sends it: masked with `mask` (when given).
    fn encode(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        let bit = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(bit | n as u8),
            n if n <= 0xffff => {
                out.push(bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    #[tokio::test]
    async fn frames_split_anywhere_come_out_whole_and_the_buffer_goes_when_empty() {
        let big = vec![b'x'; 70_000]; // a 64-bit length, and more than the largest read
        let mut wire = encode(true, 0x1, b"hello", Some([1, 2, 3, 4]));
        wire.extend(encode(true, 0x2, &vec![7u8; 300], Some([9, 8, 7, 6])));
        wire.extend(encode(true, 0x1, &big, Some([5, 5, 5, 5])));
        wire.extend(encode(true, 0x9, b"ping", Some([0, 0, 0, 1])));
        // The first 3 bytes were read with the handshake; the rest comes a few at a time.
        let (mut stream, mut far) = pair(&wire[..3]).await;
        let rest = wire[3..].to_vec();
        tokio::spawn(async move {
            for chunk in rest.chunks(997) {
                far.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
            // Hold the connection open until the reader is done.
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        });
        let mut frames = FrameBuffer::new(Role::Server, 1 << 20);
        let hello = frames.next(&mut stream).await.unwrap();
        assert_eq!(
            (hello.opcode, hello.fin, hello.masked),
            (OpCode::Text, true, true)
        );
        assert_eq!(&hello.payload[..], b"hello");
        let binary = frames.next(&mut stream).await.unwrap();
        assert_eq!(binary.opcode, OpCode::Binary);
        assert_eq!(&binary.payload[..], &[7u8; 300][..]);
        let text = frames.next(&mut stream).await.unwrap();
        assert_eq!(&text.payload[..], &big[..]);
        let ping = frames.next(&mut stream).await.unwrap();
        assert_eq!(
            (ping.opcode, &ping.payload[..]),
            (OpCode::Ping, &b"ping"[..])
        );
        assert_eq!(frames.pending(), 0);
    }

    #[tokio::test]
    async fn reads_grow_through_a_burst_and_shrink_back_when_frames_come_one_by_one() {
        let (mut stream, mut far) = pair(b"").await;
        let frame = encode(true, 0x1, &[b'b'; 100], None);
        let burst: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * 2000)
            .collect();
        far.write_all(&burst).await.unwrap();
        let mut frames = FrameBuffer::new(Role::Client, 1 << 20);
        for _ in 0..2000 {
            assert_eq!(frames.next(&mut stream).await.unwrap().payload.len(), 100);
        }
        assert!(
            frames.read_size > FIRST_READ,
            "reads that filled their room grew"
        );
        for _ in 0..20 {
            far.write_all(&frame).await.unwrap();
            frames.next(&mut stream).await.unwrap();
        }
        assert_eq!(frames.read_size, FIRST_READ, "back to small reads");
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_buffer_between_frames() {
        let (mut stream, mut far) = pair(b"").await;
        let mut frames = FrameBuffer::new(Role::Client, 1 << 20);
        for n in 0..3 {
            far.write_all(&encode(true, 0x1, format!("m{n}").as_bytes(), None))
                .await
                .unwrap();
            let frame = frames.next(&mut stream).await.unwrap();
            assert_eq!(frame.payload, format!("m{n}").as_bytes());
            assert!(!frame.masked);
            drop(frame);
            // The next call finds nothing pending and lets the buffer go before waiting.
            let waiting = tokio::time::timeout(
                std::time::Duration::from_millis(20),
                frames.next(&mut stream),
            )
            .await;
            assert!(waiting.is_err(), "nothing was sent");
            assert_eq!(frames.bytes.capacity(), 0, "no buffer while idle");
        }
    }

    #[tokio::test]
    async fn what_fastwebsockets_refuses_is_refused_with_its_error() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0x81 | 0x40, 0x80, 0, 0, 0, 0], "ReservedBitsNotZero"),
            (vec![0x83, 0x80, 0, 0, 0, 0], "InvalidValue"),
            (
                encode(false, 0x9, b"", Some([1; 4])),
                "ControlFrameFragmented",
            ),
            (
                encode(true, 0x9, &[0; 126], Some([1; 4])),
                "PingFrameTooLarge",
            ),
            (
                encode(true, 0x1, &[0xff, 0xfe], Some([1; 4])),
                "InvalidUTF8",
            ),
            // Refused from the header alone: the 2 MiB payload never arrives.
            (
                vec![0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4],
                "FrameTooLarge",
            ),
            (vec![0x81, 0x85, 1], "UnexpectedEOF"),
        ];
        for (wire, expected) in cases {
            let (mut stream, mut far) = pair(b"").await;
            far.write_all(&wire).await.unwrap();
            far.shutdown().await.unwrap();
            let mut frames = FrameBuffer::new(Role::Server, 1 << 20);
            let error = frames.next(&mut stream).await.unwrap_err();
            assert_eq!(format!("{error:?}"), expected, "for {wire:02x?}");
        }
    }

    #[tokio::test]
    async fn a_payload_at_the_limit_is_read_and_one_over_it_is_refused() {
        let (mut stream, mut far) = pair(b"").await;
        far.write_all(&encode(true, 0x1, &[b'a'; 100], Some([1; 4])))
            .await
            .unwrap();
        far.write_all(&encode(true, 0x1, &[b'a'; 101], Some([1; 4])))
            .await
            .unwrap();
        let mut frames = FrameBuffer::new(Role::Server, 100);
        assert_eq!(frames.next(&mut stream).await.unwrap().payload.len(), 100);
        assert!(matches!(
            frames.next(&mut stream).await,
            Err(WebSocketError::FrameTooLarge)
        ));
    }
}
