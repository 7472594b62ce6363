//! Authorization: the permissions routes require, what each role grants, and the sets API
//! keys carry as scopes.
//!
//! Every handler declares its permission with a [`crate::auth::Require`] extractor as its
//! first argument (checked before the body or path is read, so a denied caller learns
//! nothing), and the same permission as the scope of its OpenAPI security requirement.
//! `tests/api.rs` walks every route with every role against an expected table.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use netledger_domain::identity::Role;

macro_rules! permissions {
    ($($variant:ident => ($name:literal, $doc:literal)),+ $(,)?) => {
        /// One thing a caller may do. Its name is the API key scope and the OpenAPI
        /// security scope.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum Permission {
            $(#[doc = $doc] $variant,)+
        }

        impl Permission {
            /// Every permission.
            pub const ALL: &'static [Permission] = &[$(Permission::$variant,)+];

            /// The scope name (`devices:read`).
            pub fn as_str(self) -> &'static str {
                match self { $(Permission::$variant => $name,)+ }
            }

            /// What it allows.
            pub fn description(self) -> &'static str {
                match self { $(Permission::$variant => $doc,)+ }
            }
        }

        /// Type-level permissions for [`crate::auth::Require`].
        pub mod perm {
            $(
                #[doc = $doc]
                #[derive(Debug, Clone, Copy)]
                pub struct $variant;
                impl super::PermissionMarker for $variant {
                    const PERMISSION: super::Permission = super::Permission::$variant;
                }
            )+
        }
    };
}

/// A type standing for one permission, for extractors.
pub trait PermissionMarker: Send + Sync + 'static {
    /// The permission.
    const PERMISSION: Permission;
}

permissions! {
    Authenticated => ("authenticated", "Any signed-in user or API key (e.g. reading who you are)."),
    TenantsRead => ("tenants:read", "Read the caller's own tenant."),
    TenantsWrite => ("tenants:write", "Rename the caller's own tenant."),
    TenantsAdmin => ("tenants:admin", "List every tenant and create tenants."),
    UsersRead => ("users:read", "List and read users of the tenant."),
    UsersWrite => ("users:write", "Create users, change roles, disable users, reset passwords."),
    ApiKeysRead => ("apikeys:read", "List the tenant's API keys (never their secrets)."),
    ApiKeysWrite => ("apikeys:write", "Create and revoke API keys."),
    DevicesRead => ("devices:read", "List and read devices, their state and metrics."),
    DevicesWrite => ("devices:write", "Register, update, tag and remove devices."),
    DevicesCredentials => ("devices:credentials", "Replace device login credentials (write-only)."),
    ConfigsRead => ("configs:read", "Read config versions, diffs and config as of a time."),
    WorkflowsRead => ("workflows:read", "List and inspect workflows and their steps."),
    WorkflowsRun => ("workflows:run", "Start backups, config pushes and firmware upgrades."),
    WorkflowsCancel => ("workflows:cancel", "Cancel running workflows."),
    WorkflowsWithoutTimer => ("workflows:without_timer", "Switch off the device-side rollback timer (`allow_without_timer` on a config push or a change request's `overrides`); in change-controlled tenants only through an approved change request."),
    RolloutsRead => ("rollouts:read", "List rollouts and their progress."),
    RolloutsWrite => ("rollouts:write", "Create rollouts."),
    RolloutsStop => ("rollouts:stop", "Pause and cancel rollouts."),
    RolloutsApprove => ("rollouts:approve", "Resume (approve the continuation of) rollouts."),
    FirmwareRead => ("firmware:read", "List cached firmware packages."),
    FirmwareWrite => ("firmware:write", "Upload firmware packages."),
    EventsRead => ("events:read", "Read device, config, workflow and rollout events, live or historic."),
    AuditRead => ("audit:read", "Read identity and security events (tenants, users, sessions, failed logins, key use, audit downloads), checkpoints and verify hash chains (the run is recorded)."),
    AuditExport => ("audit:export", "Download the tenant's audit bundle (the download is recorded as a security event)."),
    ChangesRead => ("changes:read", "List and read change requests, their previews and timelines."),
    ChangesWrite => ("changes:write", "Create, edit, submit, withdraw, start and cancel change requests (start without approval only for emergencies)."),
    ChangesApprove => ("changes:approve", "Approve or reject change requests (never one's own), start and cancel approved ones, continue them after a window pause."),
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Permission {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permission::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
                format!("unknown scope `{s}`; known scopes: {}", known.join(", "))
            })
    }
}

/// A set of permissions (a bit per permission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PermissionSet(u64);

impl PermissionSet {
    /// No permission.
    pub const EMPTY: Self = Self(0);

    /// Whether `p` is in the set.
    pub fn contains(self, p: Permission) -> bool {
        self.0 & (1 << p as u8) != 0
    }

    /// The set with `p` added.
    pub fn with(self, p: Permission) -> Self {
        Self(self.0 | (1 << p as u8))
    }

    /// Whether every permission of `other` is in this set.
    pub fn is_superset(self, other: Self) -> bool {
        other.0 & !self.0 == 0
    }

