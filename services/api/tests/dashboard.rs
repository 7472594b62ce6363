//! The shipped Grafana dashboard (`compose/grafana/netledger-dashboard.json`) may only query
//! metrics the API really exports: every `netledger_*` name in a panel or variable query must
//! be a family of the API's exposition text (rendered here from `Metrics`, no database), a
//! histogram only through `_bucket`/`_sum`/`_count`, and every label a selector names must be
//! one the family carries (or one Prometheus adds: `instance`, `job`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use netledger_api::{ApiConfig, ApiDeps, ApiState};
use netledger_domain::clock::{Clock, ManualClock};
use netledger_store::{EventStore, Pools, StoreOptions};
use serde_json::Value;
use tower::ServiceExt as _;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../compose/grafana/netledger-dashboard.json"
);

/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

/// One metric family of the exposition: its type and label names.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
}

/// The API's exposition text with every family present: a state on pools that never connect
/// (nothing here touches the database), one request through the router (the request counter
/// and latency histogram), one value of each labelled live-event counter and a lag gauge.
async fn exposition() -> String {
    let lazy = || {
        sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .unwrap()
    };
    let pools = Pools {
        app: lazy(),
        system: lazy(),
    };
    let store = EventStore::start(pools.app.clone(), StoreOptions::default());
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let state = ApiState::new(ApiDeps::new(pools, store, clock), ApiConfig::development()).unwrap();
    let (router, _) = netledger_api::router(state.clone());
    let live = router
        .oneshot(Request::get("/health/live").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let m = state.metrics();
    m.sse_event_from("store");
    m.sse_wakeup("nats");
    m.sse_nats_subscription("ok");
    m.set_lag("nats-relay", 0);
    m.render()
}

/// Families of a text exposition by name.
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.entry(name.to_owned()).or_default().kind = kind.trim().to_owned();
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let series = &line[..name_end];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| series.strip_suffix(s))
                .find(|base| out.get(*base).is_some_and(|f| f.kind == "histogram"))
                .unwrap_or(series)
                .to_owned();
            let entry = out.entry(family).or_default();
            if let Some(labels) = selector_body(&line[name_end..]) {
                entry.labels.extend(label_names(labels));
            }
        }
    }
    out
}

/// The body of the selector `text` starts with (`{...}`), up to the first `}` outside a
/// quoted label value (route templates carry braces: `/devices/{device_id}`).
fn selector_body(text: &str) -> Option<&str> {
    let body = text.strip_prefix('{')?;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(&body[..i]),
            _ => {}
        }
    }
    None
}

/// The label names of a selector body (`a="x",b=~"y"`), quoted values skipped.
fn label_names(body: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = body.chars().peekable();
    let mut current = String::new();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Skip the quoted value (with escapes).
                while let Some(v) = chars.next() {
                    match v {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '=' | '!' | '~' => {
                if !current.trim().is_empty() {
                    names.push(current.trim().to_owned());
                }
                current.clear();
            }
            ',' => current.clear(),
            _ => current.push(c),
        }
    }
    names
}

/// Every `netledger_[a-z0-9_]+` token of `expr` (not part of a longer identifier), with the
/// body of the selector that follows it directly, if any.
fn metric_tokens(expr: &str) -> Vec<(String, Option<String>)> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(found) = expr[i..].find("netledger_") {
        let start = i + found;
        let glued = start > 0 && {
            let b = bytes[start - 1];
            b.is_ascii_alphanumeric() || b == b'_' || b == b':'
        };
        let mut end = start + "netledger_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if !glued {
            let selector = selector_body(&expr[end..]).map(str::to_owned);
            out.push((expr[start..end].to_owned(), selector));
        }
        i = end;
    }
    out
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut todo: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(p) = todo.pop() {
        if let Some(nested) = p["panels"].as_array() {
            todo.extend(nested);
        }
        out.push(p);
    }
    out
}

/// Every PromQL text of the dashboard: panel target `expr`s and query-variable queries, each
/// with where it is.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(dashboard) {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = t["expr"].as_str() {
                let title = p["title"].as_str().unwrap_or("?");
                let ref_id = t["refId"].as_str().unwrap_or("?");
                out.push((format!("panel {title:?} ({ref_id})"), expr.to_owned()));
            }
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] == "query" {
            let q = v["query"]["query"]
                .as_str()
                .or_else(|| v["query"].as_str())
                .unwrap_or_default();
            let name = v["name"].as_str().unwrap_or("?");
            out.push((format!("variable {name:?}"), q.to_owned()));
        }
    }
    out
}

