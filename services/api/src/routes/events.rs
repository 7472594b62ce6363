//! `/api/v1/events`: the tenant's event history — everything, one category or one stream,
//! optionally as of a time — with global positions as cursors. Identity categories
//! (`tenant`, `user`, `session`) need `audit:read`; everything else `events:read`.

use axum::extract::State;
use netledger_domain::{Category, RecordedEvent, StreamName};
use netledger_store::{Direction, EventReader};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Principal, Require};
use crate::authz::{Permission, perm, permission_for_category};
use crate::error::{ApiError, ApiResult, BadRequest, NotFound};
use crate::http::{Json, Path, Query, decode_cursor, encode_cursor};
use crate::state::ApiState;

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_events))
        .routes(routes!(list_category_events))
        .routes(routes!(list_stream_events))
}

/// What kind of actor caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A user.
    User,
    /// An API key.
    ApiKey,
    /// A platform component.
    System,
}

/// Who caused an event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActorDto {
    /// `user`, `api_key` or `system`.
    pub kind: ActorKind,
    /// User or API key id.
    pub id: Option<Uuid>,
    /// System component name.
    pub component: Option<String>,
}

impl From<&netledger_domain::Actor> for ActorDto {
    fn from(a: &netledger_domain::Actor) -> Self {
        use netledger_domain::Actor as A;
        match a {
            A::User { id } => Self {
                kind: ActorKind::User,
                id: Some(*id),
                component: None,
            },
            A::ApiKey { id } => Self {
                kind: ActorKind::ApiKey,
                id: Some(*id),
                component: None,
            },
            A::System { component } => Self {
                kind: ActorKind::System,
                id: None,
                component: Some(component.clone()),
            },
        }
    }
}

/// A recorded event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventDto {
    /// Global position (gapless across all tenants; the SSE id and the cursor).
    pub position: i64,
    /// The tenant's previous event's position (0 for its first).
    pub tenant_prev_position: i64,
    /// Stream (`device-…`).
    pub stream: String,
    /// Category (the stream name's first part).
    pub category: String,
    /// Version within the stream.
    pub version: i64,
    /// Event id.
    pub event_id: Uuid,
    /// Type (`DeviceRegistered`, …).
    pub event_type: String,
    /// Payload schema version.
    pub schema_version: u32,
    /// Payload.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Who caused it.
    pub actor: ActorDto,
    /// The id of what directly caused it.
    pub causation_id: Uuid,
    /// The id shared by everything one request or workflow caused.
    pub correlation_id: Uuid,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// Hex SHA-256 link to the previous event of the stream.
    pub prev_hash: String,
    /// Hex SHA-256 of this event (hash chain).
    pub hash: String,
}

impl From<&RecordedEvent> for EventDto {
    fn from(e: &RecordedEvent) -> Self {
        Self {
            position: e.position,
            tenant_prev_position: e.tenant_prev_position,
            stream: e.stream.as_str().to_owned(),
            category: e.category().to_owned(),
            version: e.version,
            event_id: *e.event_id.as_uuid(),
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            payload: e.payload.clone(),
            actor: (&e.metadata.actor).into(),
            causation_id: e.metadata.causation_id,
            correlation_id: e.metadata.correlation_id,
            recorded_at: e.recorded_at,
            prev_hash: hex::encode(e.prev_hash),
            hash: hex::encode(e.hash),
        }
    }
}

/// A page of events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// Events in order.
    pub items: Vec<EventDto>,
    /// Pass as `cursor` for the next page; absent when there is nothing more now.
    pub next_cursor: Option<String>,
}

/// Paging and time-travel parameters of event lists.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// The `next_cursor` of the previous page; absent for the first page.
    #[param(pattern = r"^[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Events per page (default 100, at most the server's maximum).
    pub limit: Option<u32>,
    /// Only events recorded at or before this time (RFC 3339): history as of then.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub as_of: Option<OffsetDateTime>,
}

impl EventQuery {
    fn limit(&self, max: u32) -> ApiResult<i64> {
        match self.limit {
            None => Ok(i64::from(100.min(max))),
            Some(0) => Err(ApiError::bad_request("limit must be at least 1")),
            Some(n) => Ok(i64::from(n.min(max))),
        }
    }

    fn after(&self) -> ApiResult<i64> {
        match &self.cursor {
            None => Ok(0),
            Some(c) => decode_cursor(c)?
                .parse::<i64>()
                .map_err(|_| ApiError::bad_request("cursor is not valid")),
        }
    }
}

fn reader(state: &ApiState, p: &Principal) -> EventReader {
    EventReader::tenant(state.pools().app.clone(), p.tenant)
}

