//! Capacity reports made up for tests of the report writers, the page and the charts.

use super::{
    Bottleneck, CapacityReport, Conclusion, ProcessUsage, SearchOutcome, StepRecord, UsageSource,
};

#[allow(clippy::too_many_arguments)]
fn step(
    number: usize,
    stage: &'static str,
    users: u32,
    p99_ms: f64,
    met: bool,
    server_cpu: Option<f64>,
    server_rss: Option<u64>,
    machine: Option<f64>,
) -> StepRecord {
    let rate = 50.0;
    let offered = rate * f64::from(users - 1);
    let achieved = if met { offered * 0.999 } else { offered * 0.8 };
    StepRecord {
        number,
        stage,
        level: f64::from(users),
        users,
        rate,
        senders: users,
        offered_deliveries_per_sec: offered,
        achieved_deliveries_per_sec: achieved,
        sent_per_sec: rate,
        p50_ms: p99_ms / 4.0,
        p90_ms: p99_ms / 2.0,
        p99_ms,
        p999_ms: p99_ms * 1.6,
        max_ms: p99_ms * 2.5,
        delivery_ratio: if met { 1.0 } else { 0.97 },
        lost: if met { 0 } else { 1234 },
        errors: 0,
        eviction_failures: 0,
        server: ProcessUsage {
            cpu_percent: server_cpu,
            rss_bytes: server_rss,
        },
        loadgen: ProcessUsage {
            cpu_percent: server_cpu.map(|c| c * 0.6),
            rss_bytes: Some(u64::from(users) * 40_000 + 30_000_000),
        },
        machine_cpu_percent: machine,
        latency_share: p99_ms / 50.0,
        met,
        failures: if met {
            Vec::new()
        } else {
            vec![
                format!("p99 {p99_ms:.1} ms > 50 ms"),
                "delivery ratio 0.97 < 0.999".into(),
            ]
        },
    }
}

/// Eight steps: up 200, 400, 800, 1600 (missed), then bisection 1200, 1400 (the knee),
/// 1500 (missed, first bad); some figures missing.
pub fn sample_report() -> CapacityReport {
    const MB: u64 = 1_000_000;
    let steps = vec![
        step(
            1,
            "step",
            100,
            3.1,
            true,
            Some(22.0),
            Some(40 * MB),
            Some(40.0),
        ),
        step(
            2,
            "step",
            200,
            4.0,
            true,
            Some(41.0),
            Some(52 * MB),
            Some(75.0),
        ),
        step(
            3,
            "step",
            400,
            6.2,
            true,
            Some(80.5),
            Some(71 * MB),
            Some(140.0),
        ),
        step(4, "step", 800, 12.9, true, None, Some(110 * MB), None),
        step(
            5,
            "step",
            1600,
            340.0,
            false,
            Some(390.0),
            Some(260 * MB),
            Some(398.0),
        ),
        step(
            6,
            "bisect",
            1200,
            24.0,
            true,
            Some(250.0),
            Some(160 * MB),
            Some(300.0),
        ),
        step(
            7,
            "bisect",
            1400,
            41.5,
            true,
            Some(330.0),
            None,
            Some(360.0),
        ),
        step(
            8,
            "bisect",
            1500,
            88.0,
            false,
            Some(371.0),
            Some(230 * MB),
            Some(392.0),
        ),
    ];
    CapacityReport {
        name: "chat-users".into(),
        path: "scenarios/capacity-users.toml".into(),
        description: Some("Users at 50 msg/s each, until p99 passes 50 ms".into()),
        grow: "users".into(),
        level_unit: "users",
        objective: vec!["p99 <= 50 ms".into(), "delivery ratio >= 0.999".into()],
        p99_limit_ms: Some(50.0),
        server: "embedded chat-server (fresh process per step)".into(),
        server_usage_source: UsageSource::Proc,
        cores: 4,
        memory_bytes: Some(16 * 1024 * 1024 * 1024),
        warmup_s: 5.0,
        measure_s: 20.0,
        started_at: "2025-01-02T03:04:05Z".into(),
        ended_at: "2025-01-02T03:09:55Z".into(),
        loadgen_version: "0.1.0".into(),
        git_revision: Some("0123abcd".into()),
        steps,
        outcome: SearchOutcome::Knee {
            good: 1400.0,
            bad: 1500.0,
        },
        conclusion: Conclusion {
            headline: "Sustains 1,400 users at 50 msg/s (69,950 deliveries/s) with p99 \
                       41.5 ms; at 1,500 users p99 is 88.0 ms"
                .into(),
            details: vec![
                "The server's CPU ran out: 371% of 400% at the first failing step.".into(),
                "loadgen used 223% CPU on the same machine.".into(),
            ],
            bottleneck: Bottleneck::ServerCpu,
        },
        knee_step: Some(7),
        first_bad_step: Some(8),
        incomplete: None,
        margin: 0.7,
        capacity: Some(super::PublishedCapacity {
            level: 1200.0,
            users: 1200,
            rate: 50.0,
            offered_deliveries_per_sec: 59_950.0,
            runs: 1,
            worst_p99_ms: 30.0,
            worst_latency_share: 0.6,
        }),
        capacity_step: Some(6),
        reproduction: vec![
            reproduction(
                super::procedure::Load::Capacity,
                1200,
                3,
                3,
                28.0,
                31.5,
                &[9, 13, 14],
            ),
            reproduction(
                super::procedure::Load::Knee,
                1400,
                3,
                1,
                44.0,
                55.2,
                &[10, 12, 15],
            ),
            reproduction(
                super::procedure::Load::AboveKnee,
                1680,
                3,
                0,
                90.0,
                140.0,
                &[11, 16, 17],
            ),
        ],
        calibration: Some(crate::calibration::Calibration::of(
            crate::calibration::CalibrationMode::Full,
            crate::calibration::MachineSpeed {
                at: "2025-01-02T03:04:00Z".into(),
                loopback_send_us: 7.21,
                cpu_workload_ms: 812.0,
            },
            Some(crate::calibration::MachineSpeed {
                at: "2025-01-02T03:10:00Z".into(),
                loopback_send_us: 7.3,
                cpu_workload_ms: 820.0,
            }),
        )),
    }
}

fn reproduction(
    load: super::procedure::Load,
    users: u32,
    runs: usize,
    met: usize,
    p99_min_ms: f64,
    p99_max_ms: f64,
    steps: &[usize],
) -> super::Reproduction {
    super::Reproduction {
        load,
        level: f64::from(users),
        users,
        rate: 50.0,
        runs,
        met,
        within_margin: met,
        p99_min_ms,
        p99_max_ms,
        steps: steps.to_vec(),
    }
}

/// A search that ran no step at all.
pub fn empty_report() -> CapacityReport {
    CapacityReport {
        name: "empty".into(),
        description: None,
        git_revision: None,
        memory_bytes: None,
        p99_limit_ms: None,
        objective: Vec::new(),
        server_usage_source: UsageSource::Unknown,
        steps: Vec::new(),
        outcome: SearchOutcome::FailedAtStart { bad: 100.0 },
        conclusion: Conclusion {
            headline: "No step completed.".into(),
            details: Vec::new(),
            bottleneck: Bottleneck::Unknown,
        },
        knee_step: None,
        first_bad_step: None,
        incomplete: None,
        capacity: None,
        capacity_step: None,
        reproduction: Vec::new(),
        calibration: None,
        ..sample_report()
    }
}
