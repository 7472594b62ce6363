//! Prometheus metrics: request counts and latency histograms per route (the route template,
//! never the raw path, so ids do not explode the label set), live-event clients, and
//! subscriber lag gauges refreshed at each scrape. Other components register their own
//! collectors in [`Metrics::registry`].

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::state::ApiState;

/// The API's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    sse_clients: IntGauge,
    sse_events: IntCounterVec,
    sse_nats: IntCounterVec,
    sse_wakeups: IntCounterVec,
    lag: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Creates and registers the API's collectors in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "netledger_http_requests_total",
                "HTTP requests by method, route template and status.",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "netledger_http_request_duration_seconds",
                "HTTP request latency by method and route template (to the response head).",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route"],
        )?;
        let sse_clients = IntGauge::new(
            "netledger_sse_clients",
            "Open live-event (SSE) connections on this process.",
        )?;
        let sse_events = IntCounterVec::new(
            Opts::new(
                "netledger_sse_events_total",
                "Events sent to live-event connections, by where they were read: always \
                 `store` (the event store, tenant-scoped; NATS only wakes the reader up).",
            ),
            &["source"],
        )?;
        let sse_wakeups = IntCounterVec::new(
            Opts::new(
                "netledger_sse_wakeups_total",
                "Reads of the event store by live-event connections, by what woke them: `nats` \
                 (a message on the tenant's subjects), `database` (the process's shared \
                 LISTEN, when NATS is unavailable) or `poll` (idle interval).",
            ),
            &["source"],
        )?;
        let sse_nats = IntCounterVec::new(
            Opts::new(
                "netledger_sse_nats_subscriptions_total",
                "JetStream consumers live-event connections created (`ok`) or could not create \
                 (`failed`: the connection reads the event store instead).",
            ),
            &["result"],
        )?;
        let lag = IntGaugeVec::new(
            Opts::new(
                "netledger_subscriber_lag_events",
                "Events between the newest global position and each subscriber's checkpoint.",
            ),
            &["subscriber"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(sse_clients.clone()))?;
        registry.register(Box::new(sse_events.clone()))?;
        registry.register(Box::new(sse_nats.clone()))?;
        registry.register(Box::new(sse_wakeups.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            sse_clients,
            sse_events,
            sse_nats,
            sse_wakeups,
            lag,
        })
    }

    /// The registry, for other components' collectors (projection lag, worker queues).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The gauge of open SSE connections.
    pub fn sse_clients(&self) -> &IntGauge {
        &self.sse_clients
    }

    /// Counts one event sent to a live connection, read from `source` (`store`).
    pub fn sse_event_from(&self, source: &str) {
        self.sse_events.with_label_values(&[source]).inc();
    }

    /// Counts one wake-up of a live connection by `source` (`nats`, `database`, `poll`).
    pub fn sse_wakeup(&self, source: &str) {
        self.sse_wakeups.with_label_values(&[source]).inc();
    }

    /// Counts one attempt of a live connection to subscribe to NATS (`ok` or `failed`).
    pub fn sse_nats_subscription(&self, result: &str) {
        self.sse_nats.with_label_values(&[result]).inc();
    }

    /// Sets the lag gauge of one subscriber.
    pub fn set_lag(&self, subscriber: &str, events: i64) {
        self.lag.with_label_values(&[subscriber]).set(events);
    }

    /// The text exposition of every registered collector.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(seconds);
    }
}

/// The method as a label: the standard methods by name, anything else `other` (a client
/// choosing the method must not be able to grow the label set).
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Middleware recording each request's count and latency under its route template.
pub async fn track(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    state.metrics().observe(
        method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
