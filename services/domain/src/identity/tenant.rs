//! The tenant aggregate, stream `tenant-<id>`: the tenant's name, its API keys and its
//! change-control policy. Its rules: a tenant is created once (change control `required`
//! unless the creator asks for `optional`) and renamed under If-Match; an API key carries
//! only scopes its issuer holds and an expiry in the future, and is revoked once; the change
//! policy's approval counts are 1-10 and never fall as risk rises.
//!
//! The key's secret and its hash are the adapter's: the command carries only the key id
//! and the prefix shown in lists.
//!
//! Device settings ([`TenantDeviceSettingsSet`]): the networks the tenant's devices may be
//! in beyond the defaults of [`crate::device::network`] (at most
//! [`MAX_ALLOWED_NETWORKS`] CIDRs).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ApiKeyCreated, ApiKeyRevoked, DisplayName, IdentityError, TenantChangePolicySet, TenantCreated,
    TenantRenamed,
};
use crate::aggregate::Aggregate;
use crate::change::{ApprovalPolicy, ChangeControl};
use crate::device::network::Cidr;
use crate::event::{EventType, event_enum};
use crate::ids::TenantId;

/// The most CIDRs a tenant's device allow-list holds.
pub const MAX_ALLOWED_NETWORKS: usize = 64;

/// The tenant's device settings were set (the whole set, replacing the previous one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDeviceSettingsSet {
    /// Networks the tenant's devices may be in although a default rule refuses them
    /// (loopback, link-local, unspecified, multicast; see [`crate::device::network`]).
    #[serde(default)]
    pub allowed_networks: Vec<Cidr>,
    /// Whether devices may use the plain (unencrypted) API in production: the login and
    /// every reply cross the network in clear text. Off unless a tenant admin turns it on.
    #[serde(default)]
    pub allow_plain_transport: bool,
}
impl EventType for TenantDeviceSettingsSet {
    const TYPE: &'static str = "TenantDeviceSettingsSet";
    const SCHEMA_VERSION: u32 = 1;
}

event_enum! {
    /// The events of a `tenant-<id>` stream.
    pub enum TenantEvent in "tenant" {
        /// The tenant was created.
        Created(TenantCreated),
        /// The tenant was renamed.
        Renamed(TenantRenamed),
        /// An API key was issued.
        ApiKeyCreated(ApiKeyCreated),
        /// An API key was revoked.
        ApiKeyRevoked(ApiKeyRevoked),
        /// The change-control policy was set.
        ChangePolicySet(TenantChangePolicySet),
        /// The device settings were set.
        DeviceSettingsSet(TenantDeviceSettingsSet),
    }
}

/// A tenant as its stream has it (the default: no stream yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenant {
    /// Id and name; `None` before `TenantCreated`.
    pub profile: Option<TenantProfile>,
    /// The stream's version (its number of events).
    pub version: u64,
    /// Its API keys, by id. An adapter deciding a key command may load only that key.
    pub api_keys: BTreeMap<Uuid, ApiKey>,
    /// Its change-control policy; `None`: set never (an `optional` tenant with the default
    /// approval counts, see [`Tenant::change_policy`]).
    pub change_policy: Option<TenantChangePolicySet>,
    /// Its device settings (the default: none set).
    pub device_settings: TenantDeviceSettingsSet,
}

impl Tenant {
    /// The change-control policy in force.
    pub fn change_policy(&self) -> TenantChangePolicySet {
        self.change_policy.clone().unwrap_or(TenantChangePolicySet {
            change_control: ChangeControl::Optional,
            approvals: ApprovalPolicy::default(),
        })
    }
}

/// What a created tenant is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantProfile {
    /// Id.
    pub id: TenantId,
    /// Name.
    pub name: DisplayName,
}

/// An API key of the tenant (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// What it is for.
    pub name: DisplayName,
    /// Its permissions.
    pub scopes: BTreeSet<String>,
    /// The first characters of the key.
    pub prefix: String,
    /// When it stops working, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// What may be asked of a tenant. Names arrive as given and are parsed by `decide`, so
/// refusals come in the order the API has always reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantCommand {
    /// Create the tenant.
    Create {
        /// Its new id.
        tenant_id: TenantId,
        /// Its name.
        name: String,
        /// Change control for it (`required` is the default for new tenants).
        change_control: ChangeControl,
    },
    /// Rename it.
    Rename {
        /// The new name.
        name: String,
        /// The version the change is based on (If-Match); `None` for any.
        if_version: Option<u64>,
    },
    /// Issue an API key.
    IssueApiKey(IssueApiKey),
    /// Revoke an API key.
    RevokeApiKey {
        /// The key.
        key_id: Uuid,
    },
    /// Set the change-control policy.
    SetChangePolicy(TenantChangePolicySet),
    /// Set the device settings.
    SetDeviceSettings(TenantDeviceSettingsSet),
}

