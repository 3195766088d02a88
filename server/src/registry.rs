//! Who is online: one session per user name (docs/protocol.md S4–S6, M1, M2).
//!
//! Every session carries a unique connection id. Registering a name that is already
//! online replaces the entry and hands the predecessor back to be evicted; a session that
//! ends removes the entry only if it still holds *its own* id. That comparison is the fix
//! for the demo's bug (its dying read loop deleted by name, unregistering its successor),
//! and because replacement and removal each happen under one write lock, concurrent logins
//! of one name always leave exactly one entry: the last one registered.
//!
//! The lock is a `std::sync::RwLock` held for a map operation or one fan-out loop, never
//! across an `.await`. Broadcasts take the read lock, so several senders fan out at once.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::metrics::Metrics;
use crate::session::Session;

/// The registry refused a login because the server is shutting down.
#[derive(Debug, thiserror::Error)]
#[error("server is shutting down")]
pub struct ShuttingDown;

/// The map of online users.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    state: RwLock<State>,
    /// Deliberate defect for tests: remove by name, as the Go demo does
    /// ([`crate::Fault::DeleteByName`]).
    #[cfg(feature = "fault-injection")]
    delete_by_name: bool,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<Arc<str>, Arc<Session>>,
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

    /// Makes `session` the user's session. Returns the session it replaced, which the
    /// caller must evict.
    pub fn register(
        &self,
        session: Arc<Session>,
        metrics: &Metrics,
    ) -> Result<Option<Arc<Session>>, ShuttingDown> {
        let mut state = self.write();
        if state.shut {
            return Err(ShuttingDown);
        }
        let previous = state.sessions.insert(session.name.clone(), session);
        if previous.is_none() {
            metrics.sessions_online.fetch_add(1, Relaxed);
        }
        Ok(previous)
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
        Arc::new(Session::new(id, name.into()))
    }

    #[test]
    fn a_replaced_session_cannot_unregister_its_successor() {
        let (registry, metrics) = (SessionRegistry::default(), Metrics::default());
        let old = session(1, "ann");
        let new = session(2, "ann");
        assert!(registry.register(old.clone(), &metrics).unwrap().is_none());
        let replaced = registry.register(new.clone(), &metrics).unwrap().unwrap();
        assert_eq!(replaced.id, 1);
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
}
