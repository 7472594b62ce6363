//! The poller process: keeps the work table current, holds shard leases, and runs one task
//! per device of the shards it holds, from an in-memory schedule (each task sleeps until its
//! device is due). Shards that are lost or handed back stop their devices first (and flush
//! their poll times) before the lease goes, so the next owner continues the schedule.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use netledger_archive::Archive;
use netledger_domain::clock::Clock;
use netledger_domain::device::DeviceState;
use netledger_domain::{DeviceId, StoredEvent, TenantId};
use netledger_store::credentials::{self, CredentialKeys};
use sqlx::{PgPool, Row};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::device::{self, Ctx, DeviceSpec, Fence};
use crate::error::PollerError;
use crate::metrics::{self, Record};
use crate::options::PollerOptions;
use crate::shards::Leases;
use crate::stats::Stats;
use crate::worktable::{self, WorkRow, shard_of};

/// What the poller needs from the process that runs it.
#[derive(Clone)]
pub struct PollerDeps {
    /// Tenant-scoped pool (role `netledger_app`): event appends.
    pub app: PgPool,
    /// Cross-tenant pool (role `netledger_system`): work table, leases, credentials,
    /// telemetry.
    pub system: PgPool,
    /// Keys to decrypt device credentials.
    pub keys: CredentialKeys,
    /// The config archive.
    pub archive: Archive,
    /// Time source for timestamps (scheduling uses the runtime's monotonic clock).
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for PollerDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollerDeps")
            .field("keys", &self.keys)
            .field("archive", &self.archive)
            .finish_non_exhaustive()
    }
}

/// A running poller.
#[derive(Debug)]
pub struct Poller {
    id: Uuid,
    stats: Arc<Stats>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), PollerError>>,
}

impl Poller {
    /// Starts a poller; it runs until [`Poller::stop`] (or the process ends).
    pub async fn start(options: PollerOptions, deps: PollerDeps) -> Result<Self, PollerError> {
        let (tx, rx) = watch::channel(false);
        let stats = Arc::new(Stats::new());
        let prepared = prepare(&options, &deps).await?;
        let id = prepared.leases.id();
        let task = tokio::spawn(run_prepared(options, deps, prepared, stats.clone(), rx));
        Ok(Self {
            id,
            stats,
            shutdown: tx,
            task,
        })
    }

    /// This poller's id (its `poller_members` row and shard owner).
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// Live counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Stops polling, writes what is pending, hands the shards back and waits.
    pub async fn stop(self) -> Result<(), PollerError> {
        let _ = self.shutdown.send(true);
        self.task
            .await
            .map_err(|e| PollerError::Task(e.to_string()))?
    }

