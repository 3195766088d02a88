//! The knee search: step up until the objective fails or the limit is reached, bisect
//! between the last good and the first bad step, then confirm the knee.
//!
//! Bisection homes in on the load where the objective is met about half the time: on a
//! real machine a percentile near its limit varies by several percent from run to run, so
//! a knee measured once would be missed by the next plain run at that load about as often
//! as it is met. The knee is therefore measured `confirm` more times and must meet the
//! objective every time; a failed confirmation makes it the new bad end, the highest
//! good load below becomes the candidate, one more halving is spent between the two, and
//! that candidate is confirmed in turn. The reported knee is a load that met the
//! objective in every run at it.
//!
//! Positions are on the capacity path (step `k` offers `start + k × step`; see
//! [`super::spec`]). [`KneeSearch`] is a plain state machine — [`KneeSearch::next_load`] says where to
//! measure, [`KneeSearch::record`] takes the verdict — so the logic is tested against a
//! simulated system of known capacity without running any load, and the command drives
//! it with real steps.

use serde::Serialize;

/// What a measurement is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Stepping up the path.
    Step,
    /// Halving the interval between good and bad.
    Bisect,
    /// Measuring the knee again.
    Confirm,
    /// Halving the interval between the highest load within the margin and the lowest
    /// one beyond it (see [`super::procedure`]).
    Margin,
    /// Measuring the published capacity again.
    MarginConfirm,
    /// Measuring capacity, knee and above-knee again, interleaved, after the search.
    Reproduce,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Step => "step",
            Stage::Bisect => "bisect",
            Stage::Confirm => "confirm",
            Stage::Margin => "margin",
            Stage::MarginConfirm => "margin-confirm",
            Stage::Reproduce => "reproduce",
        }
    }
}

/// Where the search stands once it is over (positions on the path).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Found {
    /// The objective held at `good` and failed at `bad`.
    Knee { good: f64, bad: f64 },
    /// It held at every step up to the last position of the path.
    HeldToLimit { good: f64 },
    /// It failed at the first step.
    FailedAtStart { bad: f64 },
}

/// The search state.
#[derive(Debug, Clone)]
pub struct KneeSearch {
    last_k: f64,
    resolution: f64,
    bisections_left: u32,
    /// Confirmations a knee candidate needs after its first good measurement.
    confirm: u32,
    /// Confirmations the current candidate has passed.
    confirmed: u32,
    good: Option<f64>,
    /// Every position that met the objective and has not failed since, ascending.
    goods: Vec<f64>,
    bad: Option<f64>,
    pending: Option<(f64, Stage)>,
}

impl KneeSearch {
    /// A search over positions `0..=last_k`, halving the good–bad interval up to
    /// `bisections` times but never below `resolution` (positions closer than that offer
    /// the same load), then measuring the knee `confirm` more times.
    pub fn new(last_k: f64, resolution: f64, bisections: u32, confirm: u32) -> KneeSearch {
        KneeSearch {
            last_k: last_k.max(0.0),
            resolution: resolution.max(1e-9),
            bisections_left: bisections,
            confirm,
            confirmed: 0,
            good: None,
            goods: Vec::new(),
            bad: None,
            pending: None,
        }
    }

    /// A search that starts where an earlier one left off: `goods` are positions that met
    /// the objective in every run (ascending), `bad` the lowest that did not, and the
    /// highest good has already passed `confirmed` confirmations. It bisects between the
    /// two and confirms, like [`KneeSearch::new`] after its upward steps.
    pub fn between(
        goods: Vec<f64>,
        bad: f64,
        resolution: f64,
        bisections: u32,
        confirm: u32,
        confirmed: u32,
    ) -> KneeSearch {
        let mut goods: Vec<f64> = goods.into_iter().filter(|&g| g < bad).collect();
        goods.sort_by(f64::total_cmp);
        KneeSearch {
            last_k: bad,
            resolution: resolution.max(1e-9),
            bisections_left: bisections,
            confirm,
            confirmed: confirmed.min(confirm),
            good: goods.last().copied(),
            goods,
            bad: Some(bad),
            pending: None,
        }
    }

    /// The bisection midpoint between good and bad, if one is left to measure.
    fn bisection(&self) -> Option<f64> {
        let (good, bad) = (self.good?, self.bad?);
        let half = (bad - good) / 2.0;
        if self.bisections_left == 0 || half < self.resolution {
            return None;
        }
        // On the resolution grid, strictly between good and bad.
        let mid = good + (half / self.resolution).round() * self.resolution;
        (mid > good && mid < bad).then_some(mid)
    }

