//! Raft paper §5 rule tests (and Figure 2's "before responding" rule),
//! driving single `Node`s with hand-crafted messages, in the style of
//! etcd-io/raft's `raft_paper_test.go`. Each test names its section.

use bytes::Bytes;
use xraft::{
    Config, Entry, EntryKind, HardState, Input, LogIndex, Membership, Message, MessageBody, Node,
    NodeId, Output, PersistId, RestartState, Role, Term,
};

/// A node `id` of voters `voters`, at `term` with `vote`, whose log holds
/// the bootstrap config at index 1 and then one entry per term in `terms`.
fn node(id: u64, voters: &[u64], term: u64, vote: Option<u64>, terms: &[u64], commit: u64) -> Node {
    let membership = Membership::with_voters(voters.iter().map(|&v| NodeId(v)));
    let mut entries = vec![Entry {
        index: LogIndex(1),
        term: Term(1),
        kind: EntryKind::Config,
        data: membership.encode(),
    }];
    for (k, &t) in terms.iter().enumerate() {
        entries.push(Entry {
            index: LogIndex(k as u64 + 2),
            term: Term(t),
            kind: EntryKind::Normal,
            data: Bytes::from(vec![k as u8]),
        });
    }
    let hard_state =
        HardState { term: Term(term), vote: vote.map(NodeId), commit: LogIndex(commit) };
    let mut cfg = Config::new(NodeId(id));
    cfg.pre_vote = false;
    Node::new(cfg, RestartState { hard_state, snapshot: None, entries }).expect("valid state")
}

/// Steps `input`, then reports every write durable (repeatedly, as the
/// answers may emit more), returning every output in order.
fn step_sync(n: &mut Node, input: Input) -> Vec<Output> {
    let mut all = n.step(input);
    let mut k = 0;
    while k < all.len() {
        if let Output::Persist(w) = &all[k] {
            let id = w.id;
            let more = n.step(Input::Persisted { through: id });
            all.extend(more);
        }
        k += 1;
    }
    all
}

fn sent(outs: &[Output]) -> Vec<&Message> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Input {
    Input::Message(Message { from: NodeId(from), to: NodeId(to), term: Term(term), body })
}

fn vote_req(last_index: u64, last_term: u64) -> MessageBody {
    MessageBody::RequestVote {
        pre_vote: false,
        last_log_index: LogIndex(last_index),
        last_log_term: Term(last_term),
        transfer: false,
    }
}

fn vote_resp(granted: bool) -> MessageBody {
    MessageBody::RequestVoteResp { pre_vote: false, granted }
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        kind: EntryKind::Normal,
        data: Bytes::from(vec![index as u8, term as u8]),
    }
}

fn append(prev: (u64, u64), entries: &[Entry], commit: u64) -> MessageBody {
    MessageBody::Append {
        prev_index: LogIndex(prev.0),
        prev_term: Term(prev.1),
        commit: LogIndex(commit),
        entries: entries.iter().cloned().collect(),
    }
}

fn granted_votes(outs: &[Output]) -> Vec<(NodeId, bool)> {
    sent(outs)
        .into_iter()
        .filter_map(|m| match m.body {
            MessageBody::RequestVoteResp { pre_vote: false, granted } => Some((m.to, granted)),
            _ => None,
        })
        .collect()
}

/// Ticks `n` until it becomes a candidate (PreVote is off in these tests).
fn campaign(n: &mut Node) -> Vec<Output> {
    for _ in 0..100 {
        let outs = step_sync(n, Input::Tick);
        if n.role() == Role::Candidate {
            return outs;
        }
    }
    panic!("never campaigned");
}

/// Elects `n` leader with the votes of `voters`.
fn elect(n: &mut Node, voters: &[u64]) -> Vec<Output> {
    campaign(n);
    let term = n.term().0;
    let mut outs = Vec::new();
    for &v in voters {
        outs.extend(step_sync(n, msg(v, n.id().0, term, vote_resp(true))));
    }
    assert_eq!(n.role(), Role::Leader);
    outs
}

