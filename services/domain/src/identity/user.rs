//! The user aggregate, stream `user-<id>`: e-mail address, display name, role, enabled
//! state and password changes. Its rules: nobody grants a role, or changes a user holding
//! a role, beyond what they may grant (no escalation); names, e-mail addresses and new
//! passwords must be usable; edits name the version they are based on (If-Match); a patch
//! that changes nothing writes nothing. Disabling a user and changing their password end
//! their sessions ([`sessions_to_end`]).
//!
//! Whether an e-mail address is taken in another tenant is not the user's to know: the
//! adapter's unique index refuses it.

use uuid::Uuid;

use super::{
    DisplayName, Email, Grants, IdentityError, NewPassword, PasswordRefused, Role,
    SessionEndReason, UserCreated, UserPasswordChanged, UserUpdated,
};
use crate::aggregate::Aggregate;
use crate::event::event_enum;

event_enum! {
    /// The events of a `user-<id>` stream.
    pub enum UserEvent in "user" {
        /// The user was created.
        Created(UserCreated),
        /// Display name, role or enabled state changed.
        Updated(UserUpdated),
        /// The password changed.
        PasswordChanged(UserPasswordChanged),
    }
}

/// A user as their stream has it (the default: no stream yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    /// Who they are; `None` before `UserCreated`.
    pub profile: Option<UserProfile>,
    /// The stream's version (its number of events).
    pub version: u64,
}

/// What a created user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProfile {
    /// Id.
    pub id: Uuid,
    /// Login e-mail address.
    pub email: Email,
    /// Display name.
    pub display_name: DisplayName,
    /// Role.
    pub role: Role,
    /// Disabled users cannot log in or refresh.
    pub disabled: bool,
}

/// What may be asked of a user. Texts arrive as given and are parsed by `decide`, so
/// refusals come in the order the API has always reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Create the user.
    Create(CreateUser),
    /// Change display name, role or enabled state.
    Update(UpdateUser),
    /// An administrator sets the password.
    ResetPassword {
        /// The new password.
        password: NewPassword,
        /// The version the change is based on (If-Match); `None` for any.
        if_version: Option<u64>,
        /// The roles the administrator may grant (the user's role must be one).
        grants: Grants,
    },
    /// The user changes their own password (the adapter verified the current one).
    ChangeOwnPassword {
        /// The new password.
        password: NewPassword,
        /// The version the change is based on.
        if_version: Option<u64>,
    },
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateUser {
    /// Their new id.
    pub user_id: Uuid,
    /// Login e-mail address, as given.
    pub email: String,
    /// Display name, as given.
    pub display_name: String,
    /// Role.
    pub role: Role,
    /// Initial password (hashed by the adapter once accepted).
    pub password: NewPassword,
    /// The roles the creator may grant.
    pub grants: Grants,
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateUser {
    /// New display name, as given.
    pub display_name: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// Disable (true) or enable (false).
    pub disabled: Option<bool>,
    /// The version the change is based on (If-Match); `None` for any.
    pub if_version: Option<u64>,
    /// The roles the editor may grant (the user's current and new role must be two).
    pub grants: Grants,
}

/// Why a user command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserRefusal {
    /// The e-mail address is unusable.
    #[error(transparent)]
    InvalidEmail(IdentityError),
    /// The display name is unusable.
    #[error("display_name: {0}")]
    InvalidDisplayName(IdentityError),
    /// The new password breaks the policy.
    #[error(transparent)]
    WeakPassword(PasswordRefused),
    /// The role has permissions the actor lacks.
    #[error("you cannot grant the role `{0}`: it has permissions you lack")]
    RoleNotGrantable(Role),
    /// The user exists already.
    #[error("the user exists already")]
    AlreadyExists,
    /// The user does not exist.
    #[error("the user does not exist")]
    NotFound,
    /// If-Match named another version.
    #[error("the user is at version {current}")]
    VersionMismatch {
        /// The current version.
        current: u64,
    },
}