    /// Ends the poller abruptly, as a crash would: its device tasks stop where they are, no
    /// poll times are flushed, no shard is handed back; the leases expire.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// Runs a poller until `shutdown` turns true.
#[tracing::instrument(skip_all, fields(poller = %options.name))]
pub async fn run(
    options: PollerOptions,
    deps: PollerDeps,
    shutdown: watch::Receiver<bool>,
) -> Result<(), PollerError> {
    let prepared = prepare(&options, &deps).await?;
    run_prepared(options, deps, prepared, Arc::new(Stats::new()), shutdown).await
}

struct Prepared {
    leases: Leases,
    locks_table: bool,
}

async fn prepare(options: &PollerOptions, deps: &PollerDeps) -> Result<Prepared, PollerError> {
    if options.heartbeat >= options.lease_ttl {
        return Err(PollerError::Options(format!(
            "heartbeat ({:?}) must be shorter than lease_ttl ({:?})",
            options.heartbeat, options.lease_ttl
        )));
    }
    metrics::maintain_partitions(&deps.system, deps.clock.now().date(), options).await?;
    let locks_table: bool =
        sqlx::query_scalar("SELECT to_regclass('public.workflow_device_locks') IS NOT NULL")
            .fetch_one(&deps.system)
            .await
            .map_err(PollerError::db("look for workflow_device_locks"))?;
    if !locks_table {
        tracing::info!(
            "no workflow_device_locks table: drift checks do not pause for running workflows"
        );
    }
    let leases = Leases::join(
        &deps.system,
        &options.name,
        options.shards,
        options.lease_ttl,
    )
    .await?;
    Ok(Prepared {
        leases,
        locks_table,
    })
}

struct Handle {
    shard: u32,
    revision: i64,
    cancel: CancellationToken,
    join: JoinHandle<()>,
}

struct Manager {
    ctx: Arc<Ctx>,
    leases: Leases,
    devices: HashMap<(TenantId, DeviceId), Handle>,
    last_revision: i64,
    /// Parent of every device task's token: when the manager goes away for any reason (stop,
    /// abort, panic), no device task outlives it to poll without a renewed lease.
    root: CancellationToken,
}

impl Drop for Manager {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

async fn run_prepared(
    options: PollerOptions,
    deps: PollerDeps,
    prepared: Prepared,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), PollerError> {
    let (metrics_tx, metrics_rx) = mpsc::channel(65_536);
    let writer = tokio::spawn(metrics::run_writer(
        deps.system.clone(),
        metrics_rx,
        options.clone(),
        stats.clone(),
    ));
    let maintenance = tokio::spawn(metrics::run_maintenance(
        deps.system.clone(),
        deps.clock.clone(),
        options.clone(),
        shutdown.clone(),
    ));
    let ctx = Arc::new(Ctx {
        app: deps.app.clone(),
        system: deps.system.clone(),
        archive: deps.archive.clone(),
        clock: deps.clock.clone(),
        polls: Arc::new(Semaphore::new(options.max_concurrent_polls.max(1))),
        exports: Arc::new(Semaphore::new(options.max_concurrent_exports.max(1))),
        metrics: metrics_tx,
        stats,
        poller_id: prepared.leases.id(),
        locks_table: prepared.locks_table,
        keys: deps.keys.clone(),
        options: options.clone(),
    });
    if let Err(e) = worktable::sync_all(&deps.system).await {
        tracing::warn!(error = %e, "work table sync failed; retrying");
    }
    let mut manager = Manager {
        last_revision: worktable::max_revision(&deps.system).await?,
        ctx,
        leases: prepared.leases,
        devices: HashMap::new(),
        root: CancellationToken::new(),
    };
    let mut heartbeat = tokio::time::interval(options.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sync = tokio::time::interval(options.sync_interval);
    sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(poller = %manager.leases.id(), shards = manager.leases.shard_count(), "poller started");
    loop {
        tokio::select! {
            _ = heartbeat.tick() => manager.heartbeat().await,
            _ = sync.tick() => manager.sync().await,
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    // Graceful end: stop every device, write their poll times, hand the shards back.
    let all: Vec<u32> = manager.leases.held().keys().copied().collect();
    manager.stop_shards(&all).await;
    manager.flush().await;
    if let Err(e) = manager.leases.leave(&deps.system).await {
        tracing::warn!(error = %e, "leaving the poller group failed; the leases will expire");
    }
    drop(manager);
    let _ = writer.await;
    maintenance.abort();
    tracing::info!("poller stopped");
    Ok(())
}

impl Manager {
    async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.ctx.metrics.send(Record::Flush(ack)).await.is_ok() {
            let _ = done.await;
        }
    }

    async fn heartbeat(&mut self) {
        let expired = self.leases.expire_local(Instant::now());
        if !expired.is_empty() {
            tracing::warn!(?expired, "leases not renewed in time; stopped polling them");
            self.stop_shards(&expired).await;
        }
        let change = match self.leases.heartbeat(&self.ctx.system).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "lease heartbeat failed");
                return;
            }
        };
        if !change.lost.is_empty() {
            tracing::warn!(lost = ?change.lost, "shards taken over by another poller");
            self.stop_shards(&change.lost).await;
        }
        if !change.surplus.is_empty() {
            tracing::info!(surplus = ?change.surplus, members = change.members, "handing shards back");
            self.stop_shards(&change.surplus).await;
            self.flush().await;
            if let Err(e) = self.leases.release(&self.ctx.system, &change.surplus).await {
                tracing::warn!(error = %e, "releasing shards failed; they will expire");
            }
        }
        if !change.gained.is_empty() {
            tracing::info!(gained = ?change.gained.iter().map(|(s, _)| s).collect::<Vec<_>>(), members = change.members, "claimed shards");
            let shards: Vec<u32> = change.gained.iter().map(|(s, _)| *s).collect();
            if let Err(e) = self.start_shards(&shards).await {
                tracing::warn!(error = %e, "starting claimed shards failed; handing them back");
                self.stop_shards(&shards).await;
                let _ = self.leases.release(&self.ctx.system, &shards).await;
            }
        }
    }

