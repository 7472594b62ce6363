//! The security stream of a tenant, `security-<tenant id>`: what happened around identity
//! and audit that changes no user, session or key: failed logins (with the source address,
//! never the password), an API key's first use each day, audit bundles downloaded and
//! verification runs. Appended at any version (facts, no rules to decide); read with
//! `audit:read`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{EventType, event_enum};
use crate::ids::{IdError, StreamName, TenantId};

/// The security stream of `tenant`.
pub fn security_stream(tenant: TenantId) -> Result<StreamName, IdError> {
    StreamName::parse(&format!("security-{tenant}"))
}

/// Why a login of a known account was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    /// The password did not match.
    BadPassword,
    /// The account is disabled.
    Disabled,
}

/// A login of a known account was refused. (Logins naming no account of any tenant have no
/// tenant to be recorded in; they are logged and rate-limited.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginFailed {
    /// The account.
    pub user_id: Uuid,
    /// Why.
    pub reason: LoginFailure,
    /// The client address (after trusted proxies).
    pub source: String,
}
impl EventType for LoginFailed {
    const TYPE: &'static str = "LoginFailed";
    const SCHEMA_VERSION: u32 = 1;
}

/// An API key authenticated for the first time on a UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyUsed {
    /// The key.
    pub key_id: Uuid,
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The client address of that first use.
    pub source: String,
}
impl EventType for ApiKeyUsed {
    const TYPE: &'static str = "ApiKeyUsed";
    const SCHEMA_VERSION: u32 = 1;
}

/// An audit bundle of the tenant was downloaded (`GET /api/v1/audit/export`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBundleExported {
    /// First position of the bundle's range.
    pub from_position: i64,
    /// Last position of its range (`None`: to the newest event).
    pub to_position: Option<i64>,
    /// Events in it.
    pub events: u64,
    /// Checkpoints in it.
    pub checkpoints: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file downloaded.
    pub sha256: String,
    /// The client address.
    pub source: String,
    /// The device filter of a bundle restricted to some devices (other devices' events as
    /// hash-only stubs); absent for a whole-tenant bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<crate::DeviceId>>,
}
impl EventType for AuditBundleExported {
    const TYPE: &'static str = "AuditBundleExported";
    const SCHEMA_VERSION: u32 = 1;
}

/// The tenant's history was verified through the API (`GET /api/v1/audit/verify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditVerificationRun {
    /// Whether every check passed.
    pub ok: bool,
    /// Events checked.
    pub events: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Last position covered by a verified signed checkpoint.
    pub signed_through: i64,
    /// The first bad position, when not ok.
    pub problem_position: Option<i64>,
    /// The client address.
    pub source: String,
}
impl EventType for AuditVerificationRun {
    const TYPE: &'static str = "AuditVerificationRun";
    const SCHEMA_VERSION: u32 = 1;
}

event_enum! {
    /// The events of a `security-<tenant id>` stream.
    pub enum SecurityEvent in "security" {
        /// A login of a known account was refused.
        LoginFailed(LoginFailed),
        /// An API key's first use of the day.
        ApiKeyUsed(ApiKeyUsed),
        /// An audit bundle was downloaded.
        AuditBundleExported(AuditBundleExported),
        /// The history was verified.
        AuditVerificationRun(AuditVerificationRun),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventEnum;

    #[test]
    fn security_events_keep_their_names_and_stream() {
        assert_eq!(
            SecurityEvent::TYPES,
            [
                "LoginFailed",
                "ApiKeyUsed",
                "AuditBundleExported",
                "AuditVerificationRun"
            ]
        );
        let t = TenantId::new_random();
        assert_eq!(
            security_stream(t).unwrap().as_str(),
            format!("security-{t}")
        );
        let e = SecurityEvent::LoginFailed(LoginFailed {
            user_id: Uuid::from_u128(1),
            reason: LoginFailure::BadPassword,
            source: "192.0.2.7".to_owned(),
        });
        assert_eq!(
            e.payload().unwrap(),
            serde_json::json!({"user_id": Uuid::from_u128(1), "reason": "bad_password", "source": "192.0.2.7"})
        );
    }
}
