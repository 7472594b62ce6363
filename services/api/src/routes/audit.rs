//! `/api/v1/audit`: the audit feed (one line per event, newest first), the tenant's signed
//! checkpoints, verification of its hash chains against them, and the audit bundle download
//! (format v2, `docs/auditing.md`). Downloads and verification runs are security events.

use axum::extract::State;
use netledger_domain::audit::TrustedKeys;
use netledger_projections::query;
use netledger_store::EventReader;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use netledger_domain::identity::security::{AuditBundleExported, AuditVerificationRun};
use sha2::Digest as _;

use crate::auth::Require;
use crate::authz::perm;
use crate::error::{ApiError, ApiResult, BadRequest};
use crate::http::{Json, Query, RequestId};
use crate::ratelimit::ClientIp;
use crate::routes::devices::{unwrap_cursor, wrap_cursor};
use crate::state::ApiState;

pub(crate) fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(audit_feed))
        .routes(routes!(audit_feed_csv))
        .routes(routes!(list_checkpoints))
        .routes(routes!(verify_history))
        .routes(routes!(export_bundle))
        .routes(routes!(audit_report))
}

/// The query of a report.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// Start of the range (RFC 3339; default: the first event).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<OffsetDateTime>,
    /// End of the range (RFC 3339; default: now). The inventory is the fleet as of it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<OffsetDateTime>,
    /// `csv` (default) or `pdf`.
    #[param(inline)]
    pub format: Option<ReportFormat>,
}

/// A report's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// Comma-separated values.
    Csv,
    /// A PDF document.
    Pdf,
}

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReportKind {
    /// What changed on which device, when, by whom, under which change request and
    /// approvals.
    ChangeLog,
    /// The fleet as of the range's end.
    Inventory,
    /// The history verified now, and the checkpoints of the range.
    Verification,
}

/// An auditor's report for a time range, as CSV or PDF: `change-log` (every config change
/// of a device: when, which device, push/drift/restore, the commit, who, the change request,
/// its author and approvers), `inventory` (the fleet as of `to`, from the events) or
/// `verification` (the history verified now, and the checkpoints of the range).
#[utoipa::path(
    get,
    path = "/audit/reports/{kind}",
    operation_id = "audit_report",
    tag = "audit",
    security(("bearer" = ["audit:read"])),
    params(("kind" = inline(ReportKind), Path, description = "`change-log`, `inventory` or `verification`."), ReportParams),
    responses(
        (status = 200, description = "The report (`text/csv` or `application/pdf`, as an attachment).", content((String = "text/csv"), (Vec<u8> = "application/pdf"))),
        (status = 400, response = BadRequest),
        (status = 503, response = crate::error::Unavailable),
    )
)]
pub async fn audit_report(
    State(state): State<ApiState>,
    auth: Require<perm::AuditRead>,
    crate::http::Path(kind): crate::http::Path<ReportKind>,
    Query(q): Query<ReportParams>,
) -> ApiResult<axum::response::Response> {
    use netledger_audit::reports;
    let tenant = auth.principal().tenant;
    // A range that ends before it starts is an empty range (no rows), not an error.
    let now = state.now();
    let report_err = |e: reports::ReportError| match e {
        reports::ReportError::Store(e) => ApiError::from(e),
        other => ApiError::internal(other.to_string()),
    };
    let app = &state.pools().app;
    let (report, name) = match kind {
        ReportKind::ChangeLog => (
            reports::change_log(app, tenant, q.from, q.to)
                .await
                .map_err(report_err)?,
            "change-log",
        ),
        ReportKind::Inventory => {
            let archive = state.archive().cloned().ok_or_else(|| {
                ApiError::unavailable("the config history (archive) is not configured")
            })?;
            (
                reports::inventory(app, &archive, tenant, q.to.unwrap_or(now))
                    .await
                    .map_err(report_err)?,
                "inventory",
            )
        }
        ReportKind::Verification => (
            reports::verification(
                app,
                &state.pools().system,
                tenant,
                state.audit_key(),
                q.from,
                q.to,
                now,
            )
            .await
            .map_err(report_err)?,
            "verification",
        ),
    };
    let (bytes, content_type, ext) = match q.format.unwrap_or(ReportFormat::Csv) {
        ReportFormat::Csv => (
            report.to_csv().map_err(report_err)?,
            "text/csv; charset=utf-8",
            "csv",
        ),
        ReportFormat::Pdf => (report.to_pdf(now), "application/pdf", "pdf"),
    };
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, content_type)
        .header(
            axum::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"netledger-{name}.{ext}\""),
        )
        .body(axum::body::Body::from(bytes))
        .map_err(|e| ApiError::internal(format!("response: {e}")))
}

