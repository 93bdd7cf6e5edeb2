//! etcd-style scripted scenarios on the simulator (issue 3 item 9): conf
//! changes, PreVote/CheckQuorum under partial connectivity, leadership
//! transfer, ReadIndex on a new leader, and a slow follower after
//! compaction. Each runs over a few seeds with the ghost-oracle checkers on
//! (any safety violation panics) and asserts behaviour that could fail.
//! Positions are 0-based; node `i` is `NodeId(i + 1)`. Timeouts: 15..30
//! ticks of 10 ms (CheckQuorum every 15 ticks); heartbeats every 5 ticks.

use xraft::{MembershipChange, NodeId, ProposeError, Role, Term};
use xraft_sim::lab::cmd;
use xraft_sim::{Cluster, ClusterConfig, OpState, Outcome};

/// The longest election timeout, milliseconds.
const ELECTION_MS: u64 = 300;

fn seeds() -> std::ops::Range<u64> {
    0..if cfg!(debug_assertions) { 4 } else { 16 }
}

fn id(i: usize) -> NodeId {
    NodeId(i as u64 + 1)
}

/// A lab cluster (reliable links, PreVote and CheckQuorum on) of `n`
/// voters and `spares` empty slots.
fn cluster(n: usize, spares: usize, seed: u64) -> Cluster {
    let mut cfg = ClusterConfig::lab(n, seed);
    cfg.spares = spares;
    Cluster::with_config(cfg)
}

/// Runs in 1 ms steps until `pred` holds or `ms` pass; whether it held.
fn run_until(c: &mut Cluster, ms: u64, mut pred: impl FnMut(&Cluster) -> bool) -> bool {
    for _ in 0..ms {
        if pred(c) {
            return true;
        }
        c.run_for_ms(1);
    }
    pred(c)
}

fn role(c: &Cluster, i: usize) -> Role {
    c.node(i).expect("up").role()
}

fn term(c: &Cluster, i: usize) -> Term {
    c.node(i).expect("up").term()
}

fn rejected(c: &Cluster, request: u64) -> Option<ProposeError> {
    match c.outcome(request) {
        Some(Outcome::Rejected(e)) => Some(e.clone()),
        _ => None,
    }
}

/// Cuts (or restores) every link between `i` and the other nodes.
fn cut_all(c: &mut Cluster, i: usize, cut: bool) {
    for j in 0..c.len() {
        if j != i {
            c.net_mut().set_cut(i, j, cut);
            c.net_mut().set_cut(j, i, cut);
        }
    }
}

// ----- conf changes -----

/// etcd `confchange_v1_add_single`: a new voter joins and catches up on
/// everything committed before it joined.
#[test]
fn conf_add_a_node_and_it_catches_up() {
    for seed in seeds() {
        let mut c = cluster(3, 1, seed);
        c.check_one_leader();
        for k in 0..20 {
            c.one(k, 3, true);
        }
        let l = c.check_one_leader();
        let r =
            c.change_membership(l, MembershipChange::AddVoter { id: id(3), addr: String::new() });
        let r = r.expect("up");
        assert!(matches!(c.outcome(r), Some(Outcome::Proposed { .. })), "seed {seed}");
        let caught_up = run_until(&mut c, 2_000, |c| {
            c.committed_config().is_some_and(|m| m.voters.contains(&id(3)))
                && c.applied(3).len() >= 21
        });
        assert!(caught_up, "seed {seed}: n4 did not join and catch up");
        assert_eq!(c.applied(3)[..21], c.applied(l)[..21]);
        // It now counts: the other two followers alone cannot commit.
        let index = c.one(100, 4, true);
        assert!(c.applied(3).len() >= index as usize);
    }
}

