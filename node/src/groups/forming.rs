//! Founding a group without split brain: the rules, as plain functions.
//!
//! A group declared with `voters = N` and no explicit member list forms
//! itself from the nodes that advertise it as voters and whose tickets grant
//! `join` on it:
//!
//! 1. Every node computes the *founding set*: the N lowest member ids among
//!    the eligible advertisers it sees (itself included).
//! 2. Only the lowest id of that set proposes it, to each other member, once
//!    the set has stood for a few upkeep rounds: first asking whether each
//!    member would promise it (nothing is recorded), then, if all would,
//!    for the promise itself.
//! 3. A member **promises** a set, durably and once for all, only if it is
//!    not initialized, has promised nothing else, the proposer is the set's
//!    lowest id, and the set equals its own founding set. Once promised, it
//!    refuses every other set forever.
//! 4. The proposer promises the set itself last, after every other member
//!    promised it, and then initializes Raft with it.
//!
//! The non-binding round keeps members from promising a set that another
//! member's view already contradicts; a promise can still strand a set if
//! views change between the two rounds (milliseconds).
//!
//! **Why two different founding memberships cannot both be initialized.**
//! Initializing a set S requires a durable promise of S from every member of
//! S (rule 4), and a node promises at most one set (rule 3). So two
//! initialized sets S1 ≠ S2 share no member. Disjoint sets also need disjoint
//! views: a member of S2 that saw the lowest id of S1 ∪ S2 would have
//! computed a founding set containing it (rule 1) and refused S2. So both can
//! form only if 2N eligible voters are split into halves that never see each
//! other while they found. Three ways to rule that out, each sufficient:
//! declare the members explicitly (`GroupConfig::members`; every node then
//! initializes the same set, which openraft allows), grant `join` on the
//! group to fewer than 2N nodes, or start the voters in a connected network.
//! Re-initializing with the same set is harmless: openraft writes the same
//! membership entry (log index 0, term 0) on every node that does it.
//!
//! A proposer whose members promised but which died before initializing
//! proposes the same set again when it comes back (members answer a set
//! they promised with yes again); a
//! proposer that never comes back (a TD reboot gives it a new id) leaves its
//! members promised to a set that cannot form: the operator then declares
//! the members explicitly. That is the price of never forming two groups.

use super::types::MemberId;

/// The founding set seen from `eligible` (the node itself included when it
/// is eligible): its `n` lowest ids, or `None` while fewer are known.
pub fn founding_set(eligible: &[MemberId], n: usize) -> Option<Vec<MemberId>> {
    if n == 0 {
        return None;
    }
    let mut ids = eligible.to_vec();
    ids.sort();
    ids.dedup();
    if ids.len() < n {
        return None;
    }
    ids.truncate(n);
    Some(ids)
}

/// Whether `me` should propose `set` now.
pub fn should_propose(me: MemberId, set: &[MemberId], promise: Option<&[MemberId]>) -> bool {
    set.first() == Some(&me) && promise.is_none_or(|p| p == set)
}

/// What a member answers to a founding proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Promise the set (persist the promise before saying so).
    Promise,
    /// Already promised this very set: say yes again.
    Again,
    /// Refuse.
    Refuse(&'static str),
}