/// One line of the audit feed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryDto {
    /// Global position.
    pub position: i64,
    /// Recorded at.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// Stream.
    pub stream: String,
    /// Category.
    pub category: String,
    /// Event type.
    pub event_type: String,
    /// Schema version.
    pub schema_version: u32,
    /// Event id.
    pub event_id: Uuid,
    /// Actor (`user:<id>`, `api_key:<id>`, `system:<component>`).
    pub actor: String,
    /// The actor's name as it was at the event (`Name <e-mail>` for a user, the key's name
    /// for an API key); absent for system components.
    pub actor_name: Option<String>,
    /// What the event is about (`device:<id>`, `user:<id>`, `api_key:<id>`,
    /// `change_request:<id>`, `rollout:<id>`); absent when it names none.
    pub subject: Option<String>,
    /// The subject's name as it was at the event.
    pub subject_name: Option<String>,
    /// Correlation id.
    pub correlation_id: Uuid,
    /// Causation id.
    pub causation_id: Uuid,
    /// One-line summary.
    pub summary: String,
    /// Part of an emergency (break-glass) change request (its own events and everything
    /// correlated with it).
    pub emergency: bool,
}

/// A page of the audit feed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Entries, newest first.
    pub items: Vec<AuditEntryDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Filters of the audit feed.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this stream.
    pub stream: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only this actor (as shown in entries: `user:<id>`, `api_key:<id>`,
    /// `system:<component>`): what a user or an API key did.
    pub actor: Option<String>,
    /// Only events about this subject (as shown in entries: `device:<id>`, `user:<id>`,
    /// `api_key:<id>`, `change_request:<id>`, `rollout:<id>`): what was done to it.
    pub subject: Option<String>,
    /// Only this device (its stream `device-<id>`).
    pub device: Option<Uuid>,
    /// Only this correlation id: a change request's id gives the request, its approvals,
    /// run, rollout, per-device workflows and device events.
    pub correlation_id: Option<Uuid>,
    /// Only entries recorded at or after this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<OffsetDateTime>,
    /// Only entries recorded at or before this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<OffsetDateTime>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Entries per page (default 50, at most 500).
    pub limit: Option<u32>,
}

/// The feed query of the parameters; `None` when they cannot match anything (`stream` and
/// `device` naming different streams).
fn feed_query(q: AuditParams) -> ApiResult<Option<query::AuditQuery>> {
    let stream = match (q.stream, q.device) {
        (Some(s), Some(d)) if s != format!("device-{d}") => return Ok(None),
        (s, d) => s.or(d.map(|d| format!("device-{d}"))),
    };
    Ok(Some(query::AuditQuery {
        stream,
        category: q.category,
        event_type: q.event_type,
        actor: q.actor,
        subject: q.subject,
        correlation_id: q.correlation_id,
        from: q.from,
        to: q.to,
        cursor: unwrap_cursor(&q.cursor)?,
        limit: q.limit.map(i64::from),
    }))
}

/// Rows at most in one CSV export.
const CSV_MAX_ROWS: usize = 100_000;

