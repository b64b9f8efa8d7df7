//! A shard's vectors in wgpu buffers: chunks of at most the adapter's binding size.
//!
//! Every chunk but the last is full, so row `r` lives in chunk `r / chunk_rows`.
//! The last chunk grows by doubling (one buffer-to-buffer copy) until it reaches
//! `chunk_rows`; then a new chunk starts. Like the CUDA backend, writes only mark
//! what the GPU lacks and the next search uploads it in bulk. f16 shards are
//! converted on upload; the host copy stays f32.

use std::collections::BTreeSet;

use super::device::WgpuDevice;
use crate::cpu::CpuShard;
use crate::{KernelError, Shard, Storage};

/// The shader indexes a chunk's elements with 32-bit integers.
const MAX_CHUNK_ELEMENTS: usize = (1 << 31) - 1;

pub(crate) struct Chunk {
    pub buffer: wgpu::Buffer,
    pub rows: usize,
    pub capacity: usize,
}

pub(crate) struct Resident {
    pub chunks: Vec<Chunk>,
    pub uploaded: usize,
    pub dirty: BTreeSet<usize>,
    /// A lower chunk size than the adapter's limit, so tests can split small shards.
    pub chunk_rows_limit: Option<usize>,
    /// How the vectors are kept on the adapter: f16 only where it has shader-f16.
    pub storage: Storage,
}

impl Resident {
    pub fn new(storage: Storage) -> Resident {
        Resident {
            chunks: Vec::new(),
            uploaded: 0,
            dirty: BTreeSet::new(),
            chunk_rows_limit: None,
            storage,
        }
    }

    fn element_bytes(&self) -> usize {
        match self.storage {
            Storage::F32 => 4,
            Storage::F16 => 2,
        }
    }

    /// Rows per full chunk for `dims`-dimensional vectors on `device`.
    pub fn chunk_rows(&self, device: &WgpuDevice, dims: usize) -> usize {
        let by_binding = (device.max_binding_bytes / (dims * self.element_bytes()) as u64) as usize;
        let by_index = MAX_CHUNK_ELEMENTS / dims;
        let limit = self.chunk_rows_limit.unwrap_or(by_index);
        by_binding.clamp(1, by_index.min(limit).max(1))
    }

    /// `rows` as the adapter stores them.
    fn encode(storage: Storage, rows: &[f32]) -> std::borrow::Cow<'_, [u8]> {
        match storage {
            Storage::F32 => std::borrow::Cow::Borrowed(bytemuck::cast_slice(rows)),
            Storage::F16 => {
                let halves: Vec<u16> = rows
                    .iter()
                    .map(|&x| half::f16::from_f32(x).to_bits())
                    .collect();
                std::borrow::Cow::Owned(bytemuck::cast_slice(&halves).to_vec())
            }
        }
    }

    pub fn sync(&mut self, device: &WgpuDevice, host: &CpuShard) -> Result<(), KernelError> {
        let dims = host.dims();
        let full = self.chunk_rows(device, dims);
        let rows = host.rows();
        let row_bytes = (dims * self.element_bytes()) as u64;
        while self.uploaded < rows {
            let pending = rows - self.uploaded;
            let needs_chunk = self
                .chunks
                .last()
                .is_none_or(|c| c.capacity == full && c.rows == full);
            if needs_chunk {
                let capacity = pending.clamp(1, full).max(4096.min(full));
                self.chunks.push(Chunk {
                    buffer: vector_buffer(device, capacity as u64 * row_bytes),
                    rows: 0,
                    capacity,
                });
            }
            let Some(last) = self.chunks.last_mut() else {
                break;
            };
            if last.rows == last.capacity {
                let capacity = (last.capacity * 2).max(last.rows + pending).min(full);
                let buffer = vector_buffer(device, capacity as u64 * row_bytes);
                let mut encoder = device.device.create_command_encoder(&Default::default());
                encoder.copy_buffer_to_buffer(
                    &last.buffer,
                    0,
                    &buffer,
                    0,
                    last.rows as u64 * row_bytes,
                );
                device.queue.submit([encoder.finish()]);
                last.buffer = buffer;
                last.capacity = capacity;
            }
            let n = (last.capacity - last.rows).min(pending);
            let src = host.vectors(self.uploaded..self.uploaded + n);
            device.queue.write_buffer(
                &last.buffer,
                last.rows as u64 * row_bytes,
                &Self::encode(self.storage, src),
            );
            last.rows += n;
            self.uploaded += n;
        }
        for &r in &self.dirty {
            if let Some(chunk) = self.chunks.get(r / full) {
                let offset = (r % full) as u64 * row_bytes;
                device.queue.write_buffer(
                    &chunk.buffer,
                    offset,
                    &Self::encode(self.storage, host.vector(r)),
                );
            }
        }
        self.dirty.clear();
        Ok(())
    }
}

fn vector_buffer(device: &WgpuDevice, bytes: u64) -> wgpu::Buffer {
    device.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("shard vectors"),
        size: bytes.max(4),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}
