//! The relogin eviction check (docs/protocol.md S4–S6): what was seen during one relogin,
//! and the verdict on it. Pure: the relogin itself (opening connections, asking for a
//! probe, waiting) is done by `run::relogin`, which fills in a [`ReloginObservation`].
//!
//! A relogin of user U opens `relogin_concurrency` new connections for U while the old one
//! is still online. Once every new handshake has completed (time `t1`):
//! - the old connection, and all new ones but one, must end (Close, any code, or a TCP
//!   drop) within `eviction_deadline` of `t1` — otherwise *late* (ended before the check
//!   finished) or *missing* (never ended); more than one new connection still open is
//!   *no single survivor* (S6);
//! - the one survivor must receive a probe broadcast sent after that within
//!   `probe_deadline`;
//! - the old connection must not receive the probe, nor any chat message whose intended
//!   send time is later than `t1 + ghost_grace` — otherwise *ghost*.
//!
//! A survivor that did not get its probe in time is a **zombie** — "online but deaf", the
//! Go demo's bug (S5) — only when the evidence says so: it stayed open through the whole
//! probe window, and the probe reached other sessions but never it. Otherwise the cause is
//! named instead: *survivor closed* (the server closed it, with which code), *probe late*
//! (it arrived after the deadline; by how much), *unprobed* (no probe could be sent, or
//! nobody at all received it: nothing to judge the server by).
//!
//! Failures (they count against `max_eviction_failures`): zombie, ghost, no single
//! survivor, missing, late. Reported but not failures: survivor closed (the close is an
//! unexpected disconnect, counted by its code), probe late (the latency figures show the
//! delay), unprobed. Each relogin gets one outcome; when several apply the worst wins, in
//! that order.

use crate::record::Counters;

/// The verdict on one relogin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionOutcome {
    Ok,
    Late,
    Missing,
    Zombie,
    Ghost,
    /// Not exactly one new session open at the eviction deadline: this many were.
    NoSingleSurvivor {
        open: usize,
    },
    /// The server closed the surviving session before it got its probe: its Close code,
    /// or `None` for a TCP drop.
    SurvivorClosed {
        code: Option<u16>,
    },
    /// The probe reached the survivor this long after the deadline.
    ProbeLate {
        by_ms: u64,
    },
    /// No probe to judge by: none could be sent, or nobody received it.
    Unprobed,
}

impl EvictionOutcome {
    /// Adds this outcome to the counters.
    pub fn count(self, c: &mut Counters) {
        match self {
            EvictionOutcome::Ok => c.evictions_ok += 1,
            EvictionOutcome::Late => c.evictions_late += 1,
            EvictionOutcome::Missing => c.evictions_missing += 1,
            EvictionOutcome::Zombie => c.evictions_zombie += 1,
            EvictionOutcome::Ghost => c.evictions_ghost += 1,
            EvictionOutcome::NoSingleSurvivor { .. } => c.evictions_no_survivor += 1,
            EvictionOutcome::SurvivorClosed { .. } => c.evictions_survivor_closed += 1,
            EvictionOutcome::ProbeLate { .. } => c.evictions_probe_late += 1,
            EvictionOutcome::Unprobed => c.evictions_unprobed += 1,
        }
    }

    /// Rank, worst first (see the module doc).
    fn rank(self) -> u8 {
        match self {
            EvictionOutcome::Zombie => 0,
            EvictionOutcome::Ghost => 1,
            EvictionOutcome::NoSingleSurvivor { .. } => 2,
            EvictionOutcome::Missing => 3,
            EvictionOutcome::Late => 4,
            EvictionOutcome::SurvivorClosed { .. } => 5,
            EvictionOutcome::ProbeLate { .. } => 6,
            EvictionOutcome::Unprobed => 7,
            EvictionOutcome::Ok => 8,
        }
    }
}

/// One new connection of a relogin, as seen by the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewSession {
    /// Still open at the eviction deadline.
    pub open_at_deadline: bool,
    /// Still open when the check ended (after the probe wait).
    pub open_at_end: bool,
    /// Received the probe within the probe deadline.
    pub got_probe: bool,
    /// How it ended, if the server ended it: `Some(code)` (`None` inside for a TCP drop).
    pub closed_with: Option<Option<u16>>,
}

/// Everything seen during one relogin, in the terms of the module doc. Times are on the
/// run clock (ns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloginObservation {
    /// `t1`: every new handshake had completed.
    pub logged_in_ns: u64,
    /// Messages sent this long after `t1` must not reach the old session.
    pub ghost_grace_ns: u64,
    /// The old session was still open at the eviction deadline.
    pub old_open_at_deadline: bool,
    /// The old session was still open when the check ended.
    pub old_open_at_end: bool,
    /// The old session received the probe.
    pub old_got_probe: bool,
    /// Highest intended send time of any chat message the old session received.
    pub old_newest_chat_ns: Option<u64>,
    /// The new sessions whose handshake completed.
    pub new_sessions: Vec<NewSession>,
    /// The probe was sent (there was a probe user and the send succeeded).
    pub probe_sent: bool,
    /// Sessions outside this relogin that received the probe.
    pub probe_receipts_elsewhere: u64,
    /// The survivor got the probe after the probe deadline, this long after it.
    pub probe_late_ms: Option<u64>,
}

