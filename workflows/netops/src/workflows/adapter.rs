//! The infrastructure adapter the workflows run their device steps through: the process's
//! dependencies ([`NetopsDeps`]) and timeouts ([`NetopsOptions`]), where a device is reached
//! (step `resolve`, [`Target`]), its client configuration with the decrypted password
//! (memory only), one connect/run/close session per device step ([`NetopsDeps::with_client`]),
//! the snapshot step (device -> archive -> `ConfigSnapshotRecorded`), and the step helpers the
//! workflow files share. A device with SSH access registered also gets its SSH configuration
//! (same decrypted password, memory only) for the file jobs the API cannot do on its version
//! (`crate::files`), and a key it presents on first use is recorded through the device
//! aggregate (`DeviceCommand::RecordSshHostKey`, [`StoreHostKeyRecorder`]) before the
//! session is used.
//!
//! Owns: how a step reaches the device, the store and the archive. Does not own: the order of
//! steps or the decisions between them (one file per workflow next to this one), the device
//! operations (`crate::push`, `crate::firmware`).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use netledger_archive::{Archive, SnapshotMeta};
use netledger_device_client::ClientSettings;
use netledger_domain::clock::Clock;
use netledger_domain::device::{
    ConfigSnapshotRecorded, DeviceCommand, DeviceRollbackTimersCleared, DeviceRollbackTimersFound,
    SnapshotReason, SshAccess, SshHostKey, Transport,
};
use netledger_domain::{
    Actor, DeviceId, EventEnum, EventId, EventMetadata, EventType, ExpectedVersion, NewEvent,
    TenantId, WorkflowId,
};
use netledger_engine::{Ctx, RetryPolicy, StepError, StepOptions};
use netledger_store::credentials::{self, CredentialKeys};
use netledger_store::devices::fold_in;
use netledger_store::{EventStore, begin_tenant};
use routeros::{Client, Config, Password};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::COMPONENT;
use crate::files::{Files, HostKeyRecorder, SshLink};
use crate::firmware::AwaitOptions;
use crate::{ChangeId, ErrorClass, NetopsError, RollbackOptions, Snapshot, VerifyOptions};

/// Timeouts and windows of the workflows.
#[derive(Debug, Clone)]
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
    /// Devices can reach `firmware_base_url` and may download packages with `/tool/fetch`
    /// (default). False: the network does not allow it, and packages are uploaded over
    /// SFTP to devices with SSH access (a device without SSH access is then refused).
    /// A device whose device-mode disables `fetch` gets SFTP whatever this says.
    pub firmware_fetch: bool,
    /// Retries of a device step.
    pub retry: RetryPolicy,
    /// Longest time one device step attempt may take.
    pub step_timeout: Duration,
    /// After a push's rollback failed (its timer not confirmed gone), how long it waits
    /// (durably, lease released, device still owned) before trying again.
    pub rollback_recheck: Duration,
    /// CA roots for devices registered with verified TLS (`TlsVerified`); without them such
    /// devices are refused with a clear error (as by the poller, whose mapping this shares:
    /// `netledger-device-client`).
    pub tls_roots: Option<Arc<rustls::RootCertStore>>,
    /// The operator's device-network policy (networks allowed for every tenant beyond the
    /// defaults, the platform's service endpoints); the tenant's own allowed networks are
    /// added when a step builds its client configuration, and every resolved address is
    /// checked before each connect.
    pub device_networks: netledger_domain::device::network::DeviceNetworkPolicy,
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
            firmware_fetch: true,
            retry: RetryPolicy::attempts(5),
            step_timeout: Duration::from_secs(900),
            rollback_recheck: Duration::from_secs(300),
            tls_roots: None,
            device_networks: Default::default(),
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
    /// SSH access (port, host-key trust) as registered when resolved; absent in journals
    /// written before SSH existed (decoded as `None`: API only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshAccess>,
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
    /// The per-snapshot password the device encrypted the backup with, sealed like device
    /// credentials (never journaled in clear); `None` for journals written before backups
    /// were encrypted.
    #[serde(default)]
    pub backup_password: Option<SealedSecret>,
}

