//! `/health/live`, `/health/ready` and `/metrics`.
//!
//! Ready means: the database answers (as the app role), NATS is connected (when
//! configured), and no subscriber (relay, projectors: rows of `subscription_checkpoints`)
//! is more than `max_ready_lag` events behind the newest position.
//!
//! Both routes are unauthenticated, so neither may let a caller drive the pools (which
//! also carry the workers' lease heartbeats): the readiness result is computed at most
//! once per second whatever the request rate (concurrent callers wait for the one
//! computation), and a failing check says only `failed` or `timeout`; the error itself is
//! logged. `/metrics` (one small query per scrape) can require a bearer token
//! (`ApiConfig::metrics_token`) or live on its own address (`ApiConfig::metrics_listen`).

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::Json;
use crate::state::ApiState;

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
}

/// Plain liveness.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    pub status: String,
}

/// The process is running.
#[utoipa::path(
    get,
    path = "/health/live",
    operation_id = "health_live",
    tag = "health",
    responses((status = 200, description = "Alive.", body = Liveness))
)]
pub async fn live() -> Json<Liveness> {
    Json(Liveness {
        status: "ok".to_owned(),
    })
}

/// One readiness check.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// What was checked (`database`, `nats`, `lag:<subscriber>`).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// `ok`, `failed`, `timeout`, a NATS connection state, or the lag in events; never
    /// error text (that is logged).
    pub detail: String,
}

/// Whether the API can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessStatus {
    /// Every check passed.
    Ready,
    /// A check failed.
    NotReady,
}

/// Readiness with every check.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: ReadinessStatus,
    /// The checks.
    pub checks: Vec<Check>,
}

/// Lag per subscriber: newest position minus its checkpoint.
pub async fn subscriber_lag(state: &ApiState) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let lags: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.name, greatest(h.last_position - c.position, 0) \
         FROM subscription_checkpoints c CROSS JOIN event_log_head h WHERE h.id ORDER BY c.name",
    )
    .fetch_all(&state.pools().system)
    .await?;
    Ok(lags)
}

/// How long a readiness result and the lag figures are reused.
const RECOMPUTE_AFTER: Duration = Duration::from_secs(1);

/// The last readiness result (see the module doc).
#[derive(Debug, Default)]
pub struct HealthCache {
    ready: tokio::sync::Mutex<Option<(Instant, Readiness)>>,
}

/// The process can serve requests: database, NATS and subscriber lag.
#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "health_ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready; the failing checks say why.", body = Readiness),
    )
)]
pub async fn ready(State(state): State<ApiState>) -> Response {
    let mut last = state.health_cache().ready.lock().await;
    let body = match last.as_ref() {
        Some((at, body)) if at.elapsed() < RECOMPUTE_AFTER => body.clone(),
        _ => {
            let body = readiness(&state).await;
            *last = Some((Instant::now(), body.clone()));
            body
        }
    };
    drop(last);
    let status = if body.status == ReadinessStatus::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn readiness(state: &ApiState) -> Readiness {
    let mut checks = Vec::new();
    let db = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pools().app),
    )
    .await;
    checks.push(match db {
        Ok(Ok(_)) => check("database", true, "ok".to_owned()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            check("database", false, "failed".to_owned())
        }
        Err(_) => check("database", false, "timeout".to_owned()),
    });
    if let Some(client) = state.nats() {
        let s = client.connection_state();
        checks.push(check(
            "nats",
            s == async_nats::connection::State::Connected,
            s.to_string(),
        ));
    }
    match subscriber_lag(state).await {
        Ok(lags) => {
            for (name, lag) in lags {
                state.metrics().set_lag(&name, lag);
                checks.push(check(
                    &format!("lag:{name}"),
                    lag <= state.config().max_ready_lag,
                    format!(
                        "{lag} events behind (limit {})",
                        state.config().max_ready_lag
                    ),
                ));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness: lag check failed");
            checks.push(check("lag", false, "failed".to_owned()))
        }
    }
    let ok = checks.iter().all(|c| c.ok);
    Readiness {
        status: if ok {
            ReadinessStatus::Ready
        } else {
            ReadinessStatus::NotReady
        },
        checks,
    }
}

fn check(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail,
    }
}

/// Prometheus text exposition (not part of the OpenAPI document); with
/// `ApiConfig::metrics_token`, only for `Authorization: Bearer <token>`.
pub async fn metrics(State(state): State<ApiState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &state.config().metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let expected = crate::auth::sha256(token.expose().as_bytes());
        if !crate::auth::constant_time_eq(&crate::auth::sha256(presented.as_bytes()), &expected) {
            return crate::ApiError::unauthenticated(
                "/metrics needs `Authorization: Bearer <metrics token>`",
            )
            .into_response();
        }
    }
    if let Ok(lags) = subscriber_lag(&state).await {
        for (name, lag) in lags {
            state.metrics().set_lag(&name, lag);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render(),
    )
        .into_response()
}
