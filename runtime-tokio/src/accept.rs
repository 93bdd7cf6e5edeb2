//! What every listener of a node shares: backing off after accept errors,
//! and the process's file-descriptor budget.
//!
//! Owns [`AcceptBackoff`] (an accept loop that fails, typically out of file
//! descriptors, waits 10 ms doubling to 1 s instead of retrying at once, and
//! logs the first failure and every hundredth) and [`fd_budget`], which
//! caps client connections below the open-file limit so that clients can
//! never take the descriptors the storage needs to roll a segment (which
//! would stop the node). Invariant: a waiting accept loop still stops at
//! shutdown.

use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Descriptors kept back from clients for storage files, snapshots, peers
/// and listeners.
pub(crate) const FD_RESERVE: u64 = 256;

/// Backoff state of one accept loop.
pub(crate) struct AcceptBackoff {
    what: &'static str,
    delay: Duration,
    failures: u64,
}

impl AcceptBackoff {
    pub(crate) fn new(what: &'static str) -> Self {
        AcceptBackoff { what, delay: BACKOFF_MIN, failures: 0 }
    }

    /// An accept succeeded.
    pub(crate) fn ok(&mut self) {
        self.delay = BACKOFF_MIN;
        self.failures = 0;
    }

    /// An accept failed: logs (rate-limited) and waits, or returns early if
    /// shutdown is signalled. Returns whether to stop.
    pub(crate) async fn failed(
        &mut self,
        e: &std::io::Error,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        self.failures += 1;
        let (what, failures, delay) = (self.what, self.failures, self.delay);
        if failures == 1 || failures.is_multiple_of(100) {
            warn!(error = %e, failures, ?delay, "{what} accept failed; backing off");
        } else {
            debug!(error = %e, failures, "{what} accept failed");
        }
        self.delay = (self.delay * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = shutdown.changed() => true,
            _ = tokio::time::sleep(delay) => false,
        }
    }
}

/// The most client connections the open-file limit allows with
/// [`FD_RESERVE`] descriptors left for everything else; `None` if the limit
/// is unknown or unlimited.
pub(crate) fn fd_budget() -> Option<usize> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current?;
    Some(usize::try_from(limit.saturating_sub(FD_RESERVE)).unwrap_or(usize::MAX).max(1))
}

/// Raises this process's soft open-file limit to its hard limit (as Redis
/// does at start); returns the soft limit in force afterwards. For
/// programs that serve nodes; a library embedding a node leaves it alone.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
    getrlimit(Resource::Nofile).current
}