/// The audit feed as CSV (same filters as the feed; newest first; at most 100 000 rows, the
/// last line says when the view was cut). Columns: position, recorded_at, event_type,
/// stream, category, actor, actor_name, subject, subject_name, summary, correlation_id,
/// causation_id, event_id, emergency (names as they were at the event).
#[utoipa::path(
    get,
    path = "/audit/feed.csv",
    operation_id = "audit_feed_csv",
    tag = "audit",
    security(("bearer" = ["audit:read"])),
    params(AuditParams),
    responses((status = 200, description = "The filtered view as CSV (`text/csv`).", content_type = "text/csv", body = String), (status = 400, response = BadRequest))
)]
pub async fn audit_feed_csv(
    State(state): State<ApiState>,
    auth: Require<perm::AuditRead>,
    Query(q): Query<AuditParams>,
) -> ApiResult<axum::response::Response> {
    let tenant = auth.principal().tenant;
    let Some(mut query) = feed_query(q)? else {
        return csv_response(Vec::new(), false);
    };
    query.limit = Some(500);
    let mut entries = Vec::new();
    let mut cut = false;
    loop {
        let page = query::audit_feed(&state.pools().app, tenant, &query).await?;
        for a in page.items {
            if entries.len() == CSV_MAX_ROWS {
                cut = true;
                break;
            }
            entries.push(a);
        }
        match page.next_cursor {
            Some(c) if !cut => query.cursor = Some(c),
            _ => break,
        }
    }
    csv_response(entries, cut)
}

fn csv_response(entries: Vec<query::AuditEntry>, cut: bool) -> ApiResult<axum::response::Response> {
    let csv_err = |e: csv::Error| ApiError::internal(format!("csv: {e}"));
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    w.write_record([
        "position",
        "recorded_at",
        "event_type",
        "stream",
        "category",
        "actor",
        "actor_name",
        "subject",
        "subject_name",
        "summary",
        "correlation_id",
        "causation_id",
        "event_id",
        "emergency",
    ])
    .map_err(csv_err)?;
    for a in &entries {
        let at = a
            .recorded_at
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| ApiError::internal(format!("time: {e}")))?;
        w.write_record([
            a.position.to_string(),
            at,
            a.event_type.clone(),
            a.stream.clone(),
            a.category.clone(),
            a.actor.clone(),
            a.actor_name.clone().unwrap_or_default(),
            a.subject.clone().unwrap_or_default(),
            a.subject_name.clone().unwrap_or_default(),
            a.summary.clone(),
            a.correlation_id.to_string(),
            a.causation_id.to_string(),
            a.event_id.to_string(),
            a.emergency.to_string(),
        ])
        .map_err(csv_err)?;
    }
    if cut {
        w.write_record([format!("# cut at {CSV_MAX_ROWS} rows: narrow the filters")])
            .map_err(csv_err)?;
    }
    let body = w
        .into_inner()
        .map_err(|e| ApiError::internal(format!("csv: {e}")))?;
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "text/csv; charset=utf-8")
        .header(
            axum::http::header::CONTENT_DISPOSITION,
            "attachment; filename=\"netledger-audit-feed.csv\"",
        )
        .body(axum::body::Body::from(body))
        .map_err(|e| ApiError::internal(format!("response: {e}")))
}

/// The audit feed: who did what, newest first.
#[utoipa::path(
    get,
    path = "/audit/feed",
    operation_id = "audit_feed",
    tag = "audit",
    security(("bearer" = ["audit:read"])),
    params(AuditParams, crate::http::MinPosition),
    responses((status = 200, description = "A page of entries (`Netledger-Projection-Behind: true` when `min_position` was not reached in time).", body = AuditPage), (status = 400, response = BadRequest))
)]
pub async fn audit_feed(
    State(state): State<ApiState>,
    auth: Require<perm::AuditRead>,
    Query(q): Query<AuditParams>,
    Query(mp): Query<crate::http::MinPosition>,
) -> ApiResult<(axum::http::HeaderMap, Json<AuditPage>)> {
    // the feed and the emergency flags it takes from the change requests
    let behind = crate::http::read_your_writes(
        &state,
        &[
            netledger_projections::projector::AUDIT,
            netledger_projections::projector::CHANGE_REQUESTS,
        ],
        mp.min_position,
    )
    .await?;
    let page = match feed_query(q)? {
        Some(query) => {
            query::audit_feed(&state.pools().app, auth.principal().tenant, &query).await?
        }
        None => query::Page {
            items: Vec::new(),
            next_cursor: None,
        },
    };
    Ok((
        behind,
        Json(AuditPage {
            items: page
                .items
                .into_iter()
                .map(|a| AuditEntryDto {
                    position: a.position,
                    recorded_at: a.recorded_at,
                    stream: a.stream,
                    category: a.category,
                    event_type: a.event_type,
                    schema_version: a.schema_version,
                    event_id: a.event_id,
                    actor: a.actor,
                    actor_name: a.actor_name,
                    subject: a.subject,
                    subject_name: a.subject_name,
                    correlation_id: a.correlation_id,
                    causation_id: a.causation_id,
                    summary: a.summary,
                    emergency: a.emergency,
                })
                .collect(),
            next_cursor: wrap_cursor(page.next_cursor),
        }),
    ))
}

