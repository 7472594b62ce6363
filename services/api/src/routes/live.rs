//! `GET /api/v1/events/stream`: live events as Server-Sent Events, for one tenant, filtered
//! by topic, fed by NATS so any API process serves any client, resumable with
//! `Last-Event-ID` (a global position).
//!
//! How a connection stays gap- and duplicate-free:
//! 1. An ordered JetStream consumer on `<prefix>.<tenant>.*.*` (the relay's subjects are
//!    `<prefix>.<tenant>.<category>.<type>`; a consumer's filter must lie inside the stream's
//!    `<prefix>.*.*.*`, so `<prefix>.<tenant>.>` would be refused; delivering only new messages)
//!    is created first, so everything the relay publishes from then on reaches us.
//! 2. The event store is read from the client's position up to its end (catch-up). Events
//!    the relay had published before step 1 are in there.
//! 3. Live messages at or below the last position sent are dropped (already sent). Every
//!    event names its tenant's previous position (`tenant_prev_position`); when a live event
//!    does not follow the last one sent, the store is read again to fill the hole before it
//!    is sent. NATS carries every event of the tenant (topic filtering happens here), so the
//!    chain is complete.
//! 4. When no message arrives for a keep-alive interval, the tenant's newest position in the
//!    store is compared with the last one sent, so a lost final message is noticed too.
//!
//! Without NATS (not configured, or it fails mid-stream) the connection falls back to a
//! catch-up subscription on the event store (LISTEN/NOTIFY plus polling).

use std::convert::Infallible;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, push};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use netledger_domain::{RecordedEvent, TenantId};
use netledger_store::{EventReader, Subscription};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Require;
use crate::authz::{Permission, perm, permission_for_category};
use crate::error::{ApiError, ApiResult, BadRequest};
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
    };
    tokio::spawn(live.run());
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
        let messages = match self.state.nats().cloned() {
            Some(client) => match self.subscribe(&client).await {
                Ok(m) => {
                    self.state.metrics().sse_nats_subscription("ok");
                    Some(m)
                }
                Err(e) => {
                    self.state.metrics().sse_nats_subscription("failed");
                    tracing::warn!(error = %e, "live events: NATS subscription failed; reading the event store instead");
                    None
                }
            },
            None => None,
        };
        if self.catch_up().await.is_err() {
            return;
        }
        if let Some(messages) = messages {
            match self.follow_nats(messages).await {
                Ok(()) | Err(FollowEnd::Gone) => return,
                Err(FollowEnd::Nats(e)) => {
                    tracing::warn!(error = %e, "live events: NATS stream failed; reading the event store instead");
                }
            }
        }
        let _ = self.follow_store().await;
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
        if !self.filter.admits(e) {
            return Ok(());
        }
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
                self.state.metrics().sse_event_from("store");
                self.send(e).await?;
            }
            if i64::try_from(batch.len()).unwrap_or(0) < CATCH_UP_BATCH {
                return Ok(());
            }
        }
    }

    async fn follow_nats(&mut self, mut messages: push::Ordered) -> Result<(), FollowEnd> {
        let idle = self.state.config().sse_keepalive;
        loop {
            let next = tokio::select! {
                m = messages.next() => m,
                _ = tokio::time::sleep(idle) => {
                    // Nothing for a while: make sure nothing was missed at the tail.
                    match self.reader.head_position().await {
                        Ok(head) if head > self.last => self.catch_up().await.map_err(|_| FollowEnd::Gone)?,
                        _ => {}
                    }
                    continue;
                }
                _ = self.tx.closed() => return Err(FollowEnd::Gone),
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(FollowEnd::Nats(e.to_string())),
                None => return Err(FollowEnd::Nats("consumer ended".to_owned())),
            };
            let event: RecordedEvent = match serde_json::from_slice(&msg.payload) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, subject = %msg.subject, "live events: undecodable message");
                    continue;
                }
            };
            if event.tenant_id != self.tenant || event.position <= self.last {
                continue;
            }
            self.state.metrics().sse_event_from("nats");
            if event.tenant_prev_position > self.last {
                // Something between the last event sent and this one did not arrive (or
                // arrived before the consumer existed): the store has it.
                self.catch_up().await.map_err(|_| FollowEnd::Gone)?;
            }
            self.send(&event).await.map_err(|_| FollowEnd::Gone)?;
        }
    }

    async fn follow_store(&mut self) -> Result<(), Gone> {
        let mut sub = Subscription::new(self.reader.clone(), self.last, CATCH_UP_BATCH)
            .poll_interval(Duration::from_millis(500));
        let pool = self.state.pools().app.clone();
        loop {
            let batch = tokio::select! {
                b = sub.next_batch(&pool) => b,
                _ = self.tx.closed() => return Err(Gone),
            };
            match batch {
                Ok(events) => {
                    for e in &events {
                        self.state.metrics().sse_event_from("store");
                        self.send(e).await?;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "live events: store subscription failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    sub = Subscription::new(self.reader.clone(), self.last, CATCH_UP_BATCH);
                }
            }
        }
    }
}

enum FollowEnd {
    Gone,
    Nats(String),
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
