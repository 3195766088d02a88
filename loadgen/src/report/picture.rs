//! What a run's page shows ([`RunPicture`]): the verdict, the setup, the figures, the
//! thresholds, and one compact row per interval for the charts over time.
//!
//! A picture is small on purpose: an interval's full latency histogram is ~180 KB, its
//! row a few hundred bytes, so the live view ([`super::live`]) can copy its picture for
//! every page it serves without holding up the run. The final page is drawn from the
//! picture of the finished report, so the live and final pages are the same page.

use hdrhistogram::Histogram;

use super::run_report::{RunReport, SegmentsInfo};
use super::table::{placement, result_line, summary_rows};
use crate::clock;
use crate::duration;
use crate::memory::ResourceSample;
use crate::page::format::number;
use crate::page::html::Tone;
use crate::record::{new_histogram, Counters, IntervalRecord};
use crate::thresholds::ThresholdVerdict;

/// One interval's figures, as plotted.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalFigures {
    /// Seconds after the measured start that the interval began.
    pub start_s: f64,
    pub length_s: f64,
    pub users_online: u64,
    pub counters: Counters,
    /// p50, p90, p99 and max latency in ms; `None` without deliveries.
    pub latency_ms: Option<[f64; 4]>,
}

impl IntervalFigures {
    /// The figures of one interval record.
    pub fn of(record: &IntervalRecord) -> IntervalFigures {
        let [p50, p90, p99, _, max, _] = record.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        IntervalFigures {
            start_s: record.start_s,
            length_s: record.length_s,
            users_online: record.users_online,
            counters: record.counters,
            latency_ms: (!record.no_deliveries()).then(|| [ms(p50), ms(p90), ms(p99), ms(max)]),
        }
    }

    /// Where the interval ends, in seconds after the measured start (`elapsed_s` in
    /// `timeseries.csv`).
    pub fn end_s(&self) -> f64 {
        self.start_s + self.length_s
    }
}

/// A phase of the scenario on the run's time axis.
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseSpan {
    pub name: String,
    pub from_s: f64,
    pub to_s: f64,
}

