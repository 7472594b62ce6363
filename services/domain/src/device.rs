//! The device aggregate: what a managed device's stream (`device-<id>`) records
//! ([`DeviceEvent`]), the state folded from it ([`DeviceState::evolve`], the one device fold:
//! the store, the poller and the projections use it or match the same enum), and the pure
//! decisions ([`DeviceState::decide`]): the operator's commands (register, update, tags,
//! credentials, remove) and the poller's observations (which are a *change* worth an event).
//!
//! Raw samples (CPU, traffic) are telemetry and never events; only changes are.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::aggregate::Aggregate;
use crate::event::{DecodeError, EventEnum, EventType, StoredEvent, event_enum};
use crate::ids::{DeviceId, WorkflowId};

/// Why a device value or command was refused.
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
    #[error("the device is not registered (or was removed)")]
    NotRegistered,
    /// The login name is unusable.
    #[error("username `{0}` is invalid: use 1-100 characters without control characters")]
    BadUsername(String),
    /// An SSH host-key fingerprint is unusable.
    #[error(
        "SSH host key fingerprint `{0}` is invalid: give the SHA-256 of the host key as 64 hex \
         digits or in OpenSSH form (`SHA256:` and 43 base64 characters)"
    )]
    BadSshFingerprint(String),
    /// A host key was to be recorded for a device that does not trust on first use.
    #[error(
        "the device's SSH host key is not waiting for trust on first use (no SSH access, or a \
         key is already pinned: {0}); re-pin it with a device update instead"
    )]
    SshKeyNotAwaited(String),
    /// The public half of an SSH client key is unusable.
    #[error("SSH client key is invalid: {0}")]
    BadSshClientKey(&'static str),
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
    /// SSH access on the same host, for what the API cannot do on the device's version
    /// (see [`file_access`]); `None`: API only. Absent in events written before SSH
    /// existed (and omitted when `None`), so they read back and re-serialise unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshAccess>,
}

/// SSH (and SFTP) access to a device, with the same RouterOS user and password as the API
/// (its group needs the `ssh` and `ftp` policies, docs/devices.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshAccess {
    /// SSH port (RouterOS default 22).
    pub port: u16,
    /// How the device's SSH host key is trusted.
    pub host_key: SshHostKey,
}

/// The public half of the SSH key Netledger logs in to a device with, instead of the
/// password (RouterOS refuses SSH password logins for a user with an imported key unless
/// `/ip ssh always-allow-password-login=yes`). The private half is sealed with the
/// credentials, outside the event stream; events carry only this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SshClientKey {
    /// Key algorithm (`ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`).
    pub algorithm: String,
    /// Lowercase hex SHA-256 of the public key in SSH wire encoding (the bytes OpenSSH's
    /// `SHA256:` fingerprint is the base64 of).
    pub fingerprint_sha256: String,
    /// The public key as an OpenSSH line, what `/user ssh-keys import` takes on the device.
    pub public_key: String,
}

/// How a device's SSH host key is trusted. There is no "accept any key" setting: an
/// unpinned key is either awaited once, explicitly, or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "trust", rename_all = "snake_case")]
pub enum SshHostKey {
    /// Only the key with this fingerprint is accepted.
    Pinned {
        /// Lowercase hex SHA-256 of the host public key in SSH wire encoding (the bytes
        /// OpenSSH's `SHA256:` fingerprint is the base64 of).
        fingerprint_sha256: String,
    },
    /// Trust on first use, chosen explicitly at registration: the first connection's key is
    /// recorded ([`DeviceSshHostKeyPinned`]) and pinned from then on.
    FirstUse,
}

impl SshHostKey {
    /// Parses a fingerprint given as 64 hex digits or in OpenSSH form (`SHA256:` + 43
    /// base64 characters without padding) into the pinned form (lowercase hex).
    pub fn pinned(fingerprint: &str) -> Result<SshHostKey, DeviceError> {
        let bad = || DeviceError::BadSshFingerprint(fingerprint.chars().take(80).collect());
        let t = fingerprint.trim();
        let hex = if let Some(b64) = t.strip_prefix("SHA256:") {
            use base64::Engine;
            use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
            // As OpenSSH prints it (no padding); a padded or non-canonical last character
            // still names the same 32 bytes.
            const LENIENT: GeneralPurpose = GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                GeneralPurposeConfig::new()
                    .with_decode_allow_trailing_bits(true)
                    .with_decode_padding_mode(DecodePaddingMode::Indifferent),
            );
            let bytes = LENIENT.decode(b64).map_err(|_| bad())?;
            if bytes.len() != 32 {
                return Err(bad());
            }
            hex::encode(bytes)
        } else if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            t.to_ascii_lowercase()
        } else {
            return Err(bad());
        };
        Ok(SshHostKey::Pinned {
            fingerprint_sha256: hex,
        })
    }

    /// The pinned fingerprint (lowercase hex), if any.
    pub fn fingerprint(&self) -> Option<&str> {
        match self {
            SshHostKey::Pinned { fingerprint_sha256 } => Some(fingerprint_sha256),
            SshHostKey::FirstUse => None,
        }
    }
}

