//! One generic driver, two state machines: the same code applies committed
//! commands, snapshots and restores both the KV store and a counter, as the
//! runtimes and the simulator do through `xraft::StateMachine`.
//!
//! Run with `cargo run -p xraft-kv --example counter`.

use std::fmt::Debug;
use std::io::Read;

use bytes::Bytes;
use xraft::{LogIndex, StateMachine};
use xraft_kv::counter::Counter;
use xraft_kv::{KvCommand, KvRequest, KvStore};

/// Applies `log` in order, snapshots, restores the snapshot into a fresh
/// machine and checks both answer the next command the same way.
fn drive<S>(name: &str, mut sm: S, fresh: S, log: &[Vec<u8>], probe: &[u8])
where
    S: StateMachine,
    S::Response: Debug + PartialEq,
{
    for (i, command) in log.iter().enumerate() {
        let response = sm.apply(LogIndex(i as u64 + 1), command);
        println!("{name}: apply #{} -> {response:?}", i + 1);
    }
    // The snapshot is frozen at once; it could be streamed on another thread.
    let mut snapshot = Vec::new();
    sm.snapshot().read_to_end(&mut snapshot).expect("in-memory snapshot");
    println!("{name}: snapshot of {} bytes", snapshot.len());

    let mut copy = fresh;
    copy.restore(&mut &snapshot[..]).expect("snapshot restores");
    let next = LogIndex(log.len() as u64 + 1);
    let (a, b) = (sm.apply(next, probe), copy.apply(next, probe));
    println!("{name}: after restore both answer {a:?}");
    assert_eq!(a, b, "restored replica diverged");
}

fn main() {
    let kv = |cmd| KvRequest::new(cmd).encode().to_vec();
    let kv_log = vec![
        kv(KvCommand::Set { key: Bytes::from("a"), value: Bytes::from("1") }),
        kv(KvCommand::Set { key: Bytes::from("b"), value: Bytes::from("2") }),
        kv(KvCommand::Delete { keys: vec![Bytes::from("a")] }),
    ];
    let probe = kv(KvCommand::MGet { keys: vec![Bytes::from("a"), Bytes::from("b")] });
    drive("kv", KvStore::default(), KvStore::default(), &kv_log, &probe);

    let counter_log: Vec<Vec<u8>> = [5, -2, 40].map(|d| Counter::add(d).to_vec()).to_vec();
    drive("counter", Counter::default(), Counter::default(), &counter_log, &Counter::add(0));
}
