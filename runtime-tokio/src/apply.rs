//! The apply task: owns the state machine and everything that reads it.
//!
//! Owns applying committed entries, answering proposal waiters with their
//! entries' responses, serving reads, taking and restoring snapshots. It
//! takes jobs from ONE FIFO fed by the node task, so the order the core gave
//! holds: a snapshot is taken after the applies before it, a restore happens
//! before the applies after it, a read is served after the applies before
//! it. Invariants: entries are applied once each, in index order; a waiter
//! succeeds only if the entry at its last index was applied with its term
//! (otherwise leadership was lost); `Applied` is published after a batch is
//! applied, never before. Snapshot streaming runs on blocking threads: the
//! state machine is frozen in O(1) here and keeps applying meanwhile.

use std::collections::{BTreeMap, VecDeque};
use std::io;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};
use xraft::{EntryKind, EntryVec, LogIndex, ProposeError, SnapshotMeta, StateMachine, Term};

use crate::disk::DiskJob;
use crate::error::{Error, Result};
use crate::node::Event;

/// A state machine the runtime can drive: any [`StateMachine`] that can move
/// between threads, with cloneable responses, and an optional hook run after
/// each applied batch (the KV server drains its watchers there).
pub trait Application: StateMachine<Response: Clone + Send + 'static> + Send + 'static {
    /// Applies a committed entry's payload: [`StateMachine::apply`] unless
    /// the application can keep slices of the entry's buffer (each entry's
    /// `data` is its own buffer in this runtime: copied out of peer frames
    /// and out of segments read at recovery, or encoded by a client).
    fn apply_entry(&mut self, index: LogIndex, data: &bytes::Bytes) -> Self::Response {
        self.apply(index, data)
    }

    /// Called after each batch of entries (or a restore) is applied.
    fn after_apply(&mut self) {}

    /// About how many bytes `response` holds on the heap. Responses of
    /// recently applied entries are kept for proposals whose waiter
    /// registers late (forwarded ones), at most 4,096 of them and, by this
    /// measure, 64 MiB; the default 0 bounds them by number only.
    fn response_bytes(response: &Self::Response) -> usize {
        let _ = response;
        0
    }
}

/// The counter of `xraft_kv` runs as is: the default `apply_entry` and no
/// hook after applying.
impl Application for xraft_kv::counter::Counter {}

/// A read run on the state machine once a ReadIndex round completed, or with
/// the request's error.
pub(crate) type ReadFn<A> = Box<dyn FnOnce(Result<(&mut A, LogIndex)>) + Send>;
/// A job run on the state machine as it is now (a local, possibly stale read,
/// or a watcher registration).
pub(crate) type LocalFn<A> = Box<dyn FnOnce(&mut A) + Send>;

/// Callers of one proposal: several requests' commands may share one
/// `Propose` (the node task batches them), each caller owning `n` of them.
pub(crate) type Callers<R> = Vec<(oneshot::Sender<Result<Vec<R>>>, usize)>;

/// Where a proposal's outcome goes.
pub(crate) enum Reply<R> {
    /// The responses of the proposed commands, split among their callers.
    Commands(Callers<R>),
    /// Success only (a membership change).
    Unit(oneshot::Sender<Result<()>>),
}

impl<R> Reply<R> {
    pub(crate) fn fail(self, e: Error) {
        self.fail_after(Vec::new(), e);
    }

    /// `responses` are those of the proposal's first entries, applied as
    /// proposed: callers whose commands all came among them succeeded
    /// (entries applied with the proposal's term are the proposed ones)
    /// and get them; the others get `e`.
    fn fail_after(self, responses: Vec<R>, e: Error) {
        match self {
            Reply::Commands(callers) => {
                let mut left = responses.len();
                let mut responses = responses.into_iter();
                for (tx, n) in callers {
                    if n <= left {
                        left -= n;
                        drop(tx.send(Ok(responses.by_ref().take(n).collect())));
                    } else {
                        left = 0;
                        drop(tx.send(Err(e.duplicate())));
                    }
                }
            }
            Reply::Unit(tx) => drop(tx.send(Err(e))),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Reply::Commands(callers) => callers.iter().all(|(tx, _)| tx.is_closed()),
            Reply::Unit(tx) => tx.is_closed(),
        }
    }
}

