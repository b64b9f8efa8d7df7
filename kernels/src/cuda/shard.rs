//! [`CudaShard`]: a shard resident in device memory with an exact host copy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::device::CudaDevice;
use super::resident::{ensure_room, grown_capacity, Resident};
use super::search::{search_on_device, MAX_DEVICE_K};
use super::tile_select::TileSelect;
use crate::cpu::CpuShard;
use crate::shard::validate_search;
use crate::{
    Compaction, F32Math, Hit, KernelError, Metric, OnDeviceFull, Row, RowMask, Shard, Storage,
};

/// One collection's vectors on a CUDA device.
///
/// The host copy is the CPU backend's shard: it makes results exact (candidates
/// are re-ranked from it in f32 for f16 shards), it answers the rare searches the
/// device path does not take (k above [`MAX_DEVICE_K`]), and it means the device
/// never holds the only copy of anything. When the device cannot hold the shard
/// (memory taken by other processes, or [`OnDeviceFull::ServeFromHost`]), searches
/// run on the host copy instead of failing.
pub struct CudaShard {
    pub(crate) device: Arc<CudaDevice>,
    pub(crate) storage: Storage,
    pub(crate) math: F32Math,
    pub(crate) on_full: OnDeviceFull,
    /// Bytes of the GEMM output tile; `None`: twice L2. For tuning on new cards.
    pub(crate) tile_bytes: Option<usize>,
    /// Which kernel folds each tile into the best lists.
    pub(crate) select: TileSelect,
    pub(crate) host: CpuShard,
    pub(crate) resident: Mutex<Resident>,
    /// Set once an upload found the device full; searches then use the host copy.
    pub(crate) on_host: AtomicBool,
}

impl CudaShard {
    pub fn new(
        device: Arc<CudaDevice>,
        dims: usize,
        metric: Metric,
        storage: Storage,
        math: F32Math,
        on_full: OnDeviceFull,
    ) -> Result<CudaShard, KernelError> {
        Ok(CudaShard {
            device,
            storage,
            math,
            on_full,
            tile_bytes: None,
            select: TileSelect::default(),
            host: CpuShard::new(dims, metric)?,
            resident: Mutex::new(Resident::default()),
            on_host: AtomicBool::new(false),
        })
    }

    /// A shard over `host` with this one's settings; it tries the device afresh.
    fn with_host(&self, host: CpuShard) -> CudaShard {
        CudaShard {
            device: self.device.clone(),
            storage: self.storage,
            math: self.math,
            on_full: self.on_full,
            tile_bytes: self.tile_bytes,
            select: self.select,
            host,
            resident: Mutex::new(Resident::default()),
            on_host: AtomicBool::new(false),
        }
    }

    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// Sets the size of the GEMM output tile the selection kernel reads back
    /// (default: half of the device's L2). Benchmarks sweep it on new cards.
    pub fn set_tile_bytes(&mut self, bytes: Option<usize>) {
        self.tile_bytes = bytes;
    }
}

impl Drop for CudaShard {
    /// The device buffers are freed as the fields drop, on whatever thread drops the
    /// shard (compaction swaps shards from a background thread): bind the context
    /// first, or the frees would fail silently and leak device memory.
    fn drop(&mut self) {
        let _ = self.device.ctx.bind_to_thread();
    }
}

impl Shard for CudaShard {
    crate::shard::forward_reads_to_host!();

    fn append(&mut self, vector: &[f32]) -> Result<Row, KernelError> {
        // Uploaded in bulk by the next search: see `Resident::sync`.
        self.host.append(vector)
    }

    fn overwrite(&mut self, row: Row, vector: &[f32]) -> Result<(), KernelError> {
        self.host.overwrite(row, vector)?;
        let resident = self.resident.get_mut();
        if (row as usize) < resident.uploaded {
            resident.dirty.insert(row as usize);
        }
        resident.live_stale = true;
        Ok(())
    }

    fn delete(&mut self, row: Row) -> Result<bool, KernelError> {
        let was_live = self.host.delete(row)?;
        if was_live {
            self.resident.get_mut().live_stale = true;
        }
        Ok(was_live)
    }

    fn compacted(&self) -> (Box<dyn Shard>, Compaction) {
        let (host, compaction) = self.host.compacted_host();
        (Box::new(self.with_host(host)), compaction)
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
        if k > MAX_DEVICE_K || self.on_host.load(Ordering::Relaxed) {
            return self.host.search_batch(queries, k, mask);
        }
        match search_on_device(self, queries, nq, k, mask) {
            Err(KernelError::DeviceMemory { .. }) => {
                self.on_host.store(true, Ordering::Relaxed);
                self.host.search_batch(queries, k, mask)
            }
            other => other,
        }
    }

    fn check_room(&self, additional_rows: usize) -> Result<(), KernelError> {
        if self.on_full == OnDeviceFull::ServeFromHost || self.on_host.load(Ordering::Relaxed) {
            return Ok(());
        }
        let rows = self.rows() + additional_rows;
        let capacity = self.resident.lock().rows.as_ref().map_or(0, |r| r.capacity);
        if rows <= capacity {
            return Ok(());
        }
        ensure_room(
            &self.device,
            self.dims(),
            self.storage,
            grown_capacity(capacity, rows),
        )
    }

    fn serve_from_host(&self) {
        self.on_host.store(true, Ordering::Relaxed);
    }

    fn make_resident(&self) -> Result<(), KernelError> {
        if self.on_host.load(Ordering::Relaxed) {
            return Ok(());
        }
        let _ = self.device.ctx.bind_to_thread();
        let mut resident = self.resident.lock();
        let compute = self.device.compute.lock();
        let synced = resident
            .sync(&self.device, &compute.stream, &self.host, self.storage)
            .and_then(|()| {
                compute
                    .stream
                    .synchronize()
                    .map_err(|e| KernelError::device("cuStreamSynchronize", e))
            });
        if let Err(KernelError::DeviceMemory { .. }) = &synced {
            self.on_host.store(true, Ordering::Relaxed);
        }
        synced
    }

    fn on_device(&self) -> Option<bool> {
        Some(!self.on_host.load(Ordering::Relaxed))
    }
}
