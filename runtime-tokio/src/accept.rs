//! What every listener of a node shares: backing off after accept errors,
//! the process's file-descriptor budget, byte budgets for read buffers and
//! writes that give up when the other side stops reading.
//!
//! Owns [`AcceptBackoff`] (an accept loop that fails, typically out of file
//! descriptors, waits 10 ms doubling to 1 s instead of retrying at once, and
//! logs the first failure and every hundredth) and [`fd_budgets`], which
//! caps client and inbound peer connections together below the open-file
//! limit so that connections can never take the descriptors the storage
//! needs to roll a segment (which would stop the node), and [`keepalive`], which makes the kernel probe an
//! idle connection so that one to a crashed host (no FIN ever arrives) is
//! closed within about a minute instead of holding its task, buffers and
//! connection slot forever. Invariant: a waiting accept loop still stops
//! at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn};

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Descriptors kept back from connections for storage files, snapshots,
/// outbound peer connections and listeners.
pub(crate) const FD_RESERVE: u64 = 256;

/// Most concurrent connections on the HTTP port.
pub(crate) const HTTP_CONNECTIONS_MAX: usize = 64;

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

/// The most client and inbound peer connections the open-file limit allows,
/// given the configured maxima: `(clients, peers)`, each at most its
/// maximum, together at most the limit less [`FD_RESERVE`] and the HTTP
/// port's connections. When they do not fit, peers get up to a quarter of
/// what is left (members need few connections) and clients the rest; at
/// least one each. `None` if the limit is unknown or unlimited.
pub(crate) fn fd_budgets(clients_max: usize, peers_max: usize) -> Option<(usize, usize)> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current?;
    Some(split_fds(limit, clients_max, peers_max))
}

fn split_fds(limit: u64, clients_max: usize, peers_max: usize) -> (usize, usize) {
    let reserve = FD_RESERVE + HTTP_CONNECTIONS_MAX as u64;
    let available = usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX);
    if clients_max.saturating_add(peers_max) <= available {
        return (clients_max, peers_max);
    }
    let peers = peers_max.min(available / 4).max(1);
    let clients = clients_max.min(available.saturating_sub(peers)).max(1);
    (clients, peers)
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

/// Counts one kind of event that anyone reaching a port can cause (a
/// malformed request, a refused connection), so that logging it cannot be
/// turned into a flood: the first and every hundredth are worth a warning,
/// the others a debug line.
pub(crate) struct LogThrottle(std::sync::atomic::AtomicU64);

impl LogThrottle {
    /// A counter at zero.
    pub const fn new() -> Self {
        LogThrottle(std::sync::atomic::AtomicU64::new(0))
    }

    /// Counts one event; `(loud, how many so far)`.
    pub fn loud(&self) -> (bool, u64) {
        let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        (n == 1 || n.is_multiple_of(100), n)
    }
}

/// Bytes a connection buffers without drawing on a shared budget.
pub(crate) const BUFFER_FREE_BYTES: usize = 64 << 10;

/// A connection's share of a byte budget shared by a port's connections
/// (`client_input_bytes_max`, `peer_inbound_bytes_max`), covering what its
/// read buffer holds past [`BUFFER_FREE_BYTES`]; given back when dropped.
pub(crate) struct BufferShare {
    pub sem: Arc<Semaphore>,
    pub held: usize,
    /// The whole budget: a share never asks for more, so one buffer larger
    /// than the budget still gets through (holding all of it).
    pub total: usize,
}

impl BufferShare {
    /// A share of `sem`, a budget of `total` bytes; empty for now.
    pub fn new(sem: &Arc<Semaphore>, total: usize) -> Self {
        BufferShare { sem: Arc::clone(sem), held: 0, total }
    }

