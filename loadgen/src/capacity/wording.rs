//! The words the two human capacity reports (`report.md` and `report.html`) share: the
//! setup, the steps table, how the search ended and what ran out. Both say the same
//! things in the same words because both take them from here.

use super::{Bottleneck, CapacityReport, SearchOutcome, StepRecord, UsageSource};
use crate::page::format::{count, number, short, BYTES_PER_GIB, BYTES_PER_MIB, NONE};

/// What the steps table says above itself.
pub const STEPS_NOTE: &str = "Sorted by offered load (bisection steps ran between \
     the others; # is the order run). The knee is the highest load that met the objective. \
     CPU is in percent of one core; RSS is the peak in the measured window.";

/// The steps sorted by level; ties keep the order run.
pub fn steps_by_level(report: &CapacityReport) -> Vec<&StepRecord> {
    let mut steps: Vec<&StepRecord> = report.steps.iter().collect();
    steps.sort_by(|a, b| a.level.total_cmp(&b.level).then(a.number.cmp(&b.number)));
    steps
}

/// `"knee"` or `"first bad"` for the two steps around the knee.
pub fn step_mark(report: &CapacityReport, step: &StepRecord) -> Option<&'static str> {
    if report.knee_step == Some(step.number) && report.capacity_step == Some(step.number) {
        Some("capacity and knee")
    } else if report.capacity_step == Some(step.number) {
        Some("capacity")
    } else if report.knee_step == Some(step.number) {
        Some("knee")
    } else if report.first_bad_step == Some(step.number) {
        Some("first bad")
    } else {
        None
    }
}

/// Headers of the steps table in the human reports.
pub const STEP_COLUMNS: [&str; 22] = [
    "#",
    "stage",
    "users",
    "rate msg/s",
    "senders",
    "offered deliveries/s",
    "achieved deliveries/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
    "delivery ratio",
    "lost",
    "errors",
    "eviction failures",
    "server CPU %",
    "server RSS MiB",
    "loadgen CPU %",
    "loadgen RSS MiB",
    "machine CPU %",
    "met",
    "failures",
];

/// One step as the cells of the human steps table, as plain text.
pub fn step_cells(step: &StepRecord) -> [String; 22] {
    let optional = |v: Option<f64>| v.map_or(NONE.to_string(), |v| number(v, 1));
    let mib = |v: Option<u64>| v.map_or(NONE.to_string(), |b| number(b as f64 / BYTES_PER_MIB, 1));
    [
        step.number.to_string(),
        step.stage.to_string(),
        count(u64::from(step.users)),
        short(step.rate),
        count(u64::from(step.senders)),
        number(step.offered_deliveries_per_sec, 0),
        number(step.achieved_deliveries_per_sec, 0),
        number(step.p50_ms, 2),
        number(step.p99_ms, 2),
        number(step.p999_ms, 2),
        number(step.max_ms, 2),
        number(step.delivery_ratio, 4),
        count(step.lost),
        count(step.errors),
        count(step.eviction_failures),
        optional(step.server.cpu_percent),
        mib(step.server.rss_bytes),
        optional(step.loadgen.cpu_percent),
        mib(step.loadgen.rss_bytes),
        optional(step.machine_cpu_percent),
        if step.met { "yes" } else { "no" }.to_string(),
        step.failures.join("; "),
    ]
}

