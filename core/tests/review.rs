//! Review tests of the Raft core: tricky safety and liveness cases, each
//! pinned down on a single node driven by hand or on the shared in-memory
//! cluster harness (`common`), with writes that stay volatile until `sync`
//! (a crash loses them), directed link cuts and message capture (for
//! reordering and duplication). Each test that once failed names the bug it
//! pins down; all pass now.

use bytes::Bytes;
use xraft::{
    Config, Entry, EntryKind, EntryVec, Input, LogIndex, Message, MessageBody, Node, NodeId,
    Output, PersistId, PersistWrite, ProposeError, RequestId, RestartState, Role, SnapshotMeta,
    Term,
};

mod common;

use common::*;

// ---------------------------------------------------------------------------
// Single-node helpers: drive one node by hand with crafted messages.
// ---------------------------------------------------------------------------

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        kind: EntryKind::Normal,
        data: Bytes::from_static(b"x"),
    }
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> EntryVec {
    range.map(|i| entry(i, term)).collect()
}

/// Node `id` of a freshly bootstrapped cluster of `voters` (log: the config
/// entry at index 1, term 1, committed).
fn solo(id: u64, voters: u64, tweak: &dyn Fn(&mut Config)) -> Node {
    Node::new(cfg(id, tweak), RestartState::bootstrap((1..=voters).map(NodeId))).expect("valid")
}

fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Input {
    Input::Message(Message { from: NodeId(from), to: NodeId(to), term: Term(term), body })
}

fn append(from: u64, to: u64, term: u64, prev: (u64, u64), commit: u64, es: EntryVec) -> Input {
    msg(
        from,
        to,
        term,
        MessageBody::Append {
            prev_index: LogIndex(prev.0),
            prev_term: Term(prev.1),
            commit: LogIndex(commit),
            entries: es,
        },
    )
}

fn sent(out: &[Output]) -> Vec<&Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn write_of(out: &[Output]) -> Option<&PersistWrite> {
    out.iter().find_map(|o| match o {
        Output::Persist(w) => Some(w),
        _ => None,
    })
}

/// Successful append acknowledgements in `out`: (to, term, index).
fn acks(out: &[Output]) -> Vec<(NodeId, Term, LogIndex)> {
    sent(out)
        .into_iter()
        .filter_map(|m| match m.body {
            MessageBody::AppendResp { success: true, index, .. } => Some((m.to, m.term, index)),
            _ => None,
        })
        .collect()
}

fn persisted(node: &mut Node, id: PersistId) -> Vec<Output> {
    node.step(Input::Persisted { through: id })
}

// ---------------------------------------------------------------------------
// Liveness: flow control.
// ---------------------------------------------------------------------------

/// A follower in `Replicate` whose whole inflight window was lost, and whose
/// next index the leader then compacted away, must still be caught up (by a
/// snapshot). Before ac21f04 the heartbeat answer's recovery probe
/// (`send_empty_append_at_next`) found no term for `next - 1` and silently
/// returned, the window never drained, and the follower stayed behind
/// forever (found independently by this review and the lead).
#[test]
fn a_follower_whose_lost_window_was_compacted_away_catches_up() {
    let tweak = |c: &mut Config| {
        c.inflight_appends_max = 2;
        c.snapshot_threshold_entries = 20;
        c.snapshot_min_retention_entries = 5;
    };
    let mut net = Net::new(3, 0, &tweak);
    let l = net.elect();
    for _ in 0..3 {
        net.propose(l, b"warm");
    }
    net.tick(2);
    let f = (l + 1) % 3;
    assert_eq!(net.node(f).commit_index(), net.node(l).commit_index());
    // The follower is replicating. Drop everything the leader sends it: the
    // first two appends fill its window and are lost.
    net.cut.insert((l, f));
    for _ in 0..60 {
        net.propose(l, b"payload");
        net.tick(1);
    }
    assert!(net.node(l).metrics().snapshots_taken >= 1, "the leader compacted");
    net.cut.clear();
    net.tick(200);
    assert_eq!(
        net.node(f).commit_index(),
        net.node(l).commit_index(),
        "the follower never caught up"
    );
    assert_eq!(net.slots[f].app, net.slots[l].app);
}

/// The same, without compaction: the heartbeat answer's probe recovers a
/// follower whose whole window was lost.
#[test]
fn a_follower_whose_window_was_lost_catches_up() {
    let mut net = Net::new(3, 0, &|c| c.inflight_appends_max = 2);
    let l = net.elect();
    net.propose(l, b"warm");
    net.tick(2);
    let f = (l + 1) % 3;
    net.cut.insert((l, f));
    for _ in 0..10 {
        net.propose(l, b"payload");
        net.tick(1);
    }
    net.cut.clear();
    net.tick(30);
    assert_eq!(net.node(f).commit_index(), net.node(l).commit_index());
    assert_eq!(net.slots[f].app, net.slots[l].app);
}

// ---------------------------------------------------------------------------
// Durability: nothing is promised before it is durable.
// ---------------------------------------------------------------------------

