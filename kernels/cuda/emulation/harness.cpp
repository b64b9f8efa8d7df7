// Runs needle's CUDA kernels (../select.cu and ../warp_select.cu, unmodified) on
// the CPU through cuda_on_cpu.h and checks them against brute force: top-k
// selection across tiles and splits with both generations of the tile select
// (every metric, ties, filters, k from 1 to 1000, fewer allowed rows than k), the
// exact re-rank and query preparation. Built and run by
// kernels/tests/cuda_source_on_cpu.rs; exits non-zero on the first mismatch.
#include "cuda_on_cpu.h"

#include "../select.cu"
#include "../warp_select.cu"

#include <cstdio>
#include <cstdlib>
#include <limits>

static int failures = 0;

#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
            std::fprintf(stderr, __VA_ARGS__);            \
            std::fprintf(stderr, "\n");                   \
            if (++failures > 20) std::exit(1);            \
        }                                                 \
    } while (0)

struct Rng {
    unsigned long long s;
    float next() {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        return (float)((s >> 40) & 0xffffff) / 8388608.0f - 1.0f;
    }
    unsigned below(unsigned n) { return (unsigned)((next() + 1.0f) * 0.5f * n) % n; }
};

struct Data {
    int rows, dims, queries, metric;
    std::vector<float> x, q, q_aux, x_aux;
    std::vector<unsigned> live, mask;
};

static Data make_data(unsigned long long seed, int rows, int dims, int queries, int metric, int duplicate_every) {
    Rng rng{seed};
    Data d{rows, dims, queries, metric, {}, {}, {}, {}, {}, {}};
    d.x.resize((size_t)rows * dims);
    for (auto& v : d.x) v = rng.next();
    for (int r = 0; r < rows; ++r) {
        if (duplicate_every && r % duplicate_every == 1)  // exact duplicate of the previous row
            std::copy(&d.x[(size_t)(r - 1) * dims], &d.x[(size_t)r * dims], &d.x[(size_t)r * dims]);
        if (r % 97 == 13) std::fill(&d.x[(size_t)r * dims], &d.x[(size_t)(r + 1) * dims], 0.0f);
    }
    d.q.resize((size_t)queries * dims);
    for (auto& v : d.q) v = rng.next();
    std::fill(d.q.begin(), d.q.begin() + dims, 0.0f);  // a zero query
    d.x_aux.resize(rows);
    for (int r = 0; r < rows; ++r) {
        float s = 0;
        for (int i = 0; i < dims; ++i) s = fmaf(d.x[(size_t)r * dims + i], d.x[(size_t)r * dims + i], s);
        d.x_aux[r] = metric == METRIC_COSINE ? (s > 0 ? 1.0f / sqrtf(s) : 0.0f) : s;
    }
    d.live.assign((rows + 31) / 32, 0);
    for (int r = 0; r < rows; ++r)
        if (r % 11 != 3) d.live[r >> 5] |= 1u << (r & 31);
    return d;
}

static std::vector<float> run_prepare(const Data& d, std::vector<unsigned short>* halves) {
    std::vector<float> q_aux(d.queries, -1.0f);
    if (halves) halves->assign((size_t)d.queries * d.dims, 0);
    unsigned short* h = halves ? halves->data() : nullptr;
    launch(dim3{(unsigned)d.queries, 1, 1}, dim3{256, 1, 1},
           [&] { prepare_queries(d.q.data(), d.dims, d.metric, q_aux.data(), h); });
    return q_aux;
}

static float dot_of(const Data& d, int q, int r) {
    double s = 0;
    for (int i = 0; i < d.dims; ++i) s += (double)d.q[(size_t)q * d.dims + i] * d.x[(size_t)r * d.dims + i];
    return (float)s;
}

// Which tile select runs: select.cu's block-wide one or warp_select.cu's.
enum class Select { Block, Warp };
// Warps per block in the warp select's tests: more than one, so that a block whose
// last warp has no query (an odd query count) is exercised.
static const unsigned WARPS_PER_BLOCK = 2;

