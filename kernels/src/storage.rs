/// How a shard keeps its vectors in device memory.
///
/// The host copy that every shard keeps for exact results and restarts is always
/// `f32`; `F16` halves device memory and doubles tensor-core throughput, and the
/// shard re-ranks its candidates in `f32` so results stay exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Storage {
    #[default]
    F32,
    F16,
}

impl Storage {
    pub fn name(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::F16 => "f16",
        }
    }

    pub fn parse(text: &str) -> Option<Storage> {
        match text {
            "f32" => Some(Storage::F32),
            "f16" => Some(Storage::F16),
            _ => None,
        }
    }
}

/// Arithmetic of the distance GEMM over an `f32` shard.
///
/// `Tf32` runs on the tensor cores with a 10-bit mantissa; its candidate list is
/// re-ranked in exact `f32`, so only near-ties beyond the candidate margin could
/// differ from `Strict`. `Strict` is the plain `f32` GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum F32Math {
    #[default]
    Tf32,
    Strict,
}

/// What a device shard does when the device has no room for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnDeviceFull {
    /// Writes that would not fit are refused before they are committed
    /// ([`crate::Shard::check_room`]); searches still never fail for lack of memory.
    #[default]
    Refuse,
    /// The shard keeps growing on the host and is searched there (CPU speed).
    ServeFromHost,
}