#[test]
fn a_vote_leaves_only_once_durable_and_a_lost_vote_is_not_a_promise() {
    let mut n = solo(2, 3, &|_| {});
    let vote = |from: u64, term: u64| {
        msg(
            from,
            2,
            term,
            MessageBody::RequestVote {
                pre_vote: false,
                last_log_index: LogIndex(1),
                last_log_term: Term(1),
                transfer: false,
            },
        )
    };
    let out = n.step(vote(3, 2));
    let w = write_of(&out).expect("the vote is written").clone();
    assert_eq!(w.hard_state.map(|h| h.vote), Some(Some(NodeId(3))));
    assert!(sent(&out).is_empty(), "no vote answer before the vote is durable: {out:?}");
    // A second candidate in the same term is refused even before durability.
    let out = n.step(vote(1, 2));
    assert!(
        sent(&out)
            .iter()
            .all(|m| !matches!(m.body, MessageBody::RequestVoteResp { granted: true, .. })),
        "{out:?}"
    );
    let out = persisted(&mut n, w.id);
    let grants: Vec<_> = sent(&out)
        .into_iter()
        .filter(|m| matches!(m.body, MessageBody::RequestVoteResp { granted: true, .. }))
        .map(|m| m.to)
        .collect();
    assert_eq!(grants, vec![NodeId(3)]);
}

#[test]
fn a_candidate_asks_for_votes_only_once_its_term_is_durable() {
    let mut n = solo(1, 3, &|c| c.pre_vote = false);
    let mut out = Vec::new();
    for _ in 0..40 {
        out.extend(n.step(Input::Tick));
        if n.role() == Role::Candidate {
            break;
        }
    }
    assert_eq!(n.role(), Role::Candidate);
    assert!(sent(&out).is_empty(), "vote requests before the term is durable: {out:?}");
    let w = write_of(&out).expect("term written").id;
    let out = persisted(&mut n, w);
    assert_eq!(sent(&out).len(), 2);
}

#[test]
fn a_follower_acks_entries_only_once_durable() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 1, entries(2..=3, 2)));
    let w = write_of(&out).expect("entries written").clone();
    assert_eq!(w.entries.len(), 2);
    assert!(acks(&out).iter().all(|a| a.2 <= LogIndex(1)), "{out:?}");
    let out = persisted(&mut n, w.id);
    assert_eq!(acks(&out).iter().map(|a| a.2).max(), Some(LogIndex(3)));
}

/// etcd's async-storage ABA race: entries 2..3 of term 2 are written, then
/// overwritten by a term-3 leader before the first write is durable. The
/// first write completing must not let the node acknowledge index 2 to the
/// term-3 leader.
#[test]
fn an_ack_for_overwritten_entries_is_not_taken_for_the_new_ones() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 1, entries(2..=3, 2)));
    let w1 = write_of(&out).expect("w1").id;
    let out = n.step(append(3, 2, 3, (1, 1), 1, entries(2..=2, 3)));
    let w2 = write_of(&out).expect("w2").id;
    assert!(acks(&out).iter().all(|a| a.2 <= LogIndex(1)));
    let out = persisted(&mut n, w1);
    for (to, term, index) in acks(&out) {
        assert!(
            to != NodeId(3) || index <= LogIndex(1),
            "acknowledged {index:?} to the term-3 leader while only the term-2 entry is durable"
        );
        assert!(term != Term(3) || index <= LogIndex(1));
    }
    let out = persisted(&mut n, w2);
    assert!(acks(&out).iter().any(|&(to, _, i)| to == NodeId(3) && i == LogIndex(2)), "{out:?}");
    assert_eq!(n.status().durable_index, LogIndex(2));
}

/// A crash loses an unacknowledged tail; the restarted follower neither
/// commits nor applies past its durable log when the leader's heartbeat
/// arrives (the heartbeat's commit is capped at the leader's match).
#[test]
fn heartbeat_commit_after_a_follower_loses_its_volatile_tail() {
    let mut net = Net::new(3, 0, &|_| {});
    net.manual_sync = true;
    let l = net.elect();
    net.tick(2);
    let f = (l + 1) % 3;
    let g = (l + 2) % 3;
    // f receives new entries but never makes them durable; the others do.
    for _ in 0..5 {
        net.propose(l, b"v");
        net.run();
        for i in [l, g] {
            net.sync(i);
        }
        net.run();
    }
    let committed = net.node(l).commit_index();
    assert!(committed > net.node(f).status().durable_index);
    net.crash(f);
    net.restart(f);
    let durable = net.node(f).last_index();
    // One heartbeat round, without syncing f.
    net.cut.insert((l, g));
    for _ in 0..6 {
        for i in 0..3 {
            net.queue.push_back((i, Input::Tick));
        }
        net.run();
        assert!(net.node(f).commit_index() <= durable.max(net.node(f).last_index()));
    }
    net.cut.clear();
    net.tick(20);
    assert_eq!(net.node(f).commit_index(), net.node(l).commit_index());
    assert_eq!(net.slots[f].app, net.slots[l].app);
}

