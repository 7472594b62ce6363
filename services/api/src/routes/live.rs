//! `GET /api/v1/events/stream`: live events as Server-Sent Events, for one tenant, filtered
//! by topic, resumable with `Last-Event-ID` (a global position).
//!
//! Every event a client receives is read from the event store through the tenant's
//! row-level-security scope, in global order after the last position sent: the stream is a
//! catch-up read that is repeated whenever something says there may be more. NATS is only
//! such a wake-up: an ordered JetStream consumer on `<prefix>.<tenant>.*.*` (the relay's
//! subjects are `<prefix>.<tenant>.<category>.<type>`) makes the connection read the store
//! again; what a message carries is never sent, so a message published on the subject by
//! anyone else cannot inject content. Without NATS (not configured, refused, or failed
//! mid-stream) the wake-up is the process's one shared `LISTEN netledger_events`
//! ([`netledger_store::Notifier`]): an open stream holds no database connection while it
//! waits, so open streams cannot exhaust the pool. Either way an idle connection reads the
//! store once per keep-alive interval, so a lost wake-up costs at most that.
//!
//! Open streams are limited per principal (user or API key), per tenant and per process
//! ([`LiveLimits`]); over a limit the request is refused (429 for the principal and tenant
//! limits, 503 for the process limit) before anything is read.

use std::convert::Infallible;
use std::time::Duration;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{FutureExt, Stream, StreamExt};
use netledger_domain::{RecordedEvent, TenantId};
use netledger_store::EventReader;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Principal, Require, Subject};
use crate::authz::{Permission, perm, permission_for_category};
use crate::error::{ApiError, ApiResult, BadRequest, RateLimited};
use crate::http::Query;
use crate::routes::events::EventDto;
use crate::state::ApiState;

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(stream_events))
}

const CATCH_UP_BATCH: i64 = 500;

/// Parameters of the live stream.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    /// Comma-separated topics: a category (`device`) or `category.EventType`
    /// (`workflow.WorkflowCompleted`). All permitted events when absent.
    pub topics: Option<String>,
    /// Resume after this global position (same as the `Last-Event-ID` header, which wins).
    /// Without either, the stream starts at the newest event.
    pub after: Option<i64>,
}

/// One parsed topic.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Topic {
    category: String,
    event_type: Option<String>,
}

/// What a connection lets through: topics and the permission for identity categories.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    topics: Vec<Topic>,
    audit: bool,
}

impl Filter {
    fn admits(&self, e: &RecordedEvent) -> bool {
        if !self.audit && permission_for_category(e.category()) == Permission::AuditRead {
            return false;
        }
        self.topics.is_empty()
            || self.topics.iter().any(|t| {
                t.category == e.category()
                    && t.event_type.as_deref().is_none_or(|ty| ty == e.event_type)
            })
    }
}

fn parse_topics(text: Option<&str>, audit: bool) -> ApiResult<Filter> {
    let mut topics = Vec::new();
    for t in text
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let (category, event_type) = match t.split_once('.') {
            Some((c, ty)) => (c, Some(ty.to_owned())),
            None => (t, None),
        };
        netledger_domain::Category::parse(category)
            .map_err(|e| ApiError::bad_request(format!("topic `{t}`: {e}")))?;
        if let Some(ty) = &event_type
            && !netledger_domain::event::valid_type_name(ty)
        {
            return Err(ApiError::bad_request(format!(
                "topic `{t}`: the event type must be letters, digits or `_`"
            )));
        }
        if !audit && permission_for_category(category) == Permission::AuditRead {
            return Err(ApiError::forbidden(Permission::AuditRead));
        }
        topics.push(Topic {
            category: category.to_owned(),
            event_type,
        });
    }
    Ok(Filter { topics, audit })
}

fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<i64>> {
    headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .filter(|p| *p >= 0)
                .ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID must be a global position (an SSE id)")
                })
        })
        .transpose()
}

