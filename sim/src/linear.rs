//! Linearizability checkers for client histories of a register store.
//!
//! Owns two independent checks of a history of reads and writes on a few
//! keys (SIM-CHECKLIST §4):
//!
//! * [`check_by_index`], white-box and O(n log n): every finished operation
//!   carries its point in the log (a write its log index, a read the applied
//!   index it was served at). Reads must return the committed value at their
//!   point, acknowledged writes must be in the committed log at their index,
//!   and real-time order must agree with index order (`A` returned before
//!   `B` was invoked implies `idx(A) <= idx(B)`, strictly when `B` writes).
//! * [`check_wgl`], black-box: a Wing–Gong–Lowe search with memoization
//!   (Porcupine's algorithm) for a linearization of each key's operations,
//!   independent of any index the system reports.
//!
//! An operation whose outcome is unknown (timed out, node crashed) may take
//! effect at any point after its invocation or never; it is never assumed
//! absent. Invariant: both checkers only ever accept histories that have a
//! linearization; the tests below plant a stale read and a lost write and
//! require both to be rejected.

use std::collections::{BTreeMap, BTreeSet};

use xraft::LogIndex;

/// A register key.
pub type Key = u64;
/// A register value; writes use unique values so reads identify their write.
pub type Value = u64;

/// What an operation did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OpKind {
    /// Set the key to the value.
    Write(Value),
    /// Read the key: `Some(None)` = absent, `None` = outcome unknown.
    Read(Option<Option<Value>>),
}

/// One client operation in a history.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct HistOp {
    /// The key.
    pub key: Key,
    /// Read or write, with the read's result.
    pub kind: OpKind,
    /// Virtual time of the invocation.
    pub invoke: u64,
    /// Virtual time of the response; `None` if the outcome is unknown.
    pub ret: Option<u64>,
    /// The op's point: a write's log index, or the applied index a read was
    /// served at. `None` if unknown.
    pub index: Option<LogIndex>,
}

/// A linearizability violation, with the operations involved.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum LinViolation {
    /// An acknowledged write is not in the committed log at its index.
    LostWrite {
        /// The write.
        op: HistOp,
    },
    /// A read returned something other than the committed value at its point.
    WrongRead {
        /// The read.
        op: HistOp,
        /// What the committed log says at the read's point.
        expected: Option<Value>,
    },
    /// Real-time order contradicts index order.
    OrderViolated {
        /// The op that returned first.
        before: HistOp,
        /// The op invoked after it, placed earlier in the log.
        after: HistOp,
    },
    /// No linearization exists for this key.
    NotLinearizable {
        /// The key.
        key: Key,
    },
    /// The search gave up before deciding (a failure to look into, never
    /// a pass).
    SearchBudget {
        /// The key.
        key: Key,
        /// Operations in the key's history.
        ops: usize,
    },
}

/// What a bounded WGL check covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WglCoverage {
    /// Keys searched.
    pub keys: u64,
    /// Operations searched (after pruning).
    pub ops: u64,
}

