//! The written conclusion of a capacity search: what load the server sustains within the
//! objective, what happens beyond it, and which resource ran out first.
//!
//! The resource is judged at the first step above the knee that missed the objective,
//! from CPU shares of this machine's cores: when the machine's CPUs were nearly all busy,
//! the process that took the larger share ran out — and when that is loadgen, the report
//! says plainly that the load generator, not the server, was the limit, so the knee is a
//! floor for the server. Otherwise memory, then loadgen's send schedule, are looked at; if
//! nothing ran out, the conclusion says so and names the thresholds that failed.

use super::procedure::Load;
use super::wording::bottleneck_text;
use super::{Bottleneck, Conclusion, PublishedCapacity, Reproduction, SearchOutcome, StepRecord};
use crate::calibration::Calibration;
use crate::page::format::thousands;

/// Share of all cores above which the machine's CPU counts as exhausted.
const MACHINE_BUSY: f64 = 0.85;
/// A single-threaded server saturates one core: CPU at least this share of one core,
/// on a machine with more than one.
const ONE_CORE_BUSY: f64 = 0.90;
/// Share of physical memory above which the server's memory counts as exhausted.
const MEMORY_FULL: f64 = 0.80;
/// Messages sent below this share of the offered rate: loadgen fell behind its schedule.
const SCHEDULE_KEPT: f64 = 0.95;
/// Server and loadgen CPU closer than this share of the larger count as an even split.
const EVEN_SHARES: f64 = 0.15;
/// Share of all cores used by other processes above which the step counts as disturbed.
const OTHERS_NOTABLE: f64 = 0.20;
/// loadgen's share of the machine's CPU above which a server-bound result carries a caveat.
const LOADGEN_SHARE_NOTABLE: f64 = 0.30;

/// What the conclusion needs to know besides the steps.
pub struct Context<'a> {
    /// `"users"` or `"msg/s"`.
    pub level_unit: &'a str,
    /// Logical CPUs of the machine.
    pub cores: usize,
    /// Physical memory, bytes.
    pub memory_bytes: Option<u64>,
    /// The search stopped before its end (a held limit is then not the limit).
    pub cut_short: bool,
}

/// Writes the conclusion. `knee` is the highest good step, `bad` the lowest failing step
/// above it (both indexes into `steps`).
pub fn conclude(
    steps: &[StepRecord],
    outcome: &SearchOutcome,
    knee: Option<usize>,
    bad: Option<usize>,
    context: &Context,
) -> Conclusion {
    let knee = knee.and_then(|i| steps.get(i));
    let bad = bad.and_then(|i| steps.get(i));
    let mut details = Vec::new();
    let bottleneck = match bad {
        Some(bad) => judge(bad, context, &mut details),
        None => Bottleneck::Unknown,
    };
    let headline = match (outcome, knee, bad) {
        (SearchOutcome::Knee { .. }, Some(knee), Some(bad)) => {
            let above = percent_above(knee, bad, context.level_unit);
            format!(
                "Sustains {} within the objective ({}). Beyond that, at {} ({above}), {}. First resource exhausted: {}.",
                load(knee),
                knee_latency(steps, knee),
                load(bad),
                what_failed(bad),
                bottleneck_text(bottleneck),
            )
        }
        (SearchOutcome::HeldToLimit { .. }, Some(knee), _) if context.cut_short => format!(
            "Sustained {} within the objective ({}) before the search was cut short: the knee was not reached.",
            load(knee),
            knee_latency(steps, knee),
        ),
        (SearchOutcome::HeldToLimit { .. }, Some(knee), _) => format!(
            "Sustains {} within the objective ({}), the limit of the search: no knee below it. Raise the limit to find where it breaks.",
            load(knee),
            knee_latency(steps, knee),
        ),
        (SearchOutcome::FailedAtStart { .. }, _, Some(bad)) => format!(
            "Misses the objective already at the first step, {}: {}. First resource exhausted: {}. Lower the start to find the knee.",
            load(bad),
            what_failed(bad),
            bottleneck_text(bottleneck),
        ),
        _ if context.cut_short => {
            "The search was cut short before any step completed: no conclusion.".into()
        }
        _ => "The search measured no step to completion: no conclusion.".into(),
    };
    if let Some(knee) = knee {
        if let Some(rss) = knee.server.rss_bytes {
            let per_user = rss / u64::from(knee.users.max(1));
            details.push(format!(
                "Server memory at the knee: {} MiB resident ({} KiB per user).",
                rss >> 20,
                per_user >> 10
            ));
        }
        if knee.sent_per_sec < knee.rate * SCHEDULE_KEPT && knee.rate > 0.0 {
            details.push(format!(
                "At the knee loadgen sent {:.1} msg/s of the {:.1} offered: its own schedule slipped, so treat the knee with care.",
                knee.sent_per_sec, knee.rate
            ));
        }
        let unsteady: Vec<String> = steps
            .iter()
            .filter(|s| !s.met && s.level < knee.level)
            .map(|s| format!("step {} ({})", s.number, load(s)))
            .collect();
        if !unsteady.is_empty() {
            details.push(format!(
                "Not monotonic: {} missed the objective at a lower load than the knee; the system (or this machine) is noisy near the knee — repeat the search before relying on it.",
                unsteady.join(", ")
            ));
        }
    }
    Conclusion {
        headline,
        details,
        bottleneck,
    }
}