/// How one kind of device work reaches the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The binary API does it on this version.
    Api,
    /// SSH/SFTP does it (the API cannot on this version, and SSH access is registered).
    Ssh,
    /// Neither: the API cannot on this version and no SSH access is registered.
    Unavailable,
}

/// Which path each file job takes on a device: decided from its RouterOS version and its
/// registration alone (the binary API wherever it does the job, SSH where it cannot),
/// the same in the poller, the workflows and the device's facts in the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAccess {
    /// Reading an export back (`/export file=` then the file's text): the API's `contents`
    /// is capped near 4 KB on RouterOS 6 and 60 KB before 7.13, `/file/read` (7.13+)
    /// reads any size.
    pub export: Via,
    /// Uploading a file (change script, firmware package): `/file add` from 7.9.
    pub upload: Via,
    /// Downloading a binary file (backup): `/file/read` from 7.13.
    pub download: Via,
}

/// The [`FileAccess`] of a device at `version` (`major`, `minor`) with `ssh` access
/// registered or not. Before 7.13 exports go over SSH when it is registered (the API's
/// `contents` cap is size-dependent; SSH has none) and over the API otherwise (small
/// configurations still fit; larger ones fail clearly).
pub fn file_access(major: u32, minor: u32, ssh: bool) -> FileAccess {
    let at_least = |ma: u32, mi: u32| (major, minor) >= (ma, mi);
    let pick = |api: bool| match (api, ssh) {
        (true, _) => Via::Api,
        (false, true) => Via::Ssh,
        (false, false) => Via::Unavailable,
    };
    FileAccess {
        export: if at_least(7, 13) || !ssh {
            Via::Api
        } else {
            Via::Ssh
        },
        upload: pick(at_least(7, 9)),
        download: pick(at_least(7, 13)),
    }
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
    /// The SSH key it logs in with over SSH, when one was given (absent in events written
    /// before SSH keys existed, which read back as none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_client_key: Option<SshClientKey>,
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
    /// The SSH key stored with them, if any (the new credentials replace an earlier key:
    /// absent means none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_client_key: Option<SshClientKey>,
}
impl EventType for DeviceCredentialsChanged {
    const TYPE: &'static str = "DeviceCredentialsChanged";
    const SCHEMA_VERSION: u32 = 1;
}

/// The stored credentials were deleted because the endpoint changed (host, port or
/// transport): a password is never sent to a host it was not entered for. New ones are set
/// with a credentials change (`devices:credentials`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCredentialsCleared {
    /// Why (`endpoint changed: host, port`).
    pub reason: String,
}
impl EventType for DeviceCredentialsCleared {
    const TYPE: &'static str = "DeviceCredentialsCleared";
    const SCHEMA_VERSION: u32 = 1;
}

/// The device's SSH host key was recorded on first use (the registration chose
/// [`SshHostKey::FirstUse`]); from now on only this key is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSshHostKeyPinned {
    /// Lowercase hex SHA-256 of the host public key (SSH wire encoding).
    pub fingerprint_sha256: String,
    /// Key algorithm as the device offered it (`ssh-ed25519`, `rsa-sha2-256`...).
    pub algorithm: String,
    /// Which component connected first (`poller`, `worker`).
    pub recorded_by: String,
}
impl EventType for DeviceSshHostKeyPinned {
    const TYPE: &'static str = "DeviceSshHostKeyPinned";
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
///
/// Who changed it, as the device itself recorded it, rides along: the device's change
/// history (RouterOS `/system/history`) and the RouterOS users logged in at the time
/// (`/user/active`). These fields were added later, optional and left out of the payload
/// when absent, so events recorded before them read back and serialise byte for byte as
/// they were stored (same schema version: nothing to upcast).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ConfigDriftDetected {
    /// SHA-256 of the last known snapshot.
    pub expected_sha256: String,
    /// SHA-256 of what the device runs now.
    pub found_sha256: String,
    /// The commit that now holds the drifted config.
    pub commit: String,
    /// What the device's own change history (`/system/history`) says, newest first: the
    /// actions recorded since the previous snapshot when the poller could tell, otherwise
    /// the newest ones; a bounded number of rows. `None`: not read (events recorded before
    /// this field existed, or the read failed: [`Self::device_history_error`]); empty: read,
    /// nothing recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_history: Option<Vec<DeviceHistoryEntry>>,
    /// Why the device's history could not be read (a timeout, a refusal, a dropped
    /// session); the drift is recorded all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_history_error: Option<String>,
    /// The RouterOS users logged in when the drift was seen (`/user/active`; Netledger's
    /// own API sessions included). `None`: not read, or the read failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_users: Option<Vec<ActiveUser>>,
}
impl EventType for ConfigDriftDetected {
    const TYPE: &'static str = "ConfigDriftDetected";
    const SCHEMA_VERSION: u32 = 1;
}

