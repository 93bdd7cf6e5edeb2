//! The KV store: the built-in [`StateMachine`].
//!
//! Owns the key space (a hash table with a fixed-seed hasher, see
//! [`crate::keyspace`]; snapshots sort its keys as they stream), the session
//! table, the applied index and the [`WatchHub`]. Invariants: the applied index only grows through `apply` and
//! is replaced by `restore`; every state change goes through
//! [`KvStore::apply`] with the command's index, and every change to a key
//! notifies the hub once, in index order; `restore` replaces key space,
//! sessions and applied index together or not at all, and emits no events.
//!
//! The maps sit behind `Arc`s so [`StateMachine::snapshot`] is O(1): see
//! [`crate::snapshot`] for the copy-on-write cost this moves to the next write.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use xraft::{LogIndex, StateMachine};

use crate::command::{KvCommand, KvError, KvRequest, KvResponse};
use crate::keyspace::KeySpace;
use crate::session::{Check, Sessions};
use crate::snapshot::{self, KvSnapshot, SnapshotError};
use crate::watch::{WatchConfig, WatchHub};

/// Configuration of a [`KvStore`].
///
/// `sessions_max` is part of the replicated semantics (which session is
/// evicted when): it MUST be the same on every replica of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvConfig {
    /// Client sessions kept before the idlest is evicted (default 100,000).
    pub sessions_max: usize,
    /// Largest key or value accepted when restoring a snapshot (default
    /// 512 MiB, Redis's bound). Guards against corrupt lengths; admission of
    /// large values is bounded earlier, by the client protocol.
    pub restore_item_bytes_max: u64,
    /// Bounds of the watcher registry (local to this node).
    pub watch: WatchConfig,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            sessions_max: 100_000,
            restore_item_bytes_max: 512 << 20,
            watch: WatchConfig::default(),
        }
    }
}

/// The replicated key-value store. See the module doc.
#[derive(Debug)]
pub struct KvStore {
    config: KvConfig,
    data: Arc<KeySpace>,
    sessions: Sessions,
    applied: LogIndex,
    watches: WatchHub,
}

impl Default for KvStore {
    fn default() -> Self {
        KvStore::new(KvConfig::default())
    }
}