/// Work for the apply task, in the core's order.
pub(crate) enum ApplyJob<A: Application> {
    Apply(EntryVec),
    TakeSnapshot(SnapshotMeta),
    Restore(SnapshotMeta),
    /// A proposal accepted at `first..=last` in `term`.
    Wait {
        term: Term,
        first: LogIndex,
        last: LogIndex,
        reply: Reply<A::Response>,
    },
    Read {
        index: LogIndex,
        f: ReadFn<A>,
    },
    Run(LocalFn<A>),
}

/// Responses of recently applied entries kept for waiters that register late
/// (a forwarded proposal's answer can arrive after its entries applied).
const RECENT_MAX: usize = 4096;
/// ... and at most this many bytes of them, by
/// [`Application::response_bytes`].
const RECENT_BYTES_MAX: usize = 64 << 20;
/// Jobs taken per wake-up before `Applied` is published.
const JOBS_PER_BATCH_MAX: usize = 256;

struct Waiter<R> {
    term: Term,
    next: LogIndex,
    last: LogIndex,
    responses: Vec<R>,
    reply: Reply<R>,
}

pub(crate) struct Applier<A: Application> {
    pub app: Option<A>,
    pub applied: LogIndex,
    pub jobs: mpsc::Receiver<ApplyJob<A>>,
    pub applied_tx: watch::Sender<LogIndex>,
    pub disk: mpsc::Sender<DiskJob>,
    /// Opens readers over the newest durable snapshot (for restores) off
    /// the disk thread.
    pub snapshots: xraft_storage::SnapshotSource,
    pub events: mpsc::UnboundedSender<Event>,
    pub node_id: u64,
    /// A local snapshot is being written (at most one at a time).
    pub snapshotting: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Publish `applied` after this batch even if unchanged (see `restore`).
    pub republish: bool,
}

struct State<R> {
    recent: VecDeque<(LogIndex, Term, Option<R>, usize)>,
    /// Bytes the responses in `recent` hold.
    recent_bytes: usize,
    /// Keyed by (first index, term): proposals of different terms may overlap.
    waiters: BTreeMap<(LogIndex, Term), Waiter<R>>,
    done: Vec<(LogIndex, Term)>,
}

impl<A: Application> Applier<A> {
    pub(crate) async fn run(mut self) {
        let mut st = State {
            recent: VecDeque::new(),
            recent_bytes: 0,
            waiters: BTreeMap::new(),
            done: Vec::new(),
        };
        let mut batch = Vec::with_capacity(JOBS_PER_BATCH_MAX);
        let mut rounds = 0u64;
        loop {
            batch.clear();
            if self.jobs.recv_many(&mut batch, JOBS_PER_BATCH_MAX).await == 0 {
                return;
            }
            for job in batch.drain(..) {
                if let Err(e) = self.job(job, &mut st).await {
                    error!(node = self.node_id, error = %e, "apply task failed; stopping the node");
                    let _ = self.events.send(Event::Fatal(e.to_string()));
                    return;
                }
            }
            if let Some(app) = self.app.as_mut() {
                app.after_apply();
            }
            let force = std::mem::take(&mut self.republish);
            self.applied_tx.send_if_modified(|a| {
                let changed = force || *a != self.applied;
                *a = self.applied;
                changed
            });
            rounds += 1;
            if rounds.is_multiple_of(1024) {
                // Callers that gave up (timed out) no longer wait.
                st.waiters.retain(|_, w| !w.reply.is_closed());
            }
        }
    }

    async fn job(&mut self, job: ApplyJob<A>, st: &mut State<A::Response>) -> Result<()> {
        let app = self.app.as_mut().expect("the state machine is only lent during a restore");
        match job {
            ApplyJob::Apply(entries) => {
                for e in entries {
                    if e.index <= self.applied {
                        continue;
                    }
                    let resp = match e.kind {
                        EntryKind::Normal => Some(app.apply_entry(e.index, &e.data)),
                        EntryKind::Noop | EntryKind::Config => None,
                    };
                    self.applied = e.index;
                    let bytes = resp.as_ref().map_or(0, A::response_bytes);
                    on_applied(st, e.index, e.term, resp, bytes);
                }
            }
            ApplyJob::Wait { term, first, last, reply } => {
                let mut w = Waiter { term, next: first, last, responses: Vec::new(), reply };
                if let Reply::Commands(_) = w.reply {
                    w.responses.reserve((last.0 + 1).saturating_sub(first.0) as usize);
                }
                // Entries already applied: answer from the recent responses.
                while w.next <= self.applied && w.next <= w.last {
                    let front = st.recent.front().map_or(LogIndex(u64::MAX), |r| r.0);
                    if w.next < front {
                        w.fail(ProposeError::Timeout.into());
                        return Ok(());
                    }
                    let (_, t, resp, _) = &st.recent[(w.next.0 - front.0) as usize];
                    if *t != w.term {
                        w.fail(ProposeError::LeadershipLost.into());
                        return Ok(());
                    }
                    if let (Reply::Commands(_), Some(r)) = (&w.reply, resp) {
                        w.responses.push(r.clone());
                    }
                    w.next = w.next.next();
                }
                if w.next > w.last {
                    finish(w);
                } else {
                    st.waiters.insert((first, term), w);
                }
            }
            ApplyJob::Read { index, f } => f(Ok((app, index))),
            ApplyJob::Run(f) => f(app),
            ApplyJob::TakeSnapshot(meta) => self.take_snapshot(meta),
            ApplyJob::Restore(meta) => self.restore(meta, st).await?,
        }
        Ok(())
    }

