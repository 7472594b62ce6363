//! The durable workflows built on the device steps of this crate and the engine
//! (`netledger-engine`): `config_push` v1, `firmware_upgrade` v1 and `backup` v1, the
//! firmware cache server devices fetch packages from ([`serve_firmware_cache`]) and the
//! worker entry point ([`run_worker`]).
//!
//! Owns: the order of steps, what each step journals (never a password, an export or backup
//! bytes: exports go to the config archive, backups are encrypted before they are stored as
//! blobs), the decisions between steps (scheduler gate, cancel, verify failure, rollback).
//! Does not own: the engine, the event store, the archive, credentials (it reads and
//! decrypts them in memory inside a step). `docs/push.md` ("Workflows") describes them.

mod cache;
mod restore;
mod rollout;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use netledger_archive::{Archive, SnapshotMeta};
use netledger_domain::clock::Clock;
use netledger_domain::device::{ConfigSnapshotRecorded, SnapshotReason, Transport};
use netledger_domain::{
    Actor, DeviceId, EventMetadata, ExpectedVersion, NewEvent, TenantId, WorkflowId,
};
use netledger_engine::{
    Ctx, Definition, Engine, EngineError, Finish, Registry, RetryPolicy, StepError, StepOptions,
    Worker, WorkerOptions, WorkerReport,
};
use netledger_store::credentials::{self, CredentialKeys};
use netledger_store::devices::fold_in;
use netledger_store::{EventStore, begin_tenant};
use routeros::{Client, Config, Password, TlsPolicy};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;

use crate::firmware::{
    self, AwaitOptions, FirmwareAction, FirmwarePrecheck, FirmwareTarget, InstallStarted,
    PackageSource, RouterboardFirmware,
};
use crate::{
    Applied, ArmOptions, Armed, Change, ChangeId, Committed, DeviceProbe, ErrorClass, HealthChecks,
    NetopsError, Policy, RollbackOptions, RolledBack, SchedulerGate, Snapshot, Validated,
    Verification, VerifyOptions,
};

pub use cache::serve_firmware_cache;
pub use restore::{PushRecord, RESTORE_KIND, RestoreInput};
pub use rollout::RolloutInput;

/// The component name in the actor of the events the workflows append.
pub const COMPONENT: &str = "netops-workflow";

/// Timeouts and windows of the workflows.
#[derive(Debug, Clone, PartialEq)]
pub struct NetopsOptions {
    /// TCP/TLS connect timeout to a device.
    pub connect_timeout: Duration,
    /// Per-command timeout on a device.
    pub command_timeout: Duration,
    /// Verification: how long the device gets to be reachable after apply.
    pub verify: VerifyOptions,
    /// Rollback waits.
    pub rollback: RollbackOptions,
    /// Margin added to the verify window when arming the rollback timer (apply, commit).
    pub arm_margin: Duration,
    /// Verify attempts (each after the first extends the timer first).
    pub verify_attempts: u32,
    /// Waiting for a device to come back from a firmware reboot.
    pub await_reboot: AwaitOptions,
    /// Bound on the device-side download of a firmware package.
    pub fetch_timeout: Duration,
    /// Retries of a device step.
    pub retry: RetryPolicy,
    /// Longest time one device step attempt may take.
    pub step_timeout: Duration,
}

impl Default for NetopsOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(30),
            verify: VerifyOptions {
                reachable_within: Duration::from_secs(30),
                retry_every: Duration::from_secs(1),
            },
            rollback: RollbackOptions {
                wait_for_device: Duration::from_secs(180),
                reboot_wait: Duration::from_secs(120),
                retry_every: Duration::from_secs(2),
            },
            arm_margin: Duration::from_secs(60),
            verify_attempts: 2,
            await_reboot: AwaitOptions {
                within: Duration::from_secs(600),
                retry_every: Duration::from_secs(5),
            },
            fetch_timeout: Duration::from_secs(600),
            retry: RetryPolicy::attempts(5),
            step_timeout: Duration::from_secs(900),
        }
    }
}