impl KvStore {
    /// An empty store at index zero.
    pub fn new(config: KvConfig) -> Self {
        let watches = WatchHub::new(config.watch.clone());
        KvStore {
            config,
            data: Arc::default(),
            sessions: Sessions::default(),
            applied: LogIndex::ZERO,
            watches,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &KvConfig {
        &self.config
    }

    /// Index of the last command applied (or of the restored snapshot).
    pub fn applied_index(&self) -> LogIndex {
        self.applied
    }

    /// The value of `key`, read locally. Linearizable only after a ReadIndex
    /// round whose index this store has applied.
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.data.get(key)
    }

    /// Whether `key` exists, read locally.
    pub fn exists(&self, key: &[u8]) -> bool {
        self.data.contains(key)
    }

    /// The values of `keys`, in order, read locally.
    pub fn mget<K: AsRef<[u8]>>(&self, keys: &[K]) -> Vec<Option<Bytes>> {
        keys.iter().map(|k| self.data.get(k.as_ref()).cloned()).collect()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Number of open client sessions.
    pub fn sessions_len(&self) -> usize {
        self.sessions.len()
    }

    /// Every key and value in key order. Sorts: O(keys · log keys).
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.data.sorted().into_iter()
    }

    /// The watcher registry: register and unregister watchers here.
    pub fn watches(&self) -> &WatchHub {
        &self.watches
    }

    /// The watcher registry, to register watchers and drain their queues.
    pub fn watches_mut(&mut self) -> &mut WatchHub {
        &mut self.watches
    }

    /// [`StateMachine::apply`] for a payload in its own buffer (a log entry's
    /// `data`): the same outcome, but keys and values are decoded without a
    /// copy ([`KvRequest::decode_shared`]), so the store keeps slices of
    /// `command`. Don't pass a slice of a larger buffer that should be freed.
    pub fn apply_shared(&mut self, index: LogIndex, command: &Bytes) -> KvResponse {
        match KvRequest::decode_shared(command) {
            Ok(request) => self.apply_request(index, request),
            Err(_) => {
                debug_assert!(index > self.applied, "apply at {index:?} after {:?}", self.applied);
                self.applied = index;
                KvResponse::Error(KvError::Malformed)
            }
        }
    }

    /// Applies a decoded request at `index` (what [`StateMachine::apply`]
    /// does after decoding). `index` must exceed the applied index.
    pub fn apply_request(&mut self, index: LogIndex, request: KvRequest) -> KvResponse {
        debug_assert!(index > self.applied, "apply at {index:?} after {:?}", self.applied);
        self.applied = index;
        match request.session {
            Some(tag) if request.command.is_write() => match self.sessions.check(tag) {
                Check::Execute => {
                    let response = self.execute(index, request.command);
                    self.sessions.record(tag, index.0, response.clone());
                    response
                }
                Check::Duplicate(response) => response,
                Check::Refuse(error) => KvResponse::Error(error),
            },
            _ => self.execute(index, request.command),
        }
    }

    /// Panics if an internal invariant is broken. For tests and the simulator.
    pub fn check_invariants(&self) {
        self.sessions.check_invariants();
        self.watches.check_invariants();
    }

    fn execute(&mut self, index: LogIndex, command: KvCommand) -> KvResponse {
        match command {
            KvCommand::Set { key, value } => {
                self.watches.notify(&key, Some(&value), index);
                Arc::make_mut(&mut self.data).insert(key, value);
                KvResponse::Ok
            }
            KvCommand::Delete { keys } => {
                let data = Arc::make_mut(&mut self.data);
                let mut deleted = 0;
                for key in keys {
                    if let Some((key, _)) = data.remove(&key) {
                        self.watches.notify(&key, None, index);
                        deleted += 1;
                    }
                }
                KvResponse::Count(deleted)
            }
            KvCommand::Get { key } => KvResponse::Value(self.data.get(&key).cloned()),
            KvCommand::Exists { keys } => {
                KvResponse::Count(keys.iter().filter(|k| self.data.contains(k)).count() as u64)
            }
            KvCommand::MGet { keys } => KvResponse::Values(self.mget(&keys)),
            KvCommand::OpenSession => KvResponse::SessionOpened {
                client: self.sessions.open(index.0, self.config.sessions_max),
            },
        }
    }
}

impl StateMachine for KvStore {
    type Response = KvResponse;
    type Snapshot = KvSnapshot;
    type Error = SnapshotError;

    /// Decodes the [`KvRequest`] and applies it; an undecodable payload
    /// answers [`KvError::Malformed`] (and still advances the applied index).
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> KvResponse {
        match KvRequest::decode(command) {
            Ok(request) => self.apply_request(index, request),
            Err(_) => {
                debug_assert!(index > self.applied, "apply at {index:?} after {:?}", self.applied);
                self.applied = index;
                KvResponse::Error(KvError::Malformed)
            }
        }
    }

    /// O(1): freezes the key space and sessions by cloning their `Arc`s.
    fn snapshot(&self) -> KvSnapshot {
        KvSnapshot::new(self.applied, Arc::clone(&self.data), self.sessions.frozen())
    }

    /// Replaces keys, sessions and applied index with the snapshot's, once it
    /// has been read and verified in full. Watchers stay registered, get no
    /// events for the restored keys, and each gets a `Restored` marker.
    fn restore(&mut self, input: &mut dyn io::Read) -> Result<(), SnapshotError> {
        let decoded = snapshot::decode(input, self.config.restore_item_bytes_max)?;
        self.data = Arc::new(decoded.data);
        self.sessions = Sessions::from_map(decoded.sessions);
        self.applied = decoded.applied;
        self.watches.notify_restored(decoded.applied);
        Ok(())
    }
}
