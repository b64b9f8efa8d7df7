//! One batch of queries on a wgpu adapter. Per resident chunk and batch of queries:
//! `block_topk` (tiled distances and each block's best candidates) then
//! `merge_blocks` (one list per query), both on the adapter in one submission; the
//! host reads `kc` keys per query back and re-ranks the candidates in exact f32.
//!
//! Batches are pipelined: the next batch is submitted before the previous one's
//! results are mapped, so its upload and compute overlap that read-back and the
//! host's re-rank.

use std::collections::VecDeque;

use wgpu::util::DeviceExt;

use super::device::{Pipelines, WgpuDevice};
use super::shard::WgpuShard;
use super::tile_plan::TilePlan;
use crate::rerank::{candidate_count, rerank_on_host};
use crate::{Hit, KernelError, Metric, RowMask, Shard};

/// The largest k the shader path serves; larger k is answered from the host copy.
pub const MAX_WGPU_K: usize = 1024;
/// Queries per submission: small enough that a large batch is pipelined, large
/// enough that each submission is one big dispatch.
const BATCH_QUERIES: usize = 256;
/// Block lists one submission may hold on the adapter.
const BLOCK_LIST_BYTES: usize = 64 << 20;
/// Workgroups a dispatch aims for on a hardware adapter: enough to fill a large GPU
/// several times over. A software adapter gets a few per CPU thread instead, since
/// each block's list costs merges and the threads are few.
const HARDWARE_WORKGROUPS: usize = 1024;
const SOFTWARE_WORKGROUPS_PER_THREAD: usize = 4;
/// Loop iterations one invocation may run per dispatch on a software adapter.
/// llvmpipe ends every loop of an invocation, without an error, once its loops
/// together have iterated 65,535 times (`LP_MAX_TGSI_LOOP_ITERATIONS`), so rows late
/// in a long block were never searched. Work is cut into dispatches that stay under
/// half of that by the shader's worst-case bounds (tile_plan.rs).
const SOFTWARE_LOOP_BUDGET: u64 = 32_768;

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
    rows_per_block: u32,
    slice_begin: u32,
    slice_rows: u32,
    fresh: u32,
    pad: u32,
}

fn metric_code(metric: Metric) -> u32 {
    match metric {
        Metric::Cosine => 0,
        Metric::Euclidean => 1,
        Metric::Dot => 2,
    }
}

/// Per query what the shader's cosine ranking needs besides the dot product: the
/// inverse norm (0 for a zero query, whose distance is 1). Euclidean and dot need
/// nothing.
fn query_aux(metric: Metric, query: &[f32]) -> f32 {
    let squared: f32 = query.iter().map(|x| x * x).sum();
    match metric {
        Metric::Cosine if squared > 0.0 => 1.0 / squared.sqrt(),
        _ => 0.0,
    }
}

/// Whether a search of `dims` with lists of `kc` can be cut into dispatches that
/// each stay within a software adapter's loop budget.
fn fits_software_dispatch(plan: &TilePlan, dims: usize, kc: usize) -> bool {
    let kc = kc as u64;
    plan.rows_per_dispatch(dims as u64, kc, SOFTWARE_LOOP_BUDGET)
        .is_some()
        && plan.keys_per_dispatch(kc, SOFTWARE_LOOP_BUDGET).is_some()
}

/// Row blocks for a chunk of `rows` searched by `query_groups` workgroup rows.
fn block_shape(device: &WgpuDevice, rows: usize, query_groups: usize) -> (usize, usize) {
    let sub = device.plan.sub_tile_rows() as usize;
    let target = if device.is_software() {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        SOFTWARE_WORKGROUPS_PER_THREAD * threads
    } else {
        HARDWARE_WORKGROUPS
    };
    let blocks = target
        .div_ceil(query_groups.max(1))
        .clamp(1, rows.div_ceil(sub).max(1));
    let rows_per_block = rows.div_ceil(blocks).div_ceil(sub) * sub;
    (rows.div_ceil(rows_per_block).max(1), rows_per_block)
}

/// Queries as the shader reads them: per group of `group`, dimension by dimension,
/// the group's values side by side (zero past the last query), so that the
/// workgroup loads a dimension of its queries as whole `vec4`s.
fn interleave(queries: &[f32], dims: usize, group: usize) -> Vec<f32> {
    let count = queries.len() / dims;
    let groups = count.div_ceil(group);
    let mut out = vec![0.0; groups * dims * group];
    for (q, query) in queries.chunks_exact(dims).enumerate() {
        let (g, j) = (q / group, q % group);
        for (i, &x) in query.iter().enumerate() {
            out[(g * dims + i) * group + j] = x;
        }
    }
    out
}

