//! Watchers: who wants to hear about which keys, and their pending events.
//!
//! Owns the [`WatchHub`], a pure data structure: the store calls
//! [`WatchHub::notify`] for every committed change, the hub appends one
//! [`WatchEvent`] to the queue of every watcher whose [`Pattern`] matches, and
//! a runtime drains those queues ([`WatchHub::take_ready`], [`WatchHub::pop`],
//! [`WatchHub::drain_into`]) into whatever channels or callbacks it offers.
//! Watchers are local to a node and are not replicated.
//!
//! Invariants:
//! - Events reach each watcher in commit (log index) order, one per matching
//!   change; a key matched by two of a watcher's patterns is impossible (one
//!   pattern per watcher).
//! - Matching costs O(key length + matches), independent of how many
//!   watchers are registered: exact keys are one hash lookup (a lookup-only
//!   hashbrown map; its order never reaches an output), prefixes a walk of a
//!   radix trie along the key's bytes. Every non-root trie node holds a
//!   watcher or branches, so the trie has at most twice as many nodes as
//!   prefix watchers.
//! - Each watcher's queue holds at most `queue_events_max` events. When it is
//!   full further events for *that* watcher are dropped and counted in a
//!   [`WatchItem::Lagged`] marker; no other watcher is affected, and nothing
//!   the hub does waits on a consumer.
//! - Restoring a snapshot emits no events; each watcher gets one
//!   [`WatchItem::Restored`] marker saying its view jumped to the snapshot.

use std::collections::VecDeque;

use bytes::Bytes;
use hashbrown::HashMap;
use smallvec::SmallVec;
use thiserror::Error;
use xraft::LogIndex;

/// Bounds of a [`WatchHub`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchConfig {
    /// Events a watcher's queue holds before further ones are dropped
    /// (default 1,024).
    pub queue_events_max: usize,
    /// Watchers registered at once (default 100,000).
    pub watchers_max: usize,
    /// Longest pattern accepted, in bytes (default 4,096).
    pub pattern_bytes_max: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        WatchConfig { queue_events_max: 1024, watchers_max: 100_000, pattern_bytes_max: 4096 }
    }
}

/// What a watcher is interested in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Exactly this key.
    Exact(Bytes),
    /// Every key that starts with these bytes (the empty prefix matches all).
    Prefix(Bytes),
}

impl Pattern {
    /// Parses the textual form: a pattern ending in `**` is a prefix pattern
    /// for everything before the `**` (`user.**` watches every key starting
    /// with `user.`, `**` watches all keys); anything else is an exact key.
    pub fn parse(pattern: &[u8]) -> Pattern {
        match pattern.strip_suffix(b"**") {
            Some(prefix) => Pattern::Prefix(Bytes::copy_from_slice(prefix)),
            None => Pattern::Exact(Bytes::copy_from_slice(pattern)),
        }
    }

    /// Whether a change to `key` concerns this pattern.
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            Pattern::Exact(k) => k.as_ref() == key,
            Pattern::Prefix(p) => key.starts_with(p),
        }
    }

    fn bytes(&self) -> &Bytes {
        match self {
            Pattern::Exact(b) | Pattern::Prefix(b) => b,
        }
    }
}

/// Names one registered watcher. Never reused while the hub lives: a stale
/// id is refused, it never reaches a newer watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WatchId(pub u64);

impl WatchId {
    fn new(slot: u32, generation: u32) -> Self {
        WatchId(u64::from(generation) << 32 | u64::from(slot))
    }
    fn slot(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }
}

/// One committed change to a watched key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The key that changed.
    pub key: Bytes,
    /// Its new value, or `None` if it was deleted.
    pub value: Option<Bytes>,
    /// The log index of the command that made the change.
    pub index: LogIndex,
}

/// What a watcher's queue yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    /// A change to a matching key.
    Event(WatchEvent),
    /// The queue was full: this many events for this watcher were dropped
    /// here. The watcher should re-read the keys it cares about.
    Lagged {
        /// Events dropped.
        dropped: u64,
    },
    /// The store was replaced by a snapshot covering the log through `index`:
    /// changes up to `index` not already reported will never be. No events
    /// are emitted for the restored state.
    Restored {
        /// Last index the snapshot covers.
        index: LogIndex,
    },
}

