// Exact distances of a block of shard rows to one query, and that block's best
// `kc` rows, sorted, by a workgroup-wide bitonic sort. The host merges blocks and
// re-ranks the survivors in f32 (kernels/src/wgpu/search.rs).
//
// Workgroup (block, query): rows block*BLOCK .. +BLOCK of this chunk, query `query`.
// Keys are (order-preserving distance bits, row), so ties go to the lower row as on
// every other backend; a disallowed or missing row is (0xffffffff, 0xffffffff).

const THREADS: u32 = 256u;
const BLOCK: u32 = 1024u;
const PER_THREAD: u32 = 4u;
const NONE: u32 = 0xffffffffu;

struct Params {
    dims: u32,
    rows: u32,        // rows in this chunk
    row_offset: u32,  // shard row of this chunk's first row
    queries: u32,
    kc: u32,
    metric: u32,      // 0 cosine, 1 euclidean, 2 dot
    blocks: u32,      // workgroups along x
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> vectors: array<f32>;
@group(0) @binding(1) var<storage, read> queries: array<f32>;
@group(0) @binding(2) var<storage, read> allowed: array<u32>;
@group(0) @binding(3) var<storage, read_write> out_keys: array<vec2<u32>>;
@group(0) @binding(4) var<uniform> params: Params;

var<workgroup> key_dist: array<u32, BLOCK>;
var<workgroup> key_row: array<u32, BLOCK>;

fn ordered_bits(d: f32) -> u32 {
    let b = bitcast<u32>(d);
    if ((b & 0x80000000u) != 0u) {
        return ~b;
    }
    return b | 0x80000000u;
}

fn distance(q: u32, r: u32) -> f32 {
    let dims = params.dims;
    var dot = 0.0;
    var qq = 0.0;
    var xx = 0.0;
    var l2 = 0.0;
    for (var i = 0u; i < dims; i = i + 1u) {
        let a = queries[q * dims + i];
        let b = vectors[r * dims + i];
        dot = fma(a, b, dot);
        qq = fma(a, a, qq);
        xx = fma(b, b, xx);
        let t = a - b;
        l2 = fma(t, t, l2);
    }
    if (params.metric == 0u) {
        let den = sqrt(qq * xx);
        if (den > 0.0) {
            return 1.0 - dot / den;
        }
        return 1.0;
    }
    if (params.metric == 1u) {
        return sqrt(l2);
    }
    return -dot;
}

fn greater(i: u32, j: u32) -> bool {
    return key_dist[i] > key_dist[j] || (key_dist[i] == key_dist[j] && key_row[i] > key_row[j]);
}

fn swap(i: u32, j: u32) {
    let d = key_dist[i];
    let r = key_row[i];
    key_dist[i] = key_dist[j];
    key_row[i] = key_row[j];
    key_dist[j] = d;
    key_row[j] = r;
}

@compute @workgroup_size(256)
fn block_topk(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let block = wg.x;
    let q = wg.y;
    let t = lid.x;
    for (var e = 0u; e < PER_THREAD; e = e + 1u) {
        let slot = t + e * THREADS;
        let r = block * BLOCK + slot;
        var kd = NONE;
        var kr = NONE;
        if (r < params.rows && q < params.queries) {
            let shard_row = params.row_offset + r;
            if (((allowed[shard_row >> 5u] >> (shard_row & 31u)) & 1u) != 0u) {
                kd = ordered_bits(distance(q, r));
                kr = shard_row;
            }
        }
        key_dist[slot] = kd;
        key_row[slot] = kr;
    }
    workgroupBarrier();
    for (var size = 2u; size <= BLOCK; size = size << 1u) {
        for (var stride = size >> 1u; stride > 0u; stride = stride >> 1u) {
            for (var e = 0u; e < BLOCK / 2u / THREADS; e = e + 1u) {
                let i = t + e * THREADS;
                let lo = 2u * i - (i & (stride - 1u));
                let hi = lo + stride;
                let up = (lo & size) == 0u;
                if (greater(lo, hi) == up) {
                    swap(lo, hi);
                }
            }
            workgroupBarrier();
        }
    }
    if (q < params.queries) {
        let base = (q * params.blocks + block) * params.kc;
        for (var i = t; i < params.kc; i = i + THREADS) {
            out_keys[base + i] = vec2<u32>(key_dist[i], key_row[i]);
        }
    }
}
