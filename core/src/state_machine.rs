//! The application side of Raft: a deterministic state machine fed committed
//! commands in log order.
//!
//! Runtimes and the simulator are generic over [`StateMachine`]; the built-in
//! KV store (`xraft-kv`) is one implementation. Invariant expected of every
//! implementation: applying the same commands in the same order from the same
//! restored snapshot gives the same state and the same responses.

use std::io;

use crate::types::LogIndex;

/// A replicated state machine.
pub trait StateMachine {
    /// What applying a command returns to its proposer.
    type Response;
    /// Why a snapshot could not be restored (corrupt or foreign data).
    type Error: std::error::Error + Send + Sync + 'static;

    /// Applies the committed command at `index`. Called exactly once per
    /// committed `Normal` entry, in index order. Must be deterministic and
    /// must not fail on any input: a command it cannot execute yields an
    /// error *response*, not a panic.
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Self::Response;

    /// Writes the current state (not history) to `out`. Deterministic: the
    /// same state writes the same bytes.
    fn snapshot(&self, out: &mut dyn io::Write) -> io::Result<()>;

    /// Replaces the whole state with the snapshot read from `input`.
    fn restore(&mut self, input: &mut dyn io::Read) -> Result<(), Self::Error>;
}
