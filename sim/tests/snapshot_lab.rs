//! The classic Raft lab's snapshot tests (6.5840 part 3D) on the simulator,
//! with tiny compaction thresholds and chunk sizes so every test compacts
//! and ships snapshots in many chunks. The ghost-oracle checkers (including
//! the snapshot state checks against the committed history) run throughout.

use xraft_sim::lab::cmd;
use xraft_sim::{Cluster, ClusterConfig, LinkModel};

fn seeds() -> std::ops::Range<u64> {
    0..if cfg!(debug_assertions) { 3 } else { 20 }
}

fn cluster(seed: u64, unreliable: bool) -> Cluster {
    let mut cfg = ClusterConfig::lab(3, seed);
    cfg.core = cfg.core.with_snapshots(10, 1, 16);
    if unreliable {
        cfg.link = LinkModel::UNRELIABLE;
    }
    Cluster::with_config(cfg)
}

/// TestSnapshotBasic3D: rounds of commands; logs stay bounded.
#[test]
fn snapshot_basic_3d() {
    for seed in seeds() {
        let mut c = cluster(seed, false);
        c.check_one_leader();
        for k in 0..150 {
            c.one(k, 3, true);
        }
        for i in 0..3 {
            let st = c.node(i).expect("up").status();
            assert!(st.log_entries <= 40, "node {i} keeps {} entries", st.log_entries);
            assert!(st.snapshot_index.0 > 100, "node {i} compacted");
        }
    }
}

/// Where node `i`'s log starts: the last index it compacted away (running
/// nodes: memory; crashed ones: disk).
fn log_start(c: &Cluster, i: usize) -> u64 {
    match c.node(i) {
        Some(n) => {
            let st = n.status();
            st.last_index.0 - st.log_entries as u64
        }
        None => c.disk(i).snapshot_index().0,
    }
}

/// Node `i`'s last log index, running or crashed.
fn last_index(c: &Cluster, i: usize) -> u64 {
    c.node(i).map_or_else(|| c.disk(i).last_index().0, |n| n.last_index().0)
}

/// TestSnapshotInstall3D / ...Unreliable3D / ...Crash3D / ...UnCrash3D: a
/// victim (leader or follower, alternating) misses enough to need a
/// snapshot, by disconnect or crash, and must catch up through one.
///
/// The lab's application snapshots every 10 entries on its own, so `nn`
/// (5..14) missed entries usually put the victim behind the leader's log.
/// Here the core decides (dynamic threshold: snapshot when the log holds
/// more than the threshold, next threshold = max(initial, 1.5 × entries
/// kept)); a burst of `Start`s lands while a snapshot is being taken, so
/// the unapplied burst is kept and raises the threshold to ~1.5 × the
/// burst. So after the lab's burst the test keeps agreeing (as `one` does)
/// until the leader has compacted past the victim's last entry, and then
/// checks that the victim caught up by installing a snapshot.
fn snap_common(disconnect: bool, reliable: bool, crash: bool) {
    for seed in seeds() {
        let mut c = cluster(seed, !reliable);
        c.one(1000, 3, true);
        let mut leader1 = c.check_one_leader();
        for i in 0..12u64 {
            let victim = if i % 3 == 1 { leader1 } else { (leader1 + 1) % 3 };
            let sender = if victim == leader1 { (leader1 + 1) % 3 } else { leader1 };
            if disconnect {
                c.disconnect(victim);
                c.one(2000 + i, 2, true);
            }
            if crash {
                c.crash1(victim);
                c.one(3000 + i, 2, true);
            }
            // The lab's burst: nn = 5 + rand(10) commands at once.
            let nn = 5 + (seed * 7 + i * 3) % 10;
            for k in 0..nn {
                let _ = c.start(sender, cmd(10_000 + 100 * i + k));
            }
            c.one(4000 + i, 2, true);
            let mut extra = 0;
            loop {
                let l = c.check_one_leader();
                if log_start(&c, l) > last_index(&c, victim) {
                    break;
                }
                assert!(extra < 100, "seed {seed} round {i}: the leader never compacted");
                c.one(7000 + 100 * i + extra, 2, true);
                extra += 1;
            }
            let restores = c.stats().restores;
            if disconnect {
                c.connect(victim);
                c.one(5000 + i, 3, true);
                leader1 = c.check_one_leader();
            }
            if crash {
                c.start1(victim);
                c.connect(victim);
                c.one(6000 + i, 3, true);
                leader1 = c.check_one_leader();
            }
            assert!(
                c.stats().restores > restores,
                "seed {seed} round {i}: victim {victim} caught up without a snapshot"
            );
            for n in 0..3 {
                let entries = c.node(n).expect("up").status().log_entries;
                assert!(entries <= 60, "seed {seed}: node {n} keeps {entries} entries");
            }
        }
    }
}

#[test]
fn snapshot_install_3d() {
    snap_common(true, true, false);
}

#[test]
fn snapshot_install_unreliable_3d() {
    snap_common(true, false, false);
}

#[test]
fn snapshot_install_crash_3d() {
    snap_common(false, true, true);
}

#[test]
fn snapshot_install_uncrash_3d() {
    snap_common(false, false, true);
}

/// TestSnapshotAllCrash3D: crash every server after snapshots; the commit
/// index must not fall back after the restart.
#[test]
fn snapshot_all_crash_3d() {
    for seed in seeds() {
        let mut c = cluster(seed, false);
        c.one(1, 3, true);
        for round in 0..5u64 {
            for k in 0..15 {
                c.one(100 * round + k + 10, 3, true);
            }
            let index1 = c.one(100 * round + 99, 3, true);
            for i in 0..3 {
                c.crash1(i);
            }
            for i in 0..3 {
                c.start1(i);
                c.connect(i);
            }
            let index2 = c.one(100 * round + 50_000, 3, true);
            assert!(index2 > index1, "index decreased from {index1} to {index2}");
        }
    }
}

/// TestSnapshotInit3D: a snapshot must survive later persists and two total
/// crashes; nothing the snapshot covers is re-applied (the oracle checks
/// apply order and restored state).
#[test]
fn snapshot_init_3d() {
    for seed in seeds() {
        let mut c = cluster(seed, false);
        c.one(1, 3, true);
        for k in 0..25 {
            c.one(10 + k, 3, true);
        }
        for _ in 0..2 {
            for i in 0..3 {
                c.crash1(i);
            }
            for i in 0..3 {
                c.start1(i);
                c.connect(i);
            }
            c.one(7_777, 3, true);
        }
        for i in 0..3 {
            assert!(c.disk(i).snapshot_index().0 > 0, "node {i} lost its snapshot");
        }
    }
}