/// etcd `confchange_v1_remove` (a follower): the rest commit without it,
/// and the removed node, left running, disturbs nobody.
#[test]
fn conf_remove_a_follower() {
    for seed in seeds() {
        let mut c = cluster(3, 0, seed);
        let l = c.check_one_leader();
        c.one(1, 3, true);
        let f = (l + 1) % 3;
        let r = c.change_membership(l, MembershipChange::Remove(id(f))).expect("up");
        assert!(matches!(c.outcome(r), Some(Outcome::Proposed { .. })), "seed {seed}");
        let done = run_until(&mut c, 1_000, |c| {
            c.committed_config().is_some_and(|m| !m.voters.contains(&id(f)))
        });
        assert!(done, "seed {seed}: the removal did not commit");
        let t = term(&c, l);
        // The removed node stops hearing from the leader; it must neither
        // depose it nor block commits (2 voters left, both needed).
        c.run_for_ms(3_000);
        assert_eq!(c.leader(), Some(l), "seed {seed}: leader changed");
        assert_eq!(term(&c, l), t, "seed {seed}: term moved");
        let index = c.one(2, 2, true) as usize;
        assert!(c.applied(f).len() < index, "seed {seed}: the removed node still gets entries");
    }
}

/// etcd `confchange_v1_remove_leader`: the leader keeps leading until the
/// change removing it commits, then steps down; the others elect a leader.
#[test]
fn conf_remove_the_leader() {
    for seed in seeds() {
        let mut c = cluster(3, 0, seed);
        let l = c.check_one_leader();
        c.one(1, 3, true);
        c.change_membership(l, MembershipChange::Remove(id(l))).expect("up");
        let removed =
            |c: &Cluster| c.committed_config().is_some_and(|m| !m.voters.contains(&id(l)));
        // It leads until the removal commits ...
        let stepped = run_until(&mut c, 1_000, |c| role(c, l) != Role::Leader);
        assert!(stepped, "seed {seed}: the removed leader never stepped down");
        assert!(removed(&c), "seed {seed}: stepped down before the removal committed");
        // ... and then the remaining two elect one of themselves.
        let elected =
            run_until(&mut c, 2 * ELECTION_MS + 200, |c| c.leader().is_some_and(|x| x != l));
        assert!(elected, "seed {seed}: no new leader");
        c.one(2, 2, true);
        assert_ne!(role(&c, l), Role::Leader);
    }
}

/// etcd `pending conf`: a second change while one is uncommitted is refused
/// with `ConfigInFlight`; once the first commits, it is accepted.
#[test]
fn conf_second_change_while_one_is_pending() {
    for seed in seeds() {
        let mut c = cluster(3, 2, seed);
        let l = c.check_one_leader();
        c.one(1, 3, true);
        // Hold the first change back: the followers hear nothing.
        let followers: Vec<usize> = (0..3).filter(|&i| i != l).collect();
        for &f in &followers {
            c.net_mut().set_cut(l, f, true);
        }
        let add = |i| MembershipChange::AddLearner { id: id(i), addr: String::new() };
        let r1 = c.change_membership(l, add(3)).expect("up");
        assert!(matches!(c.outcome(r1), Some(Outcome::Proposed { .. })), "seed {seed}");
        let r2 = c.change_membership(l, add(4)).expect("up");
        assert_eq!(rejected(&c, r2), Some(ProposeError::ConfigInFlight), "seed {seed}");
        for &f in &followers {
            c.net_mut().set_cut(l, f, false);
        }
        let committed = run_until(&mut c, 1_000, |c| {
            c.committed_config().is_some_and(|m| m.learners.contains(&id(3)))
        });
        assert!(committed, "seed {seed}: the first change did not commit");
        let l = c.check_one_leader();
        let r3 = c.change_membership(l, add(4)).expect("up");
        assert!(matches!(c.outcome(r3), Some(Outcome::Proposed { .. })), "seed {seed}");
    }
}