// ----- §5.1: terms -----

#[test]
fn s5_1_stale_term_append_is_rejected_with_the_current_term() {
    let mut n = node(1, &[1, 2, 3], 3, None, &[2, 2], 1);
    let outs = step_sync(&mut n, msg(2, 1, 2, append((3, 2), &[entry(4, 2)], 3)));
    assert_eq!(n.term(), Term(3));
    assert_eq!(n.last_index(), LogIndex(3), "a stale leader's entries are not appended");
    let replies = sent(&outs);
    assert!(replies.iter().all(|m| m.term == Term(3)), "answers carry the newer term: {replies:?}");
    assert!(replies
        .iter()
        .all(|m| !matches!(m.body, MessageBody::AppendResp { success: true, .. })));
}

#[test]
fn s5_1_a_higher_term_turns_a_leader_into_a_follower() {
    let mut n = node(1, &[1, 2, 3], 1, None, &[], 1);
    elect(&mut n, &[2]);
    let t = n.term();
    let outs = step_sync(&mut n, msg(3, 1, t.0 + 3, append((1, 1), &[], 1)));
    assert_eq!(n.role(), Role::Follower);
    assert_eq!(n.term(), Term(t.0 + 3));
    assert_eq!(n.leader(), Some(NodeId(3)));
    let persisted_term = outs.iter().any(|o| {
        matches!(o, Output::Persist(w) if w.hard_state.is_some_and(|h| h.term == Term(t.0 + 3)))
    });
    assert!(persisted_term, "the new term is made durable");
}

#[test]
fn s5_1_stale_vote_reply_is_not_counted() {
    let mut n = node(1, &[1, 2, 3], 4, None, &[], 1);
    campaign(&mut n);
    let t = n.term().0;
    step_sync(&mut n, msg(2, 1, t - 1, vote_resp(true)));
    assert_eq!(n.role(), Role::Candidate, "a vote from an earlier term is not a vote");
    step_sync(&mut n, msg(2, 1, t, vote_resp(true)));
    assert_eq!(n.role(), Role::Leader);
}

// ----- §5.2: elections -----

#[test]
fn s5_2_candidate_votes_for_itself_durably_before_asking() {
    let mut n = node(1, &[1, 2, 3], 1, None, &[], 1);
    let mut outs = Vec::new();
    for _ in 0..100 {
        outs = n.step(Input::Tick);
        if n.role() == Role::Candidate {
            break;
        }
    }
    assert_eq!(n.term(), Term(2));
    assert!(
        sent(&outs).is_empty(),
        "vote requests wait until the term and self-vote are durable: {outs:?}"
    );
    let id = outs
        .iter()
        .find_map(|o| match o {
            Output::Persist(w) if w.hard_state.is_some_and(|h| h.vote == Some(NodeId(1))) => {
                Some(w.id)
            }
            _ => None,
        })
        .expect("term and vote persisted");
    let outs = n.step(Input::Persisted { through: id });
    let reqs: Vec<_> = sent(&outs)
        .into_iter()
        .filter(|m| matches!(m.body, MessageBody::RequestVote { pre_vote: false, .. }))
        .collect();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|m| m.term == Term(2)));
}

#[test]
fn s5_2_a_vote_is_granted_at_most_once_per_term_and_only_when_durable() {
    let mut n = node(1, &[1, 2, 3], 1, None, &[], 1);
    let outs = n.step(msg(2, 1, 2, vote_req(1, 1)));
    assert!(granted_votes(&outs).is_empty(), "no vote reply before the vote is durable");
    let id = outs
        .iter()
        .find_map(|o| match o {
            Output::Persist(w) => Some(w.id),
            _ => None,
        })
        .expect("vote persisted");
    let outs = n.step(Input::Persisted { through: id });
    assert_eq!(granted_votes(&outs), vec![(NodeId(2), true)]);
    // Another candidate of the same term is refused.
    let outs = step_sync(&mut n, msg(3, 1, 2, vote_req(1, 1)));
    assert_eq!(granted_votes(&outs), vec![(NodeId(3), false)]);
    // The same candidate asking again gets the same answer.
    let outs = step_sync(&mut n, msg(2, 1, 2, vote_req(1, 1)));
    assert_eq!(granted_votes(&outs), vec![(NodeId(2), true)]);
}