/// A signed checkpoint over a range of the tenant's events.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckpointDto {
    /// Sequence number within the tenant.
    pub seq: i64,
    /// First global position covered.
    pub from_position: i64,
    /// Last global position covered.
    pub to_position: i64,
    /// Events covered.
    pub event_count: i64,
    /// Hex digest.
    pub digest: String,
    /// Signing key id.
    pub key_id: String,
    /// Hex ed25519 signature of the digest.
    pub signature: String,
    /// The full checkpoint as the offline verifier reads it.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}

/// The tenant's checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckpointList {
    /// Checkpoints in sequence order.
    pub items: Vec<CheckpointDto>,
}

/// The tenant's signed audit checkpoints.
#[utoipa::path(
    get,
    path = "/audit/checkpoints",
    operation_id = "list_checkpoints",
    tag = "audit",
    security(("bearer" = ["audit:read"])),
    responses((status = 200, description = "The checkpoints.", body = CheckpointList))
)]
pub async fn list_checkpoints(
    State(state): State<ApiState>,
    auth: Require<perm::AuditRead>,
) -> ApiResult<Json<CheckpointList>> {
    // The system pool, narrowed to the caller's tenant explicitly.
    let cps = netledger_store::audit::load_checkpoints(
        &state.pools().system,
        Some(auth.principal().tenant),
    )
    .await?;
    let items = cps
        .into_iter()
        .map(|c| {
            Ok(CheckpointDto {
                seq: c.body.seq,
                from_position: c.body.from_position,
                to_position: c.body.to_position,
                event_count: c.body.event_count,
                digest: hex::encode(c.digest),
                key_id: c.key_id.clone(),
                signature: c.signature.clone(),
                document: serde_json::to_value(&c)
                    .map_err(|e| ApiError::internal(format!("encode checkpoint: {e}")))?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(CheckpointList { items }))
}

/// The result of verifying the tenant's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyResult {
    /// Whether every check passed.
    pub ok: bool,
    /// Events checked.
    pub events: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Last position covered by a verified signed checkpoint.
    pub signed_through: i64,
    /// Last event position seen.
    pub last_position: i64,
    /// Whether signatures were checked (the API was given the public key).
    pub signatures_checked: bool,
    /// The first problem found, if any.
    pub problem: Option<String>,
    /// Its position.
    pub problem_position: Option<i64>,
}

/// Events read (and held) at a time by `/audit/verify`.
const VERIFY_PAGE: i64 = 1_000;

/// Verify the tenant's whole history: every hash chain, and the signed checkpoints.
#[utoipa::path(
    get,
    path = "/audit/verify",
    operation_id = "verify_history",
    tag = "audit",
    security(("bearer" = ["audit:read"])),
    responses((status = 200, description = "The verification result (`ok` false names the first problem).", body = VerifyResult))
)]
pub async fn verify_history(
    State(state): State<ApiState>,
    auth: Require<perm::AuditRead>,
    ClientIp(ip): ClientIp,
    rid: RequestId,
) -> ApiResult<Json<VerifyResult>> {
    let tenant = auth.principal().tenant;
    let reader = EventReader::tenant(state.pools().app.clone(), tenant);
    let (checkpoints, key, signatures_checked) = match state.audit_key() {
        Some(k) => (
            netledger_store::audit::load_checkpoints(&state.pools().system, Some(tenant)).await?,
            k.clone(),
            true,
        ),
        // Without the public key only the chains are checked: no checkpoint is passed, so
        // the empty key set verifies nothing.
        None => (Vec::new(), TrustedKeys::default(), false),
    };
    // Page by page: memory stays bounded however long the history is.
    let result =
        netledger_store::audit::verify_history(&reader, &checkpoints, key, VERIFY_PAGE, |_| {})
            .await?;
    let result = match result {
        Ok(r) => VerifyResult {
            ok: true,
            events: r.events,
            checkpoints: r.checkpoints,
            signed_through: r.signed_through,
            last_position: r.last_position,
            signatures_checked,
            problem: None,
            problem_position: None,
        },
        Err(t) => VerifyResult {
            ok: false,
            events: 0,
            checkpoints: 0,
            signed_through: 0,
            last_position: 0,
            signatures_checked,
            problem: Some(t.to_string()),
            problem_position: Some(t.position()),
        },
    };
    let run = AuditVerificationRun {
        ok: result.ok,
        events: result.events,
        checkpoints: result.checkpoints,
        signed_through: result.signed_through,
        problem_position: result.problem_position,
        source: ip,
    };
    let meta = rid.metadata(auth.principal().actor());
    crate::security::record(&state, tenant, run.into(), &meta).await?;
    Ok(Json(result))
}

