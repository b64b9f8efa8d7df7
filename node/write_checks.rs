//! The checks a write passes before it is queued, on the caller's thread, so the
//! single writer only does the checks that need the current state. Two sets: what
//! every version of needle checked (also applied to entries ordered elsewhere, which
//! an older member may have accepted), and the stricter checks of a write this node
//! is about to order.

use crate::error::{Error, Result};
use crate::model::{validate_collection_name, VectorRecord};
use crate::op::Op;

/// The largest encoded op a node accepts: every op travels whole in one replication
/// message (a pull reply, a Raft AppendEntries), whose frame is at most 64 MiB; the
/// rest is room for the message's own fields.
pub const MAX_OP_BYTES: usize = 56 << 20;

/// Every check of [`validate_context_free`] and more, for a write this node orders:
/// its encoded size, that its collection exists (`dims_of` gives its dimensions),
/// and the component bound of new vectors.
pub(crate) fn validate_new(op: &Op, dims_of: impl Fn(&str) -> Result<usize>) -> Result<()> {
    let bytes = op.encoded_len_bound();
    if bytes > MAX_OP_BYTES {
        return Err(Error::OpTooLarge {
            bytes: bytes as u64,
            max: MAX_OP_BYTES as u64,
        });
    }
    match op {
        Op::Upsert {
            collection,
            records,
        } => match dims_of(collection) {
            Ok(dims) => validate_records(records, |r| r.validate_new(dims)),
            // A Raft member may not have applied the collection's creation yet and
            // lets the log decide on it: the new-vector checks still hold.
            Err(e @ Error::CollectionNotFound(_)) => {
                validate_records(records, |r| r.validate_new(r.vector.len()))?;
                Err(e)
            }
            Err(e) => Err(e),
        },
        Op::Delete { collection, .. } | Op::PatchMetadata { collection, .. } => {
            dims_of(collection)?;
            validate_context_free(op)
        }
        Op::CreateCollection(_) | Op::DropCollection { .. } => validate_context_free(op),
    }
}

/// Whether `rows` more rows fit on the shard's device (see `Shard::check_room`).
pub(crate) fn room_on_device(
    shard: &dyn needle_kernels::Shard,
    rows: usize,
) -> std::result::Result<(), needle_kernels::KernelError> {
    if crate::injected_faults::device_full() {
        return Err(needle_kernels::KernelError::DeviceMemory {
            needed: rows,
            free: 0,
        });
    }
    shard.check_room(rows)
}

/// The checks of an op that need no database state (ids, finite vectors, metadata
/// size, names): for entries whose collection may be created earlier in the same
/// stream. Dimensions are checked by the writer against the collection itself.
pub(crate) fn validate_context_free(op: &Op) -> Result<()> {
    match op {
        Op::CreateCollection(config) => config.validate(),
        Op::DropCollection { name } => validate_collection_name(name),
        Op::Upsert { records, .. } => validate_records(records, |r| r.validate(r.vector.len())),
        Op::Delete { ids, .. } => ids.iter().try_for_each(|id| crate::model::validate_id(id)),
        Op::PatchMetadata {
            ids, set, remove, ..
        } => {
            ids.iter()
                .try_for_each(|id| crate::model::validate_id(id))?;
            crate::model::validate_metadata_paths(remove)?;
            set.as_ref().map_or(Ok(()), crate::model::validate_metadata)
        }
    }
}

/// Runs `check` on every record; a failure names the record's index.
fn validate_records(
    records: &[VectorRecord],
    check: impl Fn(&VectorRecord) -> Result<()>,
) -> Result<()> {
    records.iter().enumerate().try_for_each(|(index, r)| {
        check(r).map_err(|e| Error::InvalidBatchItem {
            index,
            source: Box::new(e),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::validate_new;
    use crate::error::Error;
    use crate::model::VectorRecord;
    use crate::op::Op;

    #[test]
    fn new_vectors_are_bounded_even_where_their_collection_is_not_known_yet() {
        // A Raft member lets the log decide whether the collection exists, but a
        // component past the bound must not reach the log through it.
        let not_here = |name: &str| Err(Error::CollectionNotFound(name.to_string()));
        let upsert = |x: f32| Op::Upsert {
            collection: "c".into(),
            records: vec![VectorRecord::new("a", vec![x, 0.0])],
        };
        let refused = validate_new(&upsert(3e38), not_here).unwrap_err();
        assert_eq!(refused.code(), "INVALID_VECTOR", "{refused}");
        let unknown = validate_new(&upsert(1.0), not_here).unwrap_err();
        assert_eq!(unknown.code(), "COLLECTION_NOT_FOUND", "{unknown}");
    }
}