#[test]
fn s5_2_duplicated_votes_count_once() {
    let mut n = node(1, &[1, 2, 3, 4, 5], 1, None, &[], 1);
    campaign(&mut n);
    let t = n.term().0;
    step_sync(&mut n, msg(2, 1, t, vote_resp(true)));
    step_sync(&mut n, msg(2, 1, t, vote_resp(true)));
    step_sync(&mut n, msg(2, 1, t, vote_resp(true)));
    assert_eq!(n.role(), Role::Candidate, "one voter replayed is still one vote");
    step_sync(&mut n, msg(3, 1, t, vote_resp(true)));
    assert_eq!(n.role(), Role::Leader);
}

#[test]
fn s5_2_a_majority_of_refusals_ends_the_candidacy() {
    let mut n = node(1, &[1, 2, 3], 1, None, &[], 1);
    campaign(&mut n);
    let t = n.term().0;
    step_sync(&mut n, msg(2, 1, t, vote_resp(false)));
    step_sync(&mut n, msg(3, 1, t, vote_resp(false)));
    assert_eq!(n.role(), Role::Follower);
}

// ----- §5.3: log replication -----

#[test]
fn s5_3_follower_rejects_an_append_whose_prev_entry_does_not_match() {
    let mut n = node(1, &[1, 2, 3], 2, None, &[1, 2], 1);
    let outs = step_sync(&mut n, msg(2, 1, 2, append((3, 1), &[entry(4, 2)], 1)));
    assert_eq!(n.last_index(), LogIndex(3));
    let ok = sent(&outs).iter().any(|m| {
        matches!(m.body, MessageBody::AppendResp { success: false, index: LogIndex(3), .. })
    });
    assert!(ok, "rejection of prev index 3: {outs:?}");
}

#[test]
fn s5_3_follower_truncates_only_on_a_real_conflict() {
    let mut n = node(1, &[1, 2, 3], 2, None, &[], 1);
    // A newer append brings 2..=4, then an older, shorter one arrives late.
    step_sync(&mut n, msg(2, 1, 2, append((1, 1), &[entry(2, 2), entry(3, 2), entry(4, 2)], 1)));
    assert_eq!(n.last_index(), LogIndex(4));
    let outs = step_sync(&mut n, msg(2, 1, 2, append((1, 1), &[entry(2, 2)], 1)));
    assert_eq!(n.last_index(), LogIndex(4), "a stale append must not truncate matching entries");
    let acked = sent(&outs).iter().any(|m| {
        matches!(m.body, MessageBody::AppendResp { success: true, index, .. } if index >= LogIndex(2))
    });
    assert!(acked);
    // A real conflict at index 3 (a newer leader's term) truncates from there.
    step_sync(&mut n, msg(3, 1, 3, append((2, 2), &[entry(3, 3)], 1)));
    assert_eq!(n.last_index(), LogIndex(3));
    assert_eq!(n.entry(LogIndex(3)).map(|e| e.term), Some(Term(3)));
}

#[test]
fn s5_3_commit_is_capped_at_the_last_entry_verified_to_match() {
    // The follower holds stale entries 3..=5 of term 1 the leader never sent.
    let mut n = node(1, &[1, 2, 3], 2, None, &[1, 1, 1, 1], 1);
    // Leader (term 2) sends entry 3 of term 2 with commit 5.
    step_sync(&mut n, msg(2, 1, 2, append((2, 1), &[entry(3, 2)], 5)));
    assert_eq!(n.commit_index(), LogIndex(3), "commit = min(leaderCommit, last new entry)");
    // A heartbeat does not commit past what matches either.
    step_sync(&mut n, msg(2, 1, 2, MessageBody::Heartbeat { commit: LogIndex(5), ctx: 0 }));
    assert_eq!(n.commit_index(), LogIndex(3));
}