/// Everything a run's page shows.
#[derive(Debug, Clone)]
pub struct RunPicture {
    /// The scenario's name.
    pub name: String,
    /// The verdict in words.
    pub headline: String,
    pub tone: Tone,
    /// Label/value rows: scenario, server, targets, users, phases, machine, revision.
    pub setup: Vec<(&'static str, String)>,
    /// Label/value rows of the figures, as the summary on stdout has them.
    pub figures: Vec<(&'static str, String)>,
    pub verdicts: Vec<ThresholdVerdict>,
    /// Said above the thresholds table (a live view judges only what it has seen).
    pub thresholds_note: Option<String>,
    pub phases: Vec<PhaseSpan>,
    pub warmup_s: f64,
    /// The p99 threshold, if the scenario has one.
    pub p99_limit_ms: Option<f64>,
    pub rows: Vec<IntervalFigures>,
    /// Latency after the warm-up, in µs.
    pub latency: Histogram<u64>,
    /// loadgen's and the server's memory and CPU through the run (none in a live view).
    pub memory: Vec<ResourceSample>,
    pub footer: String,
    /// Seconds between reloads of a live page; `None` for a finished run.
    pub refresh: Option<u32>,
}

impl RunPicture {
    /// The picture of a finished (or stopped) run.
    pub fn of(report: &RunReport, verdicts: &[ThresholdVerdict]) -> RunPicture {
        let failed: Vec<&ThresholdVerdict> = verdicts.iter().filter(|v| !v.passed).collect();
        let result = result_line(report, verdicts);
        let part = match &report.segments {
            Some(SegmentsInfo::Part { segment, .. }) => Some(*segment),
            _ => None,
        };
        let (headline, tone) = match (&report.incomplete, failed.is_empty()) {
            (Some(_), _) => (result, Tone::Pending),
            (None, _) if part.is_some() => (
                format!(
                    "Segment {} of a split run: its thresholds are judged on the merged run \
                     (loadgen merge)",
                    part.map(|s| s.to_string()).unwrap_or_default()
                ),
                Tone::Neutral,
            ),
            (None, true) => (format!("{result}: every threshold held"), Tone::Pass),
            (None, false) => {
                let names: Vec<&str> = failed.iter().map(|v| v.name.as_str()).collect();
                (format!("{result}: {}", names.join(", ")), Tone::Fail)
            }
        };
        let mut picture = RunPicture::header(report);
        picture.headline = headline;
        picture.tone = tone;
        picture.figures = summary_rows(report);
        picture.verdicts = verdicts.to_vec();
        picture.rows = report.intervals.iter().map(IntervalFigures::of).collect();
        picture.latency = report.latency.clone();
        picture.memory = report.resources_over_time.clone();
        picture
    }

    /// What a report says before any interval closed: the setup, phases and limits; no
    /// figures, no verdict (the caller says what is going on).
    pub fn header(report: &RunReport) -> RunPicture {
        RunPicture {
            name: report.setup.scenario_name.clone(),
            headline: String::new(),
            tone: Tone::Pending,
            setup: setup_rows(report),
            figures: Vec::new(),
            verdicts: Vec::new(),
            thresholds_note: None,
            phases: phases(&report.setup.scenario),
            warmup_s: seconds(report.setup.scenario.get("warmup")).unwrap_or(0.0),
            p99_limit_ms: report
                .thresholds
                .p99
                .map(|limit| limit.0.as_secs_f64() * 1000.0),
            rows: Vec::new(),
            latency: new_histogram(),
            memory: Vec::new(),
            footer: format!(
                "Written by loadgen {} from {}.",
                report.setup.loadgen_version, report.setup.scenario_path
            ),
            refresh: None,
        }
    }

    /// Seconds of phases planned.
    pub fn planned_s(&self) -> f64 {
        self.phases.last().map_or(0.0, |p| p.to_s)
    }
}

/// The setup of a run in label/value rows.
fn setup_rows(report: &RunReport) -> Vec<(&'static str, String)> {
    let scenario = &report.setup.scenario;
    let mut rows = vec![(
        "Scenario",
        format!(
            "{} ({})",
            report.setup.scenario_name, report.setup.scenario_path
        ),
    )];
    if let Some(description) = scenario.get("description").and_then(|d| d.as_str()) {
        rows.push(("Description", description.to_string()));
    }
    rows.push(("Server", placement(&report.setup.server)));
    rows.push(("Targets", report.setup.targets.join(", ")));
    if let Some(tls) = super::table::tls_line(report) {
        rows.push(("TLS", tls));
    }
    let users = scenario
        .pointer("/users/count")
        .and_then(serde_json::Value::as_u64)
        .map_or_else(|| "?".to_string(), |n| number(n as f64, 0));
    rows.push((
        "Users",
        format!(
            "{users}, connected in {} s before the measured phases",
            number(report.ramp.as_secs_f64(), 2)
        ),
    ));
    rows.push(("Phases", phases_text(scenario)));
    if let Some(headers) = scenario
        .pointer("/users/headers")
        .and_then(|h| h.as_object())
    {
        // Secret values are masked in the scenario as run (`crate::headers`).
        let shown: Vec<String> = headers
            .iter()
            .map(|(name, value)| {
                let value = value
                    .as_str()
                    .or_else(|| value.get("value").and_then(|v| v.as_str()))
                    .unwrap_or("?");
                format!("{name}: {value}")
            })
            .collect();
        rows.push(("Login headers", shown.join("; ")));
    }
    rows.push((
        "Warm-up",
        match scenario.get("warmup").and_then(|w| w.as_str()) {
            Some(w) => format!("{w}: shaded in the charts, not judged"),
            None => "none: every interval is judged".to_string(),
        },
    ));
    rows.push(("Machine", machine_text(report)));
    rows.push((
        "Machine speed",
        match &report.calibration {
            Some(calibration) => calibration.line(),
            None if report.segments.is_some() => {
                "not calibrated (a segment or a merge: the run's coordinator calibrates)".into()
            }
            None => "not calibrated (--calibration off)".into(),
        },
    ));
    if let Some(segments) = &report.segments {
        rows.push((
            "Split",
            match segments {
                SegmentsInfo::Part { segment, .. } => format!("segment {segment} of a split run"),
                SegmentsInfo::Merged { count, merged, .. } => {
                    format!("{} of {count} segments merged", merged.len())
                }
            },
        ));
    }
    rows.push((
        "loadgen",
        format!(
            "{} at git revision {}",
            report.setup.loadgen_version,
            report.setup.git_revision.as_deref().unwrap_or("unknown")
        ),
    ));
    rows.push((
        "Measured",
        format!(
            "from {} to {}",
            clock::rfc3339(report.started_at),
            clock::rfc3339(report.ended_at)
        ),
    ));
    rows
}

/// The machine in words. Memory and CPU model are this machine's, so they are given only
/// for a report written by the process that ran (a merge may run elsewhere).
fn machine_text(report: &RunReport) -> String {
    let mut text = format!("{} logical CPUs", report.setup.cores);
    if matches!(report.segments, Some(SegmentsInfo::Merged { .. })) {
        return text + " (segment 0's)";
    }
    if let Some(bytes) = crate::resources::memory_total() {
        text += &format!(
            ", {} GiB memory",
            number(bytes as f64 / (1u64 << 30) as f64, 1)
        );
    }
    if let Some(model) = cpu_model() {
        text += &format!(", {model}");
    }
    text
}

/// `model name` of the first CPU in `/proc/cpuinfo`, if there is one.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
        .filter(|model| !model.is_empty())
}

/// The phases of the scenario (JSON as run) laid end to end from 0 s.
pub fn phases(scenario: &serde_json::Value) -> Vec<PhaseSpan> {
    let mut spans = Vec::new();
    let mut at = 0.0;
    for (i, phase) in scenario
        .get("phase")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(length) = seconds(phase.get("duration")) else {
            break;
        };
        let name = phase
            .get("name")
            .and_then(|n| n.as_str())
            .map_or_else(|| format!("phase {}", i + 1), str::to_string);
        spans.push(PhaseSpan {
            name,
            from_s: at,
            to_s: at + length,
        });
        at += length;
    }
    spans
}

