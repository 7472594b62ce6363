//! Projector `devices`: the device list and device detail (`rm_devices`) and the tag index
//! (`rm_device_tags`), folded from `device-<id>` streams.
//!
//! Events are decoded as the domain's [`DeviceEvent`] and folded by `DeviceRow::apply`, an
//! exhaustive match. A row exists from `DeviceRegistered` on; events of a stream with no
//! registration are skipped. `last_seen_at` is the time of the latest event that proves the
//! device answered (it came online, the poller saw a change while it was online, the breaker
//! closed after a successful poll, a config export was read from it); `last_event_at` is the
//! time of the latest event of any type on its stream. `rollback_timers` holds the
//! rollback-timer device condition (issue #15 item 3) from `DeviceRollbackTimersFound` until
//! `DeviceRollbackTimersCleared`.

use std::collections::BTreeSet;

use async_trait::async_trait;
use netledger_domain::device::{
    DeviceEvent, DeviceRegistered, Endpoint, SshClientKey, Tag, Transport,
};
use netledger_domain::{EventType, RecordedEvent};
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Rows, stream_uuid};
use crate::error::ProjectionError;
use crate::projector::{Projector, decode_event};

type Key = (Uuid, Uuid);

/// One `rm_devices` row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeviceRow {
    name: String,
    host: String,
    port: i32,
    transport: String,
    tls_fingerprint: Option<String>,
    username: String,
    credentials_key_id: String,
    tags: Vec<String>,
    poll_interval_secs: i32,
    status: &'static str,
    offline_reason: Option<String>,
    identity: Option<String>,
    routeros_version: Option<String>,
    board_name: Option<String>,
    architecture: Option<String>,
    routerboard_firmware: Option<String>,
    breaker: &'static str,
    breaker_failures: Option<i32>,
    breaker_retry_at: Option<OffsetDateTime>,
    breaker_last_error: Option<String>,
    last_snapshot_commit: Option<String>,
    last_snapshot_sha256: Option<String>,
    last_snapshot_at: Option<OffsetDateTime>,
    last_drift_at: Option<OffsetDateTime>,
    /// The rollback-timer condition (`rollback_timers` column), while the device has it.
    rollback_timers: Option<serde_json::Value>,
    /// SSH access as registered (`ssh` column: the domain's `SshAccess` as JSON).
    ssh: Option<serde_json::Value>,
    /// The public half of its SSH login key (`ssh_client_key` column: the domain's
    /// `SshClientKey` as JSON), while its credentials hold one.
    ssh_client_key: Option<serde_json::Value>,
    registered_at: OffsetDateTime,
    removed_at: Option<OffsetDateTime>,
    removed_reason: Option<String>,
    last_seen_at: Option<OffsetDateTime>,
    last_event_at: OffsetDateTime,
    stream_version: i64,
    last_position: i64,
    /// (name, tags) as `rm_device_tags` holds them; `None` when it holds nothing yet.
    written_tags: Option<(String, Vec<String>)>,
}

fn static_status(s: &str) -> &'static str {
    match s {
        "online" => "online",
        "offline" => "offline",
        _ => "unknown",
    }
}

fn static_breaker(s: &str) -> &'static str {
    if s == "open" { "open" } else { "closed" }
}

fn ssh_column(endpoint: &Endpoint) -> Option<serde_json::Value> {
    endpoint
        .ssh
        .as_ref()
        .and_then(|s| serde_json::to_value(s).ok())
}

fn client_key_column(key: Option<&SshClientKey>) -> Option<serde_json::Value> {
    key.and_then(|k| serde_json::to_value(k).ok())
}

fn transport_columns(t: &Transport) -> (String, Option<String>) {
    match t {
        Transport::Plain => ("plain".to_owned(), None),
        Transport::TlsPinned { fingerprint_sha256 } => {
            ("tls_pinned".to_owned(), Some(fingerprint_sha256.clone()))
        }
        Transport::TlsVerified => ("tls_verified".to_owned(), None),
    }
}