/// Reads one page after `after` with `read`, cut at `as_of`, keeping only what `keep`
/// admits; the cursor is the last position scanned.
async fn page<F, Fut>(
    state: &ApiState,
    p: &Principal,
    q: &EventQuery,
    keep: impl Fn(&RecordedEvent) -> bool,
    read: F,
) -> ApiResult<EventPage>
where
    F: FnOnce(i64, i64) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<RecordedEvent>, netledger_store::StoreError>>,
{
    let limit = q.limit(state.config().max_page_size)?;
    let after = q.after()?;
    let cap = match q.as_of {
        Some(at) => Some(reader(state, p).position_as_of(at).await?),
        None => None,
    };
    let events = read(after, limit).await?;
    let full = i64::try_from(events.len()).unwrap_or(0) >= limit;
    let mut cut = false;
    let mut last = None;
    let mut items = Vec::with_capacity(events.len());
    for e in &events {
        if cap.is_some_and(|c| e.position > c) {
            cut = true;
            break;
        }
        last = Some(e.position);
        if keep(e) {
            items.push(EventDto::from(e));
        }
    }
    let next_cursor = match last {
        Some(l) if full && !cut => Some(encode_cursor(&l.to_string())),
        _ => None,
    };
    Ok(EventPage { items, next_cursor })
}

/// Every event of your tenant in global order (identity events only with `audit:read`).
#[utoipa::path(
    get,
    path = "/events",
    operation_id = "list_events",
    tag = "events",
    security(("bearer" = ["events:read"])),
    params(EventQuery),
    responses((status = 200, description = "A page of events.", body = EventPage), (status = 400, response = BadRequest))
)]
pub async fn list_events(
    State(state): State<ApiState>,
    auth: Require<perm::EventsRead>,
    Query(q): Query<EventQuery>,
) -> ApiResult<Json<EventPage>> {
    let p = auth.principal();
    let r = reader(&state, p);
    let audit = p.can(Permission::AuditRead);
    let out = page(
        &state,
        p,
        &q,
        |e| audit || permission_for_category(e.category()) == Permission::EventsRead,
        |after, limit| async move { r.read_all(after, limit).await },
    )
    .await?;
    Ok(Json(out))
}

/// Events of one category (`device`, `workflow`, `rollout`, …) in global order.
#[utoipa::path(
    get,
    path = "/events/categories/{category}",
    operation_id = "list_category_events",
    tag = "events",
    security(("bearer" = ["events:read"])),
    params(
        ("category" = String, Path, description = "Category: lowercase letters (`device`). `tenant`, `user` and `session` need `audit:read`.", pattern = r"^[a-z]{1,40}$"),
        EventQuery,
    ),
    responses((status = 200, description = "A page of events.", body = EventPage), (status = 400, response = BadRequest))
)]
pub async fn list_category_events(
    State(state): State<ApiState>,
    auth: Require<perm::EventsRead>,
    Path(category): Path<String>,
    Query(q): Query<EventQuery>,
) -> ApiResult<Json<EventPage>> {
    let p = auth.principal();
    let category = Category::parse(&category).map_err(|e| ApiError::bad_request(e.to_string()))?;
    p.require(permission_for_category(category.as_str()))?;
    let r = reader(&state, p);
    let out = page(
        &state,
        p,
        &q,
        |_| true,
        |after, limit| {
            let c = category.clone();
            async move { r.read_category(c.as_str(), after, limit).await }
        },
    )
    .await?;
    Ok(Json(out))
}

/// Events of one stream (`device-<id>`, `workflow-<id>`, …) by version; 404 when the
/// stream has no event visible to you.
#[utoipa::path(
    get,
    path = "/events/streams/{stream}",
    operation_id = "list_stream_events",
    tag = "events",
    security(("bearer" = ["events:read"])),
    params(
        ("stream" = String, Path, description = "Stream name `<category>-<id>`.", max_length = 200, pattern = r"^[a-z]{1,40}-[A-Za-z0-9._-]+$"),
        EventQuery,
    ),
    responses(
        (status = 200, description = "A page of the stream's events.", body = EventPage),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
    )
)]
pub async fn list_stream_events(
    State(state): State<ApiState>,
    auth: Require<perm::EventsRead>,
    Path(stream): Path<String>,
    Query(q): Query<EventQuery>,
) -> ApiResult<Json<EventPage>> {
    let p = auth.principal();
    let stream = StreamName::parse(&stream).map_err(|e| ApiError::bad_request(e.to_string()))?;
    p.require(permission_for_category(stream.category()))?;
    let limit = q.limit(state.config().max_page_size)?;
    let from_version = match &q.cursor {
        None => 1,
        Some(c) => decode_cursor(c)?
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request("cursor is not valid"))?,
    };
    let events = reader(&state, p)
        .read_stream(&stream, from_version, Direction::Forward, limit)
        .await?;
    if events.is_empty() && from_version <= 1 {
        return Err(ApiError::not_found(format!("stream {stream}")));
    }
    let full = i64::try_from(events.len()).unwrap_or(0) >= limit;
    let mut items = Vec::with_capacity(events.len());
    let mut cut = false;
    for e in &events {
        if q.as_of.is_some_and(|at| e.recorded_at > at) {
            cut = true;
            break;
        }
        items.push(EventDto::from(e));
    }
    if items.is_empty() && q.as_of.is_some() && from_version <= 1 {
        return Err(ApiError::not_found(format!(
            "stream {stream} as of that time"
        )));
    }
    let next_cursor = match events.last() {
        Some(l) if full && !cut => Some(encode_cursor(&(l.version + 1).to_string())),
        _ => None,
    };
    Ok(Json(EventPage { items, next_cursor }))
}
