//! [`WgpuShard`]: a shard in wgpu buffers with an exact host copy.

use std::sync::Arc;

use parking_lot::Mutex;

use super::device::WgpuDevice;
use super::resident::Resident;
use super::search::{search_on_adapter, MAX_WGPU_K};
use crate::cpu::CpuShard;
use crate::shard::validate_search;
use crate::{Compaction, Hit, KernelError, Metric, Row, RowMask, Shard, Storage};

/// One collection's vectors on a wgpu adapter. The host copy re-ranks candidates
/// in f32 and answers searches with k above [`MAX_WGPU_K`].
///
/// An f16 shard keeps f16 on the adapter where it has `shader-f16` and the
/// dimension count is even (wgpu writes buffers in 4-byte units); otherwise f32.
pub struct WgpuShard {
    pub(crate) device: Arc<WgpuDevice>,
    pub(crate) host: CpuShard,
    pub(crate) resident: Mutex<Resident>,
}

impl WgpuShard {
    pub fn new(
        device: Arc<WgpuDevice>,
        dims: usize,
        metric: Metric,
        storage: Storage,
    ) -> Result<WgpuShard, KernelError> {
        let storage = match device.storage_for(storage) {
            Storage::F16 if dims.is_multiple_of(2) => Storage::F16,
            _ => Storage::F32,
        };
        Ok(WgpuShard {
            device,
            host: CpuShard::new(dims, metric)?,
            resident: Mutex::new(Resident::new(storage)),
        })
    }

    /// How the vectors are kept on the adapter.
    pub fn storage(&self) -> Storage {
        self.resident.lock().storage
    }

    /// Caps the rows per GPU buffer below what the adapter allows, so that small
    /// shards exercise the chunked path. Call it before the first search.
    pub fn limit_chunk_rows(&mut self, rows: usize) {
        self.resident.get_mut().chunk_rows_limit = Some(rows);
    }
}

impl Shard for WgpuShard {
    crate::shard::forward_reads_to_host!();

    fn append(&mut self, vector: &[f32]) -> Result<Row, KernelError> {
        self.host.append(vector)
    }

    fn overwrite(&mut self, row: Row, vector: &[f32]) -> Result<(), KernelError> {
        self.host.overwrite(row, vector)?;
        let resident = self.resident.get_mut();
        if (row as usize) < resident.uploaded {
            resident.dirty.insert(row as usize);
        }
        Ok(())
    }

    fn delete(&mut self, row: Row) -> Result<bool, KernelError> {
        // The live mask travels with each search, so nothing on the GPU changes.
        self.host.delete(row)
    }

    fn compacted(&self) -> (Box<dyn Shard>, Compaction) {
        let (host, compaction) = self.host.compacted_host();
        let shard = WgpuShard {
            device: self.device.clone(),
            host,
            resident: Mutex::new(Resident::new(self.resident.lock().storage)),
        };
        (Box::new(shard), compaction)
    }

    fn make_resident(&self) -> Result<(), KernelError> {
        let mut resident = self.resident.lock();
        self.device.checked("uploading the shard", || {
            resident.sync(&self.device, &self.host)
        })?;
        self.device.wait()
    }

    fn on_device(&self) -> Option<bool> {
        Some(true)
    }

    fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        mask: Option<&RowMask>,
    ) -> Result<Vec<Vec<Hit>>, KernelError> {
        let nq = validate_search(self.dims(), self.rows(), queries, k, mask)?;
        if nq == 0 || self.rows() == 0 {
            return Ok(vec![Vec::new(); nq]);
        }
        if k > MAX_WGPU_K {
            return self.host.search_batch(queries, k, mask);
        }
        search_on_adapter(self, queries, nq, k, mask)
    }
}
