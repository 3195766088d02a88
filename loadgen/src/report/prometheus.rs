//! A run's figures so far in Prometheus' text format (0.0.4): `GET /metrics` on the
//! `--metrics` and `--dashboard` addresses while the run lasts, so that a Prometheus that
//! scrapes the server's own `/metrics` has the load beside it.
//!
//! Every series carries the labels `run` (`<scenario>-<UTC start>`, as the report
//! folder is named) and `scenario`. Each event counter of the run is
//! `loadgen_<counter>_total`, warm-up included (Prometheus takes rates itself). Loss is
//! known only once each message's delivery window has passed, which the live figures do
//! not wait for: `loadgen_lost_total` stays 0 until the final report says it.

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::lag::LoadgenLag;
use crate::record::Counters;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of the latency histogram's buckets.
const BUCKETS_S: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// What the exposition shows.
pub struct LiveFigures<'a> {
    /// `(name, value)` label pairs of every series.
    pub labels: &'a [(&'static str, String)],
    /// Every event so far.
    pub totals: &'a Counters,
    pub users_online: u64,
    /// Delivery latency after the warm-up, in µs.
    pub latency: &'a Histogram<u64>,
    /// Seconds of measured run so far.
    pub elapsed_s: f64,
    /// loadgen's own lag so far, when this process measures it (not a coordinator of
    /// workers).
    pub lag: Option<&'a LoadgenLag>,
}

/// The exposition text.
pub fn exposition(figures: &LiveFigures<'_>) -> String {
    let labels = label_text(figures.labels);
    let mut out = String::new();
    let gauges = [
        (
            "loadgen_users_online",
            "Simulated users with a session online at the end of the last interval.",
            figures.users_online.to_string(),
        ),
        (
            "loadgen_elapsed_seconds",
            "Seconds since the measured start, at the end of the last interval.",
            number(figures.elapsed_s),
        ),
    ];
    let lag_gauges = figures.lag.map(|lag| {
        let s = |us: u64| number(us as f64 / 1e6);
        [
            (
                "loadgen_send_lag_p99_seconds",
                "p99 of how late loadgen's sends left against their open-model schedule, so far.",
                s(lag.send.p99),
            ),
            (
                "loadgen_send_lag_max_seconds",
                "The latest any send left against its schedule, so far.",
                s(lag.send.max),
            ),
            (
                "loadgen_timer_lag_p99_seconds",
                "p99 of how late loadgen's 10 ms heartbeat woke, so far: when high, everything loadgen reads is read late.",
                s(lag.timer.p99),
            ),
            (
                "loadgen_timer_lag_max_seconds",
                "The latest loadgen's heartbeat woke, so far.",
                s(lag.timer.max),
            ),
            (
                "loadgen_saturated",
                "1 when either lag p99 is above 10 ms: loadgen could not keep up with its own plan, and latency and slow-consumer findings may be its own.",
                u8::from(lag.saturated()).to_string(),
            ),
        ]
    });
    let gauges = gauges.into_iter().chain(lag_gauges.into_iter().flatten());
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {value}"
        );
    }
    for ((name, value), meaning) in figures.totals.fields().iter().zip(Counters::meanings()) {
        let metric = format!("loadgen_{name}_total");
        let meaning = meaning.split_whitespace().collect::<Vec<_>>().join(" ");
        let help = if *name == "lost" {
            format!("{meaning} Known when the run ends: 0 until then.")
        } else {
            meaning
        };
        let _ = writeln!(out, "# HELP {metric} {}", escape_help(&help));
        let _ = writeln!(out, "# TYPE {metric} counter");
        let _ = writeln!(out, "{metric}{labels} {value}");
    }
    let name = "loadgen_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Delivery latency (received minus intended send time, so without coordinated omission), after the warm-up."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    let latency = figures.latency;
    let inner = label_pairs(figures.labels);
    let sep = if inner.is_empty() { "" } else { "," };
    for le in BUCKETS_S {
        let below = if latency.is_empty() {
            0
        } else {
            latency.count_between(0, (le * 1e6) as u64)
        };
        let _ = writeln!(
            out,
            "{name}_bucket{{{inner}{sep}le=\"{}\"}} {below}",
            number(le)
        );
    }
    let count = latency.len();
    let _ = writeln!(out, "{name}_bucket{{{inner}{sep}le=\"+Inf\"}} {count}");
    let sum_s = if count == 0 {
        0.0
    } else {
        latency.mean() * count as f64 / 1e6
    };
    let _ = writeln!(out, "{name}_sum{labels} {}", number(sum_s));
    let _ = writeln!(out, "{name}_count{labels} {count}");
    out
}

