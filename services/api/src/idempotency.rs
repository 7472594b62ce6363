//! `Idempotency-Key` for POSTs that start work: the first response to a key is stored
//! (table `idempotency_keys`, per tenant) and replayed for a retry with the same key and
//! body; another body under the same key is 422, a retry while the first still runs 409.
//!
//! A request that fails is not stored (its row is deleted), so a retry runs it again; a
//! process that dies mid-request leaves a row whose lock expires after [`LOCK`], after
//! which a retry takes it over. Workflow starts also pass the key to the engine, whose own
//! per-tenant key makes the start itself exactly-once even across that takeover.
//!
//! The stored request hash is an HMAC-SHA256 of (operation, body) under a server key
//! ([`HashKey`], derived from the token secret that every API process shares and the
//! database does not hold): bodies carry device passwords (`POST /devices`), and a plain
//! SHA-256 of a body whose other fields are guessable is a dictionary-attack target for
//! anyone who reads the table. The whole body is MACed (not the body with its secret
//! fields left out): a retry that differs only in the password must still count as a
//! different request, and no per-route list of secret fields can fall out of date. Keys are
//! remembered for `ApiConfig::idempotency_window`: older rows of the tenant are purged on
//! each keyed request (the key may then be used again), and [`purge_expired`] sweeps every
//! tenant (the API process runs it periodically).

use std::future::Future;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use netledger_domain::TenantId;
use netledger_store::begin_tenant;
use serde::Serialize;

use crate::error::{ApiError, ApiResult, ProblemKind};
use crate::state::ApiState;

/// How long a running request holds its key before a retry may take over.
pub const LOCK: time::Duration = time::Duration::seconds(60);

/// A response to store: status, `ETag` (if any) and JSON body.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Status.
    pub status: StatusCode,
    /// The `ETag` value, if the response has one.
    pub etag: Option<String>,
    /// The body.
    pub body: serde_json::Value,
}

impl Stored {
    /// A JSON response with an optional stream version as `ETag`.
    pub fn json(status: StatusCode, etag: Option<u64>, body: &impl Serialize) -> ApiResult<Self> {
        Ok(Self {
            status,
            etag: etag.map(|v| format!("\"{v}\"")),
            body: serde_json::to_value(body)
                .map_err(|e| ApiError::internal(format!("encode response: {e}")))?,
        })
    }

    fn into_response(self, replayed: bool) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(e) = self
            .etag
            .as_deref()
            .and_then(|e| HeaderValue::from_str(e).ok())
        {
            headers.insert(header::ETAG, e);
        }
        if replayed {
            headers.insert("idempotency-replayed", HeaderValue::from_static("true"));
        }
        (self.status, headers, axum::Json(self.body)).into_response()
    }
}

/// The key request hashes are MACed with. Never printed.
#[derive(Clone)]
pub struct HashKey([u8; 32]);

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(***)")
    }
}

