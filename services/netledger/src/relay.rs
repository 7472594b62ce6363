//! The outbox relay: publishes committed events to NATS JetStream in global order, exactly
//! once, and the checkpointer that signs audit checkpoints and publishes them too.
//!
//! Exactly once, in order, across crashes and NATS outages:
//! - each message carries `Nats-Msg-Id = <global position>` (JetStream dedupe) and
//!   `Nats-Expected-Last-Msg-Id = <previous position>`, so JetStream refuses a message that
//!   would land out of order or after a gap;
//! - the relay's progress is the stream's last message, read back from JetStream at start and
//!   after any failure; the `subscription_checkpoints` row (`nats-relay`) is advanced only after
//!   the acks, for monitoring and lag;
//! - NATS being down makes publishes fail or time out; the relay backs off and resynchronises.
//!   Nothing is lost: the events table is the outbox.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use ed25519_dalek::SigningKey;
use netledger_domain::RecordedEvent;
use netledger_domain::audit::Checkpoint;
use netledger_store::audit::{checkpoint_all_with, load_checkpoints};
use netledger_store::{EventReader, StoreError};
use sqlx::PgPool;
use tokio::sync::watch;

/// Name of the relay's row in `subscription_checkpoints`.
pub const RELAY_CHECKPOINT: &str = "nats-relay";
const RELAY_LOCK: i64 = 0x6e6c_7265_6c61_7900; // "nlrelay"
const CHECKPOINTER_LOCK: i64 = 0x6e6c_636b_7074_0000; // "nlckpt"

/// Relay failures.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading events or writing the checkpoint failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A database call outside the store failed.
    #[error("database error during {0}")]
    Database(&'static str, #[source] sqlx::Error),
    /// NATS or JetStream refused or timed out.
    #[error("JetStream: {0}")]
    Nats(String),
    /// The stream holds messages this database did not produce.
    #[error(
        "JetStream stream {stream} ends at position {stream_position} but this database's last \
         event is {db_position}: the stream belongs to another database. Point the relay at \
         another stream (relay.stream) or remove the stale stream"
    )]
    Mismatch {
        /// Stream name.
        stream: String,
        /// Last position in JetStream.
        stream_position: i64,
        /// Last position in PostgreSQL.
        db_position: i64,
    },
    /// Committing a checkpoint into the tenant's git repository failed.
    #[error("config-history repository: {0}")]
    Archive(String),
}

/// Connects to NATS as `role` (`api`, `projector`) with that role's credentials
/// (`[nats.<role>]`: user + password, token, or a creds file; at most one). Without
/// credentials it connects anonymously, which a server with authorization refuses; in
/// production that is logged as a warning.
pub async fn connect_nats(
    url: &str,
    role: &str,
    auth: &crate::config::NatsAuth,
    production: bool,
) -> anyhow::Result<async_nats::Client> {
    use anyhow::Context as _;
    let options = nats_options(role, auth).await?;
    if !auth.is_set() && production {
        tracing::warn!(
            role,
            "connecting to NATS without credentials: set [nats.{role}] (user + password, token or creds_file)"
        );
    }
    options
        .name(format!("netledger-{role}"))
        .retry_on_initial_connect()
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to NATS at {url} as {role}"))
}

/// The connect options for one role's credentials.
pub async fn nats_options(
    role: &str,
    auth: &crate::config::NatsAuth,
) -> anyhow::Result<async_nats::ConnectOptions> {
    use anyhow::Context as _;
    let kinds = [
        auth.user.is_some() || auth.password.is_some(),
        auth.token.is_some(),
        auth.creds_file.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() > 1 {
        anyhow::bail!("[nats.{role}]: set only one of user + password, token or creds_file");
    }
    let options = async_nats::ConnectOptions::new();
    Ok(
        match (&auth.user, &auth.password, &auth.token, &auth.creds_file) {
            (Some(user), Some(password), _, _) => {
                options.user_and_password(user.clone(), password.expose().to_owned())
            }
            (Some(_), None, _, _) | (None, Some(_), _, _) => {
                anyhow::bail!("[nats.{role}]: user and password go together")
            }
            (_, _, Some(token), _) => options.token(token.expose().to_owned()),
            (_, _, _, Some(path)) => options
                .credentials_file(path)
                .await
                .with_context(|| format!("[nats.{role}] creds_file {}", path.display()))?,
            _ => options,
        },
    )
}

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// JetStream stream for events.
    pub stream: String,
    /// First subject token.
    pub subject_prefix: String,
    /// Events per round.
    pub batch: i64,
    /// Retention of the events stream: its size in bytes, beyond which the oldest messages
    /// are discarded (-1: no limit). The newest message always stays, and the relay reads
    /// its position back from it, so a limit never costs exactly-once ordering; PostgreSQL
    /// remains the record, the stream only feeds live consumers.
    pub max_bytes: i64,
}

