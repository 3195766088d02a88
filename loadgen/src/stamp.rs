//! What every loadgen message carries, so a receiver can verify and time it alone.
//!
//! A message is `lg2_<run>_<kind>_<sender>_<seq>_<intended>_` followed by `.` padding to
//! the scenario's message size, all hex numbers. `run` is a random id of this run (messages
//! of another run are foreign), `kind` is `m` for a chat message or `p` for an eviction
//! probe, `sender` is the user index, `seq` the sender's sequence number (from 1; for a
//! probe, the probe id), and `intended` the nanoseconds from the run's start at which the
//! schedule said to send it — the latency origin, as in wrk2, so a sender that falls
//! behind cannot hide its lateness. The chat server appends ` -- FROM <NAME>`.
//!
//! Only ASCII letters, digits, `_` and `.` appear in a stamp, so it comes through JSON
//! string escaping by any common encoder unchanged (none escapes those; some escape `/`,
//! `<`, `>`, `&` or non-ASCII), and a server of another protocol may wrap it in JSON,
//! prefix it or add fields: [`Stamp::find_all`] finds stamps anywhere in a frame.

use std::fmt::Write as _;

/// The separator the server puts between a message and its sender's name (M1).
pub const FROM: &str = " -- FROM ";

/// How every stamp begins.
const MARK: &str = "lg2_";

/// Between a stamp's fields.
const SEPARATOR: char = '_';

/// Message kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A scheduled chat message, checked for loss, order and duplication.
    Chat,
    /// A probe sent after a relogin to prove the new session receives (S5).
    Probe,
}

/// The decoded stamp of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Run id.
    pub run: u32,
    /// Chat or probe.
    pub kind: Kind,
    /// Index of the sending user.
    pub sender: u32,
    /// Per-sender sequence number from 1 (probe id for probes).
    pub seq: u64,
    /// Intended send time, ns since the run's start.
    pub intended_ns: u64,
}

/// Why a received text is not a valid loadgen delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    #[error("no ` -- FROM ` suffix")]
    NoFrom,
    #[error("not a loadgen message")]
    NotOurs,
    #[error("malformed stamp")]
    Malformed,
}

impl Stamp {
    /// The stamp's text, without padding.
    pub fn encode(&self) -> String {
        let kind = match self.kind {
            Kind::Chat => 'm',
            Kind::Probe => 'p',
        };
        let mut out = String::with_capacity(64);
        let _ = write!(
            out,
            "lg2_{:x}_{kind}_{:x}_{:x}_{:x}_",
            self.run, self.sender, self.seq, self.intended_ns
        );
        out
    }

    /// The stamp padded with `.` to `size` bytes (never shorter than the stamp itself).
    pub fn message(&self, size: usize) -> String {
        let mut text = self.encode();
        let pad = size.saturating_sub(text.len());
        text.extend(std::iter::repeat_n('.', pad));
        text
    }

    /// The longest stamp any run can produce, for validating message sizes.
    pub fn max_len() -> usize {
        Stamp {
            run: u32::MAX,
            kind: Kind::Chat,
            sender: u32::MAX,
            seq: u64::MAX,
            intended_ns: u64::MAX,
        }
        .encode()
        .len()
    }

