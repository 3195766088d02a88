//! `loadgen capacity`: find the load at which a server stops meeting its objective (the
//! knee), and write a capacity-planning report that says so in words and charts.
//!
//! A capacity file ([`spec`]) names the dimension to grow (users, message rate, or both
//! along a straight path), where to start, the step and the limit, and the objective (its
//! `[thresholds]`). Each step is a plain `loadgen run` of a scenario built from the file
//! ([`step`]): a warm-up that is played but not judged, then the measured steady phase.
//! [`search`] steps up until the objective fails or the limit is reached, then bisects
//! between the last good and the first bad step. While a step runs, [`crate::resources`]
//! samples the server's and loadgen's CPU and memory, so that [`conclusion`] can say which
//! side ran out — and say plainly when it was the load generator, not the server.
//! [`report`] and [`charts`] write `capacity.csv`, `capacity.json`, `report.md`,
//! `report.html` (self-contained, SVG charts) and `knee.toml`/`above-knee.toml` (plain run
//! scenarios that reproduce the two loads around the knee).

pub mod charts;
pub mod compare;
pub mod conclusion;
pub mod conduct;
#[cfg(test)]
mod fixtures;
pub mod html;
pub mod procedure;
pub mod report;
pub mod search;
pub mod spec;
pub mod step;
pub mod wording;

use serde::Serialize;

pub use crate::resources::ProcessUsage;

/// Where the server's resource figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UsageSource {
    /// `/proc/PID` of a local server process (embedded, `--server`, or `--server-pid`).
    Proc,
    /// `process_cpu_seconds_total` and `process_resident_memory_bytes` from `/metrics`.
    Metrics,
    /// Neither was available.
    Unknown,
}

/// One measured load level: a row of `capacity.csv`.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// Order in which the step ran, from 1.
    pub number: usize,
    /// `"step"` (the upward search), `"bisect"` (refining between good and bad),
    /// `"confirm"` (the knee again), `"margin"` and `"margin-confirm"` (the same for the
    /// published capacity) or `"reproduce"` (the interleaved re-measurement).
    pub stage: &'static str,
    /// The grown dimension's value: users, or msg/s (see [`CapacityReport::level_unit`]).
    pub level: f64,
    /// Simulated users.
    pub users: u32,
    /// Offered messages per second, all senders together.
    pub rate: f64,
    /// Users that send.
    pub senders: u32,
    /// Offered deliveries per second: `rate × (users − 1)` (every message goes to every
    /// other user).
    pub offered_deliveries_per_sec: f64,
    /// Deliveries received per second over the steady window.
    pub achieved_deliveries_per_sec: f64,
    /// Messages sent per second over the steady window (below `rate`: loadgen fell behind).
    pub sent_per_sec: f64,
    /// Delivery latency over the steady window, in ms.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Delivered / expected over the whole step.
    pub delivery_ratio: f64,
    /// Expected deliveries that never arrived.
    pub lost: u64,
    /// Connect errors, unexpected disconnects, duplicates, order errors, foreign and self
    /// deliveries, summed.
    pub errors: u64,
    /// Relogins whose eviction check failed.
    pub eviction_failures: u64,
    /// The server process over the steady window.
    pub server: ProcessUsage,
    /// This loadgen process over the steady window.
    pub loadgen: ProcessUsage,
    /// The whole machine's busy CPU over the steady window, in percent of one core.
    pub machine_cpu_percent: Option<f64>,
    /// The largest share of its limit any latency threshold of the objective reached (p99
    /// 21 ms against 25 ms: 0.84); 0 when the objective has no latency threshold.
    pub latency_share: f64,
    /// Whether every threshold of the objective held and the step ran to its end.
    pub met: bool,
    /// The failed thresholds, e.g. `"p99 71.2 ms > 50 ms"`; or why the step was incomplete.
    pub failures: Vec<String>,
}

/// How the search ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SearchOutcome {
    /// The objective held up to `good` and failed at `bad` (levels; bisected as far as the
    /// search was asked to).
    Knee { good: f64, bad: f64 },
    /// The objective held at every step up to the limit: capacity is at least `good`.
    HeldToLimit { good: f64 },
    /// The objective failed already at the first step: capacity is below `bad`.
    FailedAtStart { bad: f64 },
}