    async fn sync(&mut self) {
        if let Err(e) = worktable::sync_all(&self.ctx.system).await {
            tracing::warn!(error = %e, "work table sync failed");
        }
        let changes = match worktable::changed_since(&self.ctx.system, self.last_revision).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "reading work table changes failed");
                return;
            }
        };
        let n = self.leases.shard_count();
        let mut restart = Vec::new();
        for row in changes {
            self.last_revision = self.last_revision.max(row.revision);
            let key = (row.tenant, row.device);
            let shard = shard_of(row.shard_key, n);
            let current = self.devices.get(&key).map(|h| h.revision);
            if current.is_some_and(|r| r >= row.revision) {
                continue;
            }
            if let Some(h) = self.devices.remove(&key) {
                stop(h).await;
            }
            if row.removed || self.leases.lease(shard).is_none() {
                continue;
            }
            restart.push(row);
        }
        if !restart.is_empty()
            && let Err(e) = self.spawn_rows(restart).await
        {
            tracing::warn!(error = %e, "starting changed devices failed");
        }
    }

    async fn stop_shards(&mut self, shards: &[u32]) {
        let keys: Vec<(TenantId, DeviceId)> = self
            .devices
            .iter()
            .filter(|(_, h)| shards.contains(&h.shard))
            .map(|(k, _)| *k)
            .collect();
        let mut handles = Vec::with_capacity(keys.len());
        for k in keys {
            if let Some(h) = self.devices.remove(&k) {
                h.cancel.cancel();
                handles.push(h.join);
            }
        }
        for j in handles {
            let _ = tokio::time::timeout(Duration::from_secs(5), j).await;
        }
    }

    async fn start_shards(&mut self, shards: &[u32]) -> Result<(), PollerError> {
        let rows =
            worktable::rows_of_shards(&self.ctx.system, shards, self.leases.shard_count()).await?;
        self.spawn_rows(rows).await
    }

    async fn spawn_rows(&mut self, rows: Vec<WorkRow>) -> Result<(), PollerError> {
        let n = self.leases.shard_count();
        for chunk in rows.chunks(2_000) {
            let keys: Vec<(TenantId, DeviceId)> =
                chunk.iter().map(|r| (r.tenant, r.device)).collect();
            let creds: HashMap<(TenantId, DeviceId), credentials::StoredCredentials> =
                credentials::load_many(&self.ctx.system, &keys)
                    .await?
                    .into_iter()
                    .map(|c| ((c.tenant, c.device), c))
                    .collect();
            let mut states = load_states(&self.ctx.system, &keys).await?;
            let mut networks = HashMap::new();
            for (tenant, _) in &keys {
                if networks.contains_key(tenant) {
                    continue;
                }
                let policy = netledger_store::devices::settings::network_policy_in_pool(
                    &self.ctx.system,
                    *tenant,
                    &self.ctx.options.device_networks,
                )
                .await?;
                networks.insert(*tenant, policy);
            }
            let mut runtime = metrics::load_runtime(&self.ctx.system, &keys).await?;
            for row in chunk {
                let key = (row.tenant, row.device);
                let shard = shard_of(row.shard_key, n);
                let Some(lease) = self.leases.lease(shard) else {
                    continue;
                };
                let Some(stored) = creds.get(&key) else {
                    tracing::error!(device = %row.device, "device has no stored credentials; not polled until they are set");
                    continue;
                };
                let password = match self.ctx.keys.open(row.tenant, row.device, &stored.sealed) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(device = %row.device, error = %e, "cannot decrypt the device's credentials; not polled");
                        continue;
                    }
                };
                let state = states.remove(&key).unwrap_or_default();
                if !state.is_managed() {
                    continue;
                }
                // the SSH login key, when the credentials hold one (memory only, parsed once)
                let ssh_key = match &stored.ssh_key {
                    None => Ok(None),
                    Some(sealed) => self
                        .ctx
                        .keys
                        .open_ssh_key(row.tenant, row.device, sealed)
                        .map_err(|e| e.to_string())
                        .and_then(|k| {
                            netledger_device_client::ssh_client_key(k.expose())
                                .map(Some)
                                .map_err(|e| e.to_string())
                        }),
                };
                if let Err(e) = &ssh_key {
                    tracing::error!(device = %row.device, error = %e, "cannot use the device's SSH key; exports over SSH fail until its credentials are set again");
                }
                let spec = DeviceSpec {
                    row: row.clone(),
                    username: stored.username.clone(),
                    password,
                    ssh_key,
                    fence: Fence {
                        shard,
                        attempt: lease.attempt,
                    },
                    state,
                    runtime: runtime.remove(&key),
                    device_networks: networks
                        .get(&row.tenant)
                        .cloned()
                        .unwrap_or_else(|| self.ctx.options.device_networks.clone()),
                };
                if let Some(old) = self.devices.remove(&key) {
                    stop(old).await;
                }
                let cancel = self.root.child_token();
                let join = tokio::spawn(device::run(self.ctx.clone(), spec, cancel.clone()));
                self.devices.insert(
                    key,
                    Handle {
                        shard,
                        revision: row.revision,
                        cancel,
                        join,
                    },
                );
            }
        }
        Ok(())
    }
}