/// An API key to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueApiKey {
    /// Its new id.
    pub key_id: Uuid,
    /// What it is for.
    pub name: String,
    /// The scopes asked for, without duplicates, in the order to report missing ones.
    pub scopes: Vec<String>,
    /// The scopes the issuer holds.
    pub held: BTreeSet<String>,
    /// The first characters of the secret (the adapter made the secret).
    pub prefix: String,
    /// When it stops working, if ever.
    pub expires_at: Option<OffsetDateTime>,
    /// The current time.
    pub now: OffsetDateTime,
}

/// Why a tenant command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantRefusal {
    /// The tenant or key name is unusable.
    #[error("name: {0}")]
    InvalidName(IdentityError),
    /// The tenant exists already.
    #[error("the tenant exists already")]
    AlreadyExists,
    /// The tenant does not exist.
    #[error("the tenant does not exist")]
    NotFound,
    /// If-Match named another version.
    #[error("the tenant is at version {current}")]
    VersionMismatch {
        /// The current version.
        current: u64,
    },
    /// The key would carry scopes its issuer lacks (listed in the order asked).
    #[error("you cannot give a key scopes you do not hold: {}", .0.join(", "))]
    ScopesNotHeld(Vec<String>),
    /// The key would expire at once.
    #[error("expires_at must be in the future")]
    ExpiryNotInFuture,
    /// A key with this id exists already.
    #[error("API key {0} exists already")]
    ApiKeyExists(Uuid),
    /// No key with this id.
    #[error("API key {0} does not exist")]
    ApiKeyNotFound(Uuid),
    /// The key is revoked already.
    #[error("API key {0} is already revoked")]
    ApiKeyAlreadyRevoked(Uuid),
    /// The change policy is invalid.
    #[error("{0}")]
    InvalidChangePolicy(String),
    /// The device settings are invalid.
    #[error("{0}")]
    InvalidDeviceSettings(String),
}

fn parse_name(name: &str) -> Result<DisplayName, TenantRefusal> {
    DisplayName::parse(name).map_err(TenantRefusal::InvalidName)
}

impl Tenant {
    fn check_version(&self, if_version: Option<u64>) -> Result<(), TenantRefusal> {
        match if_version {
            Some(v) if v != self.version => Err(TenantRefusal::VersionMismatch {
                current: self.version,
            }),
            _ => Ok(()),
        }
    }

    fn issue(&self, c: &IssueApiKey) -> Result<Vec<TenantEvent>, TenantRefusal> {
        let missing: Vec<String> = c
            .scopes
            .iter()
            .filter(|s| !c.held.contains(*s))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(TenantRefusal::ScopesNotHeld(missing));
        }
        let name = parse_name(&c.name)?;
        if c.expires_at.is_some_and(|e| e <= c.now) {
            return Err(TenantRefusal::ExpiryNotInFuture);
        }
        if self.profile.is_none() {
            return Err(TenantRefusal::NotFound);
        }
        if self.api_keys.contains_key(&c.key_id) {
            return Err(TenantRefusal::ApiKeyExists(c.key_id));
        }
        Ok(vec![
            ApiKeyCreated {
                key_id: c.key_id,
                name,
                scopes: c.scopes.iter().cloned().collect(),
                prefix: c.prefix.clone(),
                expires_at: c.expires_at,
            }
            .into(),
        ])
    }
}

impl Aggregate for Tenant {
    type Event = TenantEvent;
    type Command = TenantCommand;
    type Refusal = TenantRefusal;

    fn evolve(&mut self, event: &TenantEvent) {
        self.version += 1;
        match event {
            TenantEvent::Created(e) => {
                self.profile = Some(TenantProfile {
                    id: e.tenant_id,
                    name: e.name.clone(),
                });
            }
            TenantEvent::Renamed(e) => {
                if let Some(p) = &mut self.profile {
                    p.name = e.name.clone();
                }
            }
            TenantEvent::ApiKeyCreated(e) => {
                self.api_keys.insert(
                    e.key_id,
                    ApiKey {
                        name: e.name.clone(),
                        scopes: e.scopes.clone(),
                        prefix: e.prefix.clone(),
                        expires_at: e.expires_at,
                        revoked: false,
                    },
                );
            }
            TenantEvent::ApiKeyRevoked(e) => {
                if let Some(k) = self.api_keys.get_mut(&e.key_id) {
                    k.revoked = true;
                }
            }
            TenantEvent::ChangePolicySet(e) => self.change_policy = Some(e.clone()),
            TenantEvent::DeviceSettingsSet(e) => self.device_settings = e.clone(),
        }
    }

