//! Encrypted backups and key rotation (issue #16).
//!
//! Owns the archived backup file format (`netledger-backup-v1`: the backup bytes sealed
//! with the credential keys, bound to tenant and device), where a journaled backup's
//! *current* password and file are (the journal's values, or the `backup_secrets` row that a
//! rotation wrote: see `netledger_store::backups`), and `netledger keys rotate-credentials`
//! ([`rotate_all`]): device credentials, sealed change scripts and backups re-encrypted
//! under the current key, after which older keys can be removed from the configuration.
//!
//! Rotation of a backup: read its current state (row, else journal), open what is under
//! another key, seal it under the current one, write the new blob (atomic, content
//! addressed), then the row (one transaction, the row locked), then delete the superseded
//! blob file. A crash in between leaves one file no row or journal names (the new one, if
//! before the commit; the superseded one, still under its old key, if after): nothing reads
//! it, and a later rotation does not revisit it. Journals are never changed.

use std::collections::HashSet;

use base64::Engine as _;
use netledger_archive::Archive;
use netledger_domain::{DeviceId, EventMetadata, TenantId};
use netledger_store::backups::{self, BackupSecret};
use netledger_store::credentials::{CredentialKeys, SealedCredentials};
use netledger_store::devices::{DeviceCommandError, DeviceCommands, RotationReport};
use netledger_store::sealed::{self, ScriptRotation, SealedScriptError};
use netledger_store::{StoreError, begin_tenant};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::adapter::SealedSecret;

/// Format tag of an archived backup file.
const BLOB_FORMAT: &str = "netledger-backup-v1";

/// An archived backup file: the backup bytes (base64) sealed like a device password.
#[derive(Debug, Serialize, Deserialize)]
struct BlobFile {
    format: String,
    key_id: String,
    nonce: String,
    ciphertext: String,
}

/// Seals backup `bytes` of `device` under the current key, as the file the archive stores.
pub(super) fn seal_blob(
    keys: &CredentialKeys,
    tenant: TenantId,
    device: DeviceId,
    bytes: &[u8],
) -> Result<Vec<u8>, String> {
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    let s = keys
        .seal(tenant, device, &text)
        .map_err(|e| format!("encrypt the backup: {e}"))?;
    let s = SealedSecret::from(s);
    serde_json::to_vec(&BlobFile {
        format: BLOB_FORMAT.to_owned(),
        key_id: s.key_id,
        nonce: s.nonce,
        ciphertext: s.ciphertext,
    })
    .map_err(|e| format!("encode the backup file: {e}"))
}

fn parse_blob(file: &[u8]) -> Result<BlobFile, String> {
    let b: BlobFile = serde_json::from_slice(file)
        .map_err(|e| format!("the archived backup does not decode: {e}"))?;
    if b.format != BLOB_FORMAT {
        return Err(format!(
            "the archived backup has format `{}`, expected {BLOB_FORMAT}",
            b.format
        ));
    }
    Ok(b)
}

/// Opens an archived backup file of `device` (memory only).
pub(super) fn open_blob(
    keys: &CredentialKeys,
    tenant: TenantId,
    device: DeviceId,
    file: &[u8],
) -> Result<Vec<u8>, String> {
    let b = parse_blob(file)?;
    let text = SealedSecret {
        key_id: b.key_id,
        nonce: b.nonce,
        ciphertext: b.ciphertext,
    }
    .open_secret(keys, tenant, device)?;
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|e| format!("the archived backup does not decode: {e}"))
}

/// What a journal names a backup by: its original blob's SHA-256, else (a backup that
/// stayed on the device) the SHA-256 of the journaled sealed password's `nonce:ciphertext`
/// text. `None`: the journal names no backup secret at all.
pub(super) fn reference(blob: Option<&str>, password: Option<&SealedSecret>) -> Option<String> {
    match (blob, password) {
        (Some(sha), _) => Some(sha.to_owned()),
        (None, Some(p)) => Some(hex::encode(Sha256::digest(
            format!("{}:{}", p.nonce, p.ciphertext).as_bytes(),
        ))),
        (None, None) => None,
    }
}

/// The current file and sealed password of a journaled backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CurrentBackup {
    /// The blob to read (SHA-256), if the backup was archived.
    pub blob: Option<String>,
    /// The sealed password, if the backup has one.
    pub password: Option<SealedSecret>,
}

