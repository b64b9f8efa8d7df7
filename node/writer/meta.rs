//! Bookkeeping that rides with an op in the same RocksDB batch: where the log that
//! ordered it stands and the records of requests with an id, so data and
//! bookkeeping can never disagree after a crash.

use rocksdb::WriteBatch;

use crate::database::shared::Inner;
use crate::error::{Error, Result};
use crate::op::Op;

/// A `meta` change that rides with an op (see [`super::Pending::meta`]).
#[derive(Debug, Clone)]
pub(crate) enum MetaWrite {
    Put(String, Vec<u8>),
    Delete(String),
    /// What the op did, under `key` (the request's id), so a retry of the same
    /// request is answered from here instead of applied again. `request_hash`
    /// fingerprints the request, so a different request reusing the key is told
    /// apart from a retry.
    Outcome {
        key: String,
        index: u64,
        request_hash: u64,
    },
}

/// The outcome of an accepted op, as [`MetaWrite::Outcome`] stores it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredOutcome {
    pub index: u64,
    pub seq: u64,
    pub affected: usize,
    pub deleted: Vec<bool>,
    /// A fingerprint of the request (absent in records written before it existed,
    /// which then match any retry, as they always did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<u64>,
}

pub(super) fn stage_meta_write(
    inner: &Inner,
    batch: &mut WriteBatch,
    write: &MetaWrite,
    seq: u64,
    op: &Op,
    deleted: &[bool],
) -> Result<()> {
    match write {
        MetaWrite::Put(key, value) => inner.store.stage_meta(batch, key, value),
        MetaWrite::Delete(key) => inner.store.stage_meta_delete(batch, key),
        MetaWrite::Outcome {
            key,
            index,
            request_hash,
        } => {
            let outcome = StoredOutcome {
                index: *index,
                seq,
                affected: affected(op, deleted),
                deleted: deleted.to_vec(),
                request_hash: Some(*request_hash),
            };
            let bytes = serde_json::to_vec(&outcome)
                .map_err(|e| Error::Corrupt(format!("request record: {e}")))?;
            inner.store.stage_meta(batch, key, &bytes)
        }
    }
}

/// What an accepted op reports as affected: records written, or ids that existed and
/// were deleted, or 1 for a collection created or dropped.
pub(super) fn affected(op: &Op, deleted: &[bool]) -> usize {
    match op {
        Op::Upsert { records, .. } => records.len(),
        Op::Delete { .. } => deleted.iter().filter(|d| **d).count(),
        Op::PatchMetadata { ids, .. } => ids.len(),
        Op::CreateCollection(_) | Op::DropCollection { .. } => 1,
    }
}
