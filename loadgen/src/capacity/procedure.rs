//! The whole order of measurements of a capacity search: the knee, then the published
//! capacity with its margin, then the interleaved reproduction.
//!
//! The knee ([`KneeSearch`]) is the highest load that met the objective in every run. It
//! is not a planning figure: near the knee a latency percentile sits just under its limit,
//! so a plain run an hour later — with the machine a few percent slower, or just unlucky —
//! misses it about as often as it meets it. The *published capacity* is the highest load
//! at which every run met the objective **with a margin**: each latency threshold's worst
//! value at most `margin` × its limit (0.8 by default; see `scenarios/README.md` for the
//! measurements behind it). It is found by a second bisection, between the highest load
//! whose runs so far were all within the margin and the lowest that was not, reusing every
//! measurement already taken, and confirmed like the knee.
//!
//! Then capacity, knee and 20% above the knee are each measured `reproduce` more times in
//! interleaved order (a Latin square: round `r` starts at the `r`-th load), so slow drift
//! of the machine hits all three alike and the report can give each one's pass rate.
//!
//! Like [`KneeSearch`], [`Procedure`] is a plain state machine — [`Procedure::next_measurement`] says
//! what to measure, [`Procedure::record`] takes the verdict — so it is tested against a
//! simulated noisy system with drift, and the command drives it with real steps.

use super::search::{Found, KneeSearch, Stage};

/// Default share of each latency limit the published capacity's worst run may reach.
pub const DEFAULT_MARGIN: f64 = 0.7;

/// Default number of interleaved re-measurements of each load after the search.
pub const DEFAULT_REPRODUCE: u32 = 3;

/// The load `above-knee.toml` offers, as a multiple of the knee.
pub const ABOVE_KNEE: f64 = 1.2;

/// A load the reproduction measures again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Load {
    /// The published capacity.
    Capacity,
    /// The knee.
    Knee,
    /// [`ABOVE_KNEE`] × the knee.
    AboveKnee,
}

impl Load {
    pub fn as_str(self) -> &'static str {
        match self {
            Load::Capacity => "capacity",
            Load::Knee => "knee",
            Load::AboveKnee => "above-knee",
        }
    }
}

/// What to measure next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    /// A position on the capacity path, for the knee or the margin search.
    Search { k: f64, stage: Stage },
    /// One of the three loads again (`round` counts from 1).
    Reproduce { load: Load, round: u32 },
}

/// The verdict of one measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Every threshold of the objective held (and the step ran to its end).
    pub met: bool,
    /// The largest share of its limit any latency threshold reached (p99 21 ms against
    /// 25 ms is 0.84); 0 when the objective has no latency threshold.
    pub latency_share: f64,
}

impl Verdict {
    /// Met, with every latency threshold at most `margin` of its limit.
    pub fn within(&self, margin: f64) -> bool {
        self.met && self.latency_share <= margin
    }
}

/// The settings of a procedure.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The last position on the path.
    pub last_k: f64,
    /// Positions closer than this offer the same load.
    pub resolution: f64,
    pub bisections: u32,
    pub confirm: u32,
    /// Share of each latency limit the published capacity may reach.
    pub margin: f64,
    pub reproduce: u32,
}

/// Where the published capacity ended up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Published {
    /// At this position: every run there met the objective within the margin.
    At(f64),
    /// No measured load met the objective with the margin.
    None,
}

enum Phase {
    Knee(KneeSearch),
    Margin(KneeSearch),
    Reproduce,
    Done,
}

/// The procedure's state.
pub struct Procedure {
    settings: Settings,
    phase: Phase,
    /// Every search measurement: position and verdict.
    history: Vec<(f64, Verdict)>,
    knee: Option<Found>,
    published: Option<Published>,
    /// The reproduction's plan and how far it got.
    plan: Vec<(Load, u32)>,
    done: usize,
    pending: Option<Next>,
    /// Every reproduction measurement.
    reproduced: Vec<(Load, Verdict)>,
}

