//! `latency.hlog`: the latency of every interval as an HdrHistogram interval log.
//!
//! The format is the one Java's `HistogramLogWriter` writes (log format 1.3): a few `#`
//! header lines with `StartTime` and `BaseTime`, a legend, then one line per interval with
//! its start (seconds after `BaseTime`), length, max, and the histogram, V2-compressed and
//! base64-encoded. Java's `HistogramLogProcessor`, Python's `hdrhistogram` package and the
//! HdrHistogram plotter read it, so a run can be re-cut into any percentiles over time
//! without loadgen. Values are µs; the `Interval_Max` column is divided by 1000 to read in ms.

use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, IntervalLogWriterError};
use hdrhistogram::serialization::{V2DeflateSerializeError, V2DeflateSerializer};

use crate::clock;
use crate::record::IntervalRecord;

/// Why the log could not be encoded.
pub type HlogError = IntervalLogWriterError<V2DeflateSerializeError>;

/// Divides the µs values of the `Interval_Max` column into ms.
pub const MAX_VALUE_DIVISOR: f64 = 1000.0;

/// The legend line Java's writer puts between the header and the intervals.
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";

/// The whole log: `StartTime` and `BaseTime` are `started_at`, each interval starts at its
/// `start_s` after it and lasts `length_s`.
pub fn interval_log(
    started_at: SystemTime,
    intervals: &[IntervalRecord],
) -> Result<Vec<u8>, HlogError> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment(&format!(
                "loadgen delivery latency per interval, values in microseconds (Interval_Max in ms), measurement started {}",
                clock::rfc3339(started_at)
            ))
            .add_comment("[Histogram log format version 1.3]")
            .with_start_time(started_at)
            .with_base_time(started_at)
            .with_max_value_divisor(MAX_VALUE_DIVISOR)
            .begin_log_with(&mut out, &mut serializer)?;
        for interval in intervals {
            log.write_histogram(
                &interval.latency,
                seconds(interval.start_s),
                seconds(interval.length_s),
                None,
            )?;
        }
    }
    insert_legend(&mut out);
    Ok(out)
}

/// A non-negative, finite number of seconds as a [`Duration`]; anything else as zero.
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
}

/// Puts the legend after the `#` header lines, where Java's writer has it (the crate's
/// writer has no call for it, and holds the buffer until the log is written).
fn insert_legend(log: &mut Vec<u8>) {
    let mut at = 0;
    while log.get(at) == Some(&b'#') {
        match log[at..].iter().position(|&b| b == b'\n') {
            Some(end) => at += end + 1,
            None => at = log.len(),
        }
    }
    log.splice(at..at, LEGEND.bytes());
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::UNIX_EPOCH;

    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::Histogram;

    use super::*;
    use crate::record::{new_histogram, Counters};

    /// Standard base64 (the crate's encoder is not a dependency of ours).
    fn base64_decode(text: &str) -> Vec<u8> {
        let value = |c: u8| -> u32 {
            match c {
                b'A'..=b'Z' => u32::from(c - b'A'),
                b'a'..=b'z' => u32::from(c - b'a') + 26,
                b'0'..=b'9' => u32::from(c - b'0') + 52,
                b'+' => 62,
                b'/' => 63,
                _ => panic!("not base64: {c}"),
            }
        };
        let symbols: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
        let mut out = Vec::new();
        for chunk in symbols.chunks(4) {
            let mut bits = 0u32;
            for (i, &c) in chunk.iter().enumerate() {
                bits |= value(c) << (18 - 6 * i);
            }
            let bytes = bits.to_be_bytes();
            out.extend_from_slice(&bytes[1..chunk.len()]);
        }
        out
    }

    /// One decoded interval: start, length, max column, histogram.
    pub struct Decoded {
        pub start: Duration,
        pub length: Duration,
        pub max: f64,
        pub histogram: Histogram<u64>,
    }

    /// Parses a log with the crate's reader: (StartTime, BaseTime, intervals).
    pub fn decode(log: &[u8]) -> (Option<Duration>, Option<Duration>, Vec<Decoded>) {
        let mut start_time = None;
        let mut base_time = None;
        let mut intervals = Vec::new();
        for entry in IntervalLogIterator::new(log) {
            match entry.expect("log parses") {
                LogEntry::StartTime(t) => start_time = Some(t),
                LogEntry::BaseTime(t) => base_time = Some(t),
                LogEntry::Interval(interval) => {
                    let bytes = base64_decode(interval.encoded_histogram());
                    let histogram = Deserializer::new()
                        .deserialize(&mut &bytes[..])
                        .expect("histogram decodes");
                    intervals.push(Decoded {
                        start: interval.start_timestamp(),
                        length: interval.duration(),
                        max: interval.max(),
                        histogram,
                    });
                }
            }
        }
        (start_time, base_time, intervals)
    }

    fn interval(start_s: f64, latencies_us: &[u64]) -> IntervalRecord {
        let mut latency = new_histogram();
        for &us in latencies_us {
            latency.record(us).unwrap();
        }
        IntervalRecord {
            start_s,
            length_s: 1.0,
            users_online: 1,
            counters: Counters::default(),
            latency,
            connect: None,
        }
    }

    #[test]
    fn round_trips_through_the_crate_reader() {
        let started = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let intervals = [
            interval(0.0, &[1500, 2500, 3500]),
            interval(1.0, &[]),
            interval(2.0, &[42_000]),
        ];
        let log = interval_log(started, &intervals).unwrap();
        let text = String::from_utf8(log.clone()).unwrap();
        let (start_time, base_time, decoded) = decode(&log);
        assert_eq!(start_time, Some(Duration::from_millis(1_700_000_000_250)));
        assert_eq!(base_time, start_time);
        assert_eq!(decoded.len(), 3);
        for (written, read) in intervals.iter().zip(&decoded) {
            assert_eq!(read.histogram, written.latency);
            assert_eq!(read.start, seconds(written.start_s));
            assert_eq!(read.length, Duration::from_secs(1));
        }
        assert_eq!(decoded[0].max, intervals[0].latency.max() as f64 / 1000.0);
        assert_eq!(decoded[1].max, 0.0);
        // The legend sits between the header and the first interval, as Java writes it.
        let lines: Vec<&str> = text.lines().collect();
        let legend = lines
            .iter()
            .position(|l| l.starts_with("\"StartTimestamp\""))
            .unwrap();
        assert!(lines[..legend].iter().all(|l| l.starts_with('#')), "{text}");
        assert!(lines[legend + 1].starts_with("0.000,1.000,3.5"), "{text}");
        assert!(text.contains("#[StartTime: 1700000000.250 "), "{text}");
    }

    #[test]
    fn empty_run_is_a_header_only_log() {
        let log = interval_log(UNIX_EPOCH, &[]).unwrap();
        let (start_time, _, decoded) = decode(&log);
        assert_eq!(start_time, Some(Duration::ZERO));
        assert!(decoded.is_empty());
        assert!(String::from_utf8(log).unwrap().ends_with(LEGEND));
    }

    #[test]
    fn odd_interval_times_do_not_panic() {
        let mut odd = interval(f64::NAN, &[1]);
        odd.length_s = -1.0;
        let log = interval_log(UNIX_EPOCH, &[odd]).unwrap();
        let (_, _, decoded) = decode(&log);
        assert_eq!(decoded[0].start, Duration::ZERO);
        assert_eq!(decoded[0].length, Duration::ZERO);
    }
}
