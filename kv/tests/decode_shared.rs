//! `KvRequest::decode_shared` (zero-copy) gives exactly `KvRequest::decode`'s
//! result (postcard) on every input: valid requests, mutated ones, and noise;
//! `KvRequest::encode` writes exactly postcard's bytes.
use bytes::Bytes;
use proptest::prelude::*;
use xraft_kv::{KvCommand, KvRequest, SessionTag};

fn same(data: &[u8]) -> Result<(), TestCaseError> {
    let shared = KvRequest::decode_shared(&Bytes::copy_from_slice(data));
    prop_assert_eq!(shared, KvRequest::decode(data), "input {:?}", data);
    Ok(())
}

fn bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn request() -> impl Strategy<Value = KvRequest> {
    let keys = || prop::collection::vec(bytes(), 0..4);
    let command = prop_oneof![
        (bytes(), bytes()).prop_map(|(key, value)| KvCommand::Set { key, value }),
        keys().prop_map(|keys| KvCommand::Delete { keys }),
        bytes().prop_map(|key| KvCommand::Get { key }),
        keys().prop_map(|keys| KvCommand::Exists { keys }),
        keys().prop_map(|keys| KvCommand::MGet { keys }),
        Just(KvCommand::OpenSession),
    ];
    let tag = prop::option::of((any::<u64>(), any::<u64>()))
        .prop_map(|t| t.map(|(client, seq)| SessionTag { client, seq }));
    (tag, command).prop_map(|(session, command)| KvRequest { session, command })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2048,
        // Fixed seed: the same cases on every run (new seeds: change it).
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6b76_0004),
        ..ProptestConfig::default()
    })]

    #[test]
    fn valid_requests_decode_alike(req in request()) {
        let enc = req.encode();
        // The hand-written encoder writes exactly postcard's bytes.
        prop_assert_eq!(&enc[..], &postcard::to_allocvec(&req).expect("encodes")[..]);
        prop_assert_eq!(KvRequest::decode_shared(&enc), Ok(req));
    }

    #[test]
    fn mutated_requests_decode_alike(
        req in request(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
        extra in prop::collection::vec(any::<u8>(), 0..3),
    ) {
        let mut enc = req.encode().to_vec();
        if !enc.is_empty() {
            for (at, b) in edits {
                let i = at.index(enc.len());
                enc[i] = b;
            }
        }
        same(&enc)?;
        same(&enc[..cut.index(enc.len() + 1)])?;
        enc.extend_from_slice(&extra);
        same(&enc)?;
    }

    #[test]
    fn noise_decodes_alike(data in prop::collection::vec(any::<u8>(), 0..40)) {
        same(&data)?;
    }

    #[test]
    fn varint_edges_decode_alike(
        tag in 0u8..3,
        varint in prop::collection::vec(prop_oneof![Just(0x80u8), Just(0xff), Just(0x00), Just(0x01), Just(0x02), Just(0x7f), Just(0x0f), Just(0x10)], 1..12),
        rest in prop::collection::vec(any::<u8>(), 0..12),
    ) {
        // Session ids, variant numbers and lengths made of edge bytes.
        let mut data = vec![tag];
        data.extend_from_slice(&varint);
        data.extend_from_slice(&rest);
        same(&data)?;
        let mut data = vec![0u8];
        data.extend_from_slice(&varint);
        data.extend_from_slice(&rest);
        same(&data)?;
        let mut data = vec![0u8, 1];
        data.extend_from_slice(&varint);
        data.extend_from_slice(&rest);
        same(&data)?;
    }
}
