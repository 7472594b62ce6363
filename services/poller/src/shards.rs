//! Shard leases in PostgreSQL: pollers share the fleet without polling a device twice.
//!
//! The fleet is split into `shards` shards by [`crate::worktable::shard_key`]. A poller
//! registers in `poller_members` (heartbeat row with an expiry), and on every heartbeat:
//! 1. renews its own leases, each conditional on the attempt number it claimed (a shard
//!    taken over after expiry has a higher attempt, so the stale holder finds out and stops);
//! 2. computes its fair share, `ceil(shards / live members)`;
//! 3. hands back shards above its share (the caller stops polling them first), or claims
//!    free or expired ones up to it with `FOR UPDATE SKIP LOCKED`, bumping their attempt.
//!
//! A poller stops polling a shard on its own once the local deadline of its last renewal
//! (`renewed + ttl - margin`) passes, before the lease can expire in the database, so a
//! poller cut off from PostgreSQL never overlaps with the one that takes its shards over.
//! Appends of events check the lease (owner and attempt) inside their transaction.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::PollerError;

/// A lease held by this poller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The attempt number claimed (fencing token).
    pub attempt: i64,
    /// When the poller must stop polling the shard unless renewed.
    pub deadline: Instant,
}

/// What a heartbeat changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseChange {
    /// Newly claimed shards and their attempt numbers.
    pub gained: Vec<(u32, i64)>,
    /// Shards lost (renewal refused: taken over or deleted).
    pub lost: Vec<u32>,
    /// Shards above the fair share: stop polling them, then [`Leases::release`] them.
    pub surplus: Vec<u32>,
    /// Live pollers.
    pub members: i64,
}

/// This poller's membership and leases.
#[derive(Debug)]
pub struct Leases {
    id: Uuid,
    name: String,
    shards: u32,
    ttl: Duration,
    held: BTreeMap<u32, Held>,
}

