//! The exposition text read back into series: each sample line of Prometheus' text format
//! (`name{label="value",...} value`, as [`crate::report::prometheus`] writes it) becomes
//! one [`Series`] with its name as the `__name__` label and its labels sorted by name, as
//! remote write wants them. A histogram needs nothing of its own: the text already has it
//! as its `_bucket`, `_sum` and `_count` lines, and each is a series here too.
//!
//! Reading the text back, rather than building series from the counters, keeps one
//! description of what loadgen exposes: what a scrape sees and what a push sends are the
//! same series by construction.

/// One series of the exposition, and its value now.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// `(name, value)` pairs sorted by name, `__name__` among them; no two with the same
    /// name and none with an empty value (an empty label is the same as no label).
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Why a line of the exposition could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} of the exposition: {why}")]
pub struct ExpositionError {
    /// 1-based.
    pub line: usize,
    pub why: String,
}

/// Every sample line of `text` as a series (comment and empty lines skipped). A timestamp
/// after the value is ignored: a push stamps every sample with its own time.
pub fn from_exposition(text: &str) -> Result<Vec<Series>, ExpositionError> {
    let mut all = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let series = sample_line(line).map_err(|why| ExpositionError {
            line: index + 1,
            why,
        })?;
        all.push(series);
    }
    Ok(all)
}

/// One `name{labels} value [timestamp]` line.
fn sample_line(line: &str) -> Result<Series, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or_else(|| format!("{line:?} has no value"))?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("{name:?} is not a metric name"));
    }
    let mut labels = vec![("__name__".to_string(), name.to_string())];
    let mut rest = &line[name_end..];
    if let Some(inside) = rest.strip_prefix('{') {
        rest = read_labels(inside, &mut labels)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value_text = fields
        .next()
        .ok_or_else(|| format!("{name} has no value"))?;
    let value = parse_value(value_text).ok_or_else(|| format!("{value_text:?} is not a value"))?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("{timestamp:?} is not a timestamp"))?;
    }
    if let Some(extra) = fields.next() {
        return Err(format!("{extra:?} after the value and timestamp"));
    }
    labels.retain(|(_, value)| !value.is_empty());
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = labels.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(format!("label {:?} is given twice", pair[0].0));
    }
    Ok(Series { labels, value })
}

/// Reads `a="x",b="y"}` into `labels`; returns what follows the `}`.
fn read_labels<'a>(
    mut text: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, String> {
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Ok(after);
        }
        let name_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or("the labels do not end with }")?;
        let name = &text[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("a bad label name before {text:?}"));
        }
        let after_name = text[name_end..].trim_start();
        let quoted = after_name
            .strip_prefix('=')
            .map(str::trim_start)
            .and_then(|t| t.strip_prefix('"'))
            .ok_or_else(|| format!("label {name} has no =\"value\""))?;
        let (value, after_value) = read_quoted(quoted)?;
        labels.push((name.to_string(), value));
        text = after_value.trim_start();
        if let Some(after_comma) = text.strip_prefix(',') {
            text = after_comma;
        } else if !text.starts_with('}') {
            return Err(format!("expected , or }} before {text:?}"));
        }
    }
}

