//! Snapshots, membership, transfer, watchers and restarts on a real
//! three-node cluster (loopback sockets, temp dirs).
#![allow(clippy::unwrap_used, clippy::disallowed_methods, clippy::disallowed_types)]

mod common;

use bytes::Bytes;
use common::*;
use xraft_kv::WatchItem;
use xraft_tokio::KvServer;

/// Three nodes snapshotting every ~200 entries in 1 KiB chunks, with one
/// follower stopped and `writes` SETs (`k<i>` = `v<i>`) on the leader: far
/// more than the threshold, so the leader compacts past what the stopped
/// follower holds and only a snapshot can bring it back. Returns the
/// cluster, the leader and the stopped follower.
async fn follower_behind_a_snapshot(writes: u32) -> (Cluster, u64, u64) {
    let mut c = Cluster::start_with(3, |cfg| {
        cfg.snapshot_threshold = 200;
        cfg.snapshot_min_retention = 20;
        cfg.snapshot_chunk_bytes = 1024;
    })
    .await;
    let leader = c.leader().await;
    let follower = if leader == 1 { 2 } else { 1 };
    c.stop(follower).await;
    for i in 0..writes {
        c.node(leader).set(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    (c, leader, follower)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_follower_catches_up_by_snapshot() {
    let (mut c, leader, follower) = follower_behind_a_snapshot(1500).await;
    let l = c.node(leader);
    let lh = l.health().await.unwrap();
    let snap = wait_for("a snapshot on the leader", || async {
        let r = c.node(leader).handle().report().await.ok()?;
        (r.status.snapshot_index.0 > 0).then_some(r.status.snapshot_index.0)
    })
    .await;
    assert!(snap > 200, "leader snapshot at {snap}");
    c.restart(follower).await;
    c.applied_all(lh.commit_index).await;
    let f = c.node(follower);
    let m = f.metrics().await.unwrap();
    assert!(m.snapshots_installed >= 1, "follower installed no snapshot: {m:?}");
    for i in [0u32, 1, 777, 1499] {
        assert_eq!(f.get(format!("k{i}")).await.unwrap(), Some(Bytes::from(format!("v{i}"))));
    }
    // It keeps replicating normally afterwards.
    c.node(leader).set("after", "snapshot").await.unwrap();
    assert_eq!(f.get_linear("after").await.unwrap(), Some(Bytes::from("snapshot")));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_and_remove_a_node_and_transfer_leadership() {
    let c = Cluster::start(3).await;
    let leader = c.leader().await;
    c.node(leader).set("before", "join").await.unwrap();
    // Node 4 starts empty and is added through a follower (forwarded).
    let mut s4 = Slot::new(4, c.root.path());
    let n4 = s4.start(s4.config(&[])).await;
    let via = if leader == 1 { 2 } else { 1 };
    c.node(via).join(4, s4.peer.clone()).await.unwrap();
    assert_eq!(n4.get_linear("before").await.unwrap(), Some(Bytes::from("join")));
    let nodes = c.node(leader).cluster_nodes().await.unwrap();
    assert_eq!(nodes.len(), 4);
    assert!(nodes.iter().any(|n| n.id == 4 && n.voter));

    // Transfer leadership to node 4, then write through it.
    c.node(leader).transfer_leadership(4).await.unwrap();
    wait_for("node 4 to lead", || async {
        (n4.health().await.ok()?.role == "leader").then_some(())
    })
    .await;
    n4.set("led", "by4").await.unwrap();
    assert_eq!(c.node(via).get_linear("led").await.unwrap(), Some(Bytes::from("by4")));

    // Remove the old leader; the cluster goes on with three voters.
    n4.leave(leader).await.unwrap();
    let nodes = n4.cluster_nodes().await.unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(!nodes.iter().any(|n| n.id == leader));
    n4.set("after", "leave").await.unwrap();
    assert_eq!(c.node(via).get_linear("after").await.unwrap(), Some(Bytes::from("leave")));
    let mut n4 = n4;
    n4.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_fire_on_every_node_in_commit_order() {
    let c = Cluster::start(3).await;
    c.leader().await;
    let mut exact = Vec::new();
    let mut prefix = Vec::new();
    for n in c.running() {
        exact.push(n.watch("cfg.threshold").await.unwrap());
        prefix.push(n.watch("user.**").await.unwrap());
    }
    c.node(1).set("cfg.threshold", "0.5").await.unwrap();
    c.node(2).set("user.alice", "1").await.unwrap();
    c.node(3).set("other", "x").await.unwrap();
    c.node(1).delete("user.alice").await.unwrap();
    for w in &mut exact {
        let WatchItem::Event(e) = w.recv().await.unwrap() else { panic!("event expected") };
        assert_eq!((e.key, e.value), (Bytes::from("cfg.threshold"), Some(Bytes::from("0.5"))));
    }
    for w in &mut prefix {
        let WatchItem::Event(a) = w.recv().await.unwrap() else { panic!("event expected") };
        let WatchItem::Event(b) = w.recv().await.unwrap() else { panic!("event expected") };
        assert_eq!((a.key.clone(), a.value), (Bytes::from("user.alice"), Some(Bytes::from("1"))));
        assert_eq!((b.key, b.value), (Bytes::from("user.alice"), None));
        assert!(a.index < b.index);
    }
    c.shutdown().await;
}

/// A watcher that fell behind gets the events that overflowed its channel
/// once it reads it empty, though nothing more is written (they waited for
/// the next write before), and dropped watchers free their places: with
/// room for two, registering and dropping fifty works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_watcher_catches_up_while_idle_and_dropped_ones_are_unregistered() {
    let c = Cluster::start_with(1, |cfg| {
        cfg.limits.watch_channel_events_max = 4;
        cfg.kv.watch.watchers_max = 2;
    })
    .await;
    c.leader().await;
    let n = c.node(1);
    for _ in 0..50 {
        drop(n.watch("gone").await.unwrap());
    }
    let mut w = n.watch("burst.**").await.unwrap();
    let _other = n.watch("x").await.unwrap();
    for i in 0..20u32 {
        n.set(format!("burst.{i:02}"), "v").await.unwrap();
    }
    // The cluster is idle now; all 20 arrive, in order, within the deadline.
    for i in 0..20u32 {
        let item = tokio::time::timeout(DEADLINE, w.recv()).await.expect("event while idle");
        let Some(WatchItem::Event(e)) = item else { panic!("event expected, got {item:?}") };
        assert_eq!(e.key, Bytes::from(format!("burst.{i:02}")));
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart_keeps_every_acknowledged_write() {
    let mut c = Cluster::start(3).await;
    c.leader().await;
    for i in 0..300u32 {
        c.node(i as u64 % 3 + 1).set(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    for id in 1..=3 {
        c.stop(id).await;
    }
    for id in 1..=3 {
        c.restart(id).await;
    }
    c.leader().await;
    for n in c.running() {
        for i in [0u32, 150, 299] {
            assert_eq!(
                n.get_linear(format!("k{i}")).await.unwrap(),
                Some(Bytes::from(format!("v{i}")))
            );
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stay_linearizable_across_leader_changes() {
    let mut c = Cluster::start(3).await;
    for round in 0..3u32 {
        let leader = c.leader().await;
        let writer = if leader == 1 { 2 } else { 1 };
        c.node(writer).set("x", round.to_string()).await.unwrap();
        // Every running node, read linearizably, sees the last acknowledged write.
        for n in c.running() {
            assert_eq!(n.get_linear("x").await.unwrap(), Some(Bytes::from(round.to_string())));
        }
        c.stop(leader).await;
        c.leader().await;
        for n in c.running() {
            assert_eq!(n.get_linear("x").await.unwrap(), Some(Bytes::from(round.to_string())));
        }
        c.restart(leader).await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_node_without_members_waits_then_serves() {
    init_tracing();
    let root = tempfile::tempdir().unwrap();
    let mut s1 = Slot::new(1, root.path());
    let n1 = s1.start(s1.config(&[(1, s1.peer.clone())])).await;
    wait_for("node 1 to lead", || async {
        (n1.health().await.ok()?.role == "leader").then_some(())
    })
    .await;
    let mut s2 = Slot::new(2, root.path());
    let mut n2: KvServer = s2.start(s2.config(&[])).await;
    // Not a member yet: no leader known.
    assert_eq!(n2.health().await.unwrap().leader, None);
    n1.join(2, s2.peer.clone()).await.unwrap();
    n1.set("k", "v").await.unwrap();
    assert_eq!(n2.get_linear("k").await.unwrap(), Some(Bytes::from("v")));
    let mut n1 = n1;
    n2.shutdown().await;
    n1.shutdown().await;
}

/// Many concurrent writes whose sum passes the core's per-proposal byte
/// bound (`append_bytes_max`, 1 MiB) all succeed: the node task closes a
/// batch before it would pass the bound, and the client port splits a
/// pipelined group the same way. Before, 300 concurrent 16 KiB SETs met
/// in one wake-up (as many as the queue's cooperative budget lets one poll
/// send, about 128: 2 MiB) and every one of them failed `TooLarge`. One
/// thread, so that the requests are queued before the node task runs.
#[tokio::test(flavor = "current_thread")]
async fn concurrent_writes_larger_than_one_proposal_all_succeed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = Cluster::start(3).await;
    let leader = c.leader().await;
    let value = Bytes::from(vec![b'v'; 16 << 10]);
    let l = c.node(leader);
    let writes = (0..300u32).map(|i| l.set(format!("big{i}"), value.clone()));
    for r in futures_join_all(writes).await {
        r.unwrap();
    }
    // 300 such SETs pipelined on the client port of a follower.
    let follower = if leader == 1 { 2 } else { 1 };
    let mut s =
        tokio::net::TcpStream::connect(&c.slots[(follower - 1) as usize].client).await.unwrap();
    let mut req = Vec::new();
    for i in 0..300u32 {
        let key = format!("pipe{i}");
        req.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n", key.len(), value.len())
                .as_bytes(),
        );
        req.extend_from_slice(&value);
        req.extend_from_slice(b"\r\n");
    }
    s.write_all(&req).await.unwrap();
    let want = b"+OK\r\n".repeat(300);
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(DEADLINE, s.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&want));
    assert_eq!(l.get_linear("pipe299").await.unwrap(), Some(value.clone()));
    assert_eq!(l.get_linear("big299").await.unwrap(), Some(value));
    c.shutdown().await;
}

/// Runs futures concurrently on the current task and collects their outputs.
async fn futures_join_all<F: std::future::Future>(fs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in fs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.expect("every future finished")).collect()
}

/// A node whose storage fails stops by itself: `stopped()` returns the
/// failure and its ports close, so peers and clients see it down (and
/// `xraft serve` exits non-zero) instead of a process that answers every
/// request with an error forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_storage_fails_stops_and_closes_its_ports() {
    let c = Cluster::start_with(1, |cfg| {
        cfg.segment_bytes_max = 4096;
        cfg.preallocate_bytes = 0;
    })
    .await;
    c.leader().await;
    let n = c.node(1);
    // The data directory disappears: the next segment cannot be created.
    std::fs::remove_dir_all(&c.slots[0].dir).unwrap();
    let mut failed = false;
    for i in 0..1000u32 {
        if n.set(format!("k{i}"), "x".repeat(200)).await.is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "writes kept succeeding without a data directory");
    let why = tokio::time::timeout(DEADLINE, n.stopped()).await.expect("stopped in time");
    let why = why.expect("a failure is reported");
    assert!(why.contains("storage"), "{why}");
    let client = c.slots[0].client.clone();
    wait_for("the client port to close", || async {
        tokio::net::TcpStream::connect(&client).await.is_err().then_some(())
    })
    .await;
}

/// Snapshot files this process holds open although they were deleted
/// (replaced by a newer snapshot).
fn deleted_snapshots_held_open() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|p| {
                    let p = p.to_string_lossy();
                    p.contains(".snap") && p.ends_with("(deleted)")
                })
                .count()
        })
        .unwrap_or(0)
}

/// The leader keeps a reader over its snapshot while it sends it; once a
/// newer snapshot replaces that one, the reader is dropped, so the old
/// file's disk space is freed rather than held until the next transfer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_snapshot_is_not_held_open() {
    let (mut c, leader, follower) = follower_behind_a_snapshot(600).await;
    // The follower catches up by snapshot: the leader opens a reader.
    c.restart(follower).await;
    let lh = c.node(leader).health().await.unwrap();
    c.applied_all(lh.commit_index).await;
    let first = c.node(leader).handle().report().await.unwrap().status.snapshot_index;
    // More writes: the leader takes a newer snapshot, deleting the old file.
    let mut i = 600u32;
    wait_for("a newer snapshot on the leader", || {
        i += 50;
        let (n, upto) = (c.node(leader), i);
        async move {
            for k in upto - 50..upto {
                n.set(format!("k{k}"), "x").await.ok()?;
            }
            let now = n.handle().report().await.ok()?.status.snapshot_index;
            (now > first).then_some(())
        }
    })
    .await;
    wait_for("no deleted snapshot held open", || async {
        (deleted_snapshots_held_open() == 0).then_some(())
    })
    .await;
    c.shutdown().await;
}

/// A voter restarted under its id with a wiped data directory has lost its
/// vote and its log; its peers refuse it, both ways, instead of letting it
/// vote again or count in a quorum, also a peer restarted meanwhile. Removed and added back (the documented
/// way to replace a lost disk), the same id with a new directory is
/// accepted and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_back_with_a_wiped_directory_is_refused_until_removed_and_added_back() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    let victim = if leader == 3 { 2 } else { 3 };
    let other = 6 - leader - victim;
    c.node(leader).set("before", "wipe").await.unwrap();
    assert_eq!(c.node(victim).get_linear("before").await.unwrap(), Some(Bytes::from("wipe")));
    let refused = |r: xraft_tokio::Report| r.peer_disks_refused;
    assert_eq!(refused(c.node(leader).handle().report().await.unwrap()), 0);
    // Each node connects to every member, so each learns both others' disks.
    c.wait_disks_known(1..=3, 2).await;

    c.stop(victim).await;
    std::fs::remove_dir_all(&c.slots[(victim - 1) as usize].dir).unwrap();
    // The follower restarts while the victim is down: it can only know the
    // victim's disk from its saved record (`PEERS`).
    c.stop(other).await;
    c.restart(other).await;
    c.restart(victim).await;
    // Both other members refuse it: each connects to every member, so the
    // follower too knows the disk it had, though it never sent it a thing.
    for id in [leader, other] {
        wait_for("both other members to refuse the wiped node", || async {
            (refused(c.node(id).handle().report().await.ok()?) > 0).then_some(())
        })
        .await;
    }
    // The rest of the cluster goes on; the wiped node hears nothing of it.
    c.node(leader).set("during", "refusal").await.unwrap();
    let wiped = c.node(victim);
    assert_eq!(wiped.get("before").await.unwrap(), None);
    assert_ne!(wiped.health().await.unwrap().leader, Some(leader));

    // Remove it, start it empty without members, and add it back.
    c.stop(victim).await;
    c.replace_with_empty(leader, victim).await;
    let back = c.node(victim);
    assert_eq!(back.get_linear("before").await.unwrap(), Some(Bytes::from("wipe")));
    assert_eq!(back.get_linear("during").await.unwrap(), Some(Bytes::from("refusal")));
    c.shutdown().await;
}

/// `shutdown` returns only once every listening socket of the node (peer,
/// client, HTTP) is closed, so a restart can bind the same addresses at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_listening_socket() {
    let root = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let mut cfg = xraft_tokio::ServerConfig::new(1, "127.0.0.1:0", root.path().join("n1"));
        cfg.client_addr = Some("127.0.0.1:0".into());
        cfg.http_addr = Some("127.0.0.1:0".into());
        if round == 0 {
            cfg.initial_members = vec![(1, "127.0.0.1:0".into())];
        }
        let mut s = KvServer::start(cfg).await.unwrap();
        let addrs = [s.peer_addr(), s.client_addr().unwrap(), s.http_addr().unwrap()];
        s.shutdown().await;
        for a in addrs {
            let l = std::net::TcpListener::bind(a)
                .unwrap_or_else(|e| panic!("round {round}: {a} still bound after shutdown: {e}"));
            drop(l);
        }
    }
}