    /// The next position to measure, or `None` when the search is over.
    pub fn next_load(&mut self) -> Option<(f64, Stage)> {
        if let Some(pending) = self.pending {
            return Some(pending);
        }
        let next = match (self.good, self.bad) {
            (None, None) if self.goods.is_empty() => Some((0.0, Stage::Step)),
            (Some(good), None) => {
                // The whole steps, then the limit itself if it falls between two.
                let up = (good + 1.0).min(self.last_k);
                if up > good + 1e-9 {
                    Some((up, Stage::Step))
                } else {
                    self.confirmation()
                }
            }
            (Some(_), Some(_)) => match self.bisection() {
                Some(mid) => Some((mid, Stage::Bisect)),
                None => self.confirmation(),
            },
            _ => None,
        };
        self.pending = next;
        next
    }

    /// Another measurement of the candidate, while it needs one.
    fn confirmation(&self) -> Option<(f64, Stage)> {
        let good = self.good?;
        (self.confirmed < self.confirm).then_some((good, Stage::Confirm))
    }

    /// The verdict of the position [`KneeSearch::next_load`] returned.
    pub fn record(&mut self, met: bool) {
        let Some((k, stage)) = self.pending.take() else {
            return;
        };
        match (stage, met) {
            (Stage::Confirm, true) => self.confirmed += 1,
            (Stage::Confirm, false) => {
                // The candidate is not reliably good: it becomes the bad end, the next
                // good load below becomes the candidate, and one more halving is spent.
                self.goods.retain(|&g| g < k);
                self.bad = Some(k);
                self.good = self.goods.last().copied();
                self.confirmed = 0;
                self.bisections_left = self.bisections_left.max(1);
            }
            (_, true) => {
                if stage == Stage::Bisect {
                    self.bisections_left = self.bisections_left.saturating_sub(1);
                }
                self.good = Some(k);
                self.goods.push(k);
                self.goods.sort_by(f64::total_cmp);
                self.confirmed = 0;
            }
            (_, false) => {
                if stage == Stage::Bisect {
                    self.bisections_left = self.bisections_left.saturating_sub(1);
                }
                self.goods.retain(|&g| g < k);
                self.bad = Some(k);
            }
        }
    }

