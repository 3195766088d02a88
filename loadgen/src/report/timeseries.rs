//! `timeseries.csv`: one row per one-second interval, for plotting a run over time.
//!
//! Every [`Counters`] field gets a column under its own name, so a new counter shows up
//! here as soon as it exists (the columns are [`Counters::fields`], which the counters'
//! one field list makes). Latency columns are per interval, in µs.

use crate::record::{Counters, IntervalRecord};

/// Columns before the counters.
const LEADING: [&str; 2] = ["elapsed_s", "users_online"];

/// Columns after the counters: delivery latency, then the login phase times.
const TRAILING: [&str; 15] = [
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "latency_count",
    "logins_timed",
    "tcp_p50_us",
    "tcp_p99_us",
    "tls_p50_us",
    "tls_p99_us",
    "upgrade_p50_us",
    "upgrade_p99_us",
    "mint_p50_us",
    "mint_p99_us",
];

/// Every field of `c` with its name, in declaration order ([`Counters::fields`]).
pub fn counter_columns(c: &Counters) -> [(&'static str, u64); Counters::FIELDS] {
    c.fields()
}

/// The column names, in order.
pub fn header() -> Vec<&'static str> {
    let counters = counter_columns(&Counters::default()).map(|(name, _)| name);
    LEADING
        .into_iter()
        .chain(counters)
        .chain(TRAILING)
        .collect()
}

/// The CSV text: the header, then one row per interval.
pub fn timeseries_csv(intervals: &[IntervalRecord]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(header())?;
    for interval in intervals {
        writer.write_record(row(interval))?;
    }
    writer.into_inner().map_err(|e| e.into_error().into())
}

fn row(interval: &IntervalRecord) -> Vec<String> {
    let end = interval.start_s + interval.length_s;
    let mut row = vec![format!("{end:.3}"), interval.users_online.to_string()];
    row.extend(
        counter_columns(&interval.counters)
            .iter()
            .map(|(_, value)| value.to_string()),
    );
    row.extend(interval.latency_us.iter().map(|v| v.to_string()));
    row.extend(interval.logins.iter().map(|v| v.to_string()));
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{new_histogram, ClosedInterval};

    fn interval(start_s: f64, delivered: u64, latencies_us: &[u64]) -> IntervalRecord {
        let mut latency = new_histogram();
        for &us in latencies_us {
            latency.record(us).unwrap();
        }
        ClosedInterval {
            start_s,
            length_s: 1.0,
            users_online: 7,
            counters: Counters {
                delivered,
                ..Counters::default()
            },
            latency,
            connect: None,
        }
        .record()
    }

    #[test]
    fn one_row_per_interval_with_named_columns() {
        let intervals = [interval(0.0, 3, &[100, 200, 300]), interval(1.0, 0, &[])];
        let bytes = timeseries_csv(&intervals).unwrap();
        let mut reader = csv::Reader::from_reader(&bytes[..]);
        let names: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(names, header());
        assert_eq!(names.len(), 2 + Counters::FIELDS + 15);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        let column = |row: &csv::StringRecord, name: &str| -> String {
            let at = names.iter().position(|n| n == name).unwrap();
            row[at].to_string()
        };
        assert_eq!(column(&rows[0], "elapsed_s"), "1.000");
        assert_eq!(column(&rows[0], "users_online"), "7");
        assert_eq!(column(&rows[0], "delivered"), "3");
        assert_eq!(column(&rows[0], "max_us"), "300");
        assert_eq!(column(&rows[0], "latency_count"), "3");
        assert_eq!(column(&rows[1], "elapsed_s"), "2.000");
        for name in TRAILING {
            assert_eq!(column(&rows[1], name), "0", "{name} of an empty interval");
        }
    }

    #[test]
    fn every_counter_has_a_distinct_column() {
        let mut names = header();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 2 + Counters::FIELDS + 15);
    }
}
