//! Audit bundles, format v2 (`docs/auditing.md`), for the CLI and the API: a tar of a manifest, the tenant's events
//! of a range in canonical form, every checkpoint through the range, the keys with their
//! hand-overs, the newest checkpoint published outside PostgreSQL and the config history as
//! a git bundle; [`export`] writes one (events streamed page by page; [`export_with`] with
//! a [`DeviceFilter`] writes the streams of unlisted devices as hash-only stubs),
//! [`verify`] checks one offline against pinned keys and names the first bad position or
//! member. [`as_of`]
//! answers what a device and the fleet were at an instant; [`reports`] builds the
//! auditors' CSV and PDF reports.

pub mod as_of;
pub mod filter;
pub mod reports;

pub use filter::DeviceFilter;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use netledger_archive::{Archive, GitBundle};
use netledger_domain::audit::{
    Checkpoint, EventLink, HistoryVerifier, KeyUse, PinnedKey, TrustedKeys, fingerprint, key_uses,
    parse_public_key,
};
use netledger_domain::canonical::{
    ContentJson, Placement, canonical_json, chain_hash, content_hash_json, format_micros,
    parse_micros, unix_micros,
};
use netledger_domain::ids::{DeviceId, EventId};
use netledger_domain::{RecordedEvent, TenantId};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use time::OffsetDateTime;

/// Why an export or a verification could not run (a tampered bundle is not an error: it is
/// a [`Verdict::Tampered`]).
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The requested range ends before it starts.
    #[error("the range is empty: it ends before it starts")]
    EmptyRange,
    /// A device the filter lists has no events in the tenant (a mistyped id, or another
    /// tenant's device).
    #[error("device {0} has no events in this tenant: check the id (`--devices`)")]
    UnknownDevice(DeviceId),
    /// No public key is known for a key id the checkpoints name.
    #[error(
        "no public key is known for audit key id `{0}`: configure the API's \
         audit.verifying_key_file with <key id>=<hex> entries for every key used"
    )]
    NoPublicKey(String),
    /// Anything else, with what was being done.
    #[error("{0}")]
    Other(String),
}

macro_rules! from_error {
    ($($t:ty),*) => {$(
        impl From<$t> for BundleError {
            fn from(e: $t) -> Self {
                Self::Other(e.to_string())
            }
        }
    )*};
}
from_error!(
    std::io::Error,
    serde_json::Error,
    sqlx::Error,
    netledger_store::StoreError,
    netledger_archive::ArchiveError,
    tokio::task::JoinError
);

/// `.context("what was being done")` for results whose error displays.
trait Context<T> {
    fn context(self, what: &str) -> Result<T, BundleError>;
    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, BundleError>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn context(self, what: &str) -> Result<T, BundleError> {
        self.map_err(|e| BundleError::Other(format!("{what}: {e}")))
    }

    fn with_context(self, what: impl FnOnce() -> String) -> Result<T, BundleError> {
        self.map_err(|e| BundleError::Other(format!("{}: {e}", what())))
    }
}

/// Format tag of a v2 bundle.
pub const FORMAT: &str = "netledger-audit-bundle/2";

/// The members a bundle may hold, in archive order (after `manifest.json`), and whether
/// each is required.
const MEMBERS: [(&str, bool); 5] = [
    ("events.jsonl", true),
    ("checkpoints.jsonl", true),
    ("keys.json", true),
    ("external-checkpoint.json", false),
    ("config.bundle", false),
];

const EVENT_KEYS: [&str; 13] = [
    "event_id",
    "event_type",
    "hash",
    "metadata",
    "payload",
    "position",
    "prev_hash",
    "recorded_at",
    "schema_version",
    "stream",
    "tenant_id",
    "tenant_prev_position",
    "version",
];

/// The keys of a hash-only stub line (`docs/auditing.md` §3.1).
const STUB_KEYS: [&str; 8] = [
    "content_hash",
    "hash",
    "position",
    "prev_hash",
    "recorded_at",
    "stream",
    "tenant_prev_position",
    "version",
];

const CHECKPOINT_KEYS: [&str; 10] = [
    "digest",
    "event_count",
    "from_position",
    "heads",
    "key_id",
    "prev_digest",
    "seq",
    "signature",
    "tenant_id",
    "to_position",
];

/// One end of an export range: a global position or a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// A global event position.
    Position(i64),
    /// A time (the first event at or after it for a start, the last at or before it for an
    /// end).
    Time(OffsetDateTime),
}

impl std::str::FromStr for Bound {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(p) = s.parse::<i64>() {
            return if p >= 0 {
                Ok(Self::Position(p))
            } else {
                Err(format!("position {p} is negative"))
            };
        }
        OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .map(Self::Time)
            .map_err(|e| {
                format!(
                    "`{s}` is neither a position nor an RFC 3339 time (2026-12-07T10:00:00Z): {e}"
                )
            })
    }
}

impl Bound {
    fn describe(self) -> Value {
        match self {
            Self::Position(p) => json!(p),
            Self::Time(t) => json!(format_micros(t)),
        }
    }
}

/// What [`export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// Events written (stubs included).
    pub events: u64,
    /// Of those, events of devices the filter does not list, written as hash-only stubs.
    pub withheld: u64,
    /// Checkpoints written.
    pub checkpoints: usize,
    /// First position of the range.
    pub from_position: i64,
    /// Last position of the range (`None`: to the newest event).
    pub to_position: Option<i64>,
    /// Whether the config history is included.
    pub config: bool,
}

/// What to export: the tenant and the range.
#[derive(Debug, Clone, Copy)]
pub struct ExportRequest {
    /// The tenant.
    pub tenant: TenantId,
    /// Start of the range (`None`: the first event).
    pub from: Option<Bound>,
    /// End of the range (`None`: the newest event).
    pub to: Option<Bound>,
    /// The manifest's `created_at`.
    pub created_at: OffsetDateTime,
}

/// What to export beyond the tenant and the range ([`export_with`]).
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// The device filter (`--devices`): `None` holds every event in full; `Some(f)` holds
    /// the events of every stream `device-<id>` of a device `f` does not list as hash-only
    /// stubs (`docs/auditing.md` §3.1) and records `f` in the manifest. Other streams and
    /// `config.bundle` are unaffected.
    pub devices: Option<DeviceFilter>,
}