impl HashKey {
    /// Derives the key from a server secret (HMAC-SHA256 of a fixed label under the
    /// secret, so the stored MACs reveal nothing about the secret's other uses). Rotating
    /// the secret makes keys stored before it answer "used for a different request" until
    /// they expire.
    pub fn derive(server_secret: &[u8]) -> Self {
        Self(mac(
            server_secret,
            &[b"netledger/idempotency-request-hash/v1"],
        ))
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC takes keys of any length; the error arm cannot happen.
    let Ok(mut m) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The stored hash of a request: HMAC-SHA256 under `key` of the operation, a NUL and the
/// JSON body.
pub fn request_hash(
    key: &HashKey,
    operation: &str,
    request: &impl Serialize,
) -> ApiResult<Vec<u8>> {
    let body = serde_json::to_vec(request)
        .map_err(|e| ApiError::internal(format!("encode request for idempotency: {e}")))?;
    Ok(mac(&key.0, &[operation.as_bytes(), b"\0", &body]).to_vec())
}

fn window(state: &ApiState) -> time::Duration {
    time::Duration::try_from(state.config().idempotency_window).unwrap_or(time::Duration::DAY)
}

/// Deletes every tenant's keys older than `ApiConfig::idempotency_window`; returns how many.
/// Tenants are found with the system pool (read-only), rows deleted per tenant through the
/// app pool (row-level security).
pub async fn purge_expired(state: &ApiState) -> ApiResult<u64> {
    let cutoff = state.now() - window(state);
    let tenants: Vec<(uuid::Uuid,)> =
        sqlx::query_as("SELECT DISTINCT tenant_id FROM idempotency_keys WHERE created_at < $1")
            .bind(cutoff)
            .fetch_all(&state.pools().system)
            .await?;
    let mut purged = 0;
    for (tenant,) in tenants {
        let tenant = TenantId::from_uuid(tenant);
        let mut tx = begin_tenant(&state.pools().app, tenant).await?;
        purged += purge_tenant(&mut tx, tenant, cutoff).await?;
        tx.commit().await?;
    }
    Ok(purged)
}

async fn purge_tenant(
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    cutoff: time::OffsetDateTime,
) -> ApiResult<u64> {
    Ok(sqlx::query(
        "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND created_at < $2 \
         AND (locked_until < $2 OR status IS NOT NULL)",
    )
    .bind(tenant.as_uuid())
    .bind(cutoff)
    .execute(conn)
    .await?
    .rows_affected())
}

type Row = (
    Vec<u8>,
    Option<i16>,
    Option<String>,
    Option<String>,
    time::OffsetDateTime,
);

/// Runs `work` at most once per (tenant, key): see the module docs. Without a key it just
/// runs.
pub async fn run<F, Fut>(
    state: &ApiState,
    tenant: TenantId,
    key: Option<String>,
    operation: &str,
    request: &impl Serialize,
    work: F,
) -> ApiResult<Response>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ApiResult<Stored>>,
{
    let Some(key) = key else {
        return Ok(work().await?.into_response(false));
    };
    let hash = request_hash(state.idempotency_key(), operation, request)?;
    let now = state.now();
    let mut tx = begin_tenant(&state.pools().app, tenant).await?;
    purge_tenant(&mut tx, tenant, now - window(state)).await?;
    let inserted: Option<(bool,)> = sqlx::query_as(
        "INSERT INTO idempotency_keys (tenant_id, key, operation, request_hash, created_at, \
         locked_until) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true",
    )
    .bind(tenant.as_uuid())
    .bind(&key)
    .bind(operation)
    .bind(&hash)
    .bind(now)
    .bind(now + LOCK)
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_none() {
        let row: Option<Row> = sqlx::query_as(
            "SELECT request_hash, status, response, etag, locked_until FROM idempotency_keys \
             WHERE tenant_id = $1 AND key = $2 FOR UPDATE",
        )
        .bind(tenant.as_uuid())
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((stored_hash, status, response, etag, locked_until)) = row else {
            // Deleted between the insert and the read (a failed first attempt): go again.
            tx.rollback().await?;
            return Err(ApiError::new(
                ProblemKind::IdempotencyInProgress,
                "the first request with this Idempotency-Key just failed; retry",
            ));
        };
        if stored_hash != hash {
            tx.rollback().await?;
            return Err(ApiError::new(
                ProblemKind::IdempotencyKeyReused,
                "this Idempotency-Key was used for a different request; use a new key",
            ));
        }
        if let (Some(status), Some(body)) = (status, response) {
            tx.rollback().await?;
            let body = serde_json::from_str(&body)
                .map_err(|e| ApiError::internal(format!("stored idempotent response: {e}")))?;
            let status = StatusCode::from_u16(u16::try_from(status).unwrap_or(500))
                .unwrap_or(StatusCode::OK);
            return Ok(Stored { status, etag, body }.into_response(true));
        }
        if locked_until > now {
            tx.rollback().await?;
            return Err(ApiError::new(
                ProblemKind::IdempotencyInProgress,
                "a request with this Idempotency-Key is still running; retry in a moment",
            ));
        }
        // The first attempt's process died: take the key over.
        sqlx::query(
            "UPDATE idempotency_keys SET locked_until = $3 WHERE tenant_id = $1 AND key = $2",
        )
        .bind(tenant.as_uuid())
        .bind(&key)
        .bind(now + LOCK)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;

    match work().await {
        Ok(stored) => {
            let mut tx = begin_tenant(&state.pools().app, tenant).await?;
            sqlx::query(
                "UPDATE idempotency_keys SET status = $3, response = $4, etag = $5 \
                 WHERE tenant_id = $1 AND key = $2",
            )
            .bind(tenant.as_uuid())
            .bind(&key)
            .bind(i16::try_from(stored.status.as_u16()).unwrap_or(200))
            .bind(stored.body.to_string())
            .bind(stored.etag.as_deref())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(stored.into_response(false))
        }
        Err(e) => {
            let mut tx = begin_tenant(&state.pools().app, tenant).await?;
            sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2")
                .bind(tenant.as_uuid())
                .bind(&key)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Err(e)
        }
    }
}
