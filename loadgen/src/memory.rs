//! Memory over time: loadgen's and the server's resident memory and CPU, sampled every
//! few seconds while a run lasts, and how fast each grew — the figure a soak is run for.
//!
//! A leak shows as steady growth once the run has settled (connections made, buffers and
//! allocator pools at their working size), so growth is judged only after a settling time
//! (default five minutes): the least-squares slope of resident memory over the samples
//! after it, in MB per hour. A slope is robust to one spike (a burst, a reallocation) in a
//! way that "end minus start" is not. `[thresholds] max_memory_growth` fails a run whose
//! slope is above the larger of a share of the process's memory per hour (default 1%) and
//! a floor (default 2 MB/h).

use serde::Serialize;

use crate::resources::Sample;
use crate::thresholds::{GrowthLimit, ThresholdVerdict};

pub use crate::thresholds::{SAMPLE_EVERY, SETTLE};

/// One sample of both processes; a figure that could not be read is `None`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ResourceSample {
    /// Seconds after the measured start.
    pub elapsed_s: f64,
    pub loadgen_rss_bytes: Option<u64>,
    pub loadgen_cpu_seconds: Option<f64>,
    pub server_rss_bytes: Option<u64>,
    pub server_cpu_seconds: Option<f64>,
}

impl ResourceSample {
    /// A sampler's reading, timed from `start`.
    pub fn of(sample: &Sample, start: std::time::SystemTime) -> ResourceSample {
        ResourceSample {
            elapsed_s: sample
                .at
                .duration_since(start)
                .map_or(0.0, |d| d.as_secs_f64()),
            loadgen_rss_bytes: sample.loadgen.map(|p| p.rss_bytes),
            loadgen_cpu_seconds: sample.loadgen.map(|p| p.cpu_seconds),
            server_rss_bytes: sample.server.map(|p| p.rss_bytes),
            server_cpu_seconds: sample.server.map(|p| p.cpu_seconds),
        }
    }
}

/// How one process's memory went after the settling time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Growth {
    /// `"loadgen"` or `"server"`.
    pub process: &'static str,
    /// The first sample at or after the settling time, and the last one.
    pub settled_at_s: f64,
    pub rss_settled_bytes: u64,
    pub ended_at_s: f64,
    pub rss_end_bytes: u64,
    /// Highest sample of the whole run.
    pub rss_peak_bytes: u64,
    /// Least-squares slope of the samples after the settling time, MB (10^6 bytes) per
    /// hour; `None` with fewer than 3 samples there.
    pub mb_per_hour: Option<f64>,
}

