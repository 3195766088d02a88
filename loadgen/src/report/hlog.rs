//! `latency.hlog`: the latency of every interval as an HdrHistogram interval log.
//!
//! The format is the one Java's `HistogramLogWriter` writes (log format 1.3): a few `#`
//! header lines with `StartTime` and `BaseTime`, a legend, then one line per interval with
//! its start (seconds after `BaseTime`), length, max, and the histogram, V2-compressed and
//! base64-encoded. Java's `HistogramLogProcessor`, Python's `hdrhistogram` package and the
//! HdrHistogram plotter read it, so a run can be re-cut into any percentiles over time
//! without loadgen. Values are µs; the `Interval_Max` column is divided by 1000 to read in ms.
//!
//! A [`LatencyLog`] takes each interval's line as the interval closes, so the histogram
//! (~180 KB in memory, a few hundred bytes as a line) can be dropped at once: a run's
//! memory does not grow with its length. A run spools the lines to a temporary file
//! (removed when the last copy of the log is dropped); a merge, which has its intervals at
//! hand, keeps them in memory. [`LatencyLog::write`] puts the header in front when the
//! report is written.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
use hdrhistogram::serialization::{Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;

use crate::clock;
use crate::record::ClosedInterval;

/// Why the log could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HlogError {
    #[error("a histogram could not be encoded: {0}")]
    Encode(String),
    #[error("the spooled intervals: {0}")]
    Spool(#[from] std::io::Error),
    #[error("the spooled intervals could not be kept: {0}")]
    Lost(String),
}

/// Divides the µs values of the `Interval_Max` column into ms.
pub const MAX_VALUE_DIVISOR: f64 = 1000.0;

/// The legend line Java's writer puts between the header and the intervals.
const LEGEND: &str =
    "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n";

/// The interval lines of a run's latency log, in a temporary file or in memory; cloning
/// shares them.
#[derive(Debug, Clone, Default)]
pub struct LatencyLog {
    lines: Arc<Mutex<Lines>>,
}

#[derive(Debug, Default)]
enum Lines {
    #[default]
    Empty,
    Memory(Vec<u8>),
    Spool(Spool),
    /// Spooling failed (a full disk): the log cannot be written, and says why.
    Failed(String),
}

/// A temporary file of interval lines. Its name is removed as soon as it is open, so
/// nothing is left behind however the process ends; the open file lives until dropped.
#[derive(Debug)]
struct Spool {
    file: BufWriter<File>,
}

impl LatencyLog {
    /// A log that keeps its lines in memory (a merge, a test).
    pub fn in_memory() -> LatencyLog {
        LatencyLog {
            lines: Arc::new(Mutex::new(Lines::Memory(Vec::new()))),
        }
    }

    /// A log that spools its lines to a new file in the system's temporary folder.
    pub fn spooled() -> Result<LatencyLog, HlogError> {
        let file = crate::spool_file::nameless("hlog-lines")?;
        Ok(LatencyLog {
            lines: Arc::new(Mutex::new(Lines::Spool(Spool {
                file: BufWriter::new(file),
            }))),
        })
    }

    /// A log spooled to a temporary file, or kept in memory when no file can be made.
    pub fn for_a_run() -> LatencyLog {
        LatencyLog::spooled().unwrap_or_else(|_| LatencyLog::in_memory())
    }

    /// Adds one interval's line. A line that cannot be spooled makes the log fail when
    /// it is written, with the reason.
    pub fn append(&self, interval: &ClosedInterval) {
        let line = line(
            &interval.latency,
            seconds(interval.start_s),
            seconds(interval.length_s),
        );
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let failed = match (&mut *lines, line) {
            (Lines::Failed(_), _) => None,
            (_, Err(error)) => Some(error.to_string()),
            (Lines::Empty, Ok(line)) => {
                *lines = Lines::Memory(line.into_bytes());
                None
            }
            (Lines::Memory(bytes), Ok(line)) => {
                bytes.extend_from_slice(line.as_bytes());
                None
            }
            (Lines::Spool(spool), Ok(line)) => spool
                .file
                .write_all(line.as_bytes())
                .err()
                .map(|e| e.to_string()),
        };
        if let Some(why) = failed {
            *lines = Lines::Failed(why);
        }
    }

    /// The whole log: `StartTime` and `BaseTime` are `started_at`, then every interval
    /// line appended so far.
    pub fn write(&self, started_at: SystemTime) -> Result<Vec<u8>, HlogError> {
        let mut out = header(started_at)?;
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        match &mut *lines {
            Lines::Empty => {}
            Lines::Memory(bytes) => out.extend_from_slice(bytes),
            Lines::Spool(spool) => {
                spool.file.flush()?;
                let file = spool.file.get_mut();
                file.rewind()?;
                file.read_to_end(&mut out)?;
                file.seek(SeekFrom::End(0))?;
            }
            Lines::Failed(why) => return Err(HlogError::Lost(why.clone())),
        }
        Ok(out)
    }
}

/// The whole log of `intervals` at once.
#[cfg(test)]
pub fn interval_log(
    started_at: SystemTime,
    intervals: &[ClosedInterval],
) -> Result<Vec<u8>, HlogError> {
    let log = LatencyLog::in_memory();
    for interval in intervals {
        log.append(interval);
    }
    log.write(started_at)
}

/// The `#` header lines and the legend.
fn header(started_at: SystemTime) -> Result<Vec<u8>, HlogError> {
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    IntervalLogWriterBuilder::new()
        .add_comment(&format!(
            "loadgen delivery latency per interval, values in microseconds (Interval_Max in ms), measurement started {}",
            clock::rfc3339(started_at)
        ))
        .add_comment("[Histogram log format version 1.3]")
        .with_start_time(started_at)
        .with_base_time(started_at)
        .with_max_value_divisor(MAX_VALUE_DIVISOR)
        .begin_log_with(&mut out, &mut serializer)
        .map_err(|e| HlogError::Encode(e.to_string()))?;
    out.extend_from_slice(LEGEND.as_bytes());
    Ok(out)
}

/// One interval line, as Java's writer formats it.
fn line(h: &Histogram<u64>, start: Duration, length: Duration) -> Result<String, HlogError> {
    use base64::Engine as _;
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut bytes)
        .map_err(|e| HlogError::Encode(format!("{e:?}")))?;
    Ok(format!(
        "{:.3},{:.3},{:.3},{}\n",
        start.as_secs_f64(),
        length.as_secs_f64(),
        h.max() as f64 / MAX_VALUE_DIVISOR,
        base64::engine::general_purpose::STANDARD.encode(&bytes)
    ))
}

