//! Snappy compression in its block format (not the framed, streaming one), which
//! remote write requires (`Content-Encoding: snappy`).
//!
//! A block is the uncompressed length as a varint, then elements: literals (bytes as they
//! are) and copies (so many bytes from so far back in the output). This compressor is the
//! simple greedy kind: a hash of every 4-byte sequence remembers where it was last seen;
//! where the bytes there are the same, the match is extended as far as it goes and written
//! as a copy, otherwise the byte joins the literal being gathered. It compresses an
//! exposition several times over (every line repeats its labels), though less than the
//! reference implementation; any snappy decoder reads it. Matches are at most 65,535 bytes
//! back, so a copy never needs the 4-byte offset form.

use super::protobuf::varint;

/// Farthest back a copy reaches (its offset fits two bytes).
const MAX_OFFSET: usize = u16::MAX as usize;
/// Bits of the hash table's index.
const HASH_BITS: u32 = 14;
/// Shortest match worth a copy.
const MIN_MATCH: usize = 4;
/// Longest literal element written (its length fits the 2-byte form).
const MAX_LITERAL: usize = 1 << 16;

/// `input` as one snappy block.
pub fn compress(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 3 + 16);
    varint(&mut out, input.len() as u64);
    // Where each hash's 4 bytes were last seen, plus one (0: not yet); positions fit a
    // u32 below 4 GiB, and a larger input is written as literals only.
    let mut last_seen = vec![0u32; 1 << HASH_BITS];
    let mut pending = 0;
    let mut at = 0;
    while at + MIN_MATCH <= input.len() && input.len() < u32::MAX as usize {
        let word = [input[at], input[at + 1], input[at + 2], input[at + 3]];
        let slot = hash(word);
        let seen = last_seen[slot] as usize;
        last_seen[slot] = (at + 1) as u32;
        if let Some(from) = seen.checked_sub(1) {
            if at - from <= MAX_OFFSET && input[from..from + MIN_MATCH] == word {
                let mut length = MIN_MATCH;
                while at + length < input.len() && input[from + length] == input[at + length] {
                    length += 1;
                }
                literal(&mut out, &input[pending..at]);
                copy(&mut out, at - from, length);
                at += length;
                pending = at;
                continue;
            }
        }
        at += 1;
    }
    literal(&mut out, &input[pending..]);
    out
}

/// The hash table slot of four bytes (multiplicative hashing, as the reference does).
fn hash(word: [u8; 4]) -> usize {
    (u32::from_le_bytes(word).wrapping_mul(0x1e35_a7bd) >> (32 - HASH_BITS)) as usize
}

/// Literal elements holding `bytes`: a tag with the length less one (in the tag below 60,
/// else in the 1 or 2 bytes after it), then the bytes.
fn literal(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.chunks(MAX_LITERAL) {
        let n = chunk.len() - 1;
        if n < 60 {
            out.push((n as u8) << 2);
        } else if n < 1 << 8 {
            out.extend_from_slice(&[60 << 2, n as u8]);
        } else {
            out.push(61 << 2);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        out.extend_from_slice(chunk);
    }
}

/// Copy elements for `length` bytes from `offset` back (1..=65,535): the 2-byte form
/// (tag 2: length 1–64 and a 16-bit offset), or the 1-byte form where it fits (tag 1:
/// length 4–11 and an 11-bit offset).
fn copy(out: &mut Vec<u8>, offset: usize, mut length: usize) {
    while length > 0 {
        if (4..=11).contains(&length) && offset < 1 << 11 {
            out.push((((offset >> 8) as u8) << 5) | (((length - 4) as u8) << 2) | 1);
            out.push(offset as u8);
            return;
        }
        let take = length.min(64);
        out.push((((take - 1) as u8) << 2) | 2);
        out.extend_from_slice(&(offset as u16).to_le_bytes());
        length -= take;
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A snappy block decoder (every element form, the 4-byte offset too), strict as the
    /// reference one: a copy must reach back into what was written, and the length must
    /// be the one the block declares.
    pub fn decompress(block: &[u8]) -> Result<Vec<u8>, String> {
        let mut at = 0;
        let mut next = |n: usize| -> Result<&[u8], String> {
            let bytes = block
                .get(at..at + n)
                .ok_or_else(|| format!("cut short at {at}"))?;
            at += n;
            Ok(bytes)
        };
        let mut declared = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = next(1)?[0];
            declared |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
        }
        let little = |bytes: &[u8]| bytes.iter().rev().fold(0usize, |v, b| v << 8 | *b as usize);
        let mut out = Vec::new();
        while let Ok(tag) = next(1).map(|b| b[0]) {
            let (length, offset) = match tag & 3 {
                0 => {
                    let n = usize::from(tag >> 2);
                    let length = if n < 60 { n } else { little(next(n - 59)?) } + 1;
                    out.extend_from_slice(next(length)?);
                    continue;
                }
                1 => (
                    4 + usize::from((tag >> 2) & 7),
                    usize::from(tag >> 5) << 8 | usize::from(next(1)?[0]),
                ),
                2 => (1 + usize::from(tag >> 2), little(next(2)?)),
                _ => (1 + usize::from(tag >> 2), little(next(4)?)),
            };
            if offset == 0 || offset > out.len() {
                return Err(format!(
                    "a copy from {offset} back after {} bytes",
                    out.len()
                ));
            }
            for _ in 0..length {
                out.push(out[out.len() - offset]);
            }
        }
        if out.len() as u64 != declared {
            return Err(format!("{} bytes, {declared} declared", out.len()));
        }
        Ok(out)
    }

    #[test]
    fn small_blocks_are_the_bytes_the_format_defines() {
        assert_eq!(compress(b""), [0]);
        assert_eq!(compress(b"abc"), [3, 2 << 2, b'a', b'b', b'c']);
        // "abcd", then 12 bytes from 4 back (overlapping itself): the 2-byte copy form.
        assert_eq!(
            compress(b"abcdabcdabcdabcd"),
            [16, 3 << 2, b'a', b'b', b'c', b'd', (11 << 2) | 2, 4, 0]
        );
        // "abcdefgh", then 8 bytes from 8 back: the 1-byte copy form.
        assert_eq!(
            compress(b"abcdefghabcdefgh"),
            [&[16, 7 << 2][..], b"abcdefgh", &[((8 - 4) << 2) | 1, 8]].concat()
        );
    }

    #[test]
    fn what_is_compressed_decompresses_to_itself() {
        let mut noise = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        let exposition =
            "loadgen_sent_total{run=\"smoke-20261206T150429Z\",scenario=\"smoke\"} 240\n"
                .repeat(400);
        let inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"a".to_vec(),
            vec![0; 100_000],
            noise.clone(),
            noise[..70_000].repeat(2),
            exposition.clone().into_bytes(),
            [&noise[..61], &noise[..61], &noise[..300], &noise[..70_000]].concat(),
        ];
        for input in &inputs {
            let block = compress(input);
            assert_eq!(&decompress(&block).unwrap(), input, "{} bytes", input.len());
        }
        let block = compress(exposition.as_bytes());
        assert!(
            block.len() * 10 < exposition.len(),
            "{} of {} bytes",
            block.len(),
            exposition.len()
        );
    }

    #[test]
    fn the_decoder_refuses_what_is_not_a_block() {
        assert!(decompress(&[5, 0, b'a']).is_err(), "shorter than declared");
        assert!(
            decompress(&[4, 0, b'a', (2 << 2) | 2, 2, 0]).is_err(),
            "copy from too far"
        );
        assert!(decompress(&[2, 4 << 2, b'a']).is_err(), "literal cut short");
    }
}