/// Growth of loadgen and of the server (each when its memory was read), judging from
/// `settle_s` on.
pub fn growth(samples: &[ResourceSample], settle_s: f64) -> Vec<Growth> {
    let of = |process: &'static str, rss: fn(&ResourceSample) -> Option<u64>| {
        let all: Vec<(f64, u64)> = samples
            .iter()
            .filter_map(|s| rss(s).map(|r| (s.elapsed_s, r)))
            .collect();
        let peak = all.iter().map(|p| p.1).max()?;
        let after: Vec<(f64, u64)> = all
            .iter()
            .copied()
            .filter(|p| p.0 + 1e-6 >= settle_s)
            .collect();
        let (first, last) = (after.first()?, after.last()?);
        Some(Growth {
            process,
            settled_at_s: first.0,
            rss_settled_bytes: first.1,
            ended_at_s: last.0,
            rss_end_bytes: last.1,
            rss_peak_bytes: peak,
            mb_per_hour: slope(&after).map(|bytes_per_s| bytes_per_s * 3600.0 / 1e6),
        })
    };
    [
        of("loadgen", |s| s.loadgen_rss_bytes),
        of("server", |s| s.server_rss_bytes),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Least-squares slope of `(x, y)`, y per x; `None` with fewer than 3 points or no spread
/// in x.
fn slope(points: &[(f64, u64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y) in points {
        sxy += (x - mean_x) * (y as f64 - mean_y);
        sxx += (x - mean_x) * (x - mean_x);
    }
    (sxx > 0.0).then(|| sxy / sxx)
}

/// One verdict per process whose memory was read: `max_memory_growth (loadgen)` and
/// `max_memory_growth (server)`, in MB/h. A run too short to measure growth after the
/// settling time fails (its growth reads NaN): a soak that could not be judged is not a
/// pass. When no process's memory could be read, one failing verdict says so.
pub fn verdicts(limit: &GrowthLimit, samples: &[ResourceSample]) -> Vec<ThresholdVerdict> {
    let growths = growth(samples, limit.settle.0.as_secs_f64());
    if growths.is_empty() {
        return vec![ThresholdVerdict::ceiling(
            "max_memory_growth",
            limit.mb_per_hour,
            f64::NAN,
            "MB/h",
        )];
    }
    growths
        .iter()
        .map(|g| {
            ThresholdVerdict::ceiling(
                &format!("max_memory_growth ({})", g.process),
                limit.allowed_mb_per_hour(g.rss_end_bytes),
                g.mb_per_hour.unwrap_or(f64::NAN),
                "MB/h",
            )
        })
        .collect()
}

/// `resources.csv`: one row per sample.
pub fn resources_csv(samples: &[ResourceSample]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record([
        "elapsed_s",
        "loadgen_rss_bytes",
        "loadgen_cpu_seconds",
        "server_rss_bytes",
        "server_cpu_seconds",
    ])?;
    let text = |v: Option<String>| v.unwrap_or_default();
    for s in samples {
        writer.write_record([
            format!("{:.3}", s.elapsed_s),
            text(s.loadgen_rss_bytes.map(|v| v.to_string())),
            text(s.loadgen_cpu_seconds.map(|v| format!("{v:.2}"))),
            text(s.server_rss_bytes.map(|v| v.to_string())),
            text(s.server_cpu_seconds.map(|v| format!("{v:.2}"))),
        ])?;
    }
    writer.into_inner().map_err(|e| e.into_error().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples every 10 s for `minutes`, loadgen at `base` growing `per_hour` bytes an
    /// hour; the server flat at 50 MB.
    fn soak(minutes: u64, base: u64, per_hour: f64) -> Vec<ResourceSample> {
        (0..=minutes * 6)
            .map(|i| {
                let t = i as f64 * 10.0;
                ResourceSample {
                    elapsed_s: t,
                    loadgen_rss_bytes: Some(base + (per_hour * t / 3600.0) as u64),
                    loadgen_cpu_seconds: Some(t / 2.0),
                    server_rss_bytes: Some(50_000_000),
                    server_cpu_seconds: Some(t / 3.0),
                }
            })
            .collect()
    }

    fn limit() -> GrowthLimit {
        toml::from_str("").unwrap()
    }

    #[test]
    fn defaults_are_five_minutes_one_percent_two_mb_ten_seconds() {
        let l = limit();
        assert_eq!(l.settle.0, SETTLE);
        assert_eq!((l.percent_per_hour, l.mb_per_hour), (1.0, 2.0));
        assert_eq!(l.sample_every.0, SAMPLE_EVERY);
        assert!(l.check().is_ok());
        // 1% of 500 MB is 5 MB/h, more than the 2 MB/h floor; 1% of 50 MB is not.
        assert_eq!(l.allowed_mb_per_hour(500_000_000), 5.0);
        assert_eq!(l.allowed_mb_per_hour(50_000_000), 2.0);
    }

    #[test]
    fn flat_memory_passes_and_a_leak_fails() {
        let flat = soak(20, 40_000_000, 0.0);
        let v = verdicts(&limit(), &flat);
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|v| v.passed), "{v:?}");
        assert_eq!(v[0].name, "max_memory_growth (loadgen)");
        assert!(v[0].actual.abs() < 1e-6);

        // 1 GB an hour, as loadgen did when it kept every interval's histogram.
        let leak = soak(20, 40_000_000, 1e9);
        let v = verdicts(&limit(), &leak);
        assert!(!v[0].passed, "{v:?}");
        assert!((v[0].actual - 1000.0).abs() < 1.0, "{}", v[0].actual);
        assert!(v[1].passed, "the server did not grow");

        // 3 MB/h: over the 2 MB/h floor at 40 MB, under 1% of 400 MB.
        let slow = soak(20, 40_000_000, 3e6);
        assert!(!verdicts(&limit(), &slow)[0].passed);
        let big = soak(20, 400_000_000, 3e6);
        assert!(verdicts(&limit(), &big)[0].passed);
    }

    #[test]
    fn growth_before_settling_is_not_judged_and_one_spike_does_not_decide() {
        let mut samples = soak(20, 40_000_000, 0.0);
        // Doubling during the first minutes (connections made, pools grown).
        for s in samples.iter_mut().filter(|s| s.elapsed_s < 240.0) {
            s.loadgen_rss_bytes = Some(20_000_000 + (s.elapsed_s * 80_000.0) as u64);
        }
        // One spike in the middle of the judged part.
        samples[90].loadgen_rss_bytes = Some(45_000_000);
        let g = growth(&samples, 300.0);
        assert_eq!(g[0].settled_at_s, 300.0);
        assert_eq!(g[0].rss_peak_bytes, 45_000_000);
        assert!(g[0].mb_per_hour.unwrap().abs() < 2.0, "{g:?}");
        assert!(verdicts(&limit(), &samples).iter().all(|v| v.passed));
    }

    #[test]
    fn a_run_too_short_to_judge_fails() {
        let short = soak(4, 40_000_000, 0.0);
        let v = verdicts(&limit(), &short);
        assert!(v.iter().all(|v| !v.passed && v.actual.is_nan()), "{v:?}");
        let none: Vec<ResourceSample> = Vec::new();
        let v = verdicts(&limit(), &none);
        assert_eq!(v.len(), 1);
        assert!(!v[0].passed);
    }

    #[test]
    fn bad_limits_are_refused() {
        let bad: GrowthLimit = toml::from_str("percent_per_hour = -1").unwrap();
        assert!(bad.check().is_err());
        let fast: GrowthLimit = toml::from_str("sample_every = \"10ms\"").unwrap();
        assert!(fast.check().is_err());
        assert!(toml::from_str::<GrowthLimit>("leak = 1").is_err());
    }

    #[test]
    fn the_csv_has_a_row_per_sample_and_blanks_for_what_was_not_read() {
        let mut samples = soak(1, 1000, 0.0);
        samples[1].server_rss_bytes = None;
        let text = String::from_utf8(resources_csv(&samples).unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + samples.len());
        assert_eq!(lines[2], "10.000,1000,5.00,,3.33");
    }
}