impl Procedure {
    pub fn new(settings: Settings) -> Procedure {
        Procedure {
            phase: Phase::Knee(KneeSearch::new(
                settings.last_k,
                settings.resolution,
                settings.bisections,
                settings.confirm,
            )),
            settings,
            history: Vec::new(),
            knee: None,
            published: None,
            plan: Vec::new(),
            done: 0,
            pending: None,
            reproduced: Vec::new(),
        }
    }

    /// What to measure next, or `None` when the procedure is over.
    pub fn next_measurement(&mut self) -> Option<Next> {
        if let Some(pending) = self.pending {
            return Some(pending);
        }
        loop {
            let next = match &mut self.phase {
                Phase::Knee(search) => match search.next_load() {
                    Some((k, stage)) => Some(Next::Search { k, stage }),
                    None => {
                        let found = search.found();
                        self.knee = Some(found);
                        self.phase = self.margin_phase(found);
                        continue;
                    }
                },
                Phase::Margin(search) => match search.next_load() {
                    Some((k, stage)) => Some(Next::Search {
                        k,
                        stage: match stage {
                            Stage::Confirm => Stage::MarginConfirm,
                            _ => Stage::Margin,
                        },
                    }),
                    None => {
                        self.published = Some(match search.found() {
                            Found::Knee { good, .. } | Found::HeldToLimit { good } => {
                                Published::At(good)
                            }
                            Found::FailedAtStart { .. } => Published::None,
                        });
                        self.start_reproduction();
                        continue;
                    }
                },
                Phase::Reproduce => match self.plan.get(self.done) {
                    Some(&(load, round)) => Some(Next::Reproduce { load, round }),
                    None => {
                        self.phase = Phase::Done;
                        None
                    }
                },
                Phase::Done => None,
            };
            self.pending = next;
            return next;
        }
    }

    /// The verdict of what [`Procedure::next_measurement`] returned.
    pub fn record(&mut self, verdict: Verdict) {
        let Some(next) = self.pending.take() else {
            return;
        };
        match next {
            Next::Search { k, .. } => {
                self.history.push((k, verdict));
                match &mut self.phase {
                    Phase::Knee(search) => search.record(verdict.met),
                    Phase::Margin(search) => search.record(verdict.within(self.settings.margin)),
                    _ => {}
                }
            }
            Next::Reproduce { load, .. } => {
                self.reproduced.push((load, verdict));
                self.done += 1;
            }
        }
    }

    /// After the knee: the margin search between the highest position whose every run
    /// was within the margin and the lowest that was not, or straight to reproduction
    /// when the knee itself is within it.
    fn margin_phase(&mut self, knee: Found) -> Phase {
        let knee_k = match knee {
            Found::Knee { good, .. } | Found::HeldToLimit { good } => good,
            Found::FailedAtStart { .. } => {
                self.published = Some(Published::None);
                return Phase::Done;
            }
        };
        let margin = self.settings.margin;
        let lowest_outside = self
            .history
            .iter()
            .filter(|(_, v)| !v.within(margin))
            .map(|&(k, _)| k)
            .fold(f64::INFINITY, f64::min);
        if lowest_outside > knee_k {
            self.published = Some(Published::At(knee_k));
            self.start_reproduction();
            return Phase::Reproduce;
        }
        let mut goods: Vec<f64> = self
            .history
            .iter()
            .map(|&(k, _)| k)
            .filter(|&k| k < lowest_outside)
            .collect();
        goods.sort_by(f64::total_cmp);
        goods.dedup();
        let highest = goods.last().copied();
        let confirmed = highest.map_or(0, |g| {
            let runs = self.history.iter().filter(|(k, _)| *k == g).count() as u32;
            runs.saturating_sub(1)
        });
        let search = KneeSearch::between(
            goods,
            lowest_outside,
            self.settings.resolution,
            self.settings.bisections,
            self.settings.confirm,
            confirmed,
        );
        Phase::Margin(search)
    }

