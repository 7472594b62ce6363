//! Change scripts sealed for the workflows that push them (DESIGN invariant 13, extended to
//! scripts by issue #15): a script with secret values (`password=...` of a `/ppp secret`,
//! an IPsec `secret`, a Wi-Fi passphrase) is journaled, projected, published and shown only
//! masked (`rosconfig::mask_script`); the real text is encrypted here, in
//! `sealed_scripts`, outside the event stream, under the device-credential keys
//! (AES-256-GCM, random nonce, associated data binding tenant, script id and key id), and
//! decrypted only in memory by the workflow step that validates or applies it.
//!
//! The id is chosen by the writer (a fresh UUID per script the API accepts) and carried in
//! the workflow input or the change request's events next to the masked text. A new script
//! is a new row; a row changes only when key rotation ([`rotate`]) re-encrypts it under the
//! current key (same id, same text).

use netledger_domain::TenantId;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::credentials::{CredentialKeys, SealedCredentials};

/// Associated-data tag of a sealed script.
const AAD_TAG: &[u8] = b"netledger-sealed-script/v1\0";

/// Why a script could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealedScriptError {
    /// Encryption failed (absurd size) or no current key.
    #[error("sealing script {id} failed")]
    Seal {
        /// The script id.
        id: Uuid,
    },
    /// No row (another tenant's id, or never written).
    #[error("no sealed script {id} in this tenant")]
    NotFound {
        /// The script id.
        id: Uuid,
    },
    /// The row is encrypted under a key id that is not configured.
    #[error(
        "sealed script {id} is encrypted with key `{key_id}`, which is not configured; add that key to [secrets] credential_keys"
    )]
    UnknownKey {
        /// The script id.
        id: Uuid,
        /// Its key id.
        key_id: String,
    },
    /// It does not decrypt (altered, or copied from another tenant or id).
    #[error("sealed script {id} does not decrypt with key `{key_id}`")]
    Decrypt {
        /// The script id.
        id: Uuid,
        /// Its key id.
        key_id: String,
    },
    /// The database refused or failed.
    #[error("database error during {operation}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The driver error.
        #[source]
        source: sqlx::Error,
    },
    /// The store failed (opening the tenant's transaction).
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

impl SealedScriptError {
    /// Whether trying again may help (a database error).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SealedScriptError::Database { .. } | SealedScriptError::Store(_)
        )
    }
}