/// A single-voter leader counts itself only once its write is durable.
#[test]
fn a_single_voter_commits_only_durable_entries() {
    let mut net = Net::new(1, 0, &|_| {});
    net.manual_sync = true;
    let l = net.elect();
    net.tick(1);
    let before = net.node(l).commit_index();
    net.propose(l, b"one");
    net.run();
    assert_eq!(net.node(l).commit_index(), before, "committed before durable");
    assert!(net.slots[l].app.applied.is_empty());
    net.settle();
    assert!(net.node(l).commit_index() > before);
    assert_eq!(net.slots[l].app.applied, vec![Bytes::from_static(b"one")]);
}

// ---------------------------------------------------------------------------
// Follower append handling.
// ---------------------------------------------------------------------------

/// An older, shorter append arriving after a newer one does not truncate.
#[test]
fn a_reordered_shorter_append_does_not_truncate() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 1, entries(2..=5, 2)));
    let w = write_of(&out).expect("write").id;
    persisted(&mut n, w);
    let out = n.step(append(1, 2, 2, (1, 1), 1, entries(2..=3, 2)));
    assert_eq!(n.last_index(), LogIndex(5));
    assert!(write_of(&out).is_none_or(|w| w.entries.is_empty()), "{out:?}");
    assert_eq!(n.status().durable_index, LogIndex(5));
}

/// The commit index never passes the prefix verified against this leader:
/// stale entries of an older term beyond `prev_index` are not committed.
#[test]
fn commit_is_capped_at_the_verified_prefix() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 1, entries(2..=4, 2)));
    let w = write_of(&out).expect("write").id;
    persisted(&mut n, w);
    // A new leader of term 3 whose log diverges after index 2 says its commit
    // is 4: only index 2 is verified.
    let out = n.step(append(3, 2, 3, (2, 2), 4, EntryVec::new()));
    assert_eq!(n.commit_index(), LogIndex(2), "{out:?}");
    // A heartbeat of the new leader, capped by its match (nothing yet).
    n.step(msg(3, 2, 3, MessageBody::Heartbeat { commit: LogIndex(0), ctx: 0 }));
    assert_eq!(n.commit_index(), LogIndex(2));
}

/// A follower's acknowledgement to a new leader covers its committed prefix
/// even before that leader's appends verified it (`ack_index` uses commit):
/// that prefix is in every later leader's log, so the ack is truthful.
#[test]
fn a_committed_prefix_is_acknowledged_to_a_new_leader() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 3, entries(2..=4, 2)));
    let w = write_of(&out).expect("write").id;
    persisted(&mut n, w);
    assert_eq!(n.commit_index(), LogIndex(3));
    // Term 3 leader probes at its own last index, which we lack.
    let out = n.step(append(3, 2, 3, (6, 3), 3, EntryVec::new()));
    assert!(sent(&out)
        .iter()
        .all(|m| matches!(m.body, MessageBody::AppendResp { success: false, .. })));
    let w = write_of(&out).expect("term written").id;
    let out = persisted(&mut n, w);
    for (_, term, index) in acks(&out) {
        assert_eq!(term, Term(3));
        assert!(index <= LogIndex(3), "acked an unverified, uncommitted index {index:?}");
    }
}

// ---------------------------------------------------------------------------
// Elections.
// ---------------------------------------------------------------------------

fn candidate(voters: u64) -> Node {
    let mut n = solo(1, voters, &|c| c.pre_vote = false);
    let mut out = Vec::new();
    while n.role() != Role::Candidate {
        out.extend(n.step(Input::Tick));
    }
    let w = write_of(&out).expect("term written").id;
    persisted(&mut n, w);
    n
}

fn vote_resp(from: u64, term: u64, granted: bool) -> Input {
    msg(from, 1, term, MessageBody::RequestVoteResp { pre_vote: false, granted })
}

#[test]
fn a_replayed_vote_counts_once() {
    let mut n = candidate(5);
    let term = n.term().0;
    for _ in 0..3 {
        n.step(vote_resp(2, term, true));
    }
    assert_eq!(n.role(), Role::Candidate, "one voter counted three times");
    n.step(vote_resp(3, term, true));
    assert_eq!(n.role(), Role::Leader);
}

#[test]
fn a_stale_term_vote_is_not_counted() {
    let mut n = candidate(3);
    let term = n.term().0;
    n.step(vote_resp(2, term - 1, true));
    assert_eq!(n.role(), Role::Candidate);
}

