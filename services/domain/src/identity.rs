//! Tenants, users and API keys: the events of the streams `tenant-<id>` (the tenant and its
//! API keys), `user-<id>` (a user and their role) and `session-<id>` (one login session, a
//! refresh-token family), the roles, and the value objects they carry. Sessions have their
//! own streams so that a login does not move the user's stream version (the `ETag` that
//! guards edits of the user).
//!
//! No event carries a secret: password hashes, API key hashes and refresh-token hashes live
//! only in the command-side lookup tables written in the same transaction as these events.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::EventType;
use crate::ids::{IdError, StreamName, TenantId};

/// Why an identity value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Unknown role name.
    #[error(
        "role `{0}` is unknown: use viewer, operator, approver, auditor, tenant_admin or super_admin"
    )]
    UnknownRole(String),
    /// The e-mail address is unusable.
    #[error(
        "e-mail address `{0}` is invalid: give one address like `name@example.net` (at most 254 characters)"
    )]
    BadEmail(String),
    /// A display name or tenant name is unusable.
    #[error("name is invalid: use 1-100 printable characters without leading or trailing spaces")]
    BadName,
}

/// What a user may do, from least to most. Each role's permissions are listed in the API's
/// authorization table (`services/api/src/authz.rs`) and `docs/api.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads devices, configs, workflows, rollouts, firmware and events.
    Viewer,
    /// A viewer who also registers and changes devices, starts workflows and rollouts.
    Operator,
    /// A viewer who also approves (resumes) and stops rollouts and cancels workflows.
    Approver,
    /// Read-only, including users, API keys, the audit feed and hash-chain verification.
    Auditor,
    /// Everything within one tenant, including users and API keys.
    TenantAdmin,
    /// A tenant admin who also lists and creates tenants.
    SuperAdmin,
}

impl Role {
    /// Every role, in order.
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::Operator,
        Role::Approver,
        Role::Auditor,
        Role::TenantAdmin,
        Role::SuperAdmin,
    ];

    /// The role's name as used in the API and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::TenantAdmin => "tenant_admin",
            Role::SuperAdmin => "super_admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| IdentityError::UnknownRole(s.to_owned()))
    }
}

/// A normalised (trimmed, lowercased) e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Parses an address: one `@` with text on both sides, a dot in the domain, no spaces,
    /// at most 254 characters; stored lowercased.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let t = s.trim().to_lowercase();
        let ok = t.len() <= 254
            && !t.chars().any(|c| c.is_whitespace() || c.is_control())
            && match t.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && !domain.is_empty()
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                }
                None => false,
            };
        if ok {
            Ok(Self(t))
        } else {
            Err(IdentityError::BadEmail(s.to_owned()))
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = IdentityError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<Email> for String {
    fn from(value: Email) -> Self {
        value.0
    }
}
impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A human-facing name (tenant name, user display name, API key name): 1-100 printable
/// characters, no leading or trailing whitespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    /// Parses a name.
    pub fn parse(s: &str) -> Result<Self, IdentityError> {
        let ok = !s.is_empty()
            && s.chars().count() <= 100
            && s.trim() == s
            && !s.chars().any(char::is_control);
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdentityError::BadName)
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DisplayName {
    type Error = IdentityError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<DisplayName> for String {
    fn from(value: DisplayName) -> Self {
        value.0
    }
}
impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The stream of a tenant (`tenant-<id>`): the tenant itself and its API keys.
pub fn tenant_stream(tenant: TenantId) -> Result<StreamName, IdError> {
    StreamName::parse(&format!("tenant-{tenant}"))
}

/// The stream of a user (`user-<id>`).
pub fn user_stream(user: Uuid) -> Result<StreamName, IdError> {
    StreamName::parse(&format!("user-{user}"))
}

/// The stream of a login session (`session-<id>`, the refresh-token family id).
pub fn session_stream(session: Uuid) -> Result<StreamName, IdError> {
    StreamName::parse(&format!("session-{session}"))
}

// ---- tenant stream -------------------------------------------------------------------------

/// A tenant was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCreated {
    /// Its id (also in the stream name).
    pub tenant_id: TenantId,
    /// Display name.
    pub name: DisplayName,
}
impl EventType for TenantCreated {
    const TYPE: &'static str = "TenantCreated";
    const SCHEMA_VERSION: u32 = 1;
}

/// A tenant was renamed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRenamed {
    /// The new name.
    pub name: DisplayName,
}
impl EventType for TenantRenamed {
    const TYPE: &'static str = "TenantRenamed";
    const SCHEMA_VERSION: u32 = 1;
}

