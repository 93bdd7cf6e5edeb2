//! Peer wire format: every message round-trips, bad frames are refused with
//! a typed error and never a panic, and the fuzz corpus replays cleanly.

use bytes::Bytes;
use proptest::prelude::*;
use xraft::wire::{decode_frame, encode_frame, frame_to_vec, fuzz_check, FrameError};
use xraft::{
    Entry, EntryKind, EntryVec, ForwardResult, Forwarded, LogIndex, Membership, MembershipChange,
    Message, MessageBody, NodeId, ProposeError, RequestId, SnapshotMeta, Term,
};

fn arb_entry() -> impl Strategy<Value = Entry> {
    (any::<u64>(), any::<u64>(), 0u8..3, proptest::collection::vec(any::<u8>(), 0..64)).prop_map(
        |(i, t, k, d)| Entry {
            index: LogIndex(i),
            term: Term(t),
            kind: match k {
                0 => EntryKind::Normal,
                1 => EntryKind::Noop,
                _ => EntryKind::Config,
            },
            data: Bytes::from(d),
        },
    )
}

fn arb_meta() -> impl Strategy<Value = SnapshotMeta> {
    (any::<u64>(), any::<u64>(), proptest::collection::btree_set(1u64..9, 0..4)).prop_map(
        |(i, t, v)| SnapshotMeta {
            index: LogIndex(i),
            term: Term(t),
            membership: Membership::with_voters(v.into_iter().map(NodeId)),
        },
    )
}

fn arb_change() -> impl Strategy<Value = MembershipChange> {
    (0u8..4, any::<u64>()).prop_map(|(k, id)| match k {
        0 => MembershipChange::AddVoter { id: NodeId(id), addr: format!("h{id}:7001") },
        1 => MembershipChange::AddLearner { id: NodeId(id), addr: String::new() },
        2 => MembershipChange::Promote(NodeId(id)),
        _ => MembershipChange::Remove(NodeId(id)),
    })
}

fn arb_forwarded() -> impl Strategy<Value = Forwarded> {
    prop_oneof![
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..16), 1..4)
            .prop_map(|cs| Forwarded::Propose(cs.into_iter().map(Bytes::from).collect())),
        Just(Forwarded::ReadIndex),
        arb_change().prop_map(Forwarded::ChangeMembership),
        any::<u64>().prop_map(|id| Forwarded::Transfer(NodeId(id))),
    ]
}

fn arb_result() -> impl Strategy<Value = ForwardResult> {
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(t, f, l)| ForwardResult::Proposed {
            term: Term(t),
            first: LogIndex(f),
            last: LogIndex(l)
        }),
        any::<u64>().prop_map(|i| ForwardResult::ReadIndex(LogIndex(i))),
        Just(ForwardResult::Completed),
        Just(ForwardResult::Rejected(ProposeError::ConfigInFlight)),
        any::<u64>().prop_map(|l| ForwardResult::Rejected(ProposeError::NotLeader {
            leader_hint: Some(NodeId(l))
        })),
        Just(ForwardResult::Rejected(ProposeError::TooLarge("big".into()))),
    ]
}