/// Why a watch request was refused.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchError {
    /// The hub already holds `watchers_max` watchers.
    #[error("too many watchers (limit {max})")]
    TooMany {
        /// The bound in force.
        max: usize,
    },
    /// The pattern is longer than `pattern_bytes_max`.
    #[error("watch pattern of {len} bytes exceeds the limit of {max} bytes")]
    PatternTooLong {
        /// The pattern's length.
        len: usize,
        /// The bound in force.
        max: usize,
    },
    /// No watcher has this id (never registered, or unwatched).
    #[error("unknown watcher {0:?}")]
    Unknown(WatchId),
}

/// The registry of watchers and their queues. See the module doc.
#[derive(Debug)]
pub struct WatchHub {
    config: WatchConfig,
    /// Exact-key watchers by key. Lookup only: never iterated.
    exact: HashMap<Bytes, SmallVec<[u32; 1]>>,
    /// Prefix watchers.
    trie: Trie,
    slots: Vec<Slot>,
    free_slots: Vec<u32>,
    live: usize,
    ready: Vec<WatchId>,
}

impl Default for WatchHub {
    fn default() -> Self {
        WatchHub::new(WatchConfig::default())
    }
}

impl WatchHub {
    /// An empty hub with these bounds.
    pub fn new(config: WatchConfig) -> Self {
        WatchHub {
            config,
            exact: HashMap::new(),
            trie: Trie::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            live: 0,
            ready: Vec::new(),
        }
    }

    /// The bounds in force.
    pub fn config(&self) -> &WatchConfig {
        &self.config
    }

    /// Registers a watcher for `pattern`; it hears of changes committed from
    /// now on.
    pub fn watch(&mut self, pattern: Pattern) -> Result<WatchId, WatchError> {
        let len = pattern.bytes().len();
        if len > self.config.pattern_bytes_max {
            return Err(WatchError::PatternTooLong { len, max: self.config.pattern_bytes_max });
        }
        if self.live >= self.config.watchers_max {
            return Err(WatchError::TooMany { max: self.config.watchers_max });
        }
        let slot = match self.free_slots.pop() {
            Some(slot) => slot,
            None => {
                let slot = u32::try_from(self.slots.len())
                    .expect("watchers_max keeps the slot count within u32");
                self.slots.push(Slot { generation: 0, watcher: None });
                slot
            }
        };
        match &pattern {
            Pattern::Exact(key) => self.exact.entry(key.clone()).or_default().push(slot),
            Pattern::Prefix(prefix) => self.trie.insert(prefix, slot),
        }
        let entry = &mut self.slots[slot as usize];
        entry.watcher = Some(Watcher { pattern, queue: VecDeque::new(), events: 0, ready: false });
        self.live += 1;
        Ok(WatchId::new(slot, entry.generation))
    }

    /// Removes a watcher, dropping its pending items, and returns its pattern.
    pub fn unwatch(&mut self, id: WatchId) -> Result<Pattern, WatchError> {
        self.watcher(id)?;
        let entry = &mut self.slots[id.slot()];
        let watcher = entry.watcher.take().expect("checked by watcher()");
        entry.generation = entry.generation.wrapping_add(1);
        let slot = id.slot() as u32;
        match &watcher.pattern {
            Pattern::Exact(key) => {
                let slots = self.exact.get_mut(key).expect("registered exact key is mapped");
                slots.retain(|s| *s != slot);
                if slots.is_empty() {
                    self.exact.remove(key);
                }
            }
            Pattern::Prefix(prefix) => self.trie.remove(prefix, slot),
        }
        self.free_slots.push(slot);
        self.live -= 1;
        Ok(watcher.pattern)
    }

    /// Number of registered watchers.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no watcher is registered.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The pattern a watcher was registered with.
    pub fn pattern(&self, id: WatchId) -> Result<&Pattern, WatchError> {
        Ok(&self.watcher(id)?.pattern)
    }

    /// Items waiting in a watcher's queue.
    pub fn queued(&self, id: WatchId) -> Result<usize, WatchError> {
        Ok(self.watcher(id)?.queue.len())
    }

