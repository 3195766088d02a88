//! The picture of a run while it runs: what the live view ([`crate::dashboard`]) serves.
//!
//! The run loop tells a [`LivePicture`] what happens (logins during the ramp, then each
//! closed interval); a page request copies the picture under the lock and draws it after
//! letting go, so a slow reader never holds up the run. Thresholds are judged on what has
//! been seen so far, and loss, which is only known once each message's delivery window has
//! passed, shows up in the final report.

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

use super::html;
use super::picture::{IntervalFigures, RunPicture};
use super::prometheus;
use super::run_report::RunReport;
use crate::lag::LoadgenLag;
use crate::page::format::{count, number};
use crate::page::html::Tone;
use crate::page::ChartError;
use crate::record::{new_histogram, ClosedInterval, Counters};
use crate::thresholds::Thresholds;

/// Most intervals the live view keeps (two hours of one-second intervals): it charts the
/// latest; `report.html` has the whole run.
pub const LIVE_ROWS: usize = 7200;

/// Seconds between reloads of the live page.
pub const REFRESH_S: u32 = 2;

/// A run's picture so far, shared between the run and the live view.
#[derive(Clone)]
pub struct LivePicture {
    inner: Arc<Mutex<Live>>,
}

struct Live {
    picture: RunPicture,
    thresholds: Thresholds,
    /// Events after the warm-up (what the thresholds judge).
    totals: Counters,
    /// Every event, warm-up included (what `/metrics` counts).
    all: Counters,
    /// The labels of every `/metrics` series.
    labels: Vec<(&'static str, String)>,
    /// loadgen's own lag so far (a run in this process only).
    lag: Option<LoadgenLag>,
    /// Seconds of intervals after the warm-up so far.
    judged_s: f64,
    /// The segment this process plays, in a split run (a `segment` label).
    segment: Option<String>,
}

impl LivePicture {
    /// The picture of a run of `name` that has not started yet.
    pub fn new(name: &str) -> LivePicture {
        let picture = RunPicture {
            name: name.to_string(),
            headline: "Starting".into(),
            tone: Tone::Pending,
            setup: Vec::new(),
            figures: Vec::new(),
            verdicts: Vec::new(),
            thresholds_note: None,
            phases: Vec::new(),
            warmup_s: 0.0,
            p99_limit_ms: None,
            rows: Vec::new(),
            latency: new_histogram(),
            memory: Vec::new(),
            footer: format!("Live view of loadgen {}.", env!("CARGO_PKG_VERSION")),
            refresh: Some(REFRESH_S),
        };
        LivePicture {
            inner: Arc::new(Mutex::new(Live {
                picture,
                thresholds: Thresholds::default(),
                totals: Counters::default(),
                all: Counters::default(),
                labels: vec![("scenario", name.to_string())],
                lag: None,
                judged_s: 0.0,
                segment: None,
            })),
        }
    }

    /// The picture of one segment of a split run: its series carry `segment="I/N"`.
    pub fn in_segment(self, segment: Option<crate::segment::Segment>) -> LivePicture {
        self.with(|live| live.segment = segment.map(|s| s.to_string()));
        self
    }

    /// During the ramp: how many of `users` logged in or failed so far.
    pub fn connecting(&self, connected: u64, failed: u64, users: u64) {
        self.with(|live| {
            live.picture.headline = format!(
                "Connecting: {} of {} users logged in, {} failed",
                count(connected),
                count(users),
                count(failed)
            );
        });
    }

    /// The measured phases begin: `header` is the report so far (setup, phases,
    /// thresholds; no intervals).
    pub fn begin(&self, header: &RunReport) {
        self.with(|live| {
            let refresh = live.picture.refresh;
            live.picture = RunPicture::header(header);
            live.picture.refresh = refresh;
            live.picture.headline = "Running: the first interval has not closed yet".into();
            live.picture.thresholds_note = Some(
                "Judged on the intervals so far (after the warm-up); the final verdict comes \
                 when the run ends."
                    .into(),
            );
            live.thresholds = header.thresholds.clone();
            live.totals = Counters::default();
            live.all = Counters::default();
            live.judged_s = 0.0;
            let scenario = &header.setup.scenario_name;
            live.labels = vec![
                (
                    "run",
                    format!("{scenario}-{}", crate::clock::compact(header.started_at)),
                ),
                ("scenario", scenario.clone()),
            ];
            if let Some(segment) = &live.segment {
                live.labels.push(("segment", segment.clone()));
            }
        });
    }