impl DeviceRow {
    fn set_endpoint(&mut self, endpoint: &Endpoint) {
        self.host = endpoint.host.as_str().to_owned();
        self.port = i32::from(endpoint.port);
        (self.transport, self.tls_fingerprint) = transport_columns(&endpoint.transport);
        self.ssh = ssh_column(endpoint);
    }

    /// The row of a device's first registration (the event `e`).
    fn registered(reg: DeviceRegistered, e: &RecordedEvent) -> Self {
        let at = e.recorded_at;
        let (transport, tls_fingerprint) = transport_columns(&reg.endpoint.transport);
        Self {
            name: reg.name.as_str().to_owned(),
            host: reg.endpoint.host.as_str().to_owned(),
            port: i32::from(reg.endpoint.port),
            transport,
            tls_fingerprint,
            ssh: ssh_column(&reg.endpoint),
            ssh_client_key: client_key_column(reg.ssh_client_key.as_ref()),
            username: reg.username,
            credentials_key_id: reg.credentials_key_id,
            tags: tag_texts(&reg.tags),
            poll_interval_secs: i32::try_from(reg.poll_interval_secs).unwrap_or(i32::MAX),
            status: "unknown",
            offline_reason: None,
            identity: None,
            routeros_version: None,
            board_name: None,
            architecture: None,
            routerboard_firmware: None,
            breaker: "closed",
            breaker_failures: None,
            breaker_retry_at: None,
            breaker_last_error: None,
            last_snapshot_commit: None,
            last_snapshot_sha256: None,
            last_snapshot_at: None,
            last_drift_at: None,
            rollback_timers: None,
            registered_at: at,
            removed_at: None,
            removed_reason: None,
            last_seen_at: None,
            last_event_at: at,
            stream_version: e.version,
            last_position: e.position,
            written_tags: None,
        }
    }

