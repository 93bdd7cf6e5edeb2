//! Scenario tests of the core's cluster features (membership, learners,
//! ReadIndex, transfer, forwarding, snapshots) on a small deterministic
//! in-memory network. The simulator (`xraft-sim`) covers the same features
//! under faults; these pin down each behaviour on its own.

use bytes::Bytes;
use xraft::{
    Config, Input, LogIndex, MembershipChange, NodeId, Output, ProposeError, RequestId, Role,
};

mod common;

use common::*;

fn change(net: &mut Net, at: usize, c: MembershipChange) -> RequestId {
    let request = net.request();
    net.input(at, Input::ChangeMembership { request, change: c });
    request
}

fn add_voter(id: u64) -> MembershipChange {
    MembershipChange::AddVoter { id: NodeId(id), addr: format!("n{id}") }
}

#[test]
fn a_new_voter_catches_up_and_a_second_change_waits() {
    let mut net = Net::new(3, 1, &|_| {});
    let l = net.elect();
    for _ in 0..10 {
        net.propose(l, b"x");
    }
    net.tick(1);
    // Hold the followers off so the change cannot commit yet.
    net.isolated.extend((0..3).filter(|&i| i != l));
    let r1 = change(&mut net, l, add_voter(4));
    assert!(matches!(net.outcome(r1), Some(Output::Proposed { .. })));
    // Proposed but not yet committed: a second change is refused.
    let r2 = change(&mut net, l, MembershipChange::Remove(NodeId(3)));
    assert!(
        matches!(
            net.outcome(r2),
            Some(Output::Rejected { error: ProposeError::ConfigInFlight, .. })
        ),
        "got {:?}",
        net.outcome(r2)
    );
    net.isolated.clear();
    net.tick(20);
    assert_eq!(net.node(3).status().membership.voters.len(), 4);
    assert_eq!(net.slots[3].app, net.slots[l].app, "the new node applied the same commands");
    assert_eq!(net.node(l).metrics().config_changes_committed, 1);
}

#[test]
fn a_learner_never_votes_and_is_promoted() {
    let mut net = Net::new(3, 1, &|_| {});
    let l = net.elect();
    let r = change(&mut net, l, MembershipChange::AddLearner { id: NodeId(4), addr: "n4".into() });
    assert!(matches!(net.outcome(r), Some(Output::Proposed { .. })));
    net.tick(20);
    let m = net.node(l).status().membership;
    assert!(m.learners.contains(&NodeId(4)) && !m.voters.contains(&NodeId(4)));
    // The learner never campaigns, however long it waits alone.
    net.isolated.insert(3);
    net.tick(200);
    assert_eq!(net.node(3).role(), Role::Follower);
    assert_eq!(
        net.node(3).metrics().pre_votes_started + net.node(3).metrics().elections_started,
        0
    );
    net.isolated.clear();
    net.tick(20);
    let l = net.elect();
    let r = change(&mut net, l, MembershipChange::Promote(NodeId(4)));
    assert!(matches!(net.outcome(r), Some(Output::Proposed { .. })), "{:?}", net.outcome(r));
    net.tick(20);
    assert!(net.node(3).status().membership.voters.contains(&NodeId(4)));
    assert_eq!(net.node(l).metrics().learners_promoted, 1);
}

#[test]
fn a_lagging_learner_is_not_promoted() {
    let mut net = Net::new(3, 1, &|c| c.promote_lag_entries_max = 5);
    let l = net.elect();
    change(&mut net, l, MembershipChange::AddLearner { id: NodeId(4), addr: "n4".into() });
    net.tick(10);
    net.isolated.insert(3);
    for _ in 0..20 {
        net.propose(l, b"y");
    }
    net.tick(2);
    let r = change(&mut net, l, MembershipChange::Promote(NodeId(4)));
    assert!(matches!(
        net.outcome(r),
        Some(Output::Rejected { error: ProposeError::InvalidChange(_), .. })
    ));
    // Adding it as a voter is a promotion too, with the same check.
    let r = change(&mut net, l, add_voter(4));
    assert!(matches!(
        net.outcome(r),
        Some(Output::Rejected { error: ProposeError::InvalidChange(_), .. })
    ));
}