    /// One more interval closed.
    pub fn tick(&self, closed: &ClosedInterval) {
        let row = IntervalFigures::of(&closed.record());
        self.with(|live| {
            let warmup_s = live.picture.warmup_s;
            if row.start_s + 0.001 >= warmup_s {
                live.totals.add(&row.counters);
                let _ = live.picture.latency.add(&closed.latency);
            }
            if row.start_s + 0.001 >= warmup_s {
                live.judged_s += row.length_s;
            }
            live.all.add(&row.counters);
            live.picture.rows.push(row);
            // A day-long run must not grow the live view: it charts the last rows only.
            let rows = &mut live.picture.rows;
            if rows.len() > LIVE_ROWS {
                rows.drain(..rows.len() - LIVE_ROWS);
            }
            let picture = &mut live.picture;
            picture.verdicts = crate::thresholds::evaluate(
                &live.thresholds,
                &live.totals,
                &picture.latency,
                live.judged_s.max(1e-3),
            );
            let elapsed = picture.rows.last().map_or(0.0, IntervalFigures::end_s);
            let phase = picture
                .phases
                .iter()
                .find(|p| elapsed <= p.to_s + 1e-6)
                .map_or("wind-down", |p| p.name.as_str());
            let failed: Vec<&str> = picture
                .verdicts
                .iter()
                .filter(|v| !v.passed)
                .map(|v| v.name.as_str())
                .collect();
            let so_far = if failed.is_empty() {
                "every threshold holds so far".to_string()
            } else {
                format!("failing so far: {}", failed.join(", "))
            };
            picture.headline = format!(
                "Running: {phase}, {} s of {} s; {so_far}",
                number(elapsed, 0),
                number(picture.planned_s(), 0)
            );
            picture.tone = if failed.is_empty() {
                Tone::Pending
            } else {
                Tone::Fail
            };
            picture.figures = so_far_rows(&live.all, &picture.rows, &picture.latency);
        });
    }

    /// loadgen's own lag so far.
    pub fn lag(&self, lag: LoadgenLag) {
        self.with(|live| live.lag = Some(lag));
    }

    /// Whether the measured phases have begun ([`LivePicture::begin`]): only then do the
    /// figures carry the run's `run` label.
    pub fn has_begun(&self) -> bool {
        self.with(|live| live.labels.iter().any(|(name, _)| *name == "run"))
    }

    /// The run ended: the figures become the final report's (loss known, the wind-down's
    /// deliveries and the ramp's logins counted), so that a last push of [`Self::metrics`]
    /// says what `summary.json` says.
    pub fn conclude(&self, report: &RunReport) {
        self.with(|live| {
            live.all = report.totals;
            live.lag = Some(report.loadgen_lag);
            live.picture.latency = report.latency.clone();
            live.picture.rows = report.intervals.iter().map(IntervalFigures::of).collect();
        });
    }

    /// The picture as it is now.
    pub fn snapshot(&self) -> RunPicture {
        match self.inner.lock() {
            Ok(live) => live.picture.clone(),
            Err(poisoned) => poisoned.into_inner().picture.clone(),
        }
    }

    /// The page as it is now.
    pub fn page(&self) -> Result<String, ChartError> {
        html::page(&self.snapshot())
    }