    /// Moves into `out` (after clearing it) every watcher that was given an
    /// item since the last call, each once, in the order they were first
    /// given one. A runtime calls this after applying a batch and drains
    /// those watchers; a watcher it leaves items in is not listed again until
    /// it gets another item.
    pub fn take_ready(&mut self, out: &mut Vec<WatchId>) {
        out.clear();
        std::mem::swap(out, &mut self.ready);
        // Watchers unwatched since they became ready are dropped from the list.
        let slots = &mut self.slots;
        out.retain(|id| {
            let entry = &mut slots[id.slot()];
            match entry.watcher.as_mut() {
                Some(w) if entry.generation == id.generation() => {
                    w.ready = false;
                    true
                }
                _ => false,
            }
        });
    }

    /// Takes the oldest item from a watcher's queue.
    pub fn pop(&mut self, id: WatchId) -> Result<Option<WatchItem>, WatchError> {
        let w = self.watcher_mut(id)?;
        let item = w.queue.pop_front();
        if let Some(WatchItem::Event(_)) = item {
            w.events -= 1;
        }
        Ok(item)
    }

    /// Moves up to `max` of a watcher's oldest items to `out`, in order, and
    /// returns how many were moved.
    pub fn drain_into(
        &mut self,
        id: WatchId,
        max: usize,
        out: &mut Vec<WatchItem>,
    ) -> Result<usize, WatchError> {
        let w = self.watcher_mut(id)?;
        let n = max.min(w.queue.len());
        for item in w.queue.drain(..n) {
            if let WatchItem::Event(_) = item {
                w.events -= 1;
            }
            out.push(item);
        }
        Ok(n)
    }

    /// Reports a committed change: `value` is the new value, `None` a
    /// deletion; `index` the command's log index. Called by the store, in
    /// index order; a custom state machine with keyed state can call it too.
    pub fn notify(&mut self, key: &Bytes, value: Option<&Bytes>, index: LogIndex) {
        if self.live == 0 {
            return;
        }
        let (slots, ready, cap) = (&mut self.slots, &mut self.ready, self.config.queue_events_max);
        let exact = self.exact.get(key.as_ref()).map_or(&[][..], |s| &s[..]);
        let mut deliver = |slot: u32| {
            let entry = &mut slots[slot as usize];
            let generation = entry.generation;
            let w = entry.watcher.as_mut().expect("trie holds only live watchers");
            let event = WatchEvent { key: key.clone(), value: value.cloned(), index };
            if w.push_event(event, cap) && !w.ready {
                w.ready = true;
                ready.push(WatchId::new(slot, generation));
            }
        };
        exact.iter().for_each(|&slot| deliver(slot));
        self.trie.for_each_match(key, deliver);
    }

    /// Reports that the state was replaced by a snapshot through `index`:
    /// every watcher gets a [`WatchItem::Restored`] marker and no events.
    /// The markers after a watcher's last queued event fold into at most
    /// `Lagged` then `Restored` (a later restore supersedes an earlier one,
    /// and the drops between them add up), so the queue stays bounded.
    pub fn notify_restored(&mut self, index: LogIndex) {
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            let Some(w) = entry.watcher.as_mut() else { continue };
            let mut dropped = 0;
            while let Some(m) = w.queue.back() {
                match m {
                    WatchItem::Lagged { dropped: d } => dropped += d,
                    WatchItem::Restored { .. } => {}
                    WatchItem::Event(_) => break,
                }
                w.queue.pop_back();
            }
            if dropped > 0 {
                w.queue.push_back(WatchItem::Lagged { dropped });
            }
            w.queue.push_back(WatchItem::Restored { index });
            if !w.ready {
                w.ready = true;
                self.ready.push(WatchId::new(slot as u32, entry.generation));
            }
        }
    }

    /// Checks the structural invariants (trie shape and bookkeeping); panics
    /// on a violation. For tests and debug builds.
    pub fn check_invariants(&self) {
        let mut live = 0;
        for entry in &self.slots {
            if let Some(w) = &entry.watcher {
                live += 1;
                let events = w.queue.iter().filter(|i| matches!(i, WatchItem::Event(_))).count();
                assert_eq!(events, w.events, "event count drifted");
                assert!(w.events <= self.config.queue_events_max, "queue over its bound");
            }
        }
        assert_eq!(live, self.live, "live count drifted");
        let exact: usize = self.exact.values().map(|s| s.len()).sum();
        assert!(self.exact.values().all(|s| !s.is_empty()), "empty exact entry kept");
        assert_eq!(exact + self.trie.registrations(), self.live, "index and slots disagree");
        self.trie.check_invariants();
    }

    fn watcher(&self, id: WatchId) -> Result<&Watcher, WatchError> {
        self.slots
            .get(id.slot())
            .filter(|e| e.generation == id.generation())
            .and_then(|e| e.watcher.as_ref())
            .ok_or(WatchError::Unknown(id))
    }

    fn watcher_mut(&mut self, id: WatchId) -> Result<&mut Watcher, WatchError> {
        self.slots
            .get_mut(id.slot())
            .filter(|e| e.generation == id.generation())
            .and_then(|e| e.watcher.as_mut())
            .ok_or(WatchError::Unknown(id))
    }
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    watcher: Option<Watcher>,
}

