//! One scenario split over several loadgen processes: which users a process owns, when
//! the processes start measuring together, and the lines a worker and the process that
//! started it exchange.
//!
//! **Segments.** A run of `N` segments gives user `u` to segment `u % N`. Everything a
//! segment does follows from the scenario, its `seed` and that rule, so any process can
//! tell, without asking, who sends what and when: a sender's schedule is the same in every
//! process, relogins and churn of the plan's k-th disruption are done by segment `k % N`,
//! each segment's probe user is its own (`<prefix>probe` for a run of one segment,
//! `<prefix>probe-<I>of<N>` otherwise). Taking users in turn rather than in blocks spreads
//! the senders (the first users) over every segment.
//!
//! **One clock.** Segments stamp messages on a clock every process can read: nanoseconds
//! since the Unix epoch (the wall clock, read once at start and then advanced by the
//! monotonic clock). On one machine that clock is exact. Across machines latency is only as
//! good as their clock sync (NTP: about a millisecond; PTP: microseconds); each segment
//! keeps the least one-way latency it saw from every other segment, and the merge turns
//! pairs of those into an estimate of each segment's clock offset.
//!
//! **Start.** A segment connects its users, then starts its measured phases at a wall-clock
//! time: `--start-at` (the same on every host), or — for workers started by
//! `loadgen run --workers N` — when the coordinating process releases every worker at once,
//! after all have connected. The worker lines are the [`WorkerLine`]s below, one per line on
//! the worker's stdout; the coordinator answers with one [`RELEASE`] line on its stdin.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::record::Counters;

/// Most segments one run may have.
pub const MAX_SEGMENTS: u32 = 1024;

/// Segment `index` of `count` (0-based), written `I/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub index: u32,
    pub count: u32,
}

impl Segment {
    /// The whole run in one process.
    pub const WHOLE: Segment = Segment { index: 0, count: 1 };

    /// Whether user `user` belongs to this segment.
    pub fn owns(&self, user: u32) -> bool {
        user % self.count.max(1) == self.index
    }

    /// This segment's users among `users`, in order.
    pub fn users(&self, users: u32) -> impl Iterator<Item = u32> {
        (self.index..users).step_by(self.count.max(1) as usize)
    }

    /// How many of `users` are this segment's.
    pub fn user_count(&self, users: u32) -> u32 {
        let count = self.count.max(1);
        users / count + u32::from(users % count > self.index)
    }

    /// The run is split (more than one segment).
    pub fn is_split(&self) -> bool {
        self.count > 1
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Why `--segment` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    #[error("{0:?} is not I/N (e.g. 0/4: the first of four segments)")]
    Form(String),
    #[error("segment {index}/{count}: the index counts from 0 and must be below {count}")]
    Index { index: u32, count: u32 },
    #[error("{count} segments: at least 1 and at most {MAX_SEGMENTS}")]
    Count { count: u32 },
}

impl FromStr for Segment {
    type Err = SegmentError;

    fn from_str(text: &str) -> Result<Segment, SegmentError> {
        let form = || SegmentError::Form(text.to_string());
        let (index, count) = text.trim().split_once('/').ok_or_else(form)?;
        let index: u32 = index.trim().parse().map_err(|_| form())?;
        let count: u32 = count.trim().parse().map_err(|_| form())?;
        if count == 0 || count > MAX_SEGMENTS {
            return Err(SegmentError::Count { count });
        }
        if index >= count {
            return Err(SegmentError::Index { index, count });
        }
        Ok(Segment { index, count })
    }
}

/// Nanoseconds since the Unix epoch now, by the wall clock.
pub fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Why `--start-at` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a start time: give UTC RFC 3339 (2026-11-26T10:00:00Z), Unix seconds \
     (@1795687200), or a delay from now (+30s)"
)]
pub struct StartAtError(String);

/// Reads `--start-at`: `2026-11-26T10:00:00Z` (UTC, fractions of a second allowed),
/// `@<unix seconds>`, or `+<duration>` from `now_ns`. Returns nanoseconds since the epoch.
pub fn parse_start_at(text: &str, now_ns: u64) -> Result<u64, StartAtError> {
    let bad = || StartAtError(text.to_string());
    let text = text.trim();
    if let Some(delay) = text.strip_prefix('+') {
        let delay = duration_text::parse(delay).map_err(|_| bad())?;
        return Ok(now_ns.saturating_add(delay.as_nanos() as u64));
    }
    if let Some(secs) = text.strip_prefix('@') {
        let secs: f64 = secs.parse().map_err(|_| bad())?;
        if !(0.0..1e12).contains(&secs) {
            return Err(bad());
        }
        return Ok((secs * 1e9) as u64);
    }
    rfc3339_ns(text).ok_or_else(bad)
}

/// `YYYY-MM-DDTHH:MM:SS[.fff]Z` as nanoseconds since the epoch.
fn rfc3339_ns(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z').or_else(|| text.strip_suffix('z'))?;
    let (date, time) = text.split_once(['T', 't', ' '])?;
    let mut date_parts = date.splitn(3, '-');
    let year: i64 = date_parts.next()?.parse().ok()?;
    let month: u32 = date_parts.next()?.parse().ok()?;
    let day: u32 = date_parts.next()?.parse().ok()?;
    let (whole, fraction) = match time.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (time, None),
    };
    let mut time_parts = whole.splitn(3, ':');
    let hour: u64 = time_parts.next()?.parse().ok()?;
    let minute: u64 = time_parts.next()?.parse().ok()?;
    let second: u64 = time_parts.next()?.parse().ok()?;
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let nanos = match fraction {
        None => 0,
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u64>().ok()? * 10u64.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
    };
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(secs * 1_000_000_000 + nanos)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, the inverse of the one in `clock`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The line a coordinator writes to a worker's stdin to start it: `start <unix ns>`.
pub const RELEASE: &str = "start";

