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
                "Events read for live-event connections, by where they came from: `nats` \
                 (the relay's JetStream stream) or `store` (catch-up, gap filling and the \
                 fallback when NATS is unavailable).",
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
        registry.register(Box::new(lag.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            sse_clients,
            sse_events,
            sse_nats,
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

    /// Counts one event read for a live connection from `source` (`nats` or `store`).
    pub fn sse_event_from(&self, source: &str) {
        self.sse_events.with_label_values(&[source]).inc();
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

/// Middleware recording each request's count and latency under its route template.
pub async fn track(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(req).await;
    state.metrics().observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
