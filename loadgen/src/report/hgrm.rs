//! `latency.hgrm`: the percentile distribution of the run's latency, as text.
//!
//! This is the layout of HdrHistogram's `outputPercentileDistribution` (also what wrk2
//! prints with `--latency`), so the file can be dropped into the HdrHistogram plotter
//! (<https://hdrhistogram.github.io/HdrHistogram/plotFiles.html>) or compared with other
//! tools' `.hgrm` files. Values are recorded in µs and printed in ms.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Microseconds per printed unit (milliseconds).
const US_PER_MS: f64 = 1000.0;

/// Quantile steps per half distance to 100 %, as HdrHistogram and wrk2 use by default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// The percentile distribution of `latency` (µs) with values in ms, three decimals.
///
/// An empty histogram gives the header and a footer of zeros.
pub fn percentile_distribution(latency: &Histogram<u64>) -> String {
    let mut out = String::new();
    // `fmt::Write` for `String` cannot fail; the results are ignored below for that reason.
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for step in latency.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += step.count_since_last_iteration();
        let value = step.value_iterated_to() as f64 / US_PER_MS;
        let quantile = step.quantile_iterated_to();
        if quantile < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.3} {quantile:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - quantile)
            );
        } else {
            let _ = writeln!(out, "{value:12.3} {quantile:2.12} {total:10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        latency.mean() / US_PER_MS,
        latency.stdev() / US_PER_MS
    );
    let _ = writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        latency.max() as f64 / US_PER_MS,
        latency.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        latency.buckets(),
        sub_buckets(latency)
    );
    out
}

/// HdrHistogram's sub-bucket count: the power of two that gives single-unit resolution up
/// to `2 × 10^sigfig` (the crate keeps it private, the footer shows it).
fn sub_buckets(latency: &Histogram<u64>) -> u64 {
    let largest = 2 * 10_u64.pow(u32::from(latency.sigfig()));
    largest.next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::new_histogram;

    const HEADER: &str = "       Value     Percentile TotalCount 1/(1-Percentile)";

    /// The two numbers of a `#[A = x, B = y]` footer line.
    fn footer(line: &str, first: &str) -> (f64, f64) {
        let inner = line
            .strip_prefix(&format!("#[{first}"))
            .and_then(|rest| rest.strip_suffix(']'))
            .unwrap_or_else(|| panic!("footer line {line:?}"));
        let numbers: Vec<f64> = inner
            .split(',')
            .map(|part| part.split('=').nth(1).unwrap().trim().parse().unwrap())
            .collect();
        (numbers[0], numbers[1])
    }

    #[test]
    fn empty_histogram_has_header_and_zero_footer() {
        let text = percentile_distribution(&new_histogram());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        assert_eq!(lines[1], "");
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(footer(lines[2], "Mean"), (0.0, 0.0));
        assert_eq!(footer(lines[3], "Max"), (0.0, 0.0));
        assert_eq!(footer(lines[4], "Buckets"), (22.0, 2048.0));
    }

    #[test]
    fn rows_rise_to_the_max_and_footer_matches_the_histogram() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            h.record(us * 3).unwrap();
        }
        let text = percentile_distribution(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], HEADER);
        let rows: Vec<Vec<&str>> = lines[2..lines.len() - 3]
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(rows.len() > 20, "{text}");
        let mut previous = 0.0;
        for row in &rows[..rows.len() - 1] {
            assert_eq!(row.len(), 4, "{row:?}");
            let value: f64 = row[0].parse().unwrap();
            assert!(value >= previous);
            previous = value;
        }
        let last = &rows[rows.len() - 1];
        assert_eq!(last.len(), 3, "the 100 % row has no 1/(1-p): {last:?}");
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "10000");
        let last_value: f64 = last[0].parse().unwrap();
        assert_eq!(last_value, h.max() as f64 / 1000.0);
        let n = lines.len();
        let (mean, stdev) = footer(lines[n - 3], "Mean");
        assert!((mean - h.mean() / 1000.0).abs() < 0.001);
        assert!((stdev - h.stdev() / 1000.0).abs() < 0.001);
        let (max, count) = footer(lines[n - 2], "Max");
        assert_eq!(max, last_value);
        assert_eq!(count, 10_000.0);
        assert_eq!(footer(lines[n - 1], "Buckets").1, 2048.0);
    }
}
