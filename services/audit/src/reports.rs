//! Auditors' reports for a time range, as CSV (the `csv` crate) and PDF (`pdf-writer`, the
//! typst project's PDF writer; base-14 Courier, so nothing is embedded): the change log (what
//! changed on which device, when, by whom, under which change request and approvals), the
//! device inventory (the fleet as of the range's end, from the events) and the audit
//! verification report (the hash chains and signed checkpoints checked now).

use std::collections::HashMap;

use netledger_archive::Archive;
use netledger_domain::audit::TrustedKeys;
use netledger_domain::ids::{DeviceId, TenantId};
use netledger_store::{EventReader, begin_tenant};
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::as_of::{AsOfError, fleet_as_of};

/// Rows at most in one report.
pub const MAX_ROWS: i64 = 100_000;

/// A report: a title, header lines and a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Title.
    pub title: String,
    /// Lines under the title (range, tenant, outcome).
    pub header: Vec<String>,
    /// Column names.
    pub columns: Vec<&'static str>,
    /// Rows, each as many cells as columns.
    pub rows: Vec<Vec<String>>,
}

/// Why a report could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The database failed.
    #[error("report query: {0}")]
    Db(#[from] sqlx::Error),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] netledger_store::StoreError),
    /// Time travel failed.
    #[error(transparent)]
    AsOf(#[from] AsOfError),
    /// Encoding the output failed.
    #[error("report encoding: {0}")]
    Encode(String),
}

fn time_text(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn range_text(from: Option<OffsetDateTime>, to: Option<OffsetDateTime>) -> String {
    format!(
        "range: {} .. {}",
        from.map_or("the first event".to_owned(), time_text),
        to.map_or("now".to_owned(), time_text)
    )
}

/// The tenant's name histories (`rm_audit_names`, kept by the audit projector): subject
/// (`user:<id>`, `api_key:<id>`, `device:<id>`, ...) to its names, oldest first, each with
/// the position it was given at.
struct NameHistory(HashMap<String, Vec<(i64, String)>>);

impl NameHistory {
    async fn load(tx: &mut sqlx::PgConnection, tenant: TenantId) -> Result<Self, sqlx::Error> {
        let mut names: HashMap<String, Vec<(i64, String)>> = HashMap::new();
        for row in sqlx::query(
            "SELECT subject, from_position, name, email FROM rm_audit_names \
             WHERE tenant_id = $1 ORDER BY from_position",
        )
        .bind(tenant.as_uuid())
        .fetch_all(&mut *tx)
        .await?
        {
            let name: String = row.try_get("name")?;
            let email: Option<String> = row.try_get("email")?;
            let shown = match email {
                Some(email) => format!("{name} <{email}>"),
                None => name,
            };
            names
                .entry(row.try_get("subject")?)
                .or_default()
                .push((row.try_get("from_position")?, shown));
        }
        Ok(Self(names))
    }

    /// The subject's name as of `position`.
    fn at(&self, subject: &str, position: i64) -> Option<&str> {
        self.0
            .get(subject)?
            .iter()
            .rev()
            .find(|(from, _)| *from <= position)
            .map(|(_, name)| name.as_str())
    }

    /// A user's or an API key's name as of `position`, from its bare id (how change
    /// requests record authors and approvers); the id when it was never named.
    fn person(&self, id: &str, position: i64) -> String {
        self.at(&format!("user:{id}"), position)
            .map(str::to_owned)
            .or_else(|| {
                self.at(&format!("api_key:{id}"), position)
                    .map(|name| format!("API key {name}"))
            })
            .unwrap_or_else(|| id.to_owned())
    }

    /// An actor's (`user:<id>`, `api_key:<id>`, `system:<c>`) name as of `position`.
    fn actor(&self, actor: &str, position: i64) -> String {
        match actor.split_once(':') {
            Some(("user" | "api_key", id)) => self.person(id, position),
            _ => actor.to_owned(),
        }
    }
}

fn actor_text(actor: &serde_json::Value) -> String {
    let kind = actor
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    let id = actor
        .get("id")
        .or_else(|| actor.get("component"))
        .and_then(serde_json::Value::as_str)
        .unwrap_or("?");
    format!("{kind}:{id}")
}

/// The change log: every config change of a device in the range (snapshots whose content
/// changed, drift), with who caused it, the change request it belongs to (by correlation)
/// and that request's author and approvers. Names (users, API keys, devices) are as they
/// were at each change.
pub async fn change_log(
    app: &PgPool,
    tenant: TenantId,
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
) -> Result<Report, ReportError> {
    let mut tx = begin_tenant(app, tenant).await?;
    let names = NameHistory::load(&mut tx, tenant).await?;
    let rows = sqlx::query(
        "SELECT e.position, e.recorded_at, e.stream, e.event_type, e.actor, \
                e.payload->>'commit' AS commit, \
                coalesce(e.payload->>'sha256', e.payload->>'found_sha256') AS sha256, \
                e.payload->>'reason' AS reason, e.correlation_id, \
                cr.change_request_id, cr.title, cr.author, cr.approvals \
         FROM events e \
         LEFT JOIN rm_change_requests cr ON cr.tenant_id = e.tenant_id \
                                        AND cr.change_request_id = e.correlation_id \
         WHERE e.tenant_id = $1 AND e.category = 'device' \
           AND (e.event_type = 'ConfigDriftDetected' \
                OR (e.event_type = 'ConfigSnapshotRecorded' AND e.payload->>'changed' = 'true')) \
           AND ($2::timestamptz IS NULL OR e.recorded_at >= $2) \
           AND ($3::timestamptz IS NULL OR e.recorded_at <= $3) \
         ORDER BY e.position LIMIT $4",
    )
    .bind(tenant.as_uuid())
    .bind(from)
    .bind(to)
    .bind(MAX_ROWS)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let stream: String = r.try_get("stream")?;
        let position: i64 = r.try_get("position")?;
        let device_id = stream.strip_prefix("device-").unwrap_or(&stream).to_owned();
        let actor: serde_json::Value = r.try_get("actor")?;
        let approvals: Option<serde_json::Value> = r.try_get("approvals")?;
        let approvers = approvals
            .as_ref()
            .and_then(serde_json::Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|a| a.get("by").and_then(serde_json::Value::as_str))
                    .map(|by| names.person(by, position))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let change: Option<Uuid> = r.try_get("change_request_id")?;
        let author: Option<String> = r.try_get("author")?;
        let event_type: String = r.try_get("event_type")?;
        let what = if event_type == "ConfigDriftDetected" {
            "drift (out of band)".to_owned()
        } else {
            r.try_get::<Option<String>, _>("reason")?
                .unwrap_or_default()
                .replace('_', " ")
        };
        out.push(vec![
            time_text(r.try_get("recorded_at")?),
            names
                .at(&format!("device:{device_id}"), position)
                .map_or_else(|| device_id.clone(), str::to_owned),
            device_id,
            what,
            r.try_get::<Option<String>, _>("commit")?
                .unwrap_or_default(),
            names.actor(&actor_text(&actor), position),
            change.map(|c| c.to_string()).unwrap_or_default(),
            r.try_get::<Option<String>, _>("title")?.unwrap_or_default(),
            author
                .map(|a| names.person(&a, position))
                .unwrap_or_default(),
            approvers,
            position.to_string(),
        ]);
    }
    Ok(Report {
        title: "Change log".to_owned(),
        header: vec![
            format!("tenant: {tenant}"),
            range_text(from, to),
            format!("{} config changes", out.len()),
        ],
        columns: vec![
            "recorded_at",
            "device",
            "device_id",
            "change",
            "commit",
            "by",
            "change_request",
            "title",
            "author",
            "approved_by",
            "position",
        ],
        rows: out,
    })
}

/// The device inventory as of `at` (default: now): the devices registered then, from the
/// events, with their state and config commit then.
pub async fn inventory(
    app: &PgPool,
    archive: &Archive,
    tenant: TenantId,
    at: OffsetDateTime,
) -> Result<Report, ReportError> {
    let reader = EventReader::tenant(app.clone(), tenant);
    let mut rows = Vec::new();
    let mut after: Option<DeviceId> = None;
    loop {
        let (page, next) = fleet_as_of(&reader, archive, tenant, at, after, 200).await?;
        for d in page {
            rows.push(vec![
                d.name,
                d.device_id.to_string(),
                d.status.to_owned(),
                d.routeros_version.unwrap_or_default(),
                d.config_commit.unwrap_or_default(),
                d.position.to_string(),
            ]);
        }
        match next {
            Some(n) if (rows.len() as i64) < MAX_ROWS => after = Some(n),
            _ => break,
        }
    }
    Ok(Report {
        title: "Device inventory".to_owned(),
        header: vec![
            format!("tenant: {tenant}"),
            format!("as of {}", time_text(at)),
            format!("{} devices", rows.len()),
        ],
        columns: vec![
            "name",
            "device_id",
            "status",
            "routeros_version",
            "config_commit",
            "position",
        ],
        rows,
    })
}

/// The audit verification report: the tenant's whole history verified now (every hash
/// chain; every checkpoint signature with `keys`) and the checkpoints in the range.
pub async fn verification(
    app: &PgPool,
    system: &PgPool,
    tenant: TenantId,
    keys: Option<&TrustedKeys>,
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<Report, ReportError> {
    let checkpoints = netledger_store::audit::load_checkpoints(system, Some(tenant)).await?;
    let reader = EventReader::tenant(app.clone(), tenant);
    let (used, key) = match keys {
        Some(k) => (checkpoints.clone(), k.clone()),
        None => (Vec::new(), TrustedKeys::default()),
    };
    let outcome =
        netledger_store::audit::verify_history(&reader, &used, key, 1_000, |_| {}).await?;
    let verdict = match &outcome {
        Ok(r) => format!(
            "result: OK - {} events, {} checkpoints verified{}; signed through position {}, last position {}",
            r.events,
            r.checkpoints,
            if keys.is_some() {
                ""
            } else {
                " (no public key: chains only)"
            },
            r.signed_through,
            r.last_position
        ),
        Err(t) => format!("result: FAILED at position {}: {t}", t.position()),
    };
    // Checkpoints whose range ends in the time range: the positions of that range.
    let (lo, hi) = {
        let lo = match from {
            Some(f) => reader.position_as_of(f).await? + 1,
            None => 0,
        };
        let hi = match to {
            Some(t) => reader.position_as_of(t).await?,
            None => i64::MAX,
        };
        (lo, hi)
    };
    let rows = checkpoints
        .iter()
        .filter(|c| c.body.to_position >= lo && c.body.from_position <= hi)
        .map(|c| {
            vec![
                c.body.seq.to_string(),
                c.body.from_position.to_string(),
                c.body.to_position.to_string(),
                c.body.event_count.to_string(),
                c.key_id.clone(),
                hex::encode(c.digest),
                if c.handover.is_some() { "yes" } else { "" }.to_owned(),
            ]
        })
        .collect();
    Ok(Report {
        title: "Audit verification".to_owned(),
        header: vec![
            format!("tenant: {tenant}"),
            format!("verified at {}", time_text(now)),
            range_text(from, to),
            verdict,
        ],
        columns: vec![
            "seq",
            "from_position",
            "to_position",
            "events",
            "key_id",
            "digest",
            "key_handover",
        ],
        rows,
    })
}

impl Report {
    /// The report as CSV (RFC 4180 quoting): the title and header lines first, one cell
    /// each starting with `# `, then a row of the column names, then the rows.
    pub fn to_csv(&self) -> Result<Vec<u8>, ReportError> {
        let mut w = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        let enc = |e: csv::Error| ReportError::Encode(e.to_string());
        for line in std::iter::once(&self.title).chain(&self.header) {
            w.write_record([format!("# {line}")]).map_err(enc)?;
        }
        w.write_record(&self.columns).map_err(enc)?;
        for r in &self.rows {
            w.write_record(r).map_err(enc)?;
        }
        w.into_inner()
            .map_err(|e| ReportError::Encode(e.to_string()))
    }

    /// The report as a PDF: A4 landscape pages in Courier, the title and header on the
    /// first, page numbers on each, cells cut to their column's width (`~` marks a cut).
    pub fn to_pdf(&self, generated_at: OffsetDateTime) -> Vec<u8> {
        use pdf_writer::{Content, Finish, Name, Pdf, Rect, Ref, Str};
        const WIDTH: f32 = 842.0;
        const HEIGHT: f32 = 595.0;
        const SIZE: f32 = 7.0;
        const LEADING: f32 = 9.0;
        const MARGIN: f32 = 30.0;
        // Courier advances 0.6 em per character.
        let chars_per_line = ((WIDTH - 2.0 * MARGIN) / (SIZE * 0.6)) as usize;
        let widths = column_widths(&self.columns, &self.rows, chars_per_line);
        let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
            let mut out = String::new();
            for (cell, w) in cells.zip(&widths) {
                let mut text: String = cell.chars().map(latin).collect();
                if text.chars().count() > *w {
                    text = text.chars().take(w.saturating_sub(1)).collect();
                    text.push('~');
                }
                out.push_str(&format!("{text:<w$} ", w = *w));
            }
            out.trim_end().to_owned()
        };
        let mut lines: Vec<(String, bool)> = vec![(self.title.clone(), true)];
        lines.extend(
            self.header
                .iter()
                .map(|h| (h.chars().map(latin).collect(), false)),
        );
        lines.push((String::new(), false));
        lines.push((line(&mut self.columns.iter().copied()), true));
        for r in &self.rows {
            lines.push((line(&mut r.iter().map(String::as_str)), false));
        }
        if self.rows.is_empty() {
            lines.push(("(no rows)".to_owned(), false));
        }
        let per_page = ((HEIGHT - 2.0 * MARGIN) / LEADING) as usize - 2;
        let pages: Vec<&[(String, bool)]> = lines.chunks(per_page.max(1)).collect();
        let mut pdf = Pdf::new();
        let catalog = Ref::new(1);
        let tree = Ref::new(2);
        let regular = Ref::new(3);
        let bold = Ref::new(4);
        let page_ids: Vec<Ref> = (0..pages.len())
            .map(|i| Ref::new(5 + 2 * i as i32))
            .collect();
        pdf.catalog(catalog).pages(tree);
        pdf.pages(tree)
            .kids(page_ids.iter().copied())
            .count(pages.len() as i32);
        pdf.type1_font(regular).base_font(Name(b"Courier"));
        pdf.type1_font(bold).base_font(Name(b"Courier-Bold"));
        let footer_time = time_text(generated_at);
        for (i, chunk) in pages.iter().enumerate() {
            let (page_id, content_id) = (page_ids[i], Ref::new(6 + 2 * i as i32));
            let mut page = pdf.page(page_id);
            page.media_box(Rect::new(0.0, 0.0, WIDTH, HEIGHT));
            page.parent(tree);
            page.contents(content_id);
            {
                let mut resources = page.resources();
                let mut fonts = resources.fonts();
                fonts.pair(Name(b"F1"), regular);
                fonts.pair(Name(b"F2"), bold);
            }
            page.finish();
            let mut c = Content::new();
            c.begin_text();
            c.next_line(MARGIN, HEIGHT - MARGIN);
            for (text, strong) in chunk.iter() {
                c.set_font(Name(if *strong { b"F2" } else { b"F1" }), SIZE);
                c.show(Str(text.as_bytes()));
                c.next_line(0.0, -LEADING);
            }
            c.end_text();
            c.begin_text();
            c.set_font(Name(b"F1"), SIZE);
            c.next_line(MARGIN, MARGIN / 2.0);
            let footer = format!(
                "Netledger - {} - generated {footer_time} - page {} of {}",
                self.title,
                i + 1,
                pages.len()
            );
            c.show(Str(footer.as_bytes()));
            c.end_text();
            pdf.stream(content_id, &c.finish());
        }
        pdf.finish()
    }
}

/// The base-14 fonts' standard encoding covers ASCII; anything else prints as `?`.
fn latin(c: char) -> char {
    if c.is_ascii() && !c.is_ascii_control() {
        c
    } else {
        '?'
    }
}

/// Each column as wide as its widest cell (at most 40), shrunk evenly to fit a line.
fn column_widths(columns: &[&str], rows: &[Vec<String>], line: usize) -> Vec<usize> {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.len()).collect();
    for r in rows.iter().take(5_000) {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count()).min(40);
        }
    }
    let gaps = widths.len();
    while widths.iter().sum::<usize>() + gaps > line {
        let Some(widest) = widths.iter_mut().max() else {
            break;
        };
        if *widest <= 6 {
            break;
        }
        *widest -= 1;
    }
    widths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_pdf_paginates() {
        let report = Report {
            title: "Change log".to_owned(),
            header: vec!["range: x".to_owned()],
            columns: vec!["a", "b"],
            rows: (0..200)
                .map(|i| vec![format!("row {i}"), "with, comma \"q\" é".to_owned()])
                .collect(),
        };
        let csv = String::from_utf8(report.to_csv().unwrap()).unwrap();
        assert!(
            csv.starts_with("# Change log\n# range: x\na,b\nrow 0,\"with, comma \"\"q\"\" é\"\n"),
            "{csv}"
        );
        let pdf = report.to_pdf(OffsetDateTime::UNIX_EPOCH);
        assert!(pdf.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("/Count 4"), "200 rows at 58 lines a page");
        assert!(text.contains("page 4 of 4"));
    }
}
