//! The device aggregate: what a managed device's stream (`device-<id>`) records, the state
//! folded from it, and the pure decisions of the poller (which observations are a *change*
//! worth an event) and of registration.
//!
//! Raw samples (CPU, traffic) are telemetry and never events; only changes are.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::event::EventType;
use crate::ids::{DeviceId, WorkflowId};

/// Why a device value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// The device name is unusable.
    #[error(
        "device name `{0}` is invalid: use 1-64 characters of letters, digits, `.`, `_` or `-`"
    )]
    BadName(String),
    /// The host is unusable.
    #[error(
        "device host `{0}` is invalid: give a hostname or IP address (1-253 characters, no spaces)"
    )]
    BadHost(String),
    /// A tag is unusable.
    #[error(
        "tag `{0}` is invalid: use 1-64 characters of letters, digits, `.`, `_`, `-`, `:` or `/`"
    )]
    BadTag(String),
    /// The port is zero.
    #[error("port 0 is invalid: RouterOS listens on 8728 (API) or 8729 (API-SSL) by default")]
    BadPort,
    /// The poll interval is out of range.
    #[error("poll interval {0}s is out of range: use 5 to 86400 seconds")]
    BadInterval(u32),
    /// The device is already registered.
    #[error("device {0} is already registered")]
    AlreadyRegistered(DeviceId),
    /// The device is not registered (or was removed).
    #[error("device {0} is not registered")]
    NotRegistered(DeviceId),
}

/// A device's display name: 1-64 characters of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceName(String);

impl DeviceName {
    /// Parses a name.
    pub fn parse(s: &str) -> Result<Self, DeviceError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(DeviceError::BadName(s.to_owned()))
        }
    }
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceName {
    type Error = DeviceError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<DeviceName> for String {
    fn from(value: DeviceName) -> Self {
        value.0
    }
}
impl fmt::Display for DeviceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device's management address: hostname or IP, 1-253 characters without whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Host(String);

impl Host {
    /// Parses a host.
    pub fn parse(s: &str) -> Result<Self, DeviceError> {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(DeviceError::BadHost(s.to_owned()))
        }
    }
    /// The host as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Host {
    type Error = DeviceError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<Host> for String {
    fn from(value: Host) -> Self {
        value.0
    }
}

/// A tag: 1-64 characters of `[A-Za-z0-9._:/-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    /// Parses a tag.
    pub fn parse(s: &str) -> Result<Self, DeviceError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/')
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(DeviceError::BadTag(s.to_owned()))
        }
    }
    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Tag {
    type Error = DeviceError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<Tag> for String {
    fn from(value: Tag) -> Self {
        value.0
    }
}

/// How the platform talks to the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Transport {
    /// Plain API (port 8728 by default).
    Plain,
    /// API-SSL, accepting only a certificate with this SHA-256 fingerprint (hex).
    TlsPinned {
        /// Lowercase hex SHA-256 of the device certificate (DER).
        fingerprint_sha256: String,
    },
    /// API-SSL, certificate verified against the platform's trust roots.
    TlsVerified,
}

/// Where and how to reach a device (no secrets: credentials live encrypted elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Hostname or IP address.
    pub host: Host,
    /// API port.
    pub port: u16,
    /// Plain or TLS.
    pub transport: Transport,
}

/// Facts read from a reachable device.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceFacts {
    /// `/system identity` name.
    pub identity: String,
    /// RouterOS version string as the device reports it (`7.16.2 (stable)`).
    pub version: String,
    /// `/system resource` board-name.
    pub board_name: String,
    /// `/system resource` architecture-name.
    pub architecture: String,
    /// `/system routerboard` current-firmware, when the device is a RouterBOARD.
    pub routerboard_firmware: Option<String>,
}

// ---- events --------------------------------------------------------------------------------

/// A device was put under management.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRegistered {
    /// Its id (also in the stream name).
    pub device_id: DeviceId,
    /// Display name.
    pub name: DeviceName,
    /// Management endpoint.
    pub endpoint: Endpoint,
    /// Login name (the password is stored encrypted, never in events).
    pub username: String,
    /// Id of the key that encrypted its credentials.
    pub credentials_key_id: String,
    /// Tags.
    pub tags: BTreeSet<Tag>,
    /// Poll interval in seconds.
    pub poll_interval_secs: u32,
}
impl EventType for DeviceRegistered {
    const TYPE: &'static str = "DeviceRegistered";
    const SCHEMA_VERSION: u32 = 1;
}

