//! The human summary printed on stdout when a run ends.
//!
//! A compact label/value table of the figures someone looks at first (load, delivery,
//! latency, errors, evictions, where the server ran), then one PASS/FAIL line per threshold
//! and a result line, so the outcome of a run is readable without opening the report files.

use std::fmt::Write;

use super::run_report::{measured_secs, RunReport, SegmentsInfo, ServerPlacement};
use crate::clock;
use crate::thresholds::{deliveries_per_sec, delivery_ratio, per_sec, ThresholdVerdict};

/// Width of the label column.
const LABEL: usize = 16;

/// The summary text (several lines, newline-terminated).
pub fn summary_table(report: &RunReport, verdicts: &[ThresholdVerdict]) -> String {
    let mut out = String::from("summary\n");
    // `fmt::Write` for `String` cannot fail; results are ignored for that reason.
    for (label, value) in summary_rows(report) {
        let _ = writeln!(out, "  {label:<LABEL$} {value}");
    }
    let _ = writeln!(out, "thresholds");
    let name_width = verdicts.iter().map(|v| v.name.len()).max().unwrap_or(0);
    for v in verdicts {
        let _ = writeln!(
            out,
            "  {}  {:<name_width$}  {} {} {}",
            if v.passed { "PASS" } else { "FAIL" },
            v.name,
            value(v.actual, v.unit),
            v.relation(),
            value(v.limit, v.unit),
        );
    }
    if verdicts.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    let _ = writeln!(out, "result: {}", result_line(report, verdicts));
    out
}

/// The outcome in a few words: `PASS (7 thresholds)`, `FAIL (2 of 7 thresholds failed)`
/// or `INCOMPLETE: <why>`.
pub fn result_line(report: &RunReport, verdicts: &[ThresholdVerdict]) -> String {
    let failed = verdicts.iter().filter(|v| !v.passed).count();
    match &report.incomplete {
        Some(why) => format!("INCOMPLETE: {why}"),
        None if failed == 0 => format!("PASS ({} thresholds)", verdicts.len()),
        None => format!("FAIL ({failed} of {} thresholds failed)", verdicts.len()),
    }
}