/// Live events (Server-Sent Events).
///
/// Each message has `id` = global position, `event` = event type and `data` = the event as
/// JSON (`EventDto`). Reconnect with `Last-Event-ID` (browsers do it by themselves) to
/// continue without gaps or duplicates. A comment line is sent on idle connections.
#[utoipa::path(
    get,
    path = "/events/stream",
    operation_id = "stream_events",
    tag = "events",
    security(("bearer" = ["events:read"])),
    params(
        LiveQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this global position."),
    ),
    responses(
        (status = 200, description = "A `text/event-stream` of events; each `data` is an `EventDto`.", content_type = "text/event-stream", body = crate::openapi::LiveEventFrame),
        (status = 400, response = BadRequest),
        (status = 429, response = RateLimited),
    )
)]
pub async fn stream_events(
    State(state): State<ApiState>,
    auth: Require<perm::EventsRead>,
    headers: HeaderMap,
    Query(q): Query<LiveQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let p = auth.principal().clone();
    let filter = parse_topics(q.topics.as_deref(), p.can(Permission::AuditRead))?;
    let slot = state.live_limits().open(&p)?;
    let reader = EventReader::tenant(state.pools().app.clone(), p.tenant);
    let after = match last_event_id(&headers)?.or(q.after) {
        Some(a) => a,
        None => reader.head_position().await?,
    };
    let (tx, rx) = mpsc::channel::<Event>(256);
    let live = Live {
        state: state.clone(),
        tenant: p.tenant,
        reader,
        filter,
        tx,
        last: after,
        _slot: slot,
    };
    // The stream closes when the caller's token or key expires or is revoked.
    tokio::spawn(crate::auth::until_ended(&state, &p, live.run()));
    let keepalive = state.config().sse_keepalive;
    Ok(Sse::new(ReceiverStream::new(rx).map(Ok)).keep_alive(KeepAlive::new().interval(keepalive)))
}

/// One connection's producer task.
struct Live {
    state: ApiState,
    tenant: TenantId,
    reader: EventReader,
    filter: Filter,
    tx: mpsc::Sender<Event>,
    /// The last tenant position delivered or skipped by the filter.
    last: i64,
    /// This stream's place in the limits, given back when the stream ends.
    _slot: LiveSlot,
}

/// The client went away.
struct Gone;

struct ClientGauge(prometheus::IntGauge);
impl Drop for ClientGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Live {
    async fn run(self) {
        let gauge = self.state.metrics().sse_clients().clone();
        gauge.inc();
        let _guard = ClientGauge(gauge);
        let mut shutdown = self.state.shutdown_signal();
        if *shutdown.borrow() {
            return;
        }
        // Ending the task drops the sender, which ends the response stream.
        tokio::select! {
            _ = self.serve() => {}
            _ = shutdown.changed() => {}
        }
    }

    async fn serve(mut self) {
        let mut nats = match self.state.nats().cloned() {
            Some(client) => match self.subscribe(&client).await {
                Ok(m) => {
                    self.state.metrics().sse_nats_subscription("ok");
                    Some(m)
                }
                Err(e) => {
                    self.state.metrics().sse_nats_subscription("failed");
                    tracing::warn!(error = %e, "live events: NATS subscription failed; waking on the database's notifications instead");
                    None
                }
            },
            None => None,
        };
        let mut notified = None;
        let idle = self.state.config().sse_keepalive;
        loop {
            if self.catch_up().await.is_err() {
                return;
            }
            if nats.is_none() && notified.is_none() {
                notified = Some(self.state.notifier().subscribe());
            }
            tokio::select! {
                m = next_message(&mut nats) => match m {
                    Ok(()) => {
                        self.state.metrics().sse_wakeup("nats");
                        // Coalesce the messages that are already here: one read covers them.
                        while let Some(Some(Ok(_))) = nats.as_mut().and_then(|n| n.next().now_or_never()) {}
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "live events: NATS stream failed; waking on the database's notifications instead");
                        nats = None;
                    }
                },
                r = changed(&mut notified) => {
                    if r.is_err() {
                        // The notifier is gone (shutting down): keep polling.
                        notified = None;
                        tokio::time::sleep(idle).await;
                    }
                    self.state.metrics().sse_wakeup("database");
                }
                _ = tokio::time::sleep(idle) => self.state.metrics().sse_wakeup("poll"),
                _ = self.tx.closed() => return,
            }
        }
    }

    async fn subscribe(&self, client: &async_nats::Client) -> Result<push::Ordered, String> {
        let cfg = self.state.config();
        let js = async_nats::jetstream::new(client.clone());
        let stream = js
            .get_stream(&cfg.nats_events_stream)
            .await
            .map_err(|e| format!("stream {}: {e}", cfg.nats_events_stream))?;
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: client.new_inbox(),
                filter_subject: format!("{}.{}.*.*", cfg.nats_subject_prefix, self.tenant),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("create consumer: {e}"))?;
        consumer
            .messages()
            .await
            .map_err(|e| format!("consumer messages: {e}"))
    }

    /// Sends one event if the filter admits it; advances `last` either way.
    async fn send(&mut self, e: &RecordedEvent) -> Result<(), Gone> {
        if e.position <= self.last {
            return Ok(());
        }
        self.last = e.position;
        if e.tenant_id != self.tenant || !self.filter.admits(e) {
            return Ok(());
        }
        self.state.metrics().sse_event_from("store");
        let event = Event::default()
            .id(e.position.to_string())
            .event(e.event_type.clone())
            .json_data(EventDto::from(e));
        match event {
            Ok(ev) => self.tx.send(ev).await.map_err(|_| Gone),
            Err(err) => {
                tracing::warn!(error = %err, position = e.position, "live events: cannot encode event");
                Ok(())
            }
        }
    }

    /// Reads the store after `last` until it is exhausted, sending what the filter admits.
    async fn catch_up(&mut self) -> Result<(), Gone> {
        loop {
            let batch = match self.reader.read_all(self.last, CATCH_UP_BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "live events: reading the event store failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if self.tx.is_closed() {
                        return Err(Gone);
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                return Ok(());
            }
            for e in &batch {
                self.send(e).await?;
            }
            if i64::try_from(batch.len()).unwrap_or(0) < CATCH_UP_BATCH {
                return Ok(());
            }
        }
    }
}