/// Name, endpoint or poll interval changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceUpdated {
    /// New name, if changed.
    pub name: Option<DeviceName>,
    /// New endpoint, if changed.
    pub endpoint: Option<Endpoint>,
    /// New poll interval, if changed.
    pub poll_interval_secs: Option<u32>,
}
impl EventType for DeviceUpdated {
    const TYPE: &'static str = "DeviceUpdated";
    const SCHEMA_VERSION: u32 = 1;
}

/// The tag set was replaced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTagsSet {
    /// The new tags.
    pub tags: BTreeSet<Tag>,
}
impl EventType for DeviceTagsSet {
    const TYPE: &'static str = "DeviceTagsSet";
    const SCHEMA_VERSION: u32 = 1;
}

/// New credentials were stored (encrypted, outside the event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCredentialsChanged {
    /// Login name.
    pub username: String,
    /// Id of the key that encrypted them.
    pub key_id: String,
}
impl EventType for DeviceCredentialsChanged {
    const TYPE: &'static str = "DeviceCredentialsChanged";
    const SCHEMA_VERSION: u32 = 1;
}

/// The device left management.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRemoved {
    /// Why, as the operator gave it.
    pub reason: String,
}
impl EventType for DeviceRemoved {
    const TYPE: &'static str = "DeviceRemoved";
    const SCHEMA_VERSION: u32 = 1;
}

/// The device answered after being unknown or offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCameOnline {
    /// What it reported.
    pub facts: DeviceFacts,
}
impl EventType for DeviceCameOnline {
    const TYPE: &'static str = "DeviceCameOnline";
    const SCHEMA_VERSION: u32 = 1;
}

/// The device stopped answering (or refused the login).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceWentOffline {
    /// Why: the error the poller saw (`connection refused`, `login failed`, `timeout`...).
    pub reason: String,
}
impl EventType for DeviceWentOffline {
    const TYPE: &'static str = "DeviceWentOffline";
    const SCHEMA_VERSION: u32 = 1;
}

/// The RouterOS version changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceVersionChanged {
    /// Before.
    pub from: String,
    /// After.
    pub to: String,
}
impl EventType for DeviceVersionChanged {
    const TYPE: &'static str = "DeviceVersionChanged";
    const SCHEMA_VERSION: u32 = 1;
}

/// `/system identity` changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentityChanged {
    /// Before.
    pub from: String,
    /// After.
    pub to: String,
}
impl EventType for DeviceIdentityChanged {
    const TYPE: &'static str = "DeviceIdentityChanged";
    const SCHEMA_VERSION: u32 = 1;
}

/// Board name, architecture or RouterBOARD firmware changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceHardwareChanged {
    /// Board name before/after.
    pub board_name: (String, String),
    /// RouterBOARD firmware before/after.
    pub routerboard_firmware: (Option<String>, Option<String>),
}
impl EventType for DeviceHardwareChanged {
    const TYPE: &'static str = "DeviceHardwareChanged";
    const SCHEMA_VERSION: u32 = 1;
}

/// The poller's circuit breaker opened: polls are suspended until `retry_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePollingSuspended {
    /// Consecutive failures that opened it.
    pub consecutive_failures: u32,
    /// When the next (half-open) attempt is due.
    #[serde(with = "time::serde::rfc3339")]
    pub retry_at: OffsetDateTime,
    /// The last error.
    pub last_error: String,
}
impl EventType for DevicePollingSuspended {
    const TYPE: &'static str = "DevicePollingSuspended";
    const SCHEMA_VERSION: u32 = 1;
}

/// The breaker closed again after a successful poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePollingResumed {}
impl EventType for DevicePollingResumed {
    const TYPE: &'static str = "DevicePollingResumed";
    const SCHEMA_VERSION: u32 = 1;
}

/// Why a config snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SnapshotReason {
    /// First snapshot after registration.
    Initial,
    /// The periodic schedule.
    Scheduled,
    /// An operator asked for it (backup).
    OnDemand,
    /// Taken by a push or upgrade workflow before touching the device.
    PrePush,
    /// Taken by a push or upgrade workflow after it committed or rolled back.
    PostPush,
    /// Taken because the poller saw drift.
    Drift,
}