/// What the workflows need from the process.
#[derive(Clone)]
pub struct NetopsDeps {
    /// App pool (role `netledger_app`): the engine, device folds, credentials.
    pub app: PgPool,
    /// System pool (role `netledger_system`): the worker's claims.
    pub system: PgPool,
    /// The event store (device `ConfigSnapshotRecorded` events).
    pub store: EventStore,
    /// The config archive (exports, encrypted backup blobs).
    pub archive: Archive,
    /// Credential keys: decrypt device passwords (in memory, inside a step) and encrypt
    /// backups before they are stored.
    pub keys: CredentialKeys,
    /// Firmware cache directory: `<dir>/<version>/<package file>`.
    pub firmware_cache: PathBuf,
    /// Base URL devices fetch packages from (`http://10.0.0.1:8089`, served by
    /// [`serve_firmware_cache`]).
    pub firmware_base_url: String,
    /// Timeouts and windows.
    pub options: NetopsOptions,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for NetopsDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetopsDeps")
            .field("firmware_cache", &self.firmware_cache)
            .field("firmware_base_url", &self.firmware_base_url)
            .field("options", &self.options)
            .finish()
    }
}

/// Input of `config_push` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushInput {
    /// The device.
    pub device_id: DeviceId,
    /// Change id (letters, digits, `-`, `_`; at most 64): carried onto the device.
    pub change_id: String,
    /// The RouterOS script to apply.
    pub script: String,
    /// What the change may do (default policy when absent).
    #[serde(default)]
    pub policy: Option<Policy>,
    /// Health checks after apply.
    #[serde(default)]
    pub checks: HealthChecks,
    /// Push even though device-mode disables the scheduler (no device-side rollback timer).
    /// Explicit and journaled (step `scheduler_gate`).
    #[serde(default)]
    pub allow_without_timer: bool,
}

/// Input of `firmware_upgrade` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareInput {
    /// The device.
    pub device_id: DeviceId,
    /// Target RouterOS version (`7.19.4`).
    pub version: String,
    /// Also upgrade the RouterBOARD firmware (a second reboot) when it lags.
    #[serde(default)]
    pub routerboard: bool,
}

/// Input of `backup` v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInput {
    /// The device.
    pub device_id: DeviceId,
}

/// Where a device is reached (journaled by step `resolve`; the password is not in it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The device.
    pub device_id: DeviceId,
    /// Host.
    pub host: String,
    /// API port.
    pub port: u16,
    /// Plain or TLS.
    pub transport: Transport,
    /// Login name.
    pub username: String,
}

/// Output of a snapshot step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecorded {
    /// What the device snapshot took.
    pub snapshot: Snapshot,
    /// Archive commit holding the export.
    pub commit: String,
    /// SHA-256 of the archived export.
    pub sha256: String,
    /// Whether the archive content changed.
    pub changed: bool,
    /// SHA-256 of the encrypted backup blob, when the backup could be read back (7.13+).
    pub backup_blob: Option<String>,
}

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

fn step_error(e: NetopsError) -> StepError {
    match e.class() {
        ErrorClass::Retryable => StepError::retryable(e),
        _ => StepError::fatal(e),
    }
}

impl NetopsDeps {
    fn device_opts(&self) -> StepOptions {
        StepOptions::default()
            .retry(self.options.retry)
            .timeout(self.options.step_timeout)
    }

    /// Folds the device's stream: where it is reached (no password).
    async fn resolve(&self, tenant: TenantId, device: DeviceId) -> Result<Target, StepError> {
        let mut tx = begin_tenant(&self.app, tenant)
            .await
            .map_err(StepError::retryable)?;
        let state = fold_in(&mut tx, tenant, device)
            .await
            .map_err(StepError::retryable)?;
        tx.commit().await.map_err(StepError::retryable)?;
        let reg = match (&state.registration, state.removed) {
            (Some(r), false) => r,
            _ => {
                return Err(StepError::fatal(format!(
                    "device {device} is not registered (or was removed); register it first"
                )));
            }
        };
        Ok(Target {
            device_id: device,
            host: reg.endpoint.host.as_str().to_owned(),
            port: reg.endpoint.port,
            transport: reg.endpoint.transport.clone(),
            username: reg.username.clone(),
        })
    }