/// Writes the v2 bundle `req` asks for to `out`. `keys` gives the public key of each key
/// id the checkpoints name (hand-overs supply the rest). Every event in full: see
/// [`export_with`] for a device filter.
pub async fn export(
    system: &PgPool,
    archive: &Archive,
    keys: &TrustedKeys,
    req: ExportRequest,
    out: &mut (dyn Write + Send),
) -> Result<ExportSummary, BundleError> {
    export_with(system, archive, keys, req, &ExportOptions::default(), out).await
}

/// [`export`] with `options`: with a device filter, the events of other devices' streams
/// are hash-only stubs. A listed device without any event in the tenant is refused
/// ([`BundleError::UnknownDevice`]).
pub async fn export_with(
    system: &PgPool,
    archive: &Archive,
    keys: &TrustedKeys,
    req: ExportRequest,
    options: &ExportOptions,
    out: &mut (dyn Write + Send),
) -> Result<ExportSummary, BundleError> {
    let ExportRequest {
        tenant,
        from,
        to,
        created_at,
    } = req;
    if let Some(filter) = &options.devices {
        for d in filter.devices() {
            let known: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM events WHERE tenant_id = $1 AND stream = $2 AND version = 1)",
            )
            .bind(tenant.as_uuid())
            .bind(format!("device-{d}"))
            .fetch_one(system)
            .await
            .context("looking up the filter's devices")?;
            if !known {
                return Err(BundleError::UnknownDevice(*d));
            }
        }
    }
    // The copy published outside PostgreSQL first: it is written after its database row,
    // so the checkpoints and events read next cover it (a live system keeps writing).
    let archive1 = archive.clone();
    let external = tokio::task::spawn_blocking(move || archive1.checkpoints(tenant))
        .await
        .context("config history task")??
        .into_iter()
        .max_by_key(|c| c.body.seq);
    let mut checkpoints = netledger_store::audit::load_checkpoints(system, Some(tenant)).await?;
    checkpoints.sort_by_key(|c| c.body.seq);
    let from_position = match from {
        None => 1,
        Some(b) => {
            let p = resolve(system, tenant, b, true).await?;
            range_start(&checkpoints, p)
        }
    };
    let to_position = match to {
        None => None,
        Some(b) => {
            let p = resolve(system, tenant, b, false).await?;
            Some(range_end(&checkpoints, p))
        }
    };
    // A range that ends before it starts holds no events (its earlier checkpoints still
    // come along, as for any range).
    let to_position = to_position.map(|t| t.max(from_position - 1));
    checkpoints.retain(|c| to_position.is_none_or(|t| c.body.from_position <= t));
    let dir = tempfile::tempdir().context("creating a scratch directory")?;

    // events.jsonl, page by page.
    let events_path = dir.path().join("events.jsonl");
    let mut events_file = std::io::BufWriter::new(
        std::fs::File::create(&events_path).context("creating the events file")?,
    );
    let reader = netledger_store::EventReader::system(system.clone(), Some(tenant));
    let mut after = from_position - 1;
    let mut count = 0u64;
    let mut withheld = 0u64;
    'pages: loop {
        let page = reader.read_all(after, 5_000).await?;
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        for e in &page {
            if to_position.is_some_and(|t| e.position > t) {
                break 'pages;
            }
            let line = match &options.devices {
                Some(f) if f.withholds(e.stream.as_str()) => {
                    withheld += 1;
                    stub_line(e)?
                }
                _ => event_line(e)?,
            };
            events_file.write_all(&line)?;
            events_file.write_all(b"\n")?;
            count += 1;
        }
        after = last;
    }
    events_file.flush()?;
    drop(events_file);

    let mut members: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut lines = Vec::new();
    for c in &checkpoints {
        lines.extend_from_slice(&canonical_json(&serde_json::to_value(c)?));
        lines.push(b'\n');
    }
    members.push(("checkpoints.jsonl", lines));
    members.push(("keys.json", keys_json(&checkpoints, keys)?));

    let (archive2, scratch) = (archive.clone(), dir.path().join("config.bundle"));
    let config = tokio::task::spawn_blocking(move || -> Result<_, BundleError> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&scratch)?);
        let head = archive2.write_bundle(tenant, &mut file)?;
        file.flush()?;
        Ok(head.map(|_| scratch))
    })
    .await
    .context("config bundle task")??;
    if let Some(cp) = external {
        let value = json!({
            "checkpoint": cp,
            "source": format!("git refs/heads/main checkpoints/{:012}.json", cp.body.seq),
        });
        members.push(("external-checkpoint.json", canonical_json(&value)));
    }

    // Manifest: sizes and hashes of every member, in archive order.
    let mut listed = Vec::new();
    let file_entry = |name: &str, path: &Path| -> Result<Value, BundleError> {
        let (bytes, sha) = hash_file(path)?;
        Ok(json!({"bytes": bytes, "name": name, "sha256": sha}))
    };
    listed.push(file_entry("events.jsonl", &events_path)?);
    for (name, bytes) in &members {
        listed.push(json!({"bytes": bytes.len(), "name": name, "sha256": hex::encode(Sha256::digest(bytes))}));
    }
    if let Some(path) = &config {
        listed.push(file_entry("config.bundle", path)?);
    }
    let manifest = json!({
        "created_at": format_micros(created_at),
        "devices": options.devices.as_ref().map(DeviceFilter::manifest_value),
        "format": FORMAT,
        "members": listed,
        "producer": concat!("netledger ", env!("CARGO_PKG_VERSION")),
        "range": {
            "from_position": from_position,
            "to_position": to_position,
            "requested_from": from.map(Bound::describe),
            "requested_to": to.map(Bound::describe),
        },
        "tenant_id": tenant,
    });

    let mut tar = tar::Builder::new(out);
    let mut add = |name: &str, data: &mut dyn Read, size: u64| -> Result<(), BundleError> {
        let mut header = tar::Header::new_ustar();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, data)
            .with_context(|| format!("writing {name}"))?;
        Ok(())
    };
    let manifest = canonical_json(&manifest);
    add(
        "manifest.json",
        &mut manifest.as_slice(),
        manifest.len() as u64,
    )?;
    let mut events = std::fs::File::open(&events_path)?;
    let size = events.metadata()?.len();
    add("events.jsonl", &mut events, size)?;
    for (name, bytes) in &members {
        add(name, &mut bytes.as_slice(), bytes.len() as u64)?;
    }
    if let Some(path) = &config {
        let mut f = std::fs::File::open(path)?;
        let size = f.metadata()?.len();
        add("config.bundle", &mut f, size)?;
    }
    tar.into_inner().context("finishing the archive")?.flush()?;
    Ok(ExportSummary {
        events: count,
        withheld,
        checkpoints: checkpoints.len(),
        from_position,
        to_position,
        config: config.is_some(),
    })
}

