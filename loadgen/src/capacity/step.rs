//! One step of a capacity search: start a fresh server if loadgen runs it, play the step's
//! scenario as a plain `loadgen run` would, sample CPU and memory meanwhile, and reduce
//! the run to a [`StepRecord`].
//!
//! A fresh server per step (embedded or `--server`) keeps the steps independent: no step
//! inherits another's allocations, connections in `TIME_WAIT` or warmed caches, and the
//! server's memory figure is that step's alone. A server given by URL is shared by every
//! step; its figures come from `--server-pid` or its `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use super::StepRecord;
use crate::report::RunReport;
use crate::resources::{self, Sampler, ServerProbe};
use crate::run::{Completion, RunError, RunRequest};
use crate::scenario::Scenario;
use crate::server_process::{Launch, ServerProcess};
use crate::thresholds::{delivery_ratio, ThresholdVerdict};

/// Where the server of every step comes from.
#[derive(Debug, Clone)]
pub enum ServerSource {
    /// Started fresh for every step: the embedded chat-server, or a user's command line;
    /// `true` when it serves TLS (`--wss`: its URL is `wss://`).
    Fresh(Launch, bool),
    /// A running server at these URLs; its CPU and memory from `pid`'s `/proc` when given,
    /// else from the first URL's `/metrics`.
    External {
        urls: Vec<String>,
        addr: SocketAddr,
        pid: Option<u32>,
    },
}

impl ServerSource {
    /// How the report names it.
    pub fn describe(&self) -> String {
        match self {
            ServerSource::Fresh(Launch::Embedded(_), _) => {
                "embedded chat-server (a fresh process per step)".into()
            }
            ServerSource::Fresh(Launch::Command(command), _) => {
                format!("`{command}` (a fresh process per step)")
            }
            ServerSource::External { urls, pid, .. } => match pid {
                Some(pid) => format!("{} (process {pid}, shared by every step)", urls.join(", ")),
                None => format!("{} (shared by every step)", urls.join(", ")),
            },
        }
    }
}