    /// Holds what a buffer of `capacity` bytes needs past the free part (at
    /// most the whole budget), taking more, waiting `wait` at most, or
    /// giving back the excess; `false` if it could not get it in time.
    pub async fn cover(&mut self, capacity: usize, wait: Duration) -> bool {
        let need = capacity.saturating_sub(BUFFER_FREE_BYTES).min(self.total);
        if need > self.held {
            let more = u32::try_from(need - self.held).unwrap_or(u32::MAX);
            match tokio::time::timeout(wait, self.sem.acquire_many(more)).await {
                Ok(Ok(p)) => {
                    p.forget();
                    self.held += more as usize;
                }
                _ => return false,
            }
        } else if need < self.held {
            self.sem.add_permits(self.held - need);
            self.held = need;
        }
        true
    }
}

impl BufferShare {
    /// Hands `n` bytes of budget to what the buffer's bytes became (a
    /// decoded message): as much as this share holds moves over at once,
    /// and the rest is taken if free. If it is not, the moved part is given
    /// back and all `n` waited for, so that nothing is held while waiting
    /// (two connections each holding part and waiting for more could wait
    /// on each other for ever).
    pub async fn hand_over(&mut self, n: usize) -> Option<Permits> {
        let moved = n.min(self.held);
        self.held -= moved;
        let mut p = Permits { sem: Arc::clone(&self.sem), n: moved };
        if n > moved {
            let more = u32::try_from(n - moved).unwrap_or(u32::MAX);
            match self.sem.try_acquire_many(more) {
                Ok(extra) => {
                    extra.forget();
                    p.n += more as usize;
                }
                Err(_) => {
                    drop(p);
                    let all = u32::try_from(n).unwrap_or(u32::MAX);
                    self.sem.acquire_many(all).await.ok()?.forget();
                    p = Permits { sem: Arc::clone(&self.sem), n: all as usize };
                }
            }
        }
        Some(p)
    }
}

/// Bytes of a byte budget held by something received; given back when
/// dropped.
pub(crate) struct Permits {
    sem: Arc<Semaphore>,
    n: usize,
}

impl Drop for Permits {
    fn drop(&mut self) {
        self.sem.add_permits(self.n);
    }
}

impl Drop for BufferShare {
    fn drop(&mut self) {
        self.sem.add_permits(self.held);
    }
}

/// Writes all of `buf` to `s`, failing with `TimedOut` if one write call
/// makes no progress for `stall` (the other side stopped reading). A slow
/// but moving reader is never cut off, whatever the size of `buf`.
pub(crate) async fn write_all_progress(
    s: &mut tokio::net::TcpStream,
    mut buf: &[u8],
    stall: Duration,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    while !buf.is_empty() {
        match tokio::time::timeout(stall, s.write(buf)).await {
            Ok(Ok(0)) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => buf = &buf[n..],
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                let e = "no write progress within the stall timeout";
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, e));
            }
        }
    }
    Ok(())
}