/// A config export was stored in the tenant's git repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSnapshotRecorded {
    /// Git commit holding the (normalised, masked) export; when nothing changed, the commit
    /// that already holds this content.
    pub commit: String,
    /// Lowercase hex SHA-256 of the stored file's bytes.
    pub sha256: String,
    /// Whether the content differs from the previous snapshot.
    pub changed: bool,
    /// Why it was taken.
    pub reason: SnapshotReason,
    /// RouterOS version the export came from.
    pub routeros_version: String,
    /// The workflow that took it, if any.
    pub workflow_id: Option<WorkflowId>,
}
impl EventType for ConfigSnapshotRecorded {
    const TYPE: &'static str = "ConfigSnapshotRecorded";
    const SCHEMA_VERSION: u32 = 1;
}

/// The running config no longer matches the last known snapshot and no workflow of ours
/// changed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDriftDetected {
    /// SHA-256 of the last known snapshot.
    pub expected_sha256: String,
    /// SHA-256 of what the device runs now.
    pub found_sha256: String,
    /// The commit that now holds the drifted config.
    pub commit: String,
}
impl EventType for ConfigDriftDetected {
    const TYPE: &'static str = "ConfigDriftDetected";
    const SCHEMA_VERSION: u32 = 1;
}

// ---- state ---------------------------------------------------------------------------------

/// Reachability as the platform last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Never polled yet.
    #[default]
    Unknown,
    /// Answering.
    Online,
    /// Not answering.
    Offline,
}

/// The state of one device, folded from its stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceState {
    /// The registration, when registered and not removed.
    pub registration: Option<DeviceRegistered>,
    /// Whether the device was removed.
    pub removed: bool,
    /// Reachability.
    pub status: Status,
    /// Last reason it went offline.
    pub offline_reason: Option<String>,
    /// Facts from the last successful poll that changed something.
    pub facts: Option<DeviceFacts>,
    /// Whether polling is suspended by the breaker.
    pub polling_suspended: bool,
    /// Last snapshot: (commit, sha256).
    pub last_snapshot: Option<(String, String)>,
    /// The stream version this state was folded to.
    pub version: u64,
}