    /// Freezes the state now (O(1)) and streams it to a snapshot file on a
    /// blocking thread; the node hears `SnapshotTaken` when it is durable.
    fn take_snapshot(&mut self, meta: SnapshotMeta) {
        use std::sync::atomic::Ordering;
        let index = meta.index;
        // One local snapshot at a time: the core asks again when one takes
        // longer than its timeout, and each would freeze and write the
        // whole state. The new request fails at once (the core retries
        // after the timeout); the running one's late answer is still used.
        if self.snapshotting.swap(true, Ordering::AcqRel) {
            warn!(node = self.node_id, index = index.0, "a snapshot is still being written");
            let _ =
                self.events.send(Event::Input(xraft::Input::SnapshotTaken { index, ok: false }));
            return;
        }
        let app = self.app.as_ref().expect("not lent");
        debug_assert_eq!(meta.index, self.applied, "snapshot taken at the last applied index");
        let mut frozen = app.snapshot();
        let (disk, events, node) = (self.disk.clone(), self.events.clone(), self.node_id);
        let busy = std::sync::Arc::clone(&self.snapshotting);
        tokio::spawn(async move {
            let index = meta.index;
            let (tx, rx) = oneshot::channel();
            let ok = if disk.send(DiskJob::Writer { meta, reply: tx }).await.is_err() {
                false
            } else {
                match rx.await {
                    Ok(Ok(mut writer)) => {
                        let r = tokio::task::spawn_blocking(move || {
                            io::copy(&mut frozen, &mut writer)?;
                            writer.finish().map_err(io::Error::other)
                        })
                        .await;
                        match r {
                            Ok(Ok(_)) => {
                                info!(node, index = index.0, "snapshot taken");
                                true
                            }
                            Ok(Err(e)) => {
                                warn!(node, index = index.0, error = %e, "snapshot not written");
                                false
                            }
                            Err(e) => {
                                warn!(node, error = %e, "snapshot task failed");
                                false
                            }
                        }
                    }
                    Ok(Err(e)) => {
                        warn!(node, error = %e, "snapshot writer not created");
                        false
                    }
                    Err(_) => false,
                }
            };
            busy.store(false, std::sync::atomic::Ordering::Release);
            let _ = events.send(Event::Input(xraft::Input::SnapshotTaken { index, ok }));
        });
    }

    /// Replaces the state by the durable snapshot `meta`, on a blocking
    /// thread, before any later job runs.
    ///
    /// A newer snapshot may have been installed (and `meta`'s file deleted)
    /// while this job waited in the queue: the leader streamed a second one.
    /// The newer one is restored instead, since it is durable and the node
    /// has already accepted it; its own `Restore` job then finds the state
    /// past it and only publishes `applied` again (the node ignores an
    /// `Applied` beyond what it handed out, so the first publication may
    /// have been dropped).
    async fn restore(&mut self, meta: SnapshotMeta, st: &mut State<A::Response>) -> Result<()> {
        if meta.index <= self.applied {
            self.republish = true;
            return Ok(());
        }
        let source = self.snapshots.clone();
        let reader = tokio::task::spawn_blocking(move || source.reader())
            .await
            .map_err(|e| Error::Restore(e.to_string()))??;
        let Some(mut reader) = reader else {
            return Err(Error::Restore(format!("no durable snapshot to restore {meta:?}")));
        };
        let asked = meta;
        let meta = reader.meta().clone();
        if meta != asked {
            if meta.index <= asked.index {
                return Err(Error::Restore(format!(
                    "latest durable snapshot is {meta:?}, not {asked:?}"
                )));
            }
            info!(
                node = self.node_id,
                asked = asked.index.0,
                newer = meta.index.0,
                "a newer snapshot was installed meanwhile; restoring it instead"
            );
        }
        let mut app = self.app.take().expect("not lent");
        let (app, r) = tokio::task::spawn_blocking(move || {
            let r = app.restore(&mut reader).map_err(|e| e.to_string());
            (app, r)
        })
        .await
        .map_err(|e| Error::Restore(e.to_string()))?;
        self.app = Some(app);
        r.map_err(Error::Restore)?;
        info!(node = self.node_id, index = meta.index.0, "state restored from a snapshot");
        self.applied = self.applied.max(meta.index);
        st.recent.clear();
        st.recent_bytes = 0;
        // Proposals whose entries the snapshot covers: outcome unknown.
        let covered: Vec<_> =
            st.waiters.range(..(meta.index.next(), Term(0))).map(|(k, _)| *k).collect();
        for k in covered {
            if let Some(w) = st.waiters.remove(&k) {
                w.fail(ProposeError::LeadershipLost.into());
            }
        }
        Ok(())
    }
}

