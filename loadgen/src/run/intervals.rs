//! The measured run, interval by interval: every second the counters and latency
//! recorded since the last tick become a [`ClosedInterval`], until the phases end,
//! Ctrl-C, or the server goes away. Its histograms go to the run's latency log and to
//! whoever watches (the progress line, the live view, a worker's coordinator); only its
//! [`crate::record::IntervalRecord`] is kept, spooled to a file until the run ends
//! ([`RecordSpool`]), so memory does not grow with the run's length.

use std::net::SocketAddr;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::outcome::{Completion, INTERRUPTED};
use super::record_spool::RecordSpool;
use super::server::target_reachable;
use super::state::RunState;
use super::worker_io;
use crate::progress::Progress;
use crate::record::{histogram_text, new_histogram, ClosedInterval, ConnectTimes};
use crate::report::hlog::LatencyLog;
use crate::server_process::ServerProcess;
use crate::target::Target;

/// Length of one report interval.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// One interval's histograms as text ([`histogram_text`]), for a segment's file.
#[derive(Debug, Clone, Default)]
pub struct IntervalTexts {
    pub latency: String,
    /// Login times (tcp, tls, upgrade, mint); `None` without logins.
    pub connect: Option<Vec<String>>,
}

/// The interval records of the measured run, and the latency of every interval that
/// starts after the warm-up.
pub struct Intervals<'r> {
    run: &'r RunState,
    pub measure_start: u64,
    /// Intervals that start within the warm-up are kept in the time series but not judged.
    pub warmup_s: f64,
    pub last_tick: u64,
    /// What the reports keep of each interval, spooled until the run ends.
    pub records: RecordSpool,
    /// Every closed interval's latency histogram.
    pub log: LatencyLog,
    /// A split run's segment only: every interval's histograms as text, for the
    /// segment's file.
    pub texts: Vec<IntervalTexts>,
    keep_texts: bool,
    pub overall: Histogram<u64>,
    /// Every login's times, the ramp's included.
    pub logins: ConnectTimes,
}

impl<'r> Intervals<'r> {
    /// `keep_texts`: a split run's segment, which must hand its intervals' histograms
    /// to the merge.
    pub fn new(run: &'r RunState, measure_start: u64, keep_texts: bool) -> Self {
        Intervals {
            run,
            measure_start,
            warmup_s: run.scenario.warmup.map_or(0.0, |w| w.0.as_secs_f64()),
            last_tick: measure_start,
            records: RecordSpool::new(),
            log: LatencyLog::for_a_run(),
            texts: Vec::new(),
            keep_texts,
            overall: new_histogram(),
            logins: ConnectTimes::default(),
        }
    }

    /// Closes the interval that ends at `now` (run clock): its record is kept, its
    /// histograms are logged and handed back.
    pub fn close(&mut self, now: u64) -> ClosedInterval {
        let (counters, latency) = self.run.recorder.take();
        let connect = self.run.recorder.take_logins();
        if let Some(times) = &connect {
            self.logins.add(times);
        }
        let start_s = (self.last_tick - self.measure_start) as f64 / 1e9;
        if start_s + 0.001 >= self.warmup_s {
            let _ = self.overall.add(&latency);
        }
        let closed = ClosedInterval {
            start_s,
            length_s: now.saturating_sub(self.last_tick) as f64 / 1e9,
            users_online: self.run.online(),
            counters,
            latency,
            connect,
        };
        self.log.append(&closed);
        if self.keep_texts {
            self.texts.push(IntervalTexts {
                latency: histogram_text(&closed.latency),
                connect: closed.connect.as_ref().map(|c| c.to_text()),
            });
        }
        self.records.push(closed.record());
        self.last_tick = now;
        closed
    }
}

/// Closes an interval every second until the phases end, Ctrl-C, or the server goes away.
pub async fn measure(
    run: &RunState,
    intervals: &mut Intervals<'_>,
    progress: &Progress,
    interrupt: &mut (impl std::future::Future<Output = ()> + Unpin),
    mut server: Option<&mut ServerProcess>,
    resolved: &[(Target, SocketAddr)],
    coordinator: Option<&worker_io::Coordinator>,
) -> Completion {
    let phases_end = run
        .plan()
        .last()
        .map_or(intervals.measure_start, |p| p.end_ns);
    let mut next_tick = intervals.measure_start + INTERVAL.as_nanos() as u64;
    loop {
        let phase_name = run
            .plan_at(intervals.last_tick)
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let mut completion = Completion::Complete;
        tokio::select! {
            _ = tokio::time::sleep_until(run.clock.instant_at(next_tick.min(phases_end))) => {}
            _ = &mut *interrupt => completion = Completion::Incomplete(INTERRUPTED.into()),
        }
        let now = run.now_ns();
        let last = intervals.close(now);
        // A split run's segment hands its ledgers to the merge, which has every sender.
        if !intervals.keep_texts {
            run.fold_finished(now, intervals.measure_start);
        }
        // What the run freed goes back to the kernel (procstat::release_free_heap says
        // why), every ten intervals, off the runtime's workers.
        if intervals.records.len().is_multiple_of(10) {
            tokio::task::spawn_blocking(procstat::release_free_heap);
        }
        next_tick = now + INTERVAL.as_nanos() as u64;
        progress.tick(&phase_name, &last, &intervals.overall);
        progress.lag(|| run.lag.figures());
        if let Some(coordinator) = coordinator {
            coordinator.say(&worker_io::tick(intervals.records.len() - 1, &last));
        }
        drop(last);
        if let Some(server) = server.as_deref_mut() {
            if let Some(status) = server.exited() {
                completion = Completion::Incomplete(format!(
                    "the embedded server exited mid-run ({status})"
                ));
            }
        } else if run.online() == 0 && !target_reachable(resolved).await {
            completion =
                Completion::Incomplete("the target stopped accepting connections mid-run".into());
        }
        if completion != Completion::Complete || now >= phases_end {
            return completion;
        }
    }
}
