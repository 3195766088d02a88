//! `segment.json`: what one segment of a split run leaves for the merge, beside its own
//! five report files.
//!
//! The merge must produce the report one process would have: counts summed, latency
//! histograms added interval by interval, and loss judged over the whole population — a
//! receiver in one segment expects every message of every sender in every segment. So a
//! segment writes down, besides its counters and histograms, exactly what the delivery
//! check ([`crate::checks::delivery`]) needs: for each of its senders, when each message
//! actually left (and which were unjudged because the server cut the sender), and for each
//! of its users' sessions, its loss window and, per sender, the received sequence numbers
//! as a range minus holes (two numbers per sender for a correct server). Times are on the
//! split run's common clock (ns since the Unix epoch).
//!
//! Reading checks everything a merge relies on (format, histograms, sequence ranges,
//! senders belonging to the segment), so a damaged or foreign file is refused with its
//! path and reason, never half-merged.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::checks::delivery::{ReceivedSet, SentLog, SeqRange, SessionLedger};
use crate::record::{histogram_from_text, histogram_text, ClosedInterval, ConnectTimes, Counters};
use crate::report::{LoadgenResources, RunSetup};
use crate::run::IntervalTexts;
use crate::run::{Completion, RunOutput};
use crate::segment::Segment;

/// The file's name in a segment's report folder.
pub const SEGMENT_JSON: &str = "segment.json";

/// The `format` of the files this version writes and reads.
pub const FORMAT: &str = "loadgen-segment/1";

/// One segment's record for the merge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegmentFile {
    pub format: String,
    pub segment: Segment,
    pub run_id: u32,
    /// What ran and where (the scenario as run is the same in every segment of a run).
    #[serde(flatten)]
    pub setup: RunSetup,
    /// The common start of the measured phases (ns since the Unix epoch).
    pub measure_start_ns: u64,
    pub started_at_unix_ns: u64,
    pub ended_at_unix_ns: u64,
    pub ramp_s: f64,
    /// Why this segment stopped early, if it did.
    pub incomplete: Option<String>,
    /// Its own totals (loss here counts only its own senders; the merge recounts it).
    pub totals: Counters,
    pub intervals: Vec<IntervalEntry>,
    /// Its users' latency over the judged intervals (after the warm-up), µs.
    pub latency: String,
    /// Its users' login times over the whole run, the ramp included (TCP, TLS, upgrade,
    /// token mint).
    #[serde(default)]
    pub connect: Vec<String>,
    pub lag_send: String,
    pub lag_timer: String,
    pub probes_sent: u64,
    pub server_deliveries_out: Option<u64>,
    /// Per segment of the run: the least one-way latency (ns) of a message from its
    /// senders to this segment's users.
    pub least_latency_from: Vec<Option<u64>>,
    pub start_late_ns: u64,
    /// This segment's loadgen process: CPU and peak memory.
    pub loadgen_resources: LoadgenResources,
    pub senders: Vec<SenderEntry>,
    pub sessions: Vec<SessionEntry>,
}

/// One interval of a segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntervalEntry {
    pub start_s: f64,
    pub length_s: f64,
    pub users_online: u64,
    pub counters: Counters,
    pub latency: String,
    /// Login times of the interval (TCP, TLS, upgrade, mint; histogram text), when any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Vec<String>>,
}

/// What one sender sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SenderEntry {
    pub sender: u32,
    /// Send time of sequence `k + 1` at `k`.
    pub times: Vec<u64>,
    pub unjudged: Vec<SeqRange>,
}

/// One finished session of a user of the segment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionEntry {
    pub user: u32,
    pub expect_from_ns: Option<u64>,
    pub stable_until_ns: u64,
    /// Per sender: `[sender, first, last, holes]`.
    pub received: Vec<(u32, u64, u64, Vec<SeqRange>)>,
}

/// Why a segment file cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum SegmentFileError {
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a segment file: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The wall-clock time of `ns` since the Unix epoch.
pub fn system_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

impl SegmentFile {
    /// What a segment run leaves for the merge.
    pub fn of(output: &RunOutput) -> SegmentFile {
        let report = &output.report;
        let segment = output.segment;
        SegmentFile {
            format: FORMAT.to_string(),
            segment,
            run_id: output.run_id,
            setup: report.setup.clone(),
            measure_start_ns: output.measure_start_ns,
            started_at_unix_ns: unix_ns(report.started_at),
            ended_at_unix_ns: unix_ns(report.ended_at),
            ramp_s: report.ramp.as_secs_f64(),
            incomplete: match &output.completion {
                Completion::Complete => None,
                Completion::Incomplete(why) => Some(why.clone()),
            },
            totals: report.totals,
            intervals: report
                .intervals
                .iter()
                .zip(
                    output
                        .interval_texts
                        .iter()
                        .chain(std::iter::repeat(&IntervalTexts::default())),
                )
                .map(|(i, texts)| IntervalEntry {
                    start_s: i.start_s,
                    length_s: i.length_s,
                    users_online: i.users_online,
                    counters: i.counters,
                    latency: texts.latency.clone(),
                    connect: texts.connect.clone(),
                })
                .collect(),
            connect: report.connect.to_text(),
            latency: histogram_text(&report.latency),
            lag_send: histogram_text(&output.lag.0),
            lag_timer: histogram_text(&output.lag.1),
            probes_sent: report.probes_sent,
            server_deliveries_out: report.server_deliveries_out,
            least_latency_from: output.least_latency_from.clone(),
            start_late_ns: output.start_late_ns,
            loadgen_resources: report.loadgen_resources,
            senders: output
                .sent
                .iter()
                .enumerate()
                .filter(|(sender, _)| segment.owns(*sender as u32))
                .map(|(sender, log)| SenderEntry {
                    sender: sender as u32,
                    times: log.times.clone(),
                    unjudged: log.unjudged.clone(),
                })
                .collect(),
            sessions: output
                .ledgers
                .iter()
                .map(|ledger| {
                    let mut received: Vec<_> = ledger
                        .received
                        .iter()
                        .filter_map(|(&sender, set)| {
                            let ((first, last), holes) = set.parts()?;
                            Some((sender, first, last, holes.to_vec()))
                        })
                        .collect();
                    received.sort_by_key(|r| r.0);
                    SessionEntry {
                        user: ledger.user,
                        expect_from_ns: ledger.expect_from_ns,
                        stable_until_ns: ledger.stable_until_ns,
                        received,
                    }
                })
                .collect(),
        }
    }