/// The subject of an event: `<prefix>.<tenant>.<category>.<event_type>`.
pub fn subject_for(prefix: &str, e: &RecordedEvent) -> String {
    format!("{prefix}.{}.{}.{}", e.tenant_id, e.category(), e.event_type)
}

/// Creates the events stream if it does not exist, and gives an existing one the configured
/// retention (`max_bytes`, discarding the oldest) without touching its other settings (an
/// operator may have created it with replicas or placement of their own).
pub async fn ensure_event_stream(
    js: &jetstream::Context,
    opts: &RelayOptions,
) -> Result<stream::Stream, RelayError> {
    let mut stream = js
        .get_or_create_stream(stream::Config {
            name: opts.stream.clone(),
            subjects: vec![format!("{}.*.*.*", opts.subject_prefix)],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            max_bytes: opts.max_bytes,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await
        .map_err(|e| RelayError::Nats(format!("create stream {}: {e}", opts.stream)))?;
    let config = stream
        .info()
        .await
        .map_err(|e| RelayError::Nats(format!("stream info: {e}")))?
        .config
        .clone();
    if config.max_bytes != opts.max_bytes || config.discard != stream::DiscardPolicy::Old {
        tracing::info!(
            stream = %opts.stream,
            from = config.max_bytes,
            to = opts.max_bytes,
            "setting the events stream's retention"
        );
        js.update_stream(stream::Config {
            max_bytes: opts.max_bytes,
            discard: stream::DiscardPolicy::Old,
            ..config
        })
        .await
        .map_err(|e| RelayError::Nats(format!("update stream {}: {e}", opts.stream)))?;
        stream = js
            .get_stream(&opts.stream)
            .await
            .map_err(|e| RelayError::Nats(format!("get stream {}: {e}", opts.stream)))?;
    }
    Ok(stream)
}

/// Publishes events to JetStream in order; see the module docs.
#[derive(Debug)]
pub struct Relay {
    system: PgPool,
    js: jetstream::Context,
    opts: RelayOptions,
    published: Option<i64>,
}

impl Relay {
    /// A relay reading with the system pool and publishing through `js`.
    pub fn new(system: PgPool, js: jetstream::Context, opts: RelayOptions) -> Self {
        Self {
            system,
            js,
            opts,
            published: None,
        }
    }

    /// Reads the last published position back from JetStream.
    async fn resync(&mut self) -> Result<i64, RelayError> {
        let mut stream = ensure_event_stream(&self.js, &self.opts).await?;
        let last_seq = stream
            .info()
            .await
            .map_err(|e| RelayError::Nats(format!("stream info: {e}")))?
            .state
            .last_sequence;
        let position = if last_seq == 0 {
            0
        } else {
            let msg = stream
                .get_raw_message(last_seq)
                .await
                .map_err(|e| RelayError::Nats(format!("read last message: {e}")))?;
            msg.headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .and_then(|v| v.as_str().parse::<i64>().ok())
                .ok_or_else(|| {
                    RelayError::Nats(format!(
                        "last message of {} has no numeric Nats-Msg-Id",
                        self.opts.stream
                    ))
                })?
        };
        let head = EventReader::system(self.system.clone(), None)
            .head_position()
            .await?;
        if position > head {
            return Err(RelayError::Mismatch {
                stream: self.opts.stream.clone(),
                stream_position: position,
                db_position: head,
            });
        }
        self.published = Some(position);
        Ok(position)
    }

    /// Publishes the next batch; returns how many events were acknowledged (0 = caught up).
    pub async fn run_once(&mut self) -> Result<usize, RelayError> {
        let after = match self.published {
            Some(p) => p,
            None => self.resync().await?,
        };
        let reader = EventReader::system(self.system.clone(), None);
        let events = reader.read_all(after, self.opts.batch).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let mut acks = Vec::with_capacity(events.len());
        let mut prev = after;
        let mut send_error = None;
        for e in &events {
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                e.position.to_string().as_str(),
            );
            if prev > 0 {
                headers.insert(
                    async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID,
                    prev.to_string().as_str(),
                );
            }
            let payload = match serde_json::to_vec(e) {
                Ok(p) => p,
                Err(err) => {
                    send_error = Some(RelayError::Nats(format!(
                        "encode event {}: {err}",
                        e.position
                    )));
                    break;
                }
            };
            match self
                .js
                .publish_with_headers(
                    subject_for(&self.opts.subject_prefix, e),
                    headers,
                    payload.into(),
                )
                .await
            {
                Ok(ack) => acks.push((e.position, ack)),
                Err(err) => {
                    send_error = Some(RelayError::Nats(format!("publish {}: {err}", e.position)));
                    break;
                }
            }
            prev = e.position;
        }
        let mut acked = 0usize;
        let mut ack_error = None;
        for (position, ack) in acks {
            match ack.await {
                Ok(_) => {
                    self.published = Some(position);
                    acked += 1;
                }
                Err(err) => {
                    ack_error = Some(RelayError::Nats(format!("ack for {position}: {err}")));
                    break;
                }
            }
        }
        if acked > 0 {
            self.save_checkpoint().await?;
        }
        if let Some(err) = ack_error.or(send_error) {
            // What JetStream holds is the truth: read it back before the next round.
            self.published = None;
            return Err(err);
        }
        Ok(acked)
    }

    async fn save_checkpoint(&self) -> Result<(), RelayError> {
        let Some(position) = self.published else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO subscription_checkpoints (name, position, updated_at) VALUES ($1, $2, now()) \
             ON CONFLICT (name) DO UPDATE SET position = greatest(subscription_checkpoints.position, EXCLUDED.position), \
             updated_at = now()",
        )
        .bind(RELAY_CHECKPOINT)
        .bind(position)
        .execute(&self.system)
        .await
        .map_err(|e| RelayError::Database("save relay checkpoint", e))?;
        Ok(())
    }

    /// Runs until `shutdown` turns true: holds the relay lock (one relay per database), wakes on
    /// new events, backs off on errors.
    pub async fn run(mut self, shutdown: watch::Receiver<bool>) -> Result<(), RelayError> {
        let mut lock_conn = self
            .system
            .acquire()
            .await
            .map_err(|e| RelayError::Database("acquire", e))?;
        let mut waiting = shutdown.clone();
        loop {
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(RELAY_LOCK)
                .fetch_one(&mut *lock_conn)
                .await
                .map_err(|e| RelayError::Database("relay lock", e))?;
            if got {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = waiting.changed() => return Ok(()),
            }
        }
        tracing::info!(stream = %self.opts.stream, "relay holds the lock; publishing");
        let result = self.publish_until(shutdown).await;
        release_locks(lock_conn).await;
        tracing::info!(published = ?self.published, "relay stopped");
        result
    }

    /// Publishes until `shutdown` (after the last acknowledged round) or a fatal error.
    async fn publish_until(
        &mut self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), RelayError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.system)
            .await
            .map_err(|e| RelayError::Database("listen", e))?;
        listener
            .listen("netledger_events")
            .await
            .map_err(|e| RelayError::Database("listen", e))?;
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            match self.run_once().await {
                Ok(n) if n > 0 => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        _ = listener.try_recv() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return Ok(()),
                    }
                }
                Err(err @ RelayError::Mismatch { .. }) => return Err(err),
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "relay round failed");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// Signs checkpoints over new events periodically and publishes them to JetStream
/// (subject `<stream>.<tenant>.<seq>` in the checkpoint stream).
#[derive(Debug)]
pub struct Checkpointer {
    /// System pool.
    pub system: PgPool,
    /// JetStream context.
    pub js: jetstream::Context,
    /// Checkpoint stream name.
    pub stream: String,
    /// Signing key.
    pub key: SigningKey,
    /// Key id recorded with each checkpoint.
    pub key_id: String,
    /// The previous key's hand-over to `key` (after `keys rotate-audit-key`).
    pub handover: Option<netledger_domain::audit::Handover>,
    /// How often to run.
    pub interval: Duration,
    /// The config-history store: each checkpoint is also committed into its tenant's git
    /// repository (DESIGN invariant 5), so deleting the newest events is detected without
    /// trusting PostgreSQL or NATS alone. `None` only in tests of the NATS side.
    pub archive: Option<netledger_archive::Archive>,
}

