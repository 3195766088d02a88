//! The merge of a split run: the segments' [`SegmentFile`]s in, one [`RunReport`] out,
//! exactly as one process would have reported the run.
//!
//! - Counts are summed, interval by interval (interval `k` of every segment covers the
//!   same second: all start measuring at the common start).
//! - Latency histograms are added (HdrHistogram add, never averaged percentiles).
//! - Loss, expected and unverified deliveries are counted again over the whole population:
//!   every segment's sessions against every segment's senders, by the same delivery check
//!   a single process runs. A missing segment's messages cannot be judged: what its
//!   senders delivered is unverified, and the report is incomplete and says which segment.
//! - loadgen's lag histograms are added too; probes and server deliveries are summed or
//!   taken from the latest scrape.
//!
//! Thresholds are judged on the merged report only, by the caller.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::checks::delivery::{tally_loss, SentLog};
use crate::lag::LoadgenLag;
use crate::record::{new_histogram, ClosedInterval, ConnectTimes, Counters, IntervalRecord};
use crate::report::hlog::LatencyLog;
use crate::report::{LoadgenResources, RunReport, SegmentProblem, SegmentsInfo};
use crate::run::Completion;
use crate::scenario::Scenario;

use super::file::{system_time, SegmentFile};

/// Why segment files cannot be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge")]
    Empty,
    #[error("segment {index} appears twice ({first} and {second})")]
    Duplicate {
        index: u32,
        first: String,
        second: String,
    },
    #[error("{what} differs between {a} and {b}: these are not segments of one run")]
    Mismatch {
        what: &'static str,
        a: String,
        b: String,
    },
    #[error("the scenario in {path} cannot be read back: {reason}")]
    Scenario { path: String, reason: String },
}

/// Segment files with where they came from (for messages).
pub struct Found {
    pub origin: String,
    pub file: SegmentFile,
}

/// Merges the segments of one run. `problems` lists segments already known to be missing
/// or broken (e.g. a worker that died); segments absent from `found` are added as
/// missing.
pub fn merge(
    found: Vec<Found>,
    mut problems: Vec<SegmentProblem>,
) -> Result<(RunReport, Completion), MergeError> {
    let first = found.first().ok_or(MergeError::Empty)?;
    let count = first.file.segment.count;
    let mut by_index: BTreeMap<u32, &Found> = BTreeMap::new();
    for f in &found {
        let same = |what: &'static str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(MergeError::Mismatch {
                    what,
                    a: first.origin.clone(),
                    b: f.origin.clone(),
                })
            }
        };
        same("the segment count", f.file.segment.count == count)?;
        same(
            "the run id (--start-at)",
            f.file.run_id == first.file.run_id,
        )?;
        same(
            "the start time",
            f.file.measure_start_ns == first.file.measure_start_ns,
        )?;
        same(
            "the scenario",
            f.file.setup.scenario == first.file.setup.scenario,
        )?;
        if let Some(other) = by_index.insert(f.file.segment.index, f) {
            return Err(MergeError::Duplicate {
                index: f.file.segment.index,
                first: other.origin.clone(),
                second: f.origin.clone(),
            });
        }
    }
    let scenario: Scenario =
        serde_json::from_value(first.file.setup.scenario.clone()).map_err(|e| {
            MergeError::Scenario {
                path: first.origin.clone(),
                reason: e.to_string(),
            }
        })?;
    for index in 0..count {
        let known = problems.iter().any(|p| p.index == index);
        match by_index.get(&index) {
            None if !known => problems.push(SegmentProblem {
                index,
                why: "missing (no segment report)".into(),
            }),
            Some(f) => {
                if let (Some(why), false) = (&f.file.incomplete, known) {
                    problems.push(SegmentProblem {
                        index,
                        why: format!("incomplete: {why}"),
                    });
                }
            }
            None => {}
        }
    }
    problems.sort_by_key(|p| p.index);
    let files: Vec<&SegmentFile> = by_index.values().map(|f| &f.file).collect();
    let report = merged_report(&files, &scenario, count, problems);
    let completion = match &report.incomplete {
        None => Completion::Complete,
        Some(why) => Completion::Incomplete(why.clone()),
    };
    Ok((report, completion))
}