impl ConfigDriftDetected {
    /// The RouterOS accounts the device's history names (`by`), newest first, each once.
    pub fn changed_by(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for h in self.device_history.iter().flatten() {
            if !h.by.is_empty() && !out.contains(&h.by.as_str()) {
                out.push(&h.by);
            }
        }
        out
    }
}

/// One row of a device's change history (RouterOS `/system/history`), as the device
/// printed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceHistoryEntry {
    /// What was done, in the device's words (`filter rule added`).
    pub action: String,
    /// The RouterOS user who did it.
    pub by: String,
    /// When, in the device's clock and format (`jun/01/2023 12:11:25` before RouterOS 7.10,
    /// `2023-06-01 12:11:25` from 7.10); not converted, since the device's clock and time
    /// zone are its own.
    pub time: String,
    /// The policy the action needed (`write`), when the device said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

/// A RouterOS user logged in on the device (a `/user/active` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveUser {
    /// Login name.
    pub name: String,
    /// Where from (an IP address; empty for the console).
    pub address: String,
    /// How (`api`, `winbox`, `ssh`, `console`, ...).
    pub via: String,
    /// Since when, in the device's clock and format, when the device said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

#[cfg(test)]
mod drift_payload_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::canonical::canonical_json;

    #[test]
    fn a_drift_recorded_before_the_history_fields_reads_back_and_serialises_unchanged() {
        // As the store holds it (written before the fields existed).
        let stored = serde_json::json!({
            "expected_sha256": "aa",
            "found_sha256": "bb",
            "commit": "c0ffee"
        });
        let e: ConfigDriftDetected = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(e.device_history, None);
        assert_eq!(e.device_history_error, None);
        assert_eq!(e.active_users, None);
        assert!(e.changed_by().is_empty());
        let again = serde_json::to_value(&e).unwrap();
        assert_eq!(canonical_json(&again), canonical_json(&stored));
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"expected_sha256":"aa","found_sha256":"bb","commit":"c0ffee"}"#
        );
        let decoded = DeviceEvent::decode_stored(StoredEvent {
            position: 1,
            event_type: ConfigDriftDetected::TYPE,
            schema_version: 1,
            payload: &stored,
        });
        assert_eq!(decoded.unwrap().payload().unwrap(), stored);
    }

    #[test]
    fn a_drift_with_the_devices_history_round_trips_and_names_who() {
        let e = ConfigDriftDetected {
            expected_sha256: "aa".into(),
            found_sha256: "bb".into(),
            commit: "c0ffee".into(),
            device_history: Some(vec![
                DeviceHistoryEntry {
                    action: "filter rule added".into(),
                    by: "bob".into(),
                    time: "2023-06-01 12:11:25".into(),
                    policy: Some("write".into()),
                },
                DeviceHistoryEntry {
                    action: "address added".into(),
                    by: "carol".into(),
                    time: "2023-06-01 12:10:00".into(),
                    policy: None,
                },
                DeviceHistoryEntry {
                    action: "route 0.0.0.0/0 added".into(),
                    by: "bob".into(),
                    time: "2023-06-01 12:09:00".into(),
                    policy: None,
                },
            ]),
            device_history_error: None,
            active_users: Some(vec![ActiveUser {
                name: "bob".into(),
                address: "192.0.2.7".into(),
                via: "winbox".into(),
                when: None,
            }]),
        };
        assert_eq!(e.changed_by(), ["bob", "carol"]);
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["device_history"][0]["by"], "bob");
        assert!(v["device_history"][1].get("policy").is_none());
        assert!(v.get("device_history_error").is_none());
        assert!(v["active_users"][0].get("when").is_none());
        let back: ConfigDriftDetected = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        // read but empty stays distinguishable from not read
        let empty = ConfigDriftDetected {
            device_history: Some(Vec::new()),
            active_users: None,
            ..e.clone()
        };
        let v = serde_json::to_value(&empty).unwrap();
        assert_eq!(v["device_history"], serde_json::json!([]));
        let failed = ConfigDriftDetected {
            device_history: None,
            device_history_error: Some("timed out".into()),
            active_users: None,
            ..e
        };
        let v = serde_json::to_value(&failed).unwrap();
        assert!(v.get("device_history").is_none());
        assert_eq!(v["device_history_error"], "timed out");
    }
}

