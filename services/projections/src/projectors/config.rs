//! Projector `config_versions`: one `rm_config_versions` row per `ConfigSnapshotRecorded` or
//! `ConfigDriftDetected` on a `device-<id>` stream, keyed by the event's stream version.
//! Append-only: a re-delivered event hits the primary key and changes nothing. The two are
//! decoded as the domain's [`DeviceEvent`] and matched exhaustively.

use async_trait::async_trait;
use netledger_domain::device::{ConfigDriftDetected, ConfigSnapshotRecorded, DeviceEvent};
use netledger_domain::{EventType, RecordedEvent};
use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{enum_text, on_conflict_skip, stream_uuid};
use crate::error::ProjectionError;
use crate::projector::{Projector, decode_event};

/// See the module docs.
#[derive(Debug, Default)]
pub struct ConfigVersionsProjector {
    replay: bool,
}

#[derive(Default)]
struct Columns {
    tenant: Vec<Uuid>,
    device: Vec<Uuid>,
    stream_version: Vec<i64>,
    position: Vec<i64>,
    kind: Vec<&'static str>,
    commit: Vec<String>,
    sha256: Vec<String>,
    changed: Vec<bool>,
    reason: Vec<String>,
    routeros_version: Vec<Option<String>>,
    workflow_id: Vec<Option<Uuid>>,
    expected_sha256: Vec<Option<String>>,
    recorded_at: Vec<OffsetDateTime>,
}

#[async_trait]
impl Projector for ConfigVersionsProjector {
    fn name(&self) -> &'static str {
        "config_versions"
    }

    fn category(&self) -> Option<&'static str> {
        Some("device")
    }

    fn tables(&self) -> &'static [&'static str] {
        &["rm_config_versions"]
    }

    async fn apply(
        &mut self,
        conn: &mut PgConnection,
        events: &[&RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let mut c = Columns::default();
        for e in events {
            let Some(device) = stream_uuid(e) else {
                continue;
            };
            // Only snapshots and drift are config versions: the other device events are not
            // decoded at all.
            if !matches!(
                e.event_type.as_str(),
                ConfigSnapshotRecorded::TYPE | ConfigDriftDetected::TYPE
            ) {
                continue;
            }
            let Some(event) = decode_event::<DeviceEvent>(e)? else {
                continue;
            };
            match event {
                DeviceEvent::SnapshotRecorded(s) => {
                    c.kind.push("snapshot");
                    c.commit.push(s.commit);
                    c.sha256.push(s.sha256);
                    c.changed.push(s.changed);
                    c.reason.push(enum_text(&s.reason));
                    c.routeros_version.push(Some(s.routeros_version));
                    c.workflow_id.push(s.workflow_id.map(|w| *w.as_uuid()));
                    c.expected_sha256.push(None);
                }
                DeviceEvent::DriftDetected(d) => {
                    c.kind.push("drift");
                    c.commit.push(d.commit);
                    c.sha256.push(d.found_sha256);
                    c.changed.push(true);
                    c.reason.push("drift".to_owned());
                    c.routeros_version.push(None);
                    c.workflow_id.push(None);
                    c.expected_sha256.push(Some(d.expected_sha256));
                }
                DeviceEvent::Registered(_)
                | DeviceEvent::Updated(_)
                | DeviceEvent::TagsSet(_)
                | DeviceEvent::CredentialsChanged(_)
                | DeviceEvent::CredentialsCleared(_)
                | DeviceEvent::Removed(_)
                | DeviceEvent::CameOnline(_)
                | DeviceEvent::WentOffline(_)
                | DeviceEvent::VersionChanged(_)
                | DeviceEvent::IdentityChanged(_)
                | DeviceEvent::HardwareChanged(_)
                | DeviceEvent::PollingSuspended(_)
                | DeviceEvent::PollingResumed(_)
                | DeviceEvent::RollbackTimersFound(_)
                | DeviceEvent::RollbackTimersCleared(_)
                | DeviceEvent::SshHostKeyPinned(_) => continue,
            }
            c.tenant.push(*e.tenant_id.as_uuid());
            c.device.push(device);
            c.stream_version.push(e.version);
            c.position.push(e.position);
            c.recorded_at.push(e.recorded_at);
        }
        if c.tenant.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO rm_config_versions (tenant_id, device_id, stream_version, position, kind, \
                 commit, sha256, changed, reason, routeros_version, workflow_id, expected_sha256, \
                 recorded_at) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::text[], \
                 $6::text[], $7::text[], $8::bool[], $9::text[], $10::text[], $11::uuid[], \
                 $12::text[], $13::timestamptz[]) {}",
            on_conflict_skip(self.replay)
        );
        sqlx::query(&sql)
            .bind(c.tenant)
            .bind(c.device)
            .bind(c.stream_version)
            .bind(c.position)
            .bind(c.kind)
            .bind(c.commit)
            .bind(c.sha256)
            .bind(c.changed)
            .bind(c.reason)
            .bind(c.routeros_version)
            .bind(c.workflow_id)
            .bind(c.expected_sha256)
            .bind(c.recorded_at)
            .execute(conn)
            .await
            .map_err(ProjectionError::db("insert config versions"))?;
        Ok(())
    }

    fn forget(&mut self) {}

    fn set_replay(&mut self, flush_rows: Option<usize>) {
        self.replay = flush_rows.is_some();
    }
}
