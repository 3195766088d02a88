//! Series as a remote-write 1.0 `prometheus.WriteRequest`, in protobuf's wire format,
//! written by hand: four messages with two or three fields each need no code generator.
//!
//! The messages and field numbers are those of Prometheus' `prompb/remote.proto` and
//! `prompb/types.proto` (what the remote-write 1.0 specification names):
//!
//! ```text
//! message WriteRequest { repeated TimeSeries timeseries = 1; }
//! message TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
//! message Label        { string name = 1; string value = 2; }
//! message Sample       { double value = 1; int64 timestamp = 2; }  // timestamp in ms
//! ```
//!
//! Embedded messages and strings are length-delimited (wire type 2), the double is a
//! little-endian fixed64 (wire type 1) and the timestamp a varint (wire type 0, an
//! `int64`'s two's complement). Every field is written, zero values too: a decoder reads
//! an explicit zero the same as an absent one.

use super::series::Series;

/// Wire type of a varint field.
const VARINT: u8 = 0;
/// Wire type of a fixed 64-bit field.
const FIXED64: u8 = 1;
/// Wire type of a length-delimited field (bytes, strings, embedded messages).
const LENGTH_DELIMITED: u8 = 2;

/// The encoded `WriteRequest` of `series`, one sample each, every sample at `timestamp_ms`
/// (milliseconds since the Unix epoch).
pub fn write_request(series: &[Series], timestamp_ms: i64) -> Vec<u8> {
    let mut request = Vec::new();
    let mut time_series = Vec::new();
    let mut message = Vec::new();
    for one in series {
        time_series.clear();
        for (name, value) in &one.labels {
            message.clear();
            bytes_field(&mut message, 1, name.as_bytes());
            bytes_field(&mut message, 2, value.as_bytes());
            bytes_field(&mut time_series, 1, &message);
        }
        message.clear();
        key(&mut message, 1, FIXED64);
        message.extend_from_slice(&one.value.to_bits().to_le_bytes());
        key(&mut message, 2, VARINT);
        varint(&mut message, timestamp_ms as u64);
        bytes_field(&mut time_series, 2, &message);
        bytes_field(&mut request, 1, &time_series);
    }
    request
}

/// A length-delimited field: key, length, bytes.
fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, LENGTH_DELIMITED);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A field's key: its number and wire type.
fn key(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire_type));
}

/// Base-128 varint, least significant group first.
pub fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], value: f64) -> Series {
        Series {
            labels: labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            value,
        }
    }

    #[test]
    fn one_series_encodes_to_the_bytes_protoc_would_write() {
        let request = write_request(&[series(&[("__name__", "up"), ("job", "x")], 1.0)], 1000);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[0x0a, 40][..],                                    // WriteRequest.timeseries, 40 bytes
            &[0x0a, 14],                                        //   TimeSeries.labels, 14 bytes
            &[0x0a, 8], b"__name__", &[0x12, 2], b"up",         //     Label.name, Label.value
            &[0x0a, 8],                                         //   TimeSeries.labels, 8 bytes
            &[0x0a, 3], b"job", &[0x12, 1], b"x",
            &[0x12, 12],                                        //   TimeSeries.samples, 12 bytes
            &[0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f],              //     Sample.value = 1.0 (fixed64)
            &[0x10, 0xe8, 0x07],                                //     Sample.timestamp = 1000 (varint)
        ]
        .concat();
        assert_eq!(request, expected);
    }

    #[test]
    fn series_follow_each_other_and_long_fields_get_multi_byte_lengths() {
        let long = "v".repeat(200);
        let one = series(&[("__name__", "a")], -2.5);
        let two = series(&[("__name__", "b"), ("l", &long)], 0.0);
        let request = write_request(&[one.clone(), two], 1_700_000_000_123);
        let alone = write_request(&[one], 1_700_000_000_123);
        assert!(
            request.starts_with(&alone),
            "the first series comes first, whole"
        );
        let second = &request[alone.len()..];
        // The label of 200 bytes: its length is the two-byte varint 0xc8 0x01.
        let needle = [&[0x12, 0xc8, 0x01][..], long.as_bytes()].concat();
        assert!(second.windows(needle.len()).any(|w| w == needle));
        // -2.5 as a little-endian double.
        assert!(alone
            .windows(9)
            .any(|w| w == [0x09, 0, 0, 0, 0, 0, 0, 0x04, 0xc0]));
    }

    #[test]
    fn varints_and_negative_timestamps() {
        let encode = |v: u64| {
            let mut out = Vec::new();
            varint(&mut out, v);
            out
        };
        assert_eq!(encode(0), [0]);
        assert_eq!(encode(127), [0x7f]);
        assert_eq!(encode(128), [0x80, 0x01]);
        assert_eq!(encode(300), [0xac, 0x02]);
        // An int64 of -1 is ten bytes, as protobuf writes negative int64s.
        assert_eq!(
            encode(-1i64 as u64),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }
}