/// The summary's figures as label/value rows, the same on stdout and in `report.html`.
pub fn summary_rows(report: &RunReport) -> Vec<(&'static str, String)> {
    let t = &report.totals;
    let measured = measured_secs(report);
    let mut rows = Vec::new();
    let mut row = |label: &'static str, value: String| rows.push((label, value));

    let scenario = format!(
        "{} ({})",
        report.setup.scenario_name, report.setup.scenario_path
    );
    row("scenario", scenario);
    row("server", placement(&report.setup.server));
    row("targets", report.setup.targets.join(", "));
    if let Some(tls) = tls_line(report) {
        row("tls", tls);
    }
    let configured = report
        .setup
        .scenario
        .pointer("/users/count")
        .and_then(serde_json::Value::as_u64)
        .map_or_else(|| "?".to_string(), |n| n.to_string());
    // The last interval is the wind-down, after every connection closed: show the peak.
    let peak = report
        .intervals
        .iter()
        .map(|i| i.users_online)
        .max()
        .map_or_else(|| "?".to_string(), |n| n.to_string());
    row(
        "users",
        format!("{configured} configured, at most {peak} online"),
    );
    row(
        "duration",
        format!(
            "ramp {:.2} s, measured {measured:.2} s, from {} to {}",
            report.ramp.as_secs_f64(),
            clock::rfc3339(report.started_at),
            clock::rfc3339(report.ended_at),
        ),
    );
    row(
        "sent",
        format!("{} ({:.1}/s)", t.sent, per_sec(t.sent, measured)),
    );
    row(
        "delivered",
        format!("{} ({:.1}/s)", t.delivered, deliveries_per_sec(t, measured)),
    );
    row(
        "expected / lost",
        format!("{} / {} ({} unverified)", t.expected, t.lost, t.unverified),
    );
    row("delivery ratio", format!("{:.6}", delivery_ratio(t)));
    let h = &report.latency;
    let ms = |us: u64| us as f64 / 1000.0;
    let (p50, p90, p99, p999, max) = if h.is_empty() {
        (0.0, 0.0, 0.0, 0.0, 0.0)
    } else {
        (
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.90)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
        )
    };
    let warmup = report
        .setup
        .scenario
        .get("warmup")
        .and_then(|w| w.as_str())
        .map(|w| format!(", after a {w} warm-up"))
        .unwrap_or_default();
    row(
        "latency ms",
        format!(
            "p50 {p50:.3}  p90 {p90:.3}  p99 {p99:.3}  p99.9 {p999:.3}  max {max:.3}  ({} samples{warmup})",
            h.len()
        ),
    );
    let c = &report.connect;
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(q) as f64 / 1000.0
        }
    };
    let mint = if c.mint.is_empty() {
        String::new()
    } else {
        format!(
            "token mint p50 {:.3} p99 {:.3}; ",
            ms(&c.mint, 0.5),
            ms(&c.mint, 0.99)
        )
    };
    let tls = if c.tls.is_empty() {
        String::new()
    } else {
        format!(
            "; TLS handshake p50 {:.3} p99 {:.3}",
            ms(&c.tls, 0.5),
            ms(&c.tls, 0.99)
        )
    };
    row(
        "login ms",
        format!(
            "{mint}TCP connect p50 {:.3} p99 {:.3}{tls}; upgrade p50 {:.3} p99 {:.3} ({} logins, the ramp's included)",
            ms(&c.tcp, 0.5),
            ms(&c.tcp, 0.99),
            ms(&c.upgrade, 0.5),
            ms(&c.upgrade, 0.99),
            c.logins()
        ),
    );
    row(
        "errors",
        format!(
            "connect {}, unexpected disconnects {} (Close 1001 {}, 1013 {}, 4001 {}, other {}; TCP drop {}), duplicates {}, order {}, foreign {}, self {}",
            t.connect_errors,
            t.unexpected_disconnects,
            t.unexpected_close_1001,
            t.unexpected_close_1013,
            t.unexpected_close_4001,
            t.unexpected_close_other,
            t.unexpected_tcp_drop,
            t.duplicates,
            t.order_errors,
            t.foreign,
            t.self_deliveries
        ),
    );
    row(
        "evictions",
        format!(
            "{} relogins: ok {}, late {}, missing {}, zombie {}, ghost {}, no single survivor {}; not failures: survivor closed by the server {}, probe late {}, unprobed {}",
            t.relogins,
            t.evictions_ok,
            t.evictions_late,
            t.evictions_missing,
            t.evictions_zombie,
            t.evictions_ghost,
            t.evictions_no_survivor,
            t.evictions_survivor_closed,
            t.evictions_probe_late,
            t.evictions_unprobed
        ) + &format!(" ({} probes broadcast)", report.probes_sent),
    );
    let lag = &report.loadgen_lag;
    row(
        "loadgen lag",
        format!(
            "sends p50 {:.2} ms p99 {:.2} ms max {:.2} ms; timer p99 {:.2} ms max {:.2} ms",
            lag.send.p50 as f64 / 1000.0,
            lag.send.p99 as f64 / 1000.0,
            lag.send.max as f64 / 1000.0,
            lag.timer.p99 as f64 / 1000.0,
            lag.timer.max as f64 / 1000.0,
        ),
    );
    if let Some(note) = lag.statement(t) {
        row("NOTE", note);
    }
    let renewals = if t.token_renewals > 0 {
        format!(
            ", {} token expiries (Close 4003) renewed with a fresh login",
            t.token_renewals
        )
    } else {
        String::new()
    };
    row(
        "connections",
        format!(
            "{} opened, {} churn leaves{renewals}; {} relogins or churns due but not started (every user tried was busy, or loadgen reached them after the phases)",
            t.connects, t.churn_leaves, t.disruptions_skipped
        ),
    );
    if let Some(segments) = &report.segments {
        row("segments", segments_line(segments));
    }
    row("loadgen itself", resources_line(report));
    for g in crate::memory::growth(
        &report.resources_over_time,
        super::summary::settle_s(report),
    ) {
        row(
            "memory",
            format!(
                "{} {:.1} MB at {:.0} s, {:.1} MB at the end ({:.0} s), peak {:.1} MB: {}",
                g.process,
                g.rss_settled_bytes as f64 / 1e6,
                g.settled_at_s,
                g.rss_end_bytes as f64 / 1e6,
                g.ended_at_s,
                g.rss_peak_bytes as f64 / 1e6,
                g.mb_per_hour
                    .map_or("too few samples for a growth rate".into(), |r| format!(
                        "{r:+.2} MB/h"
                    ))
            ),
        );
    }
    if let Some(calibration) = &report.calibration {
        row("machine speed", calibration.line());
    }
    row(
        "server out",
        match report.server_deliveries_out {
            Some(n) if n < t.delivered => format!(
                "{n} deliveries (loadgen received {}: more than the servers' /metrics \
                 reported, so some target address is served by several nodes and answered \
                 for one)",
                t.delivered
            ),
            Some(n) => format!("{n} deliveries (loadgen received {})", t.delivered),
            None => "unknown (metrics not scraped)".to_string(),
        },
    );

    rows
}