/// The survivor of a relogin: the only new session still open at the eviction deadline,
/// if exactly one is. `open_at_deadline[i]` says whether new session `i` is.
pub fn single_survivor(open_at_deadline: &[bool]) -> Option<usize> {
    let mut open = open_at_deadline
        .iter()
        .enumerate()
        .filter(|(_, open)| **open);
    match (open.next(), open.next()) {
        (Some((index, _)), None) => Some(index),
        _ => None,
    }
}

/// The verdict on a relogin (worst first).
pub fn judge(seen: &ReloginObservation) -> EvictionOutcome {
    let open_at_deadline: Vec<bool> = seen
        .new_sessions
        .iter()
        .map(|s| s.open_at_deadline)
        .collect();
    let survivor = single_survivor(&open_at_deadline);
    // All but one new session must end, and the old one.
    let must_end = seen.new_sessions.len();
    let ended = |old_open: bool, new_open: &dyn Fn(&NewSession) -> bool| {
        let new_ended = seen.new_sessions.iter().filter(|s| !new_open(s)).count();
        !old_open && new_ended + 1 >= must_end
    };
    let ended_in_time = ended(seen.old_open_at_deadline, &|s| s.open_at_deadline);
    let ended_eventually = ended(seen.old_open_at_end, &|s| s.open_at_end);
    // Without a single survivor there is no telling which new session should hear; that
    // is judged as "no single survivor" instead.
    let probe_elsewhere = seen.old_got_probe
        || survivor.is_some_and(|kept| {
            seen.new_sessions
                .iter()
                .enumerate()
                .any(|(i, s)| i != kept && s.got_probe)
        });
    let late_chat = seen
        .old_newest_chat_ns
        .is_some_and(|newest| newest > seen.logged_in_ns.saturating_add(seen.ghost_grace_ns));

    let mut found = vec![heard(seen, survivor, &open_at_deadline)];
    if probe_elsewhere || late_chat {
        found.push(EvictionOutcome::Ghost);
    }
    if !ended_eventually {
        found.push(EvictionOutcome::Missing);
    } else if !ended_in_time {
        found.push(EvictionOutcome::Late);
    }
    found
        .into_iter()
        .min_by_key(|o| o.rank())
        .unwrap_or(EvictionOutcome::Ok)
}

