//! How a conformance run is reported: a table for people, JSON for scripts, JUnit XML for
//! CI systems (one testcase per check; a failed MUST check is a `<failure>`, a warning is
//! noted in `<system-out>`).

use std::fmt::Write as _;
use std::path::Path;

use super::check::{all_must_passed, CheckResult, CheckVerdict};
use crate::xml::escape;

/// Why a report file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct WriteError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// The table header, printed before the first row.
pub fn table_header() -> String {
    format!(
        "{:<4} {:<42} {:<7} {:>7}  {}",
        "rule", "check", "verdict", "time", "seen"
    )
}

/// One table row.
pub fn table_row(result: &CheckResult) -> String {
    format!(
        "{:<4} {:<42} {:<7} {:>6.2}s  {}",
        result.rule,
        result.check,
        result.verdict.as_str(),
        result.seconds,
        result.seen
    )
}

/// The closing line: counts and the overall verdict.
pub fn table_footer(results: &[CheckResult], url: &str) -> String {
    let count = |v: CheckVerdict| results.iter().filter(|r| r.verdict == v).count();
    let must = results.iter().filter(|r| r.must).count();
    format!(
        "{}: {} of {must} MUST checks passed ({} failed), {} warn, {} info — {url}",
        if all_must_passed(results) {
            "CONFORMS"
        } else {
            "DOES NOT CONFORM"
        },
        count(CheckVerdict::Pass)
            + results
                .iter()
                .filter(|r| r.must && r.verdict == CheckVerdict::Warn)
                .count(),
        count(CheckVerdict::Fail),
        count(CheckVerdict::Warn),
        count(CheckVerdict::Info),
    )
}

/// Writes `{ "url": …, "conforms": …, "checks": [...] }`.
pub fn write_json(path: &Path, url: &str, results: &[CheckResult]) -> Result<(), WriteError> {
    let document = serde_json::json!({
        "url": url,
        "conforms": all_must_passed(results),
        "checks": results,
    });
    let text = serde_json::to_string_pretty(&document).unwrap_or_else(|_| "{}".into());
    write(path, &text)
}

/// Writes JUnit XML: one `<testsuite name="conform">` with one `<testcase>` per check.
pub fn write_junit(path: &Path, url: &str, results: &[CheckResult]) -> Result<(), WriteError> {
    write(path, &junit(url, results))
}

/// The JUnit document.
pub fn junit(url: &str, results: &[CheckResult]) -> String {
    let failures = results
        .iter()
        .filter(|r| r.verdict == CheckVerdict::Fail)
        .count();
    let total: f64 = results.iter().map(|r| r.seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"loadgen conform\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">",
        results.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"conform {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{total:.3}\">",
        escape(url),
        results.len()
    );
    for result in results {
        let _ = write!(
            out,
            "    <testcase classname=\"conform.{}\" name=\"{} {}\" time=\"{:.3}\">",
            escape(result.rule),
            escape(result.rule),
            escape(result.check),
            result.seconds
        );
        match result.verdict {
            CheckVerdict::Fail => {
                let _ = write!(
                    out,
                    "\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    ",
                    escape(&result.seen),
                    if result.must { "MUST" } else { "SHOULD" },
                    escape(&result.seen)
                );
            }
            verdict => {
                let _ = write!(
                    out,
                    "\n      <system-out>{}: {}</system-out>\n    ",
                    verdict.as_str(),
                    escape(&result.seen)
                );
            }
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

fn write(path: &Path, text: &str) -> Result<(), WriteError> {
    std::fs::write(path, text).map_err(|source| WriteError {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_has_one_testcase_per_check_and_failures() {
        let results = vec![
            CheckResult {
                rule: "S5",
                check: "survives",
                must: true,
                verdict: CheckVerdict::Fail,
                seen: "lost <probe> & more".into(),
                seconds: 0.5,
            },
            CheckResult {
                rule: "O1",
                check: "health",
                must: false,
                verdict: CheckVerdict::Info,
                seen: "ok".into(),
                seconds: 0.1,
            },
        ];
        let xml = junit("ws://x/", &results);
        assert_eq!(xml.matches("<testcase ").count(), 2);
        assert_eq!(xml.matches("<failure ").count(), 1);
        assert!(xml.contains("lost &lt;probe&gt; &amp; more"));
    }
}