/// The position a bound stands for: a position as given; a time as the first event at or
/// after it (start) or the last at or before it (end).
async fn resolve(
    system: &PgPool,
    tenant: TenantId,
    bound: Bound,
    start: bool,
) -> Result<i64, BundleError> {
    let t = match bound {
        Bound::Position(p) => return Ok(p),
        Bound::Time(t) => t,
    };
    let sql = if start {
        "SELECT coalesce(min(position), (SELECT coalesce(max(position), 0) + 1 FROM events WHERE tenant_id = $1)) \
         FROM events WHERE tenant_id = $1 AND recorded_at >= $2"
    } else {
        "SELECT coalesce(max(position), 0) FROM events WHERE tenant_id = $1 AND recorded_at <= $2"
    };
    let p: i64 = sqlx::query_scalar(sql)
        .bind(tenant.as_uuid())
        .bind(t)
        .fetch_one(system)
        .await
        .context("finding the range's positions")?;
    Ok(p)
}

/// The start of the checkpoint range holding `p` (or of the uncovered tail).
fn range_start(sorted: &[Checkpoint], p: i64) -> i64 {
    sorted
        .iter()
        .find(|c| c.body.to_position >= p)
        .map_or_else(
            || sorted.last().map_or(1, |c| c.body.to_position + 1),
            |c| c.body.from_position,
        )
        .max(1)
}

/// The end of the checkpoint range holding `p` (or `p` in the uncovered tail).
fn range_end(sorted: &[Checkpoint], p: i64) -> i64 {
    sorted
        .iter()
        .find(|c| c.body.to_position >= p && c.body.from_position <= p)
        .map_or(p, |c| c.body.to_position)
}

fn hash_file(path: &Path) -> Result<(u64, String), BundleError> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h)?;
    Ok((n, hex::encode(h.finalize())))
}

/// One line of `events.jsonl`: the event's canonical JSON (`docs/auditing.md` §3).
pub fn event_line(e: &RecordedEvent) -> Result<Vec<u8>, BundleError> {
    let value = json!({
        "event_id": e.event_id,
        "event_type": e.event_type,
        "hash": hex::encode(e.hash),
        "metadata": serde_json::to_value(&e.metadata)?,
        "payload": e.payload,
        "position": e.position,
        "prev_hash": hex::encode(e.prev_hash),
        "recorded_at": format_micros(e.recorded_at),
        "schema_version": e.schema_version,
        "stream": e.stream.as_str(),
        "tenant_id": e.tenant_id,
        "tenant_prev_position": e.tenant_prev_position,
        "version": e.version,
    });
    Ok(canonical_json(&value))
}

/// One hash-only stub line of `events.jsonl` (`docs/auditing.md` §3.1): where the event
/// sits, its content hash and its hash; no id, type, metadata or payload.
pub fn stub_line(e: &RecordedEvent) -> Result<Vec<u8>, BundleError> {
    // The content hash exactly as a verifier computes it from the event's full line.
    let metadata = serde_json::to_value(&e.metadata)?;
    let content = content_hash_json(
        ContentJson {
            tenant_id: &e.tenant_id,
            stream: e.stream.as_str(),
            event_id: &e.event_id,
            event_type: &e.event_type,
            schema_version: e.schema_version,
            metadata: &metadata,
            payload: &e.payload,
        },
        &mut Vec::new(),
    );
    let value = json!({
        "content_hash": hex::encode(content),
        "hash": hex::encode(e.hash),
        "position": e.position,
        "prev_hash": hex::encode(e.prev_hash),
        "recorded_at": format_micros(e.recorded_at),
        "stream": e.stream.as_str(),
        "tenant_prev_position": e.tenant_prev_position,
        "version": e.version,
    });
    Ok(canonical_json(&value))
}

fn keys_json(sorted: &[Checkpoint], keys: &TrustedKeys) -> Result<Vec<u8>, BundleError> {
    let mut public: BTreeMap<&str, [u8; 32]> = BTreeMap::new();
    for c in sorted {
        if let Some(h) = &c.handover {
            public.entry(&h.from_key_id).or_insert(h.from_public_key);
            public.entry(&h.to_key_id).or_insert(h.to_public_key);
        }
    }
    let entries = key_uses(sorted)
        .into_iter()
        .map(
            |KeyUse {
                 key_id,
                 first_seq,
                 last_seq,
                 valid_from,
                 valid_until,
             }| {
                let key = match public.get(key_id.as_str()) {
                    Some(k) => VerifyingKey::from_bytes(k).ok(),
                    None => keys.get(&key_id).copied(),
                }
                .ok_or_else(|| BundleError::NoPublicKey(key_id.clone()))?;
                Ok(json!({
                    "fingerprint": fingerprint(&key),
                    "first_seq": first_seq,
                    "key_id": key_id,
                    "last_seq": last_seq,
                    "public_key": hex::encode(key.to_bytes()),
                    "valid_from": valid_from.map(format_micros),
                    "valid_until": valid_until.map(format_micros),
                }))
            },
        )
        .collect::<Result<Vec<_>, BundleError>>()?;
    Ok(canonical_json(&json!({ "keys": entries })))
}

/// Where verification found the first problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A global position.
    Position(i64),
    /// A member of the archive.
    Member(String),
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything holds; the summary line.
    Ok(String),
    /// The first problem and what it is.
    Tampered(Finding, String),
}

impl Verdict {
    /// The verdict line `docs/auditing.md` specifies.
    pub fn line(&self) -> String {
        match self {
            Self::Ok(summary) => format!("OK: {summary}"),
            Self::Tampered(Finding::Position(p), d) => format!("TAMPERED at position {p}: {d}"),
            Self::Tampered(Finding::Member(m), d) => format!("TAMPERED in member {m}: {d}"),
        }
    }
}

