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