/// A device condition an operator resolves: Netledger rollback timers (`netledger-rollback-*`
/// scheduler entries) are, or may still be, on the device. Such a timer can fire later and
/// revert whatever another workflow changed since, so pushes refuse to arm while one exists.
/// Appended by the push that found them (`source: refused_arm`) or whose rollback could not
/// confirm its own timer gone (`source: rollback_unconfirmed`; that push keeps the device
/// and retries until the timer is gone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRollbackTimersFound {
    /// The scheduler entries (names) found or not confirmed gone.
    pub timers: Vec<String>,
    /// The workflow that found them.
    pub workflow_id: WorkflowId,
    /// `refused_arm` or `rollback_unconfirmed`.
    pub source: String,
    /// What happened, for the operator.
    pub detail: String,
}
impl EventType for DeviceRollbackTimersFound {
    const TYPE: &'static str = "DeviceRollbackTimersFound";
    const SCHEMA_VERSION: u32 = 1;
}

/// The condition of [`DeviceRollbackTimersFound`] is resolved: a workflow saw no Netledger
/// rollback timer on the device any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRollbackTimersCleared {
    /// The workflow that confirmed it.
    pub workflow_id: WorkflowId,
}
impl EventType for DeviceRollbackTimersCleared {
    const TYPE: &'static str = "DeviceRollbackTimersCleared";
    const SCHEMA_VERSION: u32 = 1;
}

// ---- the event enum ------------------------------------------------------------------------

event_enum! {
    /// Every event of a device stream (`device-<id>`), by its stored type name.
    pub enum DeviceEvent in "device" {
        /// `DeviceRegistered`.
        Registered(DeviceRegistered),
        /// `DeviceUpdated`.
        Updated(DeviceUpdated),
        /// `DeviceTagsSet`.
        TagsSet(DeviceTagsSet),
        /// `DeviceCredentialsChanged`.
        CredentialsChanged(DeviceCredentialsChanged),
        /// `DeviceRemoved`.
        Removed(DeviceRemoved),
        /// `DeviceCameOnline`.
        CameOnline(DeviceCameOnline),
        /// `DeviceWentOffline`.
        WentOffline(DeviceWentOffline),
        /// `DeviceVersionChanged`.
        VersionChanged(DeviceVersionChanged),
        /// `DeviceIdentityChanged`.
        IdentityChanged(DeviceIdentityChanged),
        /// `DeviceHardwareChanged`.
        HardwareChanged(DeviceHardwareChanged),
        /// `DevicePollingSuspended`.
        PollingSuspended(DevicePollingSuspended),
        /// `DevicePollingResumed`.
        PollingResumed(DevicePollingResumed),
        /// `ConfigSnapshotRecorded`.
        SnapshotRecorded(ConfigSnapshotRecorded),
        /// `ConfigDriftDetected`.
        DriftDetected(ConfigDriftDetected),
        /// `DeviceCredentialsCleared`.
        CredentialsCleared(DeviceCredentialsCleared),
        /// `DeviceRollbackTimersFound`.
        RollbackTimersFound(DeviceRollbackTimersFound),
        /// `DeviceRollbackTimersCleared`.
        RollbackTimersCleared(DeviceRollbackTimersCleared),
        /// `DeviceSshHostKeyPinned`.
        SshHostKeyPinned(DeviceSshHostKeyPinned),
    }
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
    /// Whether credentials are stored (set at registration and by a credentials change,
    /// cleared when the endpoint changes).
    pub has_credentials: bool,
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
    /// Condition: Netledger rollback timers found (or not confirmed gone) on the device,
    /// until a workflow sees none ([`DeviceRollbackTimersFound`]).
    pub stale_rollback_timers: Vec<String>,
    /// The stream version this state was folded to.
    pub version: u64,
}