/// A submission whose results are not read yet.
struct InFlight {
    readback: wgpu::Buffer,
    submission: wgpu::SubmissionIndex,
    first: usize,
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
    let metric = shard.metric();
    // A power of two, as the shader's merges need; the margin absorbs the shader's
    // arithmetic (cosine through norms, f16 storage) before the exact re-rank.
    let kc = candidate_count(k, MAX_WGPU_K).next_power_of_two();
    if gpu.is_software() && !fits_software_dispatch(&gpu.plan, dims, kc) {
        // Dimensions so many that one sub-tile alone would run past the adapter's
        // loop budget: the host copy answers, as the CPU backend would.
        return shard.host.search_batch(queries, k, mask);
    }
    let mut allowed = shard.host.live_mask().clone();
    if let Some(mask) = mask {
        allowed.intersect(mask);
    }
    let aux: Vec<f32> = queries
        .chunks_exact(dims)
        .map(|q| query_aux(metric, q))
        .collect();
    let mut resident = shard.resident.lock();
    gpu.checked("uploading the shard", || resident.sync(gpu, &shard.host))?;
    let allowed_words: &[u32] = bytemuck::cast_slice(allowed.words());
    let allowed_buf = storage_buffer(gpu, "allowed rows", bytemuck::cast_slice(allowed_words));
    let pipelines = gpu.pipelines(resident.storage);
    let full = resident.chunk_rows(gpu, dims);
    let plan = gpu.plan;
    let group = plan.queries() as usize;

    let mut candidates: Vec<Vec<u32>> = vec![Vec::new(); nq];
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    for (index, chunk) in resident.chunks.iter().enumerate() {
        if chunk.rows == 0 {
            continue;
        }
        let batch_groups = BATCH_QUERIES.div_ceil(group);
        let (blocks, _) = block_shape(gpu, chunk.rows, batch_groups);
        // Keep the block lists of one submission bounded, in whole query groups.
        let batch = (BLOCK_LIST_BYTES / (blocks * kc * 8))
            .clamp(group, BATCH_QUERIES)
            .div_ceil(group)
            * group;
        let mut first = 0;
        while first < nq {
            let count = batch.min(nq - first);
            let query_groups = count.div_ceil(group);
            let (blocks, rows_per_block) = block_shape(gpu, chunk.rows, query_groups);
            let params = Params {
                dims: dims as u32,
                rows: chunk.rows as u32,
                row_offset: (index * full) as u32,
                queries: count as u32,
                kc: kc as u32,
                metric: metric_code(metric),
                blocks: blocks as u32,
                rows_per_block: rows_per_block as u32,
                slice_begin: 0,
                slice_rows: 0,
                fresh: 1,
                pad: 0,
            };
            let interleaved =
                interleave(&queries[first * dims..(first + count) * dims], dims, group);
            let work = Dispatch {
                gpu,
                pipelines,
                plan: &plan,
                vectors: &chunk.buffer,
                allowed: &allowed_buf,
                queries: &interleaved,
                aux: &aux[first..first + count],
                params,
            };
            let (readback, submission) =
                gpu.checked("dispatching the search shader", || Ok(work.submit()))?;
            in_flight.push_back(InFlight {
                readback,
                submission,
                first,
            });
            // Read the previous submission while this one runs.
            if in_flight.len() > 1 {
                if let Some(done) = in_flight.pop_front() {
                    collect(gpu, done, kc, &mut candidates)?;
                }
            }
            first += count;
        }
    }
    drop(resident);
    while let Some(done) = in_flight.pop_front() {
        collect(gpu, done, kc, &mut candidates)?;
    }
    Ok(rerank_on_host(&shard.host, queries, &candidates, k))
}

/// One submission: both passes over one chunk for one batch of queries.
struct Dispatch<'a> {
    gpu: &'a WgpuDevice,
    pipelines: &'a Pipelines,
    plan: &'a TilePlan,
    vectors: &'a wgpu::Buffer,
    allowed: &'a wgpu::Buffer,
    queries: &'a [f32],
    aux: &'a [f32],
    params: Params,
}