/// What a worker tells its coordinator, one line each on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "kebab-case")]
pub enum WorkerLine {
    /// Every login of the ramp was tried; the worker waits for [`RELEASE`].
    Ready { connected: u64, failed: u64 },
    /// One interval closed: its counters, users online, and its latency histogram
    /// (HdrHistogram V2, base64).
    Tick {
        index: usize,
        length_s: f64,
        users_online: u64,
        counters: Box<Counters>,
        latency: String,
    },
    /// The worker wrote its segment report and is about to exit.
    Done { incomplete: Option<String> },
}

impl WorkerLine {
    /// The line as written (no newline).
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A line read from a worker; `None` for anything else (a worker may print other
    /// things; they are not ours).
    pub fn decode(line: &str) -> Option<WorkerLine> {
        serde_json::from_str(line.trim()).ok()
    }
}

/// The release line for a start at `start_ns` (Unix ns).
pub fn release_line(start_ns: u64) -> String {
    format!("{RELEASE} {start_ns}")
}

/// The start time of a release line.
pub fn parse_release(line: &str) -> Option<u64> {
    let (word, ns) = line.trim().split_once(' ')?;
    (word == RELEASE).then(|| ns.trim().parse().ok()).flatten()
}

/// Process ids of the local workers running now (for counting their CPU and memory as
/// loadgen's: `crate::resources`).
static LIVE_WORKERS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Notes that worker process `pid` started.
pub fn worker_started(pid: u32) {
    LIVE_WORKERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(pid);
}

/// Notes that worker process `pid` ended.
pub fn worker_ended(pid: u32) {
    LIVE_WORKERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|&p| p != pid);
}

/// The local workers running now.
pub fn live_workers() -> Vec<u32> {
    LIVE_WORKERS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// How late a process may start measuring after `--start-at` before the run is called
/// incomplete (its users were not all connected in time).
pub const START_TOLERANCE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_read_and_own_users_in_turn() {
        let s: Segment = "1/4".parse().unwrap();
        assert_eq!(s, Segment { index: 1, count: 4 });
        assert_eq!(s.to_string(), "1/4");
        assert_eq!(s.users(10).collect::<Vec<_>>(), vec![1, 5, 9]);
        assert_eq!(s.user_count(10), 3);
        assert_eq!(Segment { index: 3, count: 4 }.user_count(10), 2);
        assert!(s.owns(5) && !s.owns(4));
        let total: u32 = (0..4)
            .map(|i| Segment { index: i, count: 4 }.user_count(10))
            .sum();
        assert_eq!(total, 10);
        assert!(!Segment::WHOLE.is_split());
        assert_eq!(Segment::WHOLE.users(3).count(), 3);
        for bad in ["4/4", "1", "a/2", "0/0", "-1/2", "0/5000", ""] {
            assert!(bad.parse::<Segment>().is_err(), "{bad}");
        }
        assert!("4/4"
            .parse::<Segment>()
            .unwrap_err()
            .to_string()
            .contains("below 4"));
    }

    #[test]
    fn start_times_in_three_spellings() {
        let now = 1_000_000_000_000;
        assert_eq!(parse_start_at("+30s", now), Ok(now + 30_000_000_000));
        assert_eq!(parse_start_at("@1.5", now), Ok(1_500_000_000));
        assert_eq!(
            parse_start_at("1970-01-02T00:00:01Z", now),
            Ok(86_401_000_000_000)
        );
        // 2000-02-29 is day 11016 after the epoch.
        assert_eq!(
            parse_start_at("2000-02-29T12:00:00.25Z", now),
            Ok((11_016 * 86_400 + 43_200) * 1_000_000_000 + 250_000_000)
        );
        for bad in [
            "tomorrow",
            "2026-13-01T00:00:00Z",
            "2026-11-26T10:00:00",
            "2026-11-26T10:00:00+01:00",
            "+",
            "@-5",
            "@x",
            "2026-11-26T10:00:00.Z",
        ] {
            let error = parse_start_at(bad, now).unwrap_err();
            assert!(error.to_string().contains("RFC 3339"), "{bad}");
        }
    }

    #[test]
    fn worker_lines_round_trip() {
        let lines = [
            WorkerLine::Ready {
                connected: 10,
                failed: 1,
            },
            WorkerLine::Tick {
                index: 3,
                length_s: 1.0,
                users_online: 9,
                counters: Box::new(Counters {
                    sent: 5,
                    ..Counters::default()
                }),
                latency: "HISTFAAAAB".into(),
            },
            WorkerLine::Done { incomplete: None },
        ];
        for line in lines {
            assert_eq!(WorkerLine::decode(&line.encode()), Some(line));
        }
        assert_eq!(WorkerLine::decode("listening 127.0.0.1:1"), None);
        assert_eq!(parse_release(&release_line(42)), Some(42));
        assert_eq!(parse_release("stop 42"), None);
    }
}
