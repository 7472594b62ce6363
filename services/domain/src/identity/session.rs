//! The session aggregate, stream `session-<id>`: one login session (a refresh-token family),
//! from the login to its end. Its rules: a session starts once; ending it writes one event
//! while it is live and nothing once it has ended (logging out twice, or a reuse detected
//! on a session that is already over, changes nothing).
//!
//! Refresh-token rotation is not an event: the adapter's token table holds each token's
//! use, and a reused token makes the adapter end the session with
//! [`SessionEndReason::RefreshTokenReused`].

use uuid::Uuid;

use super::{SessionEndReason, UserLoggedIn, UserSessionRevoked};
use crate::aggregate::Aggregate;
use crate::event::event_enum;

event_enum! {
    /// The events of a `session-<id>` stream.
    pub enum SessionEvent in "session" {
        /// A login started the session.
        LoggedIn(UserLoggedIn),
        /// The session was revoked.
        Revoked(UserSessionRevoked),
    }
}

/// A session as its stream has it (the default: no stream yet). No command reads the
/// stream's version (a login creates the stream, later events append at any version), so
/// the state does not keep it; the adapter builds it from the refresh-token table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Session {
    /// Whose session it is and its id; `None` before the login.
    pub started: Option<SessionOwner>,
    /// Whether it has ended.
    pub ended: bool,
}

/// The user and id of a started session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOwner {
    /// The user.
    pub user_id: Uuid,
    /// The session (refresh-token family) id.
    pub session_id: Uuid,
}

/// What may be asked of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    /// Start it for a user whose credentials the adapter verified.
    Start(SessionOwner),
    /// End it.
    End {
        /// Why.
        reason: SessionEndReason,
    },
}

/// Why a session command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefusal {
    /// The session exists already.
    #[error("the session exists already")]
    AlreadyStarted,
}

impl Aggregate for Session {
    type Event = SessionEvent;
    type Command = SessionCommand;
    type Refusal = SessionRefusal;

    fn evolve(&mut self, event: &SessionEvent) {
        match event {
            SessionEvent::LoggedIn(e) => {
                self.started = Some(SessionOwner {
                    user_id: e.user_id,
                    session_id: e.session_id,
                });
            }
            SessionEvent::Revoked(_) => self.ended = true,
        }
    }

    fn decide(&self, command: &SessionCommand) -> Result<Vec<SessionEvent>, SessionRefusal> {
        match command {
            SessionCommand::Start(owner) => {
                if self.started.is_some() {
                    return Err(SessionRefusal::AlreadyStarted);
                }
                Ok(vec![
                    UserLoggedIn {
                        user_id: owner.user_id,
                        session_id: owner.session_id,
                    }
                    .into(),
                ])
            }
            SessionCommand::End { reason } => match self.started {
                Some(owner) if !self.ended => Ok(vec![
                    UserSessionRevoked {
                        user_id: owner.user_id,
                        session_id: owner.session_id,
                        reason: *reason,
                    }
                    .into(),
                ]),
                _ => Ok(Vec::new()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;

    const OWNER: SessionOwner = SessionOwner {
        user_id: Uuid::from_u128(1),
        session_id: Uuid::from_u128(2),
    };

    fn logged_in() -> SessionEvent {
        UserLoggedIn {
            user_id: OWNER.user_id,
            session_id: OWNER.session_id,
        }
        .into()
    }

    fn revoked(reason: SessionEndReason) -> SessionEvent {
        UserSessionRevoked {
            user_id: OWNER.user_id,
            session_id: OWNER.session_id,
            reason,
        }
        .into()
    }

    #[test]
    fn a_session_starts_once() {
        let after = given::<Session>([])
            .when(SessionCommand::Start(OWNER))
            .then([logged_in()]);
        assert_eq!((after.started, after.ended), (Some(OWNER), false));
        given::<Session>([logged_in()])
            .when(SessionCommand::Start(OWNER))
            .then_refused(SessionRefusal::AlreadyStarted);
    }

    #[test]
    fn a_live_session_ends_with_its_reason() {
        for reason in [
            SessionEndReason::Logout,
            SessionEndReason::RefreshTokenReused,
            SessionEndReason::PasswordChanged,
            SessionEndReason::UserDisabled,
        ] {
            let after = given::<Session>([logged_in()])
                .when(SessionCommand::End { reason })
                .then([revoked(reason)]);
            assert!(after.ended);
        }
    }

    #[test]
    fn ending_an_ended_or_unknown_session_changes_nothing() {
        given::<Session>([logged_in(), revoked(SessionEndReason::Logout)])
            .when(SessionCommand::End {
                reason: SessionEndReason::RefreshTokenReused,
            })
            .then([]);
        given::<Session>([])
            .when(SessionCommand::End {
                reason: SessionEndReason::Logout,
            })
            .then([]);
    }
}