/// White-box check against the committed log: `committed` maps each
/// committed write's log index to its (key, value).
pub fn check_by_index(
    history: &[HistOp],
    committed: &BTreeMap<LogIndex, (Key, Value)>,
) -> Result<(), Box<LinViolation>> {
    // Per key, the committed writes in index order, to answer "value of key
    // at index i".
    let mut per_key: BTreeMap<Key, BTreeMap<LogIndex, Value>> = BTreeMap::new();
    for (&i, &(k, v)) in committed {
        per_key.entry(k).or_default().insert(i, v);
    }
    let value_at = |k: Key, i: LogIndex| -> Option<Value> {
        per_key.get(&k).and_then(|m| m.range(..=i).next_back().map(|(_, v)| *v))
    };
    for op in history.iter().filter(|o| o.ret.is_some()) {
        let Some(index) = op.index else { continue };
        match op.kind {
            OpKind::Write(v) => {
                if committed.get(&index) != Some(&(op.key, v)) {
                    return Err(Box::new(LinViolation::LostWrite { op: *op }));
                }
            }
            OpKind::Read(Some(got)) => {
                let expected = value_at(op.key, index);
                if got != expected {
                    return Err(Box::new(LinViolation::WrongRead { op: *op, expected }));
                }
            }
            OpKind::Read(None) => {}
        }
    }
    // Real time: sweep invocations in time order, with the highest index of
    // every op that returned strictly before.
    let mut finished: Vec<&HistOp> =
        history.iter().filter(|o| o.ret.is_some() && o.index.is_some()).collect();
    finished.sort_by_key(|o| o.ret);
    let mut invoked: Vec<&HistOp> = finished.clone();
    invoked.sort_by_key(|o| o.invoke);
    let mut best: Option<&HistOp> = None;
    let mut r = 0;
    for b in invoked {
        while r < finished.len() && finished[r].ret.is_some_and(|t| t < b.invoke) {
            let a = finished[r];
            if best.is_none_or(|x| a.index > x.index) {
                best = Some(a);
            }
            r += 1;
        }
        if let Some(a) = best {
            let (ia, ib) = (a.index.unwrap_or_default(), b.index.unwrap_or_default());
            let bad = match b.kind {
                OpKind::Write(_) => ib <= ia,
                OpKind::Read(_) => ib < ia,
            };
            if bad {
                return Err(Box::new(LinViolation::OrderViolated { before: *a, after: *b }));
            }
        }
    }
    Ok(())
}

/// Black-box check: every key's operations must have a linearization as a
/// register starting absent. The search is exponential in the worst case
/// (memoization keeps ordinary histories fast); callers keep the number of
/// concurrent clients per key small. Never answers "pass" without finding a
/// linearization.
pub fn check_wgl(history: &[HistOp]) -> Result<(), Box<LinViolation>> {
    check_wgl_bounded(history, u64::MAX).map(|_| ())
}

/// [`check_wgl`] with at most `budget` search states per key (running out
/// is reported as [`LinViolation::SearchBudget`]). Before searching, it
/// drops operations that cannot matter, which keeps the search small when
/// many outcomes are unknown: a read whose outcome is unknown constrains
/// nothing, and a write whose outcome is unknown and whose value no read
/// returned may as well never have happened (in any linearization that
/// places it, no read sits between it and the next write, so removing it
/// leaves a linearization; values are unique per write).
pub fn check_wgl_bounded(
    history: &[HistOp],
    budget: u64,
) -> Result<WglCoverage, Box<LinViolation>> {
    let read_values: BTreeSet<(Key, Value)> = history
        .iter()
        .filter_map(|o| match o.kind {
            OpKind::Read(Some(Some(v))) if o.ret.is_some() => Some((o.key, v)),
            _ => None,
        })
        .collect();
    let mut by_key: BTreeMap<Key, Vec<HistOp>> = BTreeMap::new();
    for op in history {
        let keep = match op.kind {
            OpKind::Read(_) => op.ret.is_some(),
            OpKind::Write(v) => op.ret.is_some() || read_values.contains(&(op.key, v)),
        };
        if keep {
            by_key.entry(op.key).or_default().push(*op);
        }
    }
    let mut cov = WglCoverage::default();
    for (key, ops) in by_key {
        match linearizable(&ops, budget) {
            Some(true) => {}
            Some(false) => return Err(Box::new(LinViolation::NotLinearizable { key })),
            None => return Err(Box::new(LinViolation::SearchBudget { key, ops: ops.len() })),
        }
        cov.keys += 1;
        cov.ops += ops.len() as u64;
    }
    Ok(cov)
}