    /// The client configuration with the decrypted password (memory only, never journaled).
    async fn config(&self, tenant: TenantId, target: &Target) -> Result<Config, StepError> {
        let mut tx = begin_tenant(&self.app, tenant)
            .await
            .map_err(StepError::retryable)?;
        let stored = credentials::load_in(&mut tx, tenant, target.device_id)
            .await
            .map_err(|e| StepError::fatal(format!("credentials of {}: {e}", target.device_id)))?
            .ok_or_else(|| {
                StepError::fatal(format!(
                    "device {} has no stored credentials; set them with a credentials change",
                    target.device_id
                ))
            })?;
        tx.commit().await.map_err(StepError::retryable)?;
        let password = self
            .keys
            .open(tenant, target.device_id, &stored.sealed)
            .map_err(|e| StepError::fatal(format!("credentials of {}: {e}", target.device_id)))?;
        let mut c = Config::new(
            target.host.clone(),
            stored.username.clone(),
            Password::new(password.expose()),
        )
        .with_port(target.port);
        c.connect_timeout = self.options.connect_timeout;
        c.command_timeout = self.options.command_timeout;
        match &target.transport {
            Transport::Plain => {}
            Transport::TlsPinned { fingerprint_sha256 } => {
                let fp: routeros::Fingerprint = fingerprint_sha256.parse().map_err(|_| {
                    StepError::fatal(format!(
                        "the pinned fingerprint of {} is not 64 hex digits; update its endpoint",
                        target.device_id
                    ))
                })?;
                c = c.with_tls(TlsPolicy::PinnedSha256(fp.0));
            }
            Transport::TlsVerified => {
                return Err(StepError::fatal(format!(
                    "device {} uses TLS verified against CA roots, which the workflows do not \
                     support yet; pin its certificate fingerprint instead",
                    target.device_id
                )));
            }
        }
        Ok(c)
    }

    async fn client(
        &self,
        tenant: TenantId,
        target: &Target,
    ) -> Result<(Config, Client), StepError> {
        let cfg = self.config(tenant, target).await?;
        let client = crate::connect(&cfg).await.map_err(step_error)?;
        Ok((cfg, client))
    }

    /// Device snapshot -> archive record (+ encrypted backup blob) -> `ConfigSnapshotRecorded`.
    async fn snapshot(
        &self,
        tenant: TenantId,
        target: &Target,
        workflow: WorkflowId,
        id: &ChangeId,
        reason: SnapshotReason,
    ) -> Result<SnapshotRecorded, StepError> {
        let (_, client) = self.client(tenant, target).await?;
        let taken = crate::snapshot(&client, id).await;
        client.close().await;
        let taken = taken.map_err(step_error)?;
        let device = target.device_id;
        let meta = SnapshotMeta {
            actor: Actor::system(COMPONENT),
            reason,
            causation_id: *workflow.as_uuid(),
            correlation_id: *workflow.as_uuid(),
            at: self.clock.now(),
            routeros_version: taken.snapshot.device_version.clone(),
            workflow_id: Some(workflow),
        };
        let sealed = match &taken.backup {
            Some(bytes) => {
                let text = base64::engine::general_purpose::STANDARD.encode(bytes);
                let s = self
                    .keys
                    .seal(tenant, device, &text)
                    .map_err(|e| StepError::fatal(format!("encrypt the backup: {e}")))?;
                Some(
                    serde_json::to_vec(&json!({
                        "format": "netledger-backup-v1",
                        "key_id": s.key_id,
                        "nonce": hex::encode(s.nonce),
                        "ciphertext": base64::engine::general_purpose::STANDARD.encode(&s.ciphertext),
                    }))
                    .map_err(|e| StepError::fatal(format!("encode the backup blob: {e}")))?,
                )
            }
            None => None,
        };
        let archive = self.archive.clone();
        let export = taken.export;
        let (recorded, blob) = tokio::task::spawn_blocking(move || {
            let recorded = archive.record(tenant, device, &export, &meta)?;
            let blob = match sealed {
                Some(b) => Some(archive.store_blob(tenant, device, &b)?),
                None => None,
            };
            Ok::<_, netledger_archive::ArchiveError>((recorded, blob))
        })
        .await
        .map_err(|e| StepError::retryable(format!("archive task: {e}")))?
        .map_err(|e| StepError::retryable(format!("archive: {e}")))?;
        netledger_engine::crash_point("archived");
        let event = ConfigSnapshotRecorded {
            commit: recorded.commit.clone(),
            sha256: recorded.sha256.clone(),
            changed: recorded.changed,
            reason,
            routeros_version: taken.snapshot.device_version.clone(),
            workflow_id: Some(workflow),
        };
        let metadata = EventMetadata {
            actor: Actor::system(COMPONENT),
            causation_id: *workflow.as_uuid(),
            correlation_id: *workflow.as_uuid(),
        };
        // A fixed id per (workflow, change, reason): a re-run of this step after a crash
        // between this append and the step's journal entry is refused as a duplicate, so
        // the snapshot is recorded once (the chaos test kills a worker right there).
        use netledger_domain::EventType as _;
        let event_id = step_event_id(
            workflow,
            &[
                ConfigSnapshotRecorded::TYPE,
                id.as_str(),
                &format!("{reason:?}"),
            ],
        );
        let payload = serde_json::to_value(&event)
            .map_err(|e| StepError::fatal(format!("encode ConfigSnapshotRecorded: {e}")))?;
        let event = NewEvent::new(
            event_id,
            ConfigSnapshotRecorded::TYPE,
            ConfigSnapshotRecorded::SCHEMA_VERSION,
            payload,
            metadata,
        )
        .map_err(|e| StepError::fatal(format!("encode ConfigSnapshotRecorded: {e}")))?;
        match self
            .store
            .append(tenant, &device.stream(), ExpectedVersion::Any, vec![event])
            .await
        {
            Ok(_) | Err(netledger_store::StoreError::DuplicateEvent { .. }) => {}
            Err(e) => {
                return Err(StepError::retryable(format!(
                    "append ConfigSnapshotRecorded: {e}"
                )));
            }
        }
        netledger_engine::crash_point("recorded");
        Ok(SnapshotRecorded {
            snapshot: taken.snapshot,
            commit: recorded.commit,
            sha256: recorded.sha256,
            changed: recorded.changed,
            backup_blob: blob,
        })
    }
}

