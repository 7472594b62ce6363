//! Read models folded from the event store: each projector writes its tables and its
//! checkpoint in one transaction; `replay` rebuilds them from position 0.
