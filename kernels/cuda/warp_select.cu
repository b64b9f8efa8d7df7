// Top-k over a tile of dot products with one warp per (query, split) and the
// warp's best list in registers: no shared memory and no block barrier, so the
// select of one tile runs on its own stream while the tensor cores compute the next
// tile (kernels/src/cuda/search.rs, NEEDLE_CUDA_KERNEL=warp). It replaces
// `select_tile` (select.cu), whose block-wide sorts made it read each tile back at
// 0.6-0.85x of the GEMM's time, serialised behind it.
//
// Appended to select.cu when compiled: it uses MAX_KEY and tile_key from there, and its lists are the same ([queries][splits][kc],
// sorted ascending) so that `merge_splits` folds them as before.
//
// The warp's list holds m = 32 * P keys (the smallest power of two >= kc, at least
// 32), sorted ascending across the warp: lane l holds elements l*P .. l*P + P - 1,
// so a compare at distance s >= P is a shuffle between lanes and one at s < P stays
// in a lane's registers. P is a template parameter so the list never leaves
// registers. Each round the warp loads WARP_ROUND keys per lane; only when some lane
// holds a key below the list's kc-th, those 32 keys are sorted across the warp and
// merged in (log2(m) + 15 shuffle steps), so once the list has settled a round
// costs loads and one compare per key.

#define WARP_ROUND 4

__device__ __forceinline__ u64 shfl_xor_key(u64 v, int lane_mask) {
    unsigned lo = __shfl_xor_sync(0xffffffffu, (unsigned)v, lane_mask);
    unsigned hi = __shfl_xor_sync(0xffffffffu, (unsigned)(v >> 32), lane_mask);
    return ((u64)hi << 32) | lo;
}

__device__ __forceinline__ u64 shfl_key(u64 v, int src_lane) {
    unsigned lo = __shfl_sync(0xffffffffu, (unsigned)v, src_lane);
    unsigned hi = __shfl_sync(0xffffffffu, (unsigned)(v >> 32), src_lane);
    return ((u64)hi << 32) | lo;
}

__device__ __forceinline__ u64 key_min(u64 a, u64 b) { return a < b ? a : b; }
__device__ __forceinline__ u64 key_max(u64 a, u64 b) { return a < b ? b : a; }

// One key per lane, returned sorted ascending by lane (a bitonic network).
__device__ __forceinline__ u64 warp_sort_32(u64 v, int lane) {
#pragma unroll
    for (int size = 2; size <= 32; size <<= 1) {
#pragma unroll
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            u64 other = shfl_xor_key(v, stride);
            // The lower lane of a pair keeps the minimum in an ascending run.
            bool keep_min = ((lane & stride) == 0) == ((lane & size) == 0);
            v = keep_min ? key_min(v, other) : key_max(v, other);
        }
    }
    return v;
}

// The warp's list of 32 * P keys, element e = lane * P + r in q[r].
template <int P>
struct WarpList {
    u64 q[P];

    // Sorts the list ascending when it is bitonic.
    __device__ __forceinline__ void bitonic_merge(int lane) {
#pragma unroll
        for (int s = 16 * P; s >= P; s >>= 1) {
            const int lanes = s / P;
            const bool lower = (lane & lanes) == 0;
#pragma unroll
            for (int r = 0; r < P; ++r) {
                u64 other = shfl_xor_key(q[r], lanes);
                q[r] = lower ? key_min(q[r], other) : key_max(q[r], other);
            }
        }
#pragma unroll
        for (int s = P / 2; s > 0; s >>= 1) {
#pragma unroll
            for (int r = 0; r < P; ++r) {
                if ((r & s) == 0) {
                    u64 a = q[r], b = q[r | s];
                    q[r] = key_min(a, b);
                    q[r | s] = key_max(a, b);
                }
            }
        }
    }

    // Merges one key per lane (MAX_KEY for none) into the list.
    __device__ __forceinline__ void add(u64 key, int lane) {
        const u64 sorted = warp_sort_32(key, lane);
        // The list ascending against the new keys descending, elementwise: the
        // minimum holds the m smallest of both and is bitonic.
        const int m = 32 * P;
#pragma unroll
        for (int r = 0; r < P; ++r) {
            const int from = m - 1 - (lane * P + r);
            const u64 v = shfl_key(sorted, from & 31);
            if (from < 32) q[r] = key_min(q[r], v);
        }
        bitonic_merge(lane);
    }