    /// Folds one event recorded at `at` into the row (the caller then moves its position);
    /// every device event is matched, so a new one is a compile error here until it is
    /// folded. `last_seen_at` moves for the events that prove the device answered.
    fn apply(&mut self, event: DeviceEvent, at: OffsetDateTime) {
        let seen = match event {
            // Registered again (after removal): new registration, observed state kept.
            DeviceEvent::Registered(reg) => {
                self.name = reg.name.as_str().to_owned();
                self.set_endpoint(&reg.endpoint);
                self.ssh_client_key = client_key_column(reg.ssh_client_key.as_ref());
                self.username = reg.username;
                self.credentials_key_id = reg.credentials_key_id;
                self.tags = tag_texts(&reg.tags);
                self.poll_interval_secs = i32::try_from(reg.poll_interval_secs).unwrap_or(i32::MAX);
                self.registered_at = at;
                self.removed_at = None;
                self.removed_reason = None;
                false
            }
            DeviceEvent::Updated(u) => {
                if let Some(name) = u.name {
                    self.name = name.as_str().to_owned();
                }
                if let Some(endpoint) = u.endpoint {
                    self.set_endpoint(&endpoint);
                }
                if let Some(secs) = u.poll_interval_secs {
                    self.poll_interval_secs = i32::try_from(secs).unwrap_or(i32::MAX);
                }
                false
            }
            DeviceEvent::TagsSet(t) => {
                self.tags = tag_texts(&t.tags);
                false
            }
            DeviceEvent::CredentialsChanged(c) => {
                self.ssh_client_key = client_key_column(c.ssh_client_key.as_ref());
                self.username = c.username;
                self.credentials_key_id = c.key_id;
                false
            }
            DeviceEvent::CredentialsCleared(_) => {
                // No stored credentials: an empty key id (the login name stays for display).
                self.credentials_key_id = String::new();
                self.ssh_client_key = None;
                false
            }
            DeviceEvent::Removed(r) => {
                self.removed_at = Some(at);
                self.removed_reason = Some(r.reason);
                false
            }
            DeviceEvent::CameOnline(o) => {
                self.status = "online";
                self.offline_reason = None;
                self.identity = Some(o.facts.identity);
                self.routeros_version = Some(o.facts.version);
                self.board_name = Some(o.facts.board_name);
                self.architecture = Some(o.facts.architecture);
                self.routerboard_firmware = o.facts.routerboard_firmware;
                true
            }
            DeviceEvent::WentOffline(o) => {
                self.status = "offline";
                self.offline_reason = Some(o.reason);
                false
            }
            DeviceEvent::VersionChanged(v) => {
                self.routeros_version = Some(v.to);
                true
            }
            DeviceEvent::IdentityChanged(v) => {
                self.identity = Some(v.to);
                true
            }
            DeviceEvent::HardwareChanged(h) => {
                self.board_name = Some(h.board_name.1);
                self.routerboard_firmware = h.routerboard_firmware.1;
                true
            }
            DeviceEvent::PollingSuspended(s) => {
                self.breaker = "open";
                self.breaker_failures =
                    Some(i32::try_from(s.consecutive_failures).unwrap_or(i32::MAX));
                self.breaker_retry_at = Some(s.retry_at);
                self.breaker_last_error = Some(s.last_error);
                false
            }
            DeviceEvent::PollingResumed(_) => {
                self.breaker = "closed";
                self.breaker_failures = None;
                self.breaker_retry_at = None;
                self.breaker_last_error = None;
                true
            }
            DeviceEvent::SnapshotRecorded(s) => {
                self.last_snapshot_commit = Some(s.commit);
                self.last_snapshot_sha256 = Some(s.sha256);
                self.last_snapshot_at = Some(at);
                true
            }
            DeviceEvent::DriftDetected(d) => {
                self.last_snapshot_commit = Some(d.commit);
                self.last_snapshot_sha256 = Some(d.found_sha256);
                self.last_snapshot_at = Some(at);
                self.last_drift_at = Some(at);
                true
            }
            // a condition found by a push (the device answered)
            DeviceEvent::RollbackTimersFound(f) => {
                let since = self
                    .rollback_timers
                    .as_ref()
                    .and_then(|c| c.get("since").cloned())
                    .unwrap_or_else(|| serde_json::Value::String(rfc3339(at)));
                self.rollback_timers = Some(serde_json::json!({
                    "timers": f.timers,
                    "source": f.source,
                    "detail": f.detail,
                    "workflow_id": f.workflow_id,
                    "since": since,
                }));
                true
            }
            DeviceEvent::RollbackTimersCleared(_) => {
                self.rollback_timers = None;
                true
            }
            // the first SSH connection's host key, pinned from now on (it answered)
            DeviceEvent::SshHostKeyPinned(p) => {
                if let Some(ssh) = self.ssh.as_mut().and_then(|v| v.as_object_mut()) {
                    ssh.insert(
                        "host_key".into(),
                        serde_json::json!({
                            "trust": "pinned",
                            "fingerprint_sha256": p.fingerprint_sha256,
                        }),
                    );
                }
                true
            }
        };
        if seen {
            self.last_seen_at = Some(at);
        }
    }
}