impl DeviceState {
    /// Folds one event into the state (every event counts one stream version).
    pub fn evolve(&mut self, event: &DeviceEvent) {
        self.version += 1;
        match event {
            DeviceEvent::Registered(r) => {
                self.registration = Some(r.clone());
                self.removed = false;
                self.has_credentials = true;
            }
            DeviceEvent::Updated(u) => {
                if let Some(r) = self.registration.as_mut() {
                    if let Some(name) = &u.name {
                        r.name = name.clone();
                    }
                    if let Some(endpoint) = &u.endpoint {
                        r.endpoint = endpoint.clone();
                    }
                    if let Some(secs) = u.poll_interval_secs {
                        r.poll_interval_secs = secs;
                    }
                }
            }
            DeviceEvent::TagsSet(t) => {
                if let Some(r) = self.registration.as_mut() {
                    r.tags = t.tags.clone();
                }
            }
            DeviceEvent::CredentialsChanged(c) => {
                if let Some(r) = self.registration.as_mut() {
                    r.username = c.username.clone();
                    r.credentials_key_id = c.key_id.clone();
                    r.ssh_client_key = c.ssh_client_key.clone();
                }
                self.has_credentials = true;
            }
            DeviceEvent::CredentialsCleared(_) => {
                if let Some(r) = self.registration.as_mut() {
                    r.credentials_key_id = String::new();
                    r.ssh_client_key = None;
                }
                self.has_credentials = false;
            }
            DeviceEvent::Removed(_) => self.removed = true,
            DeviceEvent::CameOnline(e) => {
                self.status = Status::Online;
                self.offline_reason = None;
                self.facts = Some(e.facts.clone());
            }
            DeviceEvent::WentOffline(e) => {
                self.status = Status::Offline;
                self.offline_reason = Some(e.reason.clone());
            }
            DeviceEvent::VersionChanged(e) => {
                self.facts.get_or_insert_with(DeviceFacts::default).version = e.to.clone();
            }
            DeviceEvent::IdentityChanged(e) => {
                self.facts.get_or_insert_with(DeviceFacts::default).identity = e.to.clone();
            }
            DeviceEvent::HardwareChanged(e) => {
                let facts = self.facts.get_or_insert_with(DeviceFacts::default);
                facts.board_name = e.board_name.1.clone();
                facts.routerboard_firmware = e.routerboard_firmware.1.clone();
            }
            DeviceEvent::PollingSuspended(_) => self.polling_suspended = true,
            DeviceEvent::PollingResumed(_) => self.polling_suspended = false,
            DeviceEvent::SnapshotRecorded(e) => {
                self.last_snapshot = Some((e.commit.clone(), e.sha256.clone()));
            }
            DeviceEvent::DriftDetected(e) => {
                self.last_snapshot = Some((e.commit.clone(), e.found_sha256.clone()));
            }
            DeviceEvent::RollbackTimersFound(e) => {
                self.stale_rollback_timers = e.timers.clone();
            }
            DeviceEvent::RollbackTimersCleared(_) => self.stale_rollback_timers.clear(),
            DeviceEvent::SshHostKeyPinned(e) => {
                if let Some(ssh) = self
                    .registration
                    .as_mut()
                    .and_then(|r| r.endpoint.ssh.as_mut())
                {
                    ssh.host_key = SshHostKey::Pinned {
                        fingerprint_sha256: e.fingerprint_sha256.clone(),
                    };
                }
            }
        }
    }