/// Encrypts `script` and stores it as `id` of `tenant`, inside the caller's transaction
/// scoped to that tenant (role `netledger_app`).
pub async fn seal(
    conn: &mut PgConnection,
    keys: &CredentialKeys,
    tenant: TenantId,
    id: Uuid,
    script: &str,
) -> Result<(), SealedScriptError> {
    let sealed = keys
        .seal_bytes(AAD_TAG, tenant, id.as_bytes(), script.as_bytes())
        .ok_or(SealedScriptError::Seal { id })?;
    sqlx::query(
        "INSERT INTO sealed_scripts (tenant_id, id, key_id, nonce, ciphertext) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(tenant.as_uuid())
    .bind(id)
    .bind(&sealed.key_id)
    .bind(sealed.nonce.as_slice())
    .bind(&sealed.ciphertext)
    .execute(conn)
    .await
    .map_err(db("store a sealed script"))?;
    Ok(())
}

/// Loads and decrypts script `id` of `tenant` inside the caller's transaction scoped to it.
pub async fn open(
    conn: &mut PgConnection,
    keys: &CredentialKeys,
    tenant: TenantId,
    id: Uuid,
) -> Result<String, SealedScriptError> {
    let load = db("load a sealed script");
    let row = sqlx::query(
        "SELECT key_id, nonce, ciphertext FROM sealed_scripts WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(&load)?
    .ok_or(SealedScriptError::NotFound { id })?;
    let key_id: String = row.try_get("key_id").map_err(&load)?;
    let nonce: Vec<u8> = row.try_get("nonce").map_err(&load)?;
    let decrypt = SealedScriptError::Decrypt {
        id,
        key_id: key_id.clone(),
    };
    let Ok(nonce) = <[u8; 12]>::try_from(nonce.as_slice()) else {
        return Err(decrypt);
    };
    let sealed = SealedCredentials {
        key_id: key_id.clone(),
        nonce,
        ciphertext: row.try_get("ciphertext").map_err(&load)?,
    };
    match keys.open_bytes(AAD_TAG, tenant, id.as_bytes(), &sealed) {
        Ok(clear) => String::from_utf8(clear).map_err(|_| decrypt),
        Err(None) => Err(SealedScriptError::UnknownKey { id, key_id }),
        Err(Some(())) => Err(decrypt),
    }
}

fn db(operation: &'static str) -> impl Fn(sqlx::Error) -> SealedScriptError {
    move |source| SealedScriptError::Database { operation, source }
}

/// What [`rotate`] did.
#[derive(Debug, Default)]
pub struct ScriptRotation {
    /// Scripts re-encrypted under the current key.
    pub rotated: usize,
    /// Scripts that could not be (tenant, id, why); they stay as they were.
    pub failed: Vec<(TenantId, Uuid, SealedScriptError)>,
}

/// Re-encrypts, under the current key, every sealed script (of every tenant) stored under
/// another key id: `system_pool` lists them, each is opened and re-sealed in its own
/// transaction of the app role scoped to its tenant (the row is locked, so a concurrent
/// rotation re-seals it once).
pub async fn rotate(
    system_pool: &PgPool,
    app_pool: &PgPool,
    keys: &CredentialKeys,
) -> Result<ScriptRotation, SealedScriptError> {
    let rows = sqlx::query(
        "SELECT tenant_id, id FROM sealed_scripts WHERE key_id <> $1 ORDER BY tenant_id, id",
    )
    .bind(keys.current_key_id())
    .fetch_all(system_pool)
    .await
    .map_err(db("list sealed scripts under old keys"))?;
    let mut report = ScriptRotation::default();
    for row in rows {
        let tenant = TenantId::from_uuid(row.try_get("tenant_id").map_err(db("read a row"))?);
        let id: Uuid = row.try_get("id").map_err(db("read a row"))?;
        match reseal(app_pool, keys, tenant, id).await {
            Ok(true) => report.rotated += 1,
            Ok(false) => {}
            Err(e) => report.failed.push((tenant, id, e)),
        }
    }
    Ok(report)
}

/// Re-seals script `id` of `tenant` under the current key; `false` when it already is.
async fn reseal(
    app_pool: &PgPool,
    keys: &CredentialKeys,
    tenant: TenantId,
    id: Uuid,
) -> Result<bool, SealedScriptError> {
    let mut tx = crate::begin_tenant(app_pool, tenant).await?;
    let locked: Option<String> = sqlx::query_scalar(
        "SELECT key_id FROM sealed_scripts WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    )
    .bind(tenant.as_uuid())
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db("lock a sealed script"))?;
    match locked {
        None => return Err(SealedScriptError::NotFound { id }),
        Some(k) if k == keys.current_key_id() => return Ok(false),
        Some(_) => {}
    }
    let script = open(&mut tx, keys, tenant, id).await?;
    let sealed = keys
        .seal_bytes(AAD_TAG, tenant, id.as_bytes(), script.as_bytes())
        .ok_or(SealedScriptError::Seal { id })?;
    sqlx::query(
        "UPDATE sealed_scripts SET key_id = $3, nonce = $4, ciphertext = $5 \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant.as_uuid())
    .bind(id)
    .bind(&sealed.key_id)
    .bind(sealed.nonce.as_slice())
    .bind(&sealed.ciphertext)
    .execute(&mut *tx)
    .await
    .map_err(db("re-seal a sealed script"))?;
    tx.commit().await.map_err(db("commit a re-sealed script"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::credentials::KeyMaterial;

    #[test]
    fn sealed_bytes_are_bound_to_tag_tenant_and_subject() {
        let k = CredentialKeys::new("k1", [("k1".to_owned(), KeyMaterial::generate())]).unwrap();
        let (t, id) = (TenantId::new_random(), Uuid::now_v7());
        let s = k
            .seal_bytes(AAD_TAG, t, id.as_bytes(), b"password=canary")
            .unwrap();
        assert!(!s.ciphertext.windows(6).any(|w| w == b"canary"));
        assert_eq!(
            k.open_bytes(AAD_TAG, t, id.as_bytes(), &s).unwrap(),
            b"password=canary"
        );
        let other = Uuid::now_v7();
        assert!(k.open_bytes(AAD_TAG, t, other.as_bytes(), &s).is_err());
        assert!(
            k.open_bytes(AAD_TAG, TenantId::new_random(), id.as_bytes(), &s)
                .is_err()
        );
        assert!(k.open_bytes(b"other\0", t, id.as_bytes(), &s).is_err());
    }
}