fn merged_report(
    files: &[&SegmentFile],
    scenario: &Scenario,
    count: u32,
    problems: Vec<SegmentProblem>,
) -> RunReport {
    let first = files[0];
    let measure_start = first.measure_start_ns;

    // Counts and histograms, interval by interval: each interval of every segment is
    // decoded, merged, logged and dropped before the next (a day of them, decoded at once,
    // would be ~180 KB each). Loss is recounted below.
    let latency_log = LatencyLog::for_a_run();
    let intervals = files.iter().map(|f| f.intervals.len()).max().unwrap_or(0);
    let mut records: Vec<IntervalRecord> = Vec::with_capacity(intervals);
    for k in 0..intervals {
        let mut merged: Option<ClosedInterval> = None;
        for record in files.iter().filter_map(|file| file.interval(k)) {
            let merged = merged.get_or_insert_with(|| ClosedInterval {
                start_s: record.start_s,
                length_s: 0.0,
                users_online: 0,
                counters: Counters::default(),
                latency: new_histogram(),
                connect: None,
            });
            merged.length_s = merged.length_s.max(record.length_s);
            merged.users_online += record.users_online;
            merged.counters.add(&without_loss(record.counters));
            let _ = merged.latency.add(&record.latency);
            if let Some(times) = &record.connect {
                merged.connect.get_or_insert_with(Box::default).add(times);
            }
        }
        if let Some(merged) = merged {
            latency_log.append(&merged);
            records.push(merged.record());
        }
    }
    let mut totals = Counters::default();
    let mut latency = new_histogram();
    let mut connect = ConnectTimes::default();
    let (mut lag_send, mut lag_timer) = (new_histogram(), new_histogram());
    for file in files {
        if let Some(times) = ConnectTimes::from_text(&file.connect) {
            connect.add(&times);
        }
        totals.add(&without_loss(file.totals));
        let _ = latency.add(SegmentFile::histogram(&file.latency));
        let _ = lag_send.add(SegmentFile::histogram(&file.lag_send));
        let _ = lag_timer.add(SegmentFile::histogram(&file.lag_timer));
    }

    // Loss over the whole population: every session against every sender.
    let max_senders = scenario.max_senders() as usize;
    let mut sent = vec![SentLog::default(); max_senders];
    for file in files {
        for (sender, log) in file.sent_logs() {
            if let Some(slot) = sent.get_mut(sender as usize) {
                *slot = log;
            }
        }
    }
    let ledgers: Vec<_> = files.iter().flat_map(|f| f.ledgers()).collect();
    let deadline_ns = scenario.verify.deadline.0.as_nanos() as u64;
    let last_index = records.len().saturating_sub(1);
    let self_delivery = scenario.profile().self_delivery();
    let tally = tally_loss(&ledgers, &sent, deadline_ns, self_delivery, |t| {
        { (t.saturating_sub(measure_start) / 1_000_000_000) as usize }.min(last_index)
    });
    for (k, record) in records.iter_mut().enumerate() {
        record.counters.expected += tally.expected.get(k).copied().unwrap_or(0);
        record.counters.lost += tally.lost.get(k).copied().unwrap_or(0);
        record.counters.unverified += tally.unverified.get(k).copied().unwrap_or(0);
    }
    totals.expected += tally.expected.iter().sum::<u64>();
    totals.lost += tally.lost.iter().sum::<u64>();
    totals.unverified += tally.unverified.iter().sum::<u64>();

    let incomplete = (!problems.is_empty()).then(|| {
        problems
            .iter()
            .map(|p| format!("segment {}/{count} {}", p.index, p.why))
            .collect::<Vec<_>>()
            .join("; ")
    });
    let segments = SegmentsInfo::Merged {
        count,
        merged: files.iter().map(|f| f.segment.index).collect(),
        incomplete: problems,
        clock_offset_worst_ms: clock_offset_worst_ns(files).map(|ns| ns as f64 / 1e6),
        start_late_worst_ms: files.iter().map(|f| f.start_late_ns).max().unwrap_or(0) as f64 / 1e6,
        per_segment: files.iter().map(|f| f.loadgen_resources).collect(),
    };
    let mut loadgen_resources = LoadgenResources {
        processes: 0,
        cpu_seconds: Some(0.0),
        peak_rss_bytes: Some(0),
    };
    for file in files {
        loadgen_resources.add(&file.loadgen_resources);
    }
    RunReport {
        setup: first.setup.clone(),
        started_at: system_time(
            files
                .iter()
                .map(|f| f.started_at_unix_ns)
                .min()
                .unwrap_or(0),
        ),
        ended_at: system_time(files.iter().map(|f| f.ended_at_unix_ns).max().unwrap_or(0)),
        ramp: Duration::from_secs_f64(
            files
                .iter()
                .map(|f| f.ramp_s)
                .fold(0.0, f64::max)
                .clamp(0.0, 1e9),
        ),
        intervals: records,
        latency_log,
        totals,
        latency,
        connect,
        thresholds: scenario.thresholds.clone(),
        incomplete,
        server_deliveries_out: files.iter().filter_map(|f| f.server_deliveries_out).max(),
        loadgen_lag: LoadgenLag::of(&lag_send, &lag_timer),
        probes_sent: files.iter().map(|f| f.probes_sent).sum(),
        sessions_tallied_early: 0,
        segments: Some(segments),
        loadgen_resources,
        resources_over_time: Vec::new(),
        calibration: None,
    }
}

/// Counters without what the merge recounts.
fn without_loss(mut counters: Counters) -> Counters {
    counters.expected = 0;
    counters.lost = 0;
    counters.unverified = 0;
    counters
}

/// The largest clock offset between a segment and segment 0 the stamps reveal: with
/// `least(i <- j)` the least latency segment i saw from j's senders, which is the one-way
/// delay plus (clock i - clock j), the offset of j against 0 is
/// `(least(j <- 0) - least(0 <- j)) / 2` (the delays cancel when they are alike both ways,
/// as NTP assumes).
fn clock_offset_worst_ns(files: &[&SegmentFile]) -> Option<u64> {
    let zero = files.iter().find(|f| f.segment.index == 0)?;
    files
        .iter()
        .filter(|f| f.segment.index != 0)
        .filter_map(|f| {
            let from_zero = (*f.least_latency_from.first()?)?;
            let to_zero = (*zero.least_latency_from.get(f.segment.index as usize)?)?;
            Some(from_zero.abs_diff(to_zero) / 2)
        })
        .max()
}