/// What the published conclusion says besides the knee's.
pub struct Publication<'a> {
    pub capacity: Option<&'a PublishedCapacity>,
    /// The knee's step.
    pub knee: Option<&'a StepRecord>,
    pub margin: f64,
    /// The margin applies to latency thresholds only.
    pub objective_has_latency: bool,
    pub reproduction: &'a [Reproduction],
    pub calibration: Option<&'a Calibration>,
    pub capacity_is_knee: bool,
    /// The search stopped before the capacity could be published.
    pub cut_short: bool,
}

/// Puts the published capacity in the headline, the knee's conclusion under it, then the
/// reproduction and the machine calibration.
pub fn publish(knee: Conclusion, p: &Publication) -> Conclusion {
    let margin = format!(
        "every run's latency at most {:.0}% of its limit",
        p.margin * 100.0
    );
    let row = |load: Load| p.reproduction.iter().find(|r| r.load == load);
    let mut details = Vec::new();
    let headline = match (p.capacity, p.knee) {
        (Some(capacity), _) => {
            let reproduced = match row(if p.capacity_is_knee {
                Load::Knee
            } else {
                Load::Capacity
            }) {
                Some(r) if r.met == r.runs => format!(
                    "; it met the objective in {} (p99 {})",
                    all_reruns(r.runs),
                    p99_range(r)
                ),
                Some(r) => format!(
                    "; but it met the objective in only {} of {} interleaved re-runs (p99 {}): treat it with care, or search again with a larger margin",
                    r.met,
                    r.runs,
                    p99_range(r)
                ),
                None => String::new(),
            };
            let machine = p.calibration.map_or(String::new(), |c| {
                let speed = c.typical();
                format!(
                    " Measured on a machine calibrated at loopback send {:.2} µs, CPU workload {:.0} ms.",
                    speed.loopback_send_us, speed.cpu_workload_ms
                )
            });
            let within = if p.objective_has_latency {
                format!(
                    "{margin} (worst p99 {} ms in {} run{})",
                    ms(capacity.worst_p99_ms),
                    capacity.runs,
                    if capacity.runs == 1 { "" } else { "s" }
                )
            } else {
                "the objective has no latency threshold, so the margin does not apply".into()
            };
            format!(
                "Capacity: {} users at {} msg/s ({} deliveries/s), with {within}{reproduced}.{machine}",
                thousands(f64::from(capacity.users)),
                super::spec::trim_rate(capacity.rate),
                thousands(capacity.offered_deliveries_per_sec),
            )
        }
        (None, _) if p.cut_short => knee.headline.clone(),
        (None, Some(_)) => format!(
            "No published capacity: no load met the objective with {margin}. {}",
            knee.headline
        ),
        (None, None) => knee.headline.clone(),
    };
    if p.capacity.is_some() {
        details.push(format!(
            "Knee (the highest load that met the objective in every run, without margin): {}",
            knee.headline
        ));
    }
    if let Some(r) = row(Load::Knee) {
        if r.met < r.runs {
            details.push(format!(
                "The knee did not reproduce: {} users met the objective in {} of {} interleaved re-runs (p99 {}). It is the highest load that happened to pass during the search, not a planning figure.",
                thousands(f64::from(r.users)),
                r.met,
                r.runs,
                p99_range(r)
            ));
        } else {
            details.push(format!(
                "The knee reproduced: {} users met the objective in {} (p99 {}).",
                thousands(f64::from(r.users)),
                all_reruns(r.runs),
                p99_range(r)
            ));
        }
    }
    if let Some(r) = row(Load::AboveKnee) {
        let words = if r.met == r.runs {
            "the knee is conservative: the search's knee was below what this load met"
        } else if r.met == 0 {
            "as expected above the knee"
        } else {
            "the objective's boundary is noisy here"
        };
        details.push(format!(
            "Above the knee, {} users met the objective in {} of {} re-runs (p99 {}): {words}.",
            thousands(f64::from(r.users)),
            r.met,
            r.runs,
            p99_range(r)
        ));
    }
    if let Some(c) = p.calibration {
        details.push(format!("Machine calibration: {}.", c.line()));
    }
    details.extend(knee.details);
    Conclusion {
        headline,
        details,
        bottleneck: knee.bottleneck,
    }
}