/// The next NATS message's arrival (its content is ignored); pending forever without NATS.
async fn next_message(nats: &mut Option<push::Ordered>) -> Result<(), String> {
    match nats.as_mut() {
        Some(n) => match n.next().await {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.to_string()),
            None => Err("consumer ended".to_owned()),
        },
        None => std::future::pending().await,
    }
}

/// The shared notifier's next wake-up; pending forever when not waiting on it.
async fn changed(
    rx: &mut Option<tokio::sync::watch::Receiver<i64>>,
) -> Result<(), tokio::sync::watch::error::RecvError> {
    match rx.as_mut() {
        Some(rx) => rx.changed().await,
        None => std::future::pending().await,
    }
}

/// Limits of open live-event streams: per principal (user or API key), per tenant and per
/// process. Counted in this process's memory (N API processes allow N times the principal
/// and tenant limits).
#[derive(Debug)]
pub struct LiveLimits {
    per_principal: usize,
    per_tenant: usize,
    per_process: usize,
    open: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    process: usize,
    tenants: HashMap<TenantId, usize>,
    principals: HashMap<String, usize>,
}

/// One open stream's place in the [`LiveLimits`]; given back on drop.
#[derive(Debug)]
pub struct LiveSlot {
    limits: Arc<LiveLimits>,
    tenant: TenantId,
    principal: String,
}

/// Why a stream was refused.
fn over(limit: &str, max: usize) -> ApiError {
    ApiError::rate_limited_because(
        5,
        format!(
            "too many open live-event streams ({limit} limit {max}); close one or retry in 5 s"
        ),
    )
}

fn principal_key(p: &Principal) -> String {
    match &p.subject {
        Subject::User { id, .. } => format!("user:{id}"),
        Subject::ApiKey { id } => format!("api_key:{id}"),
    }
}

impl LiveLimits {
    /// Limits from the API's settings.
    pub fn new(per_principal: usize, per_tenant: usize, per_process: usize) -> Arc<Self> {
        Arc::new(Self {
            per_principal,
            per_tenant,
            per_process,
            open: Mutex::new(Counts::default()),
        })
    }

    /// Takes a place for a new stream of `p`, or refuses: 503 at the process limit, 429 at
    /// the tenant or principal limit.
    pub fn open(self: &Arc<Self>, p: &Principal) -> ApiResult<LiveSlot> {
        let key = principal_key(p);
        let mut c = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if c.process >= self.per_process {
            return Err(ApiError::unavailable(format!(
                "this API process serves its maximum of {} live-event streams; retry later or on another process",
                self.per_process
            )));
        }
        if c.tenants.get(&p.tenant).copied().unwrap_or(0) >= self.per_tenant {
            return Err(over("per-tenant", self.per_tenant));
        }
        if c.principals.get(&key).copied().unwrap_or(0) >= self.per_principal {
            return Err(over("per-user or per-API-key", self.per_principal));
        }
        c.process += 1;
        *c.tenants.entry(p.tenant).or_default() += 1;
        *c.principals.entry(key.clone()).or_default() += 1;
        Ok(LiveSlot {
            limits: self.clone(),
            tenant: p.tenant,
            principal: key,
        })
    }

    /// Streams open in this process.
    pub fn open_streams(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).process
    }
}

impl Drop for LiveSlot {
    fn drop(&mut self) {
        let mut c = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        c.process = c.process.saturating_sub(1);
        if let Some(n) = c.tenants.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                c.tenants.remove(&self.tenant);
            }
        }
        if let Some(n) = c.principals.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                c.principals.remove(&self.principal);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_and_identity_needs_audit() {
        let f = parse_topics(Some("device, workflow.WorkflowCompleted"), false).unwrap();
        assert_eq!(f.topics.len(), 2);
        assert_eq!(f.topics[1].event_type.as_deref(), Some("WorkflowCompleted"));
        assert!(parse_topics(Some("user"), false).is_err());
        assert!(parse_topics(Some("user"), true).is_ok());
        assert!(parse_topics(Some("Device"), true).is_err());
        assert!(parse_topics(Some("device.a>b"), true).is_err());
    }
}
