//! Majority arithmetic.
//!
//! Owns the two quorum questions Raft asks: which index a majority holds
//! (commit) and whether a set of votes decides an election. Invariant: only
//! voters are ever counted; callers pass voters' values only.

/// Votes needed for a majority of `voters`.
#[inline]
pub(crate) fn majority(voters: usize) -> usize {
    voters / 2 + 1
}

/// The highest index held by a majority, given each voter's match index.
/// Sorts `matches` in place. Zero voters commit nothing.
pub(crate) fn committed_index(matches: &mut [u64]) -> u64 {
    if matches.is_empty() {
        return 0;
    }
    matches.sort_unstable_by(|a, b| b.cmp(a));
    matches[majority(matches.len()) - 1]
}

/// The outcome of counting votes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum VoteResult {
    /// A majority granted.
    Won,
    /// A majority refused: the election cannot be won.
    Lost,
    /// Not decided yet.
    Pending,
}

/// Decides an election among `voters` given the granted and refused counts.
pub(crate) fn vote_result(voters: usize, granted: usize, refused: usize) -> VoteResult {
    let need = majority(voters);
    if granted >= need {
        VoteResult::Won
    } else if refused > voters.saturating_sub(need) {
        VoteResult::Lost
    } else {
        VoteResult::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_table() {
        // (matches, committed)
        let table: &[(&[u64], u64)] = &[
            (&[], 0),
            (&[5], 5),
            (&[5, 3], 3),
            (&[5, 3, 1], 3),
            (&[1, 3, 5], 3),
            (&[2, 2, 9, 9], 2),
            (&[7, 1, 7, 1, 7], 7),
            (&[7, 1, 7, 1, 1], 1),
            (&[0, 0, 4], 0),
        ];
        for (matches, want) in table {
            let mut m = matches.to_vec();
            assert_eq!(committed_index(&mut m), *want, "matches {matches:?}");
        }
    }

    #[test]
    fn vote_table() {
        use VoteResult::*;
        // (voters, granted, refused, result)
        let table = [
            (1, 1, 0, Won),
            (1, 0, 0, Pending),
            (3, 2, 0, Won),
            (3, 1, 1, Pending),
            (3, 1, 2, Lost),
            (4, 2, 1, Pending),
            (4, 2, 2, Lost),
            (4, 3, 0, Won),
            (5, 2, 2, Pending),
            (5, 2, 3, Lost),
            (5, 3, 2, Won),
        ];
        for (v, g, r, want) in table {
            assert_eq!(vote_result(v, g, r), want, "voters {v} granted {g} refused {r}");
        }
    }
}