/// A PreVote from a lower term is answered (with our term) rather than
/// dropped, so the sender learns it is behind.
#[test]
fn a_stale_pre_vote_is_answered_with_our_term() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 5, (1, 1), 1, EntryVec::new()));
    let w = write_of(&out).expect("term").id;
    persisted(&mut n, w);
    let out = n.step(msg(
        3,
        2,
        3,
        MessageBody::RequestVote {
            pre_vote: true,
            last_log_index: LogIndex(9),
            last_log_term: Term(2),
            transfer: false,
        },
    ));
    let m = sent(&out);
    assert!(
        m.iter().any(|m| m.to == NodeId(3)
            && m.term == Term(5)
            && matches!(m.body, MessageBody::RequestVoteResp { granted: false, .. })),
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------
// Reads.
// ---------------------------------------------------------------------------

/// A new leader does not confirm a read before an entry of its own term has
/// committed (its commit index may be stale until then).
#[test]
fn no_read_before_the_new_leaders_noop_commits() {
    let mut net = Net::new(3, 0, &|_| {});
    net.manual_sync = true;
    // Elect without letting followers sync the no-op.
    let l = net.elect_unsynced(3);
    let noop = net.node(l).last_index();
    assert!(net.node(l).commit_index() < noop);
    let request = net.request();
    net.input(l, Input::ReadIndex { request });
    assert!(net.outcome(request).is_none(), "{:?}", net.outcome(request));
    net.settle();
    net.tick(2);
    match net.outcome(request) {
        Some(Output::ReadReady { index, .. }) => assert!(*index >= noop),
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Snapshots.
// ---------------------------------------------------------------------------

/// A snapshot older than the follower's commit neither rolls back nor
/// truncates (Figure 13 rule 6); it is answered like an append.
#[test]
fn a_stale_snapshot_is_ignored() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 4, entries(2..=6, 2)));
    let w = write_of(&out).expect("write").id;
    persisted(&mut n, w);
    assert_eq!(n.commit_index(), LogIndex(4));
    let meta = SnapshotMeta {
        index: LogIndex(3),
        term: Term(2),
        membership: xraft::Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
    };
    let out = n.step(msg(
        1,
        2,
        2,
        MessageBody::InstallSnapshot {
            meta,
            offset: 0,
            data: Bytes::from_static(b"s"),
            done: true,
        },
    ));
    assert!(write_of(&out).is_none(), "{out:?}");
    assert_eq!(n.last_index(), LogIndex(6));
    assert_eq!(n.commit_index(), LogIndex(4));
    assert!(!acks(&out).is_empty());
}

/// A follower that restarts mid-way through receiving a snapshot, and a
/// slow follower in general, still converge (crash during install).
#[test]
fn a_crash_during_snapshot_install_leaves_a_correct_node() {
    let tweak = |c: &mut Config| {
        c.snapshot_threshold_entries = 20;
        c.snapshot_min_retention_entries = 5;
        c.snapshot_chunk_bytes = 8;
    };
    let mut net = Net::new(3, 0, &tweak);
    let l = net.elect();
    let slow = (l + 1) % 3;
    net.isolated.insert(slow);
    for _ in 0..60 {
        net.propose(l, b"payload!");
        net.tick(1);
    }
    net.isolated.clear();
    // Let a few chunks through, then crash the follower.
    net.manual_sync = true;
    for _ in 0..3 {
        for i in 0..3 {
            net.queue.push_back((i, Input::Tick));
        }
        net.run();
        net.sync(l);
        net.sync((l + 2) % 3);
        net.sync(slow);
        net.run();
    }
    net.crash(slow);
    net.restart(slow);
    net.tick(60);
    assert_eq!(net.node(slow).commit_index(), net.node(l).commit_index());
    assert_eq!(net.slots[slow].app, net.slots[l].app);
}

// ---------------------------------------------------------------------------
// Membership.
// ---------------------------------------------------------------------------

fn config_entry(index: u64, term: u64, voters: &[u64]) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        kind: EntryKind::Config,
        data: xraft::Membership::with_voters(voters.iter().map(|&v| NodeId(v))).encode(),
    }
}

/// A configuration takes effect when appended and is rolled back when a
/// later leader truncates its entry.
#[test]
fn an_uncommitted_config_is_rolled_back_on_truncation() {
    let mut n = solo(2, 3, &|_| {});
    let es: EntryVec = [config_entry(2, 2, &[1, 2, 3, 4])].into_iter().collect();
    let out = n.step(append(1, 2, 2, (1, 1), 1, es));
    persisted(&mut n, write_of(&out).expect("write").id);
    assert_eq!(n.status().membership.voters.len(), 4, "effective on append");
    let out = n.step(append(3, 2, 3, (1, 1), 1, entries(2..=2, 3)));
    persisted(&mut n, write_of(&out).expect("write").id);
    assert_eq!(n.status().membership.voters.len(), 3, "rolled back with its entry");
    // And a restart from what is durable agrees.
    assert_eq!(n.entry(LogIndex(2)).map(|e| e.kind), Some(EntryKind::Normal));
}

/// A new leader refuses a membership change until an entry of its own term
/// has committed (the 2015 single-server-change bug).
#[test]
fn no_config_change_before_the_new_leaders_noop_commits() {
    let mut net = Net::new(3, 1, &|_| {});
    net.manual_sync = true;
    let l = net.elect_unsynced(3);
    assert!(net.node(l).commit_index() < net.node(l).last_index());
    let request = net.request();
    net.input(
        l,
        Input::ChangeMembership {
            request,
            change: xraft::MembershipChange::AddVoter { id: NodeId(4), addr: "n4".into() },
        },
    );
    assert!(
        matches!(
            net.outcome(request),
            Some(Output::Rejected { error: xraft::ProposeError::ConfigInFlight, .. })
        ),
        "{:?}",
        net.outcome(request)
    );
}

