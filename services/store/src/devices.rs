//! Device registration commands: register, update, set tags, change credentials, remove,
//! and credential key rotation; the adapter around the device aggregate's pure
//! [`DeviceState::decide`] (the rules live in `netledger_domain::device`). Each command folds
//! the device's stream (`device-<id>`) inside a transaction scoped to its tenant, decides, and
//! appends with the exact expected version; the encrypted credentials row is written in the same transaction
//! as the event that announces it ([`crate::append::append_in_transaction`]). A concurrent
//! append to the same stream makes the command re-read and re-decide (a few times), then fail
//! with [`DeviceCommandError::Conflict`].
//!
//! [`metrics`] holds the read side of the poller's telemetry for the API; [`settings`] the
//! tenant's device settings (allowed device networks).

pub mod metrics;
pub mod settings;

use std::collections::BTreeSet;

pub use netledger_domain::device::UpdateDevice;
use netledger_domain::device::{
    self as domain, DeviceCommand, DeviceError, DeviceName, DeviceState, Endpoint, Tag,
};
use netledger_domain::{
    DeviceId, EventEnum, EventId, EventMetadata, ExpectedVersion, StoredEvent, TenantId,
};
use sqlx::{PgConnection, PgPool, Row};

use crate::append::{AppendOutcome, AppendRequest, append_in_transaction};
use crate::credentials::{self, CredentialError, CredentialKeys, DevicePassword, DeviceSshKey};
use crate::db::begin_tenant;
use crate::error::StoreError;

/// How often a command re-reads and re-decides after a concurrent append.
const CONFLICT_RETRIES: usize = 3;

/// Why a device command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceCommandError {
    /// The device id is already registered (and not removed).
    #[error("device {0} is already registered; update it instead, or remove it first")]
    AlreadyRegistered(DeviceId),
    /// The device is not registered, or was removed.
    #[error("device {0} is not registered (or was removed)")]
    NotFound(DeviceId),
    /// Other appends kept changing the stream between read and write.
    #[error(
        "device {device} changed concurrently: its stream is at version {actual}, the command expected {expected:?}; retry"
    )]
    Conflict {
        /// The device.
        device: DeviceId,
        /// What the last attempt expected.
        expected: ExpectedVersion,
        /// Where the stream was.
        actual: u64,
    },
    /// The caller decided on a version of the device that is no longer current (its
    /// `If-Match`): nothing was written.
    #[error(
        "device {device} is at version {current}, not the version {expected} this change was \
         based on: re-read the device and decide again"
    )]
    Stale {
        /// The device.
        device: DeviceId,
        /// The version the caller saw.
        expected: u64,
        /// The current version.
        current: u64,
    },
    /// A value is invalid.
    #[error(transparent)]
    Invalid(#[from] DeviceError),
    /// The login name is unusable.
    #[error("username `{0}` is invalid: use 1-100 characters without control characters")]
    BadUsername(String),
    /// Encrypting, decrypting or storing the credentials failed.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The device's stream could not be folded.
    #[error("the stream of device {device} is unreadable: {detail}")]
    Corrupt {
        /// The device.
        device: DeviceId,
        /// What is wrong.
        detail: String,
    },
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Registration of a new device: the domain's command plus the password, which this
/// adapter seals before deciding (the event names only the key that sealed it).
#[derive(Debug, Clone)]
pub struct RegisterDevice {
    /// Its id (chosen by the caller, e.g. the API).
    pub device_id: DeviceId,
    /// Display name.
    pub name: DeviceName,
    /// Where to reach it.
    pub endpoint: Endpoint,
    /// API login name.
    pub username: String,
    /// API password (encrypted before it is stored).
    pub password: DevicePassword,
    /// Tags.
    pub tags: BTreeSet<Tag>,
    /// Poll interval in seconds (5-86400).
    pub poll_interval_secs: u32,
    /// The SSH key to log in with over SSH (encrypted before it is stored).
    pub ssh_key: Option<NewSshKey>,
}

/// An SSH private key given with credentials, and its public half as the caller derived it
/// by parsing the key (the store seals the text; the event carries only the public half).
#[derive(Debug, Clone)]
pub struct NewSshKey {
    /// The private key's text.
    pub private: DeviceSshKey,
    /// Its public half.
    pub public: domain::SshClientKey,
}

/// What a key rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Devices whose credentials were re-encrypted under the current key.
    pub rotated: Vec<DeviceId>,
    /// Devices that could not be rotated, with the reason.
    pub failed: Vec<(DeviceId, String)>,
}