/// A secret sealed with the credential keys (AES-256-GCM, bound to tenant and device), in a
/// journal-friendly form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedSecret {
    /// Key id.
    pub key_id: String,
    /// Nonce, hex.
    pub nonce: String,
    /// Ciphertext with its tag, base64.
    pub ciphertext: String,
}

impl SealedSecret {
    fn seal(
        keys: &CredentialKeys,
        tenant: TenantId,
        device: DeviceId,
        secret: &str,
    ) -> Result<SealedSecret, StepError> {
        let s = keys
            .seal(tenant, device, secret)
            .map_err(|e| StepError::fatal(format!("seal the backup password: {e}")))?;
        Ok(SealedSecret::from(s))
    }

    /// The stored form (hex nonce and base64 ciphertext decoded).
    pub(super) fn to_sealed(&self) -> Result<credentials::SealedCredentials, String> {
        let bad = |what: &str| format!("sealed backup secret: bad {what}");
        let nonce: [u8; 12] = hex::decode(&self.nonce)
            .map_err(|_| bad("nonce"))?
            .try_into()
            .map_err(|_| bad("nonce"))?;
        let ciphertext = base64::engine::general_purpose::STANDARD
            .decode(&self.ciphertext)
            .map_err(|_| bad("ciphertext"))?;
        Ok(credentials::SealedCredentials {
            key_id: self.key_id.clone(),
            nonce,
            ciphertext,
        })
    }

    /// Opens the secret (memory only); the error says which key and why.
    pub(super) fn open_secret(
        &self,
        keys: &CredentialKeys,
        tenant: TenantId,
        device: DeviceId,
    ) -> Result<String, String> {
        let p = keys
            .open(tenant, device, &self.to_sealed()?)
            .map_err(|e| format!("open the sealed backup secret: {e}"))?;
        Ok(p.expose().to_owned())
    }
}

/// A fresh random backup password (two v4 UUIDs: 244 random bits, hex; no character needs
/// quoting in a RouterOS script).
fn new_backup_password() -> Password {
    Password::new(format!(
        "{}{}",
        Uuid::new_v4().simple(),
        Uuid::new_v4().simple()
    ))
}

impl SnapshotRecorded {
    /// The backup password in clear (memory only), when the backup is encrypted: the
    /// journaled one, or where a key rotation re-sealed it.
    pub(super) async fn password(
        &self,
        d: &NetopsDeps,
        tenant: TenantId,
        device: DeviceId,
    ) -> Result<Option<Password>, StepError> {
        d.backup_password(
            tenant,
            device,
            self.backup_blob.as_deref(),
            self.backup_password.as_ref(),
        )
        .await
    }
}

/// The real script of a push, decrypted in memory, and its secret values (for
/// [`redact_step_error`]).
pub(super) struct RealScript {
    /// The script as the operator wrote it.
    pub script: String,
    /// Its secret values (`rosconfig::mask_script`).
    pub secrets: Vec<String>,
}

/// `e` with every secret value replaced by the mask: a step's error is journaled, projected
/// and shown, and parse, policy and device messages may quote the script.
pub(super) fn redact_step_error(e: StepError, secrets: &[String]) -> StepError {
    match e {
        StepError::Retryable(m) => StepError::Retryable(rosconfig::redact(&m, secrets)),
        StepError::Fatal(m) => StepError::Fatal(rosconfig::redact(&m, secrets)),
        StepError::Cancelled => StepError::Cancelled,
    }
}

pub(super) fn step_error(e: NetopsError) -> StepError {
    match e.class() {
        ErrorClass::Retryable => StepError::retryable(e),
        _ => StepError::fatal(e),
    }
}

/// Records the SSH host key a session of a worker step trusted on first use: folds the
/// device, decides `DeviceCommand::RecordSshHostKey { recorded_by: "worker" }` and appends
/// `DeviceSshHostKeyPinned` at the exact version folded (a concurrent append is read and
/// decided again). The same key recorded already (by another step or the poller) is
/// nothing to do; another key pinned meanwhile is refused (fatal: the device now presents a
/// key that is not the pinned one).
pub(crate) struct StoreHostKeyRecorder {
    pub(crate) deps: NetopsDeps,
    pub(crate) tenant: TenantId,
    pub(crate) device: DeviceId,
}

