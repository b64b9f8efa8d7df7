//! Linearizability of per-key registers, checked with the Wing–Gong search as
//! Porcupine (and Lowe's "just-in-time linearization") do it: walk the history's call
//! and return events in time order, linearize a pending call whose effect the model
//! accepts, backtrack when an operation returns without having been linearized, and
//! remember every (set of linearized operations, register value) pair already tried
//! so no configuration is explored twice.
//!
//! Keys are independent registers (P-compositionality), so each is checked alone. An
//! operation whose outcome is unknown (a timeout, NO_LEADER) returns at +∞: it may
//! take effect at any point after its call, or never — taking effect at the very end
//! is indistinguishable from never. A failing key is shrunk to a smallest failing
//! sub-history by reductions that keep it a proof: see [`shrink`].

use super::history::{Call, Operation, Outcome};
use std::collections::{BTreeMap, HashSet};

/// What one register operation did, as the model sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Write(u64),
    /// A delete; `Some(existed)` when its answer said whether the key held a value.
    Delete(Option<bool>),
    /// A linearizable get that returned this.
    Read(Option<u64>),
}

/// One operation on one register. `completed` is `u64::MAX` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterOp {
    /// Position in the source history (to report the original operation).
    pub source: usize,
    pub effect: Effect,
    pub invoked: u64,
    pub completed: u64,
}

/// The outcome of checking one key.
#[derive(Debug, Clone)]
pub enum KeyVerdict {
    Linearizable,
    /// No order explains the history; the smallest failing sub-history found.
    Violation {
        smallest: Vec<Operation>,
    },
    /// The search ran out of its step budget before deciding.
    Inconclusive,
}

/// Steps one search may take before it gives up (a key with thousands of
/// overlapping unknown writes could otherwise take exponential time).
const STEP_BUDGET: u64 = 20_000_000;

/// Checks every key's register history among `ops` (upserts, deletes and
/// `linearizable` gets; searches, eventual gets and appends are not register
/// operations). Returns the keys that are not linearizable, with their witnesses.
pub fn check(ops: &[Operation]) -> BTreeMap<String, KeyVerdict> {
    let mut by_key: BTreeMap<String, Vec<RegisterOp>> = BTreeMap::new();
    for (source, op) in ops.iter().enumerate() {
        if let Some(r) = register_op(source, op) {
            by_key.entry(op.call.key().to_string()).or_default().push(r);
        }
    }
    by_key
        .into_iter()
        .map(|(key, history)| {
            let verdict = match linearizable(&history) {
                Some(true) => KeyVerdict::Linearizable,
                None => KeyVerdict::Inconclusive,
                Some(false) => KeyVerdict::Violation {
                    smallest: shrink(history)
                        .iter()
                        .map(|r| ops[r.source].clone())
                        .collect(),
                },
            };
            (key, verdict)
        })
        .collect()
}

/// The register view of `op`, if it is a register operation that matters.
fn register_op(source: usize, op: &Operation) -> Option<RegisterOp> {
    let unknown = matches!(op.outcome, Outcome::Unknown { .. });
    let completed = if unknown { u64::MAX } else { op.completed_us };
    let effect = match (&op.call, &op.outcome) {
        // Refused writes did nothing; failed reads say nothing.
        (_, Outcome::Failed { .. }) => return None,
        (Call::Upsert { value, .. }, _) => Effect::Write(*value),
        (Call::Delete { .. }, Outcome::Deleted { existed }) => Effect::Delete(Some(*existed)),
        (Call::Delete { .. }, _) => Effect::Delete(None),
        (Call::Get { consistency, .. }, Outcome::Read { found })
            if consistency == "linearizable" =>
        {
            Effect::Read(*found)
        }
        _ => return None,
    };
    Some(RegisterOp {
        source,
        effect,
        invoked: op.invoked_us,
        completed,
    })
}

/// The register's next value after `effect`, or `None` if `effect` cannot happen on
/// `value`.
fn step(value: Option<u64>, effect: Effect) -> Option<Option<u64>> {
    match effect {
        Effect::Write(v) => Some(Some(v)),
        Effect::Delete(None) => Some(None),
        Effect::Delete(Some(existed)) => (existed == value.is_some()).then_some(None),
        Effect::Read(seen) => (seen == value).then_some(value),
    }
}

const NIL: usize = usize::MAX;