/// `at` as RFC 3339 (a recorded time always formats; the fallback is never used).
fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn tag_texts(tags: &BTreeSet<Tag>) -> Vec<String> {
    tags.iter().map(|t| t.as_str().to_owned()).collect()
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct DevicesProjector {
    rows: Rows<Key, DeviceRow>,
    replay: bool,
    flush_rows: usize,
}

const COLUMNS: &str = "tenant_id, device_id, name, host, port, transport, tls_fingerprint, \
    username, credentials_key_id, tags, poll_interval_secs, status, offline_reason, identity, \
    routeros_version, board_name, architecture, routerboard_firmware, breaker, breaker_failures, \
    breaker_retry_at, breaker_last_error, last_snapshot_commit, last_snapshot_sha256, \
    last_snapshot_at, last_drift_at, registered_at, removed_at, removed_reason, last_seen_at, \
    last_event_at, stream_version, last_position, rollback_timers, ssh, ssh_client_key";

impl DevicesProjector {
    async fn load(
        &mut self,
        conn: &mut PgConnection,
        keys: Vec<Key>,
    ) -> Result<(), ProjectionError> {
        if keys.is_empty() {
            return Ok(());
        }
        let (tenants, devices): (Vec<Uuid>, Vec<Uuid>) = keys.into_iter().unzip();
        let sql = format!(
            "SELECT {COLUMNS} FROM rm_devices WHERE (tenant_id, device_id) IN \
             (SELECT * FROM unnest($1::uuid[], $2::uuid[]))"
        );
        let rows = sqlx::query(&sql)
            .bind(&tenants)
            .bind(&devices)
            .fetch_all(&mut *conn)
            .await
            .map_err(ProjectionError::db("load devices"))?;
        for r in rows {
            let get = |e: sqlx::Error| ProjectionError::Database {
                operation: "decode device row",
                source: e,
            };
            let key: Key = (r.try_get(0).map_err(get)?, r.try_get(1).map_err(get)?);
            let name: String = r.try_get(2).map_err(get)?;
            let tags: Vec<String> = r.try_get(9).map_err(get)?;
            let status: String = r.try_get(11).map_err(get)?;
            let breaker: String = r.try_get(18).map_err(get)?;
            let row = DeviceRow {
                written_tags: Some((name.clone(), tags.clone())),
                name,
                host: r.try_get(3).map_err(get)?,
                port: r.try_get(4).map_err(get)?,
                transport: r.try_get(5).map_err(get)?,
                tls_fingerprint: r.try_get(6).map_err(get)?,
                username: r.try_get(7).map_err(get)?,
                credentials_key_id: r.try_get(8).map_err(get)?,
                tags,
                poll_interval_secs: r.try_get(10).map_err(get)?,
                status: static_status(&status),
                offline_reason: r.try_get(12).map_err(get)?,
                identity: r.try_get(13).map_err(get)?,
                routeros_version: r.try_get(14).map_err(get)?,
                board_name: r.try_get(15).map_err(get)?,
                architecture: r.try_get(16).map_err(get)?,
                routerboard_firmware: r.try_get(17).map_err(get)?,
                breaker: static_breaker(&breaker),
                breaker_failures: r.try_get(19).map_err(get)?,
                breaker_retry_at: r.try_get(20).map_err(get)?,
                breaker_last_error: r.try_get(21).map_err(get)?,
                last_snapshot_commit: r.try_get(22).map_err(get)?,
                last_snapshot_sha256: r.try_get(23).map_err(get)?,
                last_snapshot_at: r.try_get(24).map_err(get)?,
                last_drift_at: r.try_get(25).map_err(get)?,
                registered_at: r.try_get(26).map_err(get)?,
                removed_at: r.try_get(27).map_err(get)?,
                removed_reason: r.try_get(28).map_err(get)?,
                last_seen_at: r.try_get(29).map_err(get)?,
                last_event_at: r.try_get(30).map_err(get)?,
                stream_version: r.try_get(31).map_err(get)?,
                last_position: r.try_get(32).map_err(get)?,
                rollback_timers: r.try_get(33).map_err(get)?,
                ssh: r.try_get(34).map_err(get)?,
                ssh_client_key: r.try_get(35).map_err(get)?,
            };
            self.rows.loaded(key, row);
        }
        Ok(())
    }

    fn fold(&mut self, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let Some(device) = stream_uuid(e) else {
            return Ok(());
        };
        let key = (*e.tenant_id.as_uuid(), device);
        if let Some(row) = self.rows.get(&key)
            && e.position <= row.last_position
        {
            return Ok(());
        }
        let event = decode_event::<DeviceEvent>(e);
        // A registration whose payload does not decode changes nothing, not even the position.
        let registration = e.event_type == DeviceRegistered::TYPE;
        let Some(row) = self.rows.get_mut(&key) else {
            if registration {
                if let Some(DeviceEvent::Registered(reg)) = event? {
                    self.rows.insert(key, DeviceRow::registered(reg, e));
                }
            } else {
                tracing::debug!(position = e.position, stream = %e.stream, "event for an unregistered device; skipped");
            }
            return Ok(());
        };
        match event? {
            Some(event) => row.apply(event, e.recorded_at),
            None if registration => return Ok(()),
            // Unknown types (newer code, other features) and malformed payloads change nothing
            // but the stream position and the time of the last event.
            None => {}
        }
        row.last_event_at = e.recorded_at;
        row.stream_version = e.version;
        row.last_position = e.position;
        self.rows.touch(&key);
        Ok(())
    }

    async fn write(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let keys = self.rows.take_dirty();
        if keys.is_empty() {
            return Ok(());
        }
        let n = keys.len();
        let mut c = Columns::with_capacity(n);
        let (mut del, mut ins) = (TagRows::default(), TagRows::default());
        for k in &keys {
            let Some(r) = self.rows.get_mut(k) else {
                continue;
            };
            c.push(*k, r);
            let unchanged = r
                .written_tags
                .as_ref()
                .is_some_and(|(name, tags)| *name == r.name && *tags == r.tags);
            if unchanged {
                continue;
            }
            match &r.written_tags {
                Some((name, tags)) if *name == r.name => {
                    for t in tags.iter().filter(|t| !r.tags.contains(t)) {
                        del.push(*k, t, name);
                    }
                    for t in r.tags.iter().filter(|t| !tags.contains(t)) {
                        ins.push(*k, t, &r.name);
                    }
                }
                Some((name, tags)) => {
                    for t in tags {
                        del.push(*k, t, name);
                    }
                    for t in &r.tags {
                        ins.push(*k, t, &r.name);
                    }
                }
                None => {
                    for t in &r.tags {
                        ins.push(*k, t, &r.name);
                    }
                }
            }
            r.written_tags = Some((r.name.clone(), r.tags.clone()));
        }
        c.upsert(conn).await?;
        if !del.tenant.is_empty() {
            sqlx::query(
                "DELETE FROM rm_device_tags WHERE (tenant_id, tag, name, device_id) IN \
                 (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[]))",
            )
            .bind(&del.tenant)
            .bind(&del.tag)
            .bind(&del.name)
            .bind(&del.device)
            .execute(&mut *conn)
            .await
            .map_err(ProjectionError::db("delete device tags"))?;
        }
        if !ins.tenant.is_empty() {
            sqlx::query(
                "INSERT INTO rm_device_tags (tenant_id, tag, name, device_id) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[]) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&ins.tenant)
            .bind(&ins.tag)
            .bind(&ins.name)
            .bind(&ins.device)
            .execute(&mut *conn)
            .await
            .map_err(ProjectionError::db("insert device tags"))?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct TagRows {
    tenant: Vec<Uuid>,
    tag: Vec<String>,
    name: Vec<String>,
    device: Vec<Uuid>,
}

impl TagRows {
    fn push(&mut self, key: Key, tag: &str, name: &str) {
        self.tenant.push(key.0);
        self.device.push(key.1);
        self.tag.push(tag.to_owned());
        self.name.push(name.to_owned());
    }
}

/// The columns of the changed rows, for one `INSERT ... SELECT FROM unnest(...)`.
#[derive(Default)]
struct Columns {
    tenant: Vec<Uuid>,
    device: Vec<Uuid>,
    name: Vec<String>,
    host: Vec<String>,
    port: Vec<i32>,
    transport: Vec<String>,
    tls_fingerprint: Vec<Option<String>>,
    username: Vec<String>,
    credentials_key_id: Vec<String>,
    tags: Vec<String>,
    poll_interval_secs: Vec<i32>,
    status: Vec<&'static str>,
    offline_reason: Vec<Option<String>>,
    identity: Vec<Option<String>>,
    routeros_version: Vec<Option<String>>,
    board_name: Vec<Option<String>>,
    architecture: Vec<Option<String>>,
    routerboard_firmware: Vec<Option<String>>,
    breaker: Vec<&'static str>,
    breaker_failures: Vec<Option<i32>>,
    breaker_retry_at: Vec<Option<OffsetDateTime>>,
    breaker_last_error: Vec<Option<String>>,
    last_snapshot_commit: Vec<Option<String>>,
    last_snapshot_sha256: Vec<Option<String>>,
    last_snapshot_at: Vec<Option<OffsetDateTime>>,
    last_drift_at: Vec<Option<OffsetDateTime>>,
    registered_at: Vec<OffsetDateTime>,
    removed_at: Vec<Option<OffsetDateTime>>,
    removed_reason: Vec<Option<String>>,
    last_seen_at: Vec<Option<OffsetDateTime>>,
    last_event_at: Vec<OffsetDateTime>,
    stream_version: Vec<i64>,
    last_position: Vec<i64>,
    rollback_timers: Vec<Option<serde_json::Value>>,
    ssh: Vec<Option<serde_json::Value>>,
    ssh_client_key: Vec<Option<serde_json::Value>>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        let mut c = Self::default();
        c.tenant.reserve(n);
        c.device.reserve(n);
        c
    }

    fn push(&mut self, key: Key, r: &DeviceRow) {
        self.tenant.push(key.0);
        self.device.push(key.1);
        self.name.push(r.name.clone());
        self.host.push(r.host.clone());
        self.port.push(r.port);
        self.transport.push(r.transport.clone());
        self.tls_fingerprint.push(r.tls_fingerprint.clone());
        self.username.push(r.username.clone());
        self.credentials_key_id.push(r.credentials_key_id.clone());
        // Tags cannot hold a comma (see `Tag`), so a comma-joined text carries the array
        // through `unnest`, which would flatten an array of arrays.
        self.tags.push(r.tags.join(","));
        self.poll_interval_secs.push(r.poll_interval_secs);
        self.status.push(r.status);
        self.offline_reason.push(r.offline_reason.clone());
        self.identity.push(r.identity.clone());
        self.routeros_version.push(r.routeros_version.clone());
        self.board_name.push(r.board_name.clone());
        self.architecture.push(r.architecture.clone());
        self.routerboard_firmware
            .push(r.routerboard_firmware.clone());
        self.breaker.push(r.breaker);
        self.breaker_failures.push(r.breaker_failures);
        self.breaker_retry_at.push(r.breaker_retry_at);
        self.breaker_last_error.push(r.breaker_last_error.clone());
        self.last_snapshot_commit
            .push(r.last_snapshot_commit.clone());
        self.last_snapshot_sha256
            .push(r.last_snapshot_sha256.clone());
        self.last_snapshot_at.push(r.last_snapshot_at);
        self.last_drift_at.push(r.last_drift_at);
        self.registered_at.push(r.registered_at);
        self.removed_at.push(r.removed_at);
        self.removed_reason.push(r.removed_reason.clone());
        self.last_seen_at.push(r.last_seen_at);
        self.last_event_at.push(r.last_event_at);
        self.stream_version.push(r.stream_version);
        self.last_position.push(r.last_position);
        self.rollback_timers.push(r.rollback_timers.clone());
        self.ssh.push(r.ssh.clone());
        self.ssh_client_key.push(r.ssh_client_key.clone());
    }

    async fn upsert(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        let sql = format!(
            "INSERT INTO rm_devices ({COLUMNS}) \
             SELECT t, d, n, h, p, tr, tf, un, ck, \
                    CASE WHEN tg = '' THEN '{{}}'::text[] ELSE string_to_array(tg, ',') END, \
                    pi, st, orr, idn, rv, bn, ar, rf, br, bf, bra, ble, lsc, lss, lsa, lda, ra, \
                    rma, rmr, lse, lev, sv, lp, rbt, ssh, sck \
             FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::text[], \
                         $7::text[], $8::text[], $9::text[], $10::text[], $11::int[], $12::text[], \
                         $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], \
                         $18::text[], $19::text[], $20::int[], $21::timestamptz[], $22::text[], \
                         $23::text[], $24::text[], $25::timestamptz[], $26::timestamptz[], \
                         $27::timestamptz[], $28::timestamptz[], $29::text[], $30::timestamptz[], \
                         $31::timestamptz[], $32::bigint[], $33::bigint[], $34::jsonb[], \
                         $35::jsonb[], $36::jsonb[]) \
                  AS u(t, d, n, h, p, tr, tf, un, ck, tg, pi, st, orr, idn, rv, bn, ar, rf, br, \
                       bf, bra, ble, lsc, lss, lsa, lda, ra, rma, rmr, lse, lev, sv, lp, rbt, ssh, \
                       sck) \
             ON CONFLICT (tenant_id, device_id) DO UPDATE SET \
                name = EXCLUDED.name, host = EXCLUDED.host, port = EXCLUDED.port, \
                transport = EXCLUDED.transport, tls_fingerprint = EXCLUDED.tls_fingerprint, \
                username = EXCLUDED.username, credentials_key_id = EXCLUDED.credentials_key_id, \
                tags = EXCLUDED.tags, poll_interval_secs = EXCLUDED.poll_interval_secs, \
                status = EXCLUDED.status, offline_reason = EXCLUDED.offline_reason, \
                identity = EXCLUDED.identity, routeros_version = EXCLUDED.routeros_version, \
                board_name = EXCLUDED.board_name, architecture = EXCLUDED.architecture, \
                routerboard_firmware = EXCLUDED.routerboard_firmware, breaker = EXCLUDED.breaker, \
                breaker_failures = EXCLUDED.breaker_failures, \
                breaker_retry_at = EXCLUDED.breaker_retry_at, \
                breaker_last_error = EXCLUDED.breaker_last_error, \
                last_snapshot_commit = EXCLUDED.last_snapshot_commit, \
                last_snapshot_sha256 = EXCLUDED.last_snapshot_sha256, \
                last_snapshot_at = EXCLUDED.last_snapshot_at, \
                last_drift_at = EXCLUDED.last_drift_at, registered_at = EXCLUDED.registered_at, \
                removed_at = EXCLUDED.removed_at, removed_reason = EXCLUDED.removed_reason, \
                last_seen_at = EXCLUDED.last_seen_at, last_event_at = EXCLUDED.last_event_at, \
                stream_version = EXCLUDED.stream_version, last_position = EXCLUDED.last_position, \
                rollback_timers = EXCLUDED.rollback_timers, ssh = EXCLUDED.ssh, \
                ssh_client_key = EXCLUDED.ssh_client_key"
        );
        sqlx::query(&sql)
            .bind(self.tenant)
            .bind(self.device)
            .bind(self.name)
            .bind(self.host)
            .bind(self.port)
            .bind(self.transport)
            .bind(self.tls_fingerprint)
            .bind(self.username)
            .bind(self.credentials_key_id)
            .bind(self.tags)
            .bind(self.poll_interval_secs)
            .bind(self.status)
            .bind(self.offline_reason)
            .bind(self.identity)
            .bind(self.routeros_version)
            .bind(self.board_name)
            .bind(self.architecture)
            .bind(self.routerboard_firmware)
            .bind(self.breaker)
            .bind(self.breaker_failures)
            .bind(self.breaker_retry_at)
            .bind(self.breaker_last_error)
            .bind(self.last_snapshot_commit)
            .bind(self.last_snapshot_sha256)
            .bind(self.last_snapshot_at)
            .bind(self.last_drift_at)
            .bind(self.registered_at)
            .bind(self.removed_at)
            .bind(self.removed_reason)
            .bind(self.last_seen_at)
            .bind(self.last_event_at)
            .bind(self.stream_version)
            .bind(self.last_position)
            .bind(self.rollback_timers)
            .bind(self.ssh)
            .bind(self.ssh_client_key)
            .execute(conn)
            .await
            .map_err(ProjectionError::db("upsert devices"))?;
        Ok(())
    }
}

#[async_trait]
impl Projector for DevicesProjector {
    fn name(&self) -> &'static str {
        "devices"
    }

    fn category(&self) -> Option<&'static str> {
        Some("device")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_devices", "rm_device_tags"]
    }

    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let keys: Vec<Key> = events
            .iter()
            .filter_map(|e| stream_uuid(e).map(|d| (*e.tenant_id.as_uuid(), d)))
            .collect();
        let missing = self.rows.missing(keys.iter(), self.replay);
        self.load(conn, missing).await?;
        for e in events {
            self.fold(e)?;
        }
        if !self.replay || self.rows.dirty_len() >= self.flush_rows {
            self.write(conn).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        self.write(conn).await
    }

    fn forget(&mut self) {
        self.rows.clear();
    }

    fn set_replay(&mut self, flush_rows: Option<usize>) {
        self.replay = flush_rows.is_some();
        self.flush_rows = flush_rows.unwrap_or(0);
    }
}

#[cfg(test)]
mod tests;