/// A member replaced the documented way (removed, added back with an empty
/// directory) while another member was down: that member, restarted, has
/// the old disk in its saved record and receives the removal and the
/// addition in one batch while catching up, so the membership in force
/// never changes for it; it forgets the old disk from the committed
/// removal and accepts the replacement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_replaced_while_a_peer_was_down_is_accepted_by_that_peer() {
    let mut c = Cluster::start(5).await;
    let leader = c.leader().await;
    let mut others = (1..=5).filter(|i| *i != leader);
    let (victim, down) = (others.next().unwrap(), others.next().unwrap());
    c.wait_disks_known(1..=5, 4).await;
    c.stop(down).await;
    c.stop(victim).await;
    c.replace_with_empty(leader, victim).await;
    c.node(leader).set("after", "replacement").await.unwrap();
    c.restart(down).await;
    // The replacement dials every member; `down` answers it once it has
    // forgotten the old disk, and the replacement records `down`'s disk.
    wait_for("the replacement to be accepted by the restarted peer", || async {
        (c.node(victim).handle().report().await.ok()?.peer_disks_known == 4).then_some(())
    })
    .await;
    assert_eq!(
        c.node(down).get_linear("after").await.unwrap(),
        Some(bytes::Bytes::from("replacement"))
    );
    c.shutdown().await;
}