#[derive(Debug)]
struct Watcher {
    pattern: Pattern,
    queue: VecDeque<WatchItem>,
    /// `Event` items in `queue`; markers do not count against the bound.
    events: usize,
    /// Listed in `WatchHub::ready`.
    ready: bool,
}

impl Watcher {
    /// Queues `event` or counts it as dropped. Returns whether the queue got
    /// a new item (event or new marker). After each event at most three
    /// markers follow (`Lagged`, `Restored`, `Lagged`: see
    /// `WatchHub::notify_restored`), so the queue holds at most
    /// `cap + 3 * (cap + 1)` items.
    fn push_event(&mut self, event: WatchEvent, cap: usize) -> bool {
        if self.events < cap {
            self.queue.push_back(WatchItem::Event(event));
            self.events += 1;
            return true;
        }
        if let Some(WatchItem::Lagged { dropped }) = self.queue.back_mut() {
            *dropped += 1;
            false
        } else {
            self.queue.push_back(WatchItem::Lagged { dropped: 1 });
            true
        }
    }
}

/// A radix trie over prefix bytes. Node 0 is the root (empty label); every
/// other node's `label` is the bytes on the edge from its parent, and the
/// concatenated labels from the root spell the prefix that ends there.
///
/// Layout: a walk reads one 64-byte `Node` per level (label and child table
/// inline for the common short labels and small fan-outs); the watcher lists
/// sit in a parallel vector, read only at nodes that have watchers.
#[derive(Debug)]
struct Trie {
    nodes: Vec<Node>,
    /// Watcher slots whose prefix ends at the node of the same index.
    watchers: Vec<SmallVec<[u32; 1]>>,
    free: Vec<u32>,
}

/// Edge labels are short in practice (key segments); up to 16 bytes live
/// inline in the node.
type Label = SmallVec<[u8; 16]>;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Node {
    label: Label,
    /// `(first byte of the child's label, child index)`, sorted by byte,
    /// bytes distinct.
    children: SmallVec<[(u8, u32); 2]>,
    /// Whether `Trie::watchers` at this index is non-empty.
    has_watchers: bool,
}

// The walk's memory cost is one cache line per level.
const _: () = assert!(std::mem::size_of::<Node>() == 64);

const ROOT: u32 = 0;

impl Trie {
    fn new() -> Self {
        Trie { nodes: vec![Node::default()], watchers: vec![SmallVec::new()], free: Vec::new() }
    }

    fn node(&self, i: u32) -> &Node {
        &self.nodes[i as usize]
    }

    fn node_mut(&mut self, i: u32) -> &mut Node {
        &mut self.nodes[i as usize]
    }

    /// The child of `n` whose label starts with `byte`: `Ok((position, node))`
    /// or `Err(insertion position)`.
    fn child(&self, n: u32, byte: u8) -> Result<(usize, u32), usize> {
        let children = &self.node(n).children;
        children.binary_search_by_key(&byte, |&(b, _)| b).map(|pos| (pos, children[pos].1))
    }