async fn stop(h: Handle) {
    h.cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), h.join).await;
}

/// Folds the streams of many devices with one query per call (system pool).
pub async fn load_states(
    system: &PgPool,
    devices: &[(TenantId, DeviceId)],
) -> Result<HashMap<(TenantId, DeviceId), DeviceState>, PollerError> {
    let tenants: Vec<Uuid> = devices.iter().map(|(t, _)| *t.as_uuid()).collect();
    let streams: Vec<String> = devices
        .iter()
        .map(|(_, d)| d.stream().as_str().to_owned())
        .collect();
    let rows = sqlx::query(
        "SELECT e.tenant_id, e.stream, e.version, e.event_type, e.schema_version, \
                e.payload::text AS payload \
         FROM unnest($1::uuid[], $2::text[]) AS w(tenant_id, stream) \
         JOIN events e ON e.tenant_id = w.tenant_id AND e.stream = w.stream \
         ORDER BY e.tenant_id, e.stream, e.version",
    )
    .bind(&tenants)
    .bind(&streams)
    .fetch_all(system)
    .await
    .map_err(PollerError::db("read device streams"))?;
    let mut out: HashMap<(TenantId, DeviceId), DeviceState> = HashMap::new();
    for r in rows {
        let bad = |e: &dyn std::fmt::Display| PollerError::Corrupt(format!("device event: {e}"));
        let tenant = TenantId::from_uuid(r.try_get("tenant_id").map_err(|e| bad(&e))?);
        let stream: String = r.try_get("stream").map_err(|e| bad(&e))?;
        let Some(device) = stream
            .strip_prefix("device-")
            .and_then(|s| s.parse::<Uuid>().ok())
            .map(DeviceId::from_uuid)
        else {
            continue;
        };
        let version: i64 = r.try_get("version").map_err(|e| bad(&e))?;
        let event_type: String = r.try_get("event_type").map_err(|e| bad(&e))?;
        let schema_version: i32 = r.try_get("schema_version").map_err(|e| bad(&e))?;
        let payload: String = r.try_get("payload").map_err(|e| bad(&e))?;
        let payload: serde_json::Value = serde_json::from_str(&payload).map_err(|e| bad(&e))?;
        out.entry((tenant, device))
            .or_default()
            .evolve_stored(StoredEvent {
                position: version,
                event_type: &event_type,
                schema_version: u32::try_from(schema_version).unwrap_or(0),
                payload: &payload,
            })
            .map_err(|e| bad(&e))?;
    }
    Ok(out)
}