fn interval_literal(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Leases {
    /// Joins: creates the shard rows if missing (`configured` shards; a table that already
    /// has shards keeps its number) and registers this poller.
    pub async fn join(
        system: &PgPool,
        name: &str,
        configured: u32,
        ttl: Duration,
    ) -> Result<Self, PollerError> {
        if configured == 0 {
            return Err(PollerError::Options("shards must be at least 1".to_owned()));
        }
        let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM poller_shards")
            .fetch_one(system)
            .await
            .map_err(PollerError::db("count shards"))?;
        if existing == 0 {
            sqlx::query(
                "INSERT INTO poller_shards (shard) SELECT generate_series(0, $1 - 1) \
                 ON CONFLICT (shard) DO NOTHING",
            )
            .bind(configured as i32)
            .execute(system)
            .await
            .map_err(PollerError::db("create shards"))?;
        }
        let shards: i64 = sqlx::query_scalar("SELECT count(*) FROM poller_shards")
            .fetch_one(system)
            .await
            .map_err(PollerError::db("count shards"))?;
        let shards = u32::try_from(shards).unwrap_or(configured).max(1);
        if shards != configured {
            tracing::warn!(
                configured,
                shards,
                "the database already has a different number of shards; using it"
            );
        }
        let me = Self {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            shards,
            ttl,
            held: BTreeMap::new(),
        };
        me.touch_membership(system).await?;
        Ok(me)
    }

    /// This poller's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Number of shards.
    pub fn shard_count(&self) -> u32 {
        self.shards
    }

    /// Shards held now.
    pub fn held(&self) -> &BTreeMap<u32, Held> {
        &self.held
    }

    /// The lease of `shard`, if held.
    pub fn lease(&self, shard: u32) -> Option<Held> {
        self.held.get(&shard).copied()
    }

    fn deadline(&self, renewed: Instant) -> Instant {
        // Stop a fifth of the ttl before the database would let someone else claim it.
        renewed + self.ttl.mul_f64(0.8)
    }

    async fn touch_membership(&self, system: &PgPool) -> Result<i64, PollerError> {
        let ttl = interval_literal(self.ttl);
        sqlx::query(
            "INSERT INTO poller_members (poller_id, name, expires_at) \
             VALUES ($1, $2, now() + make_interval(secs => $3)) \
             ON CONFLICT (poller_id) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(self.id)
        .bind(&self.name)
        .bind(ttl)
        .execute(system)
        .await
        .map_err(PollerError::db("heartbeat"))?;
        sqlx::query("DELETE FROM poller_members WHERE expires_at < now()")
            .execute(system)
            .await
            .map_err(PollerError::db("expire members"))?;
        sqlx::query_scalar("SELECT count(*) FROM poller_members WHERE expires_at >= now()")
            .fetch_one(system)
            .await
            .map_err(PollerError::db("count members"))
    }

    /// Drops leases whose local deadline passed (the database may already have given them
    /// to someone else). Returns them.
    pub fn expire_local(&mut self, now: Instant) -> Vec<u32> {
        let gone: Vec<u32> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for s in &gone {
            self.held.remove(s);
        }
        gone
    }

    /// One heartbeat: membership, renewal, fair share, claims.
    pub async fn heartbeat(&mut self, system: &PgPool) -> Result<LeaseChange, PollerError> {
        let mut change = LeaseChange {
            members: self.touch_membership(system).await?.max(1),
            ..LeaseChange::default()
        };
        let ttl = interval_literal(self.ttl);

        // Renew, fenced by attempt.
        if !self.held.is_empty() {
            let shards: Vec<i32> = self.held.keys().map(|s| *s as i32).collect();
            let attempts: Vec<i64> = self.held.values().map(|h| h.attempt).collect();
            let renewed: Vec<i32> = sqlx::query_scalar(
                "UPDATE poller_shards s SET lease_expires_at = now() + make_interval(secs => $4) \
                 FROM unnest($2::int[], $3::bigint[]) AS h(shard, attempt) \
                 WHERE s.shard = h.shard AND s.attempt = h.attempt AND s.owner = $1 \
                 RETURNING s.shard",
            )
            .bind(self.id)
            .bind(&shards)
            .bind(&attempts)
            .bind(ttl)
            .fetch_all(system)
            .await
            .map_err(PollerError::db("renew leases"))?;
            let at = Instant::now();
            let deadline = self.deadline(at);
            let held: Vec<u32> = self.held.keys().copied().collect();
            for s in held {
                if renewed.contains(&(s as i32)) {
                    if let Some(h) = self.held.get_mut(&s) {
                        h.deadline = deadline;
                    }
                } else {
                    self.held.remove(&s);
                    change.lost.push(s);
                }
            }
        }

        let members = u32::try_from(change.members).unwrap_or(u32::MAX).max(1);
        let target = self.shards.div_ceil(members) as usize;
        if self.held.len() > target {
            change.surplus = self
                .held
                .keys()
                .rev()
                .take(self.held.len() - target)
                .copied()
                .collect();
        } else if self.held.len() < target {
            let want = (target - self.held.len()) as i64;
            let claimed: Vec<(i32, i64)> = sqlx::query_as(
                "WITH c AS (SELECT shard FROM poller_shards \
                             WHERE owner IS NULL OR lease_expires_at < now() \
                             ORDER BY shard LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 UPDATE poller_shards s SET owner = $1, attempt = s.attempt + 1, \
                        lease_expires_at = now() + make_interval(secs => $3) \
                 FROM c WHERE s.shard = c.shard RETURNING s.shard, s.attempt",
            )
            .bind(self.id)
            .bind(want)
            .bind(ttl)
            .fetch_all(system)
            .await
            .map_err(PollerError::db("claim shards"))?;
            let deadline = self.deadline(Instant::now());
            for (shard, attempt) in claimed {
                let shard = shard as u32;
                self.held.insert(shard, Held { attempt, deadline });
                change.gained.push((shard, attempt));
            }
        }
        Ok(change)
    }

    /// Gives shards back (after the caller stopped polling them).
    pub async fn release(&mut self, system: &PgPool, shards: &[u32]) -> Result<(), PollerError> {
        let mut list: Vec<i32> = Vec::new();
        let mut attempts: Vec<i64> = Vec::new();
        for s in shards {
            if let Some(h) = self.held.remove(s) {
                list.push(*s as i32);
                attempts.push(h.attempt);
            }
        }
        if list.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE poller_shards s SET owner = NULL, lease_expires_at = NULL \
             FROM unnest($2::int[], $3::bigint[]) AS h(shard, attempt) \
             WHERE s.shard = h.shard AND s.attempt = h.attempt AND s.owner = $1",
        )
        .bind(self.id)
        .bind(&list)
        .bind(&attempts)
        .execute(system)
        .await
        .map_err(PollerError::db("release shards"))?;
        Ok(())
    }

    /// Leaves: releases every shard and removes the membership row.
    pub async fn leave(&mut self, system: &PgPool) -> Result<(), PollerError> {
        let all: Vec<u32> = self.held.keys().copied().collect();
        self.release(system, &all).await?;
        sqlx::query("DELETE FROM poller_members WHERE poller_id = $1")
            .bind(self.id)
            .execute(system)
            .await
            .map_err(PollerError::db("leave"))?;
        Ok(())
    }
}

/// Whether `owner` still holds `shard` at `attempt` (checked inside an append transaction).
pub async fn lease_current(
    conn: &mut sqlx::PgConnection,
    shard: u32,
    owner: Uuid,
    attempt: i64,
) -> Result<bool, PollerError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM poller_shards WHERE shard = $1 AND owner = $2 \
                        AND attempt = $3 AND lease_expires_at > now())",
    )
    .bind(shard as i32)
    .bind(owner)
    .bind(attempt)
    .fetch_one(conn)
    .await
    .map_err(PollerError::db("check lease"))
}