/// A fixed event id for an event a step appends outside its journal (`parts` name the
/// fact within the workflow): a re-run of the step after its worker died between the append
/// and the step's journal entry appends the same id, which the store refuses as a
/// duplicate, so the fact is recorded once.
pub(crate) fn step_event_id(workflow: WorkflowId, parts: &[&str]) -> netledger_domain::EventId {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(workflow.as_uuid().as_bytes());
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    netledger_domain::EventId::from_uuid(uuid::Builder::from_custom_bytes(bytes).into_uuid())
}

/// Runs a device step under the workflow's step options.
async fn device_step<T, F, Fut>(
    ctx: &mut Ctx,
    d: &NetopsDeps,
    name: &str,
    f: F,
) -> Result<T, StepError>
where
    T: Serialize + serde::de::DeserializeOwned,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StepError>>,
{
    ctx.step_with(name, d.device_opts(), f).await
}

/// The netops workflow definitions: `config_push` v1, `firmware_upgrade` v1, `backup` v1,
/// `rollout` v1, `config_restore` v1.
pub fn registry(deps: NetopsDeps) -> Result<Registry, EngineError> {
    let deps = Arc::new(deps);
    let (a, b, c, r, x) = (deps.clone(), deps.clone(), deps.clone(), deps.clone(), deps);
    Registry::new()
        .with(Definition::new("config_push", 1, move |ctx| {
            config_push(ctx, a.clone())
        }))?
        .with(Definition::new("firmware_upgrade", 1, move |ctx| {
            firmware_upgrade(ctx, b.clone())
        }))?
        .with(Definition::new("backup", 1, move |ctx| {
            backup(ctx, c.clone())
        }))?
        .with(Definition::new("rollout", 1, move |ctx| {
            rollout::rollout(ctx, r.clone())
        }))?
        .with(Definition::new(RESTORE_KIND, 1, move |ctx| {
            restore::config_restore(ctx, x.clone())
        }))
}

async fn resolve_step(
    ctx: &mut Ctx,
    d: &NetopsDeps,
    device: DeviceId,
) -> Result<Target, StepError> {
    let tenant = ctx.tenant();
    ctx.step("resolve", || d.resolve(tenant, device)).await
}