/// Which resource ran out first, judged at the first step that missed the objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bottleneck {
    /// The server's CPU (with the machine's CPUs busy, the server taking the larger part).
    ServerCpu,
    /// loadgen's own CPU: the load generator, not the server, was the limit.
    LoadgenCpu,
    /// This machine's CPU, shared about equally by the server and loadgen: neither can be
    /// said to have run out alone, and the server's own capacity is above the knee.
    MachineCpu,
    /// The server's memory.
    ServerMemory,
    /// loadgen could not keep its send schedule although CPUs were not all busy.
    LoadgenSchedule,
    /// No resource was exhausted: the objective failed for another reason (queues,
    /// latency from contention, protocol errors).
    NoneExhausted,
    /// Not judged: nothing failed, or no resource figures were available.
    Unknown,
}

/// The written conclusion: one headline sentence and the lines that support it.
#[derive(Debug, Clone, Serialize)]
pub struct Conclusion {
    /// E.g. "Sustains 1,400 users at 50 msg/s (69,950 deliveries/s) with p99 21.3 ms; …".
    pub headline: String,
    /// What ran out, and caveats (loadgen as the bottleneck, shared machine, …).
    pub details: Vec<String>,
    pub bottleneck: Bottleneck,
}

/// Everything a capacity search produced, as handed to the report writers.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityReport {
    /// The capacity file's name (file stem unless `name` is set).
    pub name: String,
    /// The capacity file as given on the command line.
    pub path: String,
    pub description: Option<String>,
    /// `"users"`, `"rate"` or `"both"`.
    pub grow: String,
    /// Unit of [`StepRecord::level`]: `"users"` or `"msg/s"`.
    pub level_unit: &'static str,
    /// The objective as text, one threshold per entry (e.g. `"p99 <= 50 ms"`).
    pub objective: Vec<String>,
    /// The p99 limit in ms, if the objective has one (drawn on the latency chart).
    pub p99_limit_ms: Option<f64>,
    /// Where the server ran, e.g. "embedded chat-server (fresh process per step)".
    pub server: String,
    /// Where the server's resource figures came from.
    pub server_usage_source: UsageSource,
    /// Logical CPUs of this machine.
    pub cores: usize,
    /// Physical memory of this machine, bytes (from /proc/meminfo).
    pub memory_bytes: Option<u64>,
    /// Warm-up and measured time of each step, seconds.
    pub warmup_s: f64,
    pub measure_s: f64,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub ended_at: String,
    pub loadgen_version: String,
    pub git_revision: Option<String>,
    /// Every step, in the order run.
    pub steps: Vec<StepRecord>,
    pub outcome: SearchOutcome,
    pub conclusion: Conclusion,
    /// Number of the step at the reported knee (the highest good level), if any.
    pub knee_step: Option<usize>,
    /// Number of the lowest failing step above the knee, if any.
    pub first_bad_step: Option<usize>,
    /// Why the search stopped before its end (Ctrl-C, the server unreachable), if it did.
    pub incomplete: Option<String>,
    /// The share of each latency limit the published capacity's runs may reach.
    pub margin: f64,
    /// The published capacity: the planning figure (the knee is a detail).
    pub capacity: Option<PublishedCapacity>,
    /// Number of a step at the published capacity, if any.
    pub capacity_step: Option<usize>,
    /// The interleaved re-measurement of capacity, knee and above-knee.
    pub reproduction: Vec<Reproduction>,
    /// The machine's speed at the start and the end of the search.
    pub calibration: Option<crate::calibration::Calibration>,
}

/// The highest load at which every run met the objective with the margin.
#[derive(Debug, Clone, Serialize)]
pub struct PublishedCapacity {
    /// In [`CapacityReport::level_unit`].
    pub level: f64,
    pub users: u32,
    /// Total messages per second.
    pub rate: f64,
    pub offered_deliveries_per_sec: f64,
    /// Runs at this load during the search (the reproduction's are in
    /// [`CapacityReport::reproduction`]).
    pub runs: usize,
    /// The worst of those runs: p99 in ms, and the largest share of a latency limit.
    pub worst_p99_ms: f64,
    pub worst_latency_share: f64,
}

/// One load of the reproduction: how often it met the objective when measured again.
#[derive(Debug, Clone, Serialize)]
pub struct Reproduction {
    pub load: procedure::Load,
    pub level: f64,
    pub users: u32,
    pub rate: f64,
    /// Re-measurements run, and how many met the objective.
    pub runs: usize,
    pub met: usize,
    /// How many were also within the margin.
    pub within_margin: usize,
    pub p99_min_ms: f64,
    pub p99_max_ms: f64,
    /// Numbers of the steps (rows of capacity.csv) that measured it.
    pub steps: Vec<usize>,
}