/// TCP keepalive on `s`: first probe after 30 s idle, then every 5 s; the
/// connection fails after 4 unanswered probes. Best effort: a socket that
/// refuses the options keeps working without them.
pub(crate) fn keepalive(s: &tokio::net::TcpStream) {
    use rustix::net::sockopt;
    let _ = sockopt::set_socket_keepalive(s, true)
        .and_then(|()| sockopt::set_tcp_keepidle(s, Duration::from_secs(30)))
        .and_then(|()| sockopt::set_tcp_keepintvl(s, Duration::from_secs(5)))
        .and_then(|()| sockopt::set_tcp_keepcnt(s, 4));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keepalive_sets_the_probe_options() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let s = tokio::net::TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        use rustix::net::sockopt;
        assert!(!sockopt::socket_keepalive(&s).unwrap());
        keepalive(&s);
        assert!(sockopt::socket_keepalive(&s).unwrap());
        assert_eq!(sockopt::tcp_keepidle(&s).unwrap(), Duration::from_secs(30));
        assert_eq!(sockopt::tcp_keepintvl(&s).unwrap(), Duration::from_secs(5));
        assert_eq!(sockopt::tcp_keepcnt(&s).unwrap(), 4);
    }

    #[tokio::test]
    async fn backoff_doubles_to_a_second_and_resets() {
        let (_tx, mut rx) = watch::channel(false);
        let mut b = AcceptBackoff::new("test");
        let e = std::io::Error::other("x");
        tokio::time::pause();
        for want in [10, 20, 40, 80] {
            assert_eq!(b.delay, Duration::from_millis(want));
            assert!(!b.failed(&e, &mut rx).await);
        }
        for _ in 0..10 {
            b.failed(&e, &mut rx).await;
        }
        assert_eq!(b.delay, BACKOFF_MAX);
        b.ok();
        assert_eq!(b.delay, BACKOFF_MIN);
    }

    /// A shared byte budget: a connection's share grows and shrinks with
    /// its buffer, one that cannot get its share in time is told so, and a
    /// closed connection's share returns.
    #[tokio::test]
    async fn input_budget_is_shared_waited_for_and_returned() {
        let sem = Arc::new(Semaphore::new(1 << 20));
        let wait = Duration::from_millis(50);
        let mut a = BufferShare::new(&sem, 1 << 20);
        assert!(a.cover(BUFFER_FREE_BYTES, wait).await, "the free part needs nothing");
        assert_eq!(sem.available_permits(), 1 << 20);
        assert!(a.cover(BUFFER_FREE_BYTES + (900 << 10), wait).await);
        assert_eq!(sem.available_permits(), (1 << 20) - (900 << 10));
        let mut b = BufferShare::new(&sem, 1 << 20);
        assert!(!b.cover(BUFFER_FREE_BYTES + (900 << 10), wait).await, "over the budget");
        assert_eq!(b.held, 0);
        // `a`'s buffer shrinks: part of its share returns.
        assert!(a.cover(BUFFER_FREE_BYTES + (100 << 10), wait).await);
        assert!(b.cover(BUFFER_FREE_BYTES + (900 << 10), wait).await);
        drop(a);
        drop(b);
        assert_eq!(sem.available_permits(), 1 << 20, "every share returned");
    }

    #[test]
    fn log_throttle_warns_on_the_first_and_every_hundredth() {
        let t = LogThrottle::new();
        let loud: Vec<u64> =
            (0..250).map(|_| t.loud()).filter(|(loud, _)| *loud).map(|(_, n)| n).collect();
        assert_eq!(loud, vec![1, 100, 200]);
    }

    #[test]
    fn connections_fit_under_the_open_file_limit_together() {
        // Plenty: the configured maxima stand.
        assert_eq!(split_fds(1 << 20, 10_000, 1024), (10_000, 1024));
        // Tight: peers take at most a quarter, the sum fits.
        let (c, p) = split_fds(4096, 10_000, 1024);
        assert_eq!(p, (4096 - 256 - 64) / 4);
        assert_eq!(c + p, 4096 - 256 - 64);
        // Peers configured low keep their number; clients get the rest.
        assert_eq!(split_fds(4096, 10_000, 16), (4096 - 256 - 64 - 16, 16));
        // A limit below the reserve still leaves one of each.
        assert_eq!(split_fds(100, 10_000, 1024), (1, 1));
    }

    /// A frame's share moves to the message it decodes into; the rest of
    /// the message's weight is taken from the budget; both come back.
    #[tokio::test]
    async fn a_share_hands_over_to_the_message() {
        let sem = Arc::new(Semaphore::new(1000 + (1 << 20)));
        let mut share = BufferShare::new(&sem, 1 << 20);
        assert!(share.cover(BUFFER_FREE_BYTES + 600, Duration::from_millis(10)).await);
        let small = share.hand_over(400).await.expect("open");
        assert_eq!((small.n, share.held), (400, 200));
        let big = share.hand_over(700).await.expect("open");
        assert_eq!((big.n, share.held), (700, 0));
        assert_eq!(sem.available_permits(), 1000 + (1 << 20) - 1100);
        drop((small, big, share));
        assert_eq!(sem.available_permits(), 1000 + (1 << 20));
    }
}