fn member(name: &str, detail: impl Into<String>) -> Verdict {
    Verdict::Tampered(Finding::Member(name.to_owned()), detail.into())
}

fn at(position: i64, detail: impl Into<String>) -> Verdict {
    Verdict::Tampered(Finding::Position(position), detail.into())
}

/// Whether `file` starts like a tar archive holding `manifest.json` (a v2 bundle) rather
/// than a v1 JSON bundle.
pub fn looks_like_v2(file: &mut std::fs::File) -> std::io::Result<bool> {
    let mut head = [0u8; 1];
    let n = file.read(&mut head)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(n == 1 && head[0] != b'{' && head[0] != b' ' && head[0] != b'\n')
}

/// Verifies the v2 bundle at `path` against the auditor's `pinned` keys
/// (`docs/auditing.md` §7). `Err` only when the file cannot be read at all or is not a v2
/// bundle (exit 2); every finding is a [`Verdict::Tampered`].
pub fn verify(path: &Path, pinned: &[PinnedKey]) -> Result<Verdict, BundleError> {
    // Pass 1: member names, sizes and hashes; small members kept.
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut archive = tar::Archive::new(BufReader::new(file));
    let mut found: Vec<(String, u64, String)> = Vec::new();
    let mut small: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let entries = archive
        .entries()
        .with_context(|| format!("{} is not a tar archive", path.display()))?;
    for entry in entries {
        let mut entry =
            entry.with_context(|| format!("{} is not a readable tar archive", path.display()))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let keep = name != "events.jsonl";
        let mut h = Sha256::new();
        let mut kept = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        loop {
            let got = entry
                .read(&mut buf)
                .with_context(|| format!("reading member {name}"))?;
            if got == 0 {
                break;
            }
            h.update(&buf[..got]);
            if keep {
                kept.extend_from_slice(&buf[..got]);
            }
            n += got as u64;
        }
        if keep && !small.contains_key(&name) {
            small.insert(name.clone(), kept);
        }
        found.push((name, n, hex::encode(h.finalize())));
    }
    if found.first().map(|f| f.0.as_str()) != Some("manifest.json") {
        return Err(BundleError::Other(format!(
            "{} is not an audit bundle: its first member is not manifest.json",
            path.display()
        )));
    }
    let member_bytes = |name: &str| small.get(name).map(Vec::as_slice).unwrap_or_default();
    let manifest: Value = serde_json::from_slice(member_bytes("manifest.json"))
        .map_err(|e| BundleError::Other(format!("manifest.json is not JSON: {e}")))?;
    let Some(format) = manifest.get("format").and_then(Value::as_str) else {
        return Ok(member("manifest.json", "no `format`"));
    };
    if format != FORMAT {
        return Err(BundleError::Other(format!(
            "unsupported bundle format `{format}` (this build reads {FORMAT} and netledger-audit-bundle/1)"
        )));
    }
    if let Some(v) = check_members(&manifest, &found) {
        return Ok(v);
    }
    let tenant = match manifest
        .get("tenant_id")
        .and_then(Value::as_str)
        .and_then(canonical_uuid)
    {
        Some(t) => TenantId::from_uuid(t),
        None => return Ok(member("manifest.json", "tenant_id is not a UUID")),
    };
    let filter = match DeviceFilter::from_manifest(manifest.get("devices")) {
        Ok(f) => f,
        Err(d) => return Ok(member("manifest.json", d)),
    };
    let range = manifest.get("range");
    let from_position = range
        .and_then(|r| r.get("from_position"))
        .and_then(Value::as_i64);
    let to_position = range.and_then(|r| r.get("to_position"));
    let (Some(from_position), Some(to_position)) = (from_position, to_position) else {
        return Ok(member(
            "manifest.json",
            "range.from_position/to_position missing",
        ));
    };
    let to_position = match to_position {
        Value::Null => None,
        v => match v.as_i64() {
            Some(t) => Some(t),
            None => {
                return Ok(member(
                    "manifest.json",
                    "range.to_position is not an integer",
                ));
            }
        },
    };

    let keys = match parse_keys(member_bytes("keys.json")) {
        Ok(k) => k,
        Err(d) => return Ok(member("keys.json", d)),
    };
    let mut checkpoints = Vec::new();
    for (i, line) in lines(member_bytes("checkpoints.jsonl")).enumerate() {
        match parse_checkpoint(line) {
            Ok(c) => checkpoints.push(c),
            Err(d) => return Ok(member("checkpoints.jsonl", format!("line {}: {d}", i + 1))),
        }
    }
    let external = match small.get("external-checkpoint.json") {
        None => None,
        Some(bytes) => match serde_json::from_slice::<Value>(bytes)
            .map_err(|e| e.to_string())
            .and_then(|v| {
                v.get("checkpoint")
                    .cloned()
                    .ok_or_else(|| "no `checkpoint`".to_owned())
            })
            .and_then(|c| parse_checkpoint_value(&c))
        {
            Ok(c) => Some(c),
            Err(d) => return Ok(member("external-checkpoint.json", d)),
        },
    };
    // Events parse before anything is verified (§7.1 step 4): a quick pass over the lines.
    if let Some(v) = scan_events(path)? {
        return Ok(v);
    }
    let config = match small.get("config.bundle") {
        None => None,
        Some(bytes) => {
            let scratch = std::env::temp_dir();
            match GitBundle::open(bytes, &scratch) {
                Ok(b) => Some(b),
                Err(e) => return Ok(member("config.bundle", e.to_string())),
            }
        }
    };
    if !keys.values().any(|k| pinned.iter().any(|p| p.matches(k))) {
        return Ok(member(
            "keys.json",
            "none of the trusted keys you pinned is in the bundle (ask the operator for the \
             platform's key: `netledger audit public-key --all`)",
        ));
    }
    if let Some(ext) = external {
        match checkpoints.iter().find(|c| c.body.seq == ext.body.seq) {
            Some(c) if *c == ext => {}
            Some(c) => {
                return Ok(at(
                    c.body.from_position,
                    format!(
                        "checkpoint {} differs from the copy published outside PostgreSQL",
                        c.body.seq
                    ),
                ));
            }
            None if to_position.is_none_or(|t| t >= ext.body.from_position) => {
                checkpoints.push(ext)
            }
            None => {}
        }
    }

    // Pass 2: the history.
    let mut verifier = HistoryVerifier::with_key_chain(&checkpoints, &keys, pinned);
    verifier.start_at(from_position);
    let mut scratch = Vec::with_capacity(1024);
    let mut config_refs = 0u64;
    let mut stubs = 0u64;
    let mut events = open_member(path, "events.jsonl")?;
    let mut line = Vec::new();
    loop {
        line.clear();
        if events.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let e = match parse_event(text) {
            Ok(e) => e,
            // scan_events parsed every line already.
            Err(d) => return Ok(member("events.jsonl", d)),
        };
        if let LineContent::Full(f) = &e.content
            && f.tenant_id != tenant
        {
            return Ok(at(e.position, "the event belongs to another tenant"));
        }
        // §3.1: a line is a stub exactly when the device filter withholds its stream.
        let withheld = filter.as_ref().is_some_and(|f| f.withholds(&e.stream));
        match (&e.content, withheld) {
            (LineContent::Stub(_), false) => {
                return Ok(at(
                    e.position,
                    format!(
                        "a hash-only stub of stream {}, which the bundle's device filter does not withhold",
                        e.stream
                    ),
                ));
            }
            (LineContent::Full(_), true) => {
                return Ok(at(
                    e.position,
                    format!(
                        "a full event of stream {}, which the bundle's device filter withholds (it must be a hash-only stub)",
                        e.stream
                    ),
                ));
            }
            _ => {}
        }
        let content = match &e.content {
            LineContent::Full(f) => content_hash_json(
                ContentJson {
                    tenant_id: &f.tenant_id,
                    stream: &e.stream,
                    event_id: &f.event_id,
                    event_type: &f.event_type,
                    schema_version: f.schema_version,
                    metadata: &f.metadata,
                    payload: &f.payload,
                },
                &mut scratch,
            ),
            LineContent::Stub(content_hash) => {
                stubs += 1;
                *content_hash
            }
        };
        let computed = chain_hash(
            &e.prev_hash,
            Placement {
                position: e.position,
                tenant_prev_position: e.tenant_prev_position,
                version: e.version,
                recorded_at_micros: e.recorded_at_micros,
            },
            &content,
        );
        let link = EventLink {
            position: e.position,
            tenant_prev_position: e.tenant_prev_position,
            stream: &e.stream,
            version: e.version,
            prev_hash: e.prev_hash,
            hash: e.hash,
        };
        if let Err(t) = verifier.push_link(&link, &computed) {
            return Ok(at(t.position(), t.to_string()));
        }
        let reference = match &e.content {
            LineContent::Full(f) => config_reference(f, &e.stream),
            // Its content is withheld: nothing to check it against.
            LineContent::Stub(_) => None,
        };
        if let Some(reference) = reference {
            config_refs += 1;
            let outcome = match (reference, &config) {
                (Err(d), _) => Err(d),
                (Ok(_), None) => Err("the bundle has no config.bundle".to_owned()),
                (Ok((commit, sha256, path_in_git)), Some(b)) => b.file_sha256(commit, &path_in_git).and_then(|found| {
                    if found == sha256 {
                        Ok(())
                    } else {
                        Err(format!("{path_in_git} in commit {commit} has SHA-256 {found}, the event says {sha256}"))
                    }
                }),
            };
            if let Err(d) = outcome {
                return Ok(at(e.position, format!("config reference: {d}")));
            }
        }
    }
    match verifier.finish() {
        Ok(r) => {
            let mut summary = format!(
                "{} events, {} checkpoints, {} config references; signed through position {}, last position {}; tenant {tenant}",
                r.events, r.checkpoints, config_refs, r.signed_through, r.last_position
            );
            if r.signed_through < r.last_position {
                summary.push_str(&format!(
                    " (events after position {} are hash-chained but not yet covered by a signed checkpoint)",
                    r.signed_through
                ));
            }
            if let Some(f) = &filter {
                let listed = f.devices().map(ToString::to_string).collect::<Vec<_>>();
                summary.push_str(&format!(
                    "; device filter [{}]: {stubs} events of other devices withheld as hash-only stubs (their content is not checked)",
                    listed.join(", ")
                ));
            }
            Ok(Verdict::Ok(summary))
        }
        Err(t) => Ok(at(t.position(), t.to_string())),
    }
}