    /// Where the search ended (meaningful once [`KneeSearch::next_load`] returned `None`).
    pub fn found(&self) -> Found {
        match (self.good, self.bad) {
            (Some(good), Some(bad)) => Found::Knee { good, bad },
            (Some(good), None) => Found::HeldToLimit { good },
            (None, bad) => Found::FailedAtStart {
                bad: bad.unwrap_or(0.0),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a search against a system that meets the objective exactly up to `capacity`
    /// (in the path's level units: `start + k × step`), returning what it found and how
    /// many measurements it took.
    fn search(
        start: f64,
        step: f64,
        limit: f64,
        resolution_units: f64,
        bisections: u32,
        meets: impl FnMut(f64) -> bool,
    ) -> (Found, Vec<f64>) {
        search_confirmed(start, step, limit, resolution_units, bisections, 0, meets)
    }

    fn search_confirmed(
        start: f64,
        step: f64,
        limit: f64,
        resolution_units: f64,
        bisections: u32,
        confirm: u32,
        mut meets: impl FnMut(f64) -> bool,
    ) -> (Found, Vec<f64>) {
        let mut search = KneeSearch::new(
            (limit - start) / step,
            resolution_units / step,
            bisections,
            confirm,
        );
        let mut measured = Vec::new();
        while let Some((k, _)) = search.next_load() {
            let level = start + k * step;
            measured.push(level);
            search.record(meets(level));
            assert!(measured.len() < 100, "the search must end");
        }
        let level = |k: f64| start + k * step;
        let found = match search.found() {
            Found::Knee { good, bad } => Found::Knee {
                good: level(good),
                bad: level(bad),
            },
            Found::HeldToLimit { good } => Found::HeldToLimit { good: level(good) },
            Found::FailedAtStart { bad } => Found::FailedAtStart { bad: level(bad) },
        };
        (found, measured)
    }

    #[test]
    fn finds_a_known_capacity_within_one_step() {
        for capacity in [130.0, 199.0, 200.0, 201.0, 555.0, 990.0, 1049.0] {
            for bisections in [0, 1, 3, 6] {
                let (found, _) = search(100.0, 100.0, 1050.0, 1.0, bisections, |users| {
                    users <= capacity
                });
                let Found::Knee { good, bad } = found else {
                    panic!("capacity {capacity}: {found:?}");
                };
                assert!(
                    good <= capacity && bad > capacity,
                    "{capacity}: {good}..{bad}"
                );
                // Within one step of the truth; each halving narrows it.
                let width = 100.0 / f64::from(1u32 << bisections);
                assert!(
                    capacity - good < width.max(1.0) + 1e-9,
                    "{capacity}: good {good}"
                );
            }
        }
    }

    #[test]
    fn bisection_stops_at_the_resolution() {
        // Steps of 4 users, 10 halvings asked: only 2 are meaningful (4 → 2 → 1).
        let (found, measured) = search(10.0, 4.0, 100.0, 1.0, 10, |users| users <= 21.0);
        assert_eq!(
            found,
            Found::Knee {
                good: 21.0,
                bad: 22.0
            }
        );
        assert_eq!(measured, vec![10.0, 14.0, 18.0, 22.0, 20.0, 21.0]);
    }

    #[test]
    fn a_system_that_holds_everywhere_is_reported_at_the_limit() {
        let (found, measured) = search(100.0, 100.0, 1050.0, 1.0, 3, |_| true);
        assert_eq!(found, Found::HeldToLimit { good: 1050.0 });
        // 100, 200, …, 1000, then the limit itself.
        assert_eq!(measured.len(), 11);
        assert_eq!(measured.last(), Some(&1050.0));
    }

    #[test]
    fn a_system_that_fails_at_once_is_reported_below_the_start() {
        let (found, measured) = search(100.0, 100.0, 1000.0, 1.0, 3, |_| false);
        assert_eq!(found, Found::FailedAtStart { bad: 100.0 });
        assert_eq!(measured, vec![100.0]);
    }

    #[test]
    fn a_path_of_one_point_measures_it_once() {
        let (found, measured) = search(50.0, 10.0, 50.0, 1.0, 3, |_| true);
        assert_eq!(found, Found::HeldToLimit { good: 50.0 });
        assert_eq!(measured, vec![50.0]);
    }

    #[test]
    fn a_noisy_verdict_still_ends_between_a_good_and_a_bad_measurement() {
        // Fails once below its capacity (a noisy step during bisection): the knee is then
        // reported low, never above a failure, and the search still ends.
        let noisy = std::cell::Cell::new(false);
        let (found, _) = search(100.0, 100.0, 1000.0, 1.0, 3, |users| {
            if users > 500.0 && users < 550.0 && !noisy.get() {
                noisy.set(true);
                return false;
            }
            users <= 560.0
        });
        let Found::Knee { good, bad } = found else {
            panic!("{found:?}");
        };
        assert!(good < bad && good >= 500.0 && bad <= 600.0, "{good}..{bad}");
    }

    #[test]
    fn a_steady_knee_is_measured_again_and_kept() {
        let (found, measured) =
            search_confirmed(100.0, 100.0, 1000.0, 1.0, 2, 2, |users| users <= 430.0);
        assert_eq!(
            found,
            Found::Knee {
                good: 425.0,
                bad: 450.0
            }
        );
        // Steps 100..500, two halvings (450 bad, 425 good), then 425 twice more.
        assert_eq!(
            measured,
            vec![100.0, 200.0, 300.0, 400.0, 500.0, 450.0, 425.0, 425.0, 425.0]
        );
    }

    #[test]
    fn a_knee_that_fails_a_confirmation_moves_down_to_one_that_holds() {
        // A system that meets the objective reliably up to 300 users, and only on every
        // other try between 300 and 400 (noise near the knee).
        let mut tries = 0u32;
        let (found, measured) = search_confirmed(100.0, 100.0, 1000.0, 1.0, 1, 2, |users| {
            if users <= 300.0 {
                return true;
            }
            tries += 1;
            users < 400.0 && tries % 2 == 1
        });
        let Found::Knee { good, bad } = found else {
            panic!("{found:?}");
        };
        assert!(
            good <= 300.0,
            "the knee must be a load that always holds: {good}"
        );
        assert!(bad > good && bad < 400.0, "{bad}");
        // The reported knee passed its first measurement and both confirmations.
        let at_knee = measured.iter().filter(|&&u| u == good).count();
        assert!(at_knee >= 3, "{measured:?}");
        assert!(measured.len() < 20);
    }

    #[test]
    fn a_start_that_fails_its_confirmation_is_below_the_start() {
        let mut first = true;
        let (found, _) = search_confirmed(100.0, 100.0, 1000.0, 1.0, 3, 2, |_| {
            std::mem::replace(&mut first, false)
        });
        assert!(matches!(found, Found::FailedAtStart { .. }), "{found:?}");
    }

    #[test]
    fn held_to_the_limit_is_confirmed_too() {
        let (found, measured) = search_confirmed(100.0, 100.0, 300.0, 1.0, 3, 2, |_| true);
        assert_eq!(found, Found::HeldToLimit { good: 300.0 });
        assert_eq!(measured, vec![100.0, 200.0, 300.0, 300.0, 300.0]);
    }

    #[test]
    fn record_without_next_does_nothing() {
        let mut search = KneeSearch::new(5.0, 0.01, 3, 0);
        search.record(true);
        assert_eq!(search.next_load(), Some((0.0, Stage::Step)));
        assert_eq!(
            search.next_load(),
            Some((0.0, Stage::Step)),
            "asked twice, same answer"
        );
    }
}