impl StoreHostKeyRecorder {
    async fn record_key(&self, key: &routeros_ssh::HostKey) -> Result<(), NetopsError> {
        let fingerprint = key.fingerprint().to_hex();
        let command = DeviceCommand::RecordSshHostKey {
            fingerprint_sha256: fingerprint.clone(),
            algorithm: key.algorithm.clone(),
            recorded_by: "worker".into(),
        };
        let failed = |detail: String, transient: bool| NetopsError::HostKeyNotRecorded {
            device: self.device.to_string(),
            detail,
            transient,
        };
        for _ in 0..3 {
            let mut tx = begin_tenant(&self.deps.app, self.tenant)
                .await
                .map_err(|e| failed(e.to_string(), true))?;
            let state = fold_in(&mut tx, self.tenant, self.device)
                .await
                .map_err(|e| failed(e.to_string(), true))?;
            tx.commit().await.map_err(|e| failed(e.to_string(), true))?;
            let decided = state
                .decide(&command)
                .map_err(|e| failed(format!("presented key SHA-256 {fingerprint}: {e}"), false))?;
            if decided.is_empty() {
                return Ok(());
            }
            let meta = EventMetadata::for_command(Actor::system(COMPONENT), Uuid::new_v4());
            let mut events = Vec::with_capacity(decided.len());
            for event in &decided {
                events.push(
                    event
                        .to_new_event(EventId::new_v7(), meta.clone())
                        .map_err(|e| failed(e.to_string(), false))?,
                );
            }
            let expected = match state.version {
                0 => ExpectedVersion::NoStream,
                v => ExpectedVersion::Exact(v),
            };
            match self
                .deps
                .store
                .append(self.tenant, &self.device.stream(), expected, events)
                .await
            {
                Ok(_) => {
                    tracing::info!(device = %self.device, %fingerprint, algorithm = %key.algorithm, "SSH host key recorded on first use");
                    return Ok(());
                }
                Err(netledger_store::StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(failed(e.to_string(), true)),
            }
        }
        Err(failed(
            "the device's stream kept changing; try again".into(),
            true,
        ))
    }
}

impl HostKeyRecorder for StoreHostKeyRecorder {
    fn record<'a>(
        &'a self,
        key: &'a routeros_ssh::HostKey,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), NetopsError>> + Send + 'a>> {
        Box::pin(self.record_key(key))
    }
}

impl NetopsDeps {
    pub(super) fn device_opts(&self) -> StepOptions {
        StepOptions::default()
            .retry(self.options.retry)
            .timeout(self.options.step_timeout)
    }

    /// The real script of a push whose input carries `masked` and, when masking changed
    /// it, the id of the sealed real script: decrypted in memory (store `sealed_scripts`),
    /// and refused unless masking it gives exactly the journaled text.
    pub(super) async fn real_script(
        &self,
        tenant: TenantId,
        masked: &str,
        sealed: Option<Uuid>,
    ) -> Result<RealScript, StepError> {
        let Some(id) = sealed else {
            return Ok(RealScript {
                script: masked.to_owned(),
                secrets: rosconfig::mask_script(masked).secrets,
            });
        };
        let mut tx = begin_tenant(&self.app, tenant)
            .await
            .map_err(StepError::retryable)?;
        let real = netledger_store::sealed::open(&mut tx, &self.keys, tenant, id)
            .await
            .map_err(|e| {
                if e.is_transient() {
                    StepError::retryable(e)
                } else {
                    StepError::fatal(e)
                }
            })?;
        tx.commit().await.map_err(StepError::retryable)?;
        let m = rosconfig::mask_script(&real);
        if m.text != masked {
            return Err(StepError::fatal(format!(
                "sealed script {id} does not match the workflow's (masked) script; start the push again"
            )));
        }
        Ok(RealScript {
            script: real,
            secrets: m.secrets,
        })
    }