/// §7.1 steps 2 and 3.
fn check_members(manifest: &Value, found: &[(String, u64, String)]) -> Option<Verdict> {
    let Some(listed) = manifest.get("members").and_then(Value::as_array) else {
        return Some(member("manifest.json", "no `members` list"));
    };
    let mut names = BTreeSet::new();
    for m in listed {
        let (Some(name), Some(bytes), Some(sha)) = (
            m.get("name").and_then(Value::as_str),
            m.get("bytes").and_then(Value::as_u64),
            m.get("sha256")
                .and_then(Value::as_str)
                .filter(|s| lower_hex32(s).is_some()),
        ) else {
            return Some(member(
                "manifest.json",
                "a `members` entry lacks name, bytes or sha256",
            ));
        };
        names.insert(name);
        match found.iter().find(|f| f.0 == name) {
            None => {
                return Some(member(
                    name,
                    "listed in the manifest but not in the archive",
                ));
            }
            Some((_, n, h)) if *n != bytes || h != sha => {
                return Some(member(
                    name,
                    format!("{n} bytes with SHA-256 {h}; the manifest says {bytes} bytes, {sha}"),
                ));
            }
            Some(_) => {}
        }
    }
    let mut seen = BTreeSet::new();
    for (name, _, _) in &found[1..] {
        if !seen.insert(name.as_str()) {
            return Some(member(name, "in the archive twice"));
        }
        if !MEMBERS.iter().any(|(m, _)| m == name) {
            return Some(member(name, "not a member of an audit bundle"));
        }
        if !names.contains(name.as_str()) {
            return Some(member(name, "not listed in the manifest"));
        }
    }
    for (name, required) in MEMBERS {
        if required && !seen.contains(name) {
            return Some(member(name, "missing"));
        }
    }
    None
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .strip_suffix(b"\n")
        .unwrap_or(bytes)
        .split(|b| *b == b'\n')
        .filter(|_| !bytes.is_empty())
}