/// Why a step could not be measured at all (the search stops).
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The step cannot run on this machine (too many connections for the open-file limit).
    #[error(transparent)]
    Limits(#[from] crate::nofile::TooManyConnections),
    /// The step's connections would run out of ephemeral ports (or a source cannot reach
    /// its target).
    #[error(transparent)]
    Ports(#[from] crate::ports::PortsError),
    /// The server could not be started or reached.
    #[error("{0}")]
    Unreachable(String),
    /// The login credentials cannot be used, or the protocol cannot be spoken to the server.
    #[error("{0}")]
    Credentials(String),
}

/// What a step produced: its row, and the run behind it.
pub struct Measured {
    pub record: StepRecord,
    pub report: RunReport,
    /// Ctrl-C stopped the step: its row says nothing about the load.
    pub interrupted: bool,
}

/// Runs one step's scenario and measures it.
/// With `workers` above 1 the step runs as that many worker processes, their segment
/// folders under `segments_dir`.
pub async fn measure(
    source: &ServerSource,
    scenario: Scenario,
    scenario_path: &str,
    quiet: bool,
    workers: u32,
    segments_dir: &std::path::Path,
) -> Result<Measured, StepError> {
    let (urls, probe, running) = match source {
        ServerSource::Fresh(launch, wss) => {
            let server = ServerProcess::start(launch)
                .await
                .map_err(|e| StepError::Unreachable(e.to_string()))?;
            let scheme = if *wss { "wss" } else { "ws" };
            let urls = vec![format!("{scheme}://{}/", server.addr)];
            (urls, ServerProbe::Pid(server.pid()), Some(server))
        }
        ServerSource::External { urls, addr, pid } => {
            let probe = match pid {
                Some(pid) => ServerProbe::Pid(*pid),
                None => ServerProbe::Metrics(crate::scrape::MetricsAt {
                    target: urls
                        .first()
                        .and_then(|url| url.parse().ok())
                        .unwrap_or_else(|| crate::target::Target {
                            host: addr.ip().to_string(),
                            port: addr.port(),
                            path: "/".into(),
                            tls: false,
                        }),
                    addr: *addr,
                    tls: crate::tls::TlsClient::new(&scenario.users.tls).ok(),
                }),
            };
            (urls.clone(), probe, None)
        }
    };
    let warmup = scenario.warmup.map_or(Duration::ZERO, |w| w.0);
    let phases: Duration = scenario.phases.iter().map(|p| p.duration.0).sum();
    let offered = Offered::of(&scenario);
    let sampler = Sampler::start(probe);
    let request = RunRequest {
        scenario,
        scenario_path: scenario_path.to_string(),
        targets: urls,
        quiet,
        segment: None,
        source_addresses: Vec::new(),
        live: None,
    };
    let outcome = crate::fleet::run(request, workers, segments_dir).await;
    let samples = sampler.finish().await;
    if let Some(server) = running {
        server.stop(Duration::from_secs(10)).await;
    }
    let (report, completion) = outcome.map_err(|error| match error {
        RunError::Limits(limits) => StepError::Limits(limits),
        RunError::Ports(ports) => StepError::Ports(ports),
        RunError::Unreachable(why) => StepError::Unreachable(why),
        RunError::Credentials(why) => StepError::Credentials(why),
        error @ RunError::ProtocolWithoutTarget(_) => StepError::Credentials(error.to_string()),
    })?;
    let from = report.started_at + warmup;
    let to = report.started_at + phases;
    let usage = resources::window(&samples, from, to);
    let verdicts = report.verdicts();
    let record = record_of(
        &report,
        &completion,
        &verdicts,
        offered,
        (warmup, phases),
        usage,
    );
    Ok(Measured {
        record,
        report,
        interrupted: completion.interrupted(),
    })
}

/// The load a step's scenario offers (its last phase: the measured one).
#[derive(Debug, Clone, Copy)]
struct Offered {
    users: u32,
    rate: f64,
    senders: u32,
}

impl Offered {
    fn of(scenario: &Scenario) -> Offered {
        let users = scenario.users.count;
        let phase = scenario.phases.last();
        Offered {
            users,
            rate: phase.map_or(0.0, |p| {
                p.rate_per_sender(users) * f64::from(p.sender_count(users))
            }),
            senders: phase.map_or(0, |p| p.sender_count(users)),
        }
    }
}

/// Reduces a step's run to its row (number, stage and level are the caller's to set).
fn record_of(
    report: &RunReport,
    completion: &Completion,
    verdicts: &[ThresholdVerdict],
    Offered {
        users,
        rate,
        senders,
    }: Offered,
    (warmup, phases): (Duration, Duration),
    usage: resources::WindowUsage,
) -> StepRecord {
    // The steady window: intervals that start after the warm-up and before the phases
    // end (the last interval, the wind-down, is left out).
    let (warmup_s, end_s) = (warmup.as_secs_f64(), phases.as_secs_f64());
    let steady = report
        .intervals
        .iter()
        .filter(|i| i.start_s + 0.001 >= warmup_s && i.start_s + 0.001 < end_s);
    let (mut delivered, mut sent, mut secs) = (0u64, 0u64, 0.0);
    for interval in steady {
        delivered += interval.counters.delivered;
        sent += interval.counters.sent;
        secs += interval.length_s;
    }
    let per_sec = |n: u64| crate::thresholds::per_sec(n, secs);
    let latency = &report.latency;
    let ms = |q: f64| {
        if latency.is_empty() {
            0.0
        } else {
            latency.value_at_quantile(q) as f64 / 1000.0
        }
    };
    let t = &report.totals;
    let mut failures: Vec<String> = verdicts
        .iter()
        .filter(|v| !v.passed)
        .map(|v| {
            let relation = if v.relation() == ">=" { "<" } else { ">" };
            format!(
                "{} {} {relation} {} {}",
                v.name,
                fmt(v.actual),
                fmt(v.limit),
                v.unit
            )
        })
        .collect();
    if let Completion::Incomplete(why) = completion {
        failures.push(format!("incomplete: {why}"));
    }
    StepRecord {
        number: 0,
        stage: "step",
        level: 0.0,
        users,
        rate,
        senders,
        offered_deliveries_per_sec: rate * f64::from(users.saturating_sub(1)),
        achieved_deliveries_per_sec: per_sec(delivered),
        sent_per_sec: per_sec(sent),
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: if latency.is_empty() {
            0.0
        } else {
            latency.max() as f64 / 1000.0
        },
        delivery_ratio: delivery_ratio(t),
        lost: t.lost,
        errors: t.connect_errors
            + t.unexpected_disconnects
            + t.duplicates
            + t.order_errors
            + t.foreign
            + t.self_deliveries,
        eviction_failures: t.eviction_failures(),
        server: usage.server,
        loadgen: usage.loadgen,
        machine_cpu_percent: usage.machine_cpu_percent,
        latency_share: latency_share(
            &report.thresholds,
            ms(0.50),
            ms(0.90),
            ms(0.99),
            ms(0.999),
            if latency.is_empty() {
                0.0
            } else {
                latency.max() as f64 / 1000.0
            },
        ),
        met: failures.is_empty(),
        failures,
    }
}

/// The largest share of its limit any latency threshold reached (values in ms).
pub fn latency_share(
    thresholds: &crate::thresholds::Thresholds,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
) -> f64 {
    [
        (thresholds.p50, p50),
        (thresholds.p90, p90),
        (thresholds.p99, p99),
        (thresholds.p999, p999),
        (thresholds.max, max),
    ]
    .into_iter()
    .filter_map(|(limit, value)| {
        let limit_ms = limit?.0.as_secs_f64() * 1000.0;
        (limit_ms > 0.0).then(|| value / limit_ms)
    })
    .fold(0.0, f64::max)
}

/// A figure with as many decimals as it needs (up to 3).
fn fmt(value: f64) -> String {
    let text = format!("{value:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