/// What is wrong with one metric token of a query, if anything.
fn check_token(
    families: &BTreeMap<String, Family>,
    token: &str,
    selector: Option<&str>,
) -> Option<String> {
    let histogram_part = ["_bucket", "_sum", "_count"].iter().find_map(|s| {
        token
            .strip_suffix(s)
            .filter(|base| families.get(*base).is_some_and(|f| f.kind == "histogram"))
            .map(|base| (base, *s))
    });
    let (family, suffix) = match (families.get(token), histogram_part) {
        (_, Some((base, suffix))) => (&families[base], suffix),
        (Some(f), None) if f.kind == "histogram" => {
            return Some(format!(
                "`{token}` is a histogram: query `{token}_bucket`, `_sum` or `_count`"
            ));
        }
        (Some(f), None) => (f, ""),
        (None, None) => return Some(format!("`{token}` is not a metric the API exports")),
    };
    let unknown: Vec<String> = label_names(selector.unwrap_or_default())
        .into_iter()
        .filter(|l| {
            let known = family.labels.contains(l)
                || TARGET_LABELS.contains(&l.as_str())
                || (suffix == "_bucket" && l == "le");
            !known
        })
        .collect();
    (!unknown.is_empty()).then(|| {
        format!(
            "`{token}` has no label {unknown:?} (its labels: {:?})",
            family.labels
        )
    })
}

#[tokio::test]
async fn the_dashboard_queries_only_metrics_the_api_exports() {
    let text = exposition().await;
    let families = families(&text);
    let exported: Vec<&String> = families.keys().collect();
    // The exposition really has the API's families (a broken setup must not pass vacuously).
    for name in [
        "netledger_http_requests_total",
        "netledger_http_request_duration_seconds",
        "netledger_sse_clients",
        "netledger_subscriber_lag_events",
    ] {
        assert!(families.contains_key(name), "{name} missing from:\n{text}");
    }

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let queries = queries(&dashboard);
    assert!(queries.len() >= 10, "too few queries found: {queries:?}");
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (place, expr) in &queries {
        let tokens = metric_tokens(expr);
        if tokens.is_empty() {
            problems.push(format!("{place}: no netledger_ metric in `{expr}`"));
        }
        for (token, selector) in tokens {
            match check_token(&families, &token, selector.as_deref()) {
                Some(problem) => problems.push(format!("{place}: {problem}")),
                None => {
                    used.insert(token);
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the dashboard queries what the API does not export:\n  {}\nexported families: {exported:?}",
        problems.join("\n  ")
    );
    assert!(!used.is_empty());
}

#[test]
fn the_dashboard_imports_cleanly() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    assert_eq!(dashboard["uid"], "netledger-overview");
    assert_eq!(dashboard["title"], "Netledger");
    assert_eq!(dashboard["schemaVersion"], 39);
    let inputs = dashboard["__inputs"].as_array().unwrap();
    assert!(
        inputs
            .iter()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "{inputs:?}"
    );
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource"),
        "{variables:?}"
    );
    let mut ids = BTreeSet::new();
    for p in panels(&dashboard) {
        let id = p["id"].as_u64().unwrap();
        assert!(ids.insert(id), "panel id {id} twice");
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{p}");
        for t in p["targets"].as_array().into_iter().flatten() {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{p}");
        }
        if p["targets"].is_array() {
            assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{p}");
        }
    }
}

#[test]
fn tokens_and_selectors_are_read_as_promql() {
    assert_eq!(
        metric_tokens(
            r#"sum(rate(netledger_a_total{route!="/x{y}",status=~"5.."}[5m])) / xnetledger_b"#
        ),
        vec![(
            "netledger_a_total".to_owned(),
            Some(r#"route!="/x{y}",status=~"5..""#.to_owned())
        )]
    );
    assert_eq!(
        label_names(r#"instance=~"$instance",status!~"4..",le="0.5""#),
        ["instance", "status", "le"]
    );
}
