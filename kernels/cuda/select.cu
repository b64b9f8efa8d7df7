// Top-k selection over tiles of GEMM dot products, exact f32 re-rank and query
// preparation. Compiled at start-up with NVRTC for the device's compute capability
// (see kernels/src/cuda/module.rs), so no CUDA toolkit is needed to build needle.
//
// A candidate is one 64-bit key: the distance's bits made order-preserving in the
// high half, the row in the low half. Comparing keys orders by (distance, row), the
// same tie-break as the CPU backend, and sorting needs no separate payload.

typedef unsigned long long u64;
typedef unsigned short u16;

#define MAX_KEY 0xffffffffffffffffULL
#define SELECT_THREADS 512
// Blocks per multiprocessor the selection kernels are compiled for: NVRTC gave
// select_tile 56 registers, which with its 45 KB of shared memory let only two
// blocks (50% occupancy) run per H200 multiprocessor; latency-bound as it is, it
// wants more warps in flight.
#define SELECT_MIN_BLOCKS 3
// Keys each thread loads per round: enough independent loads in flight to hide the
// latency of reading the tile back (one load per thread per round left the select
// latency-bound at a third of the GEMM's speed on an H200).
#define SELECT_PER_THREAD 8
#define SELECT_ROUND (SELECT_PER_THREAD * SELECT_THREADS)
#define SELECT_BEST 1024
// Survivors buffered between merges into the best list: a power of two, at least
// one round.
#define SELECT_CAND SELECT_ROUND

#define METRIC_COSINE 0
#define METRIC_EUCLIDEAN 1
#define METRIC_DOT 2

__device__ __forceinline__ unsigned ordered_bits(float d) {
    unsigned b = __float_as_uint(d);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ u64 make_key(float d, unsigned row) {
    return ((u64)ordered_bits(d) << 32) | row;
}

// Ranking distance from a dot product: squared euclidean (monotone in the true one)
// and cosine from inverse norms, where a zero vector's inverse norm is 0 (distance 1).
__device__ __forceinline__ float distance_from_dot(int metric, float dot, float q_aux, float x_aux) {
    if (metric == METRIC_COSINE) return 1.0f - dot * q_aux * x_aux;
    if (metric == METRIC_EUCLIDEAN) return fmaxf(q_aux + x_aux - 2.0f * dot, 0.0f);
    return -dot;
}

// Sorts s[0..n) ascending; n is a power of two. Every thread of the block calls it.
__device__ void bitonic_sort(u64* s, int n) {
    for (int size = 2; size <= n; size <<= 1) {
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < (n >> 1); i += blockDim.x) {
                int lo = 2 * i - (i & (stride - 1));
                int hi = lo + stride;
                bool up = (lo & size) == 0;
                u64 a = s[lo], b = s[hi];
                if ((a > b) == up) { s[lo] = b; s[hi] = a; }
            }
            __syncthreads();
        }
    }
}

// Sorts a bitonic sequence s[0..n) ascending.
__device__ void bitonic_merge(u64* s, int n) {
    for (int stride = n >> 1; stride > 0; stride >>= 1) {
        for (int i = threadIdx.x; i < (n >> 1); i += blockDim.x) {
            int lo = 2 * i - (i & (stride - 1));
            int hi = lo + stride;
            u64 a = s[lo], b = s[hi];
            if (a > b) { s[lo] = b; s[hi] = a; }
        }
        __syncthreads();
    }
}

// A block's shared state while it selects: the running best list, the survivors not
// yet merged into it, and scratch for estimating a threshold.
struct SelectShared {
    u64 best[SELECT_BEST];
    u64 cand[SELECT_CAND];
    u64 est[SELECT_THREADS];
    int count;
};

// Sorts the buffered survivors and merges them into best[0..m) (ascending, m a power
// of two); empties the buffer. Every thread calls it, after a barrier that follows
// the last append.
__device__ void merge_survivors(SelectShared& s, int m) {
    int count = s.count;
    int p = 2;
    while (p < count) p <<= 1;
    for (int i = count + threadIdx.x; i < p; i += blockDim.x) s.cand[i] = MAX_KEY;
    __syncthreads();
    bitonic_sort(s.cand, p);
    // best ascending + candidates reversed: the elementwise minimum holds the m
    // smallest of both and is bitonic, so one merge network sorts it.
    int take = p < m ? p : m;
    for (int i = threadIdx.x; i < take; i += blockDim.x) {
        u64 c = s.cand[i];
        int t = m - 1 - i;
        if (c < s.best[t]) s.best[t] = c;
    }
    __syncthreads();
    bitonic_merge(s.best, m);
    if (threadIdx.x == 0) s.count = 0;
    __syncthreads();
}