fn grantable(grants: Grants, role: Role) -> Result<(), UserRefusal> {
    if grants.contains(role) {
        Ok(())
    } else {
        Err(UserRefusal::RoleNotGrantable(role))
    }
}

fn parse_display_name(name: &str) -> Result<DisplayName, UserRefusal> {
    DisplayName::parse(name).map_err(UserRefusal::InvalidDisplayName)
}

impl User {
    fn existing(&self) -> Result<&UserProfile, UserRefusal> {
        self.profile.as_ref().ok_or(UserRefusal::NotFound)
    }

    fn check_version(&self, if_version: Option<u64>) -> Result<(), UserRefusal> {
        match if_version {
            Some(v) if v != self.version => Err(UserRefusal::VersionMismatch {
                current: self.version,
            }),
            _ => Ok(()),
        }
    }

    fn create(&self, c: &CreateUser) -> Result<Vec<UserEvent>, UserRefusal> {
        grantable(c.grants, c.role)?;
        let email = Email::parse(&c.email).map_err(UserRefusal::InvalidEmail)?;
        let display_name = parse_display_name(&c.display_name)?;
        c.password.check().map_err(UserRefusal::WeakPassword)?;
        if self.profile.is_some() || self.version > 0 {
            return Err(UserRefusal::AlreadyExists);
        }
        Ok(vec![
            UserCreated {
                user_id: c.user_id,
                email,
                display_name,
                role: c.role,
            }
            .into(),
        ])
    }

    fn update(&self, c: &UpdateUser) -> Result<Vec<UserEvent>, UserRefusal> {
        let display_name = c
            .display_name
            .as_deref()
            .map(parse_display_name)
            .transpose()?;
        let user = self.existing()?;
        self.check_version(c.if_version)?;
        // Changing someone who holds more than you, or granting more than you hold, is
        // refused.
        grantable(c.grants, user.role)?;
        if let Some(r) = c.role {
            grantable(c.grants, r)?;
        }
        let event = UserUpdated {
            display_name: display_name.filter(|n| *n != user.display_name),
            role: c.role.filter(|r| *r != user.role),
            disabled: c.disabled.filter(|d| *d != user.disabled),
        };
        if event.display_name.is_none() && event.role.is_none() && event.disabled.is_none() {
            return Ok(Vec::new());
        }
        Ok(vec![event.into()])
    }
}

impl Aggregate for User {
    type Event = UserEvent;
    type Command = UserCommand;
    type Refusal = UserRefusal;

    fn evolve(&mut self, event: &UserEvent) {
        self.version += 1;
        match event {
            UserEvent::Created(e) => {
                self.profile = Some(UserProfile {
                    id: e.user_id,
                    email: e.email.clone(),
                    display_name: e.display_name.clone(),
                    role: e.role,
                    disabled: false,
                });
            }
            UserEvent::Updated(e) => {
                if let Some(p) = &mut self.profile {
                    if let Some(n) = &e.display_name {
                        p.display_name = n.clone();
                    }
                    if let Some(r) = e.role {
                        p.role = r;
                    }
                    if let Some(d) = e.disabled {
                        p.disabled = d;
                    }
                }
            }
            UserEvent::PasswordChanged(UserPasswordChanged {}) => {}
        }
    }

    fn decide(&self, command: &UserCommand) -> Result<Vec<UserEvent>, UserRefusal> {
        match command {
            UserCommand::Create(c) => self.create(c),
            UserCommand::Update(c) => self.update(c),
            UserCommand::ResetPassword {
                password,
                if_version,
                grants,
            } => {
                let user = self.existing()?;
                grantable(*grants, user.role)?;
                password.check().map_err(UserRefusal::WeakPassword)?;
                self.check_version(*if_version)?;
                Ok(vec![UserPasswordChanged {}.into()])
            }
            UserCommand::ChangeOwnPassword {
                password,
                if_version,
            } => {
                password.check().map_err(UserRefusal::WeakPassword)?;
                self.existing()?;
                self.check_version(*if_version)?;
                Ok(vec![UserPasswordChanged {}.into()])
            }
        }
    }
}

