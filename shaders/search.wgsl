// Tiled exact search: distances of a block of shard rows to a group of queries,
// computed as a GEMM kernel does (tiles staged in workgroup memory, each invocation
// accumulating RPT rows x QG queries in registers), and each query's best `kc`
// candidates of the block kept with a threshold, so that most rows are rejected by
// one comparison and never enter a sort. A second pass (`merge_blocks`) folds the
// blocks' lists into one per query on the GPU, so only `kc` keys per query are read
// back. The host re-ranks those candidates in exact f32 (kernels/src/wgsl/search.rs).
//
// The host prepends the tile constants chosen for the adapter (kernels/src/wgsl/
// tile_plan.rs): THREADS, RPT, QV (queries per workgroup / 4), DK (dimensions per
// stage), CAP (buffered candidates per query) and `Elem`, the storage type of the
// shard's vectors (f32, or f16 where the adapter has shader-f16).
//
// A candidate is a key (order-preserving distance bits, shard row): comparing keys
// orders by (distance, row), the tie-break of every backend. A missing, deleted or
// filtered-out row is NONE and is never a candidate.

const QG: u32 = QV * 4u;
const SUB: u32 = THREADS * RPT;
// One word of padding per staged dimension, so that the writes of a stage (threads
// consecutive along a row's dimensions) fall in different memory banks.
const STRIDE: u32 = SUB + 1u;
const NONE: u32 = 0xffffffffu;

