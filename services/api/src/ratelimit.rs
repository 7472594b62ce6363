//! Rate limits for the login and token endpoints: a sliding-window-log limiter per key
//! (client address, account), on the injected clock; the client address behind trusted
//! proxies; and the gate that bounds concurrent password hashing.
//!
//! The limits live in each API process's memory: with N processes behind a balancer an
//! attacker gets at most N times the limit, which still bounds online guessing. Argon2's
//! cost is the second line of defence.
//!
//! Memory is bounded whatever clients send: a key is stored as its SHA-256 (32 bytes, so
//! a megabyte-long e-mail address costs the same as a short one), each key keeps at most
//! `max` timestamps, and the map holds at most [`MAX_KEYS`] keys (idle ones are swept
//! first; when all are active, the least recently used one is dropped).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use netledger_domain::clock::Clock;
use time::OffsetDateTime;

use crate::config::RateLimit;

/// Keys beyond this many trigger a sweep of idle ones.
const SWEEP_AT: usize = 10_000;
/// The most keys a limiter holds.
pub const MAX_KEYS: usize = 100_000;

type Key = [u8; 32];

fn key_of(key: &str) -> Key {
    use sha2::Digest as _;
    sha2::Sha256::digest(key.as_bytes()).into()
}

/// A sliding-window limiter over string keys.
#[derive(Clone)]
pub struct Limiter {
    limit: RateLimit,
    clock: Arc<dyn Clock>,
    max_keys: usize,
    hits: Arc<Mutex<HashMap<Key, VecDeque<OffsetDateTime>>>>,
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
        Self::with_max_keys(limit, clock, MAX_KEYS)
    }

    /// A limiter that holds at most `max_keys` keys.
    pub fn with_max_keys(limit: RateLimit, clock: Arc<dyn Clock>, max_keys: usize) -> Self {
        Self {
            limit,
            clock,
            max_keys: max_keys.max(1),
            hits: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.hits.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a hit for `key`; `Err(seconds)` if the key is over its limit (the hit is not
    /// recorded then), with the whole seconds until the oldest hit leaves the window.
    pub fn hit(&self, key: &str) -> Result<(), u64> {
        let now = self.clock.now();
        let window = time::Duration::try_from(self.limit.window).unwrap_or(time::Duration::MAX);
        let key = key_of(key);
        let mut map = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&key) {
            if map.len() > SWEEP_AT.min(self.max_keys.saturating_sub(1)) {
                map.retain(|_, q| q.back().is_some_and(|t| *t + window > now));
            }
            if map.len() >= self.max_keys {
                // Every key is active: drop the one hit least recently.
                let oldest = map
                    .iter()
                    .min_by_key(|(_, q)| q.back().copied())
                    .map(|(k, _)| *k);
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        let q = map.entry(key).or_default();
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
        map.remove(&key_of(key));
    }

    /// The window.
    pub fn window(&self) -> Duration {
        self.limit.window
    }
}

/// An address range (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` or a single address.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an address or CIDR (e.g. 10.0.0.0/8)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0-{max}"))?,
            None => max,
        };
        Ok(Self { net, prefix })
    }

    /// Whether `ip` lies in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// The client's address. The peer address of the connection, unless it is a trusted proxy:
/// then `X-Forwarded-For` is read from the right (each proxy appends the address it got the
/// request from) and the first address that is not a trusted proxy is the client. Entries
/// to the left of it are whatever the client sent and are ignored. `unknown` without a peer
/// address (in-process tests).
pub fn client_ip(parts: &Parts, trusted: &[Cidr]) -> String {
    let Some(peer) = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return "unknown".to_owned();
    };
    client_behind(peer, &parts.headers, trusted).to_string()
}

/// [`client_ip`] for a known peer address.
pub fn client_behind(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    // Several headers are one list, in order.
    for value in headers.get_all("x-forwarded-for").iter().rev() {
        let Ok(text) = value.to_str() else {
            return client;
        };
        for entry in text.rsplit(',') {
            match entry.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !is_trusted(ip) {
                        return ip;
                    }
                }
                // Garbage where an address should be: the hop that wrote it is the client.
                Err(_) => return client,
            }
        }
    }
    client
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
        Ok(Self(client_ip(parts, &state.config().trusted_proxies)))
    }
}

/// Bounds concurrent password hashing (argon2id: tens of MiB and tens of ms each), so a
/// burst of logins cannot take all memory and the blocking pool. `max` hashes run at once;
/// up to `max` more wait; beyond that a request is refused at once (429, retry in 1 s).
#[derive(Debug)]
pub struct PasswordGate {
    admission: Arc<tokio::sync::Semaphore>,
    work: Arc<tokio::sync::Semaphore>,
}

/// A running (or queued) hash's place in the [`PasswordGate`].
#[derive(Debug)]
pub struct PasswordPermit {
    _admission: tokio::sync::OwnedSemaphorePermit,
    _work: tokio::sync::OwnedSemaphorePermit,
}

static PASSWORD_GATE: OnceLock<PasswordGate> = OnceLock::new();