/// What a command does to the credentials row besides appending its events.
#[derive(Clone)]
enum CredentialsWrite {
    Keep,
    Store {
        username: String,
        sealed: credentials::SealedCredentials,
        ssh_key: Option<credentials::SealedCredentials>,
    },
    Delete,
    /// Re-encrypt the row under the current key (rotation).
    Reencrypt,
}

/// A refusal of the domain as this crate's error: the refusals about the stream keep their
/// own variants (the API maps them to 409 and 404), the rest are invalid values.
fn refused(device: DeviceId, e: DeviceError) -> DeviceCommandError {
    match e {
        DeviceError::AlreadyRegistered(id) => DeviceCommandError::AlreadyRegistered(id),
        DeviceError::NotRegistered => DeviceCommandError::NotFound(device),
        DeviceError::BadUsername(name) => DeviceCommandError::BadUsername(name),
        other => DeviceCommandError::Invalid(other),
    }
}

/// Folds the events of `device`'s stream read over `conn` (a transaction scoped to `tenant`,
/// or the system role).
pub async fn fold_in(
    conn: &mut PgConnection,
    tenant: TenantId,
    device: DeviceId,
) -> Result<DeviceState, DeviceCommandError> {
    let rows = sqlx::query(
        "SELECT version, event_type, schema_version, payload::text AS payload FROM events \
         WHERE tenant_id = $1 AND stream = $2 ORDER BY version",
    )
    .bind(tenant.as_uuid())
    .bind(device.stream().as_str())
    .fetch_all(conn)
    .await
    .map_err(StoreError::db("read device stream"))?;
    let mut state = DeviceState::default();
    for row in rows {
        let corrupt = |detail: String| DeviceCommandError::Corrupt { device, detail };
        let version: i64 = row.try_get(0).map_err(|e| corrupt(e.to_string()))?;
        let event_type: String = row.try_get(1).map_err(|e| corrupt(e.to_string()))?;
        let schema_version: i32 = row.try_get(2).map_err(|e| corrupt(e.to_string()))?;
        let payload: String = row.try_get(3).map_err(|e| corrupt(e.to_string()))?;
        let payload: serde_json::Value =
            serde_json::from_str(&payload).map_err(|e| corrupt(e.to_string()))?;
        let stored = StoredEvent {
            position: version,
            event_type: &event_type,
            schema_version: u32::try_from(schema_version).unwrap_or(0),
            payload: &payload,
        };
        state
            .evolve_stored(stored)
            .map_err(|e| corrupt(format!("{event_type} at version {version}: {e}")))?;
        if i64::try_from(state.version).ok() != Some(version) {
            return Err(corrupt(format!(
                "version {version} follows {}",
                state.version.saturating_sub(1)
            )));
        }
    }
    Ok(state)
}

/// Device commands over the app pool (role `netledger_app`).
#[derive(Debug, Clone)]
pub struct DeviceCommands {
    app: PgPool,
    keys: CredentialKeys,
}

impl DeviceCommands {
    /// Commands on `app_pool` encrypting credentials with `keys`.
    pub fn new(app_pool: PgPool, keys: CredentialKeys) -> Self {
        Self {
            app: app_pool,
            keys,
        }
    }

    /// The credential keys (they also seal change scripts with secrets:
    /// [`crate::sealed`]).
    pub fn keys(&self) -> &CredentialKeys {
        &self.keys
    }

    /// The device's state folded from its stream.
    pub async fn load(
        &self,
        tenant: TenantId,
        device: DeviceId,
    ) -> Result<DeviceState, DeviceCommandError> {
        let mut tx = begin_tenant(&self.app, tenant).await?;
        let state = fold_in(&mut tx, tenant, device).await?;
        tx.commit().await.map_err(StoreError::db("end read"))?;
        Ok(state)
    }

    /// Registers a device: `DeviceRegistered` and its encrypted credentials in one
    /// transaction. A removed device may be registered again under the same id.
    pub async fn register(
        &self,
        tenant: TenantId,
        cmd: RegisterDevice,
        meta: EventMetadata,
    ) -> Result<AppendOutcome, DeviceCommandError> {
        let device = cmd.device_id;
        let mut command = domain::RegisterDevice {
            device_id: device,
            name: cmd.name,
            endpoint: cmd.endpoint,
            username: cmd.username,
            credentials_key_id: String::new(),
            tags: cmd.tags,
            poll_interval_secs: cmd.poll_interval_secs,
            ssh_client_key: cmd.ssh_key.as_ref().map(|k| k.public.clone()),
        };
        DeviceCommand::Register(command.clone())
            .validate()
            .map_err(|e| refused(device, e))?;
        let sealed = self.keys.seal(tenant, device, cmd.password.expose())?;
        let ssh_key = cmd
            .ssh_key
            .as_ref()
            .map(|k| self.keys.seal_ssh_key(tenant, device, &k.private))
            .transpose()?;
        command.credentials_key_id = sealed.key_id.clone();
        let write = CredentialsWrite::Store {
            username: command.username.clone(),
            sealed,
            ssh_key,
        };
        let outcome = self
            .run(
                tenant,
                device,
                None,
                &meta,
                &DeviceCommand::Register(command),
                write,
            )
            .await?;
        outcome.ok_or(DeviceCommandError::NotFound(device))
    }

