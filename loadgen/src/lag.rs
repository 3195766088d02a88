//! How late loadgen itself runs: the instrument measuring its own lag, so that it never
//! blames the server for its own overload.
//!
//! Two figures, both in microseconds:
//! - **send lag**: how long after its intended time each chat message actually left (the
//!   open-model schedule says when; the sender's timer and the runtime decide when it
//!   really happens);
//! - **timer lag**: how late a 10 ms heartbeat on loadgen's runtime wakes up. Every task
//!   of the run (readers included) shares that runtime, so when the heartbeat is late,
//!   everything loadgen reads is read late too.
//!
//! When either p99 is above [`SATURATED`], loadgen was the bottleneck: the summary says so
//! in plain words and lists the server-side findings that may come from it (receivers the
//! server dropped with 1013 because loadgen read them too slowly, late probes, latency).
//! `[thresholds] max_loadgen_lag` fails a run whose lag p99 is above a limit.

use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::record::{new_histogram, Counters};

/// A lag p99 above this means loadgen could not keep up with its own plan.
pub const SATURATED: Duration = Duration::from_millis(10);

/// The heartbeat's period.
const HEARTBEAT: Duration = Duration::from_millis(10);

/// Records both lags while a run lasts.
pub struct LagMeter {
    send: Mutex<Histogram<u64>>,
    timer: Mutex<Histogram<u64>>,
}

impl Default for LagMeter {
    fn default() -> Self {
        LagMeter {
            send: Mutex::new(new_histogram()),
            timer: Mutex::new(new_histogram()),
        }
    }
}

impl LagMeter {
    /// A message left `lag_ns` after its intended time.
    pub fn record_send(&self, lag_ns: u64) {
        record(&self.send, lag_ns);
    }

    /// Wakes every [`HEARTBEAT`] and records how late, until `stop` completes.
    pub async fn watch_timer(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut next = tokio::time::Instant::now() + HEARTBEAT;
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            let now = tokio::time::Instant::now();
            record(
                &self.timer,
                now.saturating_duration_since(next).as_nanos() as u64,
            );
            next = (next + HEARTBEAT).max(now);
        }
    }

    /// Both histograms so far (send, timer), for merging the segments of a split run.
    pub fn histograms(&self) -> (Histogram<u64>, Histogram<u64>) {
        (lock(&self.send).clone(), lock(&self.timer).clone())
    }

    /// The figures so far.
    pub fn figures(&self) -> LoadgenLag {
        LoadgenLag {
            send: LagFigures::of(&lock(&self.send)),
            timer: LagFigures::of(&lock(&self.timer)),
        }
    }
}

fn lock(h: &Mutex<Histogram<u64>>) -> std::sync::MutexGuard<'_, Histogram<u64>> {
    h.lock().unwrap_or_else(|p| p.into_inner())
}

fn record(h: &Mutex<Histogram<u64>>, lag_ns: u64) {
    // Recorded in µs; 0 is below the histogram's lowest value, so at least 1.
    lock(h).saturating_record((lag_ns / 1_000).max(1));
}

/// One lag's percentiles (µs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LagFigures {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl LagFigures {
    fn of(h: &Histogram<u64>) -> LagFigures {
        if h.is_empty() {
            return LagFigures::default();
        }
        LagFigures {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        }
    }
}

/// loadgen's own lag over a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LoadgenLag {
    pub send: LagFigures,
    pub timer: LagFigures,
}

impl LoadgenLag {
    /// The figures of a send-lag and a timer-lag histogram (µs).
    pub fn of(send: &Histogram<u64>, timer: &Histogram<u64>) -> LoadgenLag {
        LoadgenLag {
            send: LagFigures::of(send),
            timer: LagFigures::of(timer),
        }
    }

    /// The larger p99 of the two, in µs: what `max_loadgen_lag` judges.
    pub fn worst_p99_us(&self) -> u64 {
        self.send.p99.max(self.timer.p99)
    }

    /// Whether loadgen could not keep up with its own plan.
    pub fn saturated(&self) -> bool {
        self.worst_p99_us() > SATURATED.as_micros() as u64
    }

    /// In plain words, when loadgen was saturated: that it was, and which findings about
    /// the server may come from it rather than from the server.
    pub fn statement(&self, totals: &Counters) -> Option<String> {
        if !self.saturated() {
            return None;
        }
        let mut suspect = vec!["latency figures (they include loadgen's own lag)".to_string()];
        if totals.unexpected_close_1013 > 0 {
            suspect.push(format!(
                "{} receivers closed by the server with 1013 (loadgen may have read them too slowly)",
                totals.unexpected_close_1013
            ));
        }
        let probes = totals.evictions_probe_late + totals.evictions_unprobed;
        if probes > 0 {
            suspect.push(format!("{probes} relogins with a late or missing probe"));
        }
        // A Close read late looks like a session that was not closed in time.
        let unclosed =
            totals.evictions_late + totals.evictions_missing + totals.evictions_no_survivor;
        if unclosed > 0 {
            suspect.push(format!(
                "{unclosed} relogins whose evictions were seen late or not at all (late, missing, no single survivor)"
            ));
        }
        if totals.lost > 0 {
            suspect.push(format!("{} lost deliveries", totals.lost));
        }
        Some(format!(
            "loadgen was the bottleneck: its own lag p99 was {:.1} ms (sends) and {:.1} ms (its timer), above {} ms; not verified as the server's doing: {}",
            self.send.p99 as f64 / 1000.0,
            self.timer.p99 as f64 / 1000.0,
            SATURATED.as_millis(),
            suspect.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_instrument_says_so_and_names_what_may_come_from_it() {
        let meter = LagMeter::default();
        for _ in 0..100 {
            meter.record_send(200_000); // 0.2 ms
        }
        let calm = meter.figures();
        assert!(!calm.saturated());
        assert_eq!(calm.statement(&Counters::default()), None);
        for _ in 0..10 {
            meter.record_send(30_000_000); // 30 ms
        }
        let busy = meter.figures();
        assert!(busy.saturated(), "{busy:?}");
        let totals = Counters {
            unexpected_close_1013: 3,
            evictions_probe_late: 2,
            ..Counters::default()
        };
        let said = busy.statement(&totals).expect("a statement");
        assert!(said.starts_with("loadgen was the bottleneck"), "{said}");
        assert!(
            said.contains("3 receivers closed by the server with 1013"),
            "{said}"
        );
        assert!(
            said.contains("2 relogins with a late or missing probe"),
            "{said}"
        );
    }

    #[tokio::test]
    async fn the_heartbeat_measures_a_blocked_runtime() {
        let meter = LagMeter::default();
        let stop = tokio::time::sleep(Duration::from_millis(120));
        let watch = meter.watch_timer(stop);
        let block = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            // Hold the (single-threaded) runtime for 40 ms: the heartbeat wakes late.
            std::thread::sleep(Duration::from_millis(40));
        };
        tokio::join!(watch, block);
        let timer = meter.figures().timer;
        assert!(timer.max >= 20_000, "{timer:?}");
    }
}
