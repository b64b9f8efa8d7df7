//! The device search pipeline for one batch of queries.
//!
//! Per query chunk: `prepare_queries` (norms, f16 copy) → for each tile of rows a
//! tensor-core GEMM of the tile against the queries into a scratch buffer,
//! then `select_tile`, which folds the tile into running per-(query, split) best
//! lists → `merge_splits` → exact re-rank (`rerank_f32` on the device for f32
//! shards, on the host copy for f16 shards). The full query × row distance matrix
//! never exists: only one tile of it, twice the size of L2 by default.
//!
//! With the warp select (`TileSelect::Warp`) two tiles alternate in two buffers:
//! the GEMM of tile t + 1 on the compute stream runs while `warp_select_tile` folds
//! tile t on the select stream; events order each buffer's reuse.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};

use super::device::{Compute, CudaDevice};
use super::resident::{DeviceRows, DeviceVectors};
use super::shard::CudaShard;
use super::tile_select::TileSelect;
use super::trace::StageTrace;
use crate::rerank::{candidate_count, rerank_on_host, sort_and_truncate};
use crate::{F32Math, Hit, KernelError, Metric, RowMask, Shard};

/// The largest k the device path selects; larger k is answered from the host copy.
/// Matches `SELECT_BEST` in `cuda/select.cu`.
pub const MAX_DEVICE_K: usize = 1024;
const SELECT_THREADS: u32 = 512;
/// Warps per block of the warp select, each its own (split, query).
const WARPS_PER_BLOCK: u32 = 4;
/// Columns a warp folds per round (`32 * WARP_ROUND`): a split gets at least this many.
const WARP_ROUND_COLUMNS: usize = 128;
/// Columns one block folds per round (`SELECT_ROUND`): a split gets at least this many.
const SELECT_ROUND: usize = 4096;
/// Tiles are whole multiples of this many rows.
const TILE_GRANULE: usize = 1024;
/// Queries per pass: bounds the grid's y dimension and the scratch buffers.
const QUERY_CHUNK: usize = 2048;

fn metric_code(metric: Metric) -> i32 {
    match metric {
        Metric::Cosine => 0,
        Metric::Euclidean => 1,
        Metric::Dot => 2,
    }
}

/// Tile width and column splits for `queries` queries over `rows` rows.
fn plan(
    device: &CudaDevice,
    tile_bytes: Option<usize>,
    select: TileSelect,
    kc: usize,
    queries: usize,
    rows: usize,
) -> (usize, usize) {
    // By default twice L2 for the tile of dot products. Keeping the tile in L2 (half
    // of it, the first choice) was measured slower on an H200 (benches/RESULTS.md,
    // issue 8): the selection reads its tile well under device bandwidth, so larger
    // GEMMs and fewer launches win, 9.5 → 8.1 ms for TF32 at Q = 1024.
    let budget = tile_bytes.unwrap_or(2 * device.l2_bytes.max(4 << 20)) / 4;
    let tile = (budget / queries.max(1)) / TILE_GRANULE * TILE_GRANULE;
    let tile = tile
        .max(TILE_GRANULE)
        .min(rows.div_ceil(TILE_GRANULE) * TILE_GRANULE);
    // Enough blocks to fill every multiprocessor twice, each with whole rounds; the
    // warp select is one warp per list, so it wants 16 lists per multiprocessor.
    // A warp's split costs two passes over its list (2 · kc keys) per tile, so it
    // gets at least 8 · kc columns, keeping that under a quarter of its own reads.
    let (lists, round) = match select {
        TileSelect::Block => (2, SELECT_ROUND),
        TileSelect::Warp => (16, WARP_ROUND_COLUMNS.max(8 * kc)),
    };
    let wanted = (lists * device.multiprocessors.max(1)).div_ceil(queries.max(1));
    let splits = wanted.clamp(1, (tile / round).max(1));
    (tile, splits)
}