    /// Folds the device's stream: where it is reached (no password).
    pub(super) async fn resolve(
        &self,
        tenant: TenantId,
        device: DeviceId,
    ) -> Result<Target, StepError> {
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
            ssh: reg.endpoint.ssh.clone(),
        })
    }

    /// The client configuration with the decrypted password (memory only, never journaled).
    pub(super) async fn config(
        &self,
        tenant: TenantId,
        target: &Target,
    ) -> Result<Config, StepError> {
        self.access(tenant, target).await.map(|(c, _)| c)
    }

    /// The API client configuration and, for a device with SSH access, its SSH link (same
    /// decrypted password; memory only). A target resolved with a key to trust on first use
    /// takes the device's current key trust (pinned since by an earlier step or the poller),
    /// and records the key otherwise ([`StoreHostKeyRecorder`]).
    pub(super) async fn access(
        &self,
        tenant: TenantId,
        target: &Target,
    ) -> Result<(Config, Option<SshLink>), StepError> {
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
        let device_networks = netledger_store::devices::settings::network_policy(
            &mut tx,
            tenant,
            &self.options.device_networks,
        )
        .await
        .map_err(StepError::retryable)?;
        // trust on first use: the key may have been pinned since the target was resolved
        let ssh = match &target.ssh {
            Some(SshAccess {
                host_key: SshHostKey::FirstUse,
                ..
            }) => fold_in(&mut tx, tenant, target.device_id)
                .await
                .map_err(StepError::retryable)?
                .registration
                .and_then(|r| r.endpoint.ssh)
                .map(|now| SshAccess {
                    port: target.ssh.as_ref().map_or(now.port, |s| s.port),
                    host_key: now.host_key,
                }),
            other => other.clone(),
        };
        tx.commit().await.map_err(StepError::retryable)?;
        let password = self
            .keys
            .open(tenant, target.device_id, &stored.sealed)
            .map_err(|e| StepError::fatal(format!("credentials of {}: {e}", target.device_id)))?;
        let settings = ClientSettings {
            connect_timeout: self.options.connect_timeout,
            command_timeout: self.options.command_timeout,
            tls_roots: self.options.tls_roots.clone(),
            device_networks,
        };
        let config = netledger_device_client::client_config(
            &target.host,
            target.port,
            &target.transport,
            &stored.username,
            Password::new(password.expose()),
            &settings,
        )
        .map_err(|e| StepError::fatal(format!("device {}: {e}", target.device_id)))?;
        let link = match &ssh {
            Some(access) => {
                // the SSH key the credentials hold, if any, is the SSH login (memory only)
                let key = stored
                    .ssh_key
                    .as_ref()
                    .map(|k| self.keys.open_ssh_key(tenant, target.device_id, k))
                    .transpose()
                    .map_err(|e| {
                        StepError::fatal(format!("credentials of {}: {e}", target.device_id))
                    })?;
                let fatal = |e: netledger_device_client::EndpointError| {
                    StepError::fatal(format!("device {}: {e}", target.device_id))
                };
                let auth = netledger_device_client::ssh_auth(
                    password.expose(),
                    key.as_ref().map(|k| k.expose()),
                )
                .map_err(fatal)?;
                let config = netledger_device_client::ssh_config(
                    &target.host,
                    access,
                    &stored.username,
                    auth,
                    &settings,
                )
                .map_err(fatal)?;
                let recorder: Arc<dyn HostKeyRecorder> = Arc::new(StoreHostKeyRecorder {
                    deps: self.clone(),
                    tenant,
                    device: target.device_id,
                });
                Some(SshLink {
                    config,
                    recorder: Some(recorder),
                })
            }
            None => None,
        };
        Ok((config, link))
    }

    /// One device session: connects with the device's client configuration, runs `f` on
    /// the logged-in client and closes the session whatever `f` returned. Every step that
    /// needs one session uses it; steps that reconnect themselves (verify, rollback, waiting
    /// for a reboot) take [`Self::config`] instead.
    pub(super) async fn with_client<T>(
        &self,
        tenant: TenantId,
        target: &Target,
        f: impl AsyncFnOnce(&Client) -> Result<T, NetopsError>,
    ) -> Result<T, StepError> {
        let cfg = self.config(tenant, target).await?;
        let client = crate::connect(&cfg).await.map_err(step_error)?;
        let r = f(&client).await;
        client.close().await;
        r.map_err(step_error)
    }

    /// [`Self::with_client`] with the step's file channel ([`Files`]): the API client, and
    /// the device's SSH access for the file jobs the API cannot do on its version. At most
    /// one SSH session, opened by the first such job and closed with the step.
    pub(super) async fn with_files<T>(
        &self,
        tenant: TenantId,
        target: &Target,
        f: impl AsyncFnOnce(&Files<'_>) -> Result<T, NetopsError>,
    ) -> Result<T, StepError> {
        let (cfg, ssh) = self.access(tenant, target).await?;
        let client = crate::connect(&cfg).await.map_err(step_error)?;
        let files = Files::new(&client, ssh.as_ref());
        let r = f(&files).await;
        files.close().await;
        client.close().await;
        r.map_err(step_error)
    }

    /// The pre-push backup bytes of a push record from the archive (unsealed, memory
    /// only); `None` when the push archived none (RouterOS before 7.13). Reads the file a
    /// key rotation re-encrypted, if one did.
    pub(super) async fn archived_backup(
        &self,
        tenant: TenantId,
        device: DeviceId,
        record: &super::restore::PushRecord,
    ) -> Result<Option<Vec<u8>>, StepError> {
        let current = super::rekey::current(
            &self.app,
            tenant,
            record.pre_backup_blob.as_deref(),
            record.pre_backup_password.as_ref(),
        )
        .await
        .map_err(StepError::retryable)?;
        let Some(sha) = current.blob else {
            return Ok(None);
        };
        let archive = self.archive.clone();
        let blob = tokio::task::spawn_blocking(move || archive.load_blob(tenant, &sha))
            .await
            .map_err(|e| StepError::retryable(format!("archive task: {e}")))?
            .map_err(|e| StepError::retryable(format!("read the archived backup: {e}")))?;
        super::rekey::open_blob(&self.keys, tenant, device, &blob)
            .map(Some)
            .map_err(StepError::fatal)
    }

    /// The password of a journaled backup (`blob`, `password` as journaled) in clear
    /// (memory only): the journal's, or the one a key rotation re-sealed.
    pub(super) async fn backup_password(
        &self,
        tenant: TenantId,
        device: DeviceId,
        blob: Option<&str>,
        password: Option<&SealedSecret>,
    ) -> Result<Option<Password>, StepError> {
        if password.is_none() {
            return Ok(None);
        }
        let current = super::rekey::current(&self.app, tenant, blob, password)
            .await
            .map_err(StepError::retryable)?;
        current
            .password
            .map(|p| {
                p.open_secret(&self.keys, tenant, device)
                    .map(Password::new)
                    .map_err(StepError::fatal)
            })
            .transpose()
    }

    /// Records the rollback-timer condition of the device (`docs/push.md`, "Stale rollback
    /// timers"): `timers` found → `DeviceRollbackTimersFound` (with `source`, `detail`);
    /// none, while the device's state still has the condition → `DeviceRollbackTimersCleared`.
    /// Event ids are fixed per (workflow, `step`), so a re-run step records it once.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn timer_condition(
        &self,
        tenant: TenantId,
        device: DeviceId,
        workflow: WorkflowId,
        correlation: Uuid,
        step: &str,
        timers: &[String],
        source: &str,
        detail: &str,
    ) -> Result<(), StepError> {
        if timers.is_empty() {
            let mut tx = begin_tenant(&self.app, tenant)
                .await
                .map_err(StepError::retryable)?;
            let state = fold_in(&mut tx, tenant, device)
                .await
                .map_err(StepError::retryable)?;
            tx.commit().await.map_err(StepError::retryable)?;
            if state.stale_rollback_timers.is_empty() {
                return Ok(());
            }
            let cleared = DeviceRollbackTimersCleared {
                workflow_id: workflow,
            };
            self.append_once(tenant, device, workflow, correlation, &[step], &cleared)
                .await
        } else {
            let found = DeviceRollbackTimersFound {
                timers: timers.to_vec(),
                workflow_id: workflow,
                source: source.to_owned(),
                detail: detail.to_owned(),
            };
            self.append_once(tenant, device, workflow, correlation, &[step], &found)
                .await
        }
    }

    /// Appends `event` to `device`'s stream, caused by `workflow`, once: its id is
    /// [`step_event_id`] of the event type and `parts`, so a re-run of the step after a crash
    /// between this append and the step's journal entry is refused as a duplicate and the
    /// fact is recorded once (the chaos test kills a worker right there).
    async fn append_once<E: EventType>(
        &self,
        tenant: TenantId,
        device: DeviceId,
        workflow: WorkflowId,
        correlation: Uuid,
        parts: &[&str],
        event: &E,
    ) -> Result<(), StepError> {
        let encode =
            |e: &dyn std::fmt::Display| StepError::fatal(format!("encode {}: {e}", E::TYPE));
        let payload = serde_json::to_value(event).map_err(|e| encode(&e))?;
        let id_parts: Vec<&str> = std::iter::once(E::TYPE)
            .chain(parts.iter().copied())
            .collect();
        let metadata = EventMetadata {
            actor: Actor::system(COMPONENT),
            causation_id: *workflow.as_uuid(),
            correlation_id: correlation,
        };
        let event = NewEvent::new(
            step_event_id(workflow, &id_parts),
            E::TYPE,
            E::SCHEMA_VERSION,
            payload,
            metadata,
        )
        .map_err(|e| encode(&e))?;
        match self
            .store
            .append(tenant, &device.stream(), ExpectedVersion::Any, vec![event])
            .await
        {
            Ok(_) | Err(netledger_store::StoreError::DuplicateEvent { .. }) => Ok(()),
            Err(e) => Err(StepError::retryable(format!("append {}: {e}", E::TYPE))),
        }
    }

    /// Device snapshot -> archive record (+ encrypted backup blob) -> `ConfigSnapshotRecorded`
    /// (caused by `workflow`, carrying its `correlation` id: see [`Ctx::correlation_id`]).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn snapshot(
        &self,
        tenant: TenantId,
        target: &Target,
        workflow: WorkflowId,
        correlation: Uuid,
        id: &ChangeId,
        reason: SnapshotReason,
    ) -> Result<SnapshotRecorded, StepError> {
        let device = target.device_id;
        // a fresh password per snapshot: a re-run overwrites the backup under its own
        let password = new_backup_password();
        let sealed_password = SealedSecret::seal(&self.keys, tenant, device, password.expose())?;
        let taken = self
            .with_files(tenant, target, async |f| {
                crate::push::snapshot_via(f, id, Some(&password)).await
            })
            .await?;
        let meta = SnapshotMeta {
            actor: Actor::system(COMPONENT),
            reason,
            causation_id: *workflow.as_uuid(),
            correlation_id: correlation,
            at: self.clock.now(),
            routeros_version: taken.snapshot.device_version.clone(),
            workflow_id: Some(workflow),
        };
        let sealed = match &taken.backup {
            Some(bytes) => Some(
                super::rekey::seal_blob(&self.keys, tenant, device, bytes)
                    .map_err(StepError::fatal)?,
            ),
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
        // Recorded once per (workflow, change, reason).
        self.append_once(
            tenant,
            device,
            workflow,
            correlation,
            &[id.as_str(), &format!("{reason:?}")],
            &event,
        )
        .await?;
        netledger_engine::crash_point("recorded");
        Ok(SnapshotRecorded {
            snapshot: taken.snapshot,
            commit: recorded.commit,
            sha256: recorded.sha256,
            changed: recorded.changed,
            backup_blob: blob,
            backup_password: Some(sealed_password),
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
pub(super) async fn device_step<T, F, Fut>(
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

pub(super) async fn resolve_step(
    ctx: &mut Ctx,
    d: &NetopsDeps,
    device: DeviceId,
) -> Result<Target, StepError> {
    let tenant = ctx.tenant();
    ctx.step("resolve", || d.resolve(tenant, device)).await
}