#[test]
fn a_removed_leader_steps_down_after_the_change_commits() {
    let mut net = Net::new(3, 0, &|_| {});
    let l = net.elect();
    let leader_id = NodeId(l as u64 + 1);
    let r = change(&mut net, l, MembershipChange::Remove(leader_id));
    assert!(matches!(net.outcome(r), Some(Output::Proposed { .. })));
    net.tick(5);
    assert_ne!(net.node(l).role(), Role::Leader, "removed leader stepped down");
    net.tick(100);
    let l2 = net.elect();
    assert_ne!(l2, l);
    assert_eq!(net.node(l2).status().membership.voters.len(), 2);
}

#[test]
fn read_index_on_leader_and_follower_sees_earlier_writes() {
    let mut net = Net::new(3, 0, &|_| {});
    let l = net.elect();
    net.propose(l, b"a");
    net.tick(2);
    let f = (l + 1) % 3;
    for at in [l, f] {
        let request = net.request();
        net.input(at, Input::ReadIndex { request });
        net.tick(1);
        match net.outcome(request) {
            Some(Output::ReadReady { index, .. }) => {
                assert!(*index >= LogIndex(3), "read index covers the write");
                assert!(net.slots[at].app.applied.contains(&Bytes::from_static(b"a")));
            }
            other => panic!("node {at}: {other:?}"),
        }
    }
    assert!(net.node(f).metrics().forwarded >= 1);
}

#[test]
fn a_partitioned_leader_cannot_serve_reads() {
    let mut net = Net::new(3, 0, &|_| {});
    let l = net.elect();
    net.isolated.insert(l);
    let request = net.request();
    net.input(l, Input::ReadIndex { request });
    net.tick(40);
    assert!(
        !matches!(net.outcome(request), Some(Output::ReadReady { .. })),
        "a leader cut off from the majority must not confirm a read"
    );
    assert!(matches!(
        net.outcome(request),
        Some(Output::Rejected { error: ProposeError::LeadershipLost, .. })
    ));
}

#[test]
fn transfer_hands_over_and_refuses_proposals_meanwhile() {
    let mut net = Net::new(3, 0, &|_| {});
    let l = net.elect();
    let target = (l + 1) % 3;
    // Cut the target off so the transfer cannot finish at once.
    net.isolated.insert(target);
    let t = net.request();
    net.input(l, Input::TransferLeadership { request: t, target: NodeId(target as u64 + 1) });
    let p = net.propose(l, b"z");
    assert!(matches!(
        net.outcome(p),
        Some(Output::Rejected { error: ProposeError::Transferring { .. }, .. })
    ));
    net.tick(40);
    assert!(matches!(net.outcome(t), Some(Output::Rejected { error: ProposeError::Timeout, .. })));
    assert_eq!(net.leader(), Some(l), "an aborted transfer leaves the leader in place");
    net.isolated.clear();
    net.tick(5);
    let t2 = net.request();
    net.input(l, Input::TransferLeadership { request: t2, target: NodeId(target as u64 + 1) });
    net.tick(5);
    assert!(matches!(net.outcome(t2), Some(Output::Completed { .. })), "{:?}", net.outcome(t2));
    assert_eq!(net.leader(), Some(target));
}

#[test]
fn a_follower_forwards_proposals_and_fails_them_without_a_leader() {
    let mut net = Net::new(3, 0, &|_| {});
    let l = net.elect();
    let f = (l + 1) % 3;
    let r = net.propose(f, b"fwd");
    assert!(matches!(net.outcome(r), Some(Output::Proposed { .. })), "{:?}", net.outcome(r));
    net.tick(2);
    assert!(net.slots[l].app.applied.contains(&Bytes::from_static(b"fwd")));
    // Leader and the other follower gone: no leader for the survivor.
    net.crash(l);
    net.crash((f + 1) % 3);
    net.tick(40);
    let r = net.propose(f, b"lost");
    net.tick(310);
    assert!(
        matches!(net.outcome(r), Some(Output::Rejected { error: ProposeError::NoLeader, .. })),
        "{:?}",
        net.outcome(r)
    );
}