/// Whether the user's new session demonstrably hears (`Ok`), and if not, why.
fn heard(
    seen: &ReloginObservation,
    survivor: Option<usize>,
    open_at_deadline: &[bool],
) -> EvictionOutcome {
    let Some(index) = survivor else {
        let open = open_at_deadline.iter().filter(|o| **o).count();
        if open > 1 {
            return EvictionOutcome::NoSingleSurvivor { open };
        }
        // None open: the newest login's end says why (a server that closed it).
        let code = seen
            .new_sessions
            .iter()
            .rev()
            .find_map(|s| s.closed_with)
            .flatten();
        return EvictionOutcome::SurvivorClosed { code };
    };
    let survivor = seen.new_sessions[index];
    if !seen.probe_sent {
        return EvictionOutcome::Unprobed;
    }
    if survivor.got_probe {
        return EvictionOutcome::Ok;
    }
    if let Some(by_ms) = seen.probe_late_ms {
        return EvictionOutcome::ProbeLate { by_ms };
    }
    if let Some(code) = survivor.closed_with.filter(|_| !survivor.open_at_end) {
        return EvictionOutcome::SurvivorClosed { code };
    }
    if seen.probe_receipts_elsewhere > 0 {
        EvictionOutcome::Zombie
    } else {
        EvictionOutcome::Unprobed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SURVIVOR: NewSession = NewSession {
        open_at_deadline: true,
        open_at_end: true,
        got_probe: true,
        closed_with: None,
    };
    const EVICTED: NewSession = NewSession {
        open_at_deadline: false,
        open_at_end: false,
        got_probe: false,
        closed_with: Some(Some(4001)),
    };

    /// A relogin that went right: two new logins, one evicted, the old one gone in time.
    fn good() -> ReloginObservation {
        ReloginObservation {
            logged_in_ns: 1_000,
            ghost_grace_ns: 500,
            old_open_at_deadline: false,
            old_open_at_end: false,
            old_got_probe: false,
            old_newest_chat_ns: Some(1_400),
            new_sessions: vec![EVICTED, SURVIVOR],
            probe_sent: true,
            probe_receipts_elsewhere: 10,
            probe_late_ms: None,
        }
    }

    #[test]
    fn a_clean_relogin_is_ok() {
        assert_eq!(judge(&good()), EvictionOutcome::Ok);
        let single = ReloginObservation {
            new_sessions: vec![SURVIVOR],
            ..good()
        };
        assert_eq!(judge(&single), EvictionOutcome::Ok);
    }

    #[test]
    fn an_old_session_that_ends_after_the_deadline_is_late() {
        let seen = ReloginObservation {
            old_open_at_deadline: true,
            ..good()
        };
        assert_eq!(judge(&seen), EvictionOutcome::Late);
    }

    #[test]
    fn a_session_that_never_ends_is_missing() {
        let old_stays = ReloginObservation {
            old_open_at_deadline: true,
            old_open_at_end: true,
            ..good()
        };
        assert_eq!(judge(&old_stays), EvictionOutcome::Missing);
        // A second new session open at the deadline leaves no single survivor (S6).
        let two_survive = ReloginObservation {
            new_sessions: vec![SURVIVOR, SURVIVOR],
            ..good()
        };
        assert_eq!(
            judge(&two_survive),
            EvictionOutcome::NoSingleSurvivor { open: 2 }
        );
    }

    #[test]
    fn a_deaf_survivor_is_a_zombie() {
        let deaf = ReloginObservation {
            new_sessions: vec![
                EVICTED,
                NewSession {
                    got_probe: false,
                    ..SURVIVOR
                },
            ],
            ..good()
        };
        assert_eq!(judge(&deaf), EvictionOutcome::Zombie);
    }

    #[test]
    fn a_survivor_that_missed_its_probe_is_a_zombie_only_on_evidence() {
        let deaf = NewSession {
            got_probe: false,
            ..SURVIVOR
        };
        // Nobody got the probe: the server did not demonstrably deliver it.
        let nobody_heard = ReloginObservation {
            new_sessions: vec![EVICTED, deaf],
            probe_receipts_elsewhere: 0,
            ..good()
        };
        assert_eq!(judge(&nobody_heard), EvictionOutcome::Unprobed);
        let no_probe = ReloginObservation {
            probe_sent: false,
            ..good()
        };
        assert_eq!(judge(&no_probe), EvictionOutcome::Unprobed);
        // It came, but after the deadline.
        let late = ReloginObservation {
            new_sessions: vec![EVICTED, deaf],
            probe_late_ms: Some(250),
            ..good()
        };
        assert_eq!(judge(&late), EvictionOutcome::ProbeLate { by_ms: 250 });
        // The server closed the survivor during the probe window.
        let closed = NewSession {
            open_at_end: false,
            closed_with: Some(Some(1013)),
            ..deaf
        };
        let closed = ReloginObservation {
            new_sessions: vec![EVICTED, closed],
            ..good()
        };
        assert_eq!(
            judge(&closed),
            EvictionOutcome::SurvivorClosed { code: Some(1013) }
        );
        // Every new session gone before the deadline: the newest one's end says why.
        let dropped = NewSession {
            closed_with: Some(None),
            ..EVICTED
        };
        let nobody_left = ReloginObservation {
            new_sessions: vec![EVICTED, dropped],
            ..good()
        };
        assert_eq!(
            judge(&nobody_left),
            EvictionOutcome::SurvivorClosed { code: None }
        );
    }

    #[test]
    fn an_old_session_that_still_hears_is_a_ghost() {
        let probe = ReloginObservation {
            old_got_probe: true,
            ..good()
        };
        assert_eq!(judge(&probe), EvictionOutcome::Ghost);
        let late_chat = ReloginObservation {
            old_newest_chat_ns: Some(1_501),
            ..good()
        };
        assert_eq!(judge(&late_chat), EvictionOutcome::Ghost);
        let within_grace = ReloginObservation {
            old_newest_chat_ns: Some(1_500),
            ..good()
        };
        assert_eq!(judge(&within_grace), EvictionOutcome::Ok);
        let evicted_new_heard = ReloginObservation {
            new_sessions: vec![
                NewSession {
                    got_probe: true,
                    ..EVICTED
                },
                SURVIVOR,
            ],
            ..good()
        };
        assert_eq!(judge(&evicted_new_heard), EvictionOutcome::Ghost);
    }

    #[test]
    fn the_worst_outcome_wins() {
        let ghost_and_missing = ReloginObservation {
            old_open_at_deadline: true,
            old_open_at_end: true,
            old_got_probe: true,
            ..good()
        };
        assert_eq!(judge(&ghost_and_missing), EvictionOutcome::Ghost);
        let zombie_and_ghost = ReloginObservation {
            old_got_probe: true,
            new_sessions: vec![
                EVICTED,
                NewSession {
                    got_probe: false,
                    ..SURVIVOR
                },
            ],
            ..good()
        };
        assert_eq!(judge(&zombie_and_ghost), EvictionOutcome::Zombie);
        let missing_but_unprobed = ReloginObservation {
            old_open_at_deadline: true,
            old_open_at_end: true,
            probe_sent: false,
            ..good()
        };
        assert_eq!(judge(&missing_but_unprobed), EvictionOutcome::Missing);
    }

    #[test]
    fn the_survivor_is_the_only_open_new_session() {
        assert_eq!(single_survivor(&[false, true, false]), Some(1));
        assert_eq!(single_survivor(&[true, true]), None);
        assert_eq!(single_survivor(&[false, false]), None);
        assert_eq!(single_survivor(&[]), None);
    }
}
