//! The run's timetable, computed before anything happens: when each phase starts and
//! ends on the run clock, when each sender sends, and when relogins and churn fall due.
//!
//! Everything here is a pure function of the scenario and the moment measurement starts,
//! so the schedule is reproducible and testable without a server. Open-model traffic
//! follows from it: a sender sends at the times fixed here, whatever happened to its
//! earlier sends (see wrk2 on coordinated omission).

use std::time::Duration;

use crate::scenario::{Phase, Scenario};

/// Logins per second when the scenario sets neither `connect_rate` nor `connect_over`.
pub const DEFAULT_CONNECT_RATE: f64 = 2000.0;

/// One phase on the run clock.
#[derive(Debug, Clone, PartialEq)]
pub struct PhasePlan {
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub senders: u32,
    /// Time between two messages of one sender (0: no traffic).
    pub interval_ns: u64,
    /// Senders send together rather than spread over the interval.
    pub aligned_senders: bool,
    pub message_size: usize,
    pub relogin_rate: f64,
    pub relogin_concurrency: u32,
    pub churn_rate: f64,
    pub churn_offline: Duration,
}

/// A disruption of one user that falls due at a planned time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruption {
    /// Log the user in again while its session is online (the eviction check).
    Relogin,
    /// The user leaves and comes back after `churn_offline`.
    Churn,
}

/// The phases of `phases` back to back from `measure_start_ns`, for `users` users.
pub fn plan_phases(phases: &[Phase], users: u32, measure_start_ns: u64) -> Vec<PhasePlan> {
    let mut plan = Vec::with_capacity(phases.len());
    let mut at = measure_start_ns;
    for (i, phase) in phases.iter().enumerate() {
        let end = at.saturating_add(phase.duration.0.as_nanos() as u64);
        let per_sender = phase.rate_per_sender(users);
        plan.push(PhasePlan {
            name: phase
                .name
                .clone()
                .unwrap_or_else(|| format!("phase {}", i + 1)),
            start_ns: at,
            end_ns: end,
            senders: phase.sender_count(users),
            interval_ns: if per_sender > 0.0 {
                (1e9 / per_sender) as u64
            } else {
                0
            },
            aligned_senders: phase.aligned_senders,
            message_size: phase.message_size,
            relogin_rate: phase.relogin_rate,
            relogin_concurrency: phase.relogin_concurrency,
            churn_rate: phase.churn_rate,
            churn_offline: phase.churn_offline.0,
        });
        at = end;
    }
    plan
}

/// Logins per second of the ramp: all users over `connect_over`, else `connect_rate`,
/// else [`DEFAULT_CONNECT_RATE`].
pub fn ramp_rate(scenario: &Scenario) -> f64 {
    let users = f64::from(scenario.users.count);
    match (scenario.users.connect_rate, scenario.users.connect_over) {
        (_, Some(over)) => users / over.0.as_secs_f64().max(1e-9),
        (Some(rate), None) => rate,
        (None, None) => DEFAULT_CONNECT_RATE,
    }
}

/// When user `index` logs in, relative to the start of the ramp.
pub fn login_offset_ns(index: u32, rate: f64) -> u64 {
    (f64::from(index) / rate * 1e9) as u64
}

/// The phase running at run-clock time `ns`.
pub fn phase_at(plan: &[PhasePlan], ns: u64) -> Option<&PhasePlan> {
    plan.iter().find(|p| p.start_ns <= ns && ns < p.end_ns)
}