/// Records an applied entry and advances the waiters it concerns.
fn on_applied<R: Clone>(
    st: &mut State<R>,
    index: LogIndex,
    term: Term,
    resp: Option<R>,
    bytes: usize,
) {
    if !st.waiters.is_empty() {
        for (key, w) in st.waiters.range_mut(..(index.next(), Term(0))) {
            if w.next != index {
                if w.next < index {
                    // Skipped over (cannot happen without a restore): unknown.
                    st.done.push(*key);
                }
                continue;
            }
            if term != w.term {
                st.done.push(*key);
                continue;
            }
            if let (Reply::Commands(_), Some(r)) = (&w.reply, &resp) {
                w.responses.push(r.clone());
            }
            w.next = index.next();
            if w.next > w.last {
                st.done.push(*key);
            }
        }
        for key in st.done.drain(..) {
            let w = st.waiters.remove(&key).expect("listed above");
            if w.next > w.last {
                finish(w);
            } else {
                w.fail(ProposeError::LeadershipLost.into());
            }
        }
    }
    while st.recent.len() >= RECENT_MAX
        || (!st.recent.is_empty() && st.recent_bytes + bytes > RECENT_BYTES_MAX)
    {
        if let Some((_, _, _, b)) = st.recent.pop_front() {
            st.recent_bytes -= b;
        }
    }
    st.recent_bytes += bytes;
    st.recent.push_back((index, term, resp, bytes));
}

impl<R> Waiter<R> {
    /// The proposal's entries from `next` on will not be (or are not known
    /// to be) applied as proposed: callers whose commands all came before
    /// `next` get their responses, the others `e`.
    fn fail(self, e: Error) {
        self.reply.fail_after(self.responses, e);
    }
}