impl Checkpointer {
    fn subject(&self, cp: &Checkpoint) -> String {
        format!(
            "{}.{}.{}",
            self.stream.to_lowercase(),
            cp.body.tenant_id,
            cp.body.seq
        )
    }

    async fn ensure_stream(&self) -> Result<stream::Stream, RelayError> {
        self.js
            .get_or_create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("{}.>", self.stream.to_lowercase())],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| RelayError::Nats(format!("create stream {}: {e}", self.stream)))
    }

    /// One round: sign what is new, then publish what JetStream does not hold yet.
    ///
    /// `backlog` holds the checkpoints still to publish; `None` means "unknown": the round
    /// then loads every checkpoint once (process start, or after a round that may have
    /// written checkpoints it could not report) and later rounds only add what they write.
    pub async fn run_once(
        &self,
        backlog: &mut Option<Vec<Checkpoint>>,
    ) -> Result<usize, RelayError> {
        let signer = netledger_store::audit::CheckpointSigner {
            key_id: &self.key_id,
            key: &self.key,
            handover: self.handover.as_ref(),
        };
        let written = match checkpoint_all_with(&self.system, &signer).await {
            Ok(written) => written,
            Err(err) => {
                *backlog = None;
                return Err(err.into());
            }
        };
        let pending = match backlog {
            Some(pending) => {
                pending.extend(written);
                pending
            }
            None => backlog.insert(load_checkpoints(&self.system, None).await?),
        };
        let stream = self.ensure_stream().await?;
        let mut sent = 0;
        while let Some(cp) = pending.first() {
            let subject = self.subject(cp);
            if stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .is_err()
            {
                let payload = serde_json::to_vec(cp)
                    .map_err(|e| RelayError::Nats(format!("encode checkpoint: {e}")))?;
                let mut headers = HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    format!("{}-{}", cp.body.tenant_id, cp.body.seq).as_str(),
                );
                self.js
                    .publish_with_headers(subject, headers, payload.into())
                    .await
                    .map_err(|e| RelayError::Nats(format!("publish checkpoint: {e}")))?
                    .await
                    .map_err(|e| RelayError::Nats(format!("checkpoint ack: {e}")))?;
                sent += 1;
            }
            if let Some(archive) = &self.archive {
                let (archive, tenant, cp_owned) = (archive.clone(), cp.body.tenant_id, cp.clone());
                tokio::task::spawn_blocking(move || archive.publish_checkpoint(tenant, &cp_owned))
                    .await
                    .map_err(|e| RelayError::Archive(format!("checkpoint publisher stopped: {e}")))?
                    .map_err(|e| RelayError::Archive(e.to_string()))?;
            }
            pending.remove(0);
        }
        Ok(sent)
    }

    /// Runs until shutdown; one checkpointer per database (advisory lock).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), RelayError> {
        let mut lock_conn = self
            .system
            .acquire()
            .await
            .map_err(|e| RelayError::Database("acquire", e))?;
        let mut backlog = None;
        loop {
            let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(CHECKPOINTER_LOCK)
                .fetch_one(&mut *lock_conn)
                .await
                .map_err(|e| RelayError::Database("checkpointer lock", e))?;
            if leader && let Err(err) = self.run_once(&mut backlog).await {
                tracing::warn!(error = %err, "checkpoint round failed; will retry");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => break,
            }
        }
        // Each round took the lock once more: all of it goes.
        release_locks(lock_conn).await;
        Ok(())
    }
}

/// Hands a leader's advisory locks over at once: `lock_conn` goes back to the pool, where a
/// session lock would otherwise stay held, so a standby takes over within its next try.
/// When the unlock fails, the connection is closed instead, which releases them too.
async fn release_locks(mut lock_conn: sqlx::pool::PoolConnection<sqlx::Postgres>) {
    if sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut *lock_conn)
        .await
        .is_err()
    {
        let _ = lock_conn.detach();
    }
}