pub(crate) fn search_on_device(
    shard: &CudaShard,
    queries: &[f32],
    nq: usize,
    k: usize,
    mask: Option<&RowMask>,
) -> Result<Vec<Vec<Hit>>, KernelError> {
    let device = &*shard.device;
    let err = |context: &'static str| move |e| KernelError::device(context, e);
    // cuBLAS uses the calling thread's current context; searches come from any thread.
    device
        .ctx
        .bind_to_thread()
        .map_err(err("cuCtxSetCurrent"))?;
    // Uploads on the copy stream, before taking the compute lock, overlap whatever
    // batch is running now.
    let copy = &device.copy;
    let queries_dev = copy.clone_htod(queries).map_err(err("uploading queries"))?;
    let mask_dev = match mask {
        Some(mask) => {
            let words: &[u32] = bytemuck::cast_slice(mask.words());
            Some(
                copy.clone_htod(words)
                    .map_err(err("uploading the filter mask"))?,
            )
        }
        None => None,
    };
    let uploaded = copy.record_event(None).map_err(err("cuEventRecord"))?;
    let trace = StageTrace::start();
    trace.mark(copy, "upload queries");

    let mut resident = shard.resident.lock();
    let compute = device.compute.lock();
    let stream = &compute.stream;
    resident.sync(device, stream, &shard.host, shard.storage)?;
    stream.wait(&uploaded).map_err(err("cuStreamWaitEvent"))?;
    trace.mark(stream, "lock, resident sync");
    let Some(rows_dev) = resident.rows.as_ref() else {
        return Ok(vec![Vec::new(); nq]);
    };

    let kc = candidate_count(k, MAX_DEVICE_K);
    let f16 = matches!(rows_dev.vectors, DeviceVectors::F16(_));
    let mut results = Vec::with_capacity(nq);
    // f16 shards: candidate rows per query, re-ranked on the host once the device
    // is free for the next batch.
    let mut host_candidates: Vec<Vec<u32>> = Vec::new();
    let mut start = 0;
    while start < nq {
        let count = QUERY_CHUNK.min(nq - start);
        let chunk = Chunk {
            device,
            compute: &compute,
            shard,
            rows_dev,
            queries: &queries_dev,
            first: start,
            count,
            mask: mask_dev.as_ref(),
            kc,
            trace: &trace,
        };
        let candidates = chunk.select()?;
        if f16 {
            let keys = stream
                .clone_dtoh(&candidates)
                .map_err(err("downloading candidates"))?;
            stream.synchronize().map_err(err("cuStreamSynchronize"))?;
            trace.mark_host("candidates to host");
            host_candidates.extend(keys.chunks(kc).map(|c| {
                c.iter()
                    .filter(|&&key| key != u64::MAX)
                    .map(|&key| key as u32)
                    .collect::<Vec<u32>>()
            }));
        } else {
            results.extend(chunk.rerank_on_device(&candidates, k)?);
            trace.mark(stream, "rerank_f32");
        }
        start += count;
    }
    drop(compute);
    drop(resident);
    if f16 {
        let hits = rerank_on_host(&shard.host, queries, &host_candidates, k);
        trace.mark_host("host rerank");
        return Ok(hits);
    }
    Ok(results)
}

/// One pass over the shard for up to [`QUERY_CHUNK`] queries.
struct Chunk<'a> {
    device: &'a CudaDevice,
    compute: &'a Compute,
    shard: &'a CudaShard,
    rows_dev: &'a DeviceRows,
    queries: &'a CudaSlice<f32>,
    first: usize,
    count: usize,
    mask: Option<&'a CudaSlice<u32>>,
    kc: usize,
    trace: &'a StageTrace,
}