    /// The figures so far in Prometheus' text format ([`prometheus`]).
    pub fn metrics(&self) -> String {
        self.with(|live| {
            let rows = &live.picture.rows;
            prometheus::exposition(&prometheus::LiveFigures {
                labels: &live.labels,
                totals: &live.all,
                users_online: rows.last().map_or(0, |r| r.users_online),
                latency: &live.picture.latency,
                elapsed_s: rows.last().map_or(0.0, IntervalFigures::end_s),
                lag: live.lag.as_ref(),
            })
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Live) -> T) -> T {
        let mut live = match self.inner.lock() {
            Ok(live) => live,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut live)
    }
}

/// The figures a live page lists: what every interval so far adds up to.
fn so_far_rows(
    all: &Counters,
    rows: &[IntervalFigures],
    latency: &Histogram<u64>,
) -> Vec<(&'static str, String)> {
    let t = all;
    let online = rows.last().map_or(0, |r| r.users_online);
    let ms = |q: f64| number(latency.value_at_quantile(q) as f64 / 1000.0, 3);
    vec![
        ("users online", count(online)),
        ("sent", count(t.sent)),
        ("delivered", count(t.delivered)),
        (
            "latency ms",
            if latency.is_empty() {
                "no deliveries yet".into()
            } else {
                format!(
                    "p50 {}  p90 {}  p99 {}  max {}  ({} samples after the warm-up)",
                    ms(0.5),
                    ms(0.9),
                    ms(0.99),
                    number(latency.max() as f64 / 1000.0, 3),
                    count(latency.len())
                )
            },
        ),
        (
            "errors",
            format!(
                "connect {}, unexpected disconnects {}, duplicates {}, order {}, foreign {}, self {}",
                t.connect_errors,
                t.unexpected_disconnects,
                t.duplicates,
                t.order_errors,
                t.foreign,
                t.self_deliveries
            ),
        ),
        (
            "evictions",
            format!(
                "{} relogins: ok {}, failed {}",
                t.relogins,
                t.evictions_ok,
                t.eviction_failures()
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    #[test]
    fn the_live_page_follows_the_run_and_reloads_itself() {
        let report = sample();
        let live = LivePicture::new("smoke");
        live.connecting(3, 1, 10);
        assert!(live.snapshot().headline.contains("3 of 10 users"));
        let mut header = report.clone();
        header.intervals.clear();
        live.begin(&header);
        for closed in &crate::report::tests::sample_closed()[..2] {
            live.tick(closed);
        }
        let picture = live.snapshot();
        assert_eq!(picture.rows.len(), 2);
        assert_eq!(picture.latency.len(), 200);
        assert!(
            picture.headline.starts_with("Running: phase 1, 2 s of 3 s"),
            "{}",
            picture.headline
        );
        assert!(!picture.verdicts.is_empty());
        let page = live.page().unwrap();
        let doc = crate::page::html::tests::parse(&page);
        let refresh = crate::page::html::tests::elements(&doc, "meta")
            .find(|m| m.attribute("http-equiv") == Some("refresh"))
            .and_then(|m| m.attribute("content"));
        assert_eq!(refresh, Some("2"));
        crate::page::html::tests::assert_fetches_nothing(&page);
    }

    #[test]
    fn once_concluded_the_figures_are_the_final_reports() {
        use crate::scrape::parse_value;
        let report = sample();
        let live = LivePicture::new("smoke");
        assert!(!live.has_begun());
        let mut header = report.clone();
        header.intervals.clear();
        live.begin(&header);
        assert!(live.has_begun());
        live.tick(&crate::report::tests::sample_closed()[0]);
        let before = live.metrics();
        assert_eq!(parse_value(&before, "loadgen_sent_total"), Some(10.0));
        assert_eq!(parse_value(&before, "loadgen_lost_total"), Some(0.0));
        live.conclude(&report);
        let after = live.metrics();
        let total = |name: &str| parse_value(&after, name);
        assert_eq!(total("loadgen_sent_total"), Some(report.totals.sent as f64));
        assert_eq!(
            total("loadgen_delivered_total"),
            Some(report.totals.delivered as f64)
        );
        assert_eq!(total("loadgen_lost_total"), Some(report.totals.lost as f64));
        assert_eq!(
            total("loadgen_latency_seconds_count"),
            Some(report.latency.len() as f64)
        );
        assert!(live.has_begun());
    }

    #[test]
    fn a_long_run_keeps_the_live_view_bounded_and_its_totals_whole() {
        let report = sample();
        let live = LivePicture::new("smoke");
        let mut header = report.clone();
        header.intervals.clear();
        live.begin(&header);
        let mut closed = crate::report::tests::sample_closed()[0].clone();
        for second in 0..LIVE_ROWS + 100 {
            closed.start_s = second as f64;
            live.tick(&closed);
        }
        let picture = live.snapshot();
        assert_eq!(picture.rows.len(), LIVE_ROWS);
        assert_eq!(picture.rows[0].start_s, 100.0, "the oldest rows went");
        let sent = picture
            .figures
            .iter()
            .find(|(label, _)| *label == "sent")
            .map(|(_, v)| v.replace(',', ""))
            .unwrap();
        let expected = (LIVE_ROWS as u64 + 100) * closed.counters.sent;
        assert_eq!(
            sent,
            expected.to_string(),
            "the totals count every interval"
        );
        assert!(live.metrics().contains("loadgen_sent_total{run="));
    }

    #[test]
    fn a_segments_series_say_which_segment() {
        let report = sample();
        let segment = "1/3".parse::<crate::segment::Segment>().unwrap();
        let live = LivePicture::new("smoke").in_segment(Some(segment));
        let mut header = report.clone();
        header.intervals.clear();
        live.begin(&header);
        live.tick(&crate::report::tests::sample_closed()[0]);
        let text = live.metrics();
        assert!(text.contains(",segment=\"1/3\"} "), "{text}");
        let whole = LivePicture::new("smoke");
        whole.begin(&header);
        assert!(!whole.metrics().contains("segment="));
    }
}