/// A proposal no leader would take (over `append_bytes_max`) is refused
/// by the follower itself instead of travelling: forwarded, it could pass
/// the peer frame bound and cost the connection its batch.
#[test]
fn a_follower_refuses_a_proposal_too_large_for_any_leader_without_forwarding() {
    let mut net = Net::new(3, 0, &|c: &mut Config| c.append_bytes_max = 1024);
    let l = net.elect();
    let f = (l + 1) % 3;
    let before = net.node(f).metrics().forwarded;
    let r = net.propose(f, &[7u8; 2000]);
    assert!(
        matches!(net.outcome(r), Some(Output::Rejected { error: ProposeError::TooLarge(_), .. })),
        "{:?}",
        net.outcome(r)
    );
    assert_eq!(net.node(f).metrics().forwarded, before, "not forwarded");
    // One that fits still goes to the leader.
    let r = net.propose(f, &[7u8; 500]);
    assert!(matches!(net.outcome(r), Some(Output::Proposed { .. })), "{:?}", net.outcome(r));
}

#[test]
fn a_slow_follower_catches_up_by_snapshot_in_chunks() {
    let tweak = |c: &mut Config| {
        c.snapshot_threshold_entries = 20;
        c.snapshot_min_retention_entries = 5;
        c.snapshot_chunk_bytes = 16;
    };
    let mut net = Net::new(3, 0, &tweak);
    let l = net.elect();
    let slow = (l + 1) % 3;
    net.isolated.insert(slow);
    for _ in 0..60 {
        net.propose(l, b"payload!");
        net.tick(1);
    }
    assert!(net.node(l).metrics().snapshots_taken >= 1, "the leader compacted its log");
    assert!(net.node(l).status().log_entries <= 40, "memory stays bounded");
    net.isolated.clear();
    net.tick(30);
    assert!(net.node(slow).metrics().snapshots_installed >= 1);
    assert_eq!(net.slots[slow].app, net.slots[l].app);
    assert!(net.node(l).metrics().snapshots_sent >= 1);
    // A restart from the installed snapshot plus log tail keeps the state.
    net.crash(slow);
    net.restart(slow);
    net.tick(10);
    assert_eq!(net.slots[slow].app, net.slots[l].app);
}

#[test]
fn a_full_restart_keeps_everything_committed() {
    let tweak = |c: &mut Config| {
        c.snapshot_threshold_entries = 10;
        c.snapshot_min_retention_entries = 3;
    };
    let mut net = Net::new(3, 0, &tweak);
    let l = net.elect();
    for _ in 0..25 {
        net.propose(l, b"k");
        net.tick(1);
    }
    net.tick(3);
    let before = net.slots[l].app.clone();
    for i in 0..3 {
        net.crash(i);
    }
    for i in 0..3 {
        net.restart(i);
    }
    net.elect();
    net.tick(10);
    for i in 0..3 {
        assert_eq!(net.slots[i].app, before, "node {i}");
    }
}

#[test]
fn a_stale_vote_request_is_refused_with_the_current_term() {
    use xraft::{Message, MessageBody, Term};
    let mut net = Net::new(3, 0, &|_| {});
    net.elect();
    let term = net.node(0).term();
    let stale = Message {
        from: NodeId(9),
        to: NodeId(1),
        term: Term(term.0 - 1),
        body: MessageBody::RequestVote {
            pre_vote: false,
            last_log_index: LogIndex(100),
            last_log_term: Term(50),
            transfer: false,
        },
    };
    let out = net.slots[0].node.as_mut().expect("up").step(Input::Message(stale));
    let refused = out.iter().any(|o| {
        matches!(o, Output::Send(m) if m.to == NodeId(9) && m.term == term
            && matches!(m.body, MessageBody::RequestVoteResp { granted: false, .. }))
    });
    assert!(refused, "{out:?}");
}
