//! The durable workflows built on the device steps of this crate and the engine
//! (`netledger-engine`): `config_push` v1, `firmware_upgrade` v1, `backup` v1, `rollout` v1,
//! `config_restore` v1 and `change_request` v1 (one file each; `change_stream` is the one
//! write path to a change request's stream), the infrastructure adapter their steps reach
//! devices, the store and the archive through (`adapter`), the firmware cache server
//! devices fetch packages from ([`serve_firmware_cache`]) and the worker entry point
//! ([`run_worker`]).
//!
//! Owns: the order of steps, what each step journals (never a password, an export or backup
//! bytes: exports go to the config archive, backups are encrypted before they are stored as
//! blobs), the decisions between steps (scheduler gate, cancel, verify failure, rollback).
//! Does not own: the engine, the event store, the archive, credentials (it reads and
//! decrypts them in memory inside a step). `docs/push.md` ("Workflows") describes them.

mod adapter;
mod backup;
mod cache;
mod change_run;
mod change_stream;
mod config_push;
mod firmware_upgrade;
mod rekey;
mod restore;
mod rollout;

use std::future::Future;
use std::sync::Arc;

use netledger_domain::workflow::card::{
    Backup, ChangeRun, ConfigPush, ConfigRestore, FirmwareUpgrade, Rollout,
};
use netledger_engine::{
    Definition, Engine, EngineError, Registry, Worker, WorkerOptions, WorkerReport,
};

pub use adapter::{NetopsDeps, NetopsOptions, SnapshotRecorded, Target};
pub use cache::{DownloadGrant, DownloadKey, serve_firmware_cache};
pub use netledger_domain::workflow::card::{
    BackupInput, ChangeRunInput, FirmwareInput, PushInput, RestoreInput, RolloutInput,
    WINDOW_CONTINUE,
};
pub use rekey::{BackupRotation, KeyRotation, RekeyError, rotate_all, rotate_backups};
pub use restore::{PushRecord, RESTORE_KIND};

pub(crate) use adapter::step_event_id;

/// The component name in the actor of the events the workflows append.
pub const COMPONENT: &str = "netops-workflow";

/// An error of the worker entry point.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The engine refused the registry or the worker options.
    #[error("workflow engine")]
    Engine(#[from] EngineError),
    /// The firmware cache server failed.
    #[error("firmware cache server failed; check the listen address and the cache directory")]
    Cache(#[from] std::io::Error),
}

/// The netops workflow definitions: `config_push` v1, `firmware_upgrade` v1, `backup` v1,
/// `rollout` v1, `config_restore` v1, `change_request` v1.
pub fn registry(deps: NetopsDeps) -> Result<Registry, EngineError> {
    let deps = Arc::new(deps);
    let (a, b, c, r, x) = (
        deps.clone(),
        deps.clone(),
        deps.clone(),
        deps.clone(),
        deps.clone(),
    );
    Registry::new()
        .with(Definition::of(ConfigPush, move |ctx, input| {
            config_push::config_push(ctx, input, a.clone())
        }))?
        .with(Definition::of(FirmwareUpgrade, move |ctx, input| {
            firmware_upgrade::firmware_upgrade(ctx, input, b.clone())
        }))?
        .with(Definition::of(Backup, move |ctx, input| {
            backup::backup(ctx, input, c.clone())
        }))?
        .with(Definition::of(Rollout, move |ctx, input| {
            rollout::rollout(ctx, input, r.clone())
        }))?
        .with(Definition::of(ConfigRestore, move |ctx, input| {
            restore::config_restore(ctx, input, x.clone())
        }))?
        .with(Definition::of(ChangeRun, move |ctx, input| {
            change_run::change_run(ctx, input, deps.clone())
        }))
}

/// Runs a worker with the netops definitions until `shutdown` resolves; with `cache`, also
/// serves the firmware cache on that listener (stopped with the worker).
pub async fn run_worker(
    deps: NetopsDeps,
    options: WorkerOptions,
    cache: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<WorkerReport, WorkflowError> {
    let registry = Arc::new(registry(deps.clone())?);
    let engine = Engine::new(
        deps.app.clone(),
        deps.store.clone(),
        registry,
        deps.clock.clone(),
    );
    let worker = Worker::new(engine, deps.system.clone(), options)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = cache.map(|listener| {
        let mut rx = stop_rx.clone();
        let dir = deps.firmware_cache.clone();
        tokio::spawn(serve_firmware_cache(
            dir,
            listener,
            deps.clock.clone(),
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ))
    });
    let report = worker
        .run(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await?;
    if let Some(server) = server {
        match server.await {
            Ok(r) => r?,
            Err(e) => return Err(WorkflowError::Cache(std::io::Error::other(e.to_string()))),
        }
    }
    Ok(report)
}
