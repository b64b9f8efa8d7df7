//! One batch of queries on a wgpu adapter: per chunk and query group, dispatch the
//! block top-k shader, read the block winners back, keep each query's best
//! candidates and re-rank them in exact f32 from the host copy.

use wgpu::util::DeviceExt;

use super::shard::WgpuShard;
use crate::rerank::{candidate_count, rerank_on_host};
use crate::{Hit, KernelError, Metric, RowMask, Shard, TopK};

/// Rows one workgroup sorts (`BLOCK` in the shader): also the largest candidate list.
const BLOCK: usize = 1024;
/// The largest k the shader path serves; larger k is answered from the host copy.
pub const MAX_WGPU_K: usize = BLOCK;
/// Bytes of block winners read back per dispatch.
const READBACK_BYTES: usize = 64 << 20;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    dims: u32,
    rows: u32,
    row_offset: u32,
    queries: u32,
    kc: u32,
    metric: u32,
    blocks: u32,
    pad: u32,
}

fn metric_code(metric: Metric) -> u32 {
    match metric {
        Metric::Cosine => 0,
        Metric::Euclidean => 1,
        Metric::Dot => 2,
    }
}

/// The shader's order-preserving distance bits back to the distance.
fn distance_from_bits(bits: u32) -> f32 {
    if bits & 0x8000_0000 != 0 {
        f32::from_bits(bits & 0x7fff_ffff)
    } else {
        f32::from_bits(!bits)
    }
}

pub(crate) fn search_on_adapter(
    shard: &WgpuShard,
    queries: &[f32],
    nq: usize,
    k: usize,
    mask: Option<&RowMask>,
) -> Result<Vec<Vec<Hit>>, KernelError> {
    let gpu = &*shard.device;
    let dims = shard.dims();
    let kc = candidate_count(k, BLOCK);
    let mut allowed = shard.host.live_mask().clone();
    if let Some(mask) = mask {
        allowed.intersect(mask);
    }
    let mut resident = shard.resident.lock();
    gpu.checked("uploading the shard", || resident.sync(gpu, &shard.host))?;
    let allowed_words: Vec<u32> = bytemuck::cast_slice::<u64, u32>(allowed.words()).to_vec();
    let storage = |label, contents: &[u8]| {
        gpu.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE,
            })
    };
    let allowed_buf = storage("allowed rows", bytemuck::cast_slice(&allowed_words));
    let mut best: Vec<TopK> = (0..nq).map(|_| TopK::new(kc)).collect();
    let full = resident.chunk_rows(gpu, dims);
    for (index, chunk) in resident.chunks.iter().enumerate() {
        if chunk.rows == 0 {
            continue;
        }
        let blocks = chunk.rows.div_ceil(BLOCK);
        let group = (READBACK_BYTES / (blocks * kc * 8)).clamp(1, 65_535);
        let mut first = 0;
        while first < nq {
            let count = group.min(nq - first);
            let readback = gpu.checked("dispatching the search shader", || {
                let query_buf = storage(
                    "queries",
                    bytemuck::cast_slice(&queries[first * dims..(first + count) * dims]),
                );
                let params = Params {
                    dims: dims as u32,
                    rows: chunk.rows as u32,
                    row_offset: (index * full) as u32,
                    queries: count as u32,
                    kc: kc as u32,
                    metric: metric_code(shard.metric()),
                    blocks: blocks as u32,
                    pad: 0,
                };
                let params_buf = gpu
                    .device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("params"),
                        contents: bytemuck::bytes_of(&params),
                        usage: wgpu::BufferUsages::UNIFORM,
                    });
                let out_bytes = (count * blocks * kc * 8) as u64;
                let out = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("block winners"),
                    size: out_bytes,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let readback = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size: out_bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                let bind = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("search"),
                    layout: &gpu.pipeline.get_bind_group_layout(0),
                    entries: &[
                        entry(0, &chunk.buffer),
                        entry(1, &query_buf),
                        entry(2, &allowed_buf),
                        entry(3, &out),
                        entry(4, &params_buf),
                    ],
                });
                let mut encoder = gpu.device.create_command_encoder(&Default::default());
                {
                    let mut pass = encoder.begin_compute_pass(&Default::default());
                    pass.set_pipeline(&gpu.pipeline);
                    pass.set_bind_group(0, &bind, &[]);
                    pass.dispatch_workgroups(blocks as u32, count as u32, 1);
                }
                encoder.copy_buffer_to_buffer(&out, 0, &readback, 0, out_bytes);
                gpu.queue.submit([encoder.finish()]);
                Ok(readback)
            })?;
            let keys = read_back(gpu, &readback)?;
            for (q, per_query) in keys.chunks(blocks * kc * 2).enumerate() {
                let top = &mut best[first + q];
                for key in per_query.chunks_exact(2) {
                    if key[1] != u32::MAX {
                        top.push(distance_from_bits(key[0]), key[1]);
                    }
                }
            }
            first += count;
        }
    }
    drop(resident);
    let candidates: Vec<Vec<u32>> = best
        .into_iter()
        .map(|top| top.into_sorted().into_iter().map(|(_, row)| row).collect())
        .collect();
    Ok(rerank_on_host(&shard.host, queries, &candidates, k))
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

fn read_back(gpu: &super::WgpuDevice, readback: &wgpu::Buffer) -> Result<Vec<u32>, KernelError> {
    let slice = readback.slice(..);
    let (sender, receiver) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |result| {
        let _ = sender.send(result);
    });
    // The callback runs inside whichever thread's poll completes the mapping: when
    // searches share the device, another thread's poll may still be about to call it
    // after ours returns. So wait for the callback itself, polling again meanwhile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mapped = loop {
        gpu.wait()?;
        match receiver.recv_timeout(std::time::Duration::from_millis(20)) {
            Ok(result) => break result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                if std::time::Instant::now() < deadline => {}
            Err(_) => {
                return Err(KernelError::device(
                    "mapping the result buffer",
                    "not mapped within 60 s",
                ))
            }
        }
    };
    mapped.map_err(|e| KernelError::device("mapping the result buffer", e))?;
    let keys = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| KernelError::device("reading the result buffer", e))?;
        bytemuck::cast_slice::<u8, u32>(&view).to_vec()
    };
    readback.unmap();
    Ok(keys)
}