struct Params {
    dims: u32,
    rows: u32,            // rows of this chunk
    row_offset: u32,      // shard row of this chunk's first row
    queries: u32,         // queries of this dispatch
    kc: u32,              // candidates kept per query and block: a power of two
    metric: u32,          // 0 cosine, 1 euclidean, 2 dot
    blocks: u32,          // row blocks (workgroups along x)
    rows_per_block: u32,  // a multiple of SUB
    // This dispatch's share of the work: rows slice_begin .. + slice_rows of each
    // block (`block_topk`), or keys slice_begin .. + slice_rows of each query's block
    // lists (`merge_blocks`). A long search is cut into several dispatches that
    // continue the same best lists: software adapters stop every loop of an
    // invocation after a fixed number of iterations in all (llvmpipe: 65,535).
    slice_begin: u32,
    slice_rows: u32,
    fresh: u32,           // 1: this is the first slice, the best lists start empty
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> vectors: array<Elem>;
// [query group][dimension][QV]: each group's queries interleaved by dimension,
// zero for queries past the end.
@group(0) @binding(1) var<storage, read> queries: array<vec4<f32>>;
// Per query: its inverse norm (cosine); unused otherwise.
@group(0) @binding(2) var<storage, read> q_aux: array<f32>;
@group(0) @binding(3) var<storage, read> allowed: array<u32>;
// Best lists: [query][block][kc] for `block_topk`, [query][kc] for `merge_blocks`.
// Each workgroup owns its queries' slices and keeps them sorted ascending.
@group(0) @binding(4) var<storage, read_write> best: array<vec2<u32>>;
@group(0) @binding(5) var<uniform> params: Params;
// `merge_blocks` input: `block_topk`'s output.
@group(0) @binding(6) var<storage, read> block_keys: array<vec2<u32>>;

var<workgroup> x_tile: array<f32, DK * STRIDE>;      // [dimension][row]
var<workgroup> q_tile: array<vec4<f32>, DK * QV>;    // [dimension][query / 4]
var<workgroup> cand: array<vec2<u32>, QG * CAP>;     // [query][survivor]
var<workgroup> cand_count: array<atomic<u32>, QG>;
var<workgroup> threshold: array<vec2<u32>, QG>;      // each query's kc-th best key
var<workgroup> slot: array<u32, QG>;                 // each query's best list in `best`
var<workgroup> live_query: array<u32, QG>;           // 1 when the query exists
var<workgroup> largest_count: atomic<u32>;

fn ordered_bits(d: f32) -> u32 {
    let b = bitcast<u32>(d);
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

fn less(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.x < b.x || (a.x == b.x && a.y < b.y);
}

// Sets up each query's best list and threshold: empty on the first slice, as the
// previous slice left them otherwise. Every invocation calls it.
fn start_lists(t: u32, first_slot: u32, slot_step: u32, first_query: u32) {
    let kc = params.kc;
    if (t < QG) {
        slot[t] = first_slot + t * slot_step;
        let live = first_query + t < params.queries;
        live_query[t] = select(0u, 1u, live);
        threshold[t] = vec2<u32>(NONE, NONE);
        if (live && params.fresh == 0u) {
            threshold[t] = best[slot[t] + kc - 1u];
        }
        atomicStore(&cand_count[t], 0u);
    }
    workgroupBarrier();
    if (params.fresh != 0u) {
        for (var e = t; e < QG * kc; e = e + THREADS) {
            let j = e / kc;
            if (live_query[j] != 0u) {
                best[slot[j] + e % kc] = vec2<u32>(NONE, NONE);
            }
        }
    }
    storageBarrier();
}

// Buffers `key` for query `j` if it beats the query's threshold. The caller
// guarantees room: at most SUB keys per query are offered between merges' checks.
fn offer(j: u32, key: vec2<u32>) {
    if (less(key, threshold[j])) {
        let i = atomicAdd(&cand_count[j], 1u);
        cand[j * CAP + i] = key;
    }
}

// Sorts every query's buffered survivors and folds them into its best list, when
// some query's buffer could not take another SUB keys (or `always`). Every
// invocation calls it after the round's offers.
fn merge_if_full(t: u32, always: bool) {
    // Every invocation has read the previous call's result before it is reset.
    workgroupBarrier();
    if (t == 0u) {
        atomicStore(&largest_count, 0u);
    }
    workgroupBarrier();
    if (t < QG) {
        atomicMax(&largest_count, atomicLoad(&cand_count[t]));
    }
    let largest = workgroupUniformLoad(&largest_count);
    if (largest == 0u || (!always && largest + SUB <= CAP)) {
        return;
    }
    // Sort only as far as the fullest buffer reaches, padded to a power of two.
    var span = 2u;
    while (span < largest) {
        span = span << 1u;
    }
    for (var e = t; e < QG * span; e = e + THREADS) {
        let j = e / span;
        let i = e % span;
        if (i >= atomicLoad(&cand_count[j])) {
            cand[j * CAP + i] = vec2<u32>(NONE, NONE);
        }
    }
    workgroupBarrier();
    let half_span = span >> 1u;
    for (var size = 2u; size <= span; size = size << 1u) {
        for (var stride = size >> 1u; stride > 0u; stride = stride >> 1u) {
            for (var p = t; p < QG * half_span; p = p + THREADS) {
                let j = p / half_span;
                let i = p % half_span;
                let lo = j * CAP + 2u * i - (i & (stride - 1u));
                let hi = lo + stride;
                let up = ((lo - j * CAP) & size) == 0u;
                let a = cand[lo];
                let b = cand[hi];
                if (less(b, a) == up) {
                    cand[lo] = b;
                    cand[hi] = a;
                }
            }
            workgroupBarrier();
        }
    }
    // The best list ascending against the survivors descending: the elementwise
    // minimum holds the kc smallest of both and is bitonic, so one merge sorts it.
    let kc = params.kc;
    let take = min(span, kc);
    for (var e = t; e < QG * take; e = e + THREADS) {
        let j = e / take;
        let i = e % take;
        if (live_query[j] != 0u) {
            let at = slot[j] + kc - 1u - i;
            let c = cand[j * CAP + i];
            if (less(c, best[at])) {
                best[at] = c;
            }
        }
    }
    storageBarrier();
    let half_kc = kc >> 1u;
    for (var stride = half_kc; stride > 0u; stride = stride >> 1u) {
        for (var p = t; p < QG * half_kc; p = p + THREADS) {
            let j = p / half_kc;
            if (live_query[j] != 0u) {
                let i = p % half_kc;
                let lo = slot[j] + 2u * i - (i & (stride - 1u));
                let hi = lo + stride;
                let a = best[lo];
                let b = best[hi];
                if (less(b, a)) {
                    best[lo] = b;
                    best[hi] = a;
                }
            }
        }
        storageBarrier();
    }
    if (t < QG) {
        if (live_query[t] != 0u) {
            threshold[t] = best[slot[t] + kc - 1u];
        }
        atomicStore(&cand_count[t], 0u);
    }
    workgroupBarrier();
}

// The ranking distance from a tile's accumulator: for euclidean the squared
// distance itself (the host re-ranks with the exact one), else a dot product.
fn rank_distance(acc: f32, qa: f32, xx: f32) -> f32 {
    if (params.metric == 0u) {
        let inv = select(0.0, inverseSqrt(xx), xx > 0.0);
        return 1.0 - acc * qa * inv;
    }
    if (params.metric == 1u) {
        return acc;
    }
    return -acc;
}

// Workgroup (block, query group): this slice of rows block * rows_per_block ..
// + rows_per_block of the chunk against queries group * QG .. + QG.
@compute @workgroup_size(THREADS)
fn block_topk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let block = wg.x;
    let q0 = wg.y * QG;
    let dims = params.dims;
    let kc = params.kc;
    start_lists(t, (q0 * params.blocks + block) * kc, params.blocks * kc, q0);
    let block_start = block * params.rows_per_block;
    let slice_start = block_start + params.slice_begin;
    let slice_end = min(
        params.rows,
        block_start + min(params.rows_per_block, params.slice_begin + params.slice_rows),
    );
    var qa: array<f32, QG>;
    for (var j = 0u; j < QG; j = j + 1u) {
        if (q0 + j < params.queries) {
            qa[j] = q_aux[q0 + j];
        }
    }
    for (var sub = slice_start; sub < slice_end; sub = sub + SUB) {
        var acc = array<vec4<f32>, RPT * QV>();
        var xx = array<f32, RPT>();
        for (var d0 = 0u; d0 < dims; d0 = d0 + DK) {
            // Stage DK dimensions of SUB rows and of the QG queries; reads of
            // consecutive invocations are consecutive in memory.
            for (var n = 0u; n < DK * RPT; n = n + 1u) {
                let e = t + n * THREADS;
                let r = e / DK;
                let i = e % DK;
                var v = 0.0;
                if (sub + r < slice_end && d0 + i < dims) {
                    v = f32(vectors[(sub + r) * dims + d0 + i]);
                }
                x_tile[i * STRIDE + r] = v;
            }
            for (var e = t; e < DK * QV; e = e + THREADS) {
                let i = e / QV;
                var v = vec4<f32>();
                if (d0 + i < dims) {
                    v = queries[(wg.y * dims + d0 + i) * QV + e % QV];
                }
                q_tile[e] = v;
            }
            workgroupBarrier();
            if (params.metric == 1u) {
                // Euclidean sums squared differences itself: through the norms
                // (|q|² + |x|² − 2 q·x) f32 cancels whatever the vectors share, and
                // data with a common offset would lose its true neighbours.
                for (var i = 0u; i < DK; i = i + 1u) {
                    for (var r = 0u; r < RPT; r = r + 1u) {
                        let x = vec4<f32>(x_tile[i * STRIDE + t + r * THREADS]);
                        for (var v = 0u; v < QV; v = v + 1u) {
                            let diff = x - q_tile[i * QV + v];
                            acc[r * QV + v] = fma(diff, diff, acc[r * QV + v]);
                        }
                    }
                }
            } else {
                for (var i = 0u; i < DK; i = i + 1u) {
                    for (var r = 0u; r < RPT; r = r + 1u) {
                        let x = x_tile[i * STRIDE + t + r * THREADS];
                        xx[r] = fma(x, x, xx[r]);
                        for (var v = 0u; v < QV; v = v + 1u) {
                            acc[r * QV + v] = fma(vec4<f32>(x), q_tile[i * QV + v], acc[r * QV + v]);
                        }
                    }
                }
            }
            workgroupBarrier();
        }
        for (var r = 0u; r < RPT; r = r + 1u) {
            let row = sub + t + r * THREADS;
            let shard_row = params.row_offset + row;
            var ok = row < slice_end;
            if (ok) {
                ok = ((allowed[shard_row >> 5u] >> (shard_row & 31u)) & 1u) != 0u;
            }
            if (ok) {
                for (var j = 0u; j < QG; j = j + 1u) {
                    if (live_query[j] != 0u) {
                        let d = rank_distance(acc[r * QV + j / 4u][j % 4u], qa[j], xx[r]);
                        offer(j, vec2<u32>(ordered_bits(d), shard_row));
                    }
                }
            }
        }
        merge_if_full(t, false);
    }
    merge_if_full(t, true);
}

// Workgroup per query group: folds the `blocks` lists of each query into one.
@compute @workgroup_size(THREADS)
fn merge_blocks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let t = lid.x;
    let q0 = wg.x * QG;
    let kc = params.kc;
    start_lists(t, q0 * kc, kc, q0);
    let total = params.blocks * kc;
    let end = min(total, params.slice_begin + params.slice_rows);
    for (var round = params.slice_begin; round < end; round = round + SUB) {
        for (var j = 0u; j < QG; j = j + 1u) {
            if (live_query[j] != 0u) {
                for (var r = 0u; r < RPT; r = r + 1u) {
                    let e = round + t + r * THREADS;
                    if (e < end) {
                        let key = block_keys[(q0 + j) * total + e];
                        if (key.y != NONE) {
                            offer(j, key);
                        }
                    }
                }
            }
        }
        merge_if_full(t, false);
    }
    merge_if_full(t, true);
}