#[test]
fn s5_3_follower_acknowledges_only_durable_entries() {
    let mut n = node(1, &[1, 2, 3], 2, None, &[], 1);
    let outs = n.step(msg(2, 1, 2, append((1, 1), &[entry(2, 2)], 1)));
    let early = sent(&outs).iter().any(|m| {
        matches!(m.body, MessageBody::AppendResp { success: true, index, .. } if index >= LogIndex(2))
    });
    assert!(!early, "acknowledged entry 2 before it was durable: {outs:?}");
    let id = outs
        .iter()
        .find_map(|o| match o {
            Output::Persist(w) => Some(w.id),
            _ => None,
        })
        .expect("entry persisted");
    let outs = n.step(Input::Persisted { through: id });
    let acked = sent(&outs).iter().any(|m| {
        matches!(m.body, MessageBody::AppendResp { success: true, index: LogIndex(2), .. })
    });
    assert!(acked, "acknowledged once durable: {outs:?}");
}

// ----- §5.4: safety -----

#[test]
fn s5_4_1_vote_goes_to_the_more_up_to_date_log_last_term_first() {
    // Voter's log: terms [1 (config), 2, 3]: last index 3, last term 3.
    let cases = [
        ((10, 2), false), // longer, but an older last term
        ((2, 3), false),  // same last term, shorter
        ((3, 3), true),   // identical
        ((2, 4), true),   // newer last term, shorter
    ];
    for ((index, term), want) in cases {
        let mut n = node(1, &[1, 2, 3], 3, None, &[2, 3], 1);
        let outs = step_sync(&mut n, msg(2, 1, 4, vote_req(index, term)));
        assert_eq!(granted_votes(&outs), vec![(NodeId(2), want)], "candidate ({index}, {term})");
    }
}

#[test]
fn s5_4_2_leader_commits_an_earlier_term_entry_only_through_its_own() {
    // Figure 8: n1 holds entry 2 of term 2, uncommitted; it becomes leader
    // of a later term and appends its no-op at 3.
    let mut n = node(1, &[1, 2, 3], 3, None, &[2], 1);
    elect(&mut n, &[2]);
    let t = n.term().0;
    assert_eq!(n.entry(LogIndex(3)).map(|e| e.term), Some(Term(t)));
    // A majority (n1 and n2) now holds entry 2, but it is from term 2.
    let ack = |index: u64| MessageBody::AppendResp {
        success: true,
        index: LogIndex(index),
        hint_index: LogIndex(0),
        hint_term: Term(0),
    };
    step_sync(&mut n, msg(2, 1, t, ack(2)));
    assert_eq!(n.commit_index(), LogIndex(1), "never commit an earlier term's entry by counting");
    // Once the current-term no-op is on a majority, both commit.
    step_sync(&mut n, msg(2, 1, t, ack(3)));
    assert_eq!(n.commit_index(), LogIndex(3));
}

#[test]
fn s5_4_2_leader_counts_itself_only_once_durable() {
    let mut n = node(1, &[1], 1, None, &[], 1);
    let mut outs = Vec::new();
    for _ in 0..100 {
        outs.extend(n.step(Input::Tick));
        if n.role() == Role::Candidate || n.role() == Role::Leader {
            break;
        }
    }
    // Drive durability one write at a time and watch commit.
    let mut done = PersistId(0);
    for _ in 0..10 {
        let pending: Vec<_> = outs
            .iter()
            .filter_map(|o| match o {
                Output::Persist(w) if w.id > done => Some(w.clone()),
                _ => None,
            })
            .collect();
        let Some(w) = pending.first() else { break };
        if let Some(last) = w.entries.last() {
            assert!(n.commit_index() < last.index, "a single voter committed before its fsync");
        }
        done = w.id;
        outs.extend(n.step(Input::Persisted { through: w.id }));
    }
    assert_eq!(n.role(), Role::Leader);
    assert_eq!(n.commit_index(), n.last_index(), "the no-op commits once durable");
}