impl DeviceState {
    /// Folds one event (by type name and payload) into the state. Unknown types are skipped
    /// so that older code can read newer streams; malformed payloads are an error.
    pub fn evolve(
        &mut self,
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<(), serde_json::Error> {
        self.version += 1;
        match event_type {
            DeviceRegistered::TYPE => {
                self.registration = Some(serde_json::from_value(payload.clone())?);
                self.removed = false;
            }
            DeviceUpdated::TYPE => {
                let u: DeviceUpdated = serde_json::from_value(payload.clone())?;
                if let Some(r) = self.registration.as_mut() {
                    if let Some(name) = u.name {
                        r.name = name;
                    }
                    if let Some(endpoint) = u.endpoint {
                        r.endpoint = endpoint;
                    }
                    if let Some(secs) = u.poll_interval_secs {
                        r.poll_interval_secs = secs;
                    }
                }
            }
            DeviceTagsSet::TYPE => {
                let t: DeviceTagsSet = serde_json::from_value(payload.clone())?;
                if let Some(r) = self.registration.as_mut() {
                    r.tags = t.tags;
                }
            }
            DeviceCredentialsChanged::TYPE => {
                let c: DeviceCredentialsChanged = serde_json::from_value(payload.clone())?;
                if let Some(r) = self.registration.as_mut() {
                    r.username = c.username;
                    r.credentials_key_id = c.key_id;
                }
            }
            DeviceRemoved::TYPE => {
                self.removed = true;
            }
            DeviceCameOnline::TYPE => {
                let e: DeviceCameOnline = serde_json::from_value(payload.clone())?;
                self.status = Status::Online;
                self.offline_reason = None;
                self.facts = Some(e.facts);
            }
            DeviceWentOffline::TYPE => {
                let e: DeviceWentOffline = serde_json::from_value(payload.clone())?;
                self.status = Status::Offline;
                self.offline_reason = Some(e.reason);
            }
            DeviceVersionChanged::TYPE => {
                let e: DeviceVersionChanged = serde_json::from_value(payload.clone())?;
                self.facts.get_or_insert_with(DeviceFacts::default).version = e.to;
            }
            DeviceIdentityChanged::TYPE => {
                let e: DeviceIdentityChanged = serde_json::from_value(payload.clone())?;
                self.facts.get_or_insert_with(DeviceFacts::default).identity = e.to;
            }
            DeviceHardwareChanged::TYPE => {
                let e: DeviceHardwareChanged = serde_json::from_value(payload.clone())?;
                let facts = self.facts.get_or_insert_with(DeviceFacts::default);
                facts.board_name = e.board_name.1;
                facts.routerboard_firmware = e.routerboard_firmware.1;
            }
            DevicePollingSuspended::TYPE => self.polling_suspended = true,
            DevicePollingResumed::TYPE => self.polling_suspended = false,
            ConfigSnapshotRecorded::TYPE => {
                let e: ConfigSnapshotRecorded = serde_json::from_value(payload.clone())?;
                self.last_snapshot = Some((e.commit, e.sha256));
            }
            ConfigDriftDetected::TYPE => {
                let e: ConfigDriftDetected = serde_json::from_value(payload.clone())?;
                self.last_snapshot = Some((e.commit, e.found_sha256));
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether the device is registered and not removed.
    pub fn is_managed(&self) -> bool {
        self.registration.is_some() && !self.removed
    }
}

/// What one poll saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The device answered with these facts.
    Reachable(DeviceFacts),
    /// It did not (or refused the login), for this reason.
    Unreachable(String),
}

/// A payload to append, typed by name (the poller's decisions return several kinds).
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// Event type name.
    pub event_type: &'static str,
    /// Schema version.
    pub schema_version: u32,
    /// Payload.
    pub payload: serde_json::Value,
}

impl Decided {
    /// Wraps a typed event.
    pub fn of<E: EventType>(event: &E) -> Result<Self, serde_json::Error> {
        Ok(Self {
            event_type: E::TYPE,
            schema_version: E::SCHEMA_VERSION,
            payload: serde_json::to_value(event)?,
        })
    }
}

/// Decides which events an observation produces: only changes, never a repeat of what the
/// state already says. A removed or unregistered device produces nothing.
pub fn observe(state: &DeviceState, seen: &Observation) -> Result<Vec<Decided>, serde_json::Error> {
    let mut out = Vec::new();
    if !state.is_managed() {
        return Ok(out);
    }
    match seen {
        Observation::Unreachable(reason) => {
            if state.status != Status::Offline {
                out.push(Decided::of(&DeviceWentOffline {
                    reason: reason.clone(),
                })?);
            }
        }
        Observation::Reachable(facts) => match (&state.status, &state.facts) {
            (Status::Online, Some(old)) => {
                version_and_identity_changes(old, facts, &mut out)?;
                if old.board_name != facts.board_name
                    || old.routerboard_firmware != facts.routerboard_firmware
                {
                    out.push(Decided::of(&DeviceHardwareChanged {
                        board_name: (old.board_name.clone(), facts.board_name.clone()),
                        routerboard_firmware: (
                            old.routerboard_firmware.clone(),
                            facts.routerboard_firmware.clone(),
                        ),
                    })?);
                }
            }
            (_, old) => {
                // Back online (or first contact): the online event carries the facts; a
                // version that moved while it was away is a change of its own.
                if let Some(old) = old {
                    version_and_identity_changes(old, facts, &mut out)?;
                }
                out.push(Decided::of(&DeviceCameOnline {
                    facts: facts.clone(),
                })?);
            }
        },
    }
    Ok(out)
}

/// The version and identity changes between two sets of facts, in that order.
fn version_and_identity_changes(
    old: &DeviceFacts,
    facts: &DeviceFacts,
    out: &mut Vec<Decided>,
) -> Result<(), serde_json::Error> {
    if old.version != facts.version {
        out.push(Decided::of(&DeviceVersionChanged {
            from: old.version.clone(),
            to: facts.version.clone(),
        })?);
    }
    if old.identity != facts.identity {
        out.push(Decided::of(&DeviceIdentityChanged {
            from: old.identity.clone(),
            to: facts.identity.clone(),
        })?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn registered() -> DeviceState {
        let mut s = DeviceState::default();
        let reg = DeviceRegistered {
            device_id: DeviceId::new_random(),
            name: DeviceName::parse("core-1").unwrap(),
            endpoint: Endpoint {
                host: Host::parse("127.0.0.1").unwrap(),
                port: 8728,
                transport: Transport::Plain,
            },
            username: "admin".into(),
            credentials_key_id: "k1".into(),
            tags: BTreeSet::new(),
            poll_interval_secs: 60,
        };
        s.evolve(DeviceRegistered::TYPE, &serde_json::to_value(reg).unwrap())
            .unwrap();
        s
    }

    fn facts(version: &str) -> DeviceFacts {
        DeviceFacts {
            identity: "core-1".into(),
            version: version.into(),
            board_name: "CCR2004".into(),
            architecture: "arm64".into(),
            routerboard_firmware: Some("7.15".into()),
        }
    }

    fn apply(s: &mut DeviceState, events: &[Decided]) {
        for e in events {
            s.evolve(e.event_type, &e.payload).unwrap();
        }
    }

    fn types(events: &[Decided]) -> Vec<&'static str> {
        events.iter().map(|e| e.event_type).collect()
    }

    #[test]
    fn first_contact_then_the_same_facts_again_emit_one_event() {
        let mut s = registered();
        let seen = Observation::Reachable(facts("7.15"));
        let first = observe(&s, &seen).unwrap();
        assert_eq!(types(&first), ["DeviceCameOnline"]);
        apply(&mut s, &first);
        assert!(observe(&s, &seen).unwrap().is_empty());
    }

    #[test]
    fn offline_is_reported_once_and_online_again_once() {
        let mut s = registered();
        let up = observe(&s, &Observation::Reachable(facts("7.15"))).unwrap();
        apply(&mut s, &up);
        let down = Observation::Unreachable("connection refused".into());
        let first = observe(&s, &down).unwrap();
        assert_eq!(types(&first), ["DeviceWentOffline"]);
        apply(&mut s, &first);
        assert!(observe(&s, &down).unwrap().is_empty());
        assert_eq!(s.offline_reason.as_deref(), Some("connection refused"));
        let back = observe(&s, &Observation::Reachable(facts("7.15"))).unwrap();
        assert_eq!(types(&back), ["DeviceCameOnline"]);
    }

    #[test]
    fn an_upgrade_while_away_is_a_version_change() {
        let mut s = registered();
        let up = observe(&s, &Observation::Reachable(facts("7.15"))).unwrap();
        apply(&mut s, &up);
        let down = observe(&s, &Observation::Unreachable("rebooting".into())).unwrap();
        apply(&mut s, &down);
        let back = observe(&s, &Observation::Reachable(facts("7.16"))).unwrap();
        assert_eq!(types(&back), ["DeviceVersionChanged", "DeviceCameOnline"]);
        apply(&mut s, &back);
        assert_eq!(s.facts.unwrap().version, "7.16");
    }

    #[test]
    fn online_changes_are_named_by_kind() {
        let mut s = registered();
        let up = observe(&s, &Observation::Reachable(facts("7.15"))).unwrap();
        apply(&mut s, &up);
        let mut f = facts("7.16");
        f.identity = "core-renamed".into();
        f.routerboard_firmware = Some("7.16".into());
        let out = observe(&s, &Observation::Reachable(f)).unwrap();
        assert_eq!(
            types(&out),
            [
                "DeviceVersionChanged",
                "DeviceIdentityChanged",
                "DeviceHardwareChanged"
            ]
        );
    }

    #[test]
    fn removed_devices_produce_nothing() {
        let mut s = registered();
        s.evolve(
            DeviceRemoved::TYPE,
            &serde_json::json!({"reason": "decommissioned"}),
        )
        .unwrap();
        assert!(
            observe(&s, &Observation::Unreachable("x".into()))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn value_objects_refuse_bad_text() {
        assert!(DeviceName::parse("").is_err());
        assert!(DeviceName::parse("a b").is_err());
        assert!(Host::parse("10.0.0.1 ").is_err());
        assert!(Tag::parse("site:ber/rack-2").is_ok());
        assert!(serde_json::from_str::<DeviceName>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<DeviceName>("\"no way\"").is_err());
    }
}