fn open_member(path: &Path, name: &str) -> Result<Box<dyn BufRead>, BundleError> {
    let file = std::fs::File::open(path)?;
    let mut archive = tar::Archive::new(file);
    // The entries borrow the archive: read the member's offset, then reopen at it.
    for entry in archive.entries()? {
        let entry = entry?;
        if entry.path_bytes().as_ref() == name.as_bytes() {
            let (start, size) = (entry.raw_file_position(), entry.size());
            let mut f = std::fs::File::open(path)?;
            f.seek(SeekFrom::Start(start))?;
            return Ok(Box::new(BufReader::with_capacity(256 * 1024, f.take(size))));
        }
    }
    Err(BundleError::Other(format!(
        "member {name} disappeared while reading"
    )))
}

/// §7.1 step 4 for `events.jsonl`: every line parses.
fn scan_events(path: &Path) -> Result<Option<Verdict>, BundleError> {
    let mut events = open_member(path, "events.jsonl")?;
    let mut line = Vec::new();
    let mut n = 0u64;
    loop {
        line.clear();
        if events.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        n += 1;
        let Some(text) = line.strip_suffix(b"\n") else {
            return Ok(Some(member(
                "events.jsonl",
                format!("line {n}: not terminated by a new line"),
            )));
        };
        if let Err(d) = parse_event(text) {
            return Ok(Some(member("events.jsonl", format!("line {n}: {d}"))));
        }
    }
}

/// An event as a bundle line holds it: where it sits, and its content or (a hash-only
/// stub) only its content hash.
#[derive(Debug)]
struct LineEvent {
    hash: [u8; 32],
    position: i64,
    prev_hash: [u8; 32],
    recorded_at_micros: i64,
    stream: String,
    tenant_prev_position: i64,
    version: i64,
    content: LineContent,
}

/// What a line shows of an event's content.
#[derive(Debug)]
enum LineContent {
    /// The full event (§3).
    Full(Box<FullContent>),
    /// A hash-only stub (§3.1): the content hash alone.
    Stub([u8; 32]),
}

/// The content fields of a full event line.
#[derive(Debug)]
struct FullContent {
    event_id: EventId,
    event_type: String,
    metadata: Value,
    payload: Value,
    schema_version: u32,
    tenant_id: TenantId,
}

/// Parses a line that must be the canonical JSON of an object with exactly `keys`.
fn canonical_object(
    text: &[u8],
    keys: &[&str],
    optional: &[&str],
) -> Result<serde_json::Map<String, Value>, String> {
    let map = canonical_map(text)?;
    exact_keys(map, keys, optional)
}

/// Parses a line that must be the canonical JSON of an object.
fn canonical_map(text: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
    let value: Value = serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
    if canonical_json(&value) != text {
        return Err("not in canonical form (docs/auditing.md §4.1)".to_owned());
    }
    let Value::Object(map) = value else {
        return Err("not a JSON object".to_owned());
    };
    Ok(map)
}

/// `map` when it has every one of `keys` and no key outside `keys` and `optional`.
fn exact_keys(
    map: serde_json::Map<String, Value>,
    keys: &[&str],
    optional: &[&str],
) -> Result<serde_json::Map<String, Value>, String> {
    for k in keys {
        if !map.contains_key(*k) {
            return Err(format!("no `{k}`"));
        }
    }
    if let Some(k) = map
        .keys()
        .find(|k| !keys.contains(&k.as_str()) && !optional.contains(&k.as_str()))
    {
        return Err(format!("unexpected key `{k}`"));
    }
    Ok(map)
}

/// Parses a line of `events.jsonl`: a full event (§3), or a hash-only stub (§3.1) when it
/// has the key `content_hash`.
fn parse_event(text: &[u8]) -> Result<LineEvent, String> {
    let map = canonical_map(text)?;
    let stub = map.contains_key("content_hash");
    let mut m = if stub {
        exact_keys(map, &STUB_KEYS, &[])
    } else {
        exact_keys(map, &EVENT_KEYS, &[])
    }?;
    let (metadata, payload) = if stub {
        (Value::Null, Value::Null)
    } else {
        (
            m.remove("metadata").unwrap_or(Value::Null),
            m.remove("payload").unwrap_or(Value::Null),
        )
    };
    if !stub && !metadata.is_object() {
        return Err("`metadata` is not an object".to_owned());
    }
    let string = |m: &serde_json::Map<String, Value>, k: &str| -> Result<String, String> {
        m.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("`{k}` is not a string"))
    };
    let int = |k: &str| -> Result<i64, String> {
        m.get(k)
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("`{k}` is not a 64-bit integer"))
    };
    let hex32 = |k: &str| -> Result<[u8; 32], String> {
        let s = string(&m, k)?;
        lower_hex32(&s).ok_or_else(|| format!("`{k}` is not 64 lowercase hex"))
    };
    let uuid = |k: &str| -> Result<uuid::Uuid, String> {
        canonical_uuid(&string(&m, k)?)
            .ok_or_else(|| format!("`{k}` is not a lowercase hyphenated UUID"))
    };
    let recorded_at = string(&m, "recorded_at")?;
    let recorded_at = parse_micros(&recorded_at)
        .ok_or_else(|| "`recorded_at` is not YYYY-MM-DDTHH:MM:SS.ffffffZ".to_owned())?;
    let content = if stub {
        LineContent::Stub(hex32("content_hash")?)
    } else {
        let schema_version = m
            .get("schema_version")
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| "`schema_version` is not an integer 0..2^32-1".to_owned())?;
        LineContent::Full(Box::new(FullContent {
            event_id: EventId::from_uuid(uuid("event_id")?),
            event_type: string(&m, "event_type")?,
            schema_version,
            tenant_id: TenantId::from_uuid(uuid("tenant_id")?),
            metadata,
            payload,
        }))
    };
    Ok(LineEvent {
        hash: hex32("hash")?,
        position: int("position")?,
        prev_hash: hex32("prev_hash")?,
        recorded_at_micros: unix_micros(recorded_at),
        stream: string(&m, "stream")?,
        tenant_prev_position: int("tenant_prev_position")?,
        version: int("version")?,
        content,
    })
}

