//! Exactly-once retries: the state machine remembers the outcome of every accepted
//! write that carried a request id, so a retry of it (after a timeout, a leader
//! change, a lost answer) is answered from the record instead of applied again.
//!
//! Records are written in the same RocksDB batch as the write's data and travel in
//! snapshots, so every member holds the same records at the same log index. A record
//! counts for [`WINDOW`] log entries after its own: the rule depends only on log
//! indexes, so all members agree on what is a duplicate even though each forgets old
//! records on its own schedule. A write the database rejected leaves no record; its
//! retry is checked again.
//!
//! A record keeps a fingerprint of the request (its encoded op and precondition), so
//! a *different* write that reuses the id — a client bug, or two clients sharing an
//! `Idempotency-Key` — is refused with `IDEMPOTENCY_KEY_REUSED` instead of being
//! answered with the first write's outcome and silently dropped.

use std::collections::{HashMap, VecDeque};

use needle_consensus::RequestId;

use crate::error::Result;
use crate::op::Applied;
use crate::writer::StoredOutcome;
use crate::Database;
use crate::Error;

use crate::meta_keys::REQUEST_RECORD_PREFIX as PREFIX;
/// Log entries during which a request id is remembered: far longer than any client
/// retries (200,000 entries are over a minute at 3,000 writes/s).
pub(crate) const WINDOW: u64 = 200_000;

#[derive(Debug, Default)]
pub(crate) struct RequestTable {
    records: HashMap<RequestId, StoredOutcome>,
    /// Record ids by log index, oldest first, for expiry.
    order: VecDeque<(u64, RequestId)>,
}

/// The fingerprint of a request: its op and precondition as the log carries them.
pub(crate) fn request_hash(command: &needle_consensus::Command) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&command.payload)
}

pub(crate) fn key(id: RequestId) -> String {
    format!("{PREFIX}{:016x}{:016x}", id.client, id.serial)
}

fn parse_key(key: &str) -> Option<RequestId> {
    let hex = key.strip_prefix(PREFIX)?;
    if hex.len() != 32 {
        return None;
    }
    Some(RequestId {
        client: u64::from_str_radix(&hex[..16], 16).ok()?,
        serial: u64::from_str_radix(&hex[16..], 16).ok()?,
    })
}

impl RequestTable {
    /// The records stored in `db`.
    pub fn load(db: &Database) -> Result<RequestTable> {
        let mut table = RequestTable::default();
        let mut stored: Vec<(RequestId, StoredOutcome)> = db
            .meta_json_with_prefix::<StoredOutcome>(PREFIX)?
            .into_iter()
            .filter_map(|(k, v)| parse_key(&k).map(|id| (id, v)))
            .collect();
        stored.sort_by_key(|(_, v)| v.index);
        for (id, outcome) in stored {
            table.record(id, outcome);
        }
        Ok(table)
    }

    /// What the write `id` did, if one with that id was accepted within the window
    /// before log index `index`: its outcome when `hash` matches (a retry), a refusal
    /// when it does not (another write reusing the id).
    pub fn lookup(&self, id: RequestId, index: u64, hash: u64) -> Option<Result<Applied>> {
        let record = self.records.get(&id)?;
        if record.index + WINDOW <= index {
            return None;
        }
        if record.request_hash.is_some_and(|h| h != hash) {
            return Some(Err(Error::IdempotencyKeyReused {
                key: format!("{}:{}", id.client, id.serial),
            }));
        }
        Some(Ok(Applied {
            seq: record.seq,
            affected: record.affected,
            deleted: record.deleted.clone(),
        }))
    }

    pub fn record(&mut self, id: RequestId, outcome: StoredOutcome) {
        self.order.push_back((outcome.index, id));
        self.records.insert(id, outcome);
    }

    /// Forgets records that no longer count at log index `index`; returns their
    /// storage keys, to be deleted with the next write.
    pub fn expire(&mut self, index: u64) -> Vec<String> {
        let mut keys = Vec::new();
        while let Some(&(at, id)) = self.order.front() {
            if at + WINDOW > index {
                break;
            }
            self.order.pop_front();
            // A retry recorded again later keeps its newer record.
            if self.records.get(&id).is_some_and(|r| r.index == at) {
                self.records.remove(&id);
                keys.push(key(id));
            }
        }
        keys
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(index: u64) -> StoredOutcome {
        StoredOutcome {
            index,
            seq: index * 10,
            affected: 1,
            deleted: vec![],
            request_hash: Some(HASH),
        }
    }

    const HASH: u64 = 0xfeed;

    #[test]
    fn a_retry_within_the_window_is_answered_from_the_record() {
        let mut table = RequestTable::default();
        let id = RequestId {
            client: 1,
            serial: 9,
        };
        let seq = |r: Option<Result<Applied>>| r.and_then(|r| r.ok()).map(|a| a.seq);
        assert!(table.lookup(id, 5, HASH).is_none());
        table.record(id, outcome(5));
        assert_eq!(seq(table.lookup(id, 6, HASH)), Some(50));
        assert_eq!(seq(table.lookup(id, 5 + WINDOW - 1, HASH)), Some(50));
        // Past the window it no longer counts, on every member alike.
        assert!(table.lookup(id, 5 + WINDOW, HASH).is_none());
        let other = RequestId {
            client: 2,
            serial: 9,
        };
        assert!(table.lookup(other, 6, HASH).is_none());
    }

    #[test]
    fn a_different_request_reusing_an_id_is_refused_not_answered() {
        let mut table = RequestTable::default();
        let id = RequestId {
            client: 3,
            serial: 1,
        };
        table.record(id, outcome(5));
        let err = table.lookup(id, 6, HASH + 1).unwrap().unwrap_err();
        assert_eq!(err.code(), "IDEMPOTENCY_KEY_REUSED");
        // Records from before fingerprints existed match any retry, as they did.
        let legacy = RequestId {
            client: 3,
            serial: 2,
        };
        table.record(
            legacy,
            StoredOutcome {
                request_hash: None,
                ..outcome(7)
            },
        );
        assert!(table.lookup(legacy, 8, HASH + 1).unwrap().is_ok());
    }

    #[test]
    fn expiry_returns_the_keys_to_delete_once() {
        let mut table = RequestTable::default();
        let a = RequestId {
            client: 1,
            serial: 1,
        };
        let b = RequestId {
            client: 1,
            serial: 2,
        };
        table.record(a, outcome(1));
        table.record(b, outcome(100));
        assert!(table.expire(WINDOW).is_empty());
        assert_eq!(table.expire(WINDOW + 1), vec![key(a)]);
        assert!(table.expire(WINDOW + 2).is_empty());
        assert_eq!(table.len(), 1);
        assert_eq!(parse_key(&key(b)), Some(b));
        assert_eq!(parse_key("raft_request/zz"), None);
    }
}
