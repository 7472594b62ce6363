//! Tenants, users, API keys and sessions: the events of the streams `tenant-<id>` (the tenant
//! and its API keys), `user-<id>` (a user and their role) and `session-<id>` (one login
//! session, a refresh-token family), the roles, and the value objects they carry. Sessions
//! have their own streams so that a login does not move the user's stream version (the
//! `ETag` that guards edits of the user).
//!
//! Each stream category is an aggregate with a typed event enum, one pure `evolve` and one
//! pure `decide` (command + state -> events or a typed refusal): [`tenant`] (the tenant and
//! its API keys), [`user`] and [`session`]. The API's `accounts` module is their adapter: it
//! loads the state from its lookup rows, decides, appends, and maps refusals to problems.
//! Rules that span aggregates stay there: e-mail addresses are unique across tenants (a
//! unique index) and the first super admin is created only when no user exists (bootstrap).
//!
//! No event carries a secret: password hashes, API key hashes and refresh-token hashes live
//! only in the command-side lookup tables written in the same transaction as these events.
//! A command may carry a new password so that `decide` can apply the password policy;
//! hashing it (argon2) is the adapter's work, after the decision.

pub mod security;
pub mod session;
pub mod tenant;
pub mod user;

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

// ---- grants and passwords ------------------------------------------------------------------

/// The roles an actor may grant: those whose permissions the actor holds all of (no
/// escalation). The API computes it from its permission table; the aggregates only ask
/// whether a role is in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grants(u8);

impl Grants {
    /// No role.
    pub const NONE: Self = Self(0);
    /// Every role (the system, e.g. a super admin creating a tenant's first user).
    pub const ALL: Self = Self((1 << Role::ALL.len()) - 1);

    fn bit(role: Role) -> u8 {
        let index = match role {
            Role::Viewer => 0,
            Role::Operator => 1,
            Role::Approver => 2,
            Role::Auditor => 3,
            Role::TenantAdmin => 4,
            Role::SuperAdmin => 5,
        };
        1 << index
    }

    /// The roles for which `grantable` holds.
    pub fn of(grantable: impl Fn(Role) -> bool) -> Self {
        Self(
            Role::ALL
                .into_iter()
                .filter(|r| grantable(*r))
                .fold(0, |acc, r| acc | Self::bit(r)),
        )
    }

    /// Whether `role` may be granted.
    pub fn contains(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }
}

/// The fewest characters a password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The most characters a password may have (so argon2's input stays within 1024 bytes).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Why a new password was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRefused {
    /// Fewer than [`MIN_PASSWORD_CHARS`] characters.
    #[error("the password needs at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    /// More than [`MAX_PASSWORD_CHARS`] characters.
    #[error("the password may have at most {MAX_PASSWORD_CHARS} characters")]
    TooLong,
}

/// The password policy: [`MIN_PASSWORD_CHARS`] to [`MAX_PASSWORD_CHARS`] characters (the
/// API's schemas state the same bounds).
pub fn check_password_policy(password: &str) -> Result<(), PasswordRefused> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordRefused::TooShort);
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(PasswordRefused::TooLong);
    }
    Ok(())
}

/// A new password in a command, in clear text until the adapter hashes it after the
/// decision. Its `Debug` never shows the text (commands are printed by failing tests).
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(String);

impl NewPassword {
    /// Wraps the text; the policy is checked by `decide`.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The clear text, for hashing.
    pub fn into_inner(self) -> String {
        self.0
    }

    /// Checks the policy.
    pub fn check(&self) -> Result<(), PasswordRefused> {
        check_password_policy(&self.0)
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(..)")
    }
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

/// The tenant's change-control policy was set: whether change requests are required, and how
/// many approvals each risk level needs. New tenants get one at creation (`required`); a
/// tenant without one (created before change control) is `optional` with the default counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantChangePolicySet {
    /// Required or optional.
    pub change_control: crate::change::ChangeControl,
    /// Approvals per risk level.
    pub approvals: crate::change::ApprovalPolicy,
}
impl EventType for TenantChangePolicySet {
    const TYPE: &'static str = "TenantChangePolicySet";
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
    /// The client address the login came from (absent on logins recorded before it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
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
    fn grants_hold_exactly_the_roles_given() {
        let g = Grants::of(|r| r <= Role::Approver);
        assert!(g.contains(Role::Viewer) && g.contains(Role::Approver));
        assert!(!g.contains(Role::Auditor) && !g.contains(Role::SuperAdmin));
        assert!(Role::ALL.into_iter().all(|r| Grants::ALL.contains(r)));
        assert!(Role::ALL.into_iter().all(|r| !Grants::NONE.contains(r)));
    }

