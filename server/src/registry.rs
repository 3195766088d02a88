//! Who is online: one session per user name (docs/protocol.md S4–S6, M1, M2).
//!
//! Every session carries a unique connection id. Registering a name that is already
//! online replaces the entry and hands the predecessor back to be evicted; a session that
//! ends removes the entry only if it still holds *its own* id. That comparison is the fix
//! for the demo's bug (its dying read loop deleted by name, unregistering its successor),
//! and because replacement and removal each happen under one write lock, concurrent logins
//! of one name always leave exactly one entry: the last one registered.
//!
//! In a cluster (docs/protocol.md C3) every login also carries the sequence number the
//! bus's counter gave it, and the highest number wins wherever the logins happened: a
//! local login that is older than the user's registered session, or than a login this
//! node has heard of from another node, is *superseded* (it never becomes the user's
//! session), and a login heard from another node evicts an older local session. A single
//! node gives every login number 0, and then the last one registered wins, as always.
//! Heard logins are kept only as long as a login of this node can still be on its way
//! from the counter to [`SessionRegistry::register`] ([`HEARD_FOR`]): anything heard
//! before a login took its number has a lower number than it.
//!
//! The lock is a `std::sync::RwLock` held for a map operation or one fan-out loop, never
//! across an `.await`. Broadcasts take the read lock, so several senders fan out at once.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::handle::Session;
use crate::metrics::Metrics;

/// The registry refused a login because the server is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("server is shutting down")]
pub struct ShuttingDown;

/// The map of online users.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    state: RwLock<State>,
    /// Deliberate defect for tests: remove by name, as the Go demo does
    /// ([`crate::fault::Fault::DeleteByName`]).
    #[cfg(feature = "fault-injection")]
    delete_by_name: bool,
}

/// How long a login heard from another node is remembered: longer than any local login
/// can take from taking its number to registering (the bus's response timeout is far
/// below it).
pub const HEARD_FOR: Duration = Duration::from_secs(30);

/// What became of a login handed to [`SessionRegistry::register`].
#[derive(Debug)]
pub enum Registered {
    /// It is the user's session now; `replaced` is the predecessor the caller must evict.
    Online { replaced: Option<Arc<Session>> },
    /// A newer login of the same name (a higher sequence number) already exists, here or
    /// on another node: this one must be closed as replaced, never registered.
    Superseded,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<Arc<str>, Arc<Session>>,
    /// The highest sequence number heard from another node per name, and when.
    heard: HashMap<Arc<str>, (u64, Instant)>,
    /// Set by [`SessionRegistry::close_all`]; no login registers afterwards.
    shut: bool,
}

impl SessionRegistry {
    /// An empty registry with the demo's bug: a session that ends removes its name's
    /// entry even when that is its successor's. It exists only so tests can prove that
    /// the eviction checks fail on it.
    #[cfg(feature = "fault-injection")]
    pub fn deleting_by_name() -> Self {
        SessionRegistry {
            state: RwLock::default(),
            delete_by_name: true,
        }
    }

    /// Makes `session` the user's session unless a newer login of its name exists (see
    /// [`Registered`]).
    pub fn register(
        &self,
        session: Arc<Session>,
        metrics: &Metrics,
    ) -> Result<Registered, ShuttingDown> {
        let mut state = self.write();
        if state.shut {
            return Err(ShuttingDown);
        }
        let heard = state.heard.get(&session.name).map_or(0, |&(seq, _)| seq);
        let current = state.sessions.get(&session.name).map_or(0, |s| s.seq);
        if heard > session.seq || current > session.seq {
            return Ok(Registered::Superseded);
        }
        let replaced = state.sessions.insert(session.name.clone(), session);
        if replaced.is_none() {
            metrics.sessions_online.fetch_add(1, Relaxed);
        }
        Ok(Registered::Online { replaced })
    }

    /// Another node says `name` logged in with number `seq` (C3): remembers it, and
    /// removes and returns the local session of `name` if it is older, for the caller to
    /// evict.
    pub fn heard_login(
        &self,
        name: &str,
        seq: u64,
        now: Instant,
        metrics: &Metrics,
    ) -> Option<Arc<Session>> {
        let mut state = self.write();
        let name: Arc<str> = match state.sessions.get_key_value(name) {
            Some((key, _)) => key.clone(),
            None => name.into(),
        };
        let entry = state.heard.entry(name.clone()).or_insert((seq, now));
        if entry.0 <= seq {
            *entry = (seq, now);
        }
        let older = state.sessions.get(&name).is_some_and(|s| s.seq < seq);
        if !older {
            return None;
        }
        let evicted = state.sessions.remove(&name);
        metrics.sessions_online.fetch_sub(1, Relaxed);
        evicted
    }

    /// Forgets logins heard before `now - HEARD_FOR`.
    pub fn forget_heard(&self, now: Instant) {
        let mut state = self.write();
        state
            .heard
            .retain(|_, &mut (_, at)| now.saturating_duration_since(at) < HEARD_FOR);
    }