/// The single-server-change rule (raft-dev 2015): a new leader refuses a
/// change until an entry of its own term (its no-op) has committed.
#[test]
fn conf_new_leader_refuses_a_change_until_its_noop_commits() {
    for seed in seeds() {
        let mut c = cluster(3, 1, seed);
        let old = c.check_one_leader();
        c.one(1, 3, true);
        c.disconnect(old);
        let elected = run_until(&mut c, 3_000, |c| c.leader().is_some_and(|x| x != old));
        assert!(elected, "seed {seed}: no new leader");
        let n = c.leader().expect("elected");
        // Cut the new leader off at once: its no-op cannot commit.
        cut_all(&mut c, n, true);
        let node = c.node(n).expect("up");
        assert!(node.commit_index() < node.last_index(), "seed {seed}: no-op already committed");
        let add = MembershipChange::AddLearner { id: id(3), addr: String::new() };
        let r = c.change_membership(n, add.clone()).expect("up");
        assert_eq!(rejected(&c, r), Some(ProposeError::ConfigInFlight), "seed {seed}");
        // Reconnected (the old leader too), a leader whose no-op committed
        // accepts the change.
        cut_all(&mut c, n, false);
        c.connect(old);
        c.one(2, 3, true);
        let l = c.check_one_leader();
        let r = c.change_membership(l, add).expect("up");
        assert!(matches!(c.outcome(r), Some(Outcome::Proposed { .. })), "seed {seed}");
    }
}

// ----- PreVote / CheckQuorum with partial connectivity -----

/// etcd `prevote_checkquorum` / `TestDisruptiveFollower`: a node that can
/// reach only one other node (not the leader) times out, but its PreVote
/// fails (its one peer still hears the leader), so its term never rises
/// and the stable leader is never deposed.
#[test]
fn partial_a_node_reaching_one_peer_does_not_disrupt_the_leader() {
    for seed in seeds() {
        let mut c = cluster(5, 0, seed);
        let l = c.check_one_leader();
        c.one(1, 5, true);
        let x = (l + 1) % 5;
        let peer = (l + 2) % 5;
        for j in 0..5 {
            if j != x && j != peer {
                c.net_mut().set_cut(x, j, true);
                c.net_mut().set_cut(j, x, true);
            }
        }
        let t = term(&c, l);
        for k in 0..10 {
            c.run_for_ms(500);
            c.one(10 + k, 4, true);
        }
        assert_eq!(c.leader(), Some(l), "seed {seed}: the leader was deposed");
        for i in 0..5 {
            assert_eq!(term(&c, i), t, "seed {seed}: node {i} raised its term");
        }
        assert!(c.node(x).expect("up").metrics().pre_votes_started > 0, "x never tried");
    }
}

/// etcd `checkquorum` (TestLeaderStepdownWhenQuorumIsLost): a leader that
/// can reach only one follower (no majority of five) steps down within an
/// election timeout; the majority side elects a leader.
#[test]
fn partial_a_leader_losing_its_majority_steps_down() {
    for seed in seeds() {
        let mut c = cluster(5, 0, seed);
        let l = c.check_one_leader();
        c.one(1, 5, true);
        let buddy = (l + 1) % 5;
        for j in 0..5 {
            if j != l && j != buddy {
                c.net_mut().set_cut(l, j, true);
                c.net_mut().set_cut(j, l, true);
            }
        }
        let t0 = c.now_us();
        let stepped = run_until(&mut c, 2 * ELECTION_MS, |c| role(c, l) != Role::Leader);
        let took = (c.now_us() - t0) / 1000;
        assert!(stepped, "seed {seed}: the minority leader kept leading");
        // CheckQuorum runs every minimum timeout (150 ms): the first check
        // after the cut may still count pre-cut replies, the second not.
        assert!(took <= ELECTION_MS, "seed {seed}: stepped down after {took} ms");
        let elected =
            run_until(&mut c, 3_000, |c| c.leader().is_some_and(|x| x != l && x != buddy));
        assert!(elected, "seed {seed}: the majority elected nobody");
        c.one(2, 3, true);
    }
}

