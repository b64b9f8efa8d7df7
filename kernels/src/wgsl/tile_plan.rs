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
        let valid = [threads, rows_per_thread, query_vec4s, dims_per_stage]
            .iter()
            .all(|&n| n > 0)
            && dims_per_stage.is_power_of_two()
            && candidates.is_power_of_two()
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

    /// An upper bound on the loop iterations one invocation runs for one merge of
    /// its buffered survivors into best lists of `kc` (every loop counted, none
    /// assumed unrolled).
    fn merge_iterations(&self, kc: u64) -> u64 {
        let (threads, qg, cap) = (
            u64::from(self.threads),
            u64::from(self.queries()),
            u64::from(self.candidates),
        );
        let log_cap = u64::from(self.candidates.ilog2());
        let log_kc = kc.max(1).ilog2() as u64;
        let pad = (qg * cap).div_ceil(threads);
        let sort = log_cap + log_cap * (log_cap + 1) / 2 * (1 + (qg * cap / 2).div_ceil(threads));
        let fold = (qg * kc).div_ceil(threads);
        let merge = log_kc * (1 + (qg * kc / 2).div_ceil(threads));
        log_cap + pad + sort + fold + merge + 1
    }

    /// An upper bound on the loop iterations of `block_topk` per sub-tile of rows.
    pub fn sub_tile_iterations(&self, dims: u64, kc: u64) -> u64 {
        let (threads, rpt, qv, dk) = (
            u64::from(self.threads),
            u64::from(self.rows_per_thread),
            u64::from(self.query_vec4s),
            u64::from(self.dims_per_stage),
        );
        let stage = 1 + dk * rpt + (dk * qv).div_ceil(threads) + dk * (1 + rpt * (1 + qv));
        let offers = rpt * (1 + 4 * qv);
        1 + dims.div_ceil(dk) * stage + offers + self.merge_iterations(kc)
    }

    /// An upper bound on the loop iterations of `merge_blocks` per round of keys.
    pub fn merge_round_iterations(&self, kc: u64) -> u64 {
        let qg = u64::from(self.queries());
        1 + qg * (1 + u64::from(self.rows_per_thread)) + self.merge_iterations(kc)
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
    fn loop_bounds_grow_with_the_work_they_bound() {
        let p = SOFTWARE;
        assert!(p.sub_tile_iterations(256, 32) > p.sub_tile_iterations(128, 32));
        assert!(p.sub_tile_iterations(128, 1024) > p.sub_tile_iterations(128, 32));
        assert!(p.merge_round_iterations(1024) > p.merge_round_iterations(32));
        // Even the largest merge fits a software adapter's budget many times over.
        assert!(p.merge_round_iterations(1024) < 65_535 / 8);
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