    fn decide(&self, command: &TenantCommand) -> Result<Vec<TenantEvent>, TenantRefusal> {
        match command {
            TenantCommand::Create {
                tenant_id,
                name,
                change_control,
            } => {
                let name = parse_name(name)?;
                if self.profile.is_some() || self.version > 0 {
                    return Err(TenantRefusal::AlreadyExists);
                }
                Ok(vec![
                    TenantCreated {
                        tenant_id: *tenant_id,
                        name,
                    }
                    .into(),
                    TenantChangePolicySet {
                        change_control: *change_control,
                        approvals: ApprovalPolicy::default(),
                    }
                    .into(),
                ])
            }
            TenantCommand::SetChangePolicy(policy) => {
                if self.profile.is_none() {
                    return Err(TenantRefusal::NotFound);
                }
                policy
                    .approvals
                    .validate()
                    .map_err(TenantRefusal::InvalidChangePolicy)?;
                if self.change_policy.as_ref() == Some(policy) {
                    return Ok(vec![]);
                }
                Ok(vec![policy.clone().into()])
            }
            TenantCommand::SetDeviceSettings(settings) => {
                if self.profile.is_none() {
                    return Err(TenantRefusal::NotFound);
                }
                if settings.allowed_networks.len() > MAX_ALLOWED_NETWORKS {
                    return Err(TenantRefusal::InvalidDeviceSettings(format!(
                        "allowed_networks holds at most {MAX_ALLOWED_NETWORKS} CIDRs (got {})",
                        settings.allowed_networks.len()
                    )));
                }
                let mut settings = settings.clone();
                settings.allowed_networks.sort();
                settings.allowed_networks.dedup();
                if self.device_settings == settings {
                    return Ok(vec![]);
                }
                Ok(vec![settings.into()])
            }
            TenantCommand::Rename { name, if_version } => {
                let name = parse_name(name)?;
                if self.profile.is_none() {
                    return Err(TenantRefusal::NotFound);
                }
                self.check_version(*if_version)?;
                Ok(vec![TenantRenamed { name }.into()])
            }
            TenantCommand::IssueApiKey(c) => self.issue(c),
            TenantCommand::RevokeApiKey { key_id } => match self.api_keys.get(key_id) {
                None => Err(TenantRefusal::ApiKeyNotFound(*key_id)),
                Some(k) if k.revoked => Err(TenantRefusal::ApiKeyAlreadyRevoked(*key_id)),
                Some(_) => Ok(vec![ApiKeyRevoked { key_id: *key_id }.into()]),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::testing::given;

    fn name(s: &str) -> DisplayName {
        DisplayName::parse(s).unwrap()
    }

    fn tenant_id() -> TenantId {
        TenantId::from_uuid(Uuid::from_u128(1))
    }

    fn created() -> TenantEvent {
        TenantCreated {
            tenant_id: tenant_id(),
            name: name("Acme"),
        }
        .into()
    }

    const NOW: OffsetDateTime = datetime!(2026-01-01 12:00 UTC);

    fn issue(key: u128) -> IssueApiKey {
        IssueApiKey {
            key_id: Uuid::from_u128(key),
            name: "ci".to_owned(),
            scopes: vec!["devices:read".to_owned(), "workflows:run".to_owned()],
            held: ["devices:read", "devices:write", "workflows:run"]
                .map(str::to_owned)
                .into(),
            prefix: "nlk_abc".to_owned(),
            expires_at: Some(datetime!(2026-02-01 0:00 UTC)),
            now: NOW,
        }
    }

    fn key_created(key: u128) -> TenantEvent {
        let c = issue(key);
        ApiKeyCreated {
            key_id: c.key_id,
            name: name("ci"),
            scopes: c.scopes.into_iter().collect(),
            prefix: c.prefix,
            expires_at: c.expires_at,
        }
        .into()
    }

    #[test]
    fn device_settings_are_set_sorted_bounded_and_only_when_they_change() {
        use crate::device::network::Cidr;
        let cidr = |s: &str| Cidr::parse(s).unwrap();
        let asked = TenantDeviceSettingsSet {
            allowed_networks: vec![cidr("127.0.0.0/8"), cidr("::1/128"), cidr("127.0.0.0/8")],
            allow_plain_transport: false,
        };
        let stored = TenantDeviceSettingsSet {
            allowed_networks: vec![cidr("127.0.0.0/8"), cidr("::1/128")],
            allow_plain_transport: false,
        };
        let after = given::<Tenant>([created()])
            .when(TenantCommand::SetDeviceSettings(asked.clone()))
            .then([stored.clone().into()]);
        assert_eq!(after.device_settings, stored);
        given::<Tenant>([created(), stored.clone().into()])
            .when(TenantCommand::SetDeviceSettings(asked))
            .then([]);
        let too_many = TenantDeviceSettingsSet {
            allowed_networks: (0..=MAX_ALLOWED_NETWORKS)
                .map(|i| cidr(&format!("10.0.{i}.0/24")))
                .collect(),
            allow_plain_transport: false,
        };
        given::<Tenant>([created()])
            .when(TenantCommand::SetDeviceSettings(too_many))
            .then_refused(TenantRefusal::InvalidDeviceSettings(
                "allowed_networks holds at most 64 CIDRs (got 65)".into(),
            ));
        given::<Tenant>([])
            .when(TenantCommand::SetDeviceSettings(stored))
            .then_refused(TenantRefusal::NotFound);
    }

    #[test]
    fn a_tenant_is_created_once() {
        let after = given::<Tenant>([])
            .when(TenantCommand::Create {
                tenant_id: tenant_id(),
                name: "Acme".to_owned(),
                change_control: ChangeControl::Required,
            })
            .then([created(), required_policy().into()]);
        assert_eq!(after.version, 2);
        assert_eq!(after.change_policy(), required_policy());
        assert_eq!(after.profile.map(|p| p.name), Some(name("Acme")));
        given::<Tenant>([created()])
            .when(TenantCommand::Create {
                tenant_id: tenant_id(),
                name: "Acme".to_owned(),
                change_control: ChangeControl::Optional,
            })
            .then_refused(TenantRefusal::AlreadyExists);
    }

    fn required_policy() -> TenantChangePolicySet {
        TenantChangePolicySet {
            change_control: ChangeControl::Required,
            approvals: ApprovalPolicy::default(),
        }
    }

    #[test]
    fn a_tenant_without_a_policy_event_is_optional_and_a_policy_is_checked() {
        // created before change control: optional, default counts
        let before = given::<Tenant>([created()]);
        assert_eq!(
            before.state().change_policy().change_control,
            ChangeControl::Optional
        );
        let p = TenantChangePolicySet {
            change_control: ChangeControl::Required,
            approvals: ApprovalPolicy {
                low: 1,
                medium: 2,
                high: 3,
            },
        };
        let after = before
            .when(TenantCommand::SetChangePolicy(p.clone()))
            .then([p.clone().into()]);
        assert_eq!(after.change_policy(), p);
        // the same policy again changes nothing
        given::<Tenant>([created(), p.clone().into()])
            .when(TenantCommand::SetChangePolicy(p.clone()))
            .then([]);
        let falling = TenantChangePolicySet {
            change_control: ChangeControl::Required,
            approvals: ApprovalPolicy {
                low: 2,
                medium: 1,
                high: 2,
            },
        };
        given::<Tenant>([created()])
            .when(TenantCommand::SetChangePolicy(falling))
            .then_refused(TenantRefusal::InvalidChangePolicy(
                "approvals must not fall as risk rises (low 2, medium 1, high 2)".into(),
            ));
        let zero = TenantChangePolicySet {
            change_control: ChangeControl::Optional,
            approvals: ApprovalPolicy {
                low: 0,
                medium: 1,
                high: 2,
            },
        };
        given::<Tenant>([created()])
            .when(TenantCommand::SetChangePolicy(zero))
            .then_refused(TenantRefusal::InvalidChangePolicy(
                "approvals.low must be between 1 and 10 (got 0)".into(),
            ));
        given::<Tenant>([])
            .when(TenantCommand::SetChangePolicy(p))
            .then_refused(TenantRefusal::NotFound);
    }

    #[test]
    fn names_are_checked_before_anything_else() {
        given::<Tenant>([created()])
            .when(TenantCommand::Create {
                tenant_id: tenant_id(),
                name: " Acme".to_owned(),
                change_control: ChangeControl::Required,
            })
            .then_refused(TenantRefusal::InvalidName(IdentityError::BadName));
        given::<Tenant>([])
            .when(TenantCommand::Rename {
                name: String::new(),
                if_version: Some(9),
            })
            .then_refused(TenantRefusal::InvalidName(IdentityError::BadName));
    }

    #[test]
    fn a_rename_needs_the_tenant_and_its_current_version() {
        let after = given::<Tenant>([created()])
            .when(TenantCommand::Rename {
                name: "Acme Networks".to_owned(),
                if_version: Some(1),
            })
            .then([TenantRenamed {
                name: name("Acme Networks"),
            }
            .into()]);
        assert_eq!(after.profile.map(|p| p.name), Some(name("Acme Networks")));
        given::<Tenant>([created()])
            .when(TenantCommand::Rename {
                name: "Acme".to_owned(),
                if_version: None,
            })
            .then([TenantRenamed { name: name("Acme") }.into()]);
        given::<Tenant>([created(), key_created(7)])
            .when(TenantCommand::Rename {
                name: "Acme".to_owned(),
                if_version: Some(1),
            })
            .then_refused(TenantRefusal::VersionMismatch { current: 2 });
        given::<Tenant>([])
            .when(TenantCommand::Rename {
                name: "Acme".to_owned(),
                if_version: Some(1),
            })
            .then_refused(TenantRefusal::NotFound);
    }

    #[test]
    fn an_api_key_is_issued_with_held_scopes_and_a_future_expiry() {
        let after = given::<Tenant>([created()])
            .when(TenantCommand::IssueApiKey(issue(7)))
            .then([key_created(7)]);
        let key = &after.api_keys[&Uuid::from_u128(7)];
        assert!(!key.revoked);
        assert_eq!(after.version, 2);

        let mut never = issue(8);
        never.expires_at = None;
        given::<Tenant>([created()])
            .when(TenantCommand::IssueApiKey(never))
            .outcome()
            .unwrap();
    }

    #[test]
    fn an_api_key_never_carries_scopes_its_issuer_lacks() {
        let mut c = issue(7);
        c.scopes = ["users:write", "devices:read", "audit:read"]
            .map(str::to_owned)
            .into();
        given::<Tenant>([created()])
            .when(TenantCommand::IssueApiKey(c))
            .then_refused(TenantRefusal::ScopesNotHeld(vec![
                "users:write".to_owned(),
                "audit:read".to_owned(),
            ]));
        assert_eq!(
            TenantRefusal::ScopesNotHeld(vec!["a:b".to_owned(), "c:d".to_owned()]).to_string(),
            "you cannot give a key scopes you do not hold: a:b, c:d"
        );
    }

    #[test]
    fn an_api_key_refuses_a_bad_name_or_a_past_expiry() {
        let mut c = issue(7);
        c.name = "x ".to_owned();
        given::<Tenant>([created()])
            .when(TenantCommand::IssueApiKey(c))
            .then_refused(TenantRefusal::InvalidName(IdentityError::BadName));
        let mut c = issue(7);
        c.expires_at = Some(NOW);
        given::<Tenant>([created()])
            .when(TenantCommand::IssueApiKey(c))
            .then_refused(TenantRefusal::ExpiryNotInFuture);
    }

    #[test]
    fn an_api_key_needs_its_tenant_and_a_fresh_id() {
        given::<Tenant>([])
            .when(TenantCommand::IssueApiKey(issue(7)))
            .then_refused(TenantRefusal::NotFound);
        given::<Tenant>([created(), key_created(7)])
            .when(TenantCommand::IssueApiKey(issue(7)))
            .then_refused(TenantRefusal::ApiKeyExists(Uuid::from_u128(7)));
    }

    #[test]
    fn an_api_key_is_revoked_once() {
        let id = Uuid::from_u128(7);
        let after = given::<Tenant>([created(), key_created(7)])
            .when(TenantCommand::RevokeApiKey { key_id: id })
            .then([ApiKeyRevoked { key_id: id }.into()]);
        assert!(after.api_keys[&id].revoked);
        given::<Tenant>([
            created(),
            key_created(7),
            ApiKeyRevoked { key_id: id }.into(),
        ])
        .when(TenantCommand::RevokeApiKey { key_id: id })
        .then_refused(TenantRefusal::ApiKeyAlreadyRevoked(id));
        given::<Tenant>([created()])
            .when(TenantCommand::RevokeApiKey { key_id: id })
            .then_refused(TenantRefusal::ApiKeyNotFound(id));
    }
}
