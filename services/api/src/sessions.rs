//! Revocation of access tokens and API keys (issue #15 item 14): the per-user session
//! version and live-session check every request makes, its in-process cache, the NATS
//! subject that invalidates it across API processes, and the watcher that ends a live-event
//! stream at its token's expiry or revocation.
//!
//! An access token names its user, session (refresh-token family) and the user's session
//! version (`sv`) at issue. A request is accepted only while the user exists in the token's
//! tenant, is not disabled, still has that session version (bumped by disable, role change,
//! password change and logout-all), and the session still has an unrevoked refresh token
//! (logout ends it). The answer is cached per session for [`ApiConfig::session_cache_ttl`]
//! while NATS carries invalidations, and for [`ApiConfig::session_cache_fallback_ttl`] when
//! it does not; a revocation in this process drops the entries at once and is published on
//! `<nats_subject_prefix>.auth.revoked` for the other API processes.
//!
//! [`ApiConfig::session_cache_ttl`]: crate::config::ApiConfig::session_cache_ttl
//! [`ApiConfig::session_cache_fallback_ttl`]: crate::config::ApiConfig::session_cache_fallback_ttl

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netledger_domain::identity::Role;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

/// Most sessions the cache holds; past it the cache starts empty again (a miss costs one
/// indexed query).
const MAX_ENTRIES: usize = 50_000;

/// Something revoked, as published between API processes and to live-event watchers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Revocation {
    /// Every session of a user (disabled, role or password changed, logged out everywhere);
    /// also every API key the user created.
    User(Uuid),
    /// One session (logout, refresh-token reuse).
    Session(Uuid),
    /// One API key (revoked).
    ApiKey(Uuid),
}

/// A user's session as the database has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionFacts {
    /// The user.
    pub user: Uuid,
    /// The user's tenant.
    pub tenant: Uuid,
    /// The user's current session version.
    pub version: i64,
    /// Whether the user is disabled.
    pub disabled: bool,
    /// The user's current role.
    pub role: Role,
    /// Whether the session still has an unrevoked refresh token.
    pub live: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    facts: SessionFacts,
    fetched: Instant,
}

/// The in-process cache of session checks and the local revocation feed.
#[derive(Debug)]
pub struct SessionCache {
    entries: Mutex<HashMap<Uuid, Entry>>,
    feed: broadcast::Sender<Revocation>,
    nats_live: AtomicBool,
    ttl: Duration,
    fallback_ttl: Duration,
}

impl SessionCache {
    /// An empty cache with the two lifetimes.
    pub fn new(ttl: Duration, fallback_ttl: Duration) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            feed: broadcast::channel(1024).0,
            nats_live: AtomicBool::new(false),
            ttl,
            fallback_ttl,
        }
    }

    /// The lifetime of an entry now: long while NATS carries revocations, short otherwise.
    pub fn ttl(&self) -> Duration {
        if self.nats_live.load(Ordering::Relaxed) {
            self.ttl
        } else {
            self.fallback_ttl
        }
    }

    /// Records whether revocations arrive through NATS.
    pub fn set_nats_live(&self, live: bool) {
        self.nats_live.store(live, Ordering::Relaxed);
    }

    /// The cached facts of `session`, if fresh.
    pub fn get(&self, session: Uuid) -> Option<SessionFacts> {
        let ttl = self.ttl();
        let entries = self.entries.lock().ok()?;
        entries
            .get(&session)
            .filter(|e| e.fetched.elapsed() < ttl)
            .map(|e| e.facts)
    }

    /// Caches the facts of `session`.
    pub fn put(&self, session: Uuid, facts: SessionFacts) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(
                session,
                Entry {
                    facts,
                    fetched: Instant::now(),
                },
            );
        }
    }

    /// Drops what `r` revokes from the cache and tells this process's watchers.
    pub fn apply(&self, r: Revocation) {
        if let Ok(mut entries) = self.entries.lock() {
            match r {
                Revocation::User(user) => entries.retain(|_, e| e.facts.user != user),
                Revocation::Session(session) => {
                    entries.remove(&session);
                }
                Revocation::ApiKey(_) => {}
            }
        }
        // No receiver is fine: no live stream is open.
        let _ = self.feed.send(r);
    }

    /// Drops every entry (NATS reconnected: invalidations may have been missed).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }

    /// Revocations from now on (for live-event watchers).
    pub fn subscribe(&self) -> broadcast::Receiver<Revocation> {
        self.feed.subscribe()
    }
}

/// The NATS subject revocations travel on between API processes.
pub fn subject(prefix: &str) -> String {
    format!("{prefix}.auth.revoked")
}

/// Applies revocations other API processes publish, until the state is dropped. The cache's
/// long lifetime applies only while this subscription is up.
pub(crate) fn spawn_listener(
    state: std::sync::Weak<crate::state::Inner>,
    client: async_nats::Client,
    subject: String,
) {
    use futures::StreamExt as _;
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let mut subscriber = match client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%subject, error = %e, "cannot subscribe to revocations; session checks use the short cache lifetime");
                return;
            }
        };
        let mut was_connected = false;
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        loop {
            let connected =
                client.connection_state() == async_nats::connection::State::Connected;
            let Some(inner) = state.upgrade() else { return };
            let cache = inner.sessions();
            if connected && !was_connected {
                // Whatever was published while we were away is lost: start afresh.
                cache.clear();
            }
            cache.set_nats_live(connected);
            was_connected = connected;
            drop(inner);
            tokio::select! {
                m = subscriber.next() => {
                    let Some(m) = m else {
                        if let Some(inner) = state.upgrade() {
                            inner.sessions().set_nats_live(false);
                        }
                        return;
                    };
                    match serde_json::from_slice::<Revocation>(&m.payload) {
                        Ok(r) => {
                            if let Some(inner) = state.upgrade() {
                                inner.apply_revocation(r);
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "unreadable revocation message"),
                    }
                }
                _ = poll.tick() => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(user: Uuid) -> SessionFacts {
        SessionFacts {
            user,
            tenant: Uuid::nil(),
            version: 1,
            disabled: false,
            role: Role::Operator,
            live: true,
        }
    }

    #[test]
    fn revocations_drop_entries_and_reach_watchers() {
        let cache = SessionCache::new(Duration::from_secs(60), Duration::from_secs(60));
        let (u, s1, s2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        cache.put(s1, facts(u));
        cache.put(s2, facts(u));
        let mut rx = cache.subscribe();
        cache.apply(Revocation::Session(s1));
        assert!(cache.get(s1).is_none());
        assert!(cache.get(s2).is_some());
        cache.apply(Revocation::User(u));
        assert!(cache.get(s2).is_none());
        assert_eq!(rx.try_recv().unwrap(), Revocation::Session(s1));
        assert_eq!(rx.try_recv().unwrap(), Revocation::User(u));
        let text = serde_json::to_string(&Revocation::ApiKey(u)).unwrap();
        assert_eq!(
            serde_json::from_str::<Revocation>(&text).unwrap(),
            Revocation::ApiKey(u)
        );
    }

    #[test]
    fn without_nats_entries_live_briefly() {
        let cache = SessionCache::new(Duration::from_secs(60), Duration::ZERO);
        let s = Uuid::new_v4();
        cache.put(s, facts(Uuid::new_v4()));
        assert!(cache.get(s).is_none(), "fallback lifetime zero: no caching");
        cache.set_nats_live(true);
        assert!(cache.get(s).is_some());
    }
}
