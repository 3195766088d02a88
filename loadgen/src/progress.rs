//! Live progress: an indicatif spinner line on a terminal; plain lines every five seconds
//! on stderr otherwise (CI logs); nothing with `--quiet`. With `--dashboard`, the same
//! events also go to the run's [`LivePicture`], which the live view serves.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::record::ClosedInterval;
use crate::report::live::LivePicture;

/// The live view of one run.
pub struct Progress {
    mode: Mode,
    users: u64,
    ticks: AtomicU64,
    picture: Option<LivePicture>,
}

enum Mode {
    Quiet,
    Plain,
    Bar(ProgressBar),
}

impl Progress {
    /// Chooses the mode from `quiet` and whether stderr is a terminal.
    pub fn new(quiet: bool, users: u64) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            Mode::Bar(bar)
        } else {
            Mode::Plain
        };
        Progress {
            mode,
            users,
            ticks: AtomicU64::new(0),
            picture: None,
        }
    }

    /// Also tells `picture` (the live view's) what happens.
    pub fn feeding(mut self, picture: Option<LivePicture>) -> Self {
        self.picture = picture;
        self
    }

    /// During the ramp.
    pub fn ramp(&self, connected: u64, failed: u64) {
        if let Some(picture) = &self.picture {
            picture.connecting(connected, failed, self.users);
        }
        let line = format!(
            "connecting: {connected}/{} users, {failed} failed",
            self.users
        );
        self.show(line, false);
    }

    /// After each one-second interval.
    pub fn tick(&self, phase: &str, last: &ClosedInterval, overall: &Histogram<u64>) {
        if let Some(picture) = &self.picture {
            picture.tick(last);
        }
        let c = &last.counters;
        let per_sec = |n: u64| n as f64 / last.length_s.max(1e-9);
        let errors = c.duplicates
            + c.order_errors
            + c.foreign
            + c.self_deliveries
            + c.connect_errors
            + c.unexpected_disconnects;
        let line = format!(
            "{phase}: {} online | {:.0} sent/s | {:.0} deliveries/s | p99 so far {:.2} ms | errors {} | evictions ok {} failed {}",
            last.users_online,
            per_sec(c.sent),
            per_sec(c.delivered),
            overall.value_at_quantile(0.99) as f64 / 1000.0,
            errors,
            c.evictions_ok,
            c.eviction_failures(),
        );
        let n = self.ticks.fetch_add(1, Relaxed);
        self.show(line, n % 5 == 4);
    }

    /// loadgen's own lag so far, for the live view's `/metrics` (only computed when there
    /// is one).
    pub fn lag(&self, lag: impl FnOnce() -> crate::lag::LoadgenLag) {
        if let Some(picture) = &self.picture {
            picture.lag(lag());
        }
    }

    /// Clears the live line.
    pub fn finish(&self) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }

    fn show(&self, line: String, plain_now: bool) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain => {
                if plain_now {
                    eprintln!("{line}");
                }
            }
            Mode::Bar(bar) => bar.set_message(line),
        }
    }
}
