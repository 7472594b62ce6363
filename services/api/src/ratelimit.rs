//! Rate limits for the login and token endpoints: a sliding-window-log limiter per key
//! (client address, account), on the injected clock.
//!
//! The limits live in each API process's memory: with N processes behind a balancer an
//! attacker gets at most N times the limit, which still bounds online guessing. Argon2's
//! cost is the second line of defence.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use netledger_domain::clock::Clock;
use time::OffsetDateTime;

use crate::config::RateLimit;

/// Keys beyond this many trigger a sweep of idle ones.
const SWEEP_AT: usize = 10_000;

/// A sliding-window limiter over string keys.
#[derive(Clone)]
pub struct Limiter {
    limit: RateLimit,
    clock: Arc<dyn Clock>,
    hits: Arc<Mutex<HashMap<String, VecDeque<OffsetDateTime>>>>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter allowing `limit.max` hits per `limit.window` per key.
    pub fn new(limit: RateLimit, clock: Arc<dyn Clock>) -> Self {
        Self {
            limit,
            clock,
            hits: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Records a hit for `key`; `Err(seconds)` if the key is over its limit (the hit is not
    /// recorded then), with the whole seconds until the oldest hit leaves the window.
    pub fn hit(&self, key: &str) -> Result<(), u64> {
        let now = self.clock.now();
        let window = time::Duration::try_from(self.limit.window).unwrap_or(time::Duration::MAX);
        let mut map = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > SWEEP_AT {
            map.retain(|_, q| q.back().is_some_and(|t| *t + window > now));
        }
        let q = map.entry(key.to_owned()).or_default();
        while q.front().is_some_and(|t| *t + window <= now) {
            q.pop_front();
        }
        if q.len() >= self.limit.max as usize {
            let wait = q
                .front()
                .map(|t| (*t + window - now).whole_seconds().max(0) as u64 + 1)
                .unwrap_or(1);
            return Err(wait);
        }
        q.push_back(now);
        Ok(())
    }

    /// Forgets the hits of `key` (after a successful login).
    pub fn reset(&self, key: &str) {
        let mut map = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.limit.window
    }
}

/// The client's address: the first `X-Forwarded-For` entry when trusted, else the peer
/// address of the connection, else `unknown` (in-process tests).
pub fn client_ip(parts: &Parts, trust_forwarded_for: bool) -> String {
    if trust_forwarded_for && let Some(ip) = forwarded_for(&parts.headers) {
        return ip.to_string();
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The client address as an extractor (see [`client_ip`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIp(pub String);

impl axum::extract::FromRequestParts<crate::state::ApiState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &crate::state::ApiState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_ip(parts, state.config().trust_forwarded_for)))
    }
}

fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get("x-forwarded-for")?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use netledger_domain::clock::ManualClock;

    use super::*;

    #[test]
    fn limits_per_key_and_frees_as_the_window_slides() {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH));
        let l = Limiter::new(
            RateLimit {
                max: 2,
                window: Duration::from_secs(60),
            },
            clock.clone(),
        );
        assert!(l.hit("a").is_ok());
        clock.advance(time::Duration::seconds(10));
        assert!(l.hit("a").is_ok());
        assert_eq!(l.hit("a"), Err(51));
        assert!(l.hit("b").is_ok(), "other keys are independent");
        clock.advance(time::Duration::seconds(51));
        assert!(l.hit("a").is_ok(), "the first hit left the window");
        l.reset("a");
        assert!(l.hit("a").is_ok());
    }
}