fn lower_hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// `s` as a UUID when it is one in lowercase hyphenated form.
pub(crate) fn canonical_uuid(s: &str) -> Option<uuid::Uuid> {
    let u = uuid::Uuid::parse_str(s).ok()?;
    (u.hyphenated().to_string() == s).then_some(u)
}

fn parse_checkpoint(line: &[u8]) -> Result<Checkpoint, String> {
    let map = canonical_object(line, &CHECKPOINT_KEYS, &["handover"])?;
    parse_checkpoint_value(&Value::Object(map))
}

fn parse_checkpoint_value(v: &Value) -> Result<Checkpoint, String> {
    let Some(map) = v.as_object() else {
        return Err("a checkpoint is not a JSON object".to_owned());
    };
    if let Some(k) = CHECKPOINT_KEYS.iter().find(|k| !map.contains_key(**k)) {
        return Err(format!("no `{k}`"));
    }
    if let Some(k) = map
        .keys()
        .find(|k| !CHECKPOINT_KEYS.contains(&k.as_str()) && k.as_str() != "handover")
    {
        return Err(format!("unexpected key `{k}`"));
    }
    let cp: Checkpoint =
        serde_json::from_value(v.clone()).map_err(|e| format!("not a checkpoint: {e}"))?;
    // Exactly what the fields serialise to: lowercase hex, exact key sets in heads and the
    // hand-over, its time format.
    if serde_json::to_value(&cp).ok().as_ref() != Some(v) {
        return Err("fields not in their canonical form (lowercase hex, exact keys)".to_owned());
    }
    let mut signatures = vec![&cp.signature];
    let mut ids = vec![&cp.key_id];
    if let Some(h) = &cp.handover {
        signatures.extend([&h.from_signature, &h.to_signature]);
        ids.extend([&h.from_key_id, &h.to_key_id]);
    }
    if !signatures.iter().all(|s| {
        s.len() == 128
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }) {
        return Err("a signature is not 128 lowercase hex".to_owned());
    }
    if let Some(id) = ids.iter().find(|id| !netledger_domain::ids::is_key_id(id)) {
        return Err(format!("`{id}` is not a key id"));
    }
    Ok(cp)
}

fn parse_keys(bytes: &[u8]) -> Result<BTreeMap<String, VerifyingKey>, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let list = v
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "no `keys` list".to_owned())?;
    let mut out = BTreeMap::new();
    for k in list {
        let (Some(id), Some(public)) = (
            k.get("key_id").and_then(Value::as_str),
            k.get("public_key").and_then(Value::as_str),
        ) else {
            return Err("an entry lacks key_id or public_key".to_owned());
        };
        let key = parse_public_key(public).map_err(|e| format!("key `{id}`: {e}"))?;
        if out.insert(id.to_owned(), key).is_some() {
            return Err(format!("key id `{id}` is listed twice"));
        }
    }
    Ok(out)
}

/// The config reference an event carries (§7.3 step 8): commit, SHA-256 and file path, or
/// what is malformed about it.
fn config_reference<'a>(
    e: &'a FullContent,
    stream: &str,
) -> Option<Result<(&'a str, &'a str, String), String>> {
    let sha_key = match e.event_type.as_str() {
        "ConfigSnapshotRecorded" => "sha256",
        "ConfigDriftDetected" => "found_sha256",
        _ => return None,
    };
    let device = stream.strip_prefix("device-").and_then(canonical_uuid)?;
    let text = |k: &str| e.payload.get(k).and_then(Value::as_str);
    Some(match (text("commit"), text(sha_key)) {
        (Some(commit), Some(sha))
            if commit.len() == 40
                && commit
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok((commit, sha, format!("devices/{device}.rsc")))
        }
        (Some(_), Some(_)) => Err("`commit` is not 40 lowercase hex".to_owned()),
        _ => Err(format!(
            "the payload lacks `commit` or `{sha_key}` as strings"
        )),
    })
}

