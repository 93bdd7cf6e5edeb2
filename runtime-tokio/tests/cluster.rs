//! Three nodes on loopback with real files: election, replication, reads,
//! leader crash and re-election, restart keeping acknowledged data.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_node_commits_and_applies() {
    let c = Cluster::start(1).await;
    c.leader().await;
    let n = c.node(1);
    n.set("a", "1").await.unwrap();
    assert_eq!(n.get("a").await.unwrap(), Some(Bytes::from("1")));
    assert_eq!(n.get_linear("a").await.unwrap(), Some(Bytes::from("1")));
    assert!(n.delete("a").await.unwrap());
    assert_eq!(n.get_linear("a").await.unwrap(), None);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_and_survive_a_leader_crash() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    for i in 0..100 {
        // Writes through every node: followers forward to the leader.
        let via = c.node(i % 3 + 1);
        via.set(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    // Linearizable reads on every node see every acknowledged write.
    for n in c.running() {
        assert_eq!(n.get_linear("k99").await.unwrap(), Some(Bytes::from("v99")));
    }
    c.stop(leader).await;
    let next = c.leader().await;
    assert_ne!(next, leader);
    for n in c.running() {
        n.set("after", "crash").await.unwrap();
        assert_eq!(n.get_linear("k42").await.unwrap(), Some(Bytes::from("v42")));
        assert_eq!(n.get_linear("after").await.unwrap(), Some(Bytes::from("crash")));
    }
    // The old leader comes back and catches up.
    c.restart(leader).await;
    let h = c.node(next).health().await.unwrap();
    c.applied_all(h.commit_index).await;
    assert_eq!(c.node(leader).get("after").await.unwrap(), Some(Bytes::from("crash")));
    c.shutdown().await;
}
