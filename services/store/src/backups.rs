//! Re-encrypted backup secrets (`backup_secrets`, issue #16): what key rotation writes for
//! the encrypted backups of snapshots, whose originals live in immutable workflow journals.
//!
//! A snapshot journals its backup password sealed under the credential key current at the
//! time, and names its backup file (a content-addressed blob, itself sealed) by SHA-256.
//! Rotation cannot change either; it stores the password re-sealed under the current key and
//! the name of the re-encrypted blob here, under the snapshot's *reference* (what the journal
//! names: the original blob's hash, else the hash of the sealed password's text). Readers
//! look up the reference first; no row means the journal's values are current. This module
//! is the table's SQL; sealing and the blob files belong to the workflows (`netops::rekey`).

use netledger_domain::{DeviceId, TenantId};
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::StoreError;
use crate::credentials::SealedCredentials;

/// A row: the current sealed password and blob of one journaled backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSecret {
    /// The journal's reference (64 lowercase hex).
    pub reference: String,
    /// The device the backup belongs to (the associated data of both seals).
    pub device: DeviceId,
    /// The backup password, sealed under the key it names (`None`: the backup has none).
    pub password: Option<SealedCredentials>,
    /// The re-encrypted backup file: its SHA-256 and the key id it is sealed with (`None`:
    /// the backup stayed on the device).
    pub blob: Option<(String, String)>,
}

/// A backup named by a workflow journal (a `WorkflowStepCompleted` output with
/// `backup_password` or `backup_blob`), as found by [`journaled`].
#[derive(Debug, Clone, PartialEq)]
pub struct JournaledBackup {
    /// Tenant.
    pub tenant: TenantId,
    /// The workflow whose journal names it.
    pub workflow: Uuid,
    /// Position of the journal event.
    pub position: i64,
    /// The devices the workflow owns (one for every kind that snapshots).
    pub devices: Vec<DeviceId>,
    /// `backup_blob` of the output.
    pub blob: Option<String>,
    /// `backup_password` of the output (the journal's sealed form, undecoded).
    pub password: Option<serde_json::Value>,
}

/// The row of `reference`, inside the caller's transaction scoped to `tenant` (role
/// `netledger_app`).
pub async fn load(
    conn: &mut PgConnection,
    tenant: TenantId,
    reference: &str,
) -> Result<Option<BackupSecret>, StoreError> {
    let row = sqlx::query(
        "SELECT device_id, password_key_id, password_nonce, password_ciphertext, blob_sha256, \
         blob_key_id FROM backup_secrets WHERE tenant_id = $1 AND ref = $2",
    )
    .bind(tenant.as_uuid())
    .bind(reference)
    .fetch_optional(conn)
    .await
    .map_err(StoreError::db("load a backup secret"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let get = StoreError::db("read a backup secret");
    let key_id: Option<String> = row.try_get("password_key_id").map_err(&get)?;
    let nonce: Option<Vec<u8>> = row.try_get("password_nonce").map_err(&get)?;
    let ciphertext: Option<Vec<u8>> = row.try_get("password_ciphertext").map_err(&get)?;
    let password = match (key_id, nonce, ciphertext) {
        (Some(key_id), Some(nonce), Some(ciphertext)) => {
            let nonce = <[u8; 12]>::try_from(nonce.as_slice()).map_err(|_| {
                StoreError::Invalid(format!("backup secret {reference}: nonce is not 12 bytes"))
            })?;
            Some(SealedCredentials {
                key_id,
                nonce,
                ciphertext,
            })
        }
        _ => None,
    };
    let sha: Option<String> = row.try_get("blob_sha256").map_err(&get)?;
    let blob_key: Option<String> = row.try_get("blob_key_id").map_err(&get)?;
    Ok(Some(BackupSecret {
        reference: reference.to_owned(),
        device: DeviceId::from_uuid(row.try_get("device_id").map_err(&get)?),
        password,
        blob: sha.zip(blob_key),
    }))
}

/// Writes `secret` (insert or replace), inside the caller's transaction scoped to `tenant`.
pub async fn store(
    conn: &mut PgConnection,
    tenant: TenantId,
    secret: &BackupSecret,
) -> Result<(), StoreError> {
    let (sha, blob_key) = secret.blob.clone().unzip();
    sqlx::query(
        "INSERT INTO backup_secrets (tenant_id, ref, device_id, password_key_id, \
         password_nonce, password_ciphertext, blob_sha256, blob_key_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (tenant_id, ref) DO UPDATE SET password_key_id = EXCLUDED.password_key_id, \
         password_nonce = EXCLUDED.password_nonce, \
         password_ciphertext = EXCLUDED.password_ciphertext, \
         blob_sha256 = EXCLUDED.blob_sha256, blob_key_id = EXCLUDED.blob_key_id, \
         rotated_at = now()",
    )
    .bind(tenant.as_uuid())
    .bind(&secret.reference)
    .bind(secret.device.as_uuid())
    .bind(secret.password.as_ref().map(|p| p.key_id.as_str()))
    .bind(secret.password.as_ref().map(|p| p.nonce.to_vec()))
    .bind(secret.password.as_ref().map(|p| p.ciphertext.clone()))
    .bind(sha)
    .bind(blob_key)
    .execute(conn)
    .await
    .map_err(StoreError::db("store a backup secret"))?;
    Ok(())
}

/// Every backup named by a workflow journal, of every tenant, in position order (role
/// `netledger_system`). One pass over the `workflow` category of the event store (its
/// index), keeping the step outputs that carry a backup.
pub async fn journaled(system_pool: &PgPool) -> Result<Vec<JournaledBackup>, StoreError> {
    let rows = sqlx::query(
        "SELECT e.tenant_id, e.position, t.workflow_id, t.devices, \
                e.payload -> 'output' ->> 'backup_blob' AS blob, \
                e.payload -> 'output' -> 'backup_password' AS password \
           FROM events e \
           JOIN workflow_tasks t ON t.workflow_id::text = substring(e.stream FROM 10) \
          WHERE e.category = 'workflow' AND e.event_type = 'WorkflowStepCompleted' \
            AND (json_typeof(e.payload -> 'output' -> 'backup_password') = 'object' \
                 OR json_typeof(e.payload -> 'output' -> 'backup_blob') = 'string') \
          ORDER BY e.position",
    )
    .fetch_all(system_pool)
    .await
    .map_err(StoreError::db("list journaled backups"))?;
    let get = StoreError::db("read a journaled backup");
    rows.iter()
        .map(|r| {
            let devices: Vec<Uuid> = r.try_get("devices").map_err(&get)?;
            Ok(JournaledBackup {
                tenant: TenantId::from_uuid(r.try_get("tenant_id").map_err(&get)?),
                workflow: r.try_get("workflow_id").map_err(&get)?,
                position: r.try_get("position").map_err(&get)?,
                devices: devices.into_iter().map(DeviceId::from_uuid).collect(),
                blob: r.try_get("blob").map_err(&get)?,
                password: r.try_get("password").map_err(&get)?,
            })
        })
        .collect()
}
