//! Signed audit checkpoints in the database and tenant history export.
//!
//! The checkpointer (role `netledger_system`) covers each tenant's new events with a
//! checkpoint signed by the platform's ed25519 key; the caller also publishes it outside
//! PostgreSQL (JetStream). Export gives an auditor everything [`verify_tenant_history`]
//! needs.
//!
//! [`verify_tenant_history`]: netledger_domain::audit::verify_tenant_history

use ed25519_dalek::SigningKey;
use netledger_domain::audit::{
    Checkpoint, CheckpointBody, CheckpointPlace, Handover, HistoryVerifier, StreamHead, Tamper,
    VerifyReport, make_checkpoint,
};
use netledger_domain::{RecordedEvent, TenantId};
use sqlx::{PgPool, Row};

use crate::error::StoreError;
use crate::read::EventReader;

/// Every checkpoint of `tenant`, in sequence order.
pub async fn load_checkpoints(
    pool: &PgPool,
    tenant: Option<TenantId>,
) -> Result<Vec<Checkpoint>, StoreError> {
    let rows = sqlx::query(
        "SELECT tenant_id, seq, from_position, to_position, event_count, prev_digest, digest, heads, \
                key_id, signature, handover \
         FROM audit_checkpoints WHERE ($1::uuid IS NULL OR tenant_id = $1) ORDER BY tenant_id, seq",
    )
    .bind(tenant.map(|t| *t.as_uuid()))
    .fetch_all(pool)
    .await
    .map_err(StoreError::db("load checkpoints"))?;
    rows.iter()
        .map(|row| {
            let seq: i64 = row
                .try_get("seq")
                .map_err(StoreError::db("decode checkpoint"))?;
            let bad = |detail: String| StoreError::Corrupt {
                position: seq,
                detail: format!("checkpoint {seq}: {detail}"),
            };
            let digest32 = |name: &str| -> Result<[u8; 32], StoreError> {
                let v: Vec<u8> = row.try_get(name).map_err(|e| bad(e.to_string()))?;
                <[u8; 32]>::try_from(v.as_slice())
                    .map_err(|_| bad(format!("{name} is not 32 bytes")))
            };
            let heads: serde_json::Value = row.try_get("heads").map_err(|e| bad(e.to_string()))?;
            let heads: Vec<StreamHead> =
                serde_json::from_value(heads).map_err(|e| bad(e.to_string()))?;
            let handover: Option<serde_json::Value> =
                row.try_get("handover").map_err(|e| bad(e.to_string()))?;
            let handover: Option<Handover> = handover
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| bad(format!("hand-over: {e}")))?;
            Ok(Checkpoint {
                body: CheckpointBody {
                    tenant_id: TenantId::from_uuid(
                        row.try_get("tenant_id").map_err(|e| bad(e.to_string()))?,
                    ),
                    seq,
                    from_position: row
                        .try_get("from_position")
                        .map_err(|e| bad(e.to_string()))?,
                    to_position: row.try_get("to_position").map_err(|e| bad(e.to_string()))?,
                    event_count: row.try_get("event_count").map_err(|e| bad(e.to_string()))?,
                    prev_digest: digest32("prev_digest")?,
                    heads,
                },
                digest: digest32("digest")?,
                key_id: row.try_get("key_id").map_err(|e| bad(e.to_string()))?,
                signature: row.try_get("signature").map_err(|e| bad(e.to_string()))?,
                handover,
            })
        })
        .collect()
}

/// The checkpointer's key: its id, the private key, and the hand-over from the previous key
/// (`keys rotate-audit-key` writes it next to the new key).
#[derive(Debug, Clone)]
pub struct CheckpointSigner<'a> {
    /// Key id recorded with each checkpoint.
    pub key_id: &'a str,
    /// The signing key.
    pub key: &'a SigningKey,
    /// The previous key's hand-over to this one, if the key was rotated.
    pub handover: Option<&'a Handover>,
}

/// [`checkpoint_all_with`] for a key that was never rotated (no hand-over).
pub async fn checkpoint_all(
    system: &PgPool,
    key_id: &str,
    key: &SigningKey,
) -> Result<Vec<Checkpoint>, StoreError> {
    checkpoint_all_with(
        system,
        &CheckpointSigner {
            key_id,
            key,
            handover: None,
        },
    )
    .await
}