/// etcd `prevote`: a follower cut off for a long time rejoins; with PreVote
/// its term did not rise while away, so the majority keeps its term and
/// leader, and the node rejoins as a follower.
#[test]
fn partial_a_rejoining_node_does_not_raise_the_majority_term() {
    for seed in seeds() {
        let mut c = cluster(3, 0, seed);
        let l = c.check_one_leader();
        c.one(1, 3, true);
        let x = (l + 1) % 3;
        let t = term(&c, l);
        c.disconnect(x);
        for k in 0..5 {
            c.one(10 + k, 2, true);
            c.run_for_ms(600);
        }
        assert!(c.node(x).expect("up").metrics().pre_votes_started > 0, "x never tried");
        assert_eq!(term(&c, x), t, "seed {seed}: the isolated node raised its term");
        c.connect(x);
        c.one(20, 3, true);
        c.run_for_ms(1_000);
        assert_eq!(c.leader(), Some(l), "seed {seed}: the leader changed");
        for i in 0..3 {
            assert_eq!(term(&c, i), t, "seed {seed}: node {i} at another term");
        }
    }
}

// ----- partial connectivity that never heals (liveness asserted) -----

/// Every node's term.
fn terms(c: &Cluster) -> Vec<Term> {
    (0..c.len()).map(|i| term(c, i)).collect()
}

/// After a fault changed the leader: a command commits on at least
/// `servers` nodes, the cluster is given a second to settle, then
/// [`stays_live`].
fn settles_then_stays_live(c: &mut Cluster, seed: u64, servers: usize, rounds: u64) {
    c.one(2, servers, true);
    c.run_for_ms(1_000);
    stays_live(c, seed, servers, rounds);
}

/// For `rounds` half-seconds with the faults in place: a command commits
/// on at least `servers` nodes each round, one node leads throughout and
/// no term changes (no churn, no livelock).
fn stays_live(c: &mut Cluster, seed: u64, servers: usize, rounds: u64) {
    let (leader, before) = (c.leader(), terms(c));
    assert!(leader.is_some(), "seed {seed}: no leader to start from");
    for k in 0..rounds {
        c.one(100 + k, servers, true);
        c.run_for_ms(500);
        assert_eq!(c.leader(), leader, "seed {seed}: the leader changed in round {k}");
    }
    assert_eq!(terms(c), before, "seed {seed}: terms changed under a steady fault");
}

/// TigerBeetle/Jepsen asymmetric link: a follower that can send but never
/// receive hears no leader, so it keeps trying PreVote; the others, hearing
/// the leader, refuse it, so no term rises and the majority stays live.
#[test]
fn partial_a_send_only_follower_never_disrupts_the_majority() {
    for seed in seeds() {
        let mut c = cluster(5, 0, seed);
        let l = c.check_one_leader();
        c.one(1, 5, true);
        let x = (l + 1) % 5;
        for j in 0..5 {
            if j != x {
                c.net_mut().set_cut(j, x, true);
            }
        }
        stays_live(&mut c, seed, 4, 10);
        assert!(c.node(x).expect("up").metrics().pre_votes_started > 0, "x never tried");
    }
}

/// A leader that can receive but never send: the others stop hearing it
/// and elect a new leader, whose messages reach the old one and depose it;
/// then the cluster stays live with no more term changes.
#[test]
fn partial_a_receive_only_leader_is_replaced_once_and_for_all() {
    for seed in seeds() {
        let mut c = cluster(5, 0, seed);
        let l = c.check_one_leader();
        c.one(1, 5, true);
        for j in 0..5 {
            if j != l {
                c.net_mut().set_cut(l, j, true);
            }
        }
        let replaced = run_until(&mut c, 3_000, |c| {
            c.leader().is_some_and(|x| x != l) && role(c, l) != Role::Leader
        });
        assert!(replaced, "seed {seed}: the mute leader was not replaced");
        settles_then_stays_live(&mut c, seed, 4, 10);
    }
}