/// A label value up to its closing quote, with `\\`, `\"` and `\n` unescaped; returns the
/// value and what follows the quote.
fn read_quoted(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[at + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => value.push('\\'),
                Some((_, '"')) => value.push('"'),
                Some((_, 'n')) => value.push('\n'),
                Some((_, other)) => return Err(format!("unknown escape \\{other} in a label")),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("a label value has no closing quote".into())
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A sample value: a float, `+Inf`, `-Inf` or `NaN`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok().filter(|v: &f64| v.is_finite()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(series: &Series) -> Vec<(&str, &str)> {
        series
            .labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn a_sample_line_becomes_a_series_with_its_name_and_sorted_labels() {
        let text = "# HELP loadgen_sent_total Messages sent.\n# TYPE loadgen_sent_total counter\n\
                    loadgen_sent_total{run=\"smoke-20261206T150429Z\",scenario=\"smoke\"} 240\n\
                    \n\
                    up 1\n";
        let series = from_exposition(text).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(
            labels(&series[0]),
            [
                ("__name__", "loadgen_sent_total"),
                ("run", "smoke-20261206T150429Z"),
                ("scenario", "smoke")
            ]
        );
        assert_eq!(series[0].value, 240.0);
        assert_eq!(labels(&series[1]), [("__name__", "up")]);
        assert_eq!(series[1].value, 1.0);
    }

    #[test]
    fn labels_are_sorted_by_name_whatever_order_the_text_has() {
        let series = from_exposition("m{zeta=\"1\",Alpha=\"2\",beta=\"3\"} 0\n").unwrap();
        // Byte order: upper case, then `_`, then lower case.
        assert_eq!(
            labels(&series[0]),
            [
                ("Alpha", "2"),
                ("__name__", "m"),
                ("beta", "3"),
                ("zeta", "1")
            ]
        );
    }

    #[test]
    fn escaped_quotes_backslashes_and_line_feeds_in_label_values_are_read_back() {
        let text = r#"m{a="say \"hi\"",b="C:\\dir\\",c="two\nlines",d="} , {"} 2.5"#;
        let series = from_exposition(text).unwrap();
        assert_eq!(
            labels(&series[0]),
            [
                ("__name__", "m"),
                ("a", "say \"hi\""),
                ("b", "C:\\dir\\"),
                ("c", "two\nlines"),
                ("d", "} , {")
            ]
        );
        assert_eq!(series[0].value, 2.5);
    }

    #[test]
    fn special_values_timestamps_and_empty_labels() {
        let text = "a +Inf\nb -Inf\nc NaN 1700000000000\nd{x=\"\",y=\"1\",} 3e-3\n";
        let series = from_exposition(text).unwrap();
        assert_eq!(series[0].value, f64::INFINITY);
        assert_eq!(series[1].value, f64::NEG_INFINITY);
        assert!(series[2].value.is_nan());
        assert_eq!(labels(&series[3]), [("__name__", "d"), ("y", "1")]);
        assert_eq!(series[3].value, 0.003);
    }

    #[test]
    fn a_histogram_is_its_bucket_sum_and_count_series() {
        let text = "# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.75\nh_count 2\n";
        let series = from_exposition(text).unwrap();
        let names: Vec<&str> = series.iter().map(|s| s.labels[0].1.as_str()).collect();
        assert_eq!(names, ["h_bucket", "h_bucket", "h_sum", "h_count"]);
        assert_eq!(
            labels(&series[1]),
            [("__name__", "h_bucket"), ("le", "+Inf")]
        );
    }

    #[test]
    fn broken_lines_are_refused_with_their_line_number() {
        for (text, says) in [
            ("ok 1\nm{a=\"1\" 2\n", "line 2"),
            ("m{a=\"unterminated} 1\n", "closing quote"),
            ("m{a=\"x\",a=\"y\"} 1\n", "twice"),
            ("m{a=\"\\t\"} 1\n", "unknown escape"),
            ("m{1a=\"x\"} 1\n", "label name"),
            ("m{a} 1\n", "=\"value\""),
            ("9m 1\n", "metric name"),
            ("m\n", "no value"),
            ("m one\n", "not a value"),
            ("m 1 soon\n", "timestamp"),
            ("m 1 2 3\n", "after the value"),
        ] {
            let error = from_exposition(text).unwrap_err();
            assert!(error.to_string().contains(says), "{text:?}: {error}");
        }
    }

    #[test]
    fn loadgens_own_exposition_reads_back_whole() {
        use crate::report::prometheus::{exposition, LiveFigures};
        let report = crate::report::tests::sample();
        let labels = [
            ("run", "smoke-\"quoted\"\\".to_string()),
            ("scenario", "smoke".to_string()),
        ];
        let text = exposition(&LiveFigures {
            labels: &labels,
            totals: &report.totals,
            users_online: 9,
            latency: &report.latency,
            elapsed_s: 3.75,
            lag: Some(&report.loadgen_lag),
        });
        let series = from_exposition(&text).unwrap();
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .count();
        assert_eq!(series.len(), samples);
        let sent = series
            .iter()
            .find(|s| s.labels[0].1 == "loadgen_sent_total")
            .expect("loadgen_sent_total");
        assert_eq!(sent.value, report.totals.sent as f64);
        assert!(sent
            .labels
            .contains(&("run".to_string(), "smoke-\"quoted\"\\".to_string())));
    }
}