/// "all 3 interleaved re-runs", or "its one re-run".
fn all_reruns(runs: usize) -> String {
    if runs == 1 {
        "its one re-run".into()
    } else {
        format!("all {runs} interleaved re-runs")
    }
}

/// "16.2–18.9 ms", or one value when the runs agree.
fn p99_range(r: &Reproduction) -> String {
    if (r.p99_max_ms - r.p99_min_ms).abs() < 0.05 {
        format!("{} ms", ms(r.p99_max_ms))
    } else {
        format!("{}–{} ms", ms(r.p99_min_ms), ms(r.p99_max_ms))
    }
}

/// Decides what ran out at a failing step, adding the figures behind the decision.
fn judge(step: &StepRecord, context: &Context, details: &mut Vec<String>) -> Bottleneck {
    let all = context.cores.max(1) as f64 * 100.0;
    let server = step.server.cpu_percent;
    let loadgen = step.loadgen.cpu_percent;
    let machine = step
        .machine_cpu_percent
        .or_else(|| Some(server? + loadgen?));
    let pct = |v: Option<f64>| v.map_or("unknown".to_string(), |v| format!("{v:.0}%"));
    details.push(format!(
        "At {}: server CPU {}, loadgen CPU {}, whole machine {} (100% = one core; this machine has {} cores).",
        load(step),
        pct(server),
        pct(loadgen),
        pct(machine),
        context.cores
    ));
    if let (Some(machine), Some(s), Some(l)) = (machine, server, loadgen) {
        let others = machine - s - l;
        if others >= all * OTHERS_NOTABLE {
            details.push(format!(
                "Other processes on this machine used {others:.0}% CPU during this step: the figures are disturbed; repeat the search on a quiet machine."
            ));
        }
    }
    if let Some(machine) = machine {
        if machine >= all * MACHINE_BUSY {
            let (server, loadgen) = (server.unwrap_or(0.0), loadgen.unwrap_or(0.0));
            if (server - loadgen).abs() <= server.max(loadgen) * EVEN_SHARES {
                details.push(format!(
                    "The machine's CPU ran out, shared about equally: the server used {server:.0}% and loadgen {loadgen:.0}%. The load generator took as much as the server, so the server's own capacity is above this knee; run loadgen on another machine to measure it alone."
                ));
                return Bottleneck::MachineCpu;
            }
            if loadgen > server {
                details.push(format!(
                    "The load generator, not the server, was the bottleneck: loadgen used {loadgen:.0}% CPU against the server's {server:.0}% on a machine with no CPU to spare. The server's real capacity is above this knee; run loadgen on another machine (or several) to measure it."
                ));
                return Bottleneck::LoadgenCpu;
            }
            if loadgen >= machine * LOADGEN_SHARE_NOTABLE {
                details.push(format!(
                    "loadgen shared the machine and used {loadgen:.0}% CPU ({:.0}% of what was busy); with the server on a machine of its own the knee would be higher.",
                    loadgen / machine * 100.0
                ));
            }
            return Bottleneck::ServerCpu;
        }
    }
    if let Some(server) = server {
        if context.cores > 1 && (ONE_CORE_BUSY * 100.0..=115.0).contains(&server) {
            details.push(format!(
                "The server used one core ({server:.0}%) while others were free: it looks single-threaded (or serialised on one lock or task)."
            ));
            return Bottleneck::ServerCpu;
        }
    }
    if let (Some(rss), Some(total)) = (step.server.rss_bytes, context.memory_bytes) {
        if rss as f64 >= total as f64 * MEMORY_FULL {
            details.push(format!(
                "The server's resident memory reached {} MiB of {} MiB.",
                rss >> 20,
                total >> 20
            ));
            return Bottleneck::ServerMemory;
        }
    }
    if step.rate > 0.0 && step.sent_per_sec < step.rate * SCHEDULE_KEPT {
        details.push(format!(
            "loadgen sent only {:.1} of the {:.1} msg/s offered although CPUs were not all busy: the load generator could not keep its schedule, so this knee is a floor for the server.",
            step.sent_per_sec, step.rate
        ));
        return Bottleneck::LoadgenSchedule;
    }
    if server.is_none() && machine.is_none() {
        details.push(
            "No CPU figures: the server is not a local process and its /metrics has no process_cpu_seconds_total (give --server-pid when it runs on this machine)."
                .into(),
        );
        return Bottleneck::Unknown;
    }
    details.push(format!(
        "No resource was exhausted; the objective failed on its own terms ({}). Look for queueing, locks or per-connection limits in the server.",
        what_failed(step)
    ));
    Bottleneck::NoneExhausted
}

