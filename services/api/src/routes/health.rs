//! `/health/live`, `/health/ready` and `/metrics`.
//!
//! Ready means: the database answers (as the app role), NATS is connected (when
//! configured), and no subscriber (relay, projectors: rows of `subscription_checkpoints`)
//! is more than `max_ready_lag` events behind the newest position.

use std::time::Duration;

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
    /// Details (error text, lag in events).
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
    sqlx::query_as(
        "SELECT c.name, greatest(h.last_position - c.position, 0) \
         FROM subscription_checkpoints c CROSS JOIN event_log_head h WHERE h.id ORDER BY c.name",
    )
    .fetch_all(&state.pools().system)
    .await
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
    let mut checks = Vec::new();
    let db = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pools().app),
    )
    .await;
    checks.push(match db {
        Ok(Ok(_)) => check("database", true, "ok".to_owned()),
        Ok(Err(e)) => check("database", false, e.to_string()),
        Err(_) => check("database", false, "no answer within 2 s".to_owned()),
    });
    if let Some(client) = state.nats() {
        let s = client.connection_state();
        checks.push(check(
            "nats",
            s == async_nats::connection::State::Connected,
            s.to_string(),
        ));
    }
    match subscriber_lag(&state).await {
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
        Err(e) => checks.push(check("lag", false, e.to_string())),
    }
    let ok = checks.iter().all(|c| c.ok);
    let body = Readiness {
        status: if ok {
            ReadinessStatus::Ready
        } else {
            ReadinessStatus::NotReady
        },
        checks,
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

fn check(name: &str, ok: bool, detail: String) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail,
    }
}

/// Prometheus text exposition (not part of the OpenAPI document).
pub async fn metrics(State(state): State<ApiState>) -> Response {
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