    /// Plans the interleaved reproduction of the loads there are.
    fn start_reproduction(&mut self) {
        self.phase = Phase::Reproduce;
        let mut loads = Vec::new();
        let knee_k = match self.knee {
            Some(Found::Knee { good, .. }) => Some((good, true)),
            Some(Found::HeldToLimit { good }) => Some((good, false)),
            _ => None,
        };
        if let Some(Published::At(k)) = self.published {
            if knee_k.is_none_or(|(knee, _)| (knee - k).abs() > 1e-9) {
                loads.push(Load::Capacity);
            }
        }
        if let Some((_, above_measurable)) = knee_k {
            loads.push(Load::Knee);
            // Above a knee held to the limit lies beyond what the file allows.
            if above_measurable {
                loads.push(Load::AboveKnee);
            }
        }
        self.plan.clear();
        if loads.is_empty() {
            return;
        }
        for round in 0..self.settings.reproduce {
            for i in 0..loads.len() {
                let load = loads[(i + round as usize) % loads.len()];
                self.plan.push((load, round + 1));
            }
        }
    }

    /// Where the knee search ended, or where it stands while it runs (for a search that
    /// was cut short).
    pub fn knee(&self) -> Option<Found> {
        match &self.phase {
            Phase::Knee(search) => Some(search.found()),
            _ => self.knee,
        }
    }

    /// The published capacity (once the margin search has ended).
    #[cfg(test)]
    pub fn published(&self) -> Option<Published> {
        self.published
    }

    /// The position of the published capacity, if there is one.
    pub fn capacity_k(&self) -> Option<f64> {
        match self.published {
            Some(Published::At(k)) => Some(k),
            _ => None,
        }
    }

    /// The position of the knee, if there is one.
    pub fn knee_k(&self) -> Option<f64> {
        match self.knee {
            Some(Found::Knee { good, .. } | Found::HeldToLimit { good }) => Some(good),
            _ => None,
        }
    }

    /// Whether the capacity is the knee itself (then it is reproduced as the knee).
    pub fn capacity_is_knee(&self) -> bool {
        matches!((self.capacity_k(), self.knee_k()), (Some(c), Some(k)) if (c - k).abs() < 1e-9)
    }