    /// The permissions, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .iter()
            .copied()
            .filter(move |p| self.contains(*p))
    }

    /// The scope names.
    pub fn names(self) -> BTreeSet<String> {
        self.iter().map(|p| p.as_str().to_owned()).collect()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        iter.into_iter().fold(Self::EMPTY, Self::with)
    }
}

/// What a role grants.
pub fn role_permissions(role: Role) -> PermissionSet {
    use Permission as P;
    let viewer = [
        P::Authenticated,
        P::TenantsRead,
        P::DevicesRead,
        P::ConfigsRead,
        P::WorkflowsRead,
        P::RolloutsRead,
        P::FirmwareRead,
        P::EventsRead,
        P::ChangesRead,
    ];
    let set: PermissionSet = viewer.into_iter().collect();
    match role {
        Role::Viewer => set,
        Role::Operator => [
            P::DevicesWrite,
            P::DevicesCredentials,
            P::WorkflowsRun,
            P::WorkflowsCancel,
            P::RolloutsWrite,
            P::RolloutsStop,
            P::FirmwareWrite,
            P::ChangesWrite,
        ]
        .into_iter()
        .fold(set, PermissionSet::with),
        Role::Approver => [
            P::WorkflowsCancel,
            P::RolloutsStop,
            P::RolloutsApprove,
            P::ChangesApprove,
        ]
        .into_iter()
        .fold(set, PermissionSet::with),
        Role::Auditor => [P::UsersRead, P::ApiKeysRead, P::AuditRead, P::AuditExport]
            .into_iter()
            .fold(set, PermissionSet::with),
        Role::TenantAdmin => Permission::ALL
            .iter()
            .copied()
            .filter(|p| *p != P::TenantsAdmin)
            .collect(),
        Role::SuperAdmin => Permission::ALL.iter().copied().collect(),
    }
}

/// Parses API key scopes; refuses unknown names and `tenants:admin` (platform
/// administration is for people, not automation).
pub fn parse_scopes<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<PermissionSet, String> {
    let mut set = PermissionSet::EMPTY.with(Permission::Authenticated);
    for n in names {
        let p: Permission = n.parse()?;
        if p == Permission::TenantsAdmin {
            return Err("the `tenants:admin` scope cannot be given to an API key".to_owned());
        }
        set = set.with(p);
    }
    Ok(set)
}

/// Event categories whose events need [`Permission::AuditRead`] rather than
/// [`Permission::EventsRead`]: identity, sessions and security events.
pub const AUDIT_CATEGORIES: &[&str] = &["tenant", "user", "session", "security"];

/// The permission needed to read events of `category`.
pub fn permission_for_category(category: &str) -> Permission {
    if AUDIT_CATEGORIES.contains(&category) {
        Permission::AuditRead
    } else {
        Permission::EventsRead
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grow_as_documented() {
        let viewer = role_permissions(Role::Viewer);
        for r in Role::ALL {
            assert!(role_permissions(r).is_superset(viewer), "{r}");
        }
        assert!(role_permissions(Role::TenantAdmin).is_superset(role_permissions(Role::Operator)));
        assert!(role_permissions(Role::TenantAdmin).is_superset(role_permissions(Role::Approver)));
        assert!(role_permissions(Role::TenantAdmin).is_superset(role_permissions(Role::Auditor)));
        assert!(!role_permissions(Role::TenantAdmin).contains(Permission::TenantsAdmin));
        assert!(role_permissions(Role::SuperAdmin).contains(Permission::TenantsAdmin));
        // Separation of duties: the operator cannot approve, the approver cannot start.
        assert!(!role_permissions(Role::Operator).contains(Permission::RolloutsApprove));
        assert!(!role_permissions(Role::Approver).contains(Permission::RolloutsWrite));
        assert!(!role_permissions(Role::Operator).contains(Permission::ChangesApprove));
        assert!(!role_permissions(Role::Approver).contains(Permission::ChangesWrite));
        // Switching off the safety net is an administrator's call, not an operator's.
        for r in [Role::Viewer, Role::Operator, Role::Approver, Role::Auditor] {
            assert!(
                !role_permissions(r).contains(Permission::WorkflowsWithoutTimer),
                "{r}"
            );
        }
        assert!(role_permissions(Role::TenantAdmin).contains(Permission::WorkflowsWithoutTimer));
        // The auditor is read-only (downloading the audit bundle reads; it is recorded).
        let auditor = role_permissions(Role::Auditor);
        for p in auditor.iter() {
            assert!(
                p.as_str().ends_with(":read")
                    || p == Permission::Authenticated
                    || p == Permission::AuditExport,
                "{p}"
            );
        }
    }

    #[test]
    fn scopes_parse_by_name_and_refuse_admin() {
        let s = parse_scopes(["devices:read", "workflows:run"]).unwrap();
        assert!(s.contains(Permission::DevicesRead));
        assert!(s.contains(Permission::Authenticated));
        assert!(!s.contains(Permission::DevicesWrite));
        assert!(
            parse_scopes(["devices:rwx"])
                .unwrap_err()
                .contains("known scopes")
        );
        assert!(parse_scopes(["tenants:admin"]).is_err());
    }
}
