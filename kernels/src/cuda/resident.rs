//! A shard's vectors in device memory, kept in step with its host copy.
//!
//! Writes change the host copy at once and mark what the device lacks; the next
//! search uploads it in one go (`sync`). Bulk loads therefore become one large copy
//! instead of a copy per row, and a write never waits for the GPU.

use std::collections::BTreeSet;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use rayon::prelude::*;

use super::device::CudaDevice;
use crate::cpu::CpuShard;
use crate::{KernelError, Metric, Shard, Storage};

/// Bytes of free device memory left untouched for cuBLAS workspaces and per-search
/// scratch buffers.
const HEADROOM: usize = 256 << 20;

pub(crate) enum DeviceVectors {
    F32(CudaSlice<f32>),
    /// IEEE half bit patterns: the GEMM reads them as `CUDA_R_16F`.
    F16(CudaSlice<u16>),
}

/// Device buffers sized for `capacity` rows.
pub(crate) struct DeviceRows {
    pub vectors: DeviceVectors,
    /// Per-row ranking term: squared norm (euclidean, dot) or inverse norm (cosine).
    pub aux: CudaSlice<f32>,
    /// Live rows, one bit each, in 32-bit words.
    pub live: CudaSlice<u32>,
    pub capacity: usize,
}

impl DeviceRows {
    pub fn vectors_ptr(&self, stream: &CudaStream) -> u64 {
        match &self.vectors {
            DeviceVectors::F32(v) => v.device_ptr(stream).0,
            DeviceVectors::F16(v) => v.device_ptr(stream).0,
        }
    }
}

/// What the device holds of one shard and what it still lacks.
#[derive(Default)]
pub(crate) struct Resident {
    pub rows: Option<DeviceRows>,
    /// Rows `0..uploaded` on the device match the host copy, except `dirty` ones.
    pub uploaded: usize,
    pub dirty: BTreeSet<usize>,
    pub live_stale: bool,
}

impl Resident {
    /// Brings the device copy up to date with `host`, growing the buffers (doubling,
    /// one device-to-device copy) when rows were appended past their capacity.
    pub fn sync(
        &mut self,
        device: &CudaDevice,
        stream: &Arc<CudaStream>,
        host: &CpuShard,
        storage: Storage,
    ) -> Result<(), KernelError> {
        let rows = host.rows();
        let dims = host.dims();
        let capacity = self.rows.as_ref().map_or(0, |r| r.capacity);
        if rows > capacity {
            let grown = self.grow(
                device,
                stream,
                dims,
                storage,
                grown_capacity(capacity, rows),
            )?;
            self.rows = Some(grown);
            self.live_stale = true;
        }
        let Some(device_rows) = self.rows.as_mut() else {
            return Ok(());
        };
        // Many scattered overwrites cost more as single-row copies than one re-upload.
        if self.dirty.len() > 64 && self.dirty.len() > self.uploaded / 8 {
            self.dirty.clear();
            self.uploaded = 0;
        }
        let aux = aux_of(host);
        if self.uploaded < rows {
            upload_rows(stream, device_rows, host, self.uploaded..rows)?;
            upload_aux(
                stream,
                &mut device_rows.aux,
                &aux[self.uploaded..rows],
                self.uploaded,
            )?;
        }
        for &r in &self.dirty {
            upload_rows(stream, device_rows, host, r..r + 1)?;
            upload_aux(stream, &mut device_rows.aux, &aux[r..r + 1], r)?;
        }
        if self.live_stale || self.uploaded != rows {
            let words: &[u32] = bytemuck::cast_slice(host.live_mask().words());
            let words = &words[..rows.div_ceil(32)];
            let mut dst = device_rows.live.slice_mut(0..words.len());
            stream
                .memcpy_htod(words, &mut dst)
                .map_err(|e| KernelError::device("uploading the live mask", e))?;
        }
        self.uploaded = rows;
        self.dirty.clear();
        self.live_stale = false;
        Ok(())
    }