/// Where the journaled backup (`blob`, `password`, as the journal has them) is now: the
/// `backup_secrets` row a rotation wrote, else the journal's own values.
pub(super) async fn current(
    app: &PgPool,
    tenant: TenantId,
    blob: Option<&str>,
    password: Option<&SealedSecret>,
) -> Result<CurrentBackup, StoreError> {
    let journal = CurrentBackup {
        blob: blob.map(str::to_owned),
        password: password.cloned(),
    };
    let Some(reference) = reference(blob, password) else {
        return Ok(journal);
    };
    let mut tx = begin_tenant(app, tenant).await?;
    let row = backups::load(&mut tx, tenant, &reference).await?;
    tx.commit().await.map_err(|source| StoreError::Database {
        operation: "end a backup lookup",
        source,
    })?;
    Ok(match row {
        None => journal,
        Some(r) => CurrentBackup {
            blob: r.blob.map(|(sha, _)| sha).or(journal.blob),
            password: r.password.map(SealedSecret::from).or(journal.password),
        },
    })
}

/// What [`rotate_backups`] did.
#[derive(Debug, Default)]
pub struct BackupRotation {
    /// Journaled backups looked at (each once).
    pub seen: usize,
    /// Backups whose password or file was re-encrypted under the current key.
    pub rotated: usize,
    /// Superseded backup files deleted.
    pub files_removed: usize,
    /// Backups that could not be rotated: tenant, the workflow whose journal names it, why.
    pub failed: Vec<(TenantId, Uuid, String)>,
}

/// Re-encrypts, under the current key, every journaled backup (of every tenant) whose
/// password or archived file is under another key. `system` reads the journals, `app`
/// writes the rows per tenant.
pub async fn rotate_backups(
    system: &PgPool,
    app: &PgPool,
    archive: &Archive,
    keys: &CredentialKeys,
) -> Result<BackupRotation, StoreError> {
    let mut report = BackupRotation::default();
    let mut seen = HashSet::new();
    for j in backups::journaled(system).await? {
        let password = match j
            .password
            .clone()
            .map(serde_json::from_value::<SealedSecret>)
        {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => {
                let why = format!("the journaled backup password does not decode: {e}");
                report.failed.push((j.tenant, j.workflow, why));
                continue;
            }
        };
        let Some(reference) = reference(j.blob.as_deref(), password.as_ref()) else {
            continue;
        };
        if !seen.insert((j.tenant, reference.clone())) {
            continue;
        }
        report.seen += 1;
        match rotate_one(app, archive, keys, &j, &reference, password).await {
            Ok(Rotated::Already) => {}
            Ok(Rotated::Done { removed }) => {
                report.rotated += 1;
                report.files_removed += usize::from(removed);
            }
            Err(why) => report.failed.push((j.tenant, j.workflow, why)),
        }
    }
    Ok(report)
}

enum Rotated {
    Already,
    Done { removed: bool },
}

/// A backup file as rotation finds it: its name, the key it is sealed with and its bytes
/// once read (each file is read at most once per rotation).
struct BlobState {
    sha: String,
    key_id: String,
    file: Option<Vec<u8>>,
}

/// Runs archive I/O on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, netledger_archive::ArchiveError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("archive task: {e}"))?
        .map_err(|e| e.to_string())
}