/// The range of an audit bundle download: a position or a time for each end (a position
/// wins when both are given).
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// Start: a global position, widened to the start of the checkpoint that covers it.
    /// Default: the tenant's first event.
    #[param(minimum = 0)]
    pub from: Option<i64>,
    /// End: a global position, widened to the end of its checkpoint. Default: the newest.
    #[param(minimum = 0)]
    pub to: Option<i64>,
    /// Start as a time (RFC 3339): the first event recorded at or after it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from_time: Option<OffsetDateTime>,
    /// End as a time (RFC 3339): the last event recorded at or before it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to_time: Option<OffsetDateTime>,
    /// Only these devices (comma-separated ids): the events of every other device's stream
    /// are hash-only stubs, so the bundle still verifies (docs/auditing.md §3.1). The config
    /// history stays whole. A device without events in the tenant: 404; an empty list: 400.
    #[param(
        pattern = r"^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(,[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})*$"
    )]
    pub devices: Option<String>,
}

fn bound(
    name: &str,
    position: Option<i64>,
    time: Option<OffsetDateTime>,
) -> ApiResult<Option<netledger_audit::Bound>> {
    match (position, time) {
        (Some(p), _) if p < 0 => Err(ApiError::bad_request(format!(
            "`{name}` is a position: 0 or more"
        ))),
        (Some(p), _) => Ok(Some(netledger_audit::Bound::Position(p))),
        (None, Some(t)) => Ok(Some(netledger_audit::Bound::Time(t))),
        (None, None) => Ok(None),
    }
}

