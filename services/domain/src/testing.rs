//! Given/when/then tests for [`Aggregate`]s, with no mocks and no IO:
//!
//! ```ignore
//! given::<DeviceState>([registered.into()])
//!     .when(DeviceCommand::SetTags { tags })
//!     .then([DeviceEvent::TagsSet(DeviceTagsSet { tags })]);
//! given::<DeviceState>([]).when(remove).then_refused(DeviceRefusal::NotRegistered(id));
//! ```
//!
//! Test support only: compiled for this crate's tests and, for other crates, behind the
//! `testing` feature (enable it in their `[dev-dependencies]`). [`device`] holds proptest
//! generators for the device aggregate. The checks panic with the
//! given events, the command and both sides of the comparison, as test assertions do.

pub mod device;

use std::fmt::Debug;

use crate::aggregate::Aggregate;

/// The history of an aggregate before the command under test.
#[derive(Debug)]
pub struct Given<A: Aggregate> {
    history: Vec<A::Event>,
    state: A,
}

/// Starts a test from the events already in the aggregate's stream (in order).
pub fn given<A: Aggregate>(history: impl IntoIterator<Item = A::Event>) -> Given<A> {
    let history: Vec<A::Event> = history.into_iter().collect();
    let state = A::fold(&history);
    Given { history, state }
}

impl<A: Aggregate> Given<A> {
    /// The state folded from the history.
    pub fn state(&self) -> &A {
        &self.state
    }

    /// Decides `command` on the folded state.
    pub fn when(self, command: A::Command) -> When<A> {
        let outcome = self.state.decide(&command);
        When {
            history: self.history,
            state: self.state,
            command,
            outcome,
        }
    }
}

/// A decided command, ready to be checked.
#[derive(Debug)]
pub struct When<A: Aggregate> {
    history: Vec<A::Event>,
    state: A,
    command: A::Command,
    outcome: Result<Vec<A::Event>, A::Refusal>,
}

impl<A> When<A>
where
    A: Aggregate,
    A::Event: Debug + PartialEq,
    A::Command: Debug,
    A::Refusal: Debug + PartialEq,
{
    /// Asserts that the command was accepted with exactly these events (in order; none for a
    /// command that changes nothing). Returns the state with them folded in, for a further
    /// look.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.outcome {
            Ok(events) => {
                assert_eq!(
                    events, expected,
                    "\ngiven {:#?}\nwhen {:#?}\nthe decided events differ",
                    self.history, self.command
                );
                let mut state = self.state;
                for e in &events {
                    state.evolve(e);
                }
                state
            }
            Err(refusal) => {
                assert_eq!(
                    Err::<Vec<A::Event>, _>(refusal),
                    Ok(expected),
                    "\ngiven {:#?}\nwhen {:#?}\nthe command was refused",
                    self.history,
                    self.command
                );
                self.state
            }
        }
    }

    /// Asserts that the command was refused with exactly this refusal.
    #[track_caller]
    pub fn then_refused(self, expected: A::Refusal) {
        assert_eq!(
            self.outcome,
            Err(expected),
            "\ngiven {:#?}\nwhen {:#?}\nexpected a refusal",
            self.history,
            self.command
        );
    }

    /// Asserts that the command was accepted (whatever its events) and returns the state
    /// with them folded in, for tests that look at the state rather than spell the events.
    #[track_caller]
    pub fn then_ok(self) -> A {
        match self.outcome {
            Ok(events) => {
                let mut state = self.state;
                for e in &events {
                    state.evolve(e);
                }
                state
            }
            #[allow(clippy::panic)] // a test assertion, as assert_eq! above
            Err(refusal) => panic!(
                "\ngiven {:#?}\nwhen {:#?}\nthe command was refused: {refusal:?}",
                self.history, self.command
            ),
        }
    }

    /// The raw outcome, for checks the two above do not cover.
    pub fn outcome(self) -> Result<Vec<A::Event>, A::Refusal> {
        self.outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter that refuses to go below zero: the smallest aggregate there is.
    #[derive(Debug, Default)]
    struct Counter(u32);

    #[derive(Debug, Clone, PartialEq)]
    enum Counted {
        Up,
        Down,
    }

    #[derive(Debug)]
    enum Count {
        Up,
        Down,
    }

    impl Aggregate for Counter {
        type Event = Counted;
        type Command = Count;
        type Refusal = &'static str;

        fn evolve(&mut self, event: &Counted) {
            match event {
                Counted::Up => self.0 += 1,
                Counted::Down => self.0 -= 1,
            }
        }

        fn decide(&self, command: &Count) -> Result<Vec<Counted>, &'static str> {
            match command {
                Count::Up => Ok(vec![Counted::Up]),
                Count::Down if self.0 == 0 => Err("already zero"),
                Count::Down => Ok(vec![Counted::Down]),
            }
        }
    }

    #[test]
    fn given_when_then_folds_decides_and_compares() {
        let after = given::<Counter>([Counted::Up])
            .when(Count::Down)
            .then([Counted::Down]);
        assert_eq!(after.0, 0);
        given::<Counter>([Counted::Up, Counted::Down])
            .when(Count::Down)
            .then_refused("already zero");
        assert_eq!(given::<Counter>([Counted::Up, Counted::Up]).state().0, 2);
    }

    #[test]
    #[should_panic(expected = "the decided events differ")]
    fn a_different_event_fails_the_test() {
        given::<Counter>([]).when(Count::Up).then([Counted::Down]);
    }

    #[test]
    #[should_panic(expected = "the command was refused")]
    fn an_unexpected_refusal_fails_the_test() {
        given::<Counter>([]).when(Count::Down).then([]);
    }
}