/// Each phase in words: its name, length and what it offers.
fn phases_text(scenario: &serde_json::Value) -> String {
    let Some(phases) = scenario.get("phase").and_then(|p| p.as_array()) else {
        return "?".to_string();
    };
    let texts: Vec<String> = phases
        .iter()
        .enumerate()
        .map(|(i, phase)| {
            let name = phase
                .get("name")
                .and_then(|n| n.as_str())
                .map_or_else(|| format!("phase {}", i + 1), str::to_string);
            let length = phase
                .get("duration")
                .and_then(|d| d.as_str())
                .unwrap_or("?");
            let rate = |key: &str| phase.get(key).and_then(|r| r.as_f64()).filter(|r| *r > 0.0);
            let mut offers = Vec::new();
            if let Some(r) = rate("rate") {
                offers.push(format!("{} msg/s", number(r, 1)));
            }
            if let Some(r) = rate("per_sender_rate") {
                offers.push(format!("{} msg/s per sender", number(r, 2)));
            }
            if let Some(n) = phase.get("senders").and_then(|n| n.as_u64()) {
                offers.push(format!("{n} senders"));
            }
            if let Some(r) = rate("relogin_rate") {
                offers.push(format!("{} relogins/s", number(r, 1)));
            }
            if let Some(r) = rate("churn_rate") {
                offers.push(format!("{} churns/s", number(r, 1)));
            }
            if offers.is_empty() {
                offers.push("idle".into());
            }
            format!("{name} {length} ({})", offers.join(", "))
        })
        .collect();
    texts.join("; ")
}

/// A duration given as text in the scenario JSON, in seconds.
fn seconds(text: Option<&serde_json::Value>) -> Option<f64> {
    let text = text?.as_str()?;
    duration::parse(text).ok().map(|d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn a_failed_run_names_its_failed_thresholds_and_keeps_every_interval() {
        let report = sample();
        let verdicts = report.verdicts();
        let picture = RunPicture::of(&report, &verdicts);
        assert_eq!(picture.tone, Tone::Fail);
        assert!(
            picture.headline.starts_with("FAIL ("),
            "{}",
            picture.headline
        );
        for failed in verdicts.iter().filter(|v| !v.passed) {
            assert!(
                picture.headline.contains(&failed.name),
                "{}",
                picture.headline
            );
        }
        assert_eq!(picture.rows.len(), report.intervals.len());
        assert_eq!(picture.rows[3].latency_ms, None, "an empty interval");
        assert_eq!(picture.rows[0].counters, report.intervals[0].counters);
        assert_eq!(
            picture.phases,
            [
                PhaseSpan {
                    name: "phase 1".into(),
                    from_s: 0.0,
                    to_s: 2.0
                },
                PhaseSpan {
                    name: "phase 2".into(),
                    from_s: 2.0,
                    to_s: 3.0
                },
            ]
        );
        assert_eq!(picture.latency.len(), report.latency.len());
        let setup: Vec<&str> = picture.setup.iter().map(|(label, _)| *label).collect();
        for label in [
            "Scenario", "Server", "Targets", "Users", "Phases", "Warm-up", "Machine", "loadgen",
        ] {
            assert!(setup.contains(&label), "{label} in {setup:?}");
        }
    }

    #[test]
    fn an_incomplete_run_says_why_and_a_clean_one_passes() {
        let mut report = sample();
        report.incomplete = Some("interrupted (Ctrl-C)".into());
        let picture = RunPicture::of(&report, &report.verdicts());
        assert_eq!(picture.tone, Tone::Pending);
        assert!(
            picture.headline.contains("INCOMPLETE: interrupted"),
            "{}",
            picture.headline
        );
        report.incomplete = None;
        let passed: Vec<ThresholdVerdict> = report
            .verdicts()
            .into_iter()
            .map(|v| ThresholdVerdict { passed: true, ..v })
            .collect();
        let picture = RunPicture::of(&report, &passed);
        assert_eq!(picture.tone, Tone::Pass);
        assert!(picture.headline.starts_with("PASS"), "{}", picture.headline);
    }
}