async fn backup(mut ctx: Ctx, d: Arc<NetopsDeps>) -> Result<Finish, StepError> {
    let input: BackupInput = ctx.input()?;
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
    let target = resolve_step(&mut ctx, &d, input.device_id).await?;
    let id = ChangeId::parse(format!("bk-{}", wf.as_uuid().simple()))
        .map_err(|e| StepError::fatal(e.to_string()))?;
    let snap: SnapshotRecorded = device_step(&mut ctx, &d, "snapshot", || {
        d.snapshot(tenant, &target, wf, &id, SnapshotReason::OnDemand)
    })
    .await?;
    Ok(Finish::succeeded(json!({
        "commit": snap.commit, "sha256": snap.sha256, "changed": snap.changed,
        "backup_blob": snap.backup_blob,
    })))
}

/// Why a push ends in a rollback.
struct RollbackCause {
    reason: String,
    cancelled: bool,
}

async fn config_push(mut ctx: Ctx, d: Arc<NetopsDeps>) -> Result<Finish, StepError> {
    let input: PushInput = ctx.input()?;
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
    let id =
        ChangeId::parse(input.change_id.clone()).map_err(|e| StepError::fatal(e.to_string()))?;
    let change = Change::new(id.clone(), input.script.clone());
    let policy = input.policy.clone().unwrap_or_default();
    let target = resolve_step(&mut ctx, &d, input.device_id).await?;
    let probe: DeviceProbe = device_step(&mut ctx, &d, "probe", || async {
        let (_, c) = d.client(tenant, &target).await?;
        let p = crate::probe(&c).await;
        c.close().await;
        p.map_err(step_error)
    })
    .await?;
    let allow = input.allow_without_timer;
    let gate: Result<SchedulerGate, String> = ctx
        .step("scheduler_gate", || {
            let probe = probe.clone();
            async move { Ok(crate::require_scheduler(&probe, allow).map_err(|e| e.to_string())) }
        })
        .await?;
    let gate = match gate {
        Ok(g) => g,
        Err(reason) => {
            return Ok(Finish::failed(
                &reason,
                json!({ "stage": "scheduler_gate" }),
            ));
        }
    };
    if ctx.cancelled() {
        return Ok(Finish::cancelled(
            "cancelled before the device was changed",
            json!({}),
        ));
    }
    let snap: SnapshotRecorded = device_step(&mut ctx, &d, "snapshot", || {
        d.snapshot(tenant, &target, wf, &id, SnapshotReason::PrePush)
    })
    .await?;
    if ctx.cancelled() {
        return Ok(Finish::cancelled(
            "cancelled before the device was changed",
            json!({}),
        ));
    }
    let validated: Validated = device_step(&mut ctx, &d, "validate", || async {
        let archive = d.archive.clone();
        let commit = snap.commit.clone();
        let device = target.device_id;
        let export = tokio::task::spawn_blocking(move || archive.read(tenant, device, &commit))
            .await
            .map_err(|e| StepError::retryable(format!("archive task: {e}")))?
            .map_err(|e| StepError::retryable(format!("read the snapshot export: {e}")))?;
        let (_, c) = d.client(tenant, &target).await?;
        let v = crate::validate(&c, &probe, &change, &export, &policy).await;
        c.close().await;
        v.map_err(step_error)
    })
    .await?;
    if ctx.cancelled() {
        return Ok(Finish::cancelled(
            "cancelled before the device was changed",
            json!({}),
        ));
    }
    let opts = d.options.clone();
    let arm = ArmOptions {
        window: opts.verify.reachable_within * 2 + opts.arm_margin,
        allow_without_timer: gate.overridden,
    };
    let mut armed: Armed = device_step(&mut ctx, &d, "arm", || async {
        let (_, c) = d.client(tenant, &target).await?;
        let a = crate::arm(&c, &snap.snapshot, &arm).await;
        c.close().await;
        a.map_err(step_error)
    })
    .await?;
    // From here on, every way out goes through commit or rollback.
    let cause = 'push: {
        if ctx.cancelled() {
            break 'push RollbackCause {
                reason: "cancelled after arm".into(),
                cancelled: true,
            };
        }
        let applied: Result<Applied, StepError> = device_step(&mut ctx, &d, "apply", || async {
            let (_, c) = d.client(tenant, &target).await?;
            let a = crate::apply(&c, &change, &armed).await;
            c.close().await;
            a.map_err(step_error)
        })
        .await;
        if let Err(e) = applied {
            break 'push RollbackCause {
                reason: format!("apply failed: {e}"),
                cancelled: false,
            };
        }
        let mut verified = None;
        for attempt in 1..=opts.verify_attempts.max(1) {
            if ctx.cancelled() {
                break 'push RollbackCause {
                    reason: "cancelled after apply".into(),
                    cancelled: true,
                };
            }
            if attempt > 1 {
                let window = arm.window;
                let extended: Result<Armed, StepError> =
                    device_step(&mut ctx, &d, &format!("extend-{attempt}"), || async {
                        let (_, c) = d.client(tenant, &target).await?;
                        let a = crate::extend(&c, &armed, window).await;
                        c.close().await;
                        a.map_err(step_error)
                    })
                    .await;
                match extended {
                    Ok(a) => armed = a,
                    Err(e) => {
                        break 'push RollbackCause {
                            reason: format!("could not extend the rollback timer: {e}"),
                            cancelled: false,
                        };
                    }
                }
            }
            let v: Result<Verification, StepError> = ctx
                .step_with(
                    &format!("verify-{attempt}"),
                    StepOptions::default()
                        .retry(RetryPolicy::none())
                        .timeout(opts.step_timeout),
                    || async {
                        let cfg = d.config(tenant, &target).await?;
                        crate::verify(&cfg, &validated, &input.checks, &opts.verify)
                            .await
                            .map_err(step_error)
                    },
                )
                .await;
            match v {
                Ok(Verification::Verified(v)) => {
                    verified = Some(v);
                    break;
                }
                Ok(Verification::Failed(f)) => {
                    break 'push RollbackCause {
                        reason: format!("verification failed: {:?}", f.reason),
                        cancelled: false,
                    };
                }
                Err(e) if attempt == opts.verify_attempts.max(1) => {
                    break 'push RollbackCause {
                        reason: format!("verify failed: {e}"),
                        cancelled: false,
                    };
                }
                Err(_) => {}
            }
        }
        if ctx.cancelled() {
            break 'push RollbackCause {
                reason: "cancelled after verify".into(),
                cancelled: true,
            };
        }
        let committed: Result<Committed, StepError> =
            device_step(&mut ctx, &d, "commit", || async {
                let (_, c) = d.client(tenant, &target).await?;
                let k = crate::commit(&c, &validated, &armed).await;
                c.close().await;
                k.map_err(step_error)
            })
            .await;
        match committed {
            Ok(k) => {
                let post = post_snapshot(&mut ctx, &d, &target, &id).await;
                return Ok(Finish::committed(json!({
                    "change_id": id.as_str(),
                    "pre_commit": snap.commit,
                    "post_commit": post,
                    "verified": verified,
                    "disarmed_now": k.disarmed_now,
                })));
            }
            Err(e) => RollbackCause {
                reason: format!("commit failed: {e}"),
                cancelled: false,
            },
        }
    };
    let rolled: Result<RolledBack, StepError> = ctx
        .step_with(
            "rollback",
            StepOptions::default()
                .retry(RetryPolicy::attempts(10))
                .timeout(opts.step_timeout),
            || async {
                let cfg = d.config(tenant, &target).await?;
                crate::rollback(&cfg, &snap.snapshot, &armed, &opts.rollback)
                    .await
                    .map_err(step_error)
            },
        )
        .await;
    let rolled = match rolled {
        Ok(r) => r,
        Err(e) => {
            return Ok(Finish::failed(
                &format!("{}; then the rollback failed: {e}", cause.reason),
                json!({ "change_id": id.as_str(), "pre_commit": snap.commit }),
            ));
        }
    };
    let post = post_snapshot(&mut ctx, &d, &target, &id).await;
    let output = json!({
        "change_id": id.as_str(),
        "pre_commit": snap.commit,
        "post_commit": post,
        "rollback": rolled,
    });
    if cause.cancelled {
        Ok(Finish::cancelled(
            &format!("{}; rolled back", cause.reason),
            output,
        ))
    } else {
        Ok(Finish::rolled_back(&cause.reason, output))
    }
}