/// A removed leader stops counting itself as soon as the change is in its
/// log: with the only other remaining voter down, the change cannot commit.
#[test]
fn a_leader_removing_itself_does_not_count_itself() {
    let mut net = Net::new(3, 0, &|_| {});
    let l = net.elect();
    net.tick(2);
    let a = (l + 1) % 3;
    let b = (l + 2) % 3;
    net.isolated.insert(a);
    let request = net.request();
    net.input(
        l,
        Input::ChangeMembership {
            request,
            change: xraft::MembershipChange::Remove(NodeId(l as u64 + 1)),
        },
    );
    net.tick(3);
    // New config {a, b}: b alone is not a majority of it; the leader must
    // not have counted itself.
    let latest = net.node(l).last_index();
    assert!(net.node(l).commit_index() < latest, "committed with the removed leader's vote");
    assert!(net.node(b).commit_index() < latest);
}

// ---------------------------------------------------------------------------
// Terms, transfer and forwarding.
// ---------------------------------------------------------------------------

/// A stale leader's append is answered with our term, so it steps down.
#[test]
fn a_stale_append_is_answered_with_our_term() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(3, 2, 5, (1, 1), 1, EntryVec::new()));
    persisted(&mut n, write_of(&out).expect("term").id);
    let out = n.step(append(1, 2, 3, (1, 1), 1, entries(2..=2, 3)));
    assert_eq!(n.last_index(), LogIndex(1), "a stale append changed the log");
    assert!(
        sent(&out).iter().any(|m| m.to == NodeId(1)
            && m.term == Term(5)
            && matches!(m.body, MessageBody::AppendResp { success: false, .. })),
        "{out:?}"
    );
}

/// `TimeoutNow` from anyone but the known leader is ignored.
#[test]
fn timeout_now_from_a_non_leader_is_ignored() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 1, EntryVec::new()));
    persisted(&mut n, write_of(&out).expect("term").id);
    n.step(msg(3, 2, 2, MessageBody::TimeoutNow));
    assert_eq!(n.role(), Role::Follower);
    assert_eq!(n.term(), Term(2));
    n.step(msg(1, 2, 2, MessageBody::TimeoutNow));
    assert_eq!(n.role(), Role::Candidate);
}

/// A `Forward` stamped with an older term than the leader's is answered at
/// once (before, it got no answer, and the follower's caller waited the
/// whole `propose_timeout_ticks`), but it is not appended: it may be a late
/// copy of a forward a leader handled before it crashed and forgot, and
/// appending it again executed a client's write twice (simulator seed
/// 14132378). The answer is `Timeout`, "outcome unknown", since the first
/// copy may have taken effect.
#[test]
fn a_forward_with_an_older_term_is_answered_and_not_appended() {
    // Node 1 leads term 2 (elected from the bootstrap term 1).
    let mut n = candidate(3);
    n.step(vote_resp(2, n.term().0, true));
    assert_eq!(n.role(), Role::Leader);
    // Node 3 still believes node 1 leads term 1 and forwards a proposal.
    let out = n.step(msg(
        3,
        1,
        1,
        MessageBody::Forward {
            ctx: RequestId(7),
            request: xraft::Forwarded::Propose([Bytes::from_static(b"p")].into_iter().collect()),
        },
    ));
    assert!(
        sent(&out).iter().any(|m| m.to == NodeId(3)
            && matches!(
                m.body,
                MessageBody::ForwardResp {
                    ctx: RequestId(7),
                    result: xraft::ForwardResult::Rejected(ProposeError::Timeout)
                }
            )),
        "the forwarded request got no 'unknown' answer: {out:?}"
    );
    assert!(write_of(&out).is_none_or(|w| w.entries.is_empty()), "appended: {out:?}");
}

// ---------------------------------------------------------------------------
// Liveness under a failing disk.
// ---------------------------------------------------------------------------

/// Steps `input` into a single node, and what follows from it: storage is
/// durable at once, and what the node hands out is applied if `apply`.
/// Every output goes to `other` too, which may queue more inputs. Stops
/// after 10,000 inputs (a busy loop). Returns every output.
fn drive_solo(
    node: &mut Node,
    input: Input,
    apply: bool,
    mut other: impl FnMut(&Output, &mut Vec<Input>),
) -> Vec<Output> {
    let (mut queue, mut seen, mut budget) = (vec![input], Vec::new(), 10_000);
    while let Some(input) = queue.pop().filter(|_| budget > 0) {
        budget -= 1;
        for o in node.step(input) {
            match &o {
                Output::Persist(w) => queue.push(Input::Persisted { through: w.id }),
                Output::Apply { entries } if apply => {
                    let index = entries.last().map_or(LogIndex::ZERO, |e| e.index);
                    queue.push(Input::Applied { index });
                }
                _ => {}
            }
            other(&o, &mut queue);
            seen.push(o);
        }
    }
    seen
}

