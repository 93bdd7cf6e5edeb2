//! The simulation trace: one compact record per event.
//!
//! Owns the determinism fingerprint and the failure context. Every record is
//! folded into a running FNV-1a hash (same seed, same hash) and kept in a
//! fixed-size ring whose tail is printed when a seed fails. Records are plain
//! `Copy` data, formatted only when printed, so tracing costs no allocation
//! per event. In verbose mode every record is also kept for a full replay log.

use std::fmt;
use std::hash::{Hash, Hasher};

use xraft::{LogIndex, NodeId, PersistId, Role, Term};

/// A role's name, for records (the core's `Role` is not `Hash`).
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "Follower",
        Role::PreCandidate => "PreCandidate",
        Role::Candidate => "Candidate",
        Role::Leader => "Leader",
    }
}

/// How many records the ring keeps.
pub const TRACE_RING_LEN: usize = 1024;

/// Why a message was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropWhy {
    /// The link is cut (partition or disconnect).
    Cut,
    /// Random loss.
    Loss,
    /// The recipient is crashed.
    Down,
}

/// One traced event. Times are simulated microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rec {
    /// A message was delivered. `a`/`b` are kind-specific (see `Display`).
    Deliver {
        /// Sender.
        from: NodeId,
        /// Recipient.
        to: NodeId,
        /// Message term.
        term: Term,
        /// Message kind name.
        kind: &'static str,
        /// First detail field.
        a: u64,
        /// Second detail field.
        b: u64,
    },
    /// A message was dropped.
    Drop {
        /// Sender.
        from: NodeId,
        /// Recipient.
        to: NodeId,
        /// Message kind name.
        kind: &'static str,
        /// Why.
        why: DropWhy,
    },
    /// A node changed role, term or leader.
    Role {
        /// The node.
        node: NodeId,
        /// New role (its name).
        role: &'static str,
        /// Its term.
        term: Term,
        /// Known leader.
        leader: Option<NodeId>,
    },
    /// A node asked for a durable write.
    Persist {
        /// The node.
        node: NodeId,
        /// Write id.
        id: PersistId,
        /// First entry index (0 if none).
        first: LogIndex,
        /// Number of entries.
        n: u64,
        /// Hard state term written, if any.
        hs_term: Option<Term>,
    },
    /// Writes became durable and were reported.
    Durable {
        /// The node.
        node: NodeId,
        /// Cumulative write id reported.
        through: PersistId,
    },
    /// A node's commit index advanced.
    Commit {
        /// The node.
        node: NodeId,
        /// New commit index.
        index: LogIndex,
    },
    /// A node applied entries.
    Apply {
        /// The node.
        node: NodeId,
        /// First applied index.
        first: LogIndex,
        /// Last applied index.
        last: LogIndex,
    },
    /// A client proposal was submitted; `index` is 0 if refused.
    Propose {
        /// The node asked.
        node: NodeId,
        /// Request id.
        request: u64,
        /// Last index of the accepted proposal, or 0.
        index: LogIndex,
    },
    /// A proposal was acknowledged to its client.
    Ack {
        /// The node that acked.
        node: NodeId,
        /// The proposal's last index.
        index: LogIndex,
        /// Its term.
        term: Term,
    },
    /// A node crashed; `kept` pending writes survived (the last maybe torn).
    Crash {
        /// The node.
        node: NodeId,
        /// Pending writes lost or kept.
        pending: u64,
        /// Pending writes that survived (whole or torn).
        kept: u64,
        /// Whether the last surviving write was torn.
        torn: bool,
    },
    /// A node restarted from its durable state.
    Restart {
        /// The node.
        node: NodeId,
        /// Durable term.
        term: Term,
        /// Durable last index.
        last: LogIndex,
    },
    /// A network or fault operation.
    Fault {
        /// What happened.
        what: &'static str,
        /// A node (or 0).
        node: NodeId,
        /// Detail (a mask, a peer).
        detail: u64,
    },
}

/// One trace line: a record and its simulated time.
#[derive(Clone, Copy, Debug)]
pub struct Line {
    /// Simulated time in microseconds.
    pub time_us: u64,
    /// The record.
    pub rec: Rec,
}

/// The trace ring and hash.
#[derive(Debug)]
pub struct Trace {
    ring: Vec<Line>,
    next: usize,
    count: u64,
    hash: Fnv,
    /// Every record, when verbose.
    full: Option<Vec<Line>>,
}