/// An API key was issued (its secret was shown once and only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyCreated {
    /// The key's id.
    pub key_id: Uuid,
    /// What it is for.
    pub name: DisplayName,
    /// The permissions it carries (`devices:read`, ...).
    pub scopes: BTreeSet<String>,
    /// The first characters of the key, for recognising it in lists.
    pub prefix: String,
    /// When it stops working, if ever.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}
impl EventType for ApiKeyCreated {
    const TYPE: &'static str = "ApiKeyCreated";
    const SCHEMA_VERSION: u32 = 1;
}

/// An API key was revoked; it no longer authenticates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRevoked {
    /// The key's id.
    pub key_id: Uuid,
}
impl EventType for ApiKeyRevoked {
    const TYPE: &'static str = "ApiKeyRevoked";
    const SCHEMA_VERSION: u32 = 1;
}

// ---- user stream ---------------------------------------------------------------------------

/// A user was created in a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserCreated {
    /// The user's id (also in the stream name).
    pub user_id: Uuid,
    /// Login e-mail address.
    pub email: Email,
    /// Display name.
    pub display_name: DisplayName,
    /// Role.
    pub role: Role,
}
impl EventType for UserCreated {
    const TYPE: &'static str = "UserCreated";
    const SCHEMA_VERSION: u32 = 1;
}

/// Display name, role or enabled state changed (only the changed fields are present).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserUpdated {
    /// New display name.
    pub display_name: Option<DisplayName>,
    /// New role.
    pub role: Option<Role>,
    /// New disabled flag (a disabled user cannot log in or refresh).
    pub disabled: Option<bool>,
}
impl EventType for UserUpdated {
    const TYPE: &'static str = "UserUpdated";
    const SCHEMA_VERSION: u32 = 1;
}

/// The password was changed (the hash lives only in the lookup table). Every session of
/// the user is revoked with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPasswordChanged {}
impl EventType for UserPasswordChanged {
    const TYPE: &'static str = "UserPasswordChanged";
    const SCHEMA_VERSION: u32 = 1;
}

// ---- session stream ------------------------------------------------------------------------

/// A login succeeded and a session (refresh-token family) began.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserLoggedIn {
    /// The user.
    pub user_id: Uuid,
    /// The session's refresh-token family (also in the stream name).
    pub session_id: Uuid,
}
impl EventType for UserLoggedIn {
    const TYPE: &'static str = "UserLoggedIn";
    const SCHEMA_VERSION: u32 = 1;
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionEndReason {
    /// The user logged out.
    Logout,
    /// A refresh token was presented a second time: the whole family is revoked, since
    /// either the user or a thief holds a copy.
    RefreshTokenReused,
    /// The password changed.
    PasswordChanged,
    /// The user was disabled.
    UserDisabled,
}

/// A session (refresh-token family) was revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSessionRevoked {
    /// The user.
    pub user_id: Uuid,
    /// The family (also in the stream name).
    pub session_id: Uuid,
    /// Why.
    pub reason: SessionEndReason,
}
impl EventType for UserSessionRevoked {
    const TYPE: &'static str = "UserSessionRevoked";
    const SCHEMA_VERSION: u32 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_by_name() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::json!(r.as_str())
            );
        }
        assert!("admin".parse::<Role>().is_err());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse(" Ops@Example.NET ").unwrap().as_str(),
            "ops@example.net"
        );
        for bad in ["", "a", "a@b", "@b.c", "a@.c", "a@b.", "a b@c.d", "a@b@c.d"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_refuse_blank_padded_and_control_text() {
        assert!(DisplayName::parse("Core routers").is_ok());
        for bad in ["", " x", "x ", "a\nb", &"x".repeat(101)] {
            assert!(DisplayName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn streams_are_named_by_category() {
        let t = TenantId::new_random();
        assert_eq!(tenant_stream(t).unwrap().as_str(), format!("tenant-{t}"));
        let u = Uuid::new_v4();
        assert_eq!(user_stream(u).unwrap().category(), "user");
    }
}
