//! Reading change requests: the list (the `change_requests` read model, with
//! read-your-writes), one request folded fresh from its stream, and its timeline (its own
//! events and everything correlated with it).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use netledger_domain::change::ChangeState;
use netledger_domain::{ChangeRequestId, DeviceId};
use netledger_projections::query;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::Require;
use crate::authz::perm;
use crate::error::{ApiError, ApiResult, BadRequest, NotFound};
use crate::http::{Json, Path, Query, decode_cursor, encode_cursor, etag, read_your_writes};
use crate::state::ApiState;

use super::dto::{
    ChangeRequestDto, ChangeRequestPage, ChangeRequestSummaryDto, TimelineEntryDto, TimelinePage,
};
use super::{display_names, load};

/// Filters of the change request list (they combine).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangeListQuery {
    /// Only this state.
    #[param(value_type = Option<ChangeState>)]
    pub state: Option<String>,
    /// Only by this author (user id).
    pub author: Option<String>,
    /// Only requests whose frozen devices include this one.
    pub device: Option<Uuid>,
    /// Only requests whose frozen devices include one carrying this tag.
    pub tag: Option<String>,
    /// Only emergency (`true`) or ordinary (`false`) requests.
    pub emergency: Option<bool>,
    /// `true`: only emergency requests whose retrospective review is overdue.
    pub review_overdue: Option<bool>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Requests per page (default 50, at most 500).
    pub limit: Option<u32>,
    /// Read-your-writes: wait (bounded) until the change request read model has passed
    /// this global position (a write's `last_position`).
    pub min_position: Option<i64>,
}

/// List change requests, newest first.
#[utoipa::path(
    get,
    path = "/change-requests",
    operation_id = "list_change_requests",
    tag = "changes",
    security(("bearer" = ["changes:read"])),
    params(ChangeListQuery),
    responses(
        (status = 200, description = "A page of requests (`Netledger-Projection-Behind: true` when `min_position` was not reached in time).", body = ChangeRequestPage),
        (status = 400, response = BadRequest),
    )
)]
pub async fn list_change_requests(
    State(state): State<ApiState>,
    auth: Require<perm::ChangesRead>,
    Query(q): Query<ChangeListQuery>,
) -> ApiResult<(HeaderMap, Json<ChangeRequestPage>)> {
    let behind = read_your_writes(
        &state,
        &[netledger_projections::projector::CHANGE_REQUESTS],
        q.min_position,
    )
    .await?;
    let change_state = q
        .state
        .as_deref()
        .map(|s| {
            serde_json::from_value::<ChangeState>(serde_json::Value::String(s.to_owned())).map_err(
                |_| {
                    let known: Vec<&str> = ChangeState::ALL.iter().map(|s| s.as_str()).collect();
                    ApiError::bad_request(format!(
                        "state `{s}` is unknown: use {}",
                        known.join(", ")
                    ))
                },
            )
        })
        .transpose()?;
    let grace =
        time::Duration::try_from(state.config().change_review_grace).unwrap_or(time::Duration::MAX);
    let now = state.now();
    let overdue_at = now.checked_sub(grace).unwrap_or(now);
    let limit = q.limit.unwrap_or(50).clamp(1, state.config().max_page_size);
    let page = query::list_change_requests(
        &state.pools().app,
        auth.principal().tenant,
        &query::ChangeRequestQuery {
            state: change_state,
            author: q.author,
            device: q.device.map(DeviceId::from_uuid),
            tag: q.tag,
            emergency: q.emergency,
            review_overdue_at: (q.review_overdue == Some(true)).then_some(overdue_at),
            cursor: super::super::devices::unwrap_cursor(&q.cursor)?,
            limit: Some(i64::from(limit)),
        },
    )
    .await?;
    let items = page
        .items
        .into_iter()
        .map(|s| ChangeRequestSummaryDto {
            change_request_id: *s.id.as_uuid(),
            version: s.version,
            state: s.state,
            title: s.title,
            author: s.author,
            risk: s.risk,
            emergency: s.emergency,
            review_pending: s.review_pending,
            review_overdue: s.review_pending && s.started_at.is_some_and(|at| at <= overdue_at),
            devices: s.devices,
            approvals: s.approvals,
            required_approvals: s.required_approvals,
            workflow_id: s.workflow_id.map(|w| *w.as_uuid()),
            rollout_id: s.rollout_id.map(|r| *r.as_uuid()),
            paused: s.paused,
            created_at: s.created_at,
            updated_at: s.updated_at,
            started_at: s.started_at,
            finished_at: s.finished_at,
        })
        .collect();
    Ok((
        behind,
        Json(ChangeRequestPage {
            items,
            next_cursor: super::super::devices::wrap_cursor(page.next_cursor),
        }),
    ))
}