// Folds keys key_at(begin..end) into s.best[0..m), kept sorted ascending; m is kc
// rounded up to a power of two. s.count is 0 on entry, after a barrier.
//
// Keys are filtered against `bound`, an upper bound on the final kc-th best key, and
// survivors are only buffered; they are sorted and merged when the buffer could
// overflow and once at the end. So a round is SELECT_PER_THREAD loads and compares per
// thread and one barrier, and the cost of sorting is paid a few times per block
// rather than in every round that has a survivor.
//
// While the best list is still empty the bound would admit every key: then the kc-th
// smallest of the threads' per-round minima, which are kc real keys, gives one, so a
// fresh list sorts a few hundred survivors instead of whole rounds.
template <typename KeyAt>
__device__ void select_stream(SelectShared& s, int kc, int m, int begin, int end, KeyAt key_at) {
    u64 bound = s.best[kc - 1];
    int pending = 0;  // at least the number of buffered survivors; the same in every thread
    for (int base = begin; base < end; base += SELECT_ROUND) {
        u64 keys[SELECT_PER_THREAD];
#pragma unroll
        for (int e = 0; e < SELECT_PER_THREAD; ++e) {
            int j = base + threadIdx.x + e * SELECT_THREADS;
            keys[e] = j < end ? key_at(j) : MAX_KEY;
        }
        if (bound == MAX_KEY && kc <= SELECT_THREADS) {
            u64 low = keys[0];
#pragma unroll
            for (int e = 1; e < SELECT_PER_THREAD; ++e) low = keys[e] < low ? keys[e] : low;
            s.est[threadIdx.x] = low;
            __syncthreads();
            bitonic_sort(s.est, SELECT_THREADS);
            u64 est = s.est[kc - 1];
            if (est != MAX_KEY) bound = est + 1;  // keys are distinct: admits est itself
        }
        int any = 0;
#pragma unroll
        for (int e = 0; e < SELECT_PER_THREAD; ++e) any |= keys[e] < bound;
        // Also orders this round's appends after any earlier reads of the buffer.
        int threads = __syncthreads_count(any);
        if (threads == 0) continue;
        int added = threads * SELECT_PER_THREAD;
        if (pending + added > SELECT_CAND) {
            merge_survivors(s, m);
            pending = 0;
            u64 kth = s.best[kc - 1];
            bound = kth < bound ? kth : bound;
        }
#pragma unroll
        for (int e = 0; e < SELECT_PER_THREAD; ++e) {
            if (keys[e] < bound) s.cand[atomicAdd(&s.count, 1)] = keys[e];
        }
        pending += added;
    }
    __syncthreads();
    if (pending > 0) merge_survivors(s, m);
}

__device__ __forceinline__ int round_up_pow2(int kc) {
    int m = 1;
    while (m < kc) m <<= 1;
    return m;
}

// The key of column j of a tile (row tile_start + j), MAX_KEY when the row is
// deleted or filtered out. Loads without branches, so an unrolled round issues all
// of them at once; inner product needs no row norm.
__device__ __forceinline__ u64 tile_key(const float* __restrict__ row_dots, int j, unsigned tile_start, float qa,
                                        const float* __restrict__ x_aux, const unsigned* __restrict__ live,
                                        const unsigned* __restrict__ mask, int metric) {
    unsigned row = tile_start + (unsigned)j;
    float dot = row_dots[j];
    unsigned word = live[row >> 5];
    if (mask) word &= mask[row >> 5];
    float xa = metric == METRIC_DOT ? 0.0f : x_aux[row];
    u64 key = make_key(distance_from_dot(metric, dot, qa, xa), row);
    return ((word >> (row & 31)) & 1u) ? key : MAX_KEY;
}

// One block per (split, query): folds the split's share of a tile's columns into
// that split's running best list in `best` ([queries][splits][kc]).
// dots[q * ld + j] is query q's dot product with row tile_start + j.
extern "C" __global__ void __launch_bounds__(SELECT_THREADS, SELECT_MIN_BLOCKS)
select_tile(const float* __restrict__ dots, long long ld, int tile_rows, unsigned tile_start,
            const float* __restrict__ q_aux, const float* __restrict__ x_aux,
            const unsigned* __restrict__ live, const unsigned* __restrict__ mask,
            int metric, int kc, u64* __restrict__ best, int splits, int fresh) {
    __shared__ SelectShared s;
    const int q = blockIdx.y;
    const int split = blockIdx.x;
    const int m = round_up_pow2(kc);
    u64* slot = best + ((long long)q * splits + split) * kc;
    for (int i = threadIdx.x; i < m; i += blockDim.x)
        s.best[i] = (!fresh && i < kc) ? slot[i] : MAX_KEY;
    if (threadIdx.x == 0) s.count = 0;
    __syncthreads();
    const int per = (tile_rows + splits - 1) / splits;
    const int begin = split * per;
    const int end = min(tile_rows, begin + per);
    const float* row_dots = dots + (long long)q * ld;
    const float qa = q_aux[q];
    select_stream(s, kc, m, begin, end, [&](int j) -> u64 {
        return tile_key(row_dots, j, tile_start, qa, x_aux, live, mask, metric);
    });
    for (int i = threadIdx.x; i < kc; i += blockDim.x) slot[i] = s.best[i];
}

