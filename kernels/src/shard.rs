use crate::{Hit, KernelError, Metric, RowMask};

/// Index of a vector inside a shard. Stable until the next [`Shard::compact`].
pub type Row = u32;

/// What a compaction did: `remap[old_row]` is the row's new index, or `None` if the
/// row was a tombstone and is gone. Callers that map ids to rows apply this once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compaction {
    pub remap: Vec<Option<Row>>,
}

/// One collection's vectors on one backend.
///
/// Rows are appended, overwritten in place, or tombstoned by `delete`; tombstones are
/// skipped by search and reclaimed by `compact`. Every method validates its input and
/// leaves the shard unchanged on error.
pub trait Shard: Send + Sync {
    fn dims(&self) -> usize;
    fn metric(&self) -> Metric;
    /// Rows including tombstones: the size a [`RowMask`] for this shard must have.
    fn rows(&self) -> usize;
    /// Rows that are not tombstones.
    fn live(&self) -> usize;
    /// Whether `row` exists and is not a tombstone.
    fn is_live(&self, row: Row) -> bool;
    /// Adds a vector and returns its row.
    fn append(&mut self, vector: &[f32]) -> Result<Row, KernelError>;
    /// Replaces the vector at `row` (reviving it if it was deleted).
    fn overwrite(&mut self, row: Row, vector: &[f32]) -> Result<(), KernelError>;
    /// Tombstones `row`; returns whether it was live.
    fn delete(&mut self, row: Row) -> Result<bool, KernelError>;
    /// A copy of this shard without tombstones, live rows packed densely in their
    /// order, plus the row renumbering. Takes `&self` so that searches on this shard
    /// can go on while the copy is made; the caller swaps the copy in afterwards.
    fn compacted(&self) -> (Box<dyn Shard>, Compaction);
    /// The `k` closest live rows to each query, best first. `queries` holds
    /// `queries.len() / dims` vectors back to back; `mask`, when given, must cover
    /// [`Shard::rows`] rows and restricts results to its set rows. Fewer than `k` hits
    /// come back only when fewer than `k` rows are live and allowed.
    fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        mask: Option<&RowMask>,
    ) -> Result<Vec<Vec<Hit>>, KernelError>;
    /// Whether `additional_rows` more rows would fit, checked before a write is
    /// committed so that a full device refuses the write instead of losing it.
    fn check_room(&self, additional_rows: usize) -> Result<(), KernelError> {
        let _ = additional_rows;
        Ok(())
    }
    /// Serves this shard from its host copy from now on, whatever room the device
    /// has: for rows that must be taken although the device cannot hold them (an
    /// entry every member of a cluster applies must not be refused by one member for
    /// lack of device memory). A no-op for host-memory backends.
    fn serve_from_host(&self) {}
    /// Copies whatever the device lacks to it now instead of at the next search, so
    /// a node that just loaded its collections answers the first query at full
    /// speed. A no-op for host-memory backends. A device without room is reported
    /// ([`KernelError::DeviceMemory`]) and the shard is then searched on the host.
    fn make_resident(&self) -> Result<(), KernelError> {
        Ok(())
    }
    /// `None` for host-memory backends; for device backends whether the shard is
    /// searched on the device (`false`: the device was full and it runs on the host).
    fn on_device(&self) -> Option<bool> {
        None
    }
}

/// Checks shared by every backend's `search_batch`, so they all reject the same input.
pub(crate) fn validate_search(
    dims: usize,
    rows: usize,
    queries: &[f32],
    k: usize,
    mask: Option<&RowMask>,
) -> Result<usize, KernelError> {
    if k == 0 || k > crate::MAX_K {
        return Err(KernelError::InvalidK {
            k,
            max: crate::MAX_K,
        });
    }
    if !queries.len().is_multiple_of(dims) {
        return Err(KernelError::RaggedQueries {
            len: queries.len(),
            dims,
        });
    }
    if let Some(mask) = mask {
        if mask.rows() != rows {
            return Err(KernelError::MaskSize {
                mask: mask.rows(),
                rows,
            });
        }
    }
    Ok(queries.len() / dims)
}

/// The read-only [`Shard`] methods of a GPU shard, answered by its `host: CpuShard`
/// copy, which always holds exactly the shard's rows and tombstones.
macro_rules! forward_reads_to_host {
    () => {
        fn dims(&self) -> usize {
            self.host.dims()
        }

        fn metric(&self) -> $crate::Metric {
            self.host.metric()
        }

        fn rows(&self) -> usize {
            self.host.rows()
        }

        fn live(&self) -> usize {
            self.host.live()
        }

        fn is_live(&self, row: $crate::Row) -> bool {
            self.host.is_live(row)
        }
    };
}
pub(crate) use forward_reads_to_host;