/// How the `wss://` targets were verified, when there are any (`--insecure` says so).
pub(super) fn tls_line(report: &RunReport) -> Option<String> {
    if !report.setup.targets.iter().any(|t| t.starts_with("wss://")) {
        return None;
    }
    let settings: crate::tls::TlsSettings = report
        .setup
        .scenario
        .pointer("/users/tls")
        .and_then(|tls| serde_json::from_value(tls.clone()).ok())
        .unwrap_or_default();
    Some(settings.describe())
}

/// loadgen's own CPU and memory in words.
fn resources_line(report: &RunReport) -> String {
    let r = &report.loadgen_resources;
    let delivered = report.totals.delivered;
    let users = report
        .setup
        .scenario
        .pointer("/users/count")
        .and_then(|c| c.as_u64())
        .unwrap_or(0);
    let mut line = format!("{} process(es)", r.processes);
    if let Some(cpu) = r.cpu_seconds {
        line += &format!(", CPU {cpu:.2} s");
        if delivered > 0 {
            line += &format!(" ({:.2} µs per delivery)", cpu * 1e6 / delivered as f64);
        }
    }
    if let Some(rss) = r.peak_rss_bytes {
        line += &format!(", peak memory {:.1} MB", rss as f64 / 1e6);
        if users > 0 {
            line += &format!(" ({:.1} KB per user)", rss as f64 / 1e3 / users as f64);
        }
    }
    line
}

/// A split run in words.
fn segments_line(segments: &SegmentsInfo) -> String {
    match segments {
        SegmentsInfo::Part {
            segment,
            start_late_ms,
        } => format!(
            "segment {segment} (started {start_late_ms:.1} ms after the common start); loss \
             here counts only this segment's senders: merge the segments for the run"
        ),
        SegmentsInfo::Merged {
            count,
            merged,
            incomplete,
            clock_offset_worst_ms,
            start_late_worst_ms,
            per_segment: _,
        } => {
            let mut line = format!("{} of {count} merged", merged.len());
            for problem in incomplete {
                line += &format!("; segment {}/{count} {}", problem.index, problem.why);
            }
            line += &match clock_offset_worst_ms {
                Some(ms) => format!("; clock offset at most {ms:.3} ms"),
                None => "; clock offset not measurable".to_string(),
            };
            line + &format!("; started within {start_late_worst_ms:.1} ms of each other")
        }
    }
}

/// Where the server ran, in words.
pub(super) fn placement(server: &ServerPlacement) -> String {
    match server {
        ServerPlacement::EmbeddedChild { pid, address, .. } => {
            format!("embedded child process (pid {pid}) on {address}")
        }
        ServerPlacement::External => "external".to_string(),
    }
}

/// A verdict figure with its unit.
pub(super) fn value(x: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{x:.3} ms"),
        "ratio" => format!("{x:.6}"),
        "count" => format!("{x:.0}"),
        "per_sec" => format!("{x:.1}/s"),
        "MB/h" if x.is_nan() => "not measured (too few samples after settling)".into(),
        "MB/h" => format!("{x:+.2} MB/h"),
        other => format!("{x} {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;
    use crate::thresholds::evaluate;

    fn table(report: &RunReport) -> String {
        let verdicts = evaluate(&report.thresholds, &report.totals, &report.latency, 3.0);
        summary_table(report, &verdicts)
    }

    #[test]
    fn shows_figures_and_one_line_per_threshold() {
        let report = sample();
        let text = table(&report);
        for expected in [
            "smoke (scenarios/smoke.toml)",
            "embedded child process (pid 4242) on 127.0.0.1:9000",
            "10 configured, at most 10 online",
            "measured 3.00 s",
            "300 (100.0/s)",
            "p99.9 ",
            "1000 deliveries (loadgen received 300)",
            "ok 5, late 1, missing 1, zombie 1, ghost 1",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        let verdicts = evaluate(&report.thresholds, &report.totals, &report.latency, 3.0);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  PASS") || l.starts_with("  FAIL"))
            .collect();
        assert_eq!(lines.len(), verdicts.len());
        assert!(text.contains("FAIL  max_eviction_failures"), "{text}");
        assert!(text.contains("PASS  p99 "), "{text}");
        assert!(text.contains("result: FAIL (1 of"), "{text}");
    }

    #[test]
    fn incomplete_run_says_why() {
        let mut report = sample();
        report.incomplete = Some("the embedded server exited mid-run".into());
        report.server_deliveries_out = None;
        let text = table(&report);
        assert!(
            text.contains("result: INCOMPLETE: the embedded server exited mid-run"),
            "{text}"
        );
        assert!(text.contains("unknown (metrics not scraped)"), "{text}");
    }

    #[test]
    fn passing_run_says_pass() {
        let mut report = sample();
        report.thresholds.max_eviction_failures = 10;
        assert!(table(&report).contains("result: PASS ("));
    }
}