impl PhasePlan {
    /// The intended send times of sender `sender` in this phase (none when it does not
    /// send). Senders are spread evenly over one interval so they do not all fire
    /// together, unless the phase aligns them.
    pub fn send_times(&self, sender: u32) -> impl Iterator<Item = u64> + '_ {
        let sends = sender < self.senders && self.interval_ns > 0;
        let offset = if sends && !self.aligned_senders {
            self.interval_ns * u64::from(sender) / u64::from(self.senders)
        } else {
            0
        };
        let first = self.start_ns + offset;
        std::iter::successors(sends.then_some(first), move |&t| {
            t.checked_add(self.interval_ns)
        })
        .take_while(move |&t| t < self.end_ns)
    }

    /// Relogins and churn of this phase in time order, each stream evenly spaced at its
    /// rate and starting half an interval in.
    pub fn disruptions(&self) -> impl Iterator<Item = (u64, Disruption)> + '_ {
        let every = |rate: f64| {
            if rate > 0.0 {
                (1e9 / rate) as u64
            } else {
                u64::MAX
            }
        };
        let (relogin_every, churn_every) = (every(self.relogin_rate), every(self.churn_rate));
        let mut next_relogin = self.start_ns.saturating_add(relogin_every / 2);
        let mut next_churn = self.start_ns.saturating_add(churn_every / 2);
        std::iter::from_fn(move || {
            let due = if next_relogin <= next_churn {
                let at = next_relogin;
                next_relogin = next_relogin.saturating_add(relogin_every);
                (at, Disruption::Relogin)
            } else {
                let at = next_churn;
                next_churn = next_churn.saturating_add(churn_every);
                (at, Disruption::Churn)
            };
            (due.0 < self.end_ns).then_some(due)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn scenario(text: &str) -> Scenario {
        Scenario::parse(Path::new("plan.toml"), text).expect("valid scenario")
    }

    const TWO_PHASES: &str = r#"
        [users]
        count = 10
        [[phase]]
        name = "steady"
        duration = "2s"
        rate = 20
        senders = 4
        [[phase]]
        duration = "1s"
        relogin_rate = 4
        churn_rate = 2
    "#;

    #[test]
    fn phases_follow_each_other_from_the_measure_start() {
        let s = scenario(TWO_PHASES);
        let plan = plan_phases(&s.phases, s.users.count, 1_000);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].name, "steady");
        assert_eq!((plan[0].start_ns, plan[0].end_ns), (1_000, 2_000_001_000));
        assert_eq!(plan[1].name, "phase 2", "an unnamed phase is numbered");
        assert_eq!(plan[1].start_ns, plan[0].end_ns);
        assert_eq!(plan[1].end_ns, 3_000_001_000);
        // 20 msg/s over 4 senders: 5 msg/s each, one every 200 ms.
        assert_eq!(plan[0].senders, 4);
        assert_eq!(plan[0].interval_ns, 200_000_000);
        assert_eq!(plan[1].interval_ns, 0, "no rate: no traffic");
        assert_eq!(
            phase_at(&plan, 1_000).map(|p| p.name.as_str()),
            Some("steady")
        );
        assert_eq!(phase_at(&plan, 2_000_001_000), Some(&plan[1]));
        assert_eq!(phase_at(&plan, 3_000_001_000), None, "the end is exclusive");
    }

    #[test]
    fn aligned_senders_send_at_the_same_instants() {
        let s = scenario(&TWO_PHASES.replacen(
            "senders = 4",
            "senders = 4\n        aligned_senders = true",
            1,
        ));
        let plan = plan_phases(&s.phases, s.users.count, 0);
        let times: Vec<Vec<u64>> = (0..4).map(|i| plan[0].send_times(i).collect()).collect();
        assert_eq!(times[0].len(), 10, "the rate is unchanged");
        assert!(times.iter().all(|t| *t == times[0]), "{times:?}");
        assert_eq!(plan[0].send_times(4).count(), 0, "not a sender");
    }

    #[test]
    fn senders_send_at_their_rate_spread_over_one_interval() {
        let s = scenario(TWO_PHASES);
        let plan = plan_phases(&s.phases, s.users.count, 0);
        let first: Vec<u64> = plan[0].send_times(0).collect();
        assert_eq!(first.len(), 10, "5 msg/s for 2 s");
        assert_eq!(first[0], 0);
        assert!(first.windows(2).all(|w| w[1] - w[0] == 200_000_000));
        let second: Vec<u64> = plan[0].send_times(1).collect();
        assert_eq!(second[0], 50_000_000, "a quarter interval later");
        assert_eq!(second.len(), 10);
        assert_eq!(plan[0].send_times(4).count(), 0, "not a sender");
        assert_eq!(plan[1].send_times(0).count(), 0, "a phase without traffic");
        let total: usize = (0..4).map(|i| plan[0].send_times(i).count()).sum();
        assert_eq!(total, 40, "20 msg/s for 2 s");
    }

    #[test]
    fn disruptions_come_in_time_order_at_their_rates() {
        let s = scenario(TWO_PHASES);
        let plan = plan_phases(&s.phases, s.users.count, 0);
        assert_eq!(
            plan[0].disruptions().count(),
            0,
            "a phase without disruptions"
        );
        let events: Vec<(u64, Disruption)> = plan[1].disruptions().collect();
        let relogins = events
            .iter()
            .filter(|(_, d)| *d == Disruption::Relogin)
            .count();
        assert_eq!(relogins, 4, "4/s for 1 s");
        assert_eq!(events.len() - relogins, 2, "2/s for 1 s");
        assert!(events.windows(2).all(|w| w[0].0 <= w[1].0), "{events:?}");
        assert_eq!(
            events[0],
            (2_125_000_000, Disruption::Relogin),
            "half an interval in"
        );
        assert!(events.iter().all(|(t, _)| *t < plan[1].end_ns));
    }

    #[test]
    fn the_ramp_spreads_logins_at_its_rate() {
        let over =
            scenario("[users]\ncount = 100\nconnect_over = \"2s\"\n[[phase]]\nduration = \"1s\"\n");
        assert_eq!(ramp_rate(&over), 50.0);
        let rate =
            scenario("[users]\ncount = 100\nconnect_rate = 400\n[[phase]]\nduration = \"1s\"\n");
        assert_eq!(ramp_rate(&rate), 400.0);
        let default = scenario("[users]\ncount = 100\n[[phase]]\nduration = \"1s\"\n");
        assert_eq!(ramp_rate(&default), DEFAULT_CONNECT_RATE);
        assert_eq!(login_offset_ns(0, 50.0), 0);
        assert_eq!(login_offset_ns(50, 50.0), 1_000_000_000);
    }
}
