//! Time travel: a device (registration, state, config) and the fleet as they were at an
//! instant, folded from the event store up to it, with the config text from the git history
//! and the event position and commit backing each part. The config reference comes from the
//! events and the text from git; the two must agree (the text's SHA-256 is the event's), or
//! the answer is an error naming the position.

use netledger_archive::Archive;
use netledger_domain::device::{DeviceEvent, DeviceState, Status};
use netledger_domain::event::EventEnum as _;
use netledger_domain::ids::{DeviceId, StreamName, TenantId};
use netledger_store::EventReader;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// A config version known from the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigRef {
    /// Git commit holding the text.
    pub commit: String,
    /// SHA-256 of the text, as the event recorded it.
    pub sha256: String,
    /// When the event was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    /// The event's global position.
    pub position: i64,
    /// `ConfigSnapshotRecorded` or `ConfigDriftDetected`.
    pub event_type: String,
}

/// A device as it was at an instant.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceAsOf {
    /// The device.
    pub device_id: DeviceId,
    /// The instant.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Position of the device's last event at or before `at`.
    pub position: i64,
    /// Its stream version then.
    pub stream_version: u64,
    /// Whether it was registered (and not removed) then.
    pub registered: bool,
    /// Whether it had been removed.
    pub removed: bool,
    /// Its name then.
    pub name: Option<String>,
    /// Its management address then.
    pub host: Option<String>,
    /// Its API port then.
    pub port: Option<u16>,
    /// Its tags then.
    pub tags: Vec<String>,
    /// `online`, `offline` or `unknown`.
    pub status: &'static str,
    /// Why it was offline.
    pub offline_reason: Option<String>,
    /// RouterOS identity from the last poll that changed something.
    pub identity: Option<String>,
    /// RouterOS version.
    pub routeros_version: Option<String>,
    /// Board.
    pub board_name: Option<String>,
    /// Whether the breaker had suspended polling.
    pub polling_suspended: bool,
    /// The config then: the last config event at or before `at`.
    pub config: Option<ConfigRef>,
    /// Its text, from git at `config.commit` (SHA-256 checked against the event).
    pub config_text: Option<String>,
    /// Every config version known by then, newest first (events whose content changed).
    pub versions: Vec<ConfigRef>,
}

/// Why an as-of answer could not be given.
#[derive(Debug, thiserror::Error)]
pub enum AsOfError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] netledger_store::StoreError),
    /// The config history failed.
    #[error(transparent)]
    Archive(#[from] netledger_archive::ArchiveError),
    /// An event of the device does not decode.
    #[error("event at position {position} of device {device} does not decode: {detail}")]
    Decode {
        /// Device.
        device: DeviceId,
        /// Position.
        position: i64,
        /// What.
        detail: String,
    },
    /// The events and git disagree.
    #[error(
        "the config history disagrees with the event log: the event at position {position} names commit {commit} with SHA-256 {expected}, git holds {found}"
    )]
    Disagree {
        /// The event's position.
        position: i64,
        /// The commit.
        commit: String,
        /// The event's SHA-256.
        expected: String,
        /// What git's text hashes to.
        found: String,
    },
    /// A blocking task stopped.
    #[error("as-of task: {0}")]
    Task(String),
}

fn device_stream(device: DeviceId) -> Result<StreamName, AsOfError> {
    StreamName::parse(&format!("device-{device}")).map_err(|e| AsOfError::Decode {
        device,
        position: 0,
        detail: format!("stream name: {e}"),
    })
}