/// The `post_push` snapshot; its failure does not change the outcome (the commit is named in
/// the output when it worked).
async fn post_snapshot(
    ctx: &mut Ctx,
    d: &NetopsDeps,
    target: &Target,
    id: &ChangeId,
) -> Option<String> {
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
    let Ok(post_id) = ChangeId::parse(format!(
        "{}-post",
        &id.as_str()[..id.as_str().len().min(59)]
    )) else {
        return None;
    };
    let r: Result<SnapshotRecorded, StepError> = device_step(ctx, d, "post_snapshot", || {
        d.snapshot(tenant, target, wf, &post_id, SnapshotReason::PostPush)
    })
    .await;
    r.ok().map(|s| s.commit)
}

async fn firmware_upgrade(mut ctx: Ctx, d: Arc<NetopsDeps>) -> Result<Finish, StepError> {
    let input: FirmwareInput = ctx.input()?;
    let tenant = ctx.tenant();
    let wf = ctx.workflow_id();
    let target = resolve_step(&mut ctx, &d, input.device_id).await?;
    let fw = FirmwareTarget {
        version: input.version.clone(),
        cache_dir: d.firmware_cache.clone(),
    };
    let pre: FirmwarePrecheck = device_step(&mut ctx, &d, "precheck", || async {
        let (_, c) = d.client(tenant, &target).await?;
        let p = firmware::precheck(&c, &fw).await;
        c.close().await;
        p.map_err(step_error)
    })
    .await?;
    if pre.action == FirmwareAction::AlreadyCurrent {
        return Ok(Finish::succeeded(
            json!({ "version": input.version, "already_current": true }),
        ));
    }
    if ctx.cancelled() {
        return Ok(Finish::cancelled(
            "cancelled before the device was changed",
            json!({}),
        ));
    }
    let id = ChangeId::parse(format!("fw-{}", wf.as_uuid().simple()))
        .map_err(|e| StepError::fatal(e.to_string()))?;
    let snap: SnapshotRecorded = device_step(&mut ctx, &d, "snapshot", || {
        d.snapshot(tenant, &target, wf, &id, SnapshotReason::PrePush)
    })
    .await?;
    let source = PackageSource {
        base_url: d.firmware_base_url.clone(),
        timeout: d.options.fetch_timeout,
    };
    let _: firmware::Uploaded = device_step(&mut ctx, &d, "upload", || async {
        let (_, c) = d.client(tenant, &target).await?;
        let u = firmware::upload(&c, &pre, &source).await;
        c.close().await;
        u.map_err(step_error)
    })
    .await?;
    if ctx.cancelled() {
        return Ok(Finish::cancelled(
            "cancelled before the install (package uploaded)",
            json!({}),
        ));
    }
    let started: InstallStarted = device_step(&mut ctx, &d, "install", || async {
        let (_, c) = d.client(tenant, &target).await?;
        let s = firmware::install(&c, &pre).await;
        c.close().await;
        s.map_err(step_error)
    })
    .await?;
    let awaited: Result<firmware::Returned, StepError> =
        device_step(&mut ctx, &d, "await_version", || async {
            let cfg = d.config(tenant, &target).await?;
            firmware::await_version(&cfg, &started, &d.options.await_reboot)
                .await
                .map_err(step_error)
        })
        .await;
    let back = match awaited {
        Ok(b) => b,
        Err(e) => {
            return Ok(Finish::failed(
                &e.to_string(),
                json!({ "pre_commit": snap.commit, "target": input.version }),
            ));
        }
    };
    let mut rb_out = None;
    if input.routerboard {
        let rb: RouterboardFirmware = device_step(&mut ctx, &d, "routerboard_upgrade", || async {
            let (_, c) = d.client(tenant, &target).await?;
            let r = firmware::routerboard_upgrade(&c).await;
            c.close().await;
            r.map_err(step_error)
        })
        .await?;
        let rb = if matches!(rb, RouterboardFirmware::UpgradeStarted { .. }) {
            device_step(&mut ctx, &d, "await_routerboard", || async {
                let cfg = d.config(tenant, &target).await?;
                firmware::await_routerboard(&cfg, &rb, &d.options.await_reboot)
                    .await
                    .map_err(step_error)
            })
            .await?
        } else {
            rb
        };
        rb_out = Some(rb);
    }
    Ok(Finish::succeeded(json!({
        "version": back.version,
        "pre_commit": snap.commit,
        "routerboard": rb_out,
    })))
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
        tokio::spawn(serve_firmware_cache(dir, listener, async move {
            let _ = rx.wait_for(|s| *s).await;
        }))
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
