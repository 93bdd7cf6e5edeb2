//! The classic Raft lab's test harness (`config.go`) on the simulator.
//!
//! Owns the helpers the lab scenario tests are written with: `one`,
//! `n_committed`, `check_one_leader`, `check_terms`, `check_no_leader`,
//! `crash1`/`start1`, `wait`, RPC counters. Like the lab's, they fail the
//! test (panic) when an expectation is not met; "sleeping" advances
//! simulated time. Commands are `u64`s encoded as 8 little-endian bytes, or
//! raw bytes. A server counts as reachable when it is running and connected.

use bytes::Bytes;
use xraft::{LogIndex, Role, Term};

use crate::cluster::Cluster;

/// Encodes a lab command.
pub fn cmd(c: u64) -> Bytes {
    Bytes::copy_from_slice(&c.to_le_bytes())
}

/// The lab's `RaftElectionTimeout`: 1 s.
pub const ELECTION_TIMEOUT_MS: u64 = 1_000;

impl Cluster {
    fn reachable(&self, i: usize) -> bool {
        self.is_up(i) && self.connected(i)
    }

    /// The lab's `checkOneLeader`: within ~5 s, exactly one leader per term
    /// among reachable servers; returns the leader of the latest term.
    pub fn check_one_leader(&mut self) -> usize {
        for _ in 0..10 {
            self.run_for_ms(450 + self.now_us() % 100);
            let mut by_term: Vec<(Term, usize)> = Vec::new();
            for i in 0..self.len() {
                if !self.reachable(i) {
                    continue;
                }
                let n = self.node(i).expect("reachable");
                if n.role() == Role::Leader {
                    by_term.push((n.term(), i));
                }
            }
            by_term.sort();
            for w in by_term.windows(2) {
                assert!(w[0].0 != w[1].0, "term {:?} has more than one leader", w[0].0);
            }
            if let Some(&(_, l)) = by_term.last() {
                return l;
            }
        }
        panic!("expected one leader, got none\n{}", self.trace().tail_string(40));
    }

    /// The lab's `checkTerms`: every reachable server has the same term.
    pub fn check_terms(&self) -> Term {
        let mut term = None;
        for i in (0..self.len()).filter(|&i| self.reachable(i)) {
            let t = self.node(i).expect("reachable").term();
            match term {
                None => term = Some(t),
                Some(t0) => assert_eq!(t0, t, "servers disagree on term"),
            }
        }
        term.expect("no reachable server")
    }

    /// The lab's `checkNoLeader`: no reachable server thinks it leads.
    pub fn check_no_leader(&self) {
        for i in (0..self.len()).filter(|&i| self.reachable(i)) {
            let n = self.node(i).expect("reachable");
            assert!(
                n.role() != Role::Leader,
                "expected no leader among connected servers, but {i} claims"
            );
        }
    }

    /// The lab's `nCommitted`: how many servers applied `index`, and what.
    /// Panics if they applied different commands there.
    pub fn n_committed(&self, index: u64) -> (usize, Option<Bytes>) {
        let mut count = 0;
        let mut what: Option<Bytes> = None;
        let k = (index - 1) as usize;
        for i in 0..self.len() {
            if let Some(d) = self.applied(i).get(k) {
                if let Some(w) = &what {
                    assert_eq!(w, d, "committed values do not match: index {index}");
                }
                count += 1;
                what = Some(d.clone());
            }
        }
        (count, what)
    }

    /// The lab's `Start` on server `i`: the index and term if it leads.
    pub fn start(&mut self, i: usize, data: Bytes) -> Option<(u64, Term)> {
        if !self.is_up(i) {
            return None;
        }
        self.propose(i, data).ok().map(|p| (p.last.0, p.term))
    }

    /// The lab's `one`: submits `data` until some leader takes it and at least
    /// `expected` servers apply it; returns its index.
    pub fn one_bytes(&mut self, data: Bytes, expected: usize, retry: bool) -> u64 {
        let t0 = self.now_us();
        let mut starts = 0;
        while self.now_us() - t0 < 10_000_000 {
            let mut index = None;
            for _ in 0..self.len() {
                starts = (starts + 1) % self.len();
                if self.connected(starts) {
                    if let Some((ix, _)) = self.start(starts, data.clone()) {
                        index = Some(ix);
                        break;
                    }
                }
            }
            if let Some(index) = index {
                let t1 = self.now_us();
                while self.now_us() - t1 < 2_000_000 {
                    let (nd, got) = self.n_committed(index);
                    if nd > 0 && nd >= expected && got.as_ref() == Some(&data) {
                        return index;
                    }
                    self.run_for_ms(20);
                }
                assert!(retry, "one({data:?}) failed to reach agreement");
            } else {
                self.run_for_ms(50);
            }
        }
        panic!("one({data:?}) failed to reach agreement\n{}", self.trace().tail_string(60));
    }

    /// [`Cluster::one_bytes`] with a numeric command.
    pub fn one(&mut self, c: u64, expected: usize, retry: bool) -> u64 {
        self.one_bytes(cmd(c), expected, retry)
    }

    /// The lab's `wait`: waits for `n` servers to apply `index`; gives up
    /// (returns `None`) if a server moves past `start_term`.
    pub fn wait(&mut self, index: u64, n: usize, start_term: Option<Term>) -> Option<Bytes> {
        let mut to_ms = 10;
        for _ in 0..30 {
            let (nd, _) = self.n_committed(index);
            if nd >= n {
                break;
            }
            self.run_for_ms(to_ms);
            if to_ms < 1000 {
                to_ms *= 2;
            }
            if let Some(t) = start_term {
                for i in 0..self.len() {
                    if self.node(i).is_some_and(|x| x.term() > t) {
                        return None;
                    }
                }
            }
        }
        let (nd, got) = self.n_committed(index);
        assert!(nd >= n, "only {nd} decided for index {index}; wanted {n}");
        got
    }

    /// The lab's `crash1`: disconnect and crash, losing unsynced writes.
    pub fn crash1(&mut self, i: usize) {
        self.disconnect(i);
        self.crash(i);
    }

    /// The lab's `start1`: restart from durable state (still disconnected).
    pub fn start1(&mut self, i: usize) {
        self.restart(i);
    }

    /// Requests sent so far, answers not counted (the lab's `rpcTotal`).
    pub fn rpc_total(&self) -> u64 {
        self.stats().requests_sent
    }

    /// Bytes sent so far (the lab's `bytesTotal`).
    pub fn bytes_total(&self) -> u64 {
        self.stats().bytes_sent
    }

    /// Highest commit index among running nodes.
    pub fn max_commit(&self) -> LogIndex {
        (0..self.len())
            .filter_map(|i| self.node(i))
            .map(|n| n.commit_index())
            .max()
            .unwrap_or_default()
    }
}