impl Chunk<'_> {
    fn stream(&self) -> &Arc<CudaStream> {
        &self.compute.stream
    }

    fn queries_ptr(&self) -> u64 {
        let dims = self.shard.dims() as u64;
        self.queries.device_ptr(self.stream()).0 + self.first as u64 * dims * 4
    }

    /// The `kc` best candidate keys per query, `[count][kc]`, `u64::MAX` for none.
    fn select(&self) -> Result<CudaSlice<u64>, KernelError> {
        let err = |context: &'static str| move |e| KernelError::device(context, e);
        let stream = self.stream();
        let kernels = &self.device.kernels;
        let dims = self.shard.dims();
        let rows = self.shard.rows();
        let metric = metric_code(self.shard.metric());
        let f16 = matches!(self.rows_dev.vectors, DeviceVectors::F16(_));

        let q_aux = stream
            .alloc_zeros::<f32>(self.count)
            .map_err(err("alloc"))?;
        let queries_f16 = if f16 {
            Some(
                stream
                    .alloc_zeros::<u16>(self.count * dims)
                    .map_err(err("alloc"))?,
            )
        } else {
            None
        };
        let queries_ptr = self.queries_ptr();
        let q_aux_ptr = q_aux.device_ptr(stream).0;
        let queries_f16_ptr = queries_f16.as_ref().map_or(0, |q| q.device_ptr(stream).0);
        let (dims_i, metric_i) = (dims as i32, metric);
        let mut launch = stream.launch_builder(&kernels.prepare_queries);
        launch
            .arg(&queries_ptr)
            .arg(&dims_i)
            .arg(&metric_i)
            .arg(&q_aux_ptr)
            .arg(&queries_f16_ptr);
        // SAFETY: argument types match the kernel's signature; buffers outlive the stream work
        // because the caller synchronises before dropping them.
        unsafe { launch.launch(config(self.count as u32, 1, 256)) }
            .map_err(err("prepare_queries"))?;
        self.trace.mark(stream, "prepare_queries");

        let select = self.shard.select;
        let kc = self.kc;
        let (tile, splits) = plan(
            self.device,
            self.shard.tile_bytes,
            select,
            kc,
            self.count,
            rows,
        );
        let best = stream
            .alloc_zeros::<u64>(self.count * splits * kc)
            .map_err(err("alloc"))?;
        // The warp select reads one tile while the GEMM writes the other.
        let buffers = if select == TileSelect::Warp { 2 } else { 1 };
        let dots: Vec<CudaSlice<f32>> = (0..buffers)
            .map(|_| stream.alloc_zeros::<f32>(self.count * tile))
            .collect::<Result<_, _>>()
            .map_err(err("alloc"))?;
        let best_ptr = best.device_ptr(stream).0;
        let vectors_ptr = self.rows_dev.vectors_ptr(stream);
        let aux_ptr = self.rows_dev.aux.device_ptr(stream).0;
        let live_ptr = self.rows_dev.live.device_ptr(stream).0;
        let mask_ptr = self.mask.map_or(0, |m| m.device_ptr(stream).0);
        let element = if f16 { 2u64 } else { 4u64 };
        let b_ptr = if f16 { queries_f16_ptr } else { queries_ptr };
        let select_stream = &self.compute.select_stream;
        // Per buffer: the select that last read it, which the next GEMM into it waits for.
        let mut read: Vec<Option<cudarc::driver::CudaEvent>> = (0..buffers).map(|_| None).collect();

        let mut tile_start = 0usize;
        let mut index = 0usize;
        let mut tiles = || -> Result<(), KernelError> {
            while tile_start < rows {
                let tile_rows = tile.min(rows - tile_start);
                let buffer = index % buffers;
                let dots_ptr = dots[buffer].device_ptr(stream).0;
                // Kept until waited for, so a failed wait still leaves it for the wait
                // after the loop.
                if let Some(done) = &read[buffer] {
                    stream.wait(done).map_err(err("cuStreamWaitEvent"))?;
                }
                read[buffer] = None;
                let a_ptr = vectors_ptr + tile_start as u64 * dims as u64 * element;
                self.gemm(a_ptr, b_ptr, dots_ptr, tile_rows, f16)?;
                self.trace.mark(stream, "gemm");
                let ld = tile_rows as i64;
                let (tile_rows_i, tile_start_u) = (tile_rows as i32, tile_start as u32);
                let (kc_i, splits_i, fresh) =
                    (kc as i32, splits as i32, i32::from(tile_start == 0));
                let warp = select == TileSelect::Warp;
                // The warp select runs on its own stream once this tile is written.
                let select_on = if warp {
                    let written = stream.record_event(None).map_err(err("cuEventRecord"))?;
                    select_stream
                        .wait(&written)
                        .map_err(err("cuStreamWaitEvent"))?;
                    select_stream
                } else {
                    stream
                };
                let (function, name, grid_y, threads) = if warp {
                    let width = kc.max(32).next_power_of_two() / 32;
                    (
                        &kernels.warp_select_tile[width.trailing_zeros() as usize],
                        "warp_select_tile",
                        (self.count as u32).div_ceil(WARPS_PER_BLOCK),
                        32 * WARPS_PER_BLOCK,
                    )
                } else {
                    (
                        &kernels.select_tile,
                        "select_tile",
                        self.count as u32,
                        SELECT_THREADS,
                    )
                };
                let count_i = self.count as i32;
                let mut launch = select_on.launch_builder(function);
                launch
                    .arg(&dots_ptr)
                    .arg(&ld)
                    .arg(&tile_rows_i)
                    .arg(&tile_start_u)
                    .arg(&q_aux_ptr)
                    .arg(&aux_ptr)
                    .arg(&live_ptr)
                    .arg(&mask_ptr)
                    .arg(&metric_i)
                    .arg(&kc_i)
                    .arg(&best_ptr)
                    .arg(&splits_i)
                    .arg(&fresh);
                if warp {
                    launch.arg(&count_i);
                }
                // SAFETY: argument types match select_tile's signature, plus the query
                // count for warp_select_tile_P's. `dots` is reused by the next tile only
                // after this select: on the same stream (block), or after the event
                // recorded below (warp); the compute stream waits for the last select
                // before anything is freed or read.
                unsafe { launch.launch(config(splits as u32, grid_y, threads)) }
                    .map_err(err(name))?;
                self.trace.mark(select_on, name);
                if warp {
                    match select_stream.record_event(None) {
                        Ok(done) => read[buffer] = Some(done),
                        Err(e) => {
                            // No event to wait on: wait for the select stream itself
                            // before the buffers it reads can be freed.
                            let _ = select_stream.synchronize();
                            return Err(KernelError::device("cuEventRecord", e));
                        }
                    }
                }
                tile_start += tile_rows;
                index += 1;
            }
            Ok(())
        };
        let folded = tiles();
        // Everything after (merge, re-rank, frees) is on the compute stream, also when
        // a launch above failed: the buffers the selects still read are freed there.
        for done in read.into_iter().flatten() {
            stream.wait(&done).map_err(err("cuStreamWaitEvent"))?;
        }
        folded?;
        if splits == 1 {
            return Ok(best);
        }
        let out = stream
            .alloc_zeros::<u64>(self.count * kc)
            .map_err(err("alloc"))?;
        let out_ptr = out.device_ptr(stream).0;
        let (splits_i, kc_i) = (splits as i32, kc as i32);
        let mut launch = stream.launch_builder(&kernels.merge_splits);
        launch
            .arg(&best_ptr)
            .arg(&splits_i)
            .arg(&kc_i)
            .arg(&out_ptr);
        // SAFETY: as above.
        unsafe { launch.launch(config(self.count as u32, 1, SELECT_THREADS)) }
            .map_err(err("merge_splits"))?;
        self.trace.mark(stream, "merge_splits");
        Ok(out)
    }

    /// `dots[q][j] = queries[q] · rows[tile + j]`, column-major as cuBLAS sees it:
    /// C (tile_rows × count) = Aᵀ B with A the tile (dims × tile_rows) and B the
    /// queries (dims × count).
    fn gemm(&self, a: u64, b: u64, c: u64, tile_rows: usize, f16: bool) -> Result<(), KernelError> {
        let dims = self.shard.dims() as i32;
        let (alpha, beta) = (1.0f32, 0.0f32);
        let (input, compute) = match (f16, self.shard.math) {
            (true, _) => (
                cudaDataType::CUDA_R_16F,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
            ),
            (false, F32Math::Tf32) => (
                cudaDataType::CUDA_R_32F,
                cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32,
            ),
            (false, F32Math::Strict) => (
                cudaDataType::CUDA_R_32F,
                cublasComputeType_t::CUBLAS_COMPUTE_32F_PEDANTIC,
            ),
        };
        // SAFETY: a, b and c point into live device buffers of at least
        // tile_rows × dims, count × dims and count × tile_rows elements.
        unsafe {
            cudarc::cublas::result::gemm_ex(
                *self.compute.blas.handle(),
                cublasOperation_t::CUBLAS_OP_T,
                cublasOperation_t::CUBLAS_OP_N,
                tile_rows as i32,
                self.count as i32,
                dims,
                (&alpha as *const f32).cast::<c_void>(),
                a as *const c_void,
                input,
                dims,
                b as *const c_void,
                input,
                dims,
                (&beta as *const f32).cast::<c_void>(),
                c as *mut c_void,
                cudaDataType::CUDA_R_32F,
                tile_rows as i32,
                compute,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(|e| KernelError::device("cublasGemmEx", e))
    }

    /// Exact f32 distances of the candidates on the device, then the best `k`.
    fn rerank_on_device(
        &self,
        candidates: &CudaSlice<u64>,
        k: usize,
    ) -> Result<Vec<Vec<Hit>>, KernelError> {
        let err = |context: &'static str| move |e| KernelError::device(context, e);
        let stream = self.stream();
        let total = self.count * self.kc;
        let exact = stream.alloc_zeros::<f32>(total).map_err(err("alloc"))?;
        let queries_ptr = self.queries_ptr();
        let vectors_ptr = self.rows_dev.vectors_ptr(stream);
        let cand_ptr = candidates.device_ptr(stream).0;
        let exact_ptr = exact.device_ptr(stream).0;
        let (dims_i, kc_i, total_i) = (self.shard.dims() as i32, self.kc as i32, total as i32);
        let metric = metric_code(self.shard.metric());
        let mut launch = stream.launch_builder(&self.device.kernels.rerank_f32);
        launch
            .arg(&queries_ptr)
            .arg(&vectors_ptr)
            .arg(&dims_i)
            .arg(&cand_ptr)
            .arg(&kc_i)
            .arg(&total_i)
            .arg(&metric)
            .arg(&exact_ptr);
        let blocks = (total * 32).div_ceil(256) as u32;
        // SAFETY: as in `select`.
        unsafe { launch.launch(config(blocks, 1, 256)) }.map_err(err("rerank_f32"))?;
        let keys = stream
            .clone_dtoh(candidates)
            .map_err(err("downloading candidates"))?;
        let distances = stream
            .clone_dtoh(&exact)
            .map_err(err("downloading distances"))?;
        stream.synchronize().map_err(err("cuStreamSynchronize"))?;
        Ok(keys
            .chunks(self.kc)
            .zip(distances.chunks(self.kc))
            .map(|(keys, distances)| {
                let mut hits: Vec<Hit> = keys
                    .iter()
                    .zip(distances)
                    .filter(|(&key, _)| key != u64::MAX)
                    .map(|(&key, &distance)| Hit {
                        row: key as u32,
                        distance,
                    })
                    .collect();
                sort_and_truncate(&mut hits, k);
                hits
            })
            .collect())
    }
}

fn config(grid_x: u32, grid_y: u32, threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (grid_x, grid_y, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}