/// OmniPaxos "chained" topology on three nodes: A and C cannot reach each
/// other, B reaches both. Whoever leads once it settles keeps leading and
/// commits with B; the node that cannot hear the leader never raises its
/// term (its PreVote finds B inside the leader's lease).
#[test]
fn partial_a_chained_cluster_settles_and_stays_live() {
    for seed in seeds() {
        let mut c = cluster(3, 0, seed);
        let l = c.check_one_leader();
        c.one(1, 3, true);
        // Cut the leader from one follower (or, half the seeds, the two
        // followers from each other): the leader or the bridge is B.
        let (a, b) = if seed % 2 == 0 { (l, (l + 1) % 3) } else { ((l + 1) % 3, (l + 2) % 3) };
        c.net_mut().set_cut(a, b, true);
        c.net_mut().set_cut(b, a, true);
        let settled = run_until(&mut c, 3_000, |c| c.leader().is_some());
        assert!(settled, "seed {seed}: no leader after the cut");
        settles_then_stays_live(&mut c, seed, 2, 10);
    }
}

// ----- leadership transfer -----

/// etcd `TestLeaderTransferToUpToDateNode`: the target takes over within an
/// election timeout, in the next term, with the whole log.
#[test]
fn transfer_to_an_up_to_date_follower() {
    for seed in seeds() {
        let mut c = cluster(3, 0, seed);
        let l = c.check_one_leader();
        let index = c.one(1, 3, true) as usize;
        let target = (l + 1) % 3;
        let t = term(&c, l);
        let r = c.transfer_leadership(l, target).expect("up");
        // Completed once the old leader hears from the new one.
        let moved = run_until(&mut c, ELECTION_MS, |c| c.outcome(r).is_some());
        assert!(moved, "seed {seed}: the transfer did not end");
        assert_eq!(c.outcome(r), Some(&Outcome::Completed), "seed {seed}");
        assert_eq!(c.leader(), Some(target), "seed {seed}: the target did not take over");
        assert_eq!(term(&c, target), t.next(), "seed {seed}: more than one election");
        assert!(c.committed_payloads().len() >= index);
        c.one(2, 3, true);
    }
}

/// etcd `TestLeaderTransferToSlowFollower`: the leader first brings a
/// lagging target up to date, then hands over; nothing committed is lost.
#[test]
fn transfer_to_a_lagging_follower_catches_it_up_first() {
    for seed in seeds() {
        let mut c = cluster(3, 0, seed);
        let l = c.check_one_leader();
        c.one(1, 3, true);
        let target = (l + 1) % 3;
        c.net_mut().set_cut(l, target, true);
        let mut last = 0;
        for k in 0..30 {
            last = c.one(10 + k, 2, true);
        }
        let behind = c.node(target).expect("up").last_index().0;
        assert!(behind < last, "seed {seed}: the target is not behind");
        c.net_mut().set_cut(l, target, false);
        let r = c.transfer_leadership(l, target).expect("up");
        let moved = run_until(&mut c, 2 * ELECTION_MS, |c| c.outcome(r).is_some());
        assert!(moved, "seed {seed}: the transfer did not end");
        assert_eq!(c.outcome(r), Some(&Outcome::Completed), "seed {seed}");
        assert_eq!(c.leader(), Some(target), "seed {seed}: the lagging target did not take over");
        // It was elected with every committed entry (the vote rule alone
        // would refuse it otherwise): it commits on top of them.
        let index = c.one(99, 3, true);
        assert!(index > last, "seed {seed}");
        assert!(c.applied(target).len() >= index as usize);
    }
}

/// etcd `TestLeaderTransferTimeout`: a transfer to a partitioned target
/// aborts with `Timeout` after an election timeout; meanwhile the leader
/// refuses proposals (`Transferring`); afterwards it leads as before.
#[test]
fn transfer_to_a_partitioned_follower_times_out() {
    for seed in seeds() {
        let mut c = cluster(3, 0, seed);
        let l = c.check_one_leader();
        c.one(1, 3, true);
        let target = (l + 1) % 3;
        c.disconnect(target);
        let t = term(&c, l);
        let t0 = c.now_us();
        let r = c.transfer_leadership(l, target).expect("up");
        c.run_for_ms(20);
        let p = c.propose(l, cmd(2));
        assert!(
            matches!(p, Err(Some(ProposeError::Transferring { .. }))),
            "seed {seed}: a proposal during the transfer: {p:?}"
        );
        let answered = run_until(&mut c, 2 * ELECTION_MS, |c| c.outcome(r).is_some());
        let took = (c.now_us() - t0) / 1000;
        assert!(answered, "seed {seed}: the transfer never ended");
        assert_eq!(rejected(&c, r), Some(ProposeError::Timeout), "seed {seed}");
        assert!(took <= ELECTION_MS + 20, "seed {seed}: aborted after {took} ms");
        assert_eq!(c.leader(), Some(l), "seed {seed}");
        assert_eq!(term(&c, l), t, "seed {seed}");
        assert!(c.propose(l, cmd(3)).is_ok(), "seed {seed}: proposals still refused");
        c.one(4, 2, true);
    }
}