/// Covers every tenant's events up to the current head with a new signed checkpoint
/// (tenants with no new events get none). Returns the checkpoints written. Run it from one
/// process at a time (the caller holds a lease); a concurrent duplicate fails on the primary
/// key and writes nothing.
///
/// When a tenant's last checkpoint was signed by another key, the new one carries the
/// signer's hand-over if it hands over from that key; otherwise it is written without one
/// and a warning is logged (an auditor who pins the old key then cannot trust the new one
/// through the chain and must pin it as well).
pub async fn checkpoint_all_with(
    system: &PgPool,
    signer: &CheckpointSigner<'_>,
) -> Result<Vec<Checkpoint>, StoreError> {
    let CheckpointSigner { key_id, key, .. } = *signer;
    let head = EventReader::system(system.clone(), None)
        .head_position()
        .await?;
    let tenants = sqlx::query(
        "SELECT t.tenant_id, coalesce(c.seq, 0) AS seq, coalesce(c.to_position, 0) AS to_position, \
                c.digest, c.key_id \
         FROM (SELECT DISTINCT tenant_id FROM events) t \
         LEFT JOIN LATERAL (SELECT seq, to_position, digest, key_id FROM audit_checkpoints a \
                            WHERE a.tenant_id = t.tenant_id ORDER BY seq DESC LIMIT 1) c ON true",
    )
    .fetch_all(system)
    .await
    .map_err(StoreError::db("list tenants for checkpoints"))?;
    let mut written = Vec::new();
    for row in tenants {
        let tenant =
            TenantId::from_uuid(row.try_get("tenant_id").map_err(StoreError::db("decode"))?);
        let seq: i64 = row.try_get("seq").map_err(StoreError::db("decode"))?;
        let after: i64 = row
            .try_get("to_position")
            .map_err(StoreError::db("decode"))?;
        if after >= head {
            continue;
        }
        let digest: Option<Vec<u8>> = row.try_get("digest").map_err(StoreError::db("decode"))?;
        let prev_digest = match digest {
            Some(d) => <[u8; 32]>::try_from(d.as_slice()).map_err(|_| StoreError::Corrupt {
                position: after,
                detail: "checkpoint digest is not 32 bytes".to_owned(),
            })?,
            None => [0; 32],
        };
        let events = read_range(system, tenant, after, head).await?;
        if events.is_empty() {
            continue;
        }
        let last_key: Option<String> = row.try_get("key_id").map_err(StoreError::db("decode"))?;
        let mut cp = make_checkpoint(
            CheckpointPlace {
                tenant_id: tenant,
                seq: seq + 1,
                from_position: after + 1,
                to_position: head,
                prev_digest,
            },
            &events,
            key_id,
            key,
        );
        if let Some(last) = last_key.filter(|k| k != key_id) {
            match signer.handover {
                Some(h) if h.from_key_id == last && h.to_key_id == key_id => {
                    cp.handover = Some(h.clone());
                }
                _ => tracing::warn!(
                    %tenant,
                    from = %last,
                    to = %key_id,
                    "the audit signing key changed without a hand-over from the previous key; \
                     auditors must pin the new key as well (rotate with `netledger keys rotate-audit-key`)"
                ),
            }
        }
        insert_checkpoint(system, &cp).await?;
        written.push(cp);
    }
    Ok(written)
}

async fn read_range(
    system: &PgPool,
    tenant: TenantId,
    after: i64,
    through: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let reader = EventReader::system(system.clone(), Some(tenant));
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let batch = reader.read_all(cursor, 10_000).await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            break;
        };
        let done = last >= through;
        out.extend(batch.into_iter().filter(|e| e.position <= through));
        if done {
            break;
        }
        cursor = last;
    }
    Ok(out)
}

async fn insert_checkpoint(system: &PgPool, cp: &Checkpoint) -> Result<(), StoreError> {
    let heads =
        serde_json::to_value(&cp.body.heads).map_err(|e| StoreError::Invalid(e.to_string()))?;
    sqlx::query(
        "INSERT INTO audit_checkpoints (tenant_id, seq, from_position, to_position, event_count, \
             prev_digest, digest, heads, key_id, signature, handover) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(cp.body.tenant_id.as_uuid())
    .bind(cp.body.seq)
    .bind(cp.body.from_position)
    .bind(cp.body.to_position)
    .bind(cp.body.event_count)
    .bind(cp.body.prev_digest.to_vec())
    .bind(cp.digest.to_vec())
    .bind(heads)
    .bind(&cp.key_id)
    .bind(&cp.signature)
    .bind(
        cp.handover
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| StoreError::Invalid(e.to_string()))?,
    )
    .execute(system)
    .await
    .map_err(StoreError::db("insert checkpoint"))?;
    Ok(())
}

/// A tenant's complete history and checkpoints: the content of an audit bundle.
pub async fn export_tenant(
    system: &PgPool,
    tenant: TenantId,
) -> Result<(Vec<RecordedEvent>, Vec<Checkpoint>), StoreError> {
    let events = read_range(system, tenant, 0, i64::MAX).await?;
    let checkpoints = load_checkpoints(system, Some(tenant)).await?;
    Ok((events, checkpoints))
}

/// Verifies a tenant's whole history as `reader` sees it (use a tenant-scoped reader) against
/// `checkpoints`, reading `page` events at a time: memory stays bounded by one page plus one
/// version and hash per stream, however long the history
/// ([`netledger_domain::audit::HistoryVerifier`]). Hashing runs on the blocking pool, one
/// page at a time. The outer error is the store's; the inner one the first tampering found.
/// `on_page` sees the size of each page read (for tests and progress).
pub async fn verify_history(
    reader: &EventReader,
    checkpoints: &[Checkpoint],
    keys: impl Into<netledger_domain::audit::TrustedKeys>,
    page: i64,
    mut on_page: impl FnMut(usize),
) -> Result<Result<VerifyReport, Tamper>, StoreError> {
    let mut verifier = HistoryVerifier::new(checkpoints, keys);
    let mut after = 0;
    loop {
        let batch = reader.read_all(after, page.max(1)).await?;
        on_page(batch.len());
        let Some(last) = batch.last().map(|e| e.position) else {
            break;
        };
        after = last;
        let (v, outcome) = tokio::task::spawn_blocking(move || {
            let mut v = verifier;
            let outcome = batch.iter().try_for_each(|e| v.push(e));
            (v, outcome)
        })
        .await
        .map_err(|e| StoreError::Invalid(format!("verification task: {e}")))?;
        if let Err(t) = outcome {
            return Ok(Err(t));
        }
        verifier = v;
    }
    Ok(verifier.finish())
}