    /// Folds one stored event: decodes it as a [`DeviceEvent`] (upcasting older schema
    /// versions) and evolves. A type that is not a device event
    /// ([`DecodeError::UnknownType`]: written by newer code) only counts its stream version,
    /// so older code can read newer streams; any other decode error is returned.
    pub fn evolve_stored(&mut self, event: StoredEvent<'_>) -> Result<(), DecodeError> {
        match DeviceEvent::decode_stored(event) {
            Ok(e) => {
                self.evolve(&e);
                Ok(())
            }
            Err(DecodeError::UnknownType { .. }) => {
                self.version += 1;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the device is registered and not removed.
    pub fn is_managed(&self) -> bool {
        self.registration.is_some() && !self.removed
    }

    /// The registration of a managed device, or [`DeviceError::NotRegistered`].
    fn managed(&self) -> Result<&DeviceRegistered, DeviceError> {
        match &self.registration {
            Some(reg) if !self.removed => Ok(reg),
            _ => Err(DeviceError::NotRegistered),
        }
    }

    /// Decides a command (see [`DeviceCommand`]): the events to append (none when it changes
    /// nothing), or why it is refused.
    pub fn decide(&self, command: &DeviceCommand) -> Result<Vec<DeviceEvent>, DeviceError> {
        command.validate()?;
        Ok(match command {
            DeviceCommand::Register(cmd) => {
                if self.is_managed() {
                    return Err(DeviceError::AlreadyRegistered(cmd.device_id));
                }
                vec![DeviceEvent::Registered(DeviceRegistered {
                    device_id: cmd.device_id,
                    name: cmd.name.clone(),
                    endpoint: cmd.endpoint.clone(),
                    username: cmd.username.clone(),
                    credentials_key_id: cmd.credentials_key_id.clone(),
                    tags: cmd.tags.clone(),
                    poll_interval_secs: cmd.poll_interval_secs,
                    ssh_client_key: cmd.ssh_client_key.clone(),
                })]
            }
            DeviceCommand::Update(changes) => {
                let reg = self.managed()?;
                let event = DeviceUpdated {
                    name: changes.name.clone().filter(|n| *n != reg.name),
                    endpoint: changes.endpoint.clone().filter(|e| *e != reg.endpoint),
                    poll_interval_secs: changes
                        .poll_interval_secs
                        .filter(|s| *s != reg.poll_interval_secs),
                };
                if event.name.is_none()
                    && event.endpoint.is_none()
                    && event.poll_interval_secs.is_none()
                {
                    Vec::new()
                } else {
                    // SSH settings alone (port, host key) keep the credentials: the password
                    // still goes to the host it was entered for.
                    let cleared = match &event.endpoint {
                        Some(new) if self.has_credentials => {
                            let old = &reg.endpoint;
                            let changed: Vec<&str> = [
                                (new.host != old.host, "host"),
                                (new.port != old.port, "port"),
                                (new.transport != old.transport, "transport"),
                            ]
                            .into_iter()
                            .filter_map(|(c, what)| c.then_some(what))
                            .collect();
                            (!changed.is_empty()).then(|| {
                                DeviceEvent::CredentialsCleared(DeviceCredentialsCleared {
                                    reason: format!("endpoint changed: {}", changed.join(", ")),
                                })
                            })
                        }
                        _ => None,
                    };
                    std::iter::once(DeviceEvent::Updated(event))
                        .chain(cleared)
                        .collect()
                }
            }
            DeviceCommand::SetTags { tags } => {
                if self.managed()?.tags == *tags {
                    Vec::new()
                } else {
                    vec![DeviceEvent::TagsSet(DeviceTagsSet { tags: tags.clone() })]
                }
            }
            DeviceCommand::ChangeCredentials {
                username,
                key_id,
                ssh_client_key,
            } => {
                self.managed()?;
                vec![DeviceEvent::CredentialsChanged(DeviceCredentialsChanged {
                    username: username.clone(),
                    key_id: key_id.clone(),
                    ssh_client_key: ssh_client_key.clone(),
                })]
            }
            DeviceCommand::RotateCredentials { key_id } => {
                let reg = self.managed()?;
                vec![DeviceEvent::CredentialsChanged(DeviceCredentialsChanged {
                    username: reg.username.clone(),
                    key_id: key_id.clone(),
                    ssh_client_key: reg.ssh_client_key.clone(),
                })]
            }
            DeviceCommand::Remove { reason } => {
                self.managed()?;
                vec![DeviceEvent::Removed(DeviceRemoved {
                    reason: reason.clone(),
                })]
            }
            DeviceCommand::RecordSshHostKey {
                fingerprint_sha256,
                algorithm,
                recorded_by,
            } => {
                let reg = self.managed()?;
                let fingerprint = SshHostKey::pinned(fingerprint_sha256)?;
                match reg.endpoint.ssh.as_ref().map(|s| &s.host_key) {
                    Some(SshHostKey::FirstUse) => {
                        vec![DeviceEvent::SshHostKeyPinned(DeviceSshHostKeyPinned {
                            fingerprint_sha256: fingerprint
                                .fingerprint()
                                .unwrap_or_default()
                                .to_owned(),
                            algorithm: algorithm.clone(),
                            recorded_by: recorded_by.clone(),
                        })]
                    }
                    // Recorded already (a second worker raced the first): nothing to add.
                    Some(pinned) if *pinned == fingerprint => Vec::new(),
                    Some(SshHostKey::Pinned { fingerprint_sha256 }) => {
                        return Err(DeviceError::SshKeyNotAwaited(fingerprint_sha256.clone()));
                    }
                    None => return Err(DeviceError::SshKeyNotAwaited("no SSH access".into())),
                }
            }
            DeviceCommand::Observe(seen) => observe(self, seen),
        })
    }
}

impl Aggregate for DeviceState {
    type Event = DeviceEvent;
    type Command = DeviceCommand;
    type Refusal = DeviceError;

    fn evolve(&mut self, event: &DeviceEvent) {
        DeviceState::evolve(self, event);
    }

    fn decide(&self, command: &DeviceCommand) -> Result<Vec<DeviceEvent>, DeviceError> {
        DeviceState::decide(self, command)
    }
}

// ---- commands ------------------------------------------------------------------------------

/// Registration of a new device (its password is sealed by the adapter; the event only names
/// the key that sealed it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterDevice {
    /// Its id (chosen by the caller, e.g. the API).
    pub device_id: DeviceId,
    /// Display name.
    pub name: DeviceName,
    /// Where to reach it.
    pub endpoint: Endpoint,
    /// API login name.
    pub username: String,
    /// Id of the key that encrypted its credentials.
    pub credentials_key_id: String,
    /// Tags.
    pub tags: BTreeSet<Tag>,
    /// Poll interval in seconds (5-86400).
    pub poll_interval_secs: u32,
    /// The SSH key to log in with over SSH (its private half sealed with the credentials).
    pub ssh_client_key: Option<SshClientKey>,
}

/// Changes to a registered device; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateDevice {
    /// New name.
    pub name: Option<DeviceName>,
    /// New endpoint.
    pub endpoint: Option<Endpoint>,
    /// New poll interval in seconds.
    pub poll_interval_secs: Option<u32>,
}

/// What may be asked of a device. Decided by [`DeviceState::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceCommand {
    /// Put it under management: `DeviceRegistered`. Refused while it is managed; a removed
    /// device may be registered again under the same id.
    Register(RegisterDevice),
    /// Change name, endpoint or poll interval: `DeviceUpdated` with only what differs, or
    /// nothing when nothing does. A changed endpoint (host, port or transport) also clears
    /// the stored credentials (`DeviceCredentialsCleared`): the password was entered for the
    /// old endpoint and is never sent to another.
    Update(UpdateDevice),
    /// Replace the tag set: `DeviceTagsSet`, or nothing when it is already this set.
    SetTags {
        /// The new tags.
        tags: BTreeSet<Tag>,
    },
    /// New credentials were sealed under `key_id`: `DeviceCredentialsChanged`.
    ChangeCredentials {
        /// Login name.
        username: String,
        /// Id of the key that sealed them.
        key_id: String,
        /// The SSH key sealed with them, if any.
        ssh_client_key: Option<SshClientKey>,
    },
    /// The stored credentials were re-sealed under `key_id` (key rotation; the login name
    /// and SSH key stay): `DeviceCredentialsChanged`.
    RotateCredentials {
        /// Id of the key that sealed them now.
        key_id: String,
    },
    /// Take it out of management: `DeviceRemoved`.
    Remove {
        /// Why, as the operator gave it.
        reason: String,
    },
    /// What a poll saw: only changes become events ([`observe`]); never refused.
    Observe(Observation),
    /// The first SSH connection to a device registered with [`SshHostKey::FirstUse`] saw
    /// this host key: `DeviceSshHostKeyPinned`. Nothing when the same key is pinned already;
    /// refused when another key is pinned or the device has no SSH access.
    RecordSshHostKey {
        /// The key's SHA-256 (hex or OpenSSH form).
        fingerprint_sha256: String,
        /// Its algorithm.
        algorithm: String,
        /// Which component connected (`poller`, `worker`).
        recorded_by: String,
    },
}