fn arb_body() -> impl Strategy<Value = MessageBody> {
    prop_oneof![
        (any::<bool>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(p, i, t, x)| {
            MessageBody::RequestVote {
                pre_vote: p,
                last_log_index: LogIndex(i),
                last_log_term: Term(t),
                transfer: x,
            }
        }),
        (any::<bool>(), any::<bool>())
            .prop_map(|(p, g)| MessageBody::RequestVoteResp { pre_vote: p, granted: g }),
        (any::<u64>(), any::<u64>(), any::<u64>(), proptest::collection::vec(arb_entry(), 0..5))
            .prop_map(|(i, t, c, es)| MessageBody::Append {
                prev_index: LogIndex(i),
                prev_term: Term(t),
                commit: LogIndex(c),
                entries: EntryVec::from_vec(es),
            }),
        (any::<bool>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(s, i, hi, ht)| {
            MessageBody::AppendResp {
                success: s,
                index: LogIndex(i),
                hint_index: LogIndex(hi),
                hint_term: Term(ht),
            }
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(c, x)| MessageBody::Heartbeat { commit: LogIndex(c), ctx: x }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(i, x)| MessageBody::HeartbeatResp { index: LogIndex(i), ctx: x }),
        Just(MessageBody::TimeoutNow),
        (arb_meta(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..64), any::<bool>())
            .prop_map(|(meta, offset, d, done)| MessageBody::InstallSnapshot {
                meta,
                offset,
                data: Bytes::from(d),
                done
            }),
        (any::<u64>(), any::<u64>(), any::<bool>()).prop_map(|(i, o, d)| {
            MessageBody::InstallSnapshotResp { index: LogIndex(i), next_offset: o, done: d }
        }),
        (any::<u64>(), arb_forwarded())
            .prop_map(|(c, r)| MessageBody::Forward { ctx: RequestId(c), request: r }),
        (any::<u64>(), arb_result())
            .prop_map(|(c, r)| MessageBody::ForwardResp { ctx: RequestId(c), result: r }),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    (any::<u64>(), any::<u64>(), any::<u64>(), arb_body()).prop_map(|(f, t, term, body)| Message {
        from: NodeId(f),
        to: NodeId(t),
        term: Term(term),
        body,
    })
}

proptest! {
    #[test]
    fn every_message_round_trips(msgs in proptest::collection::vec(arb_message(), 1..8)) {
        let mut buf = Vec::new();
        for m in &msgs {
            encode_frame(m, &mut buf);
        }
        let mut rest = buf.as_slice();
        for m in &msgs {
            let (got, used) = decode_frame(rest, 1 << 20).expect("valid").expect("complete");
            prop_assert_eq!(&got, m);
            rest = &rest[used..];
        }
        prop_assert!(rest.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        fuzz_check(&data);
    }

    #[test]
    fn a_flipped_bit_is_detected(m in arb_message(), bit in any::<proptest::sample::Index>()) {
        let mut f = frame_to_vec(&m);
        let payload_bits = (f.len() - 8) * 8;
        let b = 64 + bit.index(payload_bits);
        f[b / 8] ^= 1 << (b % 8);
        let bad = matches!(decode_frame(&f, 1 << 20), Err(FrameError::Checksum { .. }));
        prop_assert!(bad, "a flipped payload bit must fail the checksum");
    }
}

fn sample() -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(3),
        body: MessageBody::Heartbeat { commit: LogIndex(9), ctx: 4 },
    }
}

#[test]
fn every_prefix_is_incomplete_not_an_error() {
    let f = frame_to_vec(&sample());
    for cut in 0..f.len() {
        assert_eq!(decode_frame(&f[..cut], 1 << 20), Ok(None), "prefix of {cut} bytes");
    }
}

#[test]
fn oversized_frames_are_refused_before_buffering() {
    let mut f = frame_to_vec(&sample());
    f[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(decode_frame(&f[..8], 1 << 20), Err(FrameError::TooLarge { .. })));
}

#[test]
fn trailing_and_malformed_payloads_are_errors() {
    // A valid checksum over bytes that are not a message.
    let payload = [0xffu8; 5];
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    f.extend_from_slice(&payload);
    assert!(matches!(decode_frame(&f, 1 << 20), Err(FrameError::Malformed(_))));
    // A valid message followed by junk inside the same frame.
    let mut payload = postcard::to_allocvec(&sample()).expect("encodes");
    payload.push(0);
    let mut f = (payload.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    f.extend_from_slice(&payload);
    assert_eq!(decode_frame(&f, 1 << 20), Err(FrameError::Trailing(1)));
}

fn corpus_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/frame_decode")
}

#[test]
#[allow(clippy::disallowed_methods)] // test-only read of the committed corpus
fn fuzz_corpus_replays() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("corpus directory exists") {
        let path = entry.expect("readable entry").path();
        let data = std::fs::read(&path).expect("readable corpus file");
        fuzz_check(&data);
        n += 1;
    }
    assert!(n >= seed_bodies().len(), "the corpus has seed inputs ({n} found)");
}

/// One message of each kind, the committed seed corpus.
fn seed_bodies() -> Vec<MessageBody> {
    let meta = SnapshotMeta {
        index: LogIndex(40),
        term: Term(3),
        membership: Membership::with_voters([NodeId(1), NodeId(2), NodeId(3)]),
    };
    vec![
        MessageBody::RequestVote {
            pre_vote: true,
            last_log_index: LogIndex(5),
            last_log_term: Term(2),
            transfer: false,
        },
        MessageBody::RequestVoteResp { pre_vote: false, granted: true },
        MessageBody::Append {
            prev_index: LogIndex(4),
            prev_term: Term(2),
            commit: LogIndex(3),
            entries: EntryVec::from_vec(vec![Entry {
                index: LogIndex(5),
                term: Term(2),
                kind: EntryKind::Normal,
                data: Bytes::from_static(b"hello"),
            }]),
        },
        MessageBody::AppendResp {
            success: false,
            index: LogIndex(9),
            hint_index: LogIndex(4),
            hint_term: Term(1),
        },
        MessageBody::Heartbeat { commit: LogIndex(7), ctx: 2 },
        MessageBody::HeartbeatResp { index: LogIndex(7), ctx: 2 },
        MessageBody::TimeoutNow,
        MessageBody::InstallSnapshot {
            meta,
            offset: 0,
            data: Bytes::from_static(b"state"),
            done: true,
        },
        MessageBody::InstallSnapshotResp { index: LogIndex(40), next_offset: 5, done: true },
        MessageBody::Forward {
            ctx: RequestId(8),
            request: Forwarded::Propose([Bytes::from_static(b"cmd")].into_iter().collect()),
        },
        MessageBody::ForwardResp {
            ctx: RequestId(8),
            result: ForwardResult::Proposed {
                term: Term(3),
                first: LogIndex(41),
                last: LogIndex(41),
            },
        },
    ]
}

/// The committed seed corpus: one valid frame per message kind, up to date
/// with the format.
#[test]
#[allow(clippy::disallowed_methods)] // test-only check of the committed corpus
fn corpus_has_a_seed_per_message_kind() {
    for (k, body) in seed_bodies().into_iter().enumerate() {
        let m = Message { from: NodeId(1), to: NodeId(2), term: Term(2), body };
        let path = corpus_dir().join(format!("seed-{k}"));
        if std::env::var_os("XRAFT_WRITE_CORPUS").is_some() {
            std::fs::write(&path, frame_to_vec(&m)).expect("write seed");
        }
        let got = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            got,
            frame_to_vec(&m),
            "{} is stale: rerun with XRAFT_WRITE_CORPUS=1",
            path.display()
        );
    }
}
