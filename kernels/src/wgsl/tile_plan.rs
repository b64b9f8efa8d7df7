//! The tile shape of the search shader, chosen per adapter, and the shader source
//! built for it (`shaders/search.wgsl` with its constants prepended).
//!
//! WGSL sizes workgroup arrays with constants, so each shape is its own shader
//! module; the shape is fixed when the device opens. The candidates, in order of
//! preference, and why:
//! - Software adapters (lavapipe) run a workgroup on one CPU thread, 8 invocations
//!   per SIMD register, and load each invocation's word of workgroup memory on its
//!   own, so the shape mostly sets how many queries share one row load. Measured on
//!   lavapipe (llvmpipe, LLVM 15, 2 cores; 20,000 × 128 rows, Q = 64 and 1,024, three
//!   runs each, 2026-12-02): 8 queries × 1 row per invocation 210–247 / 3,180–4,460 ms,
//!   16 × 1 205–248 / 2,570–3,390 ms, 16 × 2 193–211 / 3,050–3,190 ms. 16 × 1 it is:
//!   as fast as 16 × 2, in less workgroup memory (22 KiB; lavapipe offers 32).
//! - Hardware adapters get 4 rows × 8 queries per invocation (a 256 × 8 tile per
//!   workgroup of 64), the register blocking a GEMM kernel uses, when the adapter's
//!   workgroup memory holds it (most discrete GPUs: 48–64 KiB); smaller shapes for
//!   adapters with 32 or 16 KiB. Unmeasured: no GPU was lent while these were
//!   chosen (issue 22); `NEEDLE_WGPU_TILE` overrides the shape for measuring.

/// One tile shape: the constants `shaders/search.wgsl` expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TilePlan {
    /// Invocations per workgroup.
    pub threads: u32,
    /// Rows each invocation accumulates.
    pub rows_per_thread: u32,
    /// Queries per workgroup, in `vec4`s.
    pub query_vec4s: u32,
    /// Dimensions staged in workgroup memory at a time.
    pub dims_per_stage: u32,
    /// Survivors buffered per query between merges: at least one sub-tile of rows.
    pub candidates: u32,
}

const SOFTWARE: TilePlan = TilePlan {
    threads: 64,
    rows_per_thread: 1,
    query_vec4s: 4,
    dims_per_stage: 16,
    candidates: 128,
};

const HARDWARE: [TilePlan; 3] = [
    TilePlan {
        threads: 64,
        rows_per_thread: 4,
        query_vec4s: 2,
        dims_per_stage: 8,
        candidates: 512,
    },
    TilePlan {
        threads: 64,
        rows_per_thread: 2,
        query_vec4s: 2,
        dims_per_stage: 16,
        candidates: 256,
    },
    TilePlan {
        threads: 64,
        rows_per_thread: 1,
        query_vec4s: 2,
        dims_per_stage: 8,
        candidates: 128,
    },
];

/// The WGSL source of the search shader, before its constants.
const SHADER: &str = include_str!("../../../shaders/search.wgsl");

impl TilePlan {
    /// `NEEDLE_WGPU_TILE=threads,rows,query_vec4s,dims_per_stage,candidates`
    /// (e.g. `64,1,2,16,128`), for measuring shapes; ignored unless well formed.
    fn from_env() -> Option<TilePlan> {
        let text = std::env::var("NEEDLE_WGPU_TILE").ok()?;
        let v: Vec<u32> = text
            .split(',')
            .map(|p| p.trim().parse().ok())
            .collect::<Option<_>>()?;
        let [threads, rows_per_thread, query_vec4s, dims_per_stage, candidates] = v[..] else {
            return None;
        };
        let plan = TilePlan {
            threads,
            rows_per_thread,
            query_vec4s,
            dims_per_stage,
            candidates,
        };
        // Within what the host's batching and the shader's merges assume: at most 64
        // queries per workgroup and an invocation for each (the shader keeps query j's
        // state in invocation j), survivors buffered in a power of two of at least two
        // and at least one sub-tile.
        let valid = [threads, rows_per_thread, query_vec4s, dims_per_stage]
            .iter()
            .all(|&n| n > 0)
            && threads <= 1024
            && rows_per_thread <= 16
            && query_vec4s <= 16
            && threads >= 4 * query_vec4s
            && dims_per_stage.is_power_of_two()
            && candidates.is_power_of_two()
            && candidates >= 2
            && candidates >= plan.sub_tile_rows();
        valid.then_some(plan)
    }