/// A non-negative, finite number of seconds as a [`Duration`]; anything else as zero.
fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_default()
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

    fn interval(start_s: f64, latencies_us: &[u64]) -> ClosedInterval {
        let mut latency = new_histogram();
        for &us in latencies_us {
            latency.record(us).unwrap();
        }
        ClosedInterval {
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
    fn a_spooled_log_is_the_same_log_and_leaves_no_file() {
        let started = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let intervals = [interval(0.0, &[1500, 2500]), interval(1.0, &[7])];
        let spooled = LatencyLog::spooled().unwrap();
        for i in &intervals {
            spooled.append(i);
        }
        assert!(matches!(&*spooled.lines.lock().unwrap(), Lines::Spool(_)));
        let pattern = format!("loadgen-{}-", std::process::id());
        let left = std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(&pattern) && name.ends_with(".hlog-lines")
            })
            .count();
        assert_eq!(left, 0, "the spool has no name in the temporary folder");
        let whole = interval_log(started, &intervals).unwrap();
        assert_eq!(spooled.write(started).unwrap(), whole);
        // Written twice, and appended to after: still the same lines, in order.
        assert_eq!(spooled.write(started).unwrap(), whole);
        spooled.append(&interval(2.0, &[9]));
        let mut three = intervals.to_vec();
        three.push(interval(2.0, &[9]));
        assert_eq!(
            spooled.write(started).unwrap(),
            interval_log(started, &three).unwrap()
        );
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