impl DeviceCommand {
    /// The checks that need no state: poll interval 5-86400 s, port not 0, login name
    /// 1-100 characters without control characters. [`DeviceState::decide`] runs them first;
    /// an adapter may run them before it loads anything.
    pub fn validate(&self) -> Result<(), DeviceError> {
        match self {
            Self::Register(cmd) => {
                check_interval(cmd.poll_interval_secs)?;
                check_endpoint(&cmd.endpoint)?;
                check_username(&cmd.username)?;
                cmd.ssh_client_key.as_ref().map_or(Ok(()), check_client_key)
            }
            Self::Update(changes) => {
                if let Some(secs) = changes.poll_interval_secs {
                    check_interval(secs)?;
                }
                if let Some(e) = &changes.endpoint {
                    check_endpoint(e)?;
                }
                Ok(())
            }
            Self::ChangeCredentials {
                username,
                ssh_client_key,
                ..
            } => {
                check_username(username)?;
                ssh_client_key.as_ref().map_or(Ok(()), check_client_key)
            }
            Self::SetTags { .. }
            | Self::RecordSshHostKey { .. }
            | Self::RotateCredentials { .. }
            | Self::Remove { .. }
            | Self::Observe(_) => Ok(()),
        }
    }
}

fn check_interval(secs: u32) -> Result<(), DeviceError> {
    if (5..=86_400).contains(&secs) {
        Ok(())
    } else {
        Err(DeviceError::BadInterval(secs))
    }
}