    #[test]
    fn the_password_policy_bounds_length() {
        assert_eq!(
            check_password_policy("short"),
            Err(PasswordRefused::TooShort)
        );
        assert_eq!(check_password_policy("long enough password"), Ok(()));
        assert_eq!(
            check_password_policy(&"x".repeat(MAX_PASSWORD_CHARS + 1)),
            Err(PasswordRefused::TooLong)
        );
        // Characters, not bytes: 256 four-byte characters are allowed.
        assert_eq!(
            check_password_policy(&"\u{1F511}".repeat(MAX_PASSWORD_CHARS)),
            Ok(())
        );
        assert_eq!(
            format!("{:?}", NewPassword::new("secret")),
            "NewPassword(..)"
        );
    }

    fn stored<E: crate::event::EventEnum>(
        event_type: &str,
        payload: serde_json::Value,
    ) -> Result<E, crate::event::DecodeError> {
        E::decode_stored(crate::event::StoredEvent {
            position: 1,
            event_type,
            schema_version: 1,
            payload: &payload,
        })
    }

    /// The enums keep the stored type names and schema versions, read payloads as stored
    /// (absent optional fields as JSON null) and write them back the same.
    #[test]
    fn identity_event_enums_read_and_write_the_stored_format() {
        use crate::event::EventEnum;
        use serde_json::json;
        assert_eq!(
            tenant::TenantEvent::TYPES,
            [
                "TenantCreated",
                "TenantRenamed",
                "ApiKeyCreated",
                "ApiKeyRevoked",
                "TenantChangePolicySet",
                "TenantDeviceSettingsSet"
            ]
        );
        assert_eq!(
            user::UserEvent::TYPES,
            ["UserCreated", "UserUpdated", "UserPasswordChanged"]
        );
        assert_eq!(
            session::SessionEvent::TYPES,
            ["UserLoggedIn", "UserSessionRevoked"]
        );
        let cases: [(&str, serde_json::Value); 4] = [
            (
                "UserUpdated",
                json!({"display_name": null, "role": "operator", "disabled": null}),
            ),
            ("UserPasswordChanged", json!({})),
            (
                "UserCreated",
                json!({"user_id": Uuid::from_u128(1), "email": "a@b.example",
                       "display_name": "A", "role": "viewer"}),
            ),
            ("UserCreated", json!({"user_id": Uuid::from_u128(1)})),
        ];
        for (i, (t, payload)) in cases.into_iter().enumerate() {
            let decoded = stored::<user::UserEvent>(t, payload.clone());
            if i == 3 {
                assert!(decoded.is_err(), "a partial payload is refused");
                continue;
            }
            let e = decoded.unwrap();
            assert_eq!((e.event_type(), e.schema_version()), (t, 1));
            assert_eq!(e.payload().unwrap(), payload);
        }
        let key = json!({"key_id": Uuid::from_u128(2), "name": "ci", "scopes": ["devices:read"],
                         "prefix": "nlk_ab", "expires_at": null});
        let e = stored::<tenant::TenantEvent>("ApiKeyCreated", key.clone()).unwrap();
        assert_eq!(e.payload().unwrap(), key);
        let revoked = json!({"user_id": Uuid::from_u128(1), "session_id": Uuid::from_u128(3),
                             "reason": "refresh_token_reused"});
        let e = stored::<session::SessionEvent>("UserSessionRevoked", revoked.clone()).unwrap();
        assert_eq!(e.payload().unwrap(), revoked);
        assert!(
            stored::<session::SessionEvent>("UserCreated", json!({}))
                .unwrap_err()
                .is_unknown_type()
        );
    }

    #[test]
    fn streams_are_named_by_category() {
        let t = TenantId::new_random();
        assert_eq!(tenant_stream(t).unwrap().as_str(), format!("tenant-{t}"));
        let u = Uuid::new_v4();
        assert_eq!(user_stream(u).unwrap().category(), "user");
    }
}