/// "1,400 users at 50 msg/s (69,950 deliveries/s)".
fn load(step: &StepRecord) -> String {
    format!(
        "{} users at {} msg/s ({} deliveries/s)",
        thousands(f64::from(step.users)),
        super::spec::trim_rate(step.rate),
        thousands(step.offered_deliveries_per_sec)
    )
}

/// "p99 43.6 ms" for a knee measured once, "p99 up to 47.2 ms in 3 runs" when the knee
/// was confirmed (the worst of its runs: a plain run at that load is judged alone).
fn knee_latency(steps: &[StepRecord], knee: &StepRecord) -> String {
    let runs: Vec<f64> = steps
        .iter()
        .filter(|s| s.level == knee.level && s.met)
        .map(|s| s.p99_ms)
        .collect();
    let worst = runs.iter().copied().fold(knee.p99_ms, f64::max);
    if runs.len() > 1 {
        format!("p99 up to {} ms in {} runs", ms(worst), runs.len())
    } else {
        format!("p99 {} ms", ms(worst))
    }
}

/// "p99 rises to 71.2 ms" or the failed thresholds.
fn what_failed(step: &StepRecord) -> String {
    let latency_only =
        !step.failures.is_empty() && step.failures.iter().all(|f| f.starts_with("p99 "));
    if latency_only {
        format!("p99 rises to {} ms", ms(step.p99_ms))
    } else if step.failures.is_empty() {
        "the objective fails".into()
    } else {
        format!(
            "the objective fails ({}; p99 {} ms)",
            step.failures.join("; "),
            ms(step.p99_ms)
        )
    }
}

