//! Errors a caller of the runtime can see.
//!
//! Owns [`Error`]: the core's typed request errors, plus what starting a node
//! or talking to a stopped one can cause. Never a panic.

use xraft::ProposeError;

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request was refused or its outcome is unknown (no leader, not
    /// leader, configuration change in flight, timeout, leadership lost, …).
    #[error(transparent)]
    Propose(#[from] ProposeError),
    /// The node has stopped (shut down, or a fatal storage error).
    #[error("node stopped")]
    Stopped,
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The node could not be built from its durable state.
    #[error(transparent)]
    Restart(#[from] xraft::RestartError),
    /// Storage failed to open or recover.
    #[error("storage: {0}")]
    Storage(#[from] xraft_storage::Error),
    /// A socket could not be bound or an address did not resolve.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The state machine could not be restored from the durable snapshot.
    #[error("snapshot restore failed: {0}")]
    Restore(String),
    /// A watch registration was refused.
    #[error(transparent)]
    Watch(#[from] xraft_kv::WatchError),
    /// The state machine answered an unexpected response.
    #[error("unexpected response: {0}")]
    Unexpected(String),
}

/// Result with the runtime's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A copy for another caller of the same failed request.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Propose(e) => Error::Propose(e.clone()),
            Error::Stopped => Error::Stopped,
            other => Error::Unexpected(other.to_string()),
        }
    }

    /// The core error inside, if any.
    pub fn propose_error(&self) -> Option<&ProposeError> {
        match self {
            Error::Propose(e) => Some(e),
            _ => None,
        }
    }
}