/// Steps `input` into a node whose snapshots always fail; returns how many
/// `TakeSnapshot` it asked for (each answered `ok: false`).
fn step_failing_snapshots(node: &mut Node, input: Input) -> usize {
    let mut asked = 0;
    drive_solo(node, input, true, |o, queue| {
        if let Output::TakeSnapshot { meta } = o {
            asked += 1;
            queue.push(Input::SnapshotTaken { index: meta.index, ok: false });
        }
    });
    asked
}

/// A lone voter that asks for a snapshot every 5 entries and asks again
/// after 50 ticks without an answer.
fn snapshotting_solo() -> Node {
    solo(1, 1, &|c| {
        c.snapshot_threshold_entries = 5;
        c.snapshot_min_retention_entries = 1;
        c.snapshot_chunk_timeout_ticks = 50;
    })
}

/// A snapshot the storage cannot write (disk full, directory removed) is
/// asked for again only after `snapshot_chunk_timeout_ticks`. Before this
/// test the failure cleared the request and the very next step asked again:
/// a node whose data directory was removed spun a core at 50 % and logged a
/// warning per attempt, millions of them.
#[test]
fn a_failed_snapshot_is_retried_after_a_timeout_not_at_once() {
    let mut node = snapshotting_solo();
    let mut asked = 0;
    for _ in 0..100 {
        asked += step_failing_snapshots(&mut node, Input::Tick);
        if node.role() == Role::Leader {
            break;
        }
    }
    assert_eq!(node.role(), Role::Leader);
    for i in 0..20u64 {
        let input = Input::Propose {
            request: RequestId(i + 1),
            commands: [Bytes::from_static(b"c")].into_iter().collect(),
        };
        asked += step_failing_snapshots(&mut node, input);
    }
    assert!(node.status().applied >= LogIndex(20), "proposals applied");
    assert_eq!(asked, 1, "one request, then no retry before the timeout");
    for _ in 0..49 {
        asked += step_failing_snapshots(&mut node, Input::Tick);
    }
    assert_eq!(asked, 1, "still none before the timeout");
    for _ in 0..2 {
        asked += step_failing_snapshots(&mut node, Input::Tick);
    }
    assert_eq!(asked, 2, "asked again once the timeout passed");
}

/// A snapshot slower than the timeout is asked for again (at a later
/// index); the answer to the first request, when it finally comes, is
/// still used. Before, it was ignored as "not the current request", so with
/// snapshots always slower than the timeout the log never compacted.
#[test]
fn a_late_snapshot_answer_is_used_after_a_re_request() {
    let mut node = snapshotting_solo();
    // Snapshot requests are held (collected), not answered.
    let drive = |node: &mut Node, input: Input, asked: &mut Vec<SnapshotMeta>| {
        drive_solo(node, input, true, |o, _| {
            if let Output::TakeSnapshot { meta } = o {
                asked.push(meta.clone());
            }
        });
    };
    let mut asked = Vec::new();
    for _ in 0..100 {
        drive(&mut node, Input::Tick, &mut asked);
        if node.role() == Role::Leader {
            break;
        }
    }
    let propose = |node: &mut Node, i: u64, asked: &mut Vec<SnapshotMeta>| {
        let commands = [Bytes::from_static(b"c")].into_iter().collect();
        drive(node, Input::Propose { request: RequestId(i), commands }, asked);
    };
    for i in 1..=10 {
        propose(&mut node, i, &mut asked);
    }
    assert_eq!(asked.len(), 1, "one snapshot asked for");
    let first = asked[0].index;
    for i in 11..=20 {
        propose(&mut node, i, &mut asked);
    }
    for _ in 0..51 {
        drive(&mut node, Input::Tick, &mut asked);
    }
    assert_eq!(asked.len(), 2, "asked again after the timeout");
    assert!(asked[1].index > first);
    // The first snapshot is finally durable: it is used.
    drive(&mut node, Input::SnapshotTaken { index: first, ok: true }, &mut asked);
    assert_eq!(node.status().snapshot_index, first, "the late snapshot was used");
    assert_eq!(node.metrics().snapshots_taken, 1);
}

