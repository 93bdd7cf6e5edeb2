//! Canaries: planted runtime bugs that the seeded simulation must catch
//! (SIM-CHECKLIST process item 5). Each proves its checkers fire end to end,
//! not only on hand-made histories.

use xraft_sim::{Canary, SeedOptions, SeedRun, Violation};

fn first_failures(canary: Canary, seeds: u64) -> Vec<(u64, Violation)> {
    let opts = SeedOptions { canary, ..SeedOptions::default() };
    let mut found = Vec::new();
    for seed in 0..seeds {
        let mut run = SeedRun::new(seed, &opts);
        if let Err(f) = run.run() {
            eprintln!("{canary:?}: seed {seed}: {}", f.violation);
            found.push((seed, f.violation));
            if found.len() >= 3 {
                break;
            }
        }
    }
    found
}

#[test]
fn ack_before_fsync_is_caught() {
    let found = first_failures(Canary::AckBeforeFsync, 20);
    assert!(!found.is_empty(), "acking before fsync went unnoticed in 20 seeds");
    for (seed, v) in &found {
        assert!(
            matches!(
                v,
                Violation::PromiseNotDurable { .. }
                    | Violation::CommitWithoutDurableQuorum { .. }
                    | Violation::AckedLost { .. }
                    | Violation::ApplyDivergence { .. }
                    | Violation::CommitDivergence { .. }
                    | Violation::LeaderIncomplete { .. }
            ),
            "seed {seed}: unexpected {v}"
        );
    }
}

#[test]
fn forgotten_vote_is_caught() {
    let seeds = if cfg!(debug_assertions) { 300 } else { 1000 };
    let found = first_failures(Canary::ForgetVote, seeds);
    assert!(!found.is_empty(), "forgetting the vote on restart went unnoticed in {seeds} seeds");
    for (seed, v) in &found {
        assert!(
            matches!(v, Violation::VoteChanged { .. } | Violation::TwoLeaders { .. }),
            "seed {seed}: unexpected {v}"
        );
    }
}

#[test]
fn stale_reads_are_caught() {
    let found = first_failures(Canary::StaleRead, 20);
    assert!(!found.is_empty(), "reads served without a read index went unnoticed in 20 seeds");
    for (seed, v) in &found {
        assert!(matches!(v, Violation::NotLinearizable { .. }), "seed {seed}: unexpected {v}");
    }
}

#[test]
fn a_snapshot_reported_before_it_is_durable_is_caught() {
    let found = first_failures(Canary::SnapshotNotDurable, 20);
    assert!(!found.is_empty(), "a snapshot never made durable went unnoticed in 20 seeds");
    for (seed, v) in &found {
        assert!(
            matches!(
                v,
                Violation::RestartFailed { .. }
                    | Violation::Contract { .. }
                    | Violation::SnapshotMismatch { .. }
            ),
            "seed {seed}: unexpected {v}"
        );
    }
}

#[test]
fn a_write_reported_refused_but_committed_is_caught() {
    let found = first_failures(Canary::FalseRefusal, 20);
    assert!(!found.is_empty(), "a refused write that took effect went unnoticed in 20 seeds");
    for (seed, v) in &found {
        assert!(
            matches!(v, Violation::NotLinearizable { what } if what.contains("refused")),
            "seed {seed}: unexpected {v}"
        );
    }
}

#[test]
fn a_transfer_reported_done_before_the_target_is_elected_is_caught() {
    let found = first_failures(Canary::EarlyTransfer, 40);
    assert!(!found.is_empty(), "transfers reported done at TimeoutNow went unnoticed in 40 seeds");
    for (seed, v) in &found {
        assert!(
            matches!(v, Violation::Contract { what, .. } if what.contains("not elected since")),
            "seed {seed}: unexpected {v}"
        );
    }
}
