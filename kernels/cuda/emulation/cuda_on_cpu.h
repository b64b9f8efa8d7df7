// Just enough of CUDA's execution model to run needle's kernels on the CPU, so
// their logic (sorting networks, merges, thresholds, indexing, barriers) is tested
// where there is no GPU. One block runs at a time, each of its threads a real
// std::thread: __shared__ becomes a static local (shared by the block's threads),
// __syncthreads a std::barrier, warp shuffles and votes an exchange through a
// buffer synchronised by a barrier of the thread's warp (32 threads, fewer in a
// last partial warp), so warps that take different paths do not wait on each
// other. A thread that returns early drops out of both barriers, as an exited CUDA
// thread stops counting towards __syncthreads.
#pragma once

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define NEEDLE_CPU_EMULATION 1
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(...)
#define __shared__ static

using std::min;

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::barrier<>*> warp_barriers;

inline void warp_sync() { warp_barriers[threadIdx.x / 32]->arrive_and_wait(); }

inline void __syncthreads() { block_barrier->arrive_and_wait(); }

// One slot per thread for block-wide votes; a thread that has exited reads as 0
// (launch clears its slot).
inline int vote_slots[1024];

inline int __syncthreads_count(int predicate) {
    vote_slots[threadIdx.x] = predicate != 0;
    __syncthreads();
    int count = 0;
    for (unsigned t = 0; t < blockDim.x; ++t) count += vote_slots[t];
    __syncthreads();
    return count;
}

inline int atomicAdd(int* address, int value) { return std::atomic_ref<int>(*address).fetch_add(value); }

inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}

inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, 4);
    return f;
}

// Lanes exchange through one slot per thread of the block, synchronised per warp;
// every live lane of a warp reaches each shuffle (needle's kernels only shuffle
// warp-uniformly, with a full mask).
template <typename T>
inline T warp_exchange(T v, unsigned src_lane) {
    static T slots[1024];
    slots[threadIdx.x] = v;
    warp_sync();
    T other = slots[(threadIdx.x & ~31u) + (src_lane & 31u)];
    warp_sync();
    return other;
}

template <typename T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
    return warp_exchange(v, (threadIdx.x & 31u) ^ (unsigned)lane_mask);
}

template <typename T>
inline T __shfl_sync(unsigned, T v, int src_lane) {
    return warp_exchange(v, (unsigned)src_lane);
}

inline int __any_sync(unsigned, int predicate) {
    static int votes[1024];
    votes[threadIdx.x] = predicate != 0;
    warp_sync();
    int any = 0;
    unsigned first = threadIdx.x & ~31u;
    for (unsigned t = first; t < first + 32 && t < blockDim.x; ++t) any |= votes[t];
    warp_sync();
    return any;
}

inline unsigned short emulated_half_bits(float x) {
    // Round-to-nearest-even f32 -> f16 for normal and subnormal halves; enough
    // for test data, which stays far from overflow.
    unsigned u = __float_as_uint(x);
    unsigned sign = (u >> 16) & 0x8000u;
    float a = std::fabs(x);
    if (a == 0.0f) return (unsigned short)sign;
    int e;
    std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
    int exp_half = e - 1 + 15;
    if (exp_half <= 0) {
        // Subnormal: units of 2^-24.
        float units = std::nearbyint(a * 16777216.0f);
        return (unsigned short)(sign | (unsigned)units);
    }
    float mant = std::nearbyint((a / std::ldexp(1.0f, e - 1) - 1.0f) * 1024.0f);
    unsigned bits = ((unsigned)exp_half << 10) + (unsigned)mant;  // carry rolls into exponent
    return (unsigned short)(sign | bits);
}

// Runs `kernel` over `grid` blocks of `block` threads, one block at a time.
inline void launch(dim3 grid, dim3 block, const std::function<void()>& kernel) {
    gridDim = grid;
    blockDim = block;
    for (unsigned by = 0; by < grid.y; ++by) {
        for (unsigned bx = 0; bx < grid.x; ++bx) {
            std::barrier<> barrier((std::ptrdiff_t)block.x);
            block_barrier = &barrier;
            std::vector<std::unique_ptr<std::barrier<>>> warps;
            warp_barriers.clear();
            for (unsigned w = 0; w * 32 < block.x; ++w) {
                warps.push_back(std::make_unique<std::barrier<>>((std::ptrdiff_t)std::min(32u, block.x - w * 32)));
                warp_barriers.push_back(warps.back().get());
            }
            std::vector<std::thread> threads;
            threads.reserve(block.x);
            for (unsigned t = 0; t < block.x; ++t) {
                threads.emplace_back([&, t] {
                    threadIdx = dim3{t, 0, 0};
                    blockIdx = dim3{bx, by, 0};
                    vote_slots[t] = 0;
                    kernel();
                    vote_slots[t] = 0;
                    warp_barriers[t / 32]->arrive_and_drop();
                    barrier.arrive_and_drop();
                });
            }
            for (auto& th : threads) th.join();
        }
    }
}