/// Which of the user's sessions an event ends, and why: disabling ends every session at
/// once, and so does a password change. A role change applies at the next token refresh.
pub fn sessions_to_end(event: &UserEvent) -> Option<SessionEndReason> {
    match event {
        UserEvent::Updated(e) if e.disabled == Some(true) => Some(SessionEndReason::UserDisabled),
        UserEvent::PasswordChanged(_) => Some(SessionEndReason::PasswordChanged),
        UserEvent::Created(_) | UserEvent::Updated(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testing::given;

    const ID: Uuid = Uuid::from_u128(42);

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    fn name(s: &str) -> DisplayName {
        DisplayName::parse(s).unwrap()
    }

    fn create(role: Role, grants: Grants) -> UserCommand {
        UserCommand::Create(CreateUser {
            user_id: ID,
            email: " Ops@Example.NET".to_owned(),
            display_name: "Ops".to_owned(),
            role,
            password: NewPassword::new("correct horse battery"),
            grants,
        })
    }

    fn created(role: Role) -> UserEvent {
        UserCreated {
            user_id: ID,
            email: email("ops@example.net"),
            display_name: name("Ops"),
            role,
        }
        .into()
    }

    /// What a tenant admin may grant: everything but super admin.
    fn admin_grants() -> Grants {
        Grants::of(|r| r != Role::SuperAdmin)
    }

    fn update(f: impl FnOnce(&mut UpdateUser)) -> UserCommand {
        let mut c = UpdateUser {
            display_name: None,
            role: None,
            disabled: None,
            if_version: Some(1),
            grants: admin_grants(),
        };
        f(&mut c);
        UserCommand::Update(c)
    }

    #[test]
    fn a_user_is_created_with_a_normalised_address() {
        let after = given::<User>([])
            .when(create(Role::Operator, admin_grants()))
            .then([created(Role::Operator)]);
        let p = after.profile.unwrap();
        assert_eq!(
            (p.role, p.disabled, after.version),
            (Role::Operator, false, 1)
        );
    }

    #[test]
    fn nobody_grants_a_role_beyond_their_own() {
        given::<User>([])
            .when(create(Role::SuperAdmin, admin_grants()))
            .then_refused(UserRefusal::RoleNotGrantable(Role::SuperAdmin));
        assert_eq!(
            UserRefusal::RoleNotGrantable(Role::SuperAdmin).to_string(),
            "you cannot grant the role `super_admin`: it has permissions you lack"
        );
    }

    #[test]
    fn a_creation_checks_grant_then_address_then_name_then_password() {
        let mut c = CreateUser {
            user_id: ID,
            email: "nope".to_owned(),
            display_name: " padded".to_owned(),
            role: Role::SuperAdmin,
            password: NewPassword::new("short"),
            grants: admin_grants(),
        };
        given::<User>([])
            .when(UserCommand::Create(c.clone()))
            .then_refused(UserRefusal::RoleNotGrantable(Role::SuperAdmin));
        c.role = Role::Viewer;
        given::<User>([])
            .when(UserCommand::Create(c.clone()))
            .then_refused(UserRefusal::InvalidEmail(IdentityError::BadEmail(
                "nope".to_owned(),
            )));
        c.email = "a@b.example".to_owned();
        given::<User>([])
            .when(UserCommand::Create(c.clone()))
            .then_refused(UserRefusal::InvalidDisplayName(IdentityError::BadName));
        c.display_name = "A".to_owned();
        given::<User>([])
            .when(UserCommand::Create(c.clone()))
            .then_refused(UserRefusal::WeakPassword(PasswordRefused::TooShort));
        c.password = NewPassword::new("x".repeat(2000));
        given::<User>([])
            .when(UserCommand::Create(c))
            .then_refused(UserRefusal::WeakPassword(PasswordRefused::TooLong));
    }

    #[test]
    fn a_user_is_created_once() {
        given::<User>([created(Role::Viewer)])
            .when(create(Role::Viewer, Grants::ALL))
            .then_refused(UserRefusal::AlreadyExists);
    }

    #[test]
    fn an_update_writes_only_what_changes() {
        let after = given::<User>([created(Role::Viewer)])
            .when(update(|c| {
                c.display_name = Some("Ops".to_owned());
                c.role = Some(Role::Operator);
                c.disabled = Some(false);
            }))
            .then([UserUpdated {
                display_name: None,
                role: Some(Role::Operator),
                disabled: None,
            }
            .into()]);
        assert_eq!(after.profile.unwrap().role, Role::Operator);
        given::<User>([created(Role::Viewer)])
            .when(update(|c| {
                c.display_name = Some("Ops".to_owned());
                c.role = Some(Role::Viewer);
                c.disabled = Some(false);
            }))
            .then([]);
    }

    #[test]
    fn an_update_checks_name_then_user_then_version_then_grants() {
        given::<User>([])
            .when(update(|c| c.display_name = Some(String::new())))
            .then_refused(UserRefusal::InvalidDisplayName(IdentityError::BadName));
        given::<User>([])
            .when(update(|_| {}))
            .then_refused(UserRefusal::NotFound);
        given::<User>([created(Role::SuperAdmin)])
            .when(update(|c| c.if_version = Some(3)))
            .then_refused(UserRefusal::VersionMismatch { current: 1 });
        // A tenant admin cannot touch a super admin, not even to rename them...
        given::<User>([created(Role::SuperAdmin)])
            .when(update(|c| c.display_name = Some("Boss".to_owned())))
            .then_refused(UserRefusal::RoleNotGrantable(Role::SuperAdmin));
        // ...nor promote anyone to one.
        given::<User>([created(Role::Viewer)])
            .when(update(|c| c.role = Some(Role::SuperAdmin)))
            .then_refused(UserRefusal::RoleNotGrantable(Role::SuperAdmin));
        // If-Match `*` skips the version check.
        given::<User>([created(Role::Viewer)])
            .when(update(|c| {
                c.if_version = None;
                c.disabled = Some(true);
            }))
            .then([UserUpdated {
                display_name: None,
                role: None,
                disabled: Some(true),
            }
            .into()]);
    }

    #[test]
    fn disabling_and_password_changes_end_sessions() {
        let disabled = UserEvent::from(UserUpdated {
            display_name: None,
            role: None,
            disabled: Some(true),
        });
        assert_eq!(
            sessions_to_end(&disabled),
            Some(SessionEndReason::UserDisabled)
        );
        let enabled = UserEvent::from(UserUpdated {
            display_name: None,
            role: Some(Role::Auditor),
            disabled: Some(false),
        });
        assert_eq!(sessions_to_end(&enabled), None);
        assert_eq!(
            sessions_to_end(&UserPasswordChanged {}.into()),
            Some(SessionEndReason::PasswordChanged)
        );
        assert_eq!(sessions_to_end(&created(Role::Viewer)), None);
    }

    #[test]
    fn an_administrator_resets_passwords_of_users_they_could_create() {
        let reset = |grants| UserCommand::ResetPassword {
            password: NewPassword::new("correct horse battery"),
            if_version: Some(1),
            grants,
        };
        let after = given::<User>([created(Role::TenantAdmin)])
            .when(reset(admin_grants()))
            .then([UserPasswordChanged {}.into()]);
        assert_eq!(after.version, 2);
        given::<User>([created(Role::SuperAdmin)])
            .when(reset(admin_grants()))
            .then_refused(UserRefusal::RoleNotGrantable(Role::SuperAdmin));
        given::<User>([])
            .when(reset(Grants::ALL))
            .then_refused(UserRefusal::NotFound);
        given::<User>([created(Role::SuperAdmin)])
            .when(UserCommand::ResetPassword {
                password: NewPassword::new("short"),
                if_version: Some(7),
                grants: admin_grants(),
            })
            .then_refused(UserRefusal::RoleNotGrantable(Role::SuperAdmin));
        given::<User>([created(Role::Viewer)])
            .when(UserCommand::ResetPassword {
                password: NewPassword::new("short"),
                if_version: Some(7),
                grants: admin_grants(),
            })
            .then_refused(UserRefusal::WeakPassword(PasswordRefused::TooShort));
        given::<User>([created(Role::Viewer)])
            .when(UserCommand::ResetPassword {
                password: NewPassword::new("correct horse battery"),
                if_version: Some(7),
                grants: admin_grants(),
            })
            .then_refused(UserRefusal::VersionMismatch { current: 1 });
    }

    #[test]
    fn users_change_their_own_password_under_the_policy() {
        let change = |pw: &str, v| UserCommand::ChangeOwnPassword {
            password: NewPassword::new(pw),
            if_version: Some(v),
        };
        given::<User>([created(Role::SuperAdmin)])
            .when(change("correct horse battery", 1))
            .then([UserPasswordChanged {}.into()]);
        given::<User>([])
            .when(change("short", 1))
            .then_refused(UserRefusal::WeakPassword(PasswordRefused::TooShort));
        given::<User>([])
            .when(change("correct horse battery", 1))
            .then_refused(UserRefusal::NotFound);
        given::<User>([created(Role::Viewer), UserPasswordChanged {}.into()])
            .when(change("correct horse battery", 1))
            .then_refused(UserRefusal::VersionMismatch { current: 2 });
    }

    fn any_role() -> impl Strategy<Value = Role> {
        proptest::sample::select(Role::ALL.to_vec())
    }

    fn any_update() -> impl Strategy<Value = UserCommand> {
        (
            proptest::option::of(proptest::sample::select(vec!["Ops", "Net Ops", "Ann"])),
            proptest::option::of(any_role()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(0u64..6),
            any::<u8>(),
        )
            .prop_map(|(n, role, disabled, if_version, g)| {
                UserCommand::Update(UpdateUser {
                    display_name: n.map(str::to_owned),
                    role,
                    disabled,
                    if_version,
                    grants: Grants::of(|r| g & (1 << (r as u8)) != 0),
                })
            })
    }

    proptest! {
        /// Whatever updates are accepted, the folded user is what the patches said, the
        /// version counts the events, and no accepted command ever grants a role outside
        /// the actor's grants.
        #[test]
        fn accepted_updates_fold_to_the_patched_user(commands in proptest::collection::vec(any_update(), 0..20)) {
            let mut state = User::fold(&[created(Role::Viewer)]);
            let mut expected = state.profile.clone().unwrap();
            for command in &commands {
                let before = state.profile.clone().unwrap();
                if let Ok(events) = state.decide(command) {
                    let UserCommand::Update(c) = command else { unreachable!() };
                    prop_assert!(c.grants.contains(before.role));
                    if let Some(r) = c.role {
                        prop_assert!(c.grants.contains(r));
                        expected.role = r;
                    }
                    if let Some(n) = &c.display_name {
                        expected.display_name = name(n);
                    }
                    if let Some(d) = c.disabled {
                        expected.disabled = d;
                    }
                    prop_assert!(events.len() <= 1);
                    let version = state.version;
                    for e in &events {
                        state.evolve(e);
                    }
                    prop_assert_eq!(state.version, version + events.len() as u64);
                }
                prop_assert_eq!(state.profile.as_ref(), Some(&expected));
            }
        }
    }
}
