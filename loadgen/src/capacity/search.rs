//! The knee search: step up until the objective fails or the limit is reached, then bisect
//! between the last good and the first bad step.
//!
//! Positions are on the capacity path (step `k` offers `start + k × step`; see
//! [`super::spec`]). [`Search`] is a plain state machine — [`Search::next`] says where to
//! measure, [`Search::record`] takes the verdict — so the logic is tested against a
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
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Step => "step",
            Stage::Bisect => "bisect",
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
pub struct Search {
    last_k: f64,
    resolution: f64,
    bisections_left: u32,
    good: Option<f64>,
    bad: Option<f64>,
    pending: Option<(f64, Stage)>,
}

impl Search {
    /// A search over positions `0..=last_k`, halving the good–bad interval up to
    /// `bisections` times but never below `resolution` (positions closer than that offer
    /// the same load).
    pub fn new(last_k: f64, resolution: f64, bisections: u32) -> Search {
        Search {
            last_k: last_k.max(0.0),
            resolution: resolution.max(1e-9),
            bisections_left: bisections,
            good: None,
            bad: None,
            pending: None,
        }
    }

    /// The next position to measure, or `None` when the search is over.
    pub fn next(&mut self) -> Option<(f64, Stage)> {
        if let Some(pending) = self.pending {
            return Some(pending);
        }
        let next = match (self.good, self.bad) {
            (None, None) => Some((0.0, Stage::Step)),
            (Some(good), None) => {
                // The whole steps, then the limit itself if it falls between two.
                let up = (good + 1.0).min(self.last_k);
                (up > good + 1e-9).then_some((up, Stage::Step))
            }
            (None, Some(_)) => None,
            (Some(good), Some(bad)) => {
                let half = (bad - good) / 2.0;
                if self.bisections_left == 0 || half < self.resolution {
                    None
                } else {
                    // On the resolution grid, strictly between good and bad.
                    let mid = good + (half / self.resolution).round() * self.resolution;
                    (mid > good && mid < bad).then_some((mid, Stage::Bisect))
                }
            }
        };
        self.pending = next;
        next
    }

    /// The verdict of the position [`Search::next`] returned.
    pub fn record(&mut self, met: bool) {
        let Some((k, stage)) = self.pending.take() else {
            return;
        };
        if stage == Stage::Bisect {
            self.bisections_left = self.bisections_left.saturating_sub(1);
        }
        if met {
            self.good = Some(k);
        } else {
            self.bad = Some(k);
        }
    }

    /// Where the search ended (meaningful once [`Search::next`] returned `None`).
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
        meets: impl Fn(f64) -> bool,
    ) -> (Found, Vec<f64>) {
        let mut search = Search::new((limit - start) / step, resolution_units / step, bisections);
        let mut measured = Vec::new();
        while let Some((k, _)) = search.next() {
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
    fn record_without_next_does_nothing() {
        let mut search = Search::new(5.0, 0.01, 3);
        search.record(true);
        assert_eq!(search.next(), Some((0.0, Stage::Step)));
        assert_eq!(
            search.next(),
            Some((0.0, Stage::Step)),
            "asked twice, same answer"
        );
    }
}