/// The setup as label and value, in the order shown.
pub fn setup_rows(report: &CapacityReport) -> Vec<(&'static str, String)> {
    let mut rows = vec![("Capacity file", report.path.clone())];
    if let Some(description) = &report.description {
        rows.push(("Description", description.clone()));
    }
    rows.extend([
        (
            "Grows",
            format!("{} (load measured in {})", report.grow, report.level_unit),
        ),
        ("Result", outcome_text(report)),
        (
            "Published capacity",
            report.capacity.as_ref().map_or_else(
                || "none: no load met the objective with the margin".to_string(),
                |c| format!("{} {}", short(c.level), report.level_unit),
            ),
        ),
        (
            "Margin",
            format!(
                "every run's latency at most {}% of its limit at the published capacity",
                number(report.margin * 100.0, 0)
            ),
        ),
        (
            "Machine calibration",
            report
                .calibration
                .as_ref()
                .map_or_else(|| "not taken (--calibration off)".to_string(), |c| c.line()),
        ),
        ("Server", report.server.clone()),
        (
            "Server figures from",
            usage_source_text(report.server_usage_source).to_string(),
        ),
        ("Logical CPUs", report.cores.to_string()),
        (
            "Memory",
            report.memory_bytes.map_or(NONE.to_string(), |bytes| {
                format!("{} GiB", number(bytes as f64 / BYTES_PER_GIB, 1))
            }),
        ),
        (
            "Each step",
            format!(
                "{} s warm-up (not judged), then {} s measured",
                short(report.warmup_s),
                short(report.measure_s)
            ),
        ),
        ("loadgen version", report.loadgen_version.clone()),
        (
            "Git revision",
            report.git_revision.clone().unwrap_or_else(|| NONE.into()),
        ),
        ("Started", report.started_at.clone()),
        ("Ended", report.ended_at.clone()),
    ]);
    rows
}

/// Headers of the reproduction table.
pub const REPRODUCTION_COLUMNS: [&str; 7] = [
    "load",
    "users",
    "rate msg/s",
    "met the objective",
    "within the margin",
    "p99 range ms",
    "steps",
];

/// One row of the reproduction table, as text cells.
pub fn reproduction_cells(r: &super::Reproduction) -> [String; 7] {
    [
        r.load.as_str().to_string(),
        number(f64::from(r.users), 0),
        super::spec::trim_rate(r.rate),
        format!("{} of {}", r.met, r.runs),
        format!("{} of {}", r.within_margin, r.runs),
        format!("{} – {}", number(r.p99_min_ms, 1), number(r.p99_max_ms, 1)),
        r.steps
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    ]
}

/// What the reproduction table is, in one sentence.
pub const REPRODUCTION_NOTE: &str = "After the search, each load was measured again in interleaved order (round r starts at the r-th load), so that slow drift of the machine hits them alike.";

/// How the search ended, in words.
pub fn outcome_text(report: &CapacityReport) -> String {
    let unit = report.level_unit;
    match report.outcome {
        SearchOutcome::Knee { good, bad } => format!(
            "the objective held at {} {unit} and failed at {} {unit}",
            short(good),
            short(bad)
        ),
        SearchOutcome::HeldToLimit { good } => format!(
            "the objective held at every step, up to the limit of {} {unit}",
            short(good)
        ),
        SearchOutcome::FailedAtStart { bad } => format!(
            "the objective failed already at the first step, {} {unit}",
            short(bad)
        ),
    }
}

fn usage_source_text(source: UsageSource) -> &'static str {
    match source {
        UsageSource::Proc => "/proc of the server process",
        UsageSource::Metrics => "the server's /metrics endpoint",
        UsageSource::Unknown => "not available",
    }
}

/// What ran out, in words.
pub fn bottleneck_text(b: Bottleneck) -> &'static str {
    match b {
        Bottleneck::ServerCpu => "server CPU",
        Bottleneck::LoadgenCpu => "loadgen CPU (the load generator, not the server, was the limit)",
        Bottleneck::MachineCpu => {
            "this machine's CPU, shared about equally by the server and loadgen \
             (the server's own capacity is higher)"
        }
        Bottleneck::ServerMemory => "server memory",
        Bottleneck::LoadgenSchedule => {
            "loadgen's send schedule (the load generator, not the server, was the limit)"
        }
        Bottleneck::NoneExhausted => "none (the objective failed before any resource ran out)",
        Bottleneck::Unknown => "not judged (nothing failed, or no resource figures)",
    }
}