    /// Changes name, endpoint or poll interval. Returns `None` when nothing differs from the
    /// current registration (no event is appended). A changed endpoint also deletes the
    /// stored credentials (`DeviceCredentialsCleared`, same transaction).
    pub async fn update(
        &self,
        tenant: TenantId,
        device: DeviceId,
        changes: UpdateDevice,
        if_version: Option<u64>,
        meta: EventMetadata,
    ) -> Result<Option<AppendOutcome>, DeviceCommandError> {
        let command = DeviceCommand::Update(changes);
        command.validate().map_err(|e| refused(device, e))?;
        self.run(
            tenant,
            device,
            if_version,
            &meta,
            &command,
            CredentialsWrite::Keep,
        )
        .await
    }

    /// Replaces the tag set. `None` when it is already this set.
    pub async fn set_tags(
        &self,
        tenant: TenantId,
        device: DeviceId,
        tags: BTreeSet<Tag>,
        if_version: Option<u64>,
        meta: EventMetadata,
    ) -> Result<Option<AppendOutcome>, DeviceCommandError> {
        let command = DeviceCommand::SetTags { tags };
        self.run(
            tenant,
            device,
            if_version,
            &meta,
            &command,
            CredentialsWrite::Keep,
        )
        .await
    }

    /// Stores new credentials (encrypted under the current key): a password and optionally
    /// an SSH key, replacing both, and appends `DeviceCredentialsChanged`, in one
    /// transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn change_credentials(
        &self,
        tenant: TenantId,
        device: DeviceId,
        username: &str,
        password: &DevicePassword,
        ssh_key: Option<&NewSshKey>,
        if_version: Option<u64>,
        meta: EventMetadata,
    ) -> Result<AppendOutcome, DeviceCommandError> {
        let public = ssh_key.map(|k| k.public.clone());
        let mut command = DeviceCommand::ChangeCredentials {
            username: username.to_owned(),
            key_id: String::new(),
            ssh_client_key: public.clone(),
        };
        command.validate().map_err(|e| refused(device, e))?;
        let sealed = self.keys.seal(tenant, device, password.expose())?;
        let sealed_key = ssh_key
            .map(|k| self.keys.seal_ssh_key(tenant, device, &k.private))
            .transpose()?;
        command = DeviceCommand::ChangeCredentials {
            username: username.to_owned(),
            key_id: sealed.key_id.clone(),
            ssh_client_key: public,
        };
        let write = CredentialsWrite::Store {
            username: username.to_owned(),
            sealed,
            ssh_key: sealed_key,
        };
        let outcome = self
            .run(tenant, device, if_version, &meta, &command, write)
            .await?;
        outcome.ok_or(DeviceCommandError::NotFound(device))
    }

    /// Removes a device from management and deletes its credentials, in one transaction.
    pub async fn remove(
        &self,
        tenant: TenantId,
        device: DeviceId,
        reason: &str,
        if_version: Option<u64>,
        meta: EventMetadata,
    ) -> Result<AppendOutcome, DeviceCommandError> {
        let command = DeviceCommand::Remove {
            reason: reason.to_owned(),
        };
        let outcome = self
            .run(
                tenant,
                device,
                if_version,
                &meta,
                &command,
                CredentialsWrite::Delete,
            )
            .await?;
        outcome.ok_or(DeviceCommandError::NotFound(device))
    }

    /// Re-encrypts, under the current key, the credentials of every device (of every tenant)
    /// stored under another key id, appending `DeviceCredentialsChanged` with the new key id
    /// to each device's stream in the same transaction. `system_pool` lists the rows; the
    /// writes go through the app pool per tenant. Devices that fail (e.g. their old key is not
    /// configured) are reported, not fatal.
    pub async fn rotate_credentials(
        &self,
        system_pool: &PgPool,
        meta: EventMetadata,
    ) -> Result<RotationReport, DeviceCommandError> {
        let current = self.keys.current_key_id().to_owned();
        let rows = credentials::under_other_keys(system_pool, &current).await?;
        let mut report = RotationReport::default();
        let command = DeviceCommand::RotateCredentials { key_id: current };
        for (tenant, device, _old) in rows {
            let result = self
                .run(
                    tenant,
                    device,
                    None,
                    &meta,
                    &command,
                    CredentialsWrite::Reencrypt,
                )
                .await;
            match result {
                Ok(Some(_)) => report.rotated.push(device),
                Ok(None) => {}
                Err(e) => report.failed.push((device, e.to_string())),
            }
        }
        Ok(report)
    }

    /// Folds, decides ([`DeviceState::decide`]), writes credentials (`credentials`, when the
    /// decision appends anything) and appends with the exact expected version, in one
    /// transaction; re-reads and re-decides on a concurrent append. With `if_version` the
    /// caller's decision was based on that version: a different current version (checked
    /// inside the transaction, and again by the append) is [`DeviceCommandError::Stale`],
    /// never a silent overwrite. `None`: nothing to do.
    async fn run(
        &self,
        tenant: TenantId,
        device: DeviceId,
        if_version: Option<u64>,
        meta: &EventMetadata,
        command: &DeviceCommand,
        credentials: CredentialsWrite,
    ) -> Result<Option<AppendOutcome>, DeviceCommandError> {
        let mut last_conflict = None;
        for _ in 0..CONFLICT_RETRIES {
            let mut tx = begin_tenant(&self.app, tenant).await?;
            let state = fold_in(&mut tx, tenant, device).await?;
            if let Some(expected) = if_version
                && expected != state.version
            {
                tx.rollback().await.map_err(StoreError::db("end command"))?;
                return Err(DeviceCommandError::Stale {
                    device,
                    expected,
                    current: state.version,
                });
            }
            let decided = state.decide(command).map_err(|e| refused(device, e))?;
            if decided.is_empty() {
                tx.rollback().await.map_err(StoreError::db("end command"))?;
                return Ok(None);
            }
            // A changed endpoint clears the credentials (the domain decided it): the row
            // goes in the same transaction as the event.
            let cleared = decided
                .iter()
                .any(|e| matches!(e, domain::DeviceEvent::CredentialsCleared(_)));
            let credentials = match credentials.clone() {
                CredentialsWrite::Keep if cleared => CredentialsWrite::Delete,
                other => other,
            };
            match credentials {
                CredentialsWrite::Keep => {}
                CredentialsWrite::Store {
                    username,
                    sealed,
                    ssh_key,
                } => {
                    credentials::store(
                        &mut tx,
                        tenant,
                        device,
                        &username,
                        &sealed,
                        ssh_key.as_ref(),
                    )
                    .await?;
                }
                CredentialsWrite::Delete => credentials::delete(&mut tx, tenant, device).await?,
                CredentialsWrite::Reencrypt => {
                    let Some(row) = credentials::load_in(&mut tx, tenant, device).await? else {
                        return Err(CredentialError::NotFound { device }.into());
                    };
                    if row.sealed.key_id == self.keys.current_key_id() {
                        // Another rotation got here first.
                        tx.rollback().await.map_err(StoreError::db("end command"))?;
                        return Ok(None);
                    }
                    let password = self.keys.open(tenant, device, &row.sealed)?;
                    let sealed = self.keys.seal(tenant, device, password.expose())?;
                    let ssh_key = match &row.ssh_key {
                        Some(k) => {
                            let key = self.keys.open_ssh_key(tenant, device, k)?;
                            Some(self.keys.seal_ssh_key(tenant, device, &key)?)
                        }
                        None => None,
                    };
                    credentials::store(
                        &mut tx,
                        tenant,
                        device,
                        &row.username,
                        &sealed,
                        ssh_key.as_ref(),
                    )
                    .await?;
                }
            }
            let expected = match state.version {
                0 => ExpectedVersion::NoStream,
                v => ExpectedVersion::Exact(v),
            };
            let mut events = Vec::with_capacity(decided.len());
            for event in &decided {
                events.push(
                    event
                        .to_new_event(EventId::new_v7(), meta.clone())
                        .map_err(|e| StoreError::Invalid(e.to_string()))?,
                );
            }
            let request = AppendRequest {
                tenant,
                stream: device.stream(),
                expected,
                events,
            };
            match append_in_transaction(&mut tx, &request).await {
                Ok(outcome) => {
                    tx.commit()
                        .await
                        .map_err(StoreError::db("commit command"))?;
                    return Ok(Some(outcome));
                }
                Err(StoreError::Conflict { actual, .. }) => {
                    tx.rollback().await.map_err(StoreError::db("end command"))?;
                    if let Some(expected) = if_version {
                        return Err(DeviceCommandError::Stale {
                            device,
                            expected,
                            current: actual,
                        });
                    }
                    last_conflict = Some((expected, actual));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (expected, actual) = last_conflict.unwrap_or((ExpectedVersion::Any, 0));
        Err(DeviceCommandError::Conflict {
            device,
            expected,
            actual,
        })
    }
}