    /// The first shape that fits the adapter's limits.
    pub fn for_adapter(limits: &wgpu::Limits, software: bool) -> TilePlan {
        let fits = |p: &TilePlan| {
            p.workgroup_bytes() <= u64::from(limits.max_compute_workgroup_storage_size)
                && p.threads <= limits.max_compute_invocations_per_workgroup
                && p.threads <= limits.max_compute_workgroup_size_x
        };
        let preferred: &[TilePlan] = if software {
            std::slice::from_ref(&SOFTWARE)
        } else {
            &HARDWARE
        };
        TilePlan::from_env()
            .iter()
            .chain(preferred)
            .chain(HARDWARE.iter().rev())
            .copied()
            .find(fits)
            // Every WebGPU adapter offers 16 KiB and 256 invocations, which the
            // smallest shape fits; keep it for any adapter reporting less.
            .unwrap_or(HARDWARE[HARDWARE.len() - 1])
    }

    /// Queries per workgroup.
    pub fn queries(&self) -> u32 {
        self.query_vec4s * 4
    }

    /// Rows per workgroup step: `rows_per_block` is a multiple of it.
    pub fn sub_tile_rows(&self) -> u32 {
        self.threads * self.rows_per_thread
    }

    // Estimates of the loop iterations one invocation of shaders/search.wgsl runs, as
    // llvmpipe counts them: every pass through a loop's end, the final one that
    // leaves it included (so a loop entered costs its trips + 1), and loops in a
    // branch no invocation takes still entered; none assumed unrolled. Each function
    // below mirrors the loops of the shader code it names. Not a strict bound: a
    // loop's exit pass also runs its nested loops once more, masked, which is not
    // counted; a review's model of that put the worst shape at 1.27x these figures,
    // which the 2x margin of the budget (search.rs) absorbs.

    /// `merge_if_full` when it merges, with best lists of `kc`.
    fn merge_iterations(&self, kc: u64) -> u64 {
        let (threads, qg, cap) = (
            u64::from(self.threads),
            u64::from(self.queries()),
            u64::from(self.candidates),
        );
        let log_cap = u64::from(self.candidates.ilog2());
        let log_kc = u64::from(kc.max(1).ilog2());
        let doubling = log_cap + 1;
        let pad = (qg * cap).div_ceil(threads) + 1;
        let stages = log_cap * (log_cap + 1) / 2;
        let sort =
            (log_cap + 1) + (stages + log_cap) + stages * ((qg * cap / 2).div_ceil(threads) + 1);
        let fold = (qg * kc).div_ceil(threads) + 1;
        let merge = (log_kc + 1) + log_kc * ((qg * kc / 2).div_ceil(threads) + 1);
        doubling + pad + sort + fold + merge
    }

    /// `start_lists`, the query-norm loop and the last `merge_if_full` of a dispatch.
    fn dispatch_iterations(&self, kc: u64) -> u64 {
        let (threads, qg) = (u64::from(self.threads), u64::from(self.queries()));
        (qg * kc).div_ceil(threads) + 1 + qg + 1 + self.merge_iterations(kc) + 1
    }

    /// One pass of `block_topk`'s row loop: every stage of dimensions (both metric
    /// branches), the offers and a merge.
    fn sub_tile_iterations(&self, dims: u64, kc: u64) -> u64 {
        let (threads, rpt, qv, qg, dk) = (
            u64::from(self.threads),
            u64::from(self.rows_per_thread),
            u64::from(self.query_vec4s),
            u64::from(self.queries()),
            u64::from(self.dims_per_stage),
        );
        let tile_loop = (dk + 1) + dk * (rpt + 1) + dk * rpt * (qv + 1);
        let stage = 1 + (dk * rpt + 1) + ((dk * qv).div_ceil(threads) + 1) + 2 * tile_loop;
        let offers = (rpt + 1) + rpt * (qg + 1);
        1 + dims.div_ceil(dk) * stage + 1 + offers + self.merge_iterations(kc)
    }

    /// One pass of `merge_blocks`' key loop.
    fn merge_round_iterations(&self, kc: u64) -> u64 {
        let (rpt, qg) = (u64::from(self.rows_per_thread), u64::from(self.queries()));
        1 + (qg + 1) + qg * (rpt + 1) + self.merge_iterations(kc)
    }

    /// Rows of each block one `block_topk` dispatch may cover within `budget` loop
    /// iterations per invocation: a multiple of the sub-tile, or `None` when not even
    /// one sub-tile fits (then the adapter cannot run the search at all).
    pub fn rows_per_dispatch(&self, dims: u64, kc: u64, budget: u64) -> Option<u64> {
        let left = budget.checked_sub(self.dispatch_iterations(kc))?;
        let subs = left / self.sub_tile_iterations(dims, kc);
        (subs > 0).then(|| subs * u64::from(self.sub_tile_rows()))
    }