static void warp_select_launch(int p, const float* dots, long long ld, int n, unsigned start, const Data& d,
                               const float* q_aux, const unsigned* mask, int kc, u64* best, int splits,
                               int fresh) {
    auto run = [&](auto kernel) {
        unsigned blocks_y = ((unsigned)d.queries + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK;
        launch(dim3{(unsigned)splits, blocks_y, 1}, dim3{32 * WARPS_PER_BLOCK, 1, 1}, [&] {
            kernel(dots, ld, n, start, q_aux, d.x_aux.data(), d.live.data(), mask, d.metric, kc, best, splits,
                   fresh, d.queries);
        });
    };
    switch (p) {
        case 1: run(warp_select_tile_1); break;
        case 2: run(warp_select_tile_2); break;
        case 4: run(warp_select_tile_4); break;
        case 8: run(warp_select_tile_8); break;
        case 16: run(warp_select_tile_16); break;
        default: run(warp_select_tile_32); break;
    }
}

// Keys per lane of the warp select's list for kc, as search.rs picks it.
static int warp_list_width(int kc) {
    int m = 32;
    while (m < kc) m <<= 1;
    return m / 32;
}

// The selection pipeline as search.rs drives it: tiles, splits, merge.
static std::vector<u64> run_select(Select kind, const Data& d, const std::vector<float>& q_aux, int kc,
                                   int splits, int tile, const unsigned* mask, std::vector<float>& dots_all) {
    dots_all.resize((size_t)d.queries * d.rows);
    for (int q = 0; q < d.queries; ++q)
        for (int r = 0; r < d.rows; ++r) dots_all[(size_t)q * d.rows + r] = dot_of(d, q, r);
    std::vector<u64> best((size_t)d.queries * splits * kc, 0x5555);
    for (int start = 0; start < d.rows; start += tile) {
        int n = std::min(tile, d.rows - start);
        std::vector<float> dots((size_t)d.queries * n);  // ld = n, as cuBLAS writes it
        for (int q = 0; q < d.queries; ++q)
            for (int j = 0; j < n; ++j) dots[(size_t)q * n + j] = dots_all[(size_t)q * d.rows + start + j];
        int fresh = start == 0;
        if (kind == Select::Warp) {
            warp_select_launch(warp_list_width(kc), dots.data(), n, n, (unsigned)start, d, q_aux.data(), mask, kc,
                               best.data(), splits, fresh);
            continue;
        }
        launch(dim3{(unsigned)splits, (unsigned)d.queries, 1}, dim3{SELECT_THREADS, 1, 1}, [&] {
            select_tile(dots.data(), n, n, (unsigned)start, q_aux.data(), d.x_aux.data(), d.live.data(), mask,
                        d.metric, kc, best.data(), splits, fresh);
        });
    }
    if (splits == 1) return best;
    std::vector<u64> out((size_t)d.queries * kc, 0x5555);
    launch(dim3{(unsigned)d.queries, 1, 1}, dim3{SELECT_THREADS, 1, 1},
           [&] { merge_splits(best.data(), splits, kc, out.data()); });
    return out;
}

static void check_select_with(Select kind, const char* label, unsigned long long seed, int rows, int dims,
                              int queries, int metric, int kc, int splits, int tile, int mask_kind,
                              int duplicate_every) {
    Data d = make_data(seed, rows, dims, queries, metric, duplicate_every);
    std::vector<unsigned> mask;
    const unsigned* mask_ptr = nullptr;
    if (mask_kind) {
        mask.assign((rows + 31) / 32, 0);
        if (mask_kind == 2)
            for (int r = 0; r < rows; r += 53) mask[r >> 5] |= 1u << (r & 31);
        mask_ptr = mask.data();
    }
    std::vector<float> q_aux = run_prepare(d, nullptr);
    std::vector<float> dots;
    std::vector<u64> got = run_select(kind, d, q_aux, kc, splits, tile, mask_ptr, dots);
    for (int q = 0; q < queries; ++q) {
        std::vector<u64> keys;
        for (int r = 0; r < rows; ++r) {
            unsigned w = d.live[r >> 5] & (mask_ptr ? mask_ptr[r >> 5] : ~0u);
            if ((w >> (r & 31)) & 1u)
                keys.push_back(make_key(distance_from_dot(metric, dots[(size_t)q * rows + r], q_aux[q], d.x_aux[r]),
                                        (unsigned)r));
        }
        std::sort(keys.begin(), keys.end());
        keys.resize(kc, MAX_KEY);
        for (int i = 0; i < kc; ++i) {
            u64 g = got[(size_t)q * kc + i];
            CHECK(g == keys[i], "%s (%s select): query %d rank %d: got row %u key %llx, want row %u key %llx",
                  label, kind == Select::Warp ? "warp" : "block", q, i, (unsigned)g, g, (unsigned)keys[i], keys[i]);
        }
    }
    std::printf("ok   %s select %s\n", kind == Select::Warp ? "warp" : "block", label);
}

// NEEDLE_EMULATION_QUICK (the ThreadSanitizer run, ~10x slower): the warp select,
// which has no shared memory for the sanitizer to watch, only on the small cases.
static bool quick() { return std::getenv("NEEDLE_EMULATION_QUICK") != nullptr; }

// Every case runs through both generations of the tile select.
static void check_select(const char* label, unsigned long long seed, int rows, int dims, int queries, int metric,
                         int kc, int splits, int tile, int mask_kind, int duplicate_every) {
    for (Select kind : {Select::Block, Select::Warp}) {
        if (kind == Select::Warp && quick() && rows * queries > 6000) continue;
        check_select_with(kind, label, seed, rows, dims, queries, metric, kc, splits, tile, mask_kind,
                          duplicate_every);
    }
}

static void check_prepare_and_rerank(int metric) {
    Data d = make_data(77 + metric, 700, 37, 5, metric, 0);
    std::vector<unsigned short> halves;
    std::vector<float> q_aux = run_prepare(d, &halves);
    for (int q = 0; q < d.queries; ++q) {
        double s = 0;
        for (int i = 0; i < d.dims; ++i) s += (double)d.q[(size_t)q * d.dims + i] * d.q[(size_t)q * d.dims + i];
        double want = metric == METRIC_EUCLIDEAN ? s : metric == METRIC_COSINE ? (s > 0 ? 1 / std::sqrt(s) : 0) : 0;
        CHECK(std::fabs(q_aux[q] - want) <= 1e-5 * (1 + std::fabs(want)), "prepare metric %d q %d: %g vs %g", metric,
              q, q_aux[q], want);
    }
    CHECK(halves[d.dims] == emulated_half_bits(d.q[d.dims]), "f16 copy of the queries");
    const int kc = 9;
    std::vector<u64> cands((size_t)d.queries * kc);
    Rng rng{5};
    for (auto& c : cands) c = rng.below(4) == 0 ? MAX_KEY : (u64)rng.below((unsigned)d.rows);
    std::vector<float> out(cands.size(), -7.0f);
    int total = (int)cands.size();
    launch(dim3{(unsigned)((total * 32 + 255) / 256), 1, 1}, dim3{256, 1, 1},
           [&] { rerank_f32(d.q.data(), d.x.data(), d.dims, cands.data(), kc, total, metric, out.data()); });
    for (int i = 0; i < total; ++i) {
        if (cands[i] == MAX_KEY) {
            CHECK(std::isinf(out[i]), "rerank %d: empty slot gives %g", i, out[i]);
            continue;
        }
        int q = i / kc, r = (int)cands[i];
        double dot = 0, qq = 0, xx = 0, l2 = 0;
        for (int j = 0; j < d.dims; ++j) {
            double a = d.q[(size_t)q * d.dims + j], b = d.x[(size_t)r * d.dims + j];
            dot += a * b, qq += a * a, xx += b * b, l2 += (a - b) * (a - b);
        }
        double want = metric == METRIC_COSINE ? (qq * xx > 0 ? 1 - dot / std::sqrt(qq * xx) : 1)
                      : metric == METRIC_EUCLIDEAN ? std::sqrt(l2)
                                                   : -dot;
        CHECK(std::fabs(out[i] - want) <= 1e-5 * (1 + std::fabs(want)), "rerank metric %d slot %d: %g vs %g", metric,
              i, out[i], want);
    }
    std::printf("ok   prepare + rerank metric %d\n", metric);
}

int main() {
    for (int metric = 0; metric < 3; ++metric) {
        char label[64];
        std::snprintf(label, sizeof label, "metric %d, 3 tiles x 3 splits", metric);
        check_select(label, 1 + metric, 5000, 8, 3, metric, 26, 3, 2048, 0, 0);
        check_prepare_and_rerank(metric);
    }
    check_select("k = 1, one split", 10, 3000, 6, 2, METRIC_EUCLIDEAN, 1, 1, 1024, 0, 0);
    check_select("kc = 1000 (1024-wide lists)", 11, 3000, 4, 2, METRIC_DOT, 1000, 2, 2048, 0, 0);
    check_select("duplicates tie to the lower row", 12, 4000, 5, 3, METRIC_COSINE, 40, 4, 1500, 0, 2);
    check_select("filter matching nothing", 13, 2000, 4, 2, METRIC_EUCLIDEAN, 16, 2, 1024, 1, 0);
    check_select("filter allowing fewer rows than k", 14, 2000, 4, 2, METRIC_DOT, 64, 3, 700, 2, 0);
    check_select("many rounds per block", 16, 20000, 4, 2, METRIC_EUCLIDEAN, 26, 2, 10000, 0, 1);
    check_select("many rounds per block, filtered", 17, 20000, 4, 2, METRIC_DOT, 26, 1, 20000, 2, 0);
    check_select("more splits than rows per split", 15, 1100, 4, 1, METRIC_COSINE, 12, 8, 4096, 0, 0);
    check_select("splits past the last row", 20, 10, 4, 3, METRIC_DOT, 4, 8, 1024, 0, 0);
    if (!quick()) {
        check_select("kc = 1024, the widest list", 18, 2500, 4, 3, METRIC_EUCLIDEAN, 1024, 1, 1024, 0, 3);
        check_select("kc = 33, a list just past one key per lane", 19, 3000, 4, 3, METRIC_COSINE, 33, 2, 1024, 0, 0);
    }
    if (failures) {
        std::fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    std::printf("all kernels match brute force\n");
    return 0;
}