// One block per query: merges its `splits` best lists into out[q][0..kc).
extern "C" __global__ void __launch_bounds__(SELECT_THREADS, SELECT_MIN_BLOCKS)
merge_splits(const u64* __restrict__ best, int splits, int kc, u64* __restrict__ out) {
    __shared__ SelectShared s;
    const int q = blockIdx.x;
    const int m = round_up_pow2(kc);
    for (int i = threadIdx.x; i < m; i += blockDim.x) s.best[i] = MAX_KEY;
    if (threadIdx.x == 0) s.count = 0;
    __syncthreads();
    const u64* src = best + (long long)q * splits * kc;
    select_stream(s, kc, m, 0, splits * kc, [&](int j) -> u64 { return src[j]; });
    for (int i = threadIdx.x; i < kc; i += blockDim.x) out[(long long)q * kc + i] = s.best[i];
}

// f32 -> f16 (round to nearest even) without cuda_fp16.h, which NVRTC would need
// the toolkit's include directory for. The CPU emulation used by the tests supplies
// its own conversion.
__device__ __forceinline__ u16 half_bits(float x) {
#ifdef NEEDLE_CPU_EMULATION
    return emulated_half_bits(x);
#else
    u16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h;
#endif
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// One warp per candidate: the exact f32 distance, computed directly (not through the
// norm expansion) and in the same order for every row, so duplicates tie exactly.
extern "C" __global__ void rerank_f32(const float* __restrict__ queries, const float* __restrict__ data,
                                      int dims, const u64* __restrict__ cands, int kc, int total,
                                      int metric, float* __restrict__ out) {
    const int warp = (int)((blockIdx.x * (long long)blockDim.x + threadIdx.x) >> 5);
    const int lane = threadIdx.x & 31;
    if (warp >= total) return;
    const u64 key = cands[warp];
    if (key == MAX_KEY) {
        if (lane == 0) out[warp] = __int_as_float(0x7f800000);
        return;
    }
    const unsigned row = (unsigned)(key & 0xffffffffu);
    const float* qv = queries + (long long)(warp / kc) * dims;
    const float* xv = data + (long long)row * dims;
    float dot = 0.f, qq = 0.f, xx = 0.f, l2 = 0.f;
    for (int i = lane; i < dims; i += 32) {
        float a = qv[i], b = xv[i];
        dot = fmaf(a, b, dot);
        qq = fmaf(a, a, qq);
        xx = fmaf(b, b, xx);
        float t = a - b;
        l2 = fmaf(t, t, l2);
    }
    dot = warp_sum(dot);
    qq = warp_sum(qq);
    xx = warp_sum(xx);
    l2 = warp_sum(l2);
    if (lane == 0) {
        float d;
        if (metric == METRIC_COSINE) {
            float den = sqrtf(qq * xx);
            d = den > 0.f ? 1.0f - dot / den : 1.0f;
        } else if (metric == METRIC_EUCLIDEAN) {
            d = sqrtf(l2);
        } else {
            d = -dot;
        }
        out[warp] = d;
    }
}

// One block per query: its ranking aux (squared norm for euclidean, inverse norm for
// cosine) and, for f16 shards, its f16 copy for the tensor-core GEMM.
extern "C" __global__ void prepare_queries(const float* __restrict__ queries, int dims, int metric,
                                           float* __restrict__ q_aux, u16* __restrict__ queries_f16) {
    __shared__ float partial[32];
    const int q = blockIdx.x;
    const float* v = queries + (long long)q * dims;
    float s = 0.f;
    for (int i = threadIdx.x; i < dims; i += blockDim.x) {
        float x = v[i];
        s = fmaf(x, x, s);
        if (queries_f16) queries_f16[(long long)q * dims + i] = half_bits(x);
    }
    s = warp_sum(s);
    if ((threadIdx.x & 31) == 0) partial[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x < 32) {
        float t = threadIdx.x < (blockDim.x + 31) / 32 ? partial[threadIdx.x] : 0.f;
        t = warp_sum(t);
        if (threadIdx.x == 0) {
            float a = 0.f;
            if (metric == METRIC_EUCLIDEAN) a = t;
            else if (metric == METRIC_COSINE) a = t > 0.f ? 1.0f / sqrtf(t) : 0.f;
            q_aux[q] = a;
        }
    }
}