impl Trace {
    /// An empty trace; `verbose` keeps every record.
    pub fn new(verbose: bool) -> Self {
        Trace {
            ring: Vec::with_capacity(TRACE_RING_LEN),
            next: 0,
            count: 0,
            hash: Fnv::new(),
            full: verbose.then(Vec::new),
        }
    }

    /// Records `rec` at `time_us`.
    #[inline]
    pub fn push(&mut self, time_us: u64, rec: Rec) {
        time_us.hash(&mut self.hash);
        rec.hash(&mut self.hash);
        let line = Line { time_us, rec };
        if self.ring.len() < TRACE_RING_LEN {
            self.ring.push(line);
        } else {
            self.ring[self.next] = line;
        }
        self.next = (self.next + 1) % TRACE_RING_LEN;
        self.count += 1;
        if let Some(full) = &mut self.full {
            full.push(line);
        }
    }

    /// The running hash of every record so far.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// Records pushed so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<Line> {
        let len = self.ring.len();
        let n = n.min(len);
        let start = if len < TRACE_RING_LEN { len - n } else { (self.next + len - n) % len };
        (0..n).map(|k| self.ring[(start + k) % len]).collect()
    }

    /// The last `n` lines formatted, one per line.
    pub fn tail_string(&self, n: usize) -> String {
        let mut s = String::new();
        for l in self.tail(n) {
            s.push_str(&l.to_string());
            s.push('\n');
        }
        s
    }

    /// Every line, if verbose.
    pub fn full(&self) -> Option<&[Line]> {
        self.full.as_deref()
    }
}

/// FNV-1a, 64 bit: a fixed, portable hash for the determinism check.
#[derive(Clone, Copy, Debug)]
pub struct Fnv(u64);

impl Fnv {
    /// The FNV offset basis.
    pub fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    /// FNV-1a over 8-byte words (a fixed, deterministic variant: speed
    /// matters, as every event is hashed).
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for b in chunks.remainder() {
            self.write_u8(*b);
        }
    }

    #[inline]
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    #[inline]
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x0100_0000_01b3);
    }

    #[inline]
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// Hashes bytes with FNV-1a.
pub fn fnv(bytes: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.write(bytes);
    h.finish()
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.time_us / 1000;
        let us = self.time_us % 1000;
        write!(f, "{ms:>7}.{us:03}ms ")?;
        match self.rec {
            Rec::Deliver { from, to, term, kind, a, b } => {
                write!(f, "{from:?}->{to:?} {kind} {term:?} [{a} {b}]")
            }
            Rec::Drop { from, to, kind, why } => write!(f, "{from:?}->{to:?} {kind} DROP {why:?}"),
            Rec::Role { node, role, term, leader } => {
                write!(f, "{node:?} role {role} {term:?} leader {leader:?}")
            }
            Rec::Persist { node, id, first, n, hs_term } => {
                write!(f, "{node:?} persist {id:?} entries {first:?}+{n} hs {hs_term:?}")
            }
            Rec::Durable { node, through } => write!(f, "{node:?} durable through {through:?}"),
            Rec::Commit { node, index } => write!(f, "{node:?} commit {index:?}"),
            Rec::Apply { node, first, last } => write!(f, "{node:?} apply {first:?}..={last:?}"),
            Rec::Propose { node, request, index } => {
                write!(f, "{node:?} propose r{request} -> {index:?}")
            }
            Rec::Ack { node, index, term } => write!(f, "{node:?} ack {index:?} {term:?}"),
            Rec::Crash { node, pending, kept, torn } => {
                write!(f, "{node:?} CRASH pending {pending} kept {kept} torn {torn}")
            }
            Rec::Restart { node, term, last } => {
                write!(f, "{node:?} RESTART durable {term:?} last {last:?}")
            }
            Rec::Fault { what, node, detail } => write!(f, "FAULT {what} {node:?} {detail:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_tail_in_order() {
        let mut t = Trace::new(false);
        for i in 0..(TRACE_RING_LEN as u64 + 10) {
            t.push(i, Rec::Commit { node: NodeId(1), index: LogIndex(i) });
        }
        let tail = t.tail(3);
        let times: Vec<u64> = tail.iter().map(|l| l.time_us).collect();
        let last = TRACE_RING_LEN as u64 + 9;
        assert_eq!(times, vec![last - 2, last - 1, last]);
    }

    #[test]
    fn hash_depends_on_content() {
        let mut a = Trace::new(false);
        let mut b = Trace::new(false);
        a.push(1, Rec::Commit { node: NodeId(1), index: LogIndex(1) });
        b.push(1, Rec::Commit { node: NodeId(1), index: LogIndex(2) });
        assert_ne!(a.hash(), b.hash());
    }
}