    /// Every reproduction measurement so far.
    #[cfg(test)]
    pub fn reproduced(&self) -> &[(Load, Verdict)] {
        &self.reproduced
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix;

    /// A simulated chat server on a shared machine: p99 grows steeply towards saturation,
    /// varies from run to run, and the whole machine slows down slowly over the hours.
    struct NoisySystem {
        /// Users at which the server saturates (p99 unbounded), at time 0.
        saturation: f64,
        /// p99 of an idle server, ms.
        floor_ms: f64,
        /// Run-to-run variation of p99: log-normal with this sigma.
        sigma: f64,
        /// Machine slowdown per hour (0.05: saturation 5% lower an hour later).
        drift_per_hour: f64,
        random: SplitMix,
        /// Simulated time, hours.
        hours: f64,
    }

    impl NoisySystem {
        /// One run of 12 s at `users`: its p99 in ms.
        fn run(&mut self, users: f64) -> f64 {
            self.hours += 14.0 / 3600.0;
            let saturation = self.saturation * (1.0 - self.drift_per_hour * self.hours);
            let load = (users / saturation).min(0.999);
            let p99 = self.floor_ms / (1.0 - load);
            p99 * (self.sigma * self.random.normal()).exp()
        }
    }

    const LIMIT_MS: f64 = 25.0;

    /// Path: 250 users, steps of 250, up to 3,000 — as in `scenarios/capacity.toml`.
    fn level(k: f64) -> f64 {
        (250.0 + k * 250.0).round()
    }

    fn settings(margin: f64) -> Settings {
        Settings {
            last_k: 11.0,
            resolution: 1.0 / 250.0,
            bisections: 2,
            confirm: 4,
            margin,
            reproduce: 3,
        }
    }

    fn verdict(p99: f64) -> Verdict {
        Verdict {
            met: p99 <= LIMIT_MS,
            latency_share: p99 / LIMIT_MS,
        }
    }

    /// Runs the whole procedure against the system; returns the levels of the published
    /// capacity and the knee.
    fn run(system: &mut NoisySystem, margin: f64) -> (Procedure, Option<f64>, Option<f64>) {
        let mut procedure = Procedure::new(settings(margin));
        let mut measured = 0;
        while let Some(next) = procedure.next_measurement() {
            let users = match next {
                Next::Search { k, .. } => level(k),
                Next::Reproduce { load, .. } => {
                    let knee = level(procedure.knee_k().expect("a knee"));
                    match load {
                        Load::Capacity => level(procedure.capacity_k().expect("a capacity")),
                        Load::Knee => knee,
                        Load::AboveKnee => (knee * ABOVE_KNEE).round(),
                    }
                }
            };
            let p99 = system.run(users);
            procedure.record(verdict(p99));
            measured += 1;
            assert!(measured < 100, "the procedure must end");
        }
        let capacity = procedure.capacity_k().map(level);
        let knee = procedure.knee_k().map(level);
        (procedure, capacity, knee)
    }

    fn system(seed: u64) -> NoisySystem {
        NoisySystem {
            saturation: 1650.0,
            floor_ms: 4.0,
            sigma: 0.05,
            drift_per_hour: 0.04,
            random: SplitMix::new(seed),
            hours: 0.0,
        }
    }

    /// How many of `runs` plain runs at `users`, spread over the half hour that starts
    /// half an hour after the search (one every 3 minutes), meet the objective.
    fn later_passes(system: &mut NoisySystem, users: f64, runs: u32) -> u32 {
        system.hours += 0.5;
        (0..runs)
            .filter(|_| {
                system.hours += 3.0 / 60.0;
                system.run(users) <= LIMIT_MS
            })
            .count() as u32
    }

    #[test]
    fn the_published_capacity_holds_half_an_hour_later_and_the_knee_does_not() {
        // 20 searches, each followed by 10 plain runs at the capacity and 10 at the knee,
        // spread over the half hour that starts 30 minutes after the search ends.
        let (mut knee_short, mut knee_passes) = (0, 0);
        for seed in 1..=20 {
            let mut sys = system(seed);
            let (_, capacity, knee) = run(&mut sys, DEFAULT_MARGIN);
            let (capacity, knee) = (capacity.expect("a capacity"), knee.expect("a knee"));
            assert!(capacity <= knee, "seed {seed}: {capacity} > {knee}");
            // The two loads are measured over the same half hour, each on its own copy.
            let mut later = system(seed + 1000);
            later.hours = sys.hours;
            let mut later_knee = system(seed + 1000);
            later_knee.hours = sys.hours;
            let at_capacity = later_passes(&mut later, capacity, 10);
            let at_knee = later_passes(&mut later_knee, knee, 10);
            assert!(
                at_capacity >= 9,
                "seed {seed}: capacity {capacity} met the objective in {at_capacity} of 10 later runs (knee {knee})"
            );
            knee_passes += at_knee;
            if at_knee < 9 {
                knee_short += 1;
            }
        }
        // Without the margin the figure does not hold: the knee missed in 9 of 10 in
        // several searches, and over all 200 later runs it met the objective in fewer
        // than 90%.
        assert!(
            knee_short >= 3,
            "the knee fell short in {knee_short} of 20 searches"
        );
        assert!(
            knee_passes < 180,
            "the knee met the objective in {knee_passes} of 200 later runs"
        );
    }

    #[test]
    fn without_a_margin_the_published_capacity_is_the_knee() {
        let mut sys = system(7);
        let (procedure, capacity, knee) = run(&mut sys, 1.0);
        assert_eq!(capacity, knee);
        assert!(procedure.capacity_is_knee());
        // Only knee and above-knee are reproduced, three rounds each.
        let loads: Vec<Load> = procedure.reproduced().iter().map(|(l, _)| *l).collect();
        assert_eq!(
            loads,
            vec![
                Load::Knee,
                Load::AboveKnee,
                Load::AboveKnee,
                Load::Knee,
                Load::Knee,
                Load::AboveKnee
            ]
        );
    }

    #[test]
    fn the_reproduction_interleaves_the_three_loads() {
        let mut sys = system(3);
        let (procedure, capacity, knee) = run(&mut sys, DEFAULT_MARGIN);
        assert!(capacity < knee, "{capacity:?} {knee:?}");
        let loads: Vec<Load> = procedure.reproduced().iter().map(|(l, _)| *l).collect();
        use Load::*;
        assert_eq!(
            loads,
            vec![Capacity, Knee, AboveKnee, Knee, AboveKnee, Capacity, AboveKnee, Capacity, Knee]
        );
    }

    #[test]
    fn the_margin_search_bisects_and_confirms_below_the_knee() {
        // A noiseless system: p99 = users / 50 ms, so 25 ms at 1,250 users and 20 ms
        // (the margin) at 1,000.
        let mut procedure = Procedure::new(settings(0.8));
        let mut stages = Vec::new();
        while let Some(next) = procedure.next_measurement() {
            let users = match next {
                Next::Search { k, stage } => {
                    stages.push((stage, level(k)));
                    level(k)
                }
                Next::Reproduce { load, .. } => match load {
                    Load::Capacity => level(procedure.capacity_k().expect("capacity")),
                    Load::Knee => level(procedure.knee_k().expect("knee")),
                    Load::AboveKnee => level(procedure.knee_k().expect("knee")) * ABOVE_KNEE,
                },
            };
            procedure.record(verdict(users / 50.0));
        }
        assert_eq!(procedure.knee_k().map(level), Some(1250.0));
        // 1,000 users is exactly 20 ms: within the margin, measured once in the steps and
        // already known good; 1,250 is the lowest outside it. Two halvings (1,125 and
        // 1,063 are outside), then four confirmations of 1,000.
        assert_eq!(procedure.capacity_k().map(level), Some(1000.0));
        let margin: Vec<(Stage, f64)> = stages
            .iter()
            .copied()
            .filter(|(s, _)| matches!(s, Stage::Margin | Stage::MarginConfirm))
            .collect();
        assert_eq!(
            margin,
            vec![
                (Stage::Margin, 1125.0),
                (Stage::Margin, 1063.0),
                (Stage::MarginConfirm, 1000.0),
                (Stage::MarginConfirm, 1000.0),
                (Stage::MarginConfirm, 1000.0),
                (Stage::MarginConfirm, 1000.0),
            ]
        );
        assert!(procedure.reproduced().iter().all(|(l, v)| match l {
            Load::AboveKnee => !v.met,
            _ => v.met,
        }));
    }

    #[test]
    fn nothing_within_the_margin_publishes_no_capacity() {
        // Met everywhere up to 500 users, but never with 20% to spare.
        let mut procedure = Procedure::new(settings(0.8));
        while let Some(next) = procedure.next_measurement() {
            let users = match next {
                Next::Search { k, .. } => level(k),
                Next::Reproduce { .. } => 500.0,
            };
            procedure.record(Verdict {
                met: users <= 500.0,
                latency_share: 0.95,
            });
        }
        assert_eq!(procedure.knee_k().map(level), Some(500.0));
        assert_eq!(procedure.published(), Some(Published::None));
        let loads: Vec<Load> = procedure.reproduced().iter().map(|(l, _)| *l).collect();
        assert!(!loads.contains(&Load::Capacity), "{loads:?}");
        assert_eq!(loads.len(), 6);
    }

    #[test]
    fn a_start_that_fails_has_neither_knee_nor_capacity_nor_reproduction() {
        let mut procedure = Procedure::new(settings(0.8));
        let mut measured = 0;
        while procedure.next_measurement().is_some() {
            procedure.record(verdict(99.0));
            measured += 1;
        }
        assert_eq!(measured, 1);
        assert_eq!(procedure.published(), Some(Published::None));
        assert!(procedure.knee_k().is_none());
    }
}