/// Rule 3: the answer of member `me` to `from` proposing `set`.
pub fn answer(
    me: MemberId,
    from: MemberId,
    set: &[MemberId],
    n: usize,
    initialized: bool,
    promise: Option<&[MemberId]>,
    mine: Option<&[MemberId]>,
) -> Answer {
    if initialized {
        return Answer::Refuse("already initialized");
    }
    if set.len() != n || !set.windows(2).all(|w| w[0] < w[1]) {
        return Answer::Refuse("not a founding set of the declared size");
    }
    if set.first() != Some(&from) {
        return Answer::Refuse("the proposer is not the set's lowest id");
    }
    if !set.contains(&me) {
        return Answer::Refuse("not a member of the set");
    }
    match promise {
        Some(p) if p == set => return Answer::Again,
        Some(_) => return Answer::Refuse("promised another set"),
        None => {}
    }
    if mine != Some(set) {
        return Answer::Refuse("not the founding set this member sees");
    }
    Answer::Promise
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<MemberId> {
        v.iter().map(|&i| MemberId::from(i)).collect()
    }

    #[test]
    fn founding_set_is_the_n_lowest_once_enough_are_seen() {
        assert_eq!(founding_set(&ids(&[5, 1]), 3), None);
        assert_eq!(founding_set(&ids(&[5, 1, 9, 3]), 3), Some(ids(&[1, 3, 5])));
        assert_eq!(
            founding_set(&ids(&[5, 5, 1]), 3),
            None,
            "duplicates count once"
        );
    }

    #[test]
    fn only_the_lowest_proposes_and_only_what_it_promised() {
        let set = ids(&[1, 3, 5]);
        assert!(should_propose(MemberId::from(1), &set, None));
        assert!(!should_propose(MemberId::from(3), &set, None));
        let other = ids(&[1, 2, 3]);
        assert!(!should_propose(MemberId::from(1), &set, Some(&other)));
        assert!(should_propose(MemberId::from(1), &set, Some(&set)));
    }

    #[test]
    fn a_member_promises_one_set_only() {
        let me = MemberId::from(3);
        let set = ids(&[1, 3, 5]);
        let a = |promise: Option<&[MemberId]>, mine: Option<&[MemberId]>, init: bool| {
            answer(me, MemberId::from(1), &set, 3, init, promise, mine)
        };
        assert_eq!(a(None, Some(&set), false), Answer::Promise);
        assert_eq!(a(Some(&set), None, false), Answer::Again);
        let other = ids(&[1, 2, 3]);
        assert!(matches!(
            a(Some(&other), Some(&set), false),
            Answer::Refuse(_)
        ));
        assert!(matches!(a(None, Some(&other), false), Answer::Refuse(_)));
        assert!(matches!(a(None, Some(&set), true), Answer::Refuse(_)));
        // A proposer that is not the lowest, or a set of the wrong size.
        assert!(matches!(
            answer(me, MemberId::from(5), &set, 3, false, None, Some(&set)),
            Answer::Refuse(_)
        ));
        assert!(matches!(
            answer(
                me,
                MemberId::from(1),
                &ids(&[1, 3]),
                3,
                false,
                None,
                Some(&set)
            ),
            Answer::Refuse(_)
        ));
    }

    /// Exhaustive check of the safety claim over small worlds: nodes with
    /// arbitrary (possibly stale, possibly partial) views, proposals and
    /// promises in every order; two different sets are never both fully
    /// promised unless they are disjoint and their members' views are too.
    #[test]
    fn two_overlapping_sets_are_never_both_promised() {
        let n = 3;
        let all: Vec<MemberId> = ids(&[1, 2, 3, 4, 5]);
        // Every view is a subset of the nodes; enumerate pairs of founding
        // sets arising from any views and run both proposal rounds in both
        // orders against fresh promise state.
        let subsets: Vec<Vec<MemberId>> = (1u32..32)
            .map(|mask| {
                all.iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, m)| *m)
                    .collect()
            })
            .collect();
        let sets: Vec<Vec<MemberId>> = subsets.iter().filter_map(|v| founding_set(v, n)).collect();
        for s1 in &sets {
            for s2 in &sets {
                if s1 == s2 {
                    continue;
                }
                let mut promise: std::collections::HashMap<MemberId, Vec<MemberId>> =
                    Default::default();
                let mut complete = 0;
                for s in [s1, s2] {
                    // Most permissive views: every member sees exactly `s`.
                    let all_yes = s.iter().all(|m| {
                        let a = answer(
                            *m,
                            s[0],
                            s,
                            n,
                            false,
                            promise.get(m).map(|p| p.as_slice()),
                            Some(s),
                        );
                        matches!(a, Answer::Promise | Answer::Again)
                    });
                    if all_yes {
                        for m in s {
                            promise.insert(*m, s.clone());
                        }
                        complete += 1;
                    }
                }
                let overlap = s1.iter().any(|m| s2.contains(m));
                assert!(
                    !(overlap && complete == 2),
                    "{s1:?} and {s2:?} both founded"
                );
            }
        }
    }
}
