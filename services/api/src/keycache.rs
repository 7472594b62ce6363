//! API-key authentication results, cached and rate-limited, so that unauthenticated
//! requests cannot turn into unbounded lookups on the system pool (which also carries the
//! workers' lease heartbeats).
//!
//! - A lookup's result is kept for `ApiConfig::api_key_cache_ttl` (default 5 s): a valid
//!   key's principal, and — in a separate, smaller map — the refusal of an unknown, wrong,
//!   revoked or expired key (negative caching). Entries are keyed by the SHA-256 of the
//!   whole presented key, so a wrong secret for a real key id is a different entry.
//! - Both maps are bounded ([`MAX_VALID`], [`MAX_REFUSED`]): when full, expired entries are
//!   swept; if still full, the result is not cached.
//! - Lookups that miss the cache are rate-limited per client address
//!   (`ApiConfig::api_key_lookups`, default 120 per minute): over it, 429 before the
//!   database is asked. Cached answers are not counted.
//! - Revoking a key forgets it at once in the process that revoked it; other API
//!   processes stop accepting it within the TTL.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use netledger_domain::clock::Clock;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::{ApiError, ProblemKind};
use crate::ratelimit::Limiter;

/// Valid keys cached at most.
pub const MAX_VALID: usize = 10_000;
/// Refused keys cached at most.
pub const MAX_REFUSED: usize = 10_000;

type Digest = [u8; 32];

#[derive(Debug, Clone)]
struct Entry<T> {
    until: OffsetDateTime,
    value: T,
}

/// The cache (one per API state).
pub struct KeyCache {
    ttl: time::Duration,
    clock: Arc<dyn Clock>,
    valid: Mutex<HashMap<Digest, Entry<(Uuid, Principal)>>>,
    refused: Mutex<HashMap<Digest, Entry<String>>>,
    lookups: Limiter,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn digest(token: &str) -> Digest {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.as_bytes()).into()
}

fn insert<T>(
    map: &mut HashMap<Digest, Entry<T>>,
    max: usize,
    now: OffsetDateTime,
    k: Digest,
    e: Entry<T>,
) {
    if map.len() >= max {
        map.retain(|_, e| e.until > now);
    }
    if map.len() < max {
        map.insert(k, e);
    }
}

impl KeyCache {
    /// A cache keeping results for `ttl`, allowing `lookups` database lookups per client.
    pub fn new(
        ttl: std::time::Duration,
        lookups: crate::config::RateLimit,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            ttl: time::Duration::try_from(ttl).unwrap_or(time::Duration::ZERO),
            lookups: Limiter::new(lookups, clock.clone()),
            clock,
            valid: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
        }
    }

    /// The principal for `token` from the cache, else from `lookup` (counted against
    /// `client`'s lookup limit). Only "valid" and "refused" (401) results are cached; a
    /// failing database is not.
    pub async fn authenticate<F>(
        &self,
        token: &str,
        client: &str,
        lookup: F,
    ) -> Result<Principal, ApiError>
    where
        F: Future<Output = Result<Principal, ApiError>>,
    {
        let k = digest(token);
        let now = self.clock.now();
        if let Some(e) = self.valid.lock().unwrap_or_else(|p| p.into_inner()).get(&k)
            && e.until > now
        {
            return Ok(e.value.1.clone());
        }
        if let Some(e) = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&k)
            && e.until > now
        {
            return Err(ApiError::unauthenticated(e.value.clone()));
        }
        self.lookups.hit(client).map_err(|wait| {
            ApiError::rate_limited_because(
                wait,
                format!("too many API-key lookups from this address; retry in {wait} s"),
            )
        })?;
        let result = lookup.await;
        if self.ttl.is_zero() {
            return result;
        }
        let until = now + self.ttl;
        match &result {
            Ok(p) => {
                if let crate::auth::Subject::ApiKey { id } = p.subject {
                    let mut map = self.valid.lock().unwrap_or_else(|p| p.into_inner());
                    insert(
                        &mut map,
                        MAX_VALID,
                        now,
                        k,
                        Entry {
                            until,
                            value: (id, p.clone()),
                        },
                    );
                }
            }
            Err(e) if e.kind() == ProblemKind::Unauthenticated => {
                let mut map = self.refused.lock().unwrap_or_else(|p| p.into_inner());
                insert(
                    &mut map,
                    MAX_REFUSED,
                    now,
                    k,
                    Entry {
                        until,
                        value: e.detail().to_owned(),
                    },
                );
            }
            Err(_) => {}
        }
        result
    }

    /// Forgets every cached result of key `id` (after a revocation).
    pub fn forget_key(&self, id: Uuid) {
        self.valid
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, e| e.value.0 != id);
    }

    /// Forgets everything.
    pub fn clear(&self) {
        self.valid.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
