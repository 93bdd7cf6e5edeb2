//! Smoke tests of the simulator itself: a quiet cluster elects a leader and
//! commits proposals; the same seed gives the same trace.

use xraft_sim::lab::cmd;
use xraft_sim::{Cluster, SeedOptions, SeedRun};

#[test]
fn elects_a_leader_and_commits_100_proposals() {
    for seed in 0..3 {
        let mut c = Cluster::new(3, seed);
        c.check_one_leader();
        for k in 0..100 {
            c.one(1000 + k, 3, false);
        }
        assert!(c.oracle().acked_count() >= 100);
        assert!(c.failure().is_none());
    }
}

#[test]
fn same_seed_same_trace_hash() {
    let opts = SeedOptions::default();
    for seed in [0u64, 1, 7, 42, 1234] {
        let mut a = SeedRun::new(seed, &opts);
        let ra = a.run();
        let mut b = SeedRun::new(seed, &opts);
        let rb = b.run();
        assert_eq!(ra, rb, "seed {seed}");
        assert_eq!(a.cluster.trace().hash(), b.cluster.trace().hash(), "seed {seed}");
        assert_eq!(a.cluster.trace().len(), b.cluster.trace().len());
        assert_eq!(a.cluster.stats(), b.cluster.stats());
    }
    let mut a = SeedRun::new(1, &opts);
    let _ = a.run();
    let mut b = SeedRun::new(2, &opts);
    let _ = b.run();
    assert_ne!(a.cluster.trace().hash(), b.cluster.trace().hash());
}

#[test]
fn single_node_cluster_commits() {
    let mut c = Cluster::new(1, 5);
    c.check_one_leader();
    let i = c.one(7, 1, false);
    assert_eq!(c.n_committed(i).1, Some(cmd(7)));
}