/// Read a change request, folded from its stream (always current; `ETag` is its version).
#[utoipa::path(
    get,
    path = "/change-requests/{change_request_id}",
    operation_id = "get_change_request",
    tag = "changes",
    security(("bearer" = ["changes:read"])),
    params(("change_request_id" = Uuid, Path, description = "Change request id.")),
    responses(
        (status = 200, description = "The request; `ETag` is its version.", body = ChangeRequestDto),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_change_request(
    State(state): State<ApiState>,
    auth: Require<perm::ChangesRead>,
    Path(id): Path<Uuid>,
) -> ApiResult<Response> {
    let tenant = auth.principal().tenant;
    let loaded = load(&state, tenant, id).await?;
    let dto = ChangeRequestDto::of(&state, tenant, &loaded, None).await?;
    Ok((etag(dto.version), Json(dto)).into_response())
}

/// Paging of a timeline.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TimelineQuery {
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Events per page (default 50, at most 500).
    pub limit: Option<u32>,
}

/// A change request's timeline, oldest first: its own events and every event correlated
/// with it (its run, rollout, per-device workflows, device events), with their actors.
#[utoipa::path(
    get,
    path = "/change-requests/{change_request_id}/timeline",
    operation_id = "get_change_timeline",
    tag = "changes",
    security(("bearer" = ["changes:read"])),
    params(("change_request_id" = Uuid, Path, description = "Change request id."), TimelineQuery),
    responses(
        (status = 200, description = "A page of the timeline.", body = TimelinePage),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
pub async fn get_change_timeline(
    State(state): State<ApiState>,
    auth: Require<perm::ChangesRead>,
    Path(id): Path<Uuid>,
    Query(q): Query<TimelineQuery>,
) -> ApiResult<Json<TimelinePage>> {
    let tenant = auth.principal().tenant;
    load(&state, tenant, id).await?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            decode_cursor(c)?
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request("cursor is not one this API issued"))
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, state.config().max_page_size);
    let page = query::change_timeline(
        &state.pools().app,
        tenant,
        ChangeRequestId::from_uuid(id),
        after,
        Some(i64::from(limit)),
    )
    .await?;
    let names = display_names(
        &state,
        tenant,
        page.items.iter().filter_map(|e| match &e.actor {
            netledger_domain::Actor::User { id } => Some(id.to_string()),
            _ => None,
        }),
    )
    .await?;
    let items = page
        .items
        .into_iter()
        .map(|e| {
            let actor_name = match &e.actor {
                netledger_domain::Actor::User { id } => names.get(&id.to_string()).cloned(),
                _ => None,
            };
            TimelineEntryDto {
                position: e.position,
                stream: e.stream,
                version: e.version,
                event_type: e.event_type,
                recorded_at: e.recorded_at,
                actor: (&e.actor).into(),
                actor_name,
                causation_id: e.causation_id,
                correlation_id: e.correlation_id,
                payload: e.payload,
            }
        })
        .collect();
    Ok(Json(TimelinePage {
        items,
        next_cursor: page.next_cursor.map(|c| encode_cursor(&c)),
    }))
}
