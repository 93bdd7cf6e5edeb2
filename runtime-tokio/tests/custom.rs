//! The generic handle with a state machine other than the KV store: the
//! counter of `xraft_kv` on a real three-node cluster (loopback sockets,
//! temp dirs): proposals on the leader, forwarded proposals and
//! linearizable reads on a follower, a local read, and a ReadIndex.
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use bytes::Bytes;
use common::*;
use xraft::Role;
use xraft_kv::counter::Counter;
use xraft_tokio::{RaftNode, ServerConfig};

fn delta(d: i64) -> Bytes {
    Bytes::copy_from_slice(&d.to_le_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_state_machine_runs_on_the_generic_handle() {
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let listeners: Vec<_> = (0..3).map(|_| listener()).collect();
    let members: Vec<(u64, String)> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
        .collect();
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let mut c = ServerConfig::new(id, members[i].1.clone(), root.path().join(format!("n{id}")));
        c.initial_members = members.clone();
        nodes.push(RaftNode::start(c, Counter::default(), Some(l)).await.unwrap());
    }
    let leader = wait_for("a leader", || async {
        for (i, n) in nodes.iter().enumerate() {
            let r = n.handle().report().await.ok()?;
            if r.status.role == Role::Leader {
                return Some(i);
            }
        }
        None
    })
    .await;
    let follower = (leader + 1) % 3;
    let l = nodes[leader].handle();
    assert_eq!(l.propose(delta(5)).await.unwrap(), Some(5));
    assert_eq!(l.propose(delta(-2)).await.unwrap(), Some(3));
    // A follower refuses a plain proposal, forwards one that asks for it.
    let f = nodes[follower].handle();
    assert!(f.propose(delta(1)).await.is_err(), "a follower does not lead");
    assert_eq!(f.propose_with_forward(delta(10)).await.unwrap(), Some(13));
    let responses = l.propose_batch([delta(1), delta(1)].into_iter().collect(), false).await;
    assert_eq!(responses.unwrap(), vec![Some(14), Some(15)]);
    // Reads on the follower see every acknowledged write.
    assert_eq!(f.read_linear(|c: &mut Counter, _| c.total()).await.unwrap(), 15);
    let index = f.read_index().await.unwrap();
    assert!(index.0 >= 5, "read index {index:?}");
    assert_eq!(f.read_local(|c: &mut Counter| c.total()).await.unwrap(), 15);
    for mut n in nodes {
        n.shutdown().await;
    }
}

/// A counter whose snapshots take 300 ms to read out, counting how many are
/// being read at once.
struct SlowCounter {
    inner: Counter,
    live: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    most: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

struct SlowSnapshot {
    inner: std::io::Cursor<Vec<u8>>,
    slept: bool,
    live: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl std::io::Read for SlowSnapshot {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.slept {
            self.slept = true;
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        self.inner.read(buf)
    }
}

impl Drop for SlowSnapshot {
    fn drop(&mut self) {
        self.live.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl xraft::StateMachine for SlowCounter {
    type Response = Option<i64>;
    type Snapshot = SlowSnapshot;
    type Error = <Counter as xraft::StateMachine>::Error;

    fn apply(&mut self, index: xraft::LogIndex, command: &[u8]) -> Option<i64> {
        self.inner.apply(index, command)
    }

    fn snapshot(&self) -> SlowSnapshot {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.live.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        SlowSnapshot { inner: self.inner.snapshot(), slept: false, live: self.live.clone() }
    }

    fn restore(&mut self, input: &mut dyn std::io::Read) -> Result<(), Self::Error> {
        self.inner.restore(input)
    }
}

impl xraft_tokio::Application for SlowCounter {}

/// Snapshots slower than the core's timeout: the core asks again while one
/// is being written; the runtime writes one at a time (the extra requests
/// fail at once) and the slow one's late answer still compacts the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_slower_than_the_timeout_are_written_one_at_a_time() {
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let l = listener();
    let addr = l.local_addr().unwrap().to_string();
    let mut c = ServerConfig::new(1, addr.clone(), root.path().join("n1"));
    c.initial_members = vec![(1, addr)];
    c.snapshot_threshold = 20;
    c.snapshot_min_retention = 5;
    c.snapshot_rpc_timeout_ms = 50;
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app =
        SlowCounter { inner: Counter::default(), live: Default::default(), most: most.clone() };
    let mut node = RaftNode::start(c, app, Some(l)).await.unwrap();
    let h = node.handle().clone();
    wait_for("leadership", || async {
        (h.report().await.ok()?.status.role == Role::Leader).then_some(())
    })
    .await;
    for _ in 0..40 {
        for _ in 0..10 {
            h.propose(delta(1)).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    wait_for("a snapshot used", || async {
        (h.report().await.ok()?.status.snapshot_index.0 > 0).then_some(())
    })
    .await;
    assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1, "snapshots at once");
    node.shutdown().await;
}