/// Download the tenant's audit bundle (format v2, a tar file: docs/auditing.md): events of
/// the range in canonical form, every checkpoint through it, the signing keys with their
/// hand-overs, the newest checkpoint published outside PostgreSQL and the config history as
/// a git bundle. Verify it offline with `netledger audit verify FILE --trusted-key KEY`.
/// The download is recorded (`AuditBundleExported`, with the file's SHA-256, which the
/// `Netledger-Bundle-Sha256` header repeats).
#[utoipa::path(
    get,
    path = "/audit/export",
    operation_id = "export_audit_bundle",
    tag = "audit",
    security(("bearer" = ["audit:export"])),
    params(ExportParams),
    responses(
        (status = 200, description = "The bundle, streamed (`Content-Disposition: attachment`).", content_type = "application/x-tar", body = Vec<u8>),
        (status = 400, response = BadRequest),
        (status = 404, description = "A device of `devices` has no events in this tenant.", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "This API process has no config archive or no audit public key to build a bundle with.", body = crate::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn export_bundle(
    State(state): State<ApiState>,
    auth: Require<perm::AuditExport>,
    ClientIp(ip): ClientIp,
    rid: RequestId,
    Query(q): Query<ExportParams>,
) -> ApiResult<axum::response::Response> {
    use std::io::{Seek as _, Write as _};
    let tenant = auth.principal().tenant;
    let req = netledger_audit::ExportRequest {
        tenant,
        from: bound("from", q.from, q.from_time)?,
        to: bound("to", q.to, q.to_time)?,
        created_at: state.now(),
    };
    let archive = state
        .archive()
        .ok_or_else(|| ApiError::unavailable("this API process has no config archive (data_dir)"))?
        .clone();
    let keys = state.audit_key().cloned().unwrap_or_default();
    // Spooled to an unnamed temporary file (memory stays bounded), then streamed.
    let spool = tempfile::tempfile().map_err(|e| ApiError::internal(format!("spool: {e}")))?;
    let mut out = std::io::BufWriter::new(spool);
    let devices = match q.devices.as_deref().map(str::trim) {
        None => None,
        // An empty filter is a mistake, not "every device": say so rather than export all.
        Some("") => {
            return Err(ApiError::bad_request(
                "`devices` is empty: give one or more device ids separated by commas, or \
                 leave `devices` out for the whole tenant",
            ));
        }
        Some(list) => Some(
            list.parse::<netledger_audit::DeviceFilter>()
                .map_err(|e| ApiError::bad_request(format!("`devices`: {e}")))?,
        ),
    };
    let options = netledger_audit::ExportOptions { devices };
    let summary = netledger_audit::export_with(
        &state.pools().system,
        &archive,
        &keys,
        req,
        &options,
        &mut out,
    )
    .await
    .map_err(|e| match e {
        netledger_audit::BundleError::UnknownDevice(d) => {
            ApiError::not_found(format!("device {d} (no events in this tenant)"))
        }
        netledger_audit::BundleError::EmptyRange => ApiError::bad_request(e.to_string()),
        netledger_audit::BundleError::NoPublicKey(_) => ApiError::unavailable(e.to_string()),
        other => ApiError::internal(format!("audit export: {other}")),
    })?;
    out.flush()
        .map_err(|e| ApiError::internal(format!("spool: {e}")))?;
    let mut spool = out
        .into_inner()
        .map_err(|e| ApiError::internal(format!("spool: {e}")))?;
    spool
        .rewind()
        .map_err(|e| ApiError::internal(format!("spool: {e}")))?;
    let mut hasher = sha2::Sha256::new();
    let bytes = std::io::copy(&mut spool, &mut hasher)
        .map_err(|e| ApiError::internal(format!("spool: {e}")))?;
    let sha256 = hex::encode(sha2::Digest::finalize(hasher));
    spool
        .rewind()
        .map_err(|e| ApiError::internal(format!("spool: {e}")))?;
    let exported = AuditBundleExported {
        from_position: summary.from_position,
        to_position: summary.to_position,
        events: summary.events,
        checkpoints: u64::try_from(summary.checkpoints).unwrap_or(u64::MAX),
        bytes,
        sha256: sha256.clone(),
        source: ip,
        devices: options
            .devices
            .as_ref()
            .map(|f| f.devices().copied().collect()),
    };
    let meta = rid.metadata(auth.principal().actor());
    crate::security::record(&state, tenant, exported.into(), &meta).await?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(
        tokio::fs::File::from_std(spool),
    ));
    let name = format!(
        "netledger-audit-{tenant}-{}.nlaudit.tar",
        summary
            .to_position
            .map_or("newest".to_owned(), |t| t.to_string())
    );
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, "application/x-tar")
        .header(axum::http::header::CONTENT_LENGTH, bytes)
        .header(
            axum::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .header("netledger-bundle-sha256", sha256)
        .body(body)
        .map_err(|e| ApiError::internal(format!("response: {e}")))
}