    /// Writes `dir/segment.json`.
    pub fn write(&self, dir: &Path) -> Result<(), SegmentFileError> {
        let path = dir.join(SEGMENT_JSON);
        let text = serde_json::to_vec(self).map_err(|e| SegmentFileError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(&path, text).map_err(|source| SegmentFileError::Write { path, source })
    }

    /// Reads `dir/segment.json` (or the file itself when `path` is a file) and checks it.
    pub fn read(path: &Path) -> Result<SegmentFile, SegmentFileError> {
        let path = if path.is_dir() {
            path.join(SEGMENT_JSON)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read(&path).map_err(|source| SegmentFileError::Read {
            path: path.clone(),
            source,
        })?;
        let invalid = |reason: String| SegmentFileError::Invalid {
            path: path.clone(),
            reason,
        };
        let file: SegmentFile =
            serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
        file.check().map_err(invalid)?;
        Ok(file)
    }

    /// Everything the merge relies on, or what is wrong.
    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format {:?}, this loadgen reads {FORMAT:?}",
                self.format
            ));
        }
        let s = self.segment;
        if s.count == 0 || s.index >= s.count {
            return Err(format!("segment {s} does not exist"));
        }
        let histograms = std::iter::once(&self.latency)
            .chain([&self.lag_send, &self.lag_timer])
            .chain(self.intervals.iter().map(|i| &i.latency));
        if histograms
            .into_iter()
            .any(|h| histogram_from_text(h).is_none())
        {
            return Err("a latency histogram does not decode".into());
        }
        let connects = std::iter::once(&self.connect)
            .chain(self.intervals.iter().filter_map(|i| i.connect.as_ref()));
        if connects
            .into_iter()
            .any(|c| ConnectTimes::from_text(c).is_none())
        {
            return Err("a login time histogram does not decode".into());
        }
        for sender in &self.senders {
            if !s.owns(sender.sender) {
                return Err(format!("sender {} is not segment {s}'s", sender.sender));
            }
            if sender.times.windows(2).any(|w| w[0] > w[1]) {
                return Err(format!("sender {}'s send times go back", sender.sender));
            }
        }
        for session in &self.sessions {
            if !s.owns(session.user) {
                return Err(format!("user {} is not segment {s}'s", session.user));
            }
            for (sender, first, last, holes) in &session.received {
                if ReceivedSet::from_parts((*first, *last), holes.clone()).is_none() {
                    return Err(format!(
                        "user {}'s receipts from {sender} are not a range minus holes",
                        session.user
                    ));
                }
            }
        }
        Ok(())
    }

    /// Interval `k`, its histograms decoded (checked on reading); `None` past the last.
    pub fn interval(&self, k: usize) -> Option<ClosedInterval> {
        self.intervals.get(k).map(|i| ClosedInterval {
            start_s: i.start_s,
            length_s: i.length_s,
            users_online: i.users_online,
            counters: i.counters,
            latency: histogram_from_text(&i.latency).unwrap_or_else(crate::record::new_histogram),
            connect: i
                .connect
                .as_ref()
                .and_then(|texts| ConnectTimes::from_text(texts))
                .map(Box::new),
        })
    }

    /// A histogram field, decoded (checked on reading).
    pub fn histogram(text: &str) -> Histogram<u64> {
        histogram_from_text(text).unwrap_or_else(crate::record::new_histogram)
    }

    /// The sessions as ledgers for the loss tally.
    pub fn ledgers(&self) -> impl Iterator<Item = SessionLedger> + '_ {
        self.sessions.iter().map(|session| SessionLedger {
            user: session.user,
            expect_from_ns: session.expect_from_ns,
            stable_until_ns: session.stable_until_ns,
            received: session
                .received
                .iter()
                .filter_map(|(sender, first, last, holes)| {
                    Some((
                        *sender,
                        ReceivedSet::from_parts((*first, *last), holes.clone())?,
                    ))
                })
                .collect(),
        })
    }

    /// The senders' logs.
    pub fn sent_logs(&self) -> impl Iterator<Item = (u32, SentLog)> + '_ {
        self.senders.iter().map(|s| {
            (
                s.sender,
                SentLog {
                    times: s.times.clone(),
                    unjudged: s.unjudged.clone(),
                },
            )
        })
    }
}