    fn grow(
        &mut self,
        device: &CudaDevice,
        stream: &Arc<CudaStream>,
        dims: usize,
        storage: Storage,
        capacity: usize,
    ) -> Result<DeviceRows, KernelError> {
        ensure_room(device, dims, storage, capacity)?;
        let alloc_err = |e| KernelError::device("allocating shard memory", e);
        let vectors = match storage {
            Storage::F32 => DeviceVectors::F32(
                stream
                    .alloc_zeros::<f32>(capacity * dims)
                    .map_err(alloc_err)?,
            ),
            Storage::F16 => DeviceVectors::F16(
                stream
                    .alloc_zeros::<u16>(capacity * dims)
                    .map_err(alloc_err)?,
            ),
        };
        let mut grown = DeviceRows {
            vectors,
            aux: stream.alloc_zeros::<f32>(capacity).map_err(alloc_err)?,
            live: stream
                .alloc_zeros::<u32>(capacity.div_ceil(32))
                .map_err(alloc_err)?,
            capacity,
        };
        if let Some(old) = self.rows.take() {
            let copy_err = |e| KernelError::device("growing shard memory", e);
            let used = self.uploaded;
            match (&old.vectors, &mut grown.vectors) {
                (DeviceVectors::F32(from), DeviceVectors::F32(to)) => stream
                    .memcpy_dtod(
                        &from.slice(0..used * dims),
                        &mut to.slice_mut(0..used * dims),
                    )
                    .map_err(copy_err)?,
                (DeviceVectors::F16(from), DeviceVectors::F16(to)) => stream
                    .memcpy_dtod(
                        &from.slice(0..used * dims),
                        &mut to.slice_mut(0..used * dims),
                    )
                    .map_err(copy_err)?,
                _ => self.uploaded = 0,
            }
            stream
                .memcpy_dtod(&old.aux.slice(0..used), &mut grown.aux.slice_mut(0..used))
                .map_err(copy_err)?;
        }
        Ok(grown)
    }
}

/// Device bytes for `capacity` rows of `dims` dimensions.
pub(crate) fn bytes_for(dims: usize, storage: Storage, capacity: usize) -> usize {
    let element = match storage {
        Storage::F32 => 4,
        Storage::F16 => 2,
    };
    capacity * (dims * element + 4) + capacity.div_ceil(32) * 4
}

/// Refuses with [`KernelError::DeviceMemory`] when `capacity` rows would not fit in
/// the device's free memory beside the headroom for scratch buffers.
pub(crate) fn ensure_room(
    device: &CudaDevice,
    dims: usize,
    storage: Storage,
    capacity: usize,
) -> Result<(), KernelError> {
    let needed = bytes_for(dims, storage, capacity);
    let (free, _) = device.memory()?;
    if needed + HEADROOM > free {
        return Err(KernelError::DeviceMemory { needed, free });
    }
    Ok(())
}

/// The capacity the next growth past `capacity` to hold `rows` allocates.
pub(crate) fn grown_capacity(capacity: usize, rows: usize) -> usize {
    rows.max(capacity * 2).max(1024)
}

/// The per-row term the selection kernel combines with a dot product.
fn aux_of(host: &CpuShard) -> &[f32] {
    match host.metric() {
        Metric::Cosine => host.inv_norms(),
        Metric::Euclidean | Metric::Dot => host.norms_sq(),
    }
}

fn upload_rows(
    stream: &Arc<CudaStream>,
    device_rows: &mut DeviceRows,
    host: &CpuShard,
    range: std::ops::Range<usize>,
) -> Result<(), KernelError> {
    let dims = host.dims();
    let src = host.vectors(range.clone());
    let span = range.start * dims..range.end * dims;
    let err = |e| KernelError::device("uploading vectors", e);
    match &mut device_rows.vectors {
        DeviceVectors::F32(dst) => stream
            .memcpy_htod(src, &mut dst.slice_mut(span))
            .map_err(err),
        DeviceVectors::F16(dst) => {
            let halves: Vec<u16> = src
                .par_iter()
                .map(|&x| half::f16::from_f32(x).to_bits())
                .collect();
            stream
                .memcpy_htod(&halves, &mut dst.slice_mut(span))
                .map_err(err)
        }
    }
}

fn upload_aux(
    stream: &Arc<CudaStream>,
    aux: &mut CudaSlice<f32>,
    src: &[f32],
    at: usize,
) -> Result<(), KernelError> {
    stream
        .memcpy_htod(src, &mut aux.slice_mut(at..at + src.len()))
        .map_err(|e| KernelError::device("uploading norms", e))
}
