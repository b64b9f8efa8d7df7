//! The checkers besides linearizability: durability of acknowledged appends, searches
//! that must see an acknowledged write, and convergence of the members after the
//! faults stop.

use super::history::{Call, Operation, Outcome};
use super::workload::{vector_of, APPENDS, REGISTERS};
use crate::support::{wait_for, Client};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Appends acknowledged (`majority` or `all`) that are not in `present` at the end.
pub fn lost_appends(ops: &[Operation], present: &HashSet<String>) -> Vec<Operation> {
    ops.iter()
        .filter(|o| matches!(o.call, Call::Append { .. }) && o.outcome == Outcome::Written)
        .filter(|o| !present.contains(o.call.key()))
        .cloned()
        .collect()
}

/// The ids of every append whose fate the end state must show: acknowledged ones
/// (must be present) and unknown ones (either way, but reported).
pub fn appended_ids(ops: &[Operation]) -> Vec<String> {
    ops.iter()
        .filter(|o| matches!(o.call, Call::Append { .. }) && o.outcome.is_ok())
        .map(|o| o.call.key().to_string())
        .collect()
}

/// `linearizable` searches that missed a write they had to see: the upsert of the
/// searched value on the searched key was acknowledged before the search began, and
/// no other write to that key could have come between it and the search.
/// Returns (search, the write it missed).
pub fn stale_searches(ops: &[Operation]) -> Vec<(Operation, Operation)> {
    let mut writes_by_key: HashMap<&str, Vec<&Operation>> = HashMap::new();
    let mut upserts: HashMap<(&str, u64), &Operation> = HashMap::new();
    for op in ops {
        match &op.call {
            Call::Upsert { key, value } if !matches!(op.outcome, Outcome::Failed { .. }) => {
                writes_by_key.entry(key).or_default().push(op);
                upserts.insert((key.as_str(), *value), op);
            }
            Call::Delete { key } if !matches!(op.outcome, Outcome::Failed { .. }) => {
                writes_by_key.entry(key).or_default().push(op);
            }
            _ => {}
        }
    }
    let mut stale = Vec::new();
    for search in ops {
        let (
            Call::Search {
                key,
                value,
                consistency,
            },
            Outcome::Hits { ids },
        ) = (&search.call, &search.outcome)
        else {
            continue;
        };
        if consistency != "linearizable" || ids.contains(key) {
            continue;
        }
        let Some(write) = upserts.get(&(key.as_str(), *value)) else {
            continue;
        };
        if write.outcome != Outcome::Written || write.completed_us >= search.invoked_us {
            continue;
        }
        let overwritten = writes_by_key[key.as_str()].iter().any(|other| {
            other.index != write.index
                && other.invoked_us < search.completed_us
                && !(other.outcome.is_ok() && other.completed_us < write.invoked_us)
        });
        if !overwritten {
            stale.push((search.clone(), (*write).clone()));
        }
    }
    stale
}

/// How many `linearizable` searches the search checker could judge (the rest raced a
/// write to their key).
pub fn checkable_searches(ops: &[Operation]) -> usize {
    let mut with_hits = ops.to_vec();
    // A search that found its key passes trivially; count those whose write makes them
    // judgeable by pretending each missed.
    for op in &mut with_hits {
        if let Outcome::Hits { ids } = &mut op.outcome {
            ids.clear();
        }
    }
    stale_searches(&with_hits).len()
}

/// A collection's checksum on one member, if it answers.
fn checksum(url: &str, collection: &str) -> Option<Value> {
    let c = Client::with_timeout(url, Duration::from_secs(5));
    match c.try_get(&format!("/collections/{collection}/checksum")) {
        Ok((200, body)) => Some(body["checksum"].clone()),
        _ => None,
    }
}

/// Fixed queries every member must answer alike once converged.
fn top_k(url: &str) -> Option<Vec<Vec<String>>> {
    let c = Client::with_timeout(url, Duration::from_secs(5));
    (0..8u64)
        .map(|i| {
            let body =
                json!({"vector": vector_of(1_000_000 + i), "k": 5, "include_metadata": false});
            match c.try_post(&format!("/collections/{REGISTERS}/search"), &body) {
                Ok((200, answer)) => Some(
                    answer["results"]
                        .as_array()?
                        .iter()
                        .filter_map(|h| h["id"].as_str().map(str::to_string))
                        .collect(),
                ),
                _ => None,
            }
        })
        .collect()
}

/// Waits (up to `timeout`) until every member in `urls` holds identical collections
/// and gives identical top-k for the fixed queries. `Err` says how they differ.
pub fn converged(urls: &[String], timeout: Duration) -> Result<(), String> {
    let mut last = String::new();
    let agreed = wait_for(timeout, || {
        for collection in [REGISTERS, APPENDS] {
            let sums: Vec<Option<Value>> = urls.iter().map(|u| checksum(u, collection)).collect();
            if sums.iter().any(Option::is_none) || sums.iter().any(|s| *s != sums[0]) {
                last = format!("{collection} checksums differ: {sums:?}");
                return false;
            }
        }
        let answers: Vec<Option<Vec<Vec<String>>>> = urls.iter().map(|u| top_k(u)).collect();
        if answers.iter().any(Option::is_none) || answers.iter().any(|a| *a != answers[0]) {
            last = format!("top-k differ: {answers:?}");
            return false;
        }
        true
    });
    if agreed {
        Ok(())
    } else {
        Err(last)
    }
}

/// The append ids among `ids` that `url` holds.
pub fn present_appends(url: &str, ids: &[String]) -> HashSet<String> {
    let c = Client::with_timeout(url, Duration::from_secs(10));
    ids.iter()
        .filter(|id| {
            matches!(
                c.try_get(&format!("/collections/{APPENDS}/vectors/{id}")),
                Ok((200, _))
            )
        })
        .cloned()
        .collect()
}