    // Element e of the list, in every lane.
    __device__ __forceinline__ u64 at(int e) const {
        u64 mine = MAX_KEY;
#pragma unroll
        for (int r = 0; r < P; ++r)
            if (r == e % P) mine = q[r];
        return shfl_key(mine, e / P);
    }
};

// Folds columns begin..end of a tile into one warp's list, starting from `slot`
// (or empty when `fresh`), and writes the list's first kc keys back to `slot`.
template <int P, typename KeyAt>
__device__ void warp_select_stream(u64* slot, int kc, int fresh, int begin, int end, KeyAt key_at) {
    const int lane = threadIdx.x & 31;
    WarpList<P> list;
#pragma unroll
    for (int r = 0; r < P; ++r) {
        const int e = lane * P + r;
        list.q[r] = (!fresh && e < kc) ? slot[e] : MAX_KEY;
    }
    u64 bound = list.at(kc - 1);
    for (int base = begin; base < end; base += 32 * WARP_ROUND) {
        u64 keys[WARP_ROUND];
#pragma unroll
        for (int i = 0; i < WARP_ROUND; ++i) {
            const int j = base + i * 32 + lane;
            keys[i] = j < end ? key_at(j) : MAX_KEY;
        }
#pragma unroll
        for (int i = 0; i < WARP_ROUND; ++i) {
            if (__any_sync(0xffffffffu, keys[i] < bound)) {
                list.add(keys[i] < bound ? keys[i] : MAX_KEY, lane);
                bound = list.at(kc - 1);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < P; ++r) {
        const int e = lane * P + r;
        if (e < kc) slot[e] = list.q[r];
    }
}

// select_tile's job, one warp per (split, query): blockIdx.x is the split, warp w of
// block y the query y * (blockDim.x / 32) + w. Same arguments as select_tile plus
// the query count (a block may run past the last query).
template <int P>
__device__ void warp_select_tile(const float* __restrict__ dots, long long ld, int tile_rows,
                                 unsigned tile_start, const float* __restrict__ q_aux,
                                 const float* __restrict__ x_aux, const unsigned* __restrict__ live,
                                 const unsigned* __restrict__ mask, int metric, int kc,
                                 u64* __restrict__ best, int splits, int fresh, int queries) {
    const int q = blockIdx.y * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (q >= queries) return;  // the whole warp: no shuffle below misses a lane
    const int split = blockIdx.x;
    const int per = (tile_rows + splits - 1) / splits;
    const int begin = split * per;
    const int end = min(tile_rows, begin + per);
    const float* row_dots = dots + (long long)q * ld;
    const float qa = q_aux[q];
    u64* slot = best + ((long long)q * splits + split) * kc;
    warp_select_stream<P>(slot, kc, fresh, begin, end, [&](int j) -> u64 {
        return tile_key(row_dots, j, tile_start, qa, x_aux, live, mask, metric);
    });
}

#define WARP_SELECT_TILE(P)                                                                          \
    extern "C" __global__ void warp_select_tile_##P(                                                \
        const float* __restrict__ dots, long long ld, int tile_rows, unsigned tile_start,            \
        const float* __restrict__ q_aux, const float* __restrict__ x_aux,                            \
        const unsigned* __restrict__ live, const unsigned* __restrict__ mask, int metric, int kc,    \
        u64* __restrict__ best, int splits, int fresh, int queries) {                                \
        warp_select_tile<P>(dots, ld, tile_rows, tile_start, q_aux, x_aux, live, mask, metric, kc,   \
                            best, splits, fresh, queries);                                           \
    }

// Lists of 32 .. 1024 keys (SELECT_BEST).
WARP_SELECT_TILE(1)
WARP_SELECT_TILE(2)
WARP_SELECT_TILE(4)
WARP_SELECT_TILE(8)
WARP_SELECT_TILE(16)
WARP_SELECT_TILE(32)