/// Wing–Gong–Lowe with memoization on (linearized set, state), in
/// Porcupine's form: call and return events in one time-ordered linked
/// list; scanning from the head, a call may be linearized next (and is
/// lifted out of the list with its return), while reaching a return means
/// that op had to come first: backtrack. Each step costs the number of
/// concurrent calls, not the history length. The memo keys the set of
/// linearized ops by a 128-bit Zobrist fingerprint (XOR of per-op random
/// words, updated in O(1)); a collision could only prune a state that was
/// not explored, i.e. make the search report a violation it should not,
/// never a pass. Returns `None` if more than `budget` states were visited.
fn linearizable(ops: &[HistOp], budget: u64) -> Option<bool> {
    let n = ops.len();
    if n == 0 {
        return Some(true);
    }
    // Events sorted by time; at equal times calls come first, so an op
    // returning at the instant another is invoked counts as concurrent.
    // Unknown outcomes return "never" (after everything).
    let mut evs: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        evs.push((o.invoke, false, i));
        evs.push((o.ret.unwrap_or(u64::MAX), true, i));
    }
    evs.sort_unstable();
    // A doubly linked list over events 1..=m; 0 is the head, m + 1 the end.
    let m = evs.len();
    let end = m + 1;
    let mut next: Vec<usize> = (1..=m + 1).chain([end]).collect();
    let mut prev: Vec<usize> = [0].into_iter().chain(0..=m).collect();
    let mut call_node = vec![0; n];
    let mut ret_node = vec![0; n];
    for (k, &(_, is_ret, op)) in evs.iter().enumerate() {
        if is_ret {
            ret_node[op] = k + 1;
        } else {
            call_node[op] = k + 1;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        let (p, q) = (prev[x], next[x]);
        next[p] = q;
        prev[q] = p;
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, x: usize| {
        let (p, q) = (prev[x], next[x]);
        next[p] = x;
        prev[q] = x;
    };
    let mut rng = xraft::rng::Rng::new(0x5eed_0f6a_110c_4b00 ^ n as u64);
    let zob: Vec<(u64, u64)> = (0..n).map(|_| (rng.next_u64(), rng.next_u64())).collect();
    let mut done = (0u64, 0u64);
    let mut memo: BTreeSet<(u64, u64, Option<Value>)> = BTreeSet::new();
    let must: usize = ops.iter().filter(|o| o.ret.is_some()).count();
    let mut finished = 0usize;
    let mut left = budget;
    let mut state: Option<Value> = None;
    let mut stack: Vec<(usize, Option<Value>)> = Vec::new();
    let mut entry = next[0];
    loop {
        if finished == must {
            return Some(true); // every op with a known outcome is placed; the rest may never happen
        }
        // Backtrack at a return (its op had to be linearized before this
        // point) or at the end of the list (unreachable while known ops
        // remain, since their returns come first: a dead end).
        if entry == end || evs[entry - 1].1 {
            let Some((op, before)) = stack.pop() else { return Some(false) };
            done = (done.0 ^ zob[op].0, done.1 ^ zob[op].1);
            finished -= usize::from(ops[op].ret.is_some());
            state = before;
            relink(&mut next, &mut prev, ret_node[op]);
            relink(&mut next, &mut prev, call_node[op]);
            entry = next[call_node[op]];
            continue;
        }
        let op = evs[entry - 1].2;
        let after = match ops[op].kind {
            OpKind::Write(v) => Some(Some(v)),
            OpKind::Read(Some(got)) => (got == state).then_some(state),
            OpKind::Read(None) => Some(state),
        };
        if let Some(after) = after {
            done = (done.0 ^ zob[op].0, done.1 ^ zob[op].1);
            if memo.insert((done.0, done.1, after)) {
                if left == 0 {
                    return None;
                }
                left -= 1;
                stack.push((op, state));
                state = after;
                finished += usize::from(ops[op].ret.is_some());
                unlink(&mut next, &mut prev, call_node[op]);
                unlink(&mut next, &mut prev, ret_node[op]);
                entry = next[0];
                continue;
            }
            done = (done.0 ^ zob[op].0, done.1 ^ zob[op].1);
        }
        entry = next[entry];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(key: Key, v: Value, invoke: u64, ret: Option<u64>, index: u64) -> HistOp {
        HistOp { key, kind: OpKind::Write(v), invoke, ret, index: Some(LogIndex(index)) }
    }

    fn r(key: Key, got: Option<Value>, invoke: u64, ret: u64, index: u64) -> HistOp {
        HistOp {
            key,
            kind: OpKind::Read(Some(got)),
            invoke,
            ret: Some(ret),
            index: Some(LogIndex(index)),
        }
    }

    fn committed(ws: &[(u64, Key, Value)]) -> BTreeMap<LogIndex, (Key, Value)> {
        ws.iter().map(|&(i, k, v)| (LogIndex(i), (k, v))).collect()
    }

    #[test]
    fn accepts_a_correct_concurrent_history() {
        // Two overlapping writes; reads see them in log order.
        let h = [
            w(1, 10, 0, Some(5), 3),
            w(1, 20, 1, Some(6), 4),
            r(1, Some(10), 2, 4, 3), // overlaps both writes, served at 3
            r(1, Some(20), 7, 8, 4),
            r(2, None, 0, 1, 1),
        ];
        let c = committed(&[(3, 1, 10), (4, 1, 20)]);
        assert_eq!(check_by_index(&h, &c), Ok(()));
        assert_eq!(check_wgl(&h), Ok(()));
    }

    #[test]
    fn rejects_a_stale_read() {
        // The write of 20 returned before the read started, yet the read saw 10.
        let h = [w(1, 10, 0, Some(1), 3), w(1, 20, 2, Some(3), 4), r(1, Some(10), 5, 6, 3)];
        let c = committed(&[(3, 1, 10), (4, 1, 20)]);
        assert!(matches!(
            check_by_index(&h, &c).map_err(|e| *e),
            Err(LinViolation::OrderViolated { .. })
        ));
        assert!(matches!(
            check_wgl(&h).map_err(|e| *e),
            Err(LinViolation::NotLinearizable { key: 1 })
        ));
    }

    #[test]
    fn rejects_a_lost_write() {
        // Acknowledged at index 3, but index 3 holds another write; a later
        // read sees the older value.
        let h = [w(1, 10, 0, Some(1), 2), w(1, 20, 2, Some(3), 3), r(1, Some(10), 4, 5, 3)];
        let c = committed(&[(2, 1, 10), (3, 1, 99)]);
        assert!(matches!(
            check_by_index(&h, &c).map_err(|e| *e),
            Err(LinViolation::LostWrite { .. })
        ));
        assert!(matches!(
            check_wgl(&h).map_err(|e| *e),
            Err(LinViolation::NotLinearizable { key: 1 })
        ));
    }

    #[test]
    fn a_read_of_a_wrong_value_is_caught_by_index() {
        let h = [w(1, 10, 0, Some(1), 2), r(1, Some(11), 4, 5, 2)];
        let c = committed(&[(2, 1, 10)]);
        assert!(matches!(
            check_by_index(&h, &c).map_err(|e| *e),
            Err(LinViolation::WrongRead { .. })
        ));
        assert!(check_wgl(&h).is_err());
    }

    #[test]
    fn unknown_writes_may_or_may_not_take_effect() {
        // A timed-out write may show up later...
        let seen = [w(1, 10, 0, None, 0), r(1, Some(10), 5, 6, 2)];
        assert_eq!(check_wgl(&seen), Ok(()));
        // ...or never.
        let unseen = [w(1, 10, 0, None, 0), r(1, None, 5, 6, 2)];
        assert_eq!(check_wgl(&unseen), Ok(()));
        // But a read cannot see it before it was invoked.
        let early = [r(1, Some(10), 0, 1, 1), w(1, 10, 5, None, 0)];
        assert!(check_wgl(&early).is_err());
    }

    #[test]
    fn a_write_placed_before_an_earlier_read_is_caught() {
        // The read returned (absent) before the write was invoked, but the
        // write's index is below the read's point.
        let h = [r(1, None, 0, 1, 5), w(1, 10, 2, Some(3), 4)];
        let c = committed(&[(4, 1, 10)]);
        assert!(check_by_index(&h, &c).is_err());
    }
}