async fn rotate_one(
    app: &PgPool,
    archive: &Archive,
    keys: &CredentialKeys,
    j: &backups::JournaledBackup,
    reference: &str,
    journal_password: Option<SealedSecret>,
) -> Result<Rotated, String> {
    let tenant = j.tenant;
    let current_key = keys.current_key_id();
    let mut tx = begin_tenant(app, tenant).await.map_err(|e| e.to_string())?;
    // the row, locked: a concurrent rotation of the same backup waits here, then sees it done
    sqlx::query("SELECT 1 FROM backup_secrets WHERE tenant_id = $1 AND ref = $2 FOR UPDATE")
        .bind(tenant.as_uuid())
        .bind(reference)
        .execute(&mut *tx)
        .await
        .map_err(|e| format!("lock the backup's row: {e}"))?;
    let row = backups::load(&mut tx, tenant, reference)
        .await
        .map_err(|e| e.to_string())?;
    // the journal's file: its key id is inside it, so it is read here (and kept)
    let journal_blob = async || match &j.blob {
        Some(sha) => {
            let (a, name) = (archive.clone(), sha.clone());
            let file = blocking(move || a.load_blob(tenant, &name)).await?;
            let key_id = parse_blob(&file)?.key_id;
            Ok::<_, String>(Some(BlobState {
                sha: sha.clone(),
                key_id,
                file: Some(file),
            }))
        }
        None => Ok(None),
    };
    let (device, password, blob) = match row {
        Some(r) => {
            let blob = match r.blob {
                Some((sha, key_id)) => Some(BlobState {
                    sha,
                    key_id,
                    file: None,
                }),
                None => journal_blob().await?,
            };
            let password = r.password.map(SealedSecret::from).or(journal_password);
            (r.device, password, blob)
        }
        None => {
            let blob = journal_blob().await?;
            let file = blob.as_ref().and_then(|b| b.file.as_deref());
            let device = owner(keys, j, journal_password.as_ref(), file)?;
            (device, journal_password, blob)
        }
    };
    let password_stale = password.as_ref().is_some_and(|p| p.key_id != current_key);
    let blob_stale = blob.as_ref().is_some_and(|b| b.key_id != current_key);
    if !password_stale && !blob_stale {
        return Ok(Rotated::Already);
    }
    let password = match password {
        Some(p) if password_stale => {
            let clear = p.open_secret(keys, tenant, device)?;
            let s = keys
                .seal(tenant, device, &clear)
                .map_err(|e| format!("re-seal the backup password: {e}"))?;
            Some(s)
        }
        Some(p) => Some(p.to_sealed()?),
        None => None,
    };
    let mut superseded = None;
    let blob = match blob {
        Some(b) if blob_stale => {
            let file = match b.file {
                Some(f) => f,
                None => {
                    let (a, name) = (archive.clone(), b.sha.clone());
                    blocking(move || a.load_blob(tenant, &name)).await?
                }
            };
            let bytes = open_blob(keys, tenant, device, &file)?;
            let sealed = seal_blob(keys, tenant, device, &bytes)?;
            let a = archive.clone();
            let new = blocking(move || a.store_blob(tenant, device, &sealed)).await?;
            superseded = Some(b.sha);
            Some((new, current_key.to_owned()))
        }
        other => other.map(|b| (b.sha, b.key_id)),
    };
    let secret = BackupSecret {
        reference: reference.to_owned(),
        device,
        password,
        blob,
    };
    backups::store(&mut tx, tenant, &secret)
        .await
        .map_err(|e| e.to_string())?;
    tx.commit()
        .await
        .map_err(|e| format!("commit the backup's row: {e}"))?;
    let removed = match superseded {
        Some(old) => {
            let a = archive.clone();
            blocking(move || a.remove_blob(tenant, &old))
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(%tenant, error = %e, "superseded backup file not removed");
                    false
                })
        }
        None => false,
    };
    Ok(Rotated::Done { removed })
}

/// The device a journaled backup belongs to: the workflow's device; of several, the one
/// whose associated data opens the password (or, without one, the backup `file`).
fn owner(
    keys: &CredentialKeys,
    j: &backups::JournaledBackup,
    password: Option<&SealedSecret>,
    file: Option<&[u8]>,
) -> Result<DeviceId, String> {
    if let [one] = j.devices.as_slice() {
        return Ok(*one);
    }
    j.devices
        .iter()
        .copied()
        .find(|d| match (password, file) {
            (Some(p), _) => p.open_secret(keys, j.tenant, *d).is_ok(),
            (None, Some(f)) => open_blob(keys, j.tenant, *d, f).is_ok(),
            (None, None) => false,
        })
        .ok_or_else(|| {
            format!(
                "none of the workflow's devices ({}) opens the backup with the configured keys",
                j.devices.len()
            )
        })
}

/// What [`rotate_all`] did.
#[derive(Debug)]
pub struct KeyRotation {
    /// The key everything is now under.
    pub current_key: String,
    /// Device credentials.
    pub credentials: RotationReport,
    /// Sealed change scripts.
    pub scripts: ScriptRotation,
    /// Backups.
    pub backups: BackupRotation,
}

impl KeyRotation {
    /// Whether anything failed (then the old keys are still needed).
    pub fn failed(&self) -> usize {
        self.credentials.failed.len() + self.scripts.failed.len() + self.backups.failed.len()
    }
}