/// `{a="x",b="y"}`, or nothing without labels.
fn label_text(labels: &[(&'static str, String)]) -> String {
    let inner = label_pairs(labels);
    if inner.is_empty() {
        String::new()
    } else {
        format!("{{{inner}}}")
    }
}

fn label_pairs(labels: &[(&'static str, String)]) -> String {
    labels
        .iter()
        .map(|(name, value)| format!("{name}=\"{}\"", escape_label(value)))
        .collect::<Vec<_>>()
        .join(",")
}

/// A label value as the format wants it: `\`, `"` and line feeds escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Help text as the format wants it: `\` and line feeds escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A float as Prometheus reads it.
fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        "NaN".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::new_histogram;

    #[test]
    fn every_counter_the_users_and_a_latency_histogram_with_escaped_labels() {
        let mut latency = new_histogram();
        for us in [300, 800, 4_000, 70_000] {
            latency.record(us).unwrap();
        }
        let totals = Counters {
            sent: 7,
            delivered: 42,
            ..Counters::default()
        };
        let labels = [
            ("run", "chat \"x\"-20261206T150000Z".to_string()),
            ("scenario", "chat".to_string()),
        ];
        let mut send = crate::record::new_histogram();
        send.record(2_000).unwrap();
        let mut timer = crate::record::new_histogram();
        timer.record(25_000).unwrap();
        let lag = LoadgenLag::of(&send, &timer);
        let text = exposition(&LiveFigures {
            labels: &labels,
            totals: &totals,
            users_online: 9,
            latency: &latency,
            elapsed_s: 12.0,
            lag: Some(&lag),
        });
        let l = r#"{run="chat \"x\"-20261206T150000Z",scenario="chat"}"#;
        assert!(
            text.contains(&format!("loadgen_sent_total{l} 7\n")),
            "{text}"
        );
        assert!(text.contains(&format!("loadgen_delivered_total{l} 42\n")));
        assert!(text.contains(&format!("loadgen_users_online{l} 9\n")));
        // loadgen's own lag, and the saturation it means (a 25 ms late heartbeat).
        assert!(
            text.contains(&format!("loadgen_send_lag_p99_seconds{l} 0.002")),
            "{text}"
        );
        assert!(
            text.contains(&format!("loadgen_timer_lag_max_seconds{l} 0.025")),
            "{text}"
        );
        assert!(
            text.contains(&format!("loadgen_saturated{l} 1\n")),
            "{text}"
        );
        let calm = LoadgenLag::of(&send, &send);
        let without = exposition(&LiveFigures {
            labels: &labels,
            totals: &totals,
            users_online: 9,
            latency: &latency,
            elapsed_s: 12.0,
            lag: Some(&calm),
        });
        assert!(without.contains(&format!("loadgen_saturated{l} 0\n")));
        assert!(text.contains("# TYPE loadgen_lost_total counter"));
        assert!(text.contains("Known when the run ends"));
        let bucket = |le: &str| {
            text.lines()
                .find(|line| line.contains(&format!("le=\"{le}\"")))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        assert_eq!(bucket("0.001"), Some(2));
        assert_eq!(bucket("0.005"), Some(3));
        assert_eq!(bucket("+Inf"), Some(4));
        assert!(text.contains(&format!("loadgen_latency_seconds_count{l} 4\n")));
        // Every help line is one line; every sample line is `name{labels} value`.
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            assert!(
                line.rsplit(' ').next().unwrap().parse::<f64>().is_ok(),
                "{line}"
            );
        }
    }
}
