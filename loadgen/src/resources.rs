//! CPU and memory of the server, of loadgen itself and of the whole machine, sampled while
//! a load runs, so a capacity report can say which side ran out.
//!
//! A local server is read from `/proc/PID/stat` (CPU ticks) and `/proc/PID/statm`
//! (resident pages); a remote one from the standard `process_cpu_seconds_total` and
//! `process_resident_memory_bytes` of its `/metrics`. The machine's busy CPU comes from
//! the first line of `/proc/stat`. A [`Sampler`] reads them every quarter second into a
//! list of timestamped [`Sample`]s; [`window`] turns the samples that cover a time window
//! into CPU percentages (CPU seconds over wall seconds) and peak resident memory.

use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::scrape;

/// CPU and memory of one process over a time window (a capacity step's steady part).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcessUsage {
    /// CPU time over wall time, in percent of one core (200 = two cores busy).
    pub cpu_percent: Option<f64>,
    /// Highest resident set size seen in the window, in bytes.
    pub rss_bytes: Option<u64>,
}

/// How often a [`Sampler`] reads.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// One process at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessSample {
    /// User + system CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

/// Everything read at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: SystemTime,
    pub server: Option<ProcessSample>,
    pub loadgen: Option<ProcessSample>,
    /// Busy CPU seconds of the whole machine (all cores) since boot.
    pub machine_busy_seconds: Option<f64>,
}

/// Where to read the server's figures.
#[derive(Debug, Clone)]
pub enum ServerProbe {
    /// A local process.
    Pid(u32),
    /// A server's `/metrics`.
    Metrics(scrape::MetricsAt),
}

impl ServerProbe {
    async fn read(&self) -> Option<ProcessSample> {
        match self {
            ServerProbe::Pid(pid) => process(*pid),
            ServerProbe::Metrics(at) => {
                let names = ["process_cpu_seconds_total", "process_resident_memory_bytes"];
                let values = scrape::values(at, &names).await?;
                Some(ProcessSample {
                    cpu_seconds: values.first().copied().flatten()?,
                    rss_bytes: values.get(1).copied().flatten()?.max(0.0) as u64,
                })
            }
        }
    }
}

/// Reads a process's CPU and memory from `/proc` (through `procstat`). `None` if it is
/// gone or `/proc` is not there (not Linux).
pub fn process(pid: u32) -> Option<ProcessSample> {
    let usage = procstat::Usage::of_pid(pid);
    Some(ProcessSample {
        cpu_seconds: usage.cpu_seconds?,
        rss_bytes: usage.resident_bytes?,
    })
}

/// loadgen's CPU and memory: this process and its local workers (`--workers`), summed.
fn loadgen_usage(own: u32) -> Option<ProcessSample> {
    let mut total = process(own)?;
    for pid in crate::segment::live_workers() {
        if let Some(worker) = process(pid) {
            total.cpu_seconds += worker.cpu_seconds;
            total.rss_bytes += worker.rss_bytes;
        }
    }
    Some(total)
}

// The workspace's one `/proc` reader, under the names loadgen's callers use.
pub use procstat::{cpu_seconds, machine_busy_seconds, memory_total};

/// Samples in the background until [`Sampler::finish`].
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    /// Starts sampling `server` and loadgen (this process and its `--workers`) every
    /// [`SAMPLE_EVERY`].
    pub fn start(server: ServerProbe) -> Sampler {
        Sampler::every(SAMPLE_EVERY, Some(server))
    }

    /// Starts sampling the server (when there is a way to read it) and loadgen every
    /// `period`; the first sample is taken at once.
    pub fn every(period: Duration, server: Option<ServerProbe>) -> Sampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let own = std::process::id();
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = false;
            while !last {
                tokio::select! {
                    _ = tick.tick() => {}
                    // One more sample at the end, so the last one is the run's end.
                    _ = stopped.wait_for(|s| *s) => last = true,
                }
                let server = match &server {
                    Some(probe) => probe.read().await,
                    None => None,
                };
                samples.push(Sample {
                    at: SystemTime::now(),
                    server,
                    loadgen: loadgen_usage(own),
                    machine_busy_seconds: machine_busy_seconds(),
                });
            }
            samples
        });
        Sampler { stop, task }
    }

    /// Stops sampling and returns every sample, oldest first.
    pub async fn finish(self) -> Vec<Sample> {
        self.stop.send_replace(true);
        self.task.await.unwrap_or_default()
    }
}

/// Usage over `[from, to]`: CPU from the first sample at or after `from` to the last at or
/// before `to`; peak memory of the samples between.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowUsage {
    pub server: ProcessUsage,
    pub loadgen: ProcessUsage,
    pub machine_cpu_percent: Option<f64>,
}

/// Turns samples into usage over a window (see [`WindowUsage`]). Figures that no two
/// samples in the window cover are `None`.
pub fn window(samples: &[Sample], from: SystemTime, to: SystemTime) -> WindowUsage {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= from && s.at <= to)
        .collect();
    let (Some(first), Some(last)) = (inside.first(), inside.last()) else {
        return WindowUsage::default();
    };
    let wall = last
        .at
        .duration_since(first.at)
        .map_or(0.0, |d| d.as_secs_f64());
    let percent = |a: Option<f64>, b: Option<f64>| -> Option<f64> {
        let (a, b) = (a?, b?);
        (wall > 0.0 && b >= a).then(|| (b - a) / wall * 100.0)
    };
    let usage = |pick: fn(&Sample) -> Option<ProcessSample>| ProcessUsage {
        cpu_percent: percent(
            pick(first).map(|p| p.cpu_seconds),
            pick(last).map(|p| p.cpu_seconds),
        ),
        rss_bytes: inside
            .iter()
            .filter_map(|s| pick(s))
            .map(|p| p.rss_bytes)
            .max(),
    };
    WindowUsage {
        server: usage(|s| s.server),
        loadgen: usage(|s| s.loadgen),
        machine_cpu_percent: percent(first.machine_busy_seconds, last.machine_busy_seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_the_machine() {
        let me = process(std::process::id()).expect("this process is in /proc");
        assert!(me.rss_bytes > 0);
        assert!(me.cpu_seconds >= 0.0);
        assert!(machine_busy_seconds().is_some());
        assert!(memory_total().is_some_and(|m| m > 0));
        assert!(process(u32::MAX).is_none());
    }

    #[test]
    fn window_turns_cpu_seconds_into_percent_and_keeps_peak_memory() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let at = |s: f64, cpu: f64, rss: u64| Sample {
            at: t0 + Duration::from_secs_f64(s),
            server: Some(ProcessSample {
                cpu_seconds: cpu,
                rss_bytes: rss,
            }),
            loadgen: None,
            machine_busy_seconds: Some(cpu * 2.0),
        };
        let samples = [
            at(0.0, 0.0, 10),
            at(1.0, 0.5, 30),
            at(2.0, 1.5, 20),
            at(3.0, 2.5, 90),
        ];
        let usage = window(
            &samples,
            t0 + Duration::from_millis(500),
            t0 + Duration::from_millis(2500),
        );
        // From the sample at 1 s to the one at 2 s: 1 CPU second in 1 s.
        assert_eq!(usage.server.cpu_percent, Some(100.0));
        assert_eq!(usage.server.rss_bytes, Some(30));
        assert_eq!(usage.machine_cpu_percent, Some(200.0));
        assert_eq!(usage.loadgen, ProcessUsage::default());
        let empty = window(
            &samples,
            t0 + Duration::from_secs(10),
            t0 + Duration::from_secs(11),
        );
        assert_eq!(empty, WindowUsage::default());
    }
}