/// `device` as it was at `at` (tenant-scoped `reader`); `None` when it has no event by then.
pub async fn device_as_of(
    reader: &EventReader,
    archive: &Archive,
    tenant: TenantId,
    device: DeviceId,
    at: OffsetDateTime,
) -> Result<Option<DeviceAsOf>, AsOfError> {
    let events = reader
        .read_stream_as_of(&device_stream(device)?, at)
        .await?;
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(None);
    };
    let mut state = DeviceState::default();
    let mut versions = Vec::new();
    for e in &events {
        let decoded = DeviceEvent::decode_stored(e.parts()).map_err(|err| AsOfError::Decode {
            device,
            position: e.position,
            detail: err.to_string(),
        })?;
        let reference = match &decoded {
            DeviceEvent::SnapshotRecorded(s) => {
                Some((s.commit.clone(), s.sha256.clone(), s.changed))
            }
            DeviceEvent::DriftDetected(d) => Some((d.commit.clone(), d.found_sha256.clone(), true)),
            _ => None,
        };
        if let Some((commit, sha256, changed)) = reference {
            let r = ConfigRef {
                commit,
                sha256,
                recorded_at: e.recorded_at,
                position: e.position,
                event_type: e.event_type.clone(),
            };
            if changed || versions.is_empty() {
                versions.push(r.clone());
            } else if let Some(top) = versions.last_mut() {
                // Unchanged content: the version stays the one holding it.
                if top.sha256 != r.sha256 {
                    versions.push(r);
                }
            }
        }
        state.evolve(&decoded);
    }
    let config = versions.last().cloned();
    let config_text = match &config {
        None => None,
        Some(c) => {
            let (a, commit) = (archive.clone(), c.commit.clone());
            let text = tokio::task::spawn_blocking(move || a.read(tenant, device, &commit))
                .await
                .map_err(|e| AsOfError::Task(e.to_string()))??;
            let found = hex::encode(Sha256::digest(text.as_bytes()));
            if found != c.sha256 {
                return Err(AsOfError::Disagree {
                    position: c.position,
                    commit: c.commit.clone(),
                    expected: c.sha256.clone(),
                    found,
                });
            }
            Some(text)
        }
    };
    versions.reverse();
    let facts = state.facts.clone();
    let reg = state.registration.as_ref();
    Ok(Some(DeviceAsOf {
        device_id: device,
        at,
        position: last,
        stream_version: state.version,
        registered: reg.is_some() && !state.removed,
        removed: state.removed,
        name: reg.map(|r| r.name.as_str().to_owned()),
        host: reg.map(|r| r.endpoint.host.as_str().to_owned()),
        port: reg.map(|r| r.endpoint.port),
        tags: reg
            .map(|r| r.tags.iter().map(|t| t.as_str().to_owned()).collect())
            .unwrap_or_default(),
        status: match state.status {
            Status::Online => "online",
            Status::Offline => "offline",
            Status::Unknown => "unknown",
        },
        offline_reason: state.offline_reason.clone(),
        identity: facts.as_ref().map(|f| f.identity.clone()),
        routeros_version: facts.as_ref().map(|f| f.version.clone()),
        board_name: facts.as_ref().map(|f| f.board_name.clone()),
        polling_suspended: state.polling_suspended,
        config,
        config_text,
        versions,
    }))
}

/// One device of the fleet as of an instant.
#[derive(Debug, Clone, Serialize)]
pub struct FleetEntry {
    /// The device.
    pub device_id: DeviceId,
    /// Its name then.
    pub name: String,
    /// `online`, `offline` or `unknown`.
    pub status: &'static str,
    /// RouterOS version then.
    pub routeros_version: Option<String>,
    /// Its config then (commit), if any.
    pub config_commit: Option<String>,
    /// Position of its last event at or before the instant.
    pub position: i64,
}

/// A page of the fleet as of an instant: the devices registered (and not removed) then,
/// by device id after `after`, at most `limit`; the cursor of the next page.
pub async fn fleet_as_of(
    reader: &EventReader,
    archive: &Archive,
    tenant: TenantId,
    at: OffsetDateTime,
    after: Option<DeviceId>,
    limit: usize,
) -> Result<(Vec<FleetEntry>, Option<DeviceId>), AsOfError> {
    let mut out = Vec::new();
    let mut cursor = after;
    loop {
        let streams = reader
            .streams_as_of(
                "device",
                at,
                cursor.map(|d| format!("device-{d}")).as_deref(),
                200,
            )
            .await?;
        if streams.is_empty() {
            return Ok((out, None));
        }
        for stream in &streams {
            let Some(id) = stream
                .strip_prefix("device-")
                .and_then(|s| uuid::Uuid::parse_str(s).ok())
                .map(DeviceId::from_uuid)
            else {
                continue;
            };
            cursor = Some(id);
            let Some(d) = device_as_of(reader, archive, tenant, id, at).await? else {
                continue;
            };
            if !d.registered {
                continue;
            }
            out.push(FleetEntry {
                device_id: id,
                name: d.name.unwrap_or_default(),
                status: d.status,
                routeros_version: d.routeros_version,
                config_commit: d.config.map(|c| c.commit),
                position: d.position,
            });
            if out.len() >= limit {
                // Possibly more: the next page starts after this device.
                return Ok((out, Some(id)));
            }
        }
        if streams.len() < 200 {
            return Ok((out, None));
        }
    }
}
