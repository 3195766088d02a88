//! The relogin eviction check (docs/protocol.md S4–S6): what was seen during one relogin,
//! and the verdict on it. Pure: the relogin itself (opening connections, sending the
//! probe, waiting) is done by `run::relogin`, which fills in a [`ReloginObservation`].
//!
//! A relogin of user U opens `relogin_concurrency` new connections for U while the old one
//! is still online. Once every new handshake has completed (time `t1`):
//! - the old connection, and all new ones but one, must end (Close, any code, or a TCP
//!   drop) within `eviction_deadline` of `t1` — otherwise *late* (ended before the check
//!   finished) or *missing* (never ended);
//! - the one survivor must receive a probe broadcast sent after that — otherwise *zombie*:
//!   the user is online but deaf, the Go demo's bug (S5);
//! - the old connection must not receive the probe, nor any chat message whose intended
//!   send time is later than `t1 + ghost_grace` — otherwise *ghost*.
//!
//! Each relogin gets one outcome; when several apply the worst wins:
//! zombie, ghost, missing, late, ok.

use crate::record::Counters;

/// The verdict on one relogin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionOutcome {
    Ok,
    Late,
    Missing,
    Zombie,
    Ghost,
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
    /// Received the probe.
    pub got_probe: bool,
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
    let survivor_got_probe =
        seen.probe_sent && survivor.is_some_and(|i| seen.new_sessions[i].got_probe);
    let probe_elsewhere = seen.old_got_probe
        || seen
            .new_sessions
            .iter()
            .enumerate()
            .any(|(i, s)| Some(i) != survivor && s.got_probe);
    let late_chat = seen
        .old_newest_chat_ns
        .is_some_and(|newest| newest > seen.logged_in_ns.saturating_add(seen.ghost_grace_ns));
    if !survivor_got_probe {
        EvictionOutcome::Zombie
    } else if probe_elsewhere || late_chat {
        EvictionOutcome::Ghost
    } else if !ended_eventually {
        EvictionOutcome::Missing
    } else if !ended_in_time {
        EvictionOutcome::Late
    } else {
        EvictionOutcome::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SURVIVOR: NewSession = NewSession {
        open_at_deadline: true,
        open_at_end: true,
        got_probe: true,
    };
    const EVICTED: NewSession = NewSession {
        open_at_deadline: false,
        open_at_end: false,
        got_probe: false,
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
        // A second new session open at the deadline leaves no single survivor: zombie.
        let two_survive = ReloginObservation {
            new_sessions: vec![SURVIVOR, SURVIVOR],
            ..good()
        };
        assert_eq!(judge(&two_survive), EvictionOutcome::Zombie);
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
        let no_probe = ReloginObservation {
            probe_sent: false,
            ..good()
        };
        assert_eq!(
            judge(&no_probe),
            EvictionOutcome::Zombie,
            "nothing proves it hears"
        );
        let nobody_left = ReloginObservation {
            new_sessions: vec![EVICTED],
            ..good()
        };
        assert_eq!(judge(&nobody_left), EvictionOutcome::Zombie);
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
            probe_sent: false,
            ..good()
        };
        assert_eq!(judge(&zombie_and_ghost), EvictionOutcome::Zombie);
    }

    #[test]
    fn the_survivor_is_the_only_open_new_session() {
        assert_eq!(single_survivor(&[false, true, false]), Some(1));
        assert_eq!(single_survivor(&[true, true]), None);
        assert_eq!(single_survivor(&[false, false]), None);
        assert_eq!(single_survivor(&[]), None);
    }
}