/// A restarted node hands out again every committed entry after its
/// snapshot, old configurations among them; those must not make it forget
/// the saved disk of a member added later, or it would accept that member
/// back wiped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_forget_the_disk_of_a_member_added_later() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader().await;
    let mut s4 = Slot::new(4, c.root.path());
    let mut n4 = s4.start(s4.config(&[])).await;
    c.node(leader).join(4, s4.peer.clone()).await.unwrap();
    c.wait_disks_known(1..=3, 3).await;
    let other = if leader == 1 { 2 } else { 1 };
    c.stop(other).await;
    n4.shutdown().await;
    std::fs::remove_dir_all(&s4.dir).unwrap();
    let _wiped = s4.start(s4.config(&[])).await;
    c.restart(other).await;
    wait_for("the restarted node to refuse the wiped member", || async {
        (c.node(other).handle().report().await.ok()?.peer_disks_refused > 0).then_some(())
    })
    .await;
    // It keeps refusing: the replayed configurations did not clear it.
    c.node(leader).set("more", "writes").await.unwrap();
    assert_eq!(c.node(other).get_linear("more").await.unwrap(), Some(Bytes::from("writes")));
    assert_eq!(c.node(other).handle().report().await.unwrap().peer_disks_known, 3);
    c.shutdown().await;
}