/// Parses the keys an auditor pins (`--trusted-key` values, or a file's entries: one per
/// line or separated by commas or spaces; `#` starts a comment line).
pub fn parse_pinned(entries: &[String]) -> Result<Vec<PinnedKey>, BundleError> {
    let mut out = Vec::new();
    for text in entries {
        for entry in text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .flat_map(|l| l.split([',', ' ', '\t']))
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            out.push(
                netledger_domain::audit::parse_pinned_key(entry)
                    .map_err(|e| BundleError::Other(format!("trusted key `{entry}`: {e}")))?,
            );
        }
    }
    if out.is_empty() {
        return Err(BundleError::Other(
            "give the platform's key: --trusted-key <64 hex or SHA256:fingerprint> (from the \
             operator: `netledger audit public-key --all`)"
                .to_owned(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use netledger_domain::canonical::{
        ContentJson, HashedFields, Placement, chain_hash, content_bytes, event_hash,
    };
    use netledger_domain::event::{Actor, EventMetadata};
    use netledger_domain::ids::{EventId, StreamName};

    use super::*;

    fn uuid(s: &str) -> uuid::Uuid {
        uuid::Uuid::parse_str(s).unwrap()
    }

    /// The event of the worked example of docs/auditing.md §4.2.
    fn example_event() -> RecordedEvent {
        let mut e = RecordedEvent {
            position: 42,
            tenant_prev_position: 40,
            tenant_id: TenantId::from_uuid(uuid("01a2b3c4-0000-7000-8000-000000000001")),
            stream: StreamName::parse("device-01a2b3c4-0000-7000-8000-000000000003").unwrap(),
            version: 1,
            event_id: EventId::from_uuid(uuid("01a2b3c4-0000-7000-8000-000000000002")),
            event_type: "ConfigSnapshotRecorded".to_owned(),
            schema_version: 1,
            payload: json!({
                "changed": true,
                "commit": "5d41402abc4b2a76b9719d911017c592aabbccdd",
                "reason": "poll",
                "routeros_version": "7.16.2",
                "sha256": "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                "workflow_id": null,
                "note": "caf\u{e9} \"quoted\"\n",
            }),
            metadata: EventMetadata {
                actor: Actor::System {
                    component: "poller".to_owned(),
                },
                causation_id: uuid("01a2b3c4-0000-7000-8000-0000000000aa"),
                correlation_id: uuid("01a2b3c4-0000-7000-8000-0000000000aa"),
            },
            recorded_at: parse_micros("2026-12-07T10:00:00.123456Z").unwrap(),
            prev_hash: [0; 32],
            hash: [0; 32],
        };
        e.hash = event_hash(&e.prev_hash, HashedFields::from(&e), &mut Vec::new());
        e
    }

    /// The worked example of docs/auditing.md §4.2, as the code computes it.
    fn worked_example() -> String {
        let e = example_event();
        let metadata = serde_json::to_value(&e.metadata).unwrap();
        let mut bytes = Vec::new();
        content_bytes(
            ContentJson {
                tenant_id: &e.tenant_id,
                stream: e.stream.as_str(),
                event_id: &e.event_id,
                event_type: &e.event_type,
                schema_version: e.schema_version,
                metadata: &metadata,
                payload: &e.payload,
            },
            &mut bytes,
        );
        let content: [u8; 32] = Sha256::digest(&bytes).into();
        let placement = Placement {
            position: e.position,
            tenant_prev_position: e.tenant_prev_position,
            version: e.version,
            recorded_at_micros: unix_micros(e.recorded_at),
        };
        assert_eq!(chain_hash(&e.prev_hash, placement, &content), e.hash);
        let mut chain = b"NLEV2".to_vec();
        chain.extend_from_slice(&e.prev_hash);
        for n in [42i64, 40, 1, unix_micros(e.recorded_at)] {
            chain.extend_from_slice(&n.to_be_bytes());
        }
        chain.extend_from_slice(&content);
        assert_eq!(<[u8; 32]>::from(Sha256::digest(&chain)), e.hash);
        let line = String::from_utf8(event_line(&e).unwrap()).unwrap();
        format!(
            "```json\n{line}\n```\n\n```text\nrecorded_at_micros = {}\ncontent_bytes      = {}\ncontent_hash       = {}\nchain_bytes        = {}\nhash               = {}\n```",
            unix_micros(e.recorded_at),
            hex::encode(&bytes),
            hex::encode(content),
            hex::encode(&chain),
            hex::encode(e.hash),
        )
    }

    #[test]
    fn the_documented_worked_example_is_what_the_code_computes() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/auditing.md"
        ))
        .unwrap();
        let begin = "<!-- worked-example:begin -->\n";
        let start = doc.find(begin).unwrap() + begin.len();
        let end = doc.find("\n<!-- worked-example:end -->").unwrap();
        let expected = worked_example();
        assert_eq!(
            &doc[start..end],
            expected,
            "docs/auditing.md §4.2 is out of date; the block should read:\n{expected}"
        );
        // The line parses back (canonical, all keys) and hashes to its hash.
        let line = expected.lines().nth(1).unwrap();
        let e = parse_event(line.as_bytes()).unwrap();
        assert_eq!(e.position, 42);
    }

    /// The block between `<!-- {name}:begin -->` and `<!-- {name}:end -->` of docs/auditing.md.
    fn doc_block(name: &str) -> String {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/auditing.md"
        ))
        .unwrap();
        let begin = format!("<!-- {name}:begin -->\n");
        let start = doc.find(&begin).unwrap() + begin.len();
        let end = doc.find(&format!("\n<!-- {name}:end -->")).unwrap();
        doc[start..end].to_owned()
    }

    /// §3.1: the worked example's event as a hash-only stub is the documented line, and it
    /// hashes to the event's hash from its content hash alone.
    #[test]
    fn the_documented_stub_example_is_what_the_code_computes() {
        let e = example_event();
        let line = String::from_utf8(stub_line(&e).unwrap()).unwrap();
        let expected = format!("```json\n{line}\n```");
        assert_eq!(
            doc_block("stub-example"),
            expected,
            "docs/auditing.md §3.1 is out of date; the block should read:\n{expected}"
        );
        let parsed = parse_event(line.as_bytes()).unwrap();
        let LineContent::Stub(content) = parsed.content else {
            panic!("not read as a stub: {line}");
        };
        let placement = Placement {
            position: parsed.position,
            tenant_prev_position: parsed.tenant_prev_position,
            version: parsed.version,
            recorded_at_micros: parsed.recorded_at_micros,
        };
        assert_eq!(chain_hash(&parsed.prev_hash, placement, &content), e.hash);
        // A stub with a key of the full form, or without one of its own, is refused.
        let v: Value = serde_json::from_str(&line).unwrap();
        let mut extra = v.as_object().unwrap().clone();
        extra.insert("event_id".to_owned(), json!("x"));
        let extra = canonical_json(&Value::Object(extra));
        assert!(
            parse_event(&extra)
                .unwrap_err()
                .contains("unexpected key `event_id`")
        );
        let mut missing = v.as_object().unwrap().clone();
        missing.remove("recorded_at");
        let missing = canonical_json(&Value::Object(missing));
        assert!(
            parse_event(&missing)
                .unwrap_err()
                .contains("no `recorded_at`")
        );
    }

    #[test]
    fn numbers_are_canonical_as_documented() {
        for (value, text) in [
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (0.00001, "0.00001"),
            (1e-6, "1e-6"),
            (2.5e-300, "2.5e-300"),
            (12345.678, "12345.678"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
        ] {
            assert_eq!(
                String::from_utf8(canonical_json(&json!(value))).unwrap(),
                text
            );
        }
    }

    #[test]
    fn a_line_that_is_not_canonical_or_has_other_keys_is_refused() {
        let line = worked_example().lines().nth(1).unwrap().to_owned();
        assert!(parse_event(line.as_bytes()).is_ok());
        let spaced = line.replacen(":", ": ", 1);
        assert!(
            parse_event(spaced.as_bytes())
                .unwrap_err()
                .contains("canonical")
        );
        let extra = line.replacen("{", "{\"aaa\":1,", 1);
        assert!(
            parse_event(extra.as_bytes())
                .unwrap_err()
                .contains("unexpected key `aaa`")
        );
        let upper = line.replacen("\"prev_hash\":\"00", "\"prev_hash\":\"0A", 1);
        assert!(
            parse_event(upper.as_bytes())
                .unwrap_err()
                .contains("lowercase hex")
        );
    }
}