fn percent_above(knee: &StepRecord, bad: &StepRecord, unit: &str) -> String {
    if knee.level > 0.0 {
        format!("+{:.0}% {unit}", (bad.level / knee.level - 1.0) * 100.0)
    } else {
        format!("{} {unit}", bad.level)
    }
}

fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::super::ProcessUsage;
    use super::*;

    fn step(users: u32, p99: f64, server_cpu: f64, loadgen_cpu: f64, met: bool) -> StepRecord {
        StepRecord {
            number: 1,
            stage: "step",
            level: f64::from(users),
            users,
            rate: 50.0,
            senders: 10,
            offered_deliveries_per_sec: 50.0 * f64::from(users - 1),
            achieved_deliveries_per_sec: 50.0 * f64::from(users - 1),
            sent_per_sec: 50.0,
            p50_ms: p99 / 2.0,
            p90_ms: p99 / 1.5,
            p99_ms: p99,
            p999_ms: p99 * 1.2,
            max_ms: p99 * 1.5,
            delivery_ratio: 1.0,
            lost: 0,
            errors: 0,
            eviction_failures: 0,
            server: ProcessUsage {
                cpu_percent: Some(server_cpu),
                rss_bytes: Some(64 << 20),
            },
            loadgen: ProcessUsage {
                cpu_percent: Some(loadgen_cpu),
                rss_bytes: Some(32 << 20),
            },
            machine_cpu_percent: Some(server_cpu + loadgen_cpu + 5.0),
            latency_share: p99 / 50.0,
            met,
            failures: if met {
                vec![]
            } else {
                vec![format!("p99 {p99} > 50 ms")]
            },
        }
    }

    fn context() -> Context<'static> {
        Context {
            level_unit: "users",
            cores: 2,
            memory_bytes: Some(24 << 30),
            cut_short: false,
        }
    }

    fn conclude_pair(good: StepRecord, bad: StepRecord) -> Conclusion {
        let outcome = SearchOutcome::Knee {
            good: good.level,
            bad: bad.level,
        };
        conclude(&[good, bad], &outcome, Some(0), Some(1), &context())
    }

    #[test]
    fn a_busy_machine_with_the_server_taking_most_is_server_cpu() {
        let c = conclude_pair(
            step(1000, 20.0, 90.0, 60.0, true),
            step(1200, 80.0, 110.0, 70.0, false),
        );
        assert_eq!(c.bottleneck, Bottleneck::ServerCpu);
        assert!(
            c.headline
                .starts_with("Sustains 1,000 users at 50 msg/s (49,950 deliveries/s)"),
            "{}",
            c.headline
        );
        assert!(
            c.headline.contains("p99 rises to 80.0 ms"),
            "{}",
            c.headline
        );
        assert!(c.headline.contains("+20% users"), "{}", c.headline);
        assert!(
            c.details
                .iter()
                .any(|d| d.contains("loadgen shared the machine")),
            "{:?}",
            c.details
        );
        assert!(
            !c.details.iter().any(|d| d.contains("Other processes")),
            "{:?}",
            c.details
        );
    }

    #[test]
    fn other_processes_taking_cpu_are_named() {
        let mut bad = step(1200, 80.0, 50.0, 50.0, false);
        bad.machine_cpu_percent = Some(190.0);
        let c = conclude_pair(step(1000, 20.0, 40.0, 40.0, true), bad);
        assert!(
            c.details
                .iter()
                .any(|d| d.contains("Other processes on this machine used 90%")),
            "{:?}",
            c.details
        );
    }

    #[test]
    fn loadgen_taking_most_of_a_busy_machine_is_said_plainly() {
        let c = conclude_pair(
            step(1000, 20.0, 60.0, 100.0, true),
            step(1200, 80.0, 70.0, 115.0, false),
        );
        assert_eq!(c.bottleneck, Bottleneck::LoadgenCpu);
        assert!(c
            .headline
            .contains("loadgen CPU (the load generator, not the server, was the limit)"));
        assert!(c
            .details
            .iter()
            .any(|d| d.contains("not the server, was the bottleneck")));
    }

    #[test]
    fn an_even_split_of_a_busy_machine_blames_neither_alone() {
        let c = conclude_pair(
            step(1000, 20.0, 80.0, 80.0, true),
            step(1200, 80.0, 99.0, 97.0, false),
        );
        assert_eq!(c.bottleneck, Bottleneck::MachineCpu);
        assert!(
            c.headline.contains("shared about equally"),
            "{}",
            c.headline
        );
        assert!(c
            .details
            .iter()
            .any(|d| d.contains("server's own capacity is above this knee")));
    }

    #[test]
    fn one_busy_core_on_a_quiet_machine_is_a_single_threaded_server() {
        let c = conclude_pair(
            step(1000, 20.0, 80.0, 20.0, true),
            step(1200, 80.0, 99.0, 25.0, false),
        );
        assert_eq!(c.bottleneck, Bottleneck::ServerCpu);
        assert!(c.details.iter().any(|d| d.contains("single-threaded")));
    }

    #[test]
    fn a_slipping_schedule_on_a_quiet_machine_is_loadgen() {
        let mut bad = step(1200, 80.0, 40.0, 40.0, false);
        bad.sent_per_sec = 30.0;
        let c = conclude_pair(step(1000, 20.0, 30.0, 30.0, true), bad);
        assert_eq!(c.bottleneck, Bottleneck::LoadgenSchedule);
    }

    #[test]
    fn memory_and_nothing_at_all_are_told_apart() {
        let mut bad = step(1200, 80.0, 40.0, 40.0, false);
        bad.server.rss_bytes = Some(20 << 30);
        let c = conclude_pair(step(1000, 20.0, 30.0, 30.0, true), bad);
        assert_eq!(c.bottleneck, Bottleneck::ServerMemory);
        let mut lossy = step(1200, 10.0, 40.0, 40.0, false);
        lossy.failures = vec!["min_delivery_ratio 0.9 < 1 ratio".into()];
        let c = conclude_pair(step(1000, 20.0, 30.0, 30.0, true), lossy);
        assert_eq!(c.bottleneck, Bottleneck::NoneExhausted);
        assert!(c.headline.contains("min_delivery_ratio"), "{}", c.headline);
    }

    #[test]
    fn no_knee_and_no_good_step_have_their_own_headlines() {
        let good = step(1000, 20.0, 30.0, 30.0, true);
        let c = conclude(
            &[good],
            &SearchOutcome::HeldToLimit { good: 1000.0 },
            Some(0),
            None,
            &context(),
        );
        assert!(
            c.headline.contains("the limit of the search"),
            "{}",
            c.headline
        );
        let cut = Context {
            cut_short: true,
            ..context()
        };
        let held = [step(1000, 20.0, 30.0, 30.0, true)];
        let c = conclude(
            &held,
            &SearchOutcome::HeldToLimit { good: 1000.0 },
            Some(0),
            None,
            &cut,
        );
        assert!(c.headline.contains("cut short"), "{}", c.headline);
        assert_eq!(c.bottleneck, Bottleneck::Unknown);
        let bad = step(100, 80.0, 30.0, 30.0, false);
        let c = conclude(
            &[bad],
            &SearchOutcome::FailedAtStart { bad: 100.0 },
            None,
            Some(0),
            &context(),
        );
        assert!(
            c.headline.starts_with("Misses the objective already"),
            "{}",
            c.headline
        );
        let c = conclude(
            &[],
            &SearchOutcome::FailedAtStart { bad: 0.0 },
            None,
            None,
            &context(),
        );
        assert!(c.headline.contains("no conclusion"));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.4), "1,234,567");
    }
}
