//! The session aggregate, stream `session-<id>`: one login session (a refresh-token family),
//! from the login to its end. Its rules: a session starts once; ending it writes one event
//! while it is live and nothing once it has ended (logging out twice, or a reuse detected
//! on a session that is already over, changes nothing).
//!
//! Refresh-token rotation is not an event: the adapter's token table holds each token's
//! use. Whether a presented token may be exchanged is [`judge_refresh`]'s to say; a reused
//! one makes the adapter end the session with [`SessionEndReason::RefreshTokenReused`].

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
    /// Start it for a user whose credentials the adapter verified, from a client address.
    Start(SessionOwner, Option<String>),
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
            SessionCommand::Start(owner, source) => {
                if self.started.is_some() {
                    return Err(SessionRefusal::AlreadyStarted);
                }
                Ok(vec![
                    UserLoggedIn {
                        user_id: owner.user_id,
                        session_id: owner.session_id,
                        source: source.clone(),
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

/// A presented refresh token as the token table has it, with its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedToken {
    /// It was exchanged before.
    pub used: bool,
    /// Its session ended.
    pub revoked: bool,
    /// Its lifetime is over.
    pub expired: bool,
    /// Whether its user is disabled; `None` when the user is gone.
    pub user_disabled: Option<bool>,
}

/// What a refresh with a presented token does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshVerdict {
    /// Mark it used and issue the next token of the session.
    Rotate,
    /// Refuse it: the token is revoked or expired, or its user is gone or disabled.
    Refuse,
    /// A used token came back, so a copy exists: end the session (both copies stop working)
    /// and refuse.
    ReuseDetected,
}

/// Judges a refresh: a used token of a live session is a reuse (checked first, so an
/// expired copy still ends the session); a revoked or expired token, or one whose user is
/// gone or disabled, is refused; otherwise it rotates.
pub fn judge_refresh(token: PresentedToken) -> RefreshVerdict {
    if token.used || token.revoked {
        return if token.used && !token.revoked {
            RefreshVerdict::ReuseDetected
        } else {
            RefreshVerdict::Refuse
        };
    }
    match token.user_disabled {
        _ if token.expired => RefreshVerdict::Refuse,
        Some(false) => RefreshVerdict::Rotate,
        Some(true) | None => RefreshVerdict::Refuse,
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
            source: None,
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
            .when(SessionCommand::Start(OWNER, None))
            .then([logged_in()]);
        assert_eq!((after.started, after.ended), (Some(OWNER), false));
        given::<Session>([logged_in()])
            .when(SessionCommand::Start(OWNER, None))
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

    fn token(
        used: bool,
        revoked: bool,
        expired: bool,
        user_disabled: Option<bool>,
    ) -> PresentedToken {
        PresentedToken {
            used,
            revoked,
            expired,
            user_disabled,
        }
    }

    #[test]
    fn a_fresh_token_of_an_enabled_user_rotates() {
        assert_eq!(
            judge_refresh(token(false, false, false, Some(false))),
            RefreshVerdict::Rotate
        );
    }

    #[test]
    fn a_used_token_of_a_live_session_is_a_reuse_even_when_expired() {
        for expired in [false, true] {
            for user in [Some(false), Some(true), None] {
                assert_eq!(
                    judge_refresh(token(true, false, expired, user)),
                    RefreshVerdict::ReuseDetected
                );
            }
        }
    }

    #[test]
    fn revoked_expired_or_orphaned_tokens_are_refused() {
        assert_eq!(
            judge_refresh(token(true, true, false, Some(false))),
            RefreshVerdict::Refuse
        );
        assert_eq!(
            judge_refresh(token(false, true, false, Some(false))),
            RefreshVerdict::Refuse
        );
        assert_eq!(
            judge_refresh(token(false, false, true, Some(false))),
            RefreshVerdict::Refuse
        );
        assert_eq!(
            judge_refresh(token(false, false, false, Some(true))),
            RefreshVerdict::Refuse
        );
        assert_eq!(
            judge_refresh(token(false, false, false, None)),
            RefreshVerdict::Refuse
        );
    }
}
