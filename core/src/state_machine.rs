//! The application side of Raft: a deterministic state machine fed committed
//! commands in log order.
//!
//! Runtimes and the simulator are generic over [`StateMachine`]; the built-in
//! KV store (`xraft-kv`) is one implementation, its `counter` module another.
//! Invariant expected of every implementation: applying the same commands in
//! the same order from the same restored snapshot gives the same state, the
//! same responses and the same snapshot bytes.
//!
//! # Driving a state machine
//!
//! - For every committed `Normal` entry, in index order, call
//!   [`StateMachine::apply`] once, then report progress to the node with
//!   `Input::Applied`.
//! - When the node asks for a snapshot, call [`StateMachine::snapshot`]
//!   *between two applies*: it returns at once with a frozen, owned view of
//!   the state as of the last applied index (record that index and its term
//!   as the snapshot's metadata). Stream it out with [`std::io::Read`] in
//!   chunks of whatever size suits — to a file on a disk thread (`io::copy`),
//!   or into memory (`read_to_end`) in the simulator — while applying goes on.
//! - To install a snapshot, call [`StateMachine::restore`] with a reader over
//!   its bytes (a file, a slice, a chain of received chunks). On error the
//!   state is left as it was.

use std::io;

use crate::types::LogIndex;

/// A replicated state machine.
pub trait StateMachine {
    /// What applying a command returns to its proposer.
    type Response;
    /// A frozen view of the state, read out as the snapshot's bytes. Owned and
    /// `Send` so a runtime can stream it on another thread while the state
    /// machine keeps applying. Reading it never fails; the `io::Result` is
    /// only `io::Read`'s signature.
    type Snapshot: io::Read + Send + 'static;
    /// Why a snapshot could not be restored (corrupt, truncated, foreign or
    /// over a bound).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies the committed command at `index`. Called exactly once per
    /// committed `Normal` entry, in index order. Must be deterministic and
    /// must not fail on any input: a command it cannot execute yields an
    /// error *response*, not a panic.
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Self::Response;

    /// Freezes the current state (not history) for a snapshot. Should be cheap
    /// (the implementation documents its cost): the node waits for it, the
    /// streaming does not. Deterministic: the same state reads out as the
    /// same bytes.
    fn snapshot(&self) -> Self::Snapshot;

    /// Replaces the whole state with the snapshot read from `input`, reading
    /// it to its end. On error the state is unchanged.
    fn restore(&mut self, input: &mut dyn io::Read) -> Result<(), Self::Error>;
}