    /// Every well-formed stamp in `frame`, wherever it stands (wrapped in JSON, prefixed,
    /// several in one frame), with its `.` padding skipped. Text that only looks like the
    /// start of a stamp is passed over.
    pub fn find_all(frame: &[u8]) -> impl Iterator<Item = Stamp> + '_ {
        let mut from = 0;
        std::iter::from_fn(move || {
            while let Some(at) = find(&frame[from..], MARK.as_bytes()) {
                let start = from + at;
                from = start + MARK.len();
                if let Some((stamp, len)) = Stamp::parse_fields(&frame[from..]) {
                    from += len;
                    return Some(stamp);
                }
            }
            None
        })
    }

    /// The fields after [`MARK`] at the start of `bytes`, and how many bytes they and the
    /// padding after them take.
    fn parse_fields(bytes: &[u8]) -> Option<(Stamp, usize)> {
        let mut at = 0;
        let mut field = || {
            let len = bytes[at..].iter().position(|&b| b == SEPARATOR as u8)?;
            let text = std::str::from_utf8(&bytes[at..at + len]).ok()?;
            at += len + 1;
            (!text.is_empty()).then_some(text)
        };
        let run = u32::from_str_radix(field()?, 16).ok()?;
        let kind = match field()? {
            "m" => Kind::Chat,
            "p" => Kind::Probe,
            _ => return None,
        };
        let sender = u32::from_str_radix(field()?, 16).ok()?;
        let seq = u64::from_str_radix(field()?, 16).ok()?;
        let intended_ns = u64::from_str_radix(field()?, 16).ok()?;
        let padding = bytes[at..].iter().take_while(|&&b| b == b'.').count();
        let stamp = Stamp {
            run,
            kind,
            sender,
            seq,
            intended_ns,
        };
        Some((stamp, at + padding))
    }

    /// Splits a delivery into its stamp and the name after ` -- FROM `.
    pub fn decode_delivery(text: &str) -> Result<(Stamp, &str), StampError> {
        let at = text.rfind(FROM).ok_or(StampError::NoFrom)?;
        let (message, name) = (&text[..at], &text[at + FROM.len()..]);
        Ok((Stamp::decode(message)?, name))
    }

    /// Parses a message's stamp (padding after the last `/` is ignored).
    pub fn decode(message: &str) -> Result<Stamp, StampError> {
        let rest = message.strip_prefix(MARK).ok_or(StampError::NotOurs)?;
        let mut fields = rest.splitn(6, SEPARATOR);
        let mut next = || fields.next().ok_or(StampError::Malformed);
        let run = u32::from_str_radix(next()?, 16).map_err(|_| StampError::Malformed)?;
        let kind = match next()? {
            "m" => Kind::Chat,
            "p" => Kind::Probe,
            _ => return Err(StampError::Malformed),
        };
        let sender = u32::from_str_radix(next()?, 16).map_err(|_| StampError::Malformed)?;
        let seq = u64::from_str_radix(next()?, 16).map_err(|_| StampError::Malformed)?;
        let intended_ns = u64::from_str_radix(next()?, 16).map_err(|_| StampError::Malformed)?;
        let padding = next()?;
        if !padding.bytes().all(|b| b == b'.') {
            return Err(StampError::Malformed);
        }
        Ok(Stamp {
            run,
            kind,
            sender,
            seq,
            intended_ns,
        })
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding_and_from() {
        let stamp = Stamp {
            run: 0xdead,
            kind: Kind::Chat,
            sender: 7,
            seq: 42,
            intended_ns: 123_456_789,
        };
        let message = stamp.message(100);
        assert_eq!(message.len(), 100);
        assert_eq!(Stamp::decode(&message).unwrap(), stamp);
        let delivery = format!("{message}{FROM}user7");
        assert_eq!(Stamp::decode_delivery(&delivery).unwrap(), (stamp, "user7"));
        let probe = Stamp {
            kind: Kind::Probe,
            ..stamp
        };
        assert_eq!(Stamp::decode(&probe.message(0)).unwrap(), probe);
    }

    #[test]
    fn non_ascii_names_and_short_sizes() {
        let stamp = Stamp {
            run: 1,
            kind: Kind::Chat,
            sender: 0,
            seq: 1,
            intended_ns: 0,
        };
        let delivery = format!("{}{FROM}张三 -- FROM x", stamp.message(1));
        // The last separator wins, so a name must not contain it (scenarios refuse such
        // prefixes): here the stamp would end in garbage.
        assert_eq!(
            Stamp::decode_delivery(&delivery),
            Err(StampError::Malformed)
        );
        let delivery = format!("{}{FROM}张三", stamp.message(1));
        assert_eq!(Stamp::decode_delivery(&delivery).unwrap().1, "张三");
        assert!(Stamp::max_len() <= 72);
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(Stamp::decode_delivery("hello"), Err(StampError::NoFrom));
        assert_eq!(
            Stamp::decode_delivery("hello -- FROM x"),
            Err(StampError::NotOurs)
        );
        for bad in [
            "lg2_",
            "lg2_1_m_1_1_1",
            "lg2_1_x_1_1_1_",
            "lg2_zz_m_1_1_1_",
            "lg2_1_m_1_1_1_..x",
        ] {
            assert_eq!(Stamp::decode(bad), Err(StampError::Malformed), "{bad}");
        }
    }

    #[test]
    fn stamps_are_found_anywhere_and_survive_json_escaping() {
        let stamp = |seq| Stamp {
            run: 0xabc,
            kind: Kind::Chat,
            sender: 3,
            seq,
            intended_ns: 99,
        };
        let message = stamp(1).message(40);
        assert!(message
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.'));
        // What a JSON encoder makes of it is the same text.
        let framed = format!(r#"42["chat",{{"from":"ann","text":"{message}"}}]"#);
        assert_eq!(
            Stamp::find_all(framed.as_bytes()).collect::<Vec<_>>(),
            vec![stamp(1)]
        );
        let two = format!(
            "[{{\"t\":\"{}\"}},{{\"t\":\"lg2_oops lg2_{}\"}}]",
            stamp(1).message(0),
            &stamp(2).encode()[4..]
        );
        assert_eq!(
            Stamp::find_all(two.as_bytes()).collect::<Vec<_>>(),
            vec![stamp(1), stamp(2)]
        );
        for garbage in [
            "",
            "lg2",
            "lg2_",
            "lg2_1_m_1_1_",
            "lg2_1_q_1_1_1_",
            "lg2__m_1_1_1_",
        ] {
            assert_eq!(Stamp::find_all(garbage.as_bytes()).count(), 0, "{garbage}");
        }
    }
}