    /// Keys of each query's block lists one `merge_blocks` dispatch may cover.
    pub fn keys_per_dispatch(&self, kc: u64, budget: u64) -> Option<u64> {
        let left = budget.checked_sub(self.dispatch_iterations(kc))?;
        let rounds = left / self.merge_round_iterations(kc);
        (rounds > 0).then(|| rounds * u64::from(self.sub_tile_rows()))
    }

    /// Workgroup memory the shader declares for this shape.
    pub fn workgroup_bytes(&self) -> u64 {
        let (dk, sub, qg) = (
            u64::from(self.dims_per_stage),
            u64::from(self.sub_tile_rows()),
            u64::from(self.queries()),
        );
        let x_tile = dk * (sub + 1) * 4;
        let q_tile = dk * u64::from(self.query_vec4s) * 16;
        let cand = qg * u64::from(self.candidates) * 8;
        // count, threshold, slot, live flag per query; the largest count.
        let per_query = qg * (4 + 8 + 4 + 4) + 4;
        x_tile + q_tile + cand + per_query
    }

    /// The shader for this shape, over vectors stored as f16 or f32.
    pub fn shader_source(&self, f16: bool) -> String {
        let element = if f16 {
            "enable f16;\nalias Elem = f16;\n"
        } else {
            "alias Elem = f32;\n"
        };
        format!(
            "{element}const THREADS: u32 = {}u;\nconst RPT: u32 = {}u;\nconst QV: u32 = {}u;\n\
             const DK: u32 = {}u;\nconst CAP: u32 = {}u;\n{SHADER}",
            self.threads,
            self.rows_per_thread,
            self.query_vec4s,
            self.dims_per_stage,
            self.candidates
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_buffers_at_least_one_sub_tile_and_fits_its_memory_class() {
        for plan in HARDWARE.iter().chain([&SOFTWARE]) {
            assert!(plan.candidates >= plan.sub_tile_rows(), "{plan:?}");
            assert!(plan.candidates.is_power_of_two(), "{plan:?}");
            assert!(plan.dims_per_stage.is_power_of_two(), "{plan:?}");
        }
        assert!(HARDWARE[0].workgroup_bytes() <= 48 << 10);
        assert!(HARDWARE[1].workgroup_bytes() <= 32 << 10);
        assert!(HARDWARE[2].workgroup_bytes() <= 16 << 10);
        assert!(SOFTWARE.workgroup_bytes() <= 32 << 10);
    }

    #[test]
    fn dispatches_shrink_with_the_work_and_stop_where_one_sub_tile_is_too_much() {
        let p = SOFTWARE;
        let budget = 32_768;
        let rows = |dims, kc| p.rows_per_dispatch(dims, kc, budget);
        assert!(rows(128, 32) > rows(256, 32));
        assert!(rows(128, 32) > rows(128, 1024));
        assert!(p.keys_per_dispatch(32, budget) > p.keys_per_dispatch(1024, budget));
        for kc in [1, 32, 1024] {
            let keys = p.keys_per_dispatch(kc, budget).unwrap_or(0);
            assert!(keys >= u64::from(p.sub_tile_rows()), "kc {kc}");
        }
        // 1,536 dimensions (the largest common embedding) fit at every k; 4,096 do
        // not fit even one sub-tile, so those searches go to the host copy.
        assert!(rows(1536, 1024).is_some());
        assert_eq!(rows(4096, 32), None);
    }

    #[test]
    fn the_largest_shape_that_fits_is_chosen() {
        let mut limits = wgpu::Limits {
            max_compute_workgroup_storage_size: 48 << 10,
            ..Default::default()
        };
        assert_eq!(TilePlan::for_adapter(&limits, false), HARDWARE[0]);
        limits.max_compute_workgroup_storage_size = 32 << 10;
        assert_eq!(TilePlan::for_adapter(&limits, false), HARDWARE[1]);
        assert_eq!(TilePlan::for_adapter(&limits, true), SOFTWARE);
        limits.max_compute_workgroup_storage_size = 16 << 10;
        assert_eq!(TilePlan::for_adapter(&limits, false), HARDWARE[2]);
        assert_eq!(TilePlan::for_adapter(&limits, true), HARDWARE[2]);
    }

    #[test]
    fn every_shape_is_valid_wgsl() {
        for plan in HARDWARE.iter().chain([&SOFTWARE]) {
            for f16 in [false, true] {
                let source = plan.shader_source(f16);
                let module = naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| {
                    panic!("{plan:?} f16={f16}: {}", e.emit_to_string(&source))
                });
                let mut validator = naga::valid::Validator::new(
                    naga::valid::ValidationFlags::all(),
                    naga::valid::Capabilities::all(),
                );
                validator
                    .validate(&module)
                    .unwrap_or_else(|e| panic!("{plan:?} f16={f16}: {e:?}"));
            }
        }
    }
}