impl PasswordGate {
    /// A gate for `max` concurrent hashes (and as many waiting).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            admission: Arc::new(tokio::sync::Semaphore::new(max * 2)),
            work: Arc::new(tokio::sync::Semaphore::new(max)),
        }
    }

    /// The process's gate (hashing runs on the process's blocking pool and CPUs, so there is
    /// one per process). Its size is fixed by the first call: [`crate::ApiState::new`]
    /// passes `ApiConfig::max_concurrent_password_hashes`.
    pub fn process(max: usize) -> &'static PasswordGate {
        PASSWORD_GATE.get_or_init(|| PasswordGate::new(max))
    }

    /// Waits for a place, or refuses at once (429) when the queue is full too.
    pub async fn enter(&self) -> Result<PasswordPermit, crate::ApiError> {
        let admission = self.admission.clone().try_acquire_owned().map_err(|_| {
            crate::ApiError::rate_limited_because(
                1,
                "the server is busy checking passwords; retry in 1 s",
            )
        })?;
        let work = self
            .work
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| crate::ApiError::unavailable("password hashing is shut down"))?;
        Ok(PasswordPermit {
            _admission: admission,
            _work: work,
        })
    }
}

/// A place in the process's [`PasswordGate`] (for `hash_password`/`verify_password`).
pub async fn password_permit() -> Result<PasswordPermit, crate::ApiError> {
    PasswordGate::process(DEFAULT_PASSWORD_HASHES).enter().await
}

/// Concurrent password hashes when nothing configured the gate.
pub const DEFAULT_PASSWORD_HASHES: usize = 4;

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

    #[test]
    fn keys_are_bounded_in_size_and_number() {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::UNIX_EPOCH));
        let limit = RateLimit {
            max: 1,
            window: Duration::from_secs(60),
        };
        let l = Limiter::with_max_keys(limit, clock.clone(), 3);
        // A huge key is stored as its hash; it still limits.
        let huge = "x".repeat(1 << 20);
        assert!(l.hit(&huge).is_ok());
        assert!(l.hit(&huge).is_err());
        for i in 0..10 {
            clock.advance(time::Duration::seconds(1));
            assert!(l.hit(&format!("k{i}")).is_ok());
            assert!(l.len() <= 3, "at most 3 keys");
        }
        // The most recent keys are the ones kept.
        assert!(l.hit("k9").is_err());
        let default = Limiter::new(limit, clock);
        assert_eq!(default.max_keys, MAX_KEYS);
    }

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_read_from_the_right_behind_trusted_proxies_only() {
        let proxies = [
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("fd00::/8").unwrap(),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // A client that is not a proxy: its own header is ignored.
        assert_eq!(
            client_behind(ip("203.0.113.9"), &headers(&["1.2.3.4"]), &proxies),
            ip("203.0.113.9")
        );
        // Behind the proxy: the right-most untrusted entry, not the spoofed left-most one.
        assert_eq!(
            client_behind(
                ip("10.0.0.2"),
                &headers(&["6.6.6.6, 198.51.100.7, 10.0.0.1"]),
                &proxies
            ),
            ip("198.51.100.7")
        );
        // Several headers are one list.
        assert_eq!(
            client_behind(
                ip("10.0.0.2"),
                &headers(&["6.6.6.6", "198.51.100.7"]),
                &proxies
            ),
            ip("198.51.100.7")
        );
        // Garbage ends the walk at the last good hop; no header: the proxy itself.
        assert_eq!(
            client_behind(ip("10.0.0.2"), &headers(&["nonsense"]), &proxies),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_behind(ip("10.0.0.2"), &headers(&[]), &proxies),
            ip("10.0.0.2")
        );
        // No trusted proxies: the peer.
        assert_eq!(
            client_behind(ip("10.0.0.2"), &headers(&["198.51.100.7"]), &[]),
            ip("10.0.0.2")
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
        assert!(Cidr::parse("::ffff:0:0/96").is_ok());
        assert!(
            Cidr::parse("192.0.2.1")
                .unwrap()
                .contains(ip("::ffff:192.0.2.1"))
        );
    }

    #[tokio::test]
    async fn the_password_gate_queues_then_refuses() {
        let gate = PasswordGate::new(1);
        let running = gate.enter().await.unwrap();
        let gate = Arc::new(gate);
        let g = gate.clone();
        let queued = tokio::spawn(async move { g.enter().await.map(|_| ()) });
        // Wait until the second one is queued (holds an admission place).
        let limit = std::time::Duration::from_secs(10);
        tokio::time::timeout(limit, async {
            while gate.admission.available_permits() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the second hash waits in the queue, holding its admission place");
        // A third is answered at once: refused, not queued behind the others.
        let refused = tokio::time::timeout(limit, gate.enter())
            .await
            .expect("a third hash is answered at once")
            .unwrap_err();
        assert_eq!(refused.kind(), crate::ProblemKind::RateLimited);
        drop(running);
        queued.await.unwrap().unwrap();
    }
}