fn check_endpoint(endpoint: &Endpoint) -> Result<(), DeviceError> {
    if endpoint.port == 0 || endpoint.ssh.as_ref().is_some_and(|s| s.port == 0) {
        return Err(DeviceError::BadPort);
    }
    if let Some(SshHostKey::Pinned { fingerprint_sha256 }) =
        endpoint.ssh.as_ref().map(|s| &s.host_key)
        && !is_fingerprint_hex(fingerprint_sha256)
    {
        return Err(DeviceError::BadSshFingerprint(fingerprint_sha256.clone()));
    }
    Ok(())
}

fn is_fingerprint_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The public half as an adapter derived it from the private key: an algorithm name, the
/// fingerprint as 64 lowercase hex digits, and a one-line OpenSSH public key of that
/// algorithm (at most 16 KiB: an RSA-16384 key is about 2.8 KiB).
fn check_client_key(key: &SshClientKey) -> Result<(), DeviceError> {
    let alg_ok = !key.algorithm.is_empty()
        && key.algorithm.len() <= 64
        && key
            .algorithm
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-@._".contains(&b));
    if !alg_ok {
        return Err(DeviceError::BadSshClientKey(
            "the algorithm name is malformed",
        ));
    }
    if !is_fingerprint_hex(&key.fingerprint_sha256) {
        return Err(DeviceError::BadSshClientKey(
            "the fingerprint is not 64 lowercase hex digits",
        ));
    }
    let line_ok = key.public_key.len() <= 16 * 1024
        && !key.public_key.chars().any(char::is_control)
        && key
            .public_key
            .split(' ')
            .nth(1)
            .is_some_and(|b| !b.is_empty());
    if !line_ok {
        return Err(DeviceError::BadSshClientKey(
            "the public key is not one OpenSSH line (`<algorithm> <base64> [comment]`)",
        ));
    }
    Ok(())
}

fn check_username(name: &str) -> Result<(), DeviceError> {
    let ok = !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(DeviceError::BadUsername(name.to_owned()))
    }
}

// ---- observations --------------------------------------------------------------------------

/// What one poll saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// The device answered with these facts.
    Reachable(DeviceFacts),
    /// It did not (or refused the login), for this reason.
    Unreachable(String),
}

/// Decides which events an observation produces: only changes, never a repeat of what the
/// state already says. A removed or unregistered device produces nothing.
pub fn observe(state: &DeviceState, seen: &Observation) -> Vec<DeviceEvent> {
    let mut out = Vec::new();
    if !state.is_managed() {
        return out;
    }
    match seen {
        Observation::Unreachable(reason) => {
            if state.status != Status::Offline {
                out.push(DeviceEvent::WentOffline(DeviceWentOffline {
                    reason: reason.clone(),
                }));
            }
        }
        Observation::Reachable(facts) => match (&state.status, &state.facts) {
            (Status::Online, Some(old)) => {
                version_and_identity_changes(old, facts, &mut out);
                if old.board_name != facts.board_name
                    || old.routerboard_firmware != facts.routerboard_firmware
                {
                    out.push(DeviceEvent::HardwareChanged(DeviceHardwareChanged {
                        board_name: (old.board_name.clone(), facts.board_name.clone()),
                        routerboard_firmware: (
                            old.routerboard_firmware.clone(),
                            facts.routerboard_firmware.clone(),
                        ),
                    }));
                }
            }
            (_, old) => {
                // Back online (or first contact): the online event carries the facts; a
                // version that moved while it was away is a change of its own.
                if let Some(old) = old {
                    version_and_identity_changes(old, facts, &mut out);
                }
                out.push(DeviceEvent::CameOnline(DeviceCameOnline {
                    facts: facts.clone(),
                }));
            }
        },
    }
    out
}

/// The version and identity changes between two sets of facts, in that order.
fn version_and_identity_changes(
    old: &DeviceFacts,
    facts: &DeviceFacts,
    out: &mut Vec<DeviceEvent>,
) {
    if old.version != facts.version {
        out.push(DeviceEvent::VersionChanged(DeviceVersionChanged {
            from: old.version.clone(),
            to: facts.version.clone(),
        }));
    }
    if old.identity != facts.identity {
        out.push(DeviceEvent::IdentityChanged(DeviceIdentityChanged {
            from: old.identity.clone(),
            to: facts.identity.clone(),
        }));
    }
}

pub mod network;

#[cfg(test)]
mod tests;