    /// Removes `session`'s entry if it is still the registered one for its name. Returns
    /// whether anything was removed.
    pub fn unregister(&self, session: &Session, metrics: &Metrics) -> bool {
        let mut state = self.write();
        let own = match state.sessions.get(&session.name) {
            Some(current) => current.id == session.id,
            None => false,
        };
        #[cfg(feature = "fault-injection")]
        let own = own || (self.delete_by_name && state.sessions.contains_key(&session.name));
        if own {
            state.sessions.remove(&session.name);
            metrics.sessions_online.fetch_sub(1, Relaxed);
        }
        own
    }

    /// Calls `deliver` for every online session except the one named `sender`, under the
    /// read lock. `deliver` must not block or await.
    pub fn for_each_other(&self, sender: &str, mut deliver: impl FnMut(&Arc<Session>)) {
        let state = self.read();
        for (name, session) in state.sessions.iter() {
            if &**name != sender {
                deliver(session);
            }
        }
    }

    /// A snapshot of every online session, for work done outside the lock.
    pub fn snapshot(&self) -> Vec<Arc<Session>> {
        self.read().sessions.values().cloned().collect()
    }

    /// Refuses all further logins and returns every online session, for shutdown.
    pub fn close_all(&self) -> Vec<Arc<Session>> {
        let mut state = self.write();
        state.shut = true;
        state.sessions.values().cloned().collect()
    }

    /// The session currently registered under `name`, if any.
    #[cfg(test)]
    fn get(&self, name: &str) -> Option<Arc<Session>> {
        self.read().sessions.get(name).cloned()
    }

    /// How many users are online.
    pub fn len(&self) -> usize {
        self.read().sessions.len()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // Poisoning means a panic under the lock (a bug); the map is still usable.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: u64, name: &str) -> Arc<Session> {
        numbered(id, name, 0)
    }

    fn numbered(id: u64, name: &str, seq: u64) -> Arc<Session> {
        Arc::new(Session::new(id, name.into(), seq))
    }

    fn replaced(registered: Registered) -> Option<u64> {
        match registered {
            Registered::Online { replaced } => replaced.map(|s| s.id),
            Registered::Superseded => panic!("superseded"),
        }
    }

    #[test]
    fn a_replaced_session_cannot_unregister_its_successor() {
        let (registry, metrics) = (SessionRegistry::default(), Metrics::default());
        let old = session(1, "ann");
        let new = session(2, "ann");
        assert_eq!(
            replaced(registry.register(old.clone(), &metrics).unwrap()),
            None
        );
        assert_eq!(
            replaced(registry.register(new.clone(), &metrics).unwrap()),
            Some(1)
        );
        assert!(!registry.unregister(&old, &metrics));
        assert_eq!(registry.get("ann").unwrap().id, 2);
        assert_eq!(metrics.sessions_online.load(Relaxed), 1);
        assert!(registry.unregister(&new, &metrics));
        assert_eq!(metrics.sessions_online.load(Relaxed), 0);
    }

    #[test]
    fn the_demo_bug_unregisters_the_successor() {
        let (registry, metrics) = (SessionRegistry::deleting_by_name(), Metrics::default());
        let old = session(1, "ann");
        registry.register(old.clone(), &metrics).unwrap();
        registry.register(session(2, "ann"), &metrics).unwrap();
        assert!(registry.unregister(&old, &metrics));
        assert!(registry.get("ann").is_none());
    }

    #[test]
    fn fan_out_skips_the_sender_and_shutdown_refuses_logins() {
        let (registry, metrics) = (SessionRegistry::default(), Metrics::default());
        for (id, name) in [(1, "a"), (2, "b"), (3, "c")] {
            registry.register(session(id, name), &metrics).unwrap();
        }
        let mut seen = Vec::new();
        registry.for_each_other("b", |s| seen.push(s.id));
        seen.sort();
        assert_eq!(seen, [1, 3]);
        assert_eq!(registry.close_all().len(), 3);
        assert!(registry.register(session(4, "d"), &metrics).is_err());
    }

    #[test]
    fn the_highest_sequence_number_wins_whatever_the_order() {
        let (registry, metrics) = (SessionRegistry::default(), Metrics::default());
        let now = Instant::now();
        // Local logins registering out of number order: the older one is superseded.
        assert_eq!(
            replaced(registry.register(numbered(1, "ann", 5), &metrics).unwrap()),
            None
        );
        assert!(matches!(
            registry.register(numbered(2, "ann", 4), &metrics).unwrap(),
            Registered::Superseded
        ));
        assert_eq!(registry.get("ann").unwrap().id, 1);
        // A newer login on another node evicts the local session.
        let evicted = registry.heard_login("ann", 9, now, &metrics).unwrap();
        assert_eq!(evicted.id, 1);
        assert!(registry.get("ann").is_none());
        assert_eq!(metrics.sessions_online.load(Relaxed), 0);
        // A local login that took its number before that one did is superseded by it.
        assert!(matches!(
            registry.register(numbered(3, "ann", 8), &metrics).unwrap(),
            Registered::Superseded
        ));
        assert_eq!(
            replaced(registry.register(numbered(4, "ann", 10), &metrics).unwrap()),
            None
        );
        // An older login heard late evicts nothing.
        assert!(registry.heard_login("ann", 7, now, &metrics).is_none());
        assert_eq!(registry.get("ann").unwrap().id, 4);
        // Heard logins are forgotten after HEARD_FOR.
        registry.forget_heard(now + HEARD_FOR);
        assert!(registry.read().heard.is_empty());
    }
}