/// A read confirmed by the leader waits for the local state machine to
/// reach its index; if it never does (apply stalled, a node that stopped
/// catching up), the read fails with `Timeout` after
/// `propose_timeout_ticks` instead of being kept forever.
#[test]
fn a_confirmed_read_whose_index_is_never_applied_times_out() {
    let mut node = solo(1, 1, &|c| c.propose_timeout_ticks = 40);
    let drive =
        |node: &mut Node, input: Input, apply: bool| drive_solo(node, input, apply, |_, _| {});
    for _ in 0..100 {
        drive(&mut node, Input::Tick, true);
        if node.role() == Role::Leader {
            break;
        }
    }
    assert_eq!(node.role(), Role::Leader);
    // An entry commits but is never applied: the read's index is ahead.
    let commands = [Bytes::from_static(b"c")].into_iter().collect();
    drive(&mut node, Input::Propose { request: RequestId(1), commands }, false);
    let read = RequestId(2);
    let out = drive(&mut node, Input::ReadIndex { request: read }, false);
    assert!(!out.iter().any(|o| matches!(o, Output::ReadReady { .. })), "not applied yet");
    let answered = |out: &[Output]| {
        out.iter().any(|o| {
            matches!(o, Output::Rejected { request, error: xraft::ProposeError::Timeout }
                if *request == read)
        })
    };
    for _ in 0..39 {
        assert!(!answered(&drive(&mut node, Input::Tick, false)), "too early");
    }
    let mut timed_out = false;
    for _ in 0..2 {
        timed_out |= answered(&drive(&mut node, Input::Tick, false));
    }
    assert!(timed_out, "the read failed with Timeout once its deadline passed");
}

// ---------------------------------------------------------------------------
// Hostile input: appends no honest leader sends.
// ---------------------------------------------------------------------------

/// Appends a broken or hostile peer might send (entries that skip or repeat
/// an index, terms going backwards or beyond the message's term, an anchor
/// term above it) are dropped whole: nothing written, nothing acknowledged,
/// counted in `messages_invalid`. Before this the term-ahead entry was
/// logged and made the node refuse to restart, and the gap reached storage,
/// which stopped the node (found by a review).
#[test]
fn malformed_appends_are_dropped_before_they_touch_the_log() {
    let mut n = solo(2, 3, &|_| {});
    let bad: [(u64, EntryVec); 5] = [
        (1, [entry(2, 2), entry(4, 2)].into_iter().collect()), // gap
        (1, [entry(2, 2), entry(2, 2)].into_iter().collect()), // repeat
        (1, [entry(2, 2), entry(3, 1)].into_iter().collect()), // term back below an entry
        (1, entries(2..=2, 9)),                                // term beyond the message's
        (1, entries(3..=3, 2)),                                // does not follow prev_index
    ];
    for (k, (prev_term, es)) in bad.into_iter().enumerate() {
        let out = n.step(append(1, 2, 2, (1, prev_term), 1, es));
        // (The first message's higher term is itself written: that is all.)
        assert!(write_of(&out).is_none_or(|w| w.entries.is_empty()), "case {k}: {out:?}");
        assert!(acks(&out).is_empty(), "case {k}: {out:?}");
        assert_eq!(n.metrics().messages_invalid, k as u64 + 1, "case {k}");
    }
    // An anchor term above the message's.
    let out = n.step(append(1, 2, 2, (1, 5), 1, EntryVec::new()));
    assert!(sent(&out).is_empty() && n.metrics().messages_invalid == 6, "{out:?}");
    assert_eq!(n.status().last_index, LogIndex(1));
    // A well-formed append still goes through.
    let out = n.step(append(1, 2, 2, (1, 1), 1, entries(2..=3, 2)));
    assert_eq!(write_of(&out).map(|w| w.entries.len()), Some(2));
}

/// An append contradicting an entry this node knows committed is dropped,
/// not a panic (it was an `assert!`, reachable from one message).
#[test]
fn an_append_contradicting_a_committed_entry_is_dropped_not_a_panic() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 3, entries(2..=3, 2)));
    let w = write_of(&out).expect("written").id;
    persisted(&mut n, w);
    assert_eq!(n.status().commit, LogIndex(3));
    // A term-3 leader claims index 3 (committed, term 2) holds a term-3
    // entry: only its higher term is written.
    let out = n.step(append(1, 2, 3, (2, 2), 3, entries(3..=3, 3)));
    assert!(write_of(&out).is_none_or(|w| w.entries.is_empty()), "{out:?}");
    assert_eq!(n.metrics().messages_invalid, 1);
    assert_eq!(n.status().commit, LogIndex(3));
    assert_eq!(n.status().last_index, LogIndex(3));
}

/// Votes from nodes outside the voter set do not count (they never did;
/// they are now also not kept, which this test cannot observe), a reject
/// carrying the largest possible hint does not overflow (a debug-build
/// panic before), and a message of the last term is dropped rather than
/// adopted: a node there could only campaign by voting a second time in
/// that term (the review of the saturating successor found it).
#[test]
fn votes_from_non_voters_and_extreme_hints_are_harmless() {
    let mut n = candidate(5);
    let term = n.term().0;
    for from in 100..200 {
        n.step(vote_resp(from, term, true));
    }
    assert_eq!(n.role(), Role::Candidate, "strangers' votes elected a leader");
    n.step(vote_resp(2, term, true));
    n.step(vote_resp(3, term, true));
    assert_eq!(n.role(), Role::Leader);
    let reject = MessageBody::AppendResp {
        success: false,
        index: LogIndex(1),
        hint_index: LogIndex(u64::MAX),
        hint_term: Term::ZERO,
    };
    n.step(msg(2, 1, term, reject));
    assert_eq!(n.role(), Role::Leader);

    let invalid = n.metrics().messages_invalid;
    n.step(msg(2, 1, u64::MAX, MessageBody::Heartbeat { commit: LogIndex(1), ctx: 0 }));
    assert_eq!((n.role(), n.term()), (Role::Leader, Term(term)), "the last term was adopted");
    assert_eq!(n.metrics().messages_invalid, invalid + 1);
}

