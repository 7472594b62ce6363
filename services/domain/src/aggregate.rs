//! The shape every aggregate of the domain has: a state folded from its typed events by one
//! pure [`Aggregate::evolve`], and one pure [`Aggregate::decide`] that turns a command into
//! new events or a typed refusal. No IO: whatever a decision needs from the outside world
//! (the current time, an encrypted key id, an observation) is part of the command.
//!
//! The adapters (the store's command runner, the poller, the API) load the state, call
//! `decide`, and append what it returned; the projections fold the same events with the same
//! enum. Test an aggregate with [`crate::testing`] (given events, when a command, then events
//! or a refusal).

/// An event-sourced aggregate: `decide(state, command) -> events | refusal` and
/// `evolve(state, event) -> state`, both pure.
pub trait Aggregate: Default {
    /// The aggregate's typed event enum (see [`crate::event::EventEnum`]).
    type Event;
    /// What may be asked of it.
    type Command;
    /// Why a command was refused (a typed error, never a panic).
    type Refusal;

    /// Folds one event into the state. Total: every event of the enum is handled (a `match`
    /// without a wildcard arm), so a new event that is not folded is a compile error.
    fn evolve(&mut self, event: &Self::Event);

    /// Decides what a command does, given the current state: the events to append (possibly
    /// none: the command changes nothing), or why it is refused.
    fn decide(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Refusal>;

    /// The state folded from `events`, starting from the default (no stream).
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self
    where
        Self::Event: 'a,
    {
        let mut state = Self::default();
        for e in events {
            state.evolve(e);
        }
        state
    }
}