    fn alloc(&mut self, node: Node) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.watchers.push(SmallVec::new());
                u32::try_from(self.nodes.len() - 1).expect("trie nodes within u32")
            }
        }
    }

    fn release(&mut self, i: u32) {
        self.nodes[i as usize] = Node::default();
        self.watchers[i as usize] = SmallVec::new();
        self.free.push(i);
    }

    fn insert(&mut self, prefix: &[u8], slot: u32) {
        let n = self.node_for(prefix);
        self.watchers[n as usize].push(slot);
        self.node_mut(n).has_watchers = true;
    }

    /// The node spelling exactly `path`, created (splitting an edge if
    /// needed) if absent.
    fn node_for(&mut self, path: &[u8]) -> u32 {
        let mut n = ROOT;
        let mut off = 0;
        while off < path.len() {
            match self.child(n, path[off]) {
                Err(pos) => {
                    let label = Label::from_slice(&path[off..]);
                    let leaf = self.alloc(Node { label, ..Node::default() });
                    self.node_mut(n).children.insert(pos, (path[off], leaf));
                    return leaf;
                }
                Ok((pos, c)) => {
                    let label = self.node(c).label.clone();
                    let common = common_prefix_len(&label, &path[off..]);
                    if common < label.len() {
                        let mid = self.alloc(Node {
                            label: Label::from_slice(&label[..common]),
                            children: SmallVec::from_slice(&[(label[common], c)]),
                            has_watchers: false,
                        });
                        self.node_mut(c).label = Label::from_slice(&label[common..]);
                        // mid's label starts with the same byte as c's did.
                        self.node_mut(n).children[pos].1 = mid;
                        n = mid;
                    } else {
                        n = c;
                    }
                    off += common;
                }
            }
        }
        n
    }

    fn remove(&mut self, bytes: &[u8], slot: u32) {
        // Path of (parent, position of child in parent) down to the node.
        let mut path: SmallVec<[(u32, usize); 16]> = SmallVec::new();
        let mut n = ROOT;
        let mut off = 0;
        while off < bytes.len() {
            let (pos, c) = self.child(n, bytes[off]).expect("a registered prefix's path exists");
            path.push((n, pos));
            off += self.node(c).label.len();
            n = c;
        }
        debug_assert_eq!(off, bytes.len(), "a registered prefix ends on a node");
        let list = &mut self.watchers[n as usize];
        let at = list.iter().position(|&s| s == slot).expect("registered slot is listed");
        list.remove(at);
        let now_empty = list.is_empty();
        self.node_mut(n).has_watchers = !now_empty;
        self.compact(n, &path);
    }

    /// Restores "every non-root node has watchers or at least two children"
    /// after `n` lost a watcher; `path` leads from the root to `n`.
    fn compact(&mut self, n: u32, path: &[(u32, usize)]) {
        let Some(&(parent, pos)) = path.last() else { return };
        let node = self.node(n);
        if node.has_watchers || node.children.len() >= 2 {
            return;
        }
        if node.children.is_empty() {
            self.node_mut(parent).children.remove(pos);
            self.release(n);
            // The parent may now have one child and no watchers.
            let p = self.node(parent);
            if parent != ROOT && !p.has_watchers && p.children.len() == 1 {
                let grand = path[path.len() - 2];
                self.merge_into_child(parent, grand);
            }
        } else {
            self.merge_into_child(n, (parent, pos));
        }
    }

    /// Replaces `n` (which has no watchers and one child) by its child,
    /// joining their labels; `(parent, pos)` locates `n`.
    fn merge_into_child(&mut self, n: u32, (parent, pos): (u32, usize)) {
        let child = self.node(n).children[0].1;
        let mut label = self.node(n).label.clone();
        label.extend_from_slice(&self.node(child).label);
        // The joined label starts with n's first byte: the parent's entry
        // for it stays valid.
        self.node_mut(child).label = label;
        self.node_mut(parent).children[pos].1 = child;
        self.release(n);
    }

    /// Calls `f` with every watcher slot whose prefix `key` starts with: the
    /// watchers on each node along the key's path.
    fn for_each_match(&self, key: &[u8], mut f: impl FnMut(u32)) {
        let mut n = ROOT;
        let mut rest = key;
        loop {
            if self.node(n).has_watchers {
                for &slot in &self.watchers[n as usize] {
                    f(slot);
                }
            }
            let Some(&first) = rest.first() else { return };
            let Ok((_, c)) = self.child(n, first) else { return };
            match rest.strip_prefix(&self.node(c).label[..]) {
                Some(after) => rest = after,
                None => return,
            }
            n = c;
        }
    }

    fn registrations(&self) -> usize {
        let live = |i: usize| i == 0 || !self.free.contains(&(i as u32));
        (0..self.nodes.len()).filter(|&i| live(i)).map(|i| self.watchers[i].len()).sum()
    }

    fn check_invariants(&self) {
        assert_eq!(self.nodes.len(), self.watchers.len(), "parallel vectors differ");
        let mut reachable = 0;
        let mut stack = vec![ROOT];
        while let Some(n) = stack.pop() {
            reachable += 1;
            let node = self.node(n);
            assert_eq!(
                node.has_watchers,
                !self.watchers[n as usize].is_empty(),
                "has_watchers flag out of date"
            );
            if n != ROOT {
                assert!(!node.label.is_empty(), "non-root node with empty label");
                assert!(
                    node.has_watchers || node.children.len() >= 2,
                    "non-root node neither holds watchers nor branches"
                );
            }
            let firsts: Vec<u8> =
                node.children.iter().map(|&(_, c)| self.node(c).label[0]).collect();
            let bytes: Vec<u8> = node.children.iter().map(|&(b, _)| b).collect();
            assert_eq!(firsts, bytes, "child table out of date");
            assert!(bytes.windows(2).all(|w| w[0] < w[1]), "children unsorted or duplicated");
            stack.extend(node.children.iter().map(|&(_, c)| c));
        }
        assert_eq!(reachable + self.free.len(), self.nodes.len(), "leaked trie nodes");
    }
}

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn events(hub: &mut WatchHub, id: WatchId) -> Vec<WatchItem> {
        let mut out = Vec::new();
        hub.drain_into(id, usize::MAX, &mut out).expect("live watcher");
        out
    }

    fn set(key: &str, index: u64) -> WatchItem {
        WatchItem::Event(WatchEvent { key: b(key), value: Some(b("v")), index: LogIndex(index) })
    }

    #[test]
    fn pattern_parse() {
        assert_eq!(Pattern::parse(b"user.**"), Pattern::Prefix(b("user.")));
        assert_eq!(Pattern::parse(b"**"), Pattern::Prefix(b("")));
        assert_eq!(Pattern::parse(b"user.1"), Pattern::Exact(b("user.1")));
        assert_eq!(Pattern::parse(b"user.*"), Pattern::Exact(b("user.*")));
        assert!(Pattern::parse(b"a.**").matches(b"a.b.c"));
        assert!(!Pattern::parse(b"a.**").matches(b"a"));
    }

    #[test]
    fn exact_and_prefix_matching_through_shared_edges() {
        let mut hub = WatchHub::default();
        let abc = hub.watch(Pattern::parse(b"abc")).expect("ok");
        let ab = hub.watch(Pattern::parse(b"ab**")).expect("ok");
        let abd = hub.watch(Pattern::parse(b"abd")).expect("ok");
        let all = hub.watch(Pattern::parse(b"**")).expect("ok");
        hub.check_invariants();
        let v = b("v");
        for (i, key) in ["abc", "abd", "ab", "a", "abcd", "x"].iter().enumerate() {
            hub.notify(&b(key), Some(&v), LogIndex(i as u64 + 1));
        }
        assert_eq!(events(&mut hub, abc), vec![set("abc", 1)]);
        assert_eq!(events(&mut hub, abd), vec![set("abd", 2)]);
        assert_eq!(
            events(&mut hub, ab),
            vec![set("abc", 1), set("abd", 2), set("ab", 3), set("abcd", 5)]
        );
        assert_eq!(events(&mut hub, all).len(), 6);
    }

    #[test]
    fn unwatch_compacts_the_trie_and_stale_ids_are_refused() {
        let mut hub = WatchHub::default();
        let ids: Vec<_> = ["abc", "abd", "ab", "abcdef", "b**", "abc"]
            .iter()
            .map(|p| hub.watch(Pattern::parse(p.as_bytes())).expect("ok"))
            .collect();
        hub.check_invariants();
        for &id in ids.iter().rev() {
            hub.unwatch(id).expect("live");
            hub.check_invariants();
        }
        assert_eq!(hub.trie.nodes.len() - hub.trie.free.len(), 1, "only the root is left");
        assert_eq!(hub.unwatch(ids[0]), Err(WatchError::Unknown(ids[0])));
        let again = hub.watch(Pattern::parse(b"abc")).expect("ok");
        assert_ne!(again, ids[0], "slot reuse changes the id");
        assert!(hub.pop(ids[0]).is_err());
    }

    #[test]
    fn overflow_is_reported_to_that_watcher_only() {
        let mut hub = WatchHub::new(WatchConfig { queue_events_max: 2, ..WatchConfig::default() });
        let slow = hub.watch(Pattern::parse(b"k")).expect("ok");
        let fast = hub.watch(Pattern::parse(b"k")).expect("ok");
        let v = b("v");
        let mut fast_seen = Vec::new();
        for i in 1..=5 {
            hub.notify(&b("k"), Some(&v), LogIndex(i));
            fast_seen.extend(events(&mut hub, fast));
        }
        hub.check_invariants();
        assert_eq!(fast_seen, (1..=5).map(|i| set("k", i)).collect::<Vec<_>>());
        assert_eq!(
            events(&mut hub, slow),
            vec![set("k", 1), set("k", 2), WatchItem::Lagged { dropped: 3 }]
        );
        // After draining, the slow watcher hears new events again.
        hub.notify(&b("k"), Some(&v), LogIndex(6));
        assert_eq!(events(&mut hub, slow), vec![set("k", 6)]);
    }

    /// A stuck watcher (queue full, never drained) through many restores,
    /// each followed by more dropped events: its markers fold, so its queue
    /// stays bounded, and the drops add up.
    #[test]
    fn a_stuck_watchers_markers_stay_bounded_across_restores() {
        let mut hub = WatchHub::new(WatchConfig { queue_events_max: 2, ..WatchConfig::default() });
        let stuck = hub.watch(Pattern::parse(b"k")).expect("ok");
        let v = b("v");
        let mut index = 0;
        for round in 0..100 {
            for _ in 0..3 {
                index += 1;
                hub.notify(&b("k"), Some(&v), LogIndex(index));
            }
            index += 1;
            hub.notify_restored(LogIndex(index));
            let w = hub.slots[stuck.slot()].watcher.as_ref().expect("live");
            assert!(w.queue.len() <= 2 + 3, "round {round}: {} items", w.queue.len());
        }
        // One more drop after the last restore: Lagged, Restored, Lagged.
        index += 1;
        hub.notify(&b("k"), Some(&v), LogIndex(index));
        let items = events(&mut hub, stuck);
        assert_eq!(
            items,
            vec![
                set("k", 1),
                set("k", 2),
                WatchItem::Lagged { dropped: 1 + 99 * 3 },
                WatchItem::Restored { index: LogIndex(400) },
                WatchItem::Lagged { dropped: 1 },
            ]
        );
    }

    #[test]
    fn ready_lists_each_watcher_once() {
        let mut hub = WatchHub::default();
        let a = hub.watch(Pattern::parse(b"a")).expect("ok");
        let _b = hub.watch(Pattern::parse(b"b")).expect("ok");
        let v = b("v");
        hub.notify(&b("a"), Some(&v), LogIndex(1));
        hub.notify(&b("a"), None, LogIndex(2));
        let mut ready = Vec::new();
        hub.take_ready(&mut ready);
        assert_eq!(ready, vec![a]);
        hub.take_ready(&mut ready);
        assert!(ready.is_empty());
    }

    #[test]
    fn bounds_are_enforced() {
        let mut hub = WatchHub::new(WatchConfig {
            watchers_max: 1,
            pattern_bytes_max: 3,
            ..WatchConfig::default()
        });
        assert_eq!(
            hub.watch(Pattern::parse(b"abcd")),
            Err(WatchError::PatternTooLong { len: 4, max: 3 })
        );
        hub.watch(Pattern::parse(b"abc")).expect("ok");
        assert_eq!(hub.watch(Pattern::parse(b"a")), Err(WatchError::TooMany { max: 1 }));
    }
}