/// A leader drops a second copy of a forwarded proposal that the network
/// delivers after other forwarded proposals, even with a one-request
/// `forward_pending_max`: the memory of forwarded proposals had that bound
/// (one follower's own), so the copy found its first forgotten and was
/// appended twice, a client's write executed twice (found by the simulator
/// with small bounds, seed 6496).
#[test]
fn a_late_duplicate_forward_is_not_appended_twice() {
    let mut n = solo(1, 3, &|c| {
        c.pre_vote = false;
        c.forward_pending_max = 1;
    });
    let mut out = Vec::new();
    while n.role() != Role::Candidate {
        out.extend(n.step(Input::Tick));
    }
    persisted(&mut n, write_of(&out).expect("term written").id);
    n.step(vote_resp(2, n.term().0, true));
    assert_eq!(n.role(), Role::Leader);
    let term = n.term().0;
    let forward = |from: u64, ctx: u64| {
        msg(
            from,
            1,
            term,
            MessageBody::Forward {
                ctx: RequestId(ctx),
                request: xraft::Forwarded::Propose(
                    [Bytes::from(format!("w{from}-{ctx}"))].into_iter().collect(),
                ),
            },
        )
    };
    n.step(forward(2, 7));
    n.step(forward(3, 8));
    n.step(forward(2, 9));
    let before = n.last_index();
    let out = n.step(forward(2, 7));
    assert_eq!(n.last_index(), before, "the duplicate was appended again");
    assert!(write_of(&out).is_none_or(|w| w.entries.is_empty()), "{out:?}");
}

/// A snapshot above the follower's commit but inside its log, whose last
/// entry matches (index and term): the follower keeps the entries after it
/// (Figure 13 rule 6), commits up to the snapshot, and never acknowledges
/// less than it did, during or after the install.
#[test]
fn a_snapshot_inside_the_log_keeps_the_suffix_and_acks_do_not_regress() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 3, entries(2..=8, 2)));
    let w = write_of(&out).expect("write").id;
    let out = persisted(&mut n, w);
    assert_eq!(n.commit_index(), LogIndex(3));
    let acked = acks(&out).iter().map(|a| a.2).max().expect("acked");
    assert_eq!(acked, LogIndex(8));
    let meta = SnapshotMeta {
        index: LogIndex(6),
        term: Term(2),
        membership: xraft::Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
    };
    let snap = MessageBody::InstallSnapshot {
        meta,
        offset: 0,
        data: Bytes::from_static(b"state"),
        done: true,
    };
    let mut outs = n.step(msg(1, 2, 2, snap));
    if let Some(w) = write_of(&outs).map(|w| w.id) {
        outs.extend(persisted(&mut n, w));
    }
    for (_, _, index) in acks(&outs) {
        assert!(index >= acked, "acknowledged {index:?} after {acked:?}");
    }
    assert_eq!(n.last_index(), LogIndex(8), "the matching suffix was dropped");
    assert!(n.commit_index() >= LogIndex(6));
}

/// An acknowledgement held until its term's hard state is durable must not
/// leave after a later term's leader truncated the entries it acknowledges
/// (in a write the same completion covers): it would claim entries the
/// follower no longer holds. Found by the simulator's send-time promise
/// check once pauses delivered bursts of terms at once (seed 5021891).
#[test]
fn a_held_ack_is_not_sent_after_a_later_term_truncated_its_entries() {
    let mut n = solo(2, 3, &|_| {});
    let out = n.step(append(1, 2, 2, (1, 1), 1, entries(2..=5, 2)));
    persisted(&mut n, write_of(&out).expect("write").id);
    // Node 3 leads term 3 and appends 6: the ack (of 5, durable) waits
    // for the term-3 hard state.
    let out = n.step(append(3, 2, 3, (5, 2), 1, [entry(6, 3)].into_iter().collect()));
    assert!(acks(&out).is_empty(), "sent before the term was durable: {out:?}");
    // Node 1 leads term 4 with another history from index 3 on.
    let out = n.step(append(1, 2, 4, (2, 2), 1, [entry(3, 4)].into_iter().collect()));
    let last = write_of(&out).expect("truncating write").id;
    assert_eq!(n.last_index(), LogIndex(3));
    let out = persisted(&mut n, last);
    for (to, term, index) in acks(&out) {
        assert!(
            index <= LogIndex(3) && (to != NodeId(3) || index <= LogIndex(2)),
            "acknowledged {index:?} in {term:?} to {to:?} holding only 1..=3 (3 of term 4)"
        );
    }
}