fn finish<R>(w: Waiter<R>) {
    match w.reply {
        Reply::Commands(callers) => {
            let mut responses = w.responses.into_iter();
            for (tx, n) in callers {
                drop(tx.send(Ok(responses.by_ref().take(n).collect())));
            }
        }
        Reply::Unit(tx) => drop(tx.send(Ok(()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State<u32> {
        State {
            recent: VecDeque::new(),
            recent_bytes: 0,
            waiters: BTreeMap::new(),
            done: Vec::new(),
        }
    }

    /// One proposal carrying two callers' commands, only the first
    /// caller's entries applied as proposed: that caller succeeds with its
    /// responses, the other learns the outcome is unknown.
    #[test]
    fn callers_whose_entries_applied_succeed_when_the_rest_of_their_batch_is_lost() {
        let mut st = state();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        let w = Waiter {
            term: Term(5),
            next: LogIndex(10),
            last: LogIndex(13),
            responses: Vec::new(),
            reply: Reply::Commands(vec![(tx1, 2), (tx2, 2)]),
        };
        st.waiters.insert((LogIndex(10), Term(5)), w);
        on_applied(&mut st, LogIndex(10), Term(5), Some(100), 0);
        on_applied(&mut st, LogIndex(11), Term(5), Some(101), 0);
        // A new leader's entry at 12: the second caller's commands are lost.
        on_applied(&mut st, LogIndex(12), Term(6), Some(999), 0);
        assert_eq!(rx1.try_recv().expect("answered").expect("succeeded"), vec![100, 101]);
        let e = rx2.try_recv().expect("answered").expect_err("lost");
        assert!(matches!(e, Error::Propose(ProposeError::LeadershipLost)), "{e:?}");
        assert!(st.waiters.is_empty());
    }

    #[test]
    fn recent_responses_are_bounded_by_count_and_bytes() {
        let mut st = state();
        for i in 1..=5_000u64 {
            on_applied(&mut st, LogIndex(i), Term(1), Some(7), 0);
        }
        assert_eq!(st.recent.len(), RECENT_MAX);
        assert_eq!(st.recent.front().map(|r| r.0), Some(LogIndex(5_000 - RECENT_MAX as u64 + 1)));

        // Large responses: the oldest go once the bytes would pass the bound.
        let big = 10 << 20;
        for i in 5_001..=5_020u64 {
            on_applied(&mut st, LogIndex(i), Term(1), Some(8), big);
            assert!(st.recent_bytes <= RECENT_BYTES_MAX, "{} bytes kept", st.recent_bytes);
        }
        assert_eq!(st.recent_bytes, RECENT_BYTES_MAX / big * big);
        assert_eq!(st.recent.back().map(|r| r.0), Some(LogIndex(5_020)));
        // One response over the bound alone is still kept (the newest).
        on_applied(&mut st, LogIndex(5_021), Term(1), Some(9), RECENT_BYTES_MAX + 1);
        assert_eq!(st.recent.len(), 1);
        assert_eq!(st.recent_bytes, RECENT_BYTES_MAX + 1);
    }

    /// Two snapshots installed before the apply task reached the first
    /// one's restore (the leader streamed a second): the newer one is
    /// restored, the node keeps running, and `applied` is published again
    /// for the second job (the node ignored it the first time).
    #[tokio::test]
    async fn a_restore_overtaken_by_a_newer_snapshot_restores_the_newer_one() {
        use xraft::{Membership, NodeId};
        use xraft_kv::counter::Counter;
        use xraft_storage::{Options, Storage};

        let dir = tempfile::tempdir().expect("tempdir");
        let (mut storage, _) = Storage::open(dir.path(), Options::new(NodeId(1), 1)).expect("open");
        let snap = |index: u64, total: i64| {
            let meta = SnapshotMeta {
                index: LogIndex(index),
                term: Term(1),
                membership: Membership::with_voters([NodeId(1)]),
            };
            let mut c = Counter::default();
            for i in 1..=index {
                c.apply(LogIndex(i), &(if i == index { total } else { 0i64 }).to_le_bytes());
            }
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut c.snapshot(), &mut bytes).expect("read");
            (meta, bytes)
        };
        let (m1, b1) = snap(10, 5);
        let (m2, b2) = snap(20, 7);
        for (m, b) in [(&m1, &b1), (&m2, &b2)] {
            let mut w = storage.snapshot_writer(m.clone()).expect("writer");
            w.write_chunk(0, b).expect("chunk");
            w.finish().expect("finish");
            storage.install_snapshot(m).expect("install");
        }

        let (jobs_tx, jobs) = mpsc::channel(8);
        let (applied_tx, mut applied_rx) = watch::channel(LogIndex::ZERO);
        let (disk, _disk_rx) = mpsc::channel(1);
        let (events, mut events_rx) = mpsc::unbounded_channel();
        let applier = Applier {
            app: Some(Counter::default()),
            applied: LogIndex::ZERO,
            jobs,
            applied_tx,
            disk,
            snapshots: storage.snapshot_source(),
            events,
            node_id: 1,
            snapshotting: Default::default(),
            republish: false,
        };
        let task = tokio::spawn(applier.run());
        // Bounded waits: a missing publication fails instead of hanging.
        let within = std::time::Duration::from_secs(10);
        jobs_tx.send(ApplyJob::Restore(m1)).await.expect("send");
        tokio::time::timeout(within, applied_rx.changed())
            .await
            .expect("in time")
            .expect("first publication");
        assert_eq!(*applied_rx.borrow_and_update(), LogIndex(20), "restored the newer one");
        jobs_tx.send(ApplyJob::Restore(m2)).await.expect("send");
        tokio::time::timeout(within, applied_rx.changed())
            .await
            .expect("in time")
            .expect("published again");
        assert_eq!(*applied_rx.borrow_and_update(), LogIndex(20));
        let (tx, rx) = oneshot::channel();
        let read: LocalFn<Counter> = Box::new(move |c: &mut Counter| {
            let _ = tx.send(c.total());
        });
        jobs_tx.send(ApplyJob::Run(read)).await.expect("send");
        assert_eq!(rx.await.expect("read"), 7, "the state is the newer snapshot's");
        drop(jobs_tx);
        task.await.expect("apply task");
        assert!(events_rx.try_recv().is_err(), "no fatal event");
    }
}