impl std::fmt::Display for KeyRotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "current credential key: {}", self.current_key)?;
        writeln!(
            f,
            "device credentials: {} re-encrypted, {} failed",
            self.credentials.rotated.len(),
            self.credentials.failed.len()
        )?;
        for (device, why) in &self.credentials.failed {
            writeln!(f, "  device {device}: {why}")?;
        }
        writeln!(
            f,
            "sealed change scripts: {} re-encrypted, {} failed",
            self.scripts.rotated,
            self.scripts.failed.len()
        )?;
        for (tenant, id, why) in &self.scripts.failed {
            writeln!(f, "  tenant {tenant} script {id}: {why}")?;
        }
        writeln!(
            f,
            "backups: {} journaled, {} re-encrypted ({} superseded files deleted), {} failed",
            self.backups.seen,
            self.backups.rotated,
            self.backups.files_removed,
            self.backups.failed.len()
        )?;
        for (tenant, workflow, why) in &self.backups.failed {
            writeln!(f, "  tenant {tenant} workflow {workflow}: {why}")?;
        }
        if self.failed() == 0 {
            write!(
                f,
                "OK: everything is under key `{}`; older keys can be removed from \
                 [secrets] credential_keys once every role runs with this one as current",
                self.current_key
            )
        } else {
            write!(
                f,
                "{} items are still under older keys: keep those keys, fix the causes above \
                 and run this again",
                self.failed()
            )
        }
    }
}

/// Why a rotation could not run.
#[derive(Debug, thiserror::Error)]
pub enum RekeyError {
    /// Another rotation holds the lock.
    #[error(
        "another key rotation is running (advisory lock held); wait for it to finish, then run this again if it reported failures"
    )]
    Busy,
    /// Listing or rotating device credentials failed.
    #[error("device credentials: {0}")]
    Credentials(#[from] DeviceCommandError),
    /// Listing sealed scripts failed.
    #[error("sealed scripts: {0}")]
    Scripts(#[from] SealedScriptError),
    /// The store failed.
    #[error("backups: {0}")]
    Store(#[from] StoreError),
}

/// The advisory lock one rotation holds (`hashtext('netledger.rotate-credentials')`).
const LOCK_SQL: &str = "hashtext('netledger.rotate-credentials')";

/// `netledger keys rotate-credentials`: re-encrypts every device credential, sealed change
/// script and backup under the current key (`keys.current_key_id()`), keeping the older
/// keys only to open what was under them. Online: roles keep running (each re-reads its
/// row per operation); items that fail are reported and stay under their old key. One
/// rotation runs at a time (a PostgreSQL advisory lock).
pub async fn rotate_all(
    app: &PgPool,
    system: &PgPool,
    archive: &Archive,
    keys: &CredentialKeys,
    meta: EventMetadata,
) -> Result<KeyRotation, RekeyError> {
    let mut lock = system
        .acquire()
        .await
        .map_err(|source| StoreError::Database {
            operation: "acquire the rotation lock",
            source,
        })?;
    let held: bool = sqlx::query_scalar(&format!("SELECT pg_try_advisory_lock({LOCK_SQL})"))
        .fetch_one(&mut *lock)
        .await
        .map_err(|source| StoreError::Database {
            operation: "acquire the rotation lock",
            source,
        })?;
    if !held {
        return Err(RekeyError::Busy);
    }
    let result = async {
        let commands = DeviceCommands::new(app.clone(), keys.clone());
        let credentials = commands.rotate_credentials(system, meta).await?;
        let scripts = sealed::rotate(system, app, keys).await?;
        let backups = rotate_backups(system, app, archive, keys).await?;
        Ok::<_, RekeyError>(KeyRotation {
            current_key: keys.current_key_id().to_owned(),
            credentials,
            scripts,
            backups,
        })
    }
    .await;
    let unlocked = sqlx::query(&format!("SELECT pg_advisory_unlock({LOCK_SQL})"))
        .execute(&mut *lock)
        .await;
    if unlocked.is_err() {
        // the lock is the session's: a connection that cannot unlock must not be reused
        lock.detach();
    }
    result
}

impl From<SealedCredentials> for SealedSecret {
    fn from(s: SealedCredentials) -> Self {
        SealedSecret {
            key_id: s.key_id,
            nonce: hex::encode(s.nonce),
            ciphertext: base64::engine::general_purpose::STANDARD.encode(&s.ciphertext),
        }
    }
}
