//! Which kernel folds each GEMM tile into the running best lists.
//!
//! A new kernel becomes the default only once it has been measured on a GPU and
//! beats the old one there; until then it is chosen with `NEEDLE_CUDA_KERNEL`, and
//! the GPU bundle runs both side by side (benches/gpu/run.sh).

use crate::KernelError;

/// The tile select of the CUDA search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TileSelect {
    /// `select_tile` (kernels/cuda/select.cu): a block per (split, query), lists in
    /// shared memory, block-wide sorts; serialised after each tile's GEMM.
    #[default]
    Block,
    /// `warp_select_tile_*` (kernels/cuda/warp_select.cu): a warp per (split,
    /// query), lists in registers, no barrier; on a second stream, so a tile's
    /// select overlaps the next tile's GEMM. Unmeasured on a GPU so far.
    Warp,
}

impl TileSelect {
    pub fn name(self) -> &'static str {
        match self {
            TileSelect::Block => "block",
            TileSelect::Warp => "warp",
        }
    }

    pub fn parse(text: &str) -> Option<TileSelect> {
        match text {
            "block" => Some(TileSelect::Block),
            "warp" => Some(TileSelect::Warp),
            _ => None,
        }
    }

    /// `NEEDLE_CUDA_KERNEL`, or the default when it is unset. A value that names no
    /// kernel is an error, never a silent fallback.
    pub fn from_env() -> Result<TileSelect, KernelError> {
        match std::env::var("NEEDLE_CUDA_KERNEL") {
            Err(_) => Ok(TileSelect::default()),
            Ok(text) => TileSelect::parse(text.trim()).ok_or_else(|| KernelError::InvalidSetting {
                setting: "NEEDLE_CUDA_KERNEL",
                message: format!("{text:?} names no kernel: use block (the default) or warp"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for select in [TileSelect::Block, TileSelect::Warp] {
            assert_eq!(TileSelect::parse(select.name()), Some(select));
        }
        assert_eq!(TileSelect::parse("fused"), None);
        assert_eq!(TileSelect::default(), TileSelect::Block);
    }
}