impl Dispatch<'_> {
    /// Rows of each block (`block_topk`) and keys of each query's block lists
    /// (`merge_blocks`) one dispatch covers: everything on hardware adapters.
    fn slices(&self) -> (u32, u32) {
        let p = self.params;
        let lists = p.blocks * p.kc;
        if !self.gpu.is_software() {
            return (p.rows_per_block, lists);
        }
        // `search_on_adapter` checked that both fit before dispatching anything.
        let kc = u64::from(p.kc);
        let rows = self
            .plan
            .rows_per_dispatch(u64::from(p.dims), kc, SOFTWARE_LOOP_BUDGET)
            .unwrap_or(u64::from(self.plan.sub_tile_rows()));
        let keys = self
            .plan
            .keys_per_dispatch(kc, SOFTWARE_LOOP_BUDGET)
            .unwrap_or(u64::from(self.plan.sub_tile_rows()));
        (
            rows.min(u64::from(p.rows_per_block)) as u32,
            keys.min(u64::from(lists)) as u32,
        )
    }

    fn submit(&self) -> (wgpu::Buffer, wgpu::SubmissionIndex) {
        let gpu = self.gpu;
        let p = self.params;
        let group = self.plan.queries();
        let query_groups = p.queries.div_ceil(group);
        let query_buf = storage_buffer(gpu, "queries", bytemuck::cast_slice(self.queries));
        let aux_buf = storage_buffer(gpu, "query norms", bytemuck::cast_slice(self.aux));
        let key_bytes = |lists: u64| lists * u64::from(p.kc) * 8;
        let block_lists = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("block lists"),
            size: key_bytes(u64::from(p.queries) * u64::from(p.blocks)),
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let out_bytes = key_bytes(u64::from(p.queries));
        let merged = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("merged lists"),
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
        let (row_slice, key_slice) = self.slices();
        let sliced = |begin: u32, rows: u32| {
            let params = Params {
                slice_begin: begin,
                slice_rows: rows,
                fresh: u32::from(begin == 0),
                ..p
            };
            gpu.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("params"),
                    contents: bytemuck::bytes_of(&params),
                    usage: wgpu::BufferUsages::UNIFORM,
                })
        };
        // One bind group per slice, differing only in its parameters.
        let slice_binds = |pipeline: &wgpu::ComputePipeline,
                           total: u32,
                           step: u32,
                           entries: &[wgpu::BindGroupEntry<'_>]| {
            let layout = pipeline.get_bind_group_layout(0);
            (0..total)
                .step_by(step as usize)
                .map(|begin| {
                    let params_buf = sliced(begin, step);
                    let mut all = entries.to_vec();
                    all.push(entry(5, &params_buf));
                    gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("search slice"),
                        layout: &layout,
                        entries: &all,
                    })
                })
                .collect::<Vec<wgpu::BindGroup>>()
        };
        let topk_binds = slice_binds(
            &self.pipelines.block_topk,
            p.rows_per_block,
            row_slice,
            &[
                entry(0, self.vectors),
                entry(1, &query_buf),
                entry(2, &aux_buf),
                entry(3, self.allowed),
                entry(4, &block_lists),
            ],
        );
        let merge_binds = slice_binds(
            &self.pipelines.merge_blocks,
            p.blocks * p.kc,
            key_slice,
            &[entry(4, &merged), entry(6, &block_lists)],
        );
        let mut encoder = gpu.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.pipelines.block_topk);
            for bind in &topk_binds {
                pass.set_bind_group(0, bind, &[]);
                pass.dispatch_workgroups(p.blocks, query_groups, 1);
            }
            pass.set_pipeline(&self.pipelines.merge_blocks);
            for bind in &merge_binds {
                pass.set_bind_group(0, bind, &[]);
                pass.dispatch_workgroups(query_groups, 1, 1);
            }
        }
        encoder.copy_buffer_to_buffer(&merged, 0, &readback, 0, out_bytes);
        let submission = gpu.queue.submit([encoder.finish()]);
        (readback, submission)
    }
}

/// Adds a finished submission's candidate rows to its queries' lists.
fn collect(
    gpu: &WgpuDevice,
    done: InFlight,
    kc: usize,
    candidates: &mut [Vec<u32>],
) -> Result<(), KernelError> {
    let keys = read_back(gpu, &done.readback, done.submission)?;
    for (q, per_query) in keys.chunks(kc * 2).enumerate() {
        let rows = &mut candidates[done.first + q];
        rows.extend(
            per_query
                .chunks_exact(2)
                .map(|key| key[1])
                .filter(|&row| row != u32::MAX),
        );
    }
    Ok(())
}

fn storage_buffer(gpu: &WgpuDevice, label: &'static str, contents: &[u8]) -> wgpu::Buffer {
    // wgpu refuses an empty binding; a mask of a shard with no rows is still bound.
    let contents: &[u8] = if contents.is_empty() {
        &[0; 4]
    } else {
        contents
    };
    gpu.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE,
        })
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

fn read_back(
    gpu: &WgpuDevice,
    readback: &wgpu::Buffer,
    submission: wgpu::SubmissionIndex,
) -> Result<Vec<u32>, KernelError> {
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
        gpu.wait_for(submission.clone())?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_interleaved_by_group_and_dimension() {
        // 3 queries of 2 dimensions in groups of 2: the last group is padded.
        let queries = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            interleave(&queries, 2, 2),
            [1.0, 3.0, 2.0, 4.0, 5.0, 0.0, 6.0, 0.0]
        );
    }

    #[test]
    fn query_aux_is_what_the_shader_ranks_with() {
        assert_eq!(query_aux(Metric::Euclidean, &[3.0, 4.0]), 0.0);
        assert_eq!(query_aux(Metric::Cosine, &[3.0, 4.0]), 0.2);
        assert_eq!(query_aux(Metric::Cosine, &[0.0, 0.0]), 0.0);
        assert_eq!(query_aux(Metric::Dot, &[3.0, 4.0]), 0.0);
    }
}