// ----- ReadIndex on a new leader -----

/// etcd `TestReadOnlyForNewLeader` (and Redis-Raft #18): a read on a freshly
/// elected leader waits until its no-op commits, then sees every write
/// committed under the previous leader.
#[test]
fn read_index_on_a_new_leader_waits_for_its_noop() {
    for seed in seeds() {
        let mut c = cluster(3, 0, seed);
        let old = c.check_one_leader();
        c.one(1, 3, true);
        let mut last_write = 0;
        for v in 1..=5 {
            let op = c.client_write(old, &[(7, v)])[0];
            let ok = run_until(&mut c, 1_000, |c| c.ops()[op].ret.is_some());
            assert!(ok, "seed {seed}: write {v} not acknowledged");
            last_write = v;
        }
        c.disconnect(old);
        let elected = run_until(&mut c, 3_000, |c| c.leader().is_some_and(|x| x != old));
        assert!(elected, "seed {seed}: no new leader");
        let n = c.leader().expect("elected");
        // The no-op cannot commit while the new leader is cut off.
        cut_all(&mut c, n, true);
        let noop = c.node(n).expect("up").last_index();
        assert!(c.node(n).expect("up").commit_index() < noop, "seed {seed}");
        let op = c.client_read(n, 7);
        // Shorter than CheckQuorum's first check (150 ms), which would
        // depose it (and fail the read) instead.
        c.run_for_ms(100);
        assert_eq!(role(&c, n), Role::Leader, "seed {seed}");
        assert_eq!(c.ops()[op].state, OpState::Pending, "seed {seed}: read answered early");
        cut_all(&mut c, n, false);
        let served = run_until(&mut c, 1_000, |c| c.ops()[op].ret.is_some());
        assert!(served, "seed {seed}: read never served");
        let o = c.ops()[op];
        assert_eq!(o.read, Some(Some(last_write)), "seed {seed}: stale read");
        assert!(o.index.is_some_and(|ix| ix >= noop), "seed {seed}: served below the no-op");
        assert!(c.node(n).expect("up").commit_index() >= noop);
    }
}

// ----- slow follower after compaction -----

/// etcd `slow_follower_after_compaction`: a follower down while the leader
/// compacts past its log catches up through a snapshot, then by appends.
#[test]
fn slow_follower_after_compaction_gets_a_snapshot() {
    for seed in seeds() {
        let mut cfg = ClusterConfig::lab(3, seed);
        cfg.core = cfg.core.with_snapshots(10, 0, 16);
        let mut c = Cluster::with_config(cfg);
        let l = c.check_one_leader();
        c.one(1, 3, true);
        let f = (l + 1) % 3;
        c.crash1(f);
        for k in 0..40 {
            c.one(10 + k, 2, true);
        }
        let l = c.check_one_leader();
        let st = c.node(l).expect("up").status();
        let log_start = st.last_index.0 - st.log_entries as u64;
        assert!(log_start > c.disk(f).last_index().0, "seed {seed}: the leader kept f's entries");
        let restores = c.stats().restores;
        c.start1(f);
        c.connect(f);
        let index = c.one(100, 3, true);
        assert!(c.stats().restores > restores, "seed {seed}: f caught up without a snapshot");
        assert!(c.node(f).expect("up").status().snapshot_index.0 >= log_start);
        assert_eq!(c.applied(f)[..index as usize], c.committed_payloads()[..index as usize]);
    }
}