/// Whether `history` (one register, starting absent) is linearizable; `None` when
/// the step budget ran out.
pub fn linearizable(history: &[RegisterOp]) -> Option<bool> {
    search(history, |_| false)
}

/// Every value the register can hold after a linearization of all of `history`
/// (empty if there is none); `None` when the step budget ran out.
pub fn final_values(history: &[RegisterOp]) -> Option<HashSet<Option<u64>>> {
    let mut values = HashSet::new();
    search(history, |value| {
        values.insert(value);
        true
    })?;
    Some(values)
}

/// The Wing–Gong search. `on_linearized` is told the final value of each complete
/// linearization found and says whether to keep looking for others. Returns whether
/// one was found (`None`: out of budget).
fn search(
    history: &[RegisterOp],
    mut on_linearized: impl FnMut(Option<u64>) -> bool,
) -> Option<bool> {
    let n = history.len();
    // Events: (time, is_return, op). Calls sort before returns at the same instant,
    // so operations that touch in time count as concurrent (the lenient reading).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in history.iter().enumerate() {
        events.push((op.invoked, false, i));
        events.push((op.completed, true, i));
    }
    events.sort();
    // A doubly linked list over the events; node 0 is the head, event e is node e+1.
    let m = events.len();
    let mut next: Vec<usize> = (0..=m)
        .map(|node| if node < m { node + 1 } else { NIL })
        .collect();
    let mut prev: Vec<usize> = (0..=m)
        .map(|node| if node > 0 { node - 1 } else { NIL })
        .collect();
    let mut return_node = vec![0; n];
    for (e, &(_, is_return, op)) in events.iter().enumerate() {
        if is_return {
            return_node[op] = e + 1;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        next[prev[node]] = next[node];
        if next[node] != NIL {
            prev[next[node]] = prev[node];
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, node: usize| {
        next[prev[node]] = node;
        if next[node] != NIL {
            prev[next[node]] = node;
        }
    };
    let mut linearized = vec![0u64; n.div_ceil(64)];
    let mut value: Option<u64> = None;
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    // (call node, value before it)
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut found = false;
    let mut node = next[0];
    let mut steps = 0u64;
    loop {
        steps += 1;
        if steps > STEP_BUDGET {
            return None;
        }
        let backtrack = if next[0] == NIL {
            found = true;
            if !on_linearized(value) {
                return Some(true);
            }
            true
        } else {
            // `node` is never NIL here: every call's return follows it in the list.
            let (_, is_return, op) = events[node - 1];
            if !is_return {
                if let Some(after) = step(value, history[op].effect) {
                    linearized[op / 64] |= 1 << (op % 64);
                    if seen.insert((linearized.clone(), after)) {
                        stack.push((node, value));
                        value = after;
                        unlink(&mut next, &mut prev, node);
                        unlink(&mut next, &mut prev, return_node[op]);
                        node = next[0];
                        continue;
                    }
                    linearized[op / 64] &= !(1 << (op % 64));
                }
                node = next[node];
                false
            } else {
                // An operation returned before anything linearized it.
                true
            }
        };
        if backtrack {
            // Undo the last choice and try the next candidate after it.
            let Some((call, before)) = stack.pop() else {
                return Some(found);
            };
            let op = events[call - 1].2;
            linearized[op / 64] &= !(1 << (op % 64));
            value = before;
            relink(&mut next, &mut prev, return_node[op]);
            relink(&mut next, &mut prev, call);
            node = next[call];
        }
    }
}

fn fails(ops: &[RegisterOp]) -> bool {
    linearizable(ops) == Some(false)
}

/// The history as it stood at `t`: operations invoked by then; one still running at
/// `t` has an unknown outcome (a read of unknown outcome says nothing, so it goes).
/// If the whole history is linearizable, so is every such prefix, which makes the
/// shortest failing prefix a sound witness.
fn prefix(history: &[RegisterOp], t: u64) -> Vec<RegisterOp> {
    history
        .iter()
        .filter(|o| o.invoked <= t)
        .filter_map(|o| {
            if o.completed <= t {
                return Some(*o);
            }
            let effect = match o.effect {
                Effect::Read(_) => return None,
                Effect::Delete(_) => Effect::Delete(None),
                write => write,
            };
            Some(RegisterOp {
                effect,
                completed: u64::MAX,
                ..*o
            })
        })
        .collect()
}

/// Whether every value a read in `ops` returned was written by an operation in `ops`
/// (a witness that explains itself).
fn reads_sourced(ops: &[RegisterOp]) -> bool {
    let written: HashSet<u64> = ops
        .iter()
        .filter_map(|o| match o.effect {
            Effect::Write(v) => Some(v),
            _ => None,
        })
        .collect();
    ops.iter()
        .all(|o| !matches!(o.effect, Effect::Read(Some(v)) if !written.contains(&v)))
}

/// A smallest failing sub-history of a failing `history`, found only by reductions
/// that keep it a proof (a sub-history that fails only because a write was dropped
/// would prove nothing):
/// 1. the shortest failing prefix in time (see [`prefix`]);
/// 2. the past before a quiescent instant (nothing in flight) after which the
///    register's value is certain, replaced by the one write that set that value;
/// 3. reads removed one at a time while it still fails (a read changes nothing).
pub fn shrink(mut history: Vec<RegisterOp>) -> Vec<RegisterOp> {
    history.sort_by_key(|o| (o.invoked, o.source));
    let mut times: Vec<u64> = history
        .iter()
        .flat_map(|o| [o.invoked, o.completed])
        .filter(|t| *t != u64::MAX)
        .collect();
    times.sort_unstable();
    times.dedup();
    let (mut lo, mut hi) = (0, times.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fails(&prefix(&history, times[mid])) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let mut witness = match times.get(hi) {
        Some(&t) => prefix(&history, t),
        None => history.clone(),
    };
    // Quiescent instants: completions at which nothing else is in flight.
    let quiescent: Vec<u64> = witness
        .iter()
        .map(|o| o.completed)
        .filter(|&c| c != u64::MAX && witness.iter().all(|o| o.invoked > c || o.completed <= c))
        .collect::<std::collections::BTreeSet<u64>>()
        .into_iter()
        .rev()
        .collect();
    for cut in quiescent {
        let (before, after): (Vec<RegisterOp>, Vec<RegisterOp>) =
            witness.iter().partition(|o| o.completed <= cut);
        let Some(values) = final_values(&before) else {
            continue;
        };
        if values.len() != 1 {
            continue;
        }
        let mut candidate: Vec<RegisterOp> = match values.into_iter().next().flatten() {
            Some(v) => before
                .iter()
                .filter(|o| o.effect == Effect::Write(v))
                .copied()
                .collect(),
            None => Vec::new(),
        };
        candidate.extend(after);
        if reads_sourced(&candidate) && fails(&candidate) {
            witness = candidate;
            break;
        }
    }
    let mut i = witness.len();
    while i > 0 {
        i -= 1;
        if matches!(witness[i].effect, Effect::Read(_)) {
            let mut candidate = witness.clone();
            candidate.remove(i);
            if fails(&candidate) {
                witness = candidate;
            }
        }
    }
    witness
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(source: usize, effect: Effect, invoked: u64, completed: u64) -> RegisterOp {
        RegisterOp {
            source,
            effect,
            invoked,
            completed,
        }
    }

    #[test]
    fn sequential_and_concurrent_histories_pass() {
        let h = [
            op(0, Effect::Read(None), 0, 5),
            op(1, Effect::Write(1), 10, 20),
            op(2, Effect::Read(Some(1)), 30, 40),
            op(3, Effect::Delete(Some(true)), 50, 60),
            op(4, Effect::Read(None), 70, 80),
            op(5, Effect::Delete(Some(false)), 90, 95),
        ];
        assert_eq!(linearizable(&h), Some(true));
        // A read overlapping a write may see either value.
        for seen in [None, Some(7)] {
            let h = [
                op(0, Effect::Write(7), 0, 100),
                op(1, Effect::Read(seen), 10, 20),
            ];
            assert_eq!(linearizable(&h), Some(true), "{seen:?}");
        }
    }

    #[test]
    fn a_stale_read_fails_and_shrinks_to_its_causes() {
        let h = vec![
            op(0, Effect::Write(1), 0, 10),
            op(1, Effect::Read(Some(1)), 12, 14),
            op(2, Effect::Write(2), 20, 30),
            op(3, Effect::Read(Some(2)), 31, 33),
            op(4, Effect::Write(3), 35, 200),
            op(5, Effect::Read(Some(1)), 40, 50),
            op(6, Effect::Read(Some(3)), 60, 70),
        ];
        assert_eq!(linearizable(&h), Some(false));
        // The read of 2 goes (it changes nothing); the write of 3 is still in flight,
        // so it stays: dropping a write could make a witness out of nothing.
        let smallest: Vec<usize> = shrink(h).iter().map(|o| o.source).collect();
        assert_eq!(smallest, vec![0, 2, 4, 5]);
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let late = [
            op(0, Effect::Write(1), 0, 10),
            op(1, Effect::Write(2), 5, u64::MAX),
            op(2, Effect::Read(Some(1)), 20, 30),
            op(3, Effect::Read(Some(2)), 40, 50),
        ];
        assert_eq!(linearizable(&late), Some(true));
        let never = [
            op(0, Effect::Write(2), 0, u64::MAX),
            op(1, Effect::Read(None), 20, 30),
        ];
        assert_eq!(linearizable(&never), Some(true));
        // But once seen, it cannot be unseen.
        let flicker = [
            op(0, Effect::Write(2), 0, u64::MAX),
            op(1, Effect::Read(Some(2)), 20, 30),
            op(2, Effect::Read(None), 40, 50),
        ];
        assert_eq!(linearizable(&flicker), Some(false));
    }

    #[test]
    fn delete_answers_must_match_the_register() {
        let wrong = [
            op(0, Effect::Write(1), 0, 10),
            op(1, Effect::Delete(Some(false)), 20, 30),
        ];
        assert_eq!(linearizable(&wrong), Some(false));
        // Two concurrent deletes: exactly one found the value.
        let both = [
            op(0, Effect::Write(1), 0, 10),
            op(1, Effect::Delete(Some(true)), 20, 30),
            op(2, Effect::Delete(Some(true)), 20, 30),
        ];
        assert_eq!(linearizable(&both), Some(false));
        let one = [
            op(0, Effect::Write(1), 0, 10),
            op(1, Effect::Delete(Some(true)), 20, 30),
            op(2, Effect::Delete(Some(false)), 20, 30),
        ];
        assert_eq!(linearizable(&one), Some(true));
    }

    /// Histories made linearizable by construction (each operation takes effect at a
    /// random instant inside its interval) pass, however much they overlap; moving
    /// one read to a value overwritten before it began makes them fail.
    #[test]
    fn random_linearizable_histories_pass_and_a_planted_stale_read_fails() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % bound
        };
        for round in 0..50 {
            let mut planned: Vec<(u64, u64, u64, Effect)> = Vec::new();
            for i in 0..200u64 {
                let invoked = next(10_000);
                let completed = invoked + 1 + next(300);
                let at = invoked + next(completed - invoked);
                let effect = match next(3) {
                    0 => Effect::Write(i + 1),
                    1 => Effect::Delete(None),
                    _ => Effect::Read(None),
                };
                planned.push((at, invoked, completed, effect));
            }
            planned.sort_by_key(|p| p.0);
            let mut value = None;
            let mut history = Vec::new();
            for (source, (_, invoked, completed, effect)) in planned.into_iter().enumerate() {
                let effect = match effect {
                    Effect::Write(v) => {
                        value = Some(v);
                        Effect::Write(v)
                    }
                    Effect::Delete(_) => {
                        let existed = value.is_some();
                        value = None;
                        Effect::Delete(Some(existed))
                    }
                    Effect::Read(_) => Effect::Read(value),
                };
                history.push(op(source, effect, invoked, completed));
            }
            assert_eq!(linearizable(&history), Some(true), "round {round}");
            let values = final_values(&history).unwrap();
            assert!(
                values.contains(&value),
                "round {round}: {values:?} lacks {value:?}"
            );
            // A read that begins after the first write and a later write both
            // completed, and claims the first write's value.
            history.push(op(998, Effect::Write(10_000), 15_000, 15_010));
            history.push(op(999, Effect::Write(10_001), 20_000, 20_010));
            history.push(op(1000, Effect::Write(10_002), 20_020, 20_030));
            history.push(op(1001, Effect::Read(Some(10_001)), 20_040, 20_050));
            assert_eq!(linearizable(&history), Some(false), "round {round}");
            let smallest: Vec<usize> = shrink(history).iter().map(|o| o.source).collect();
            assert_eq!(smallest, vec![999, 1000, 1001], "round {round}");
        }
    }
}
