//! Compiles `kernels/cuda/*.cu` with NVRTC for the device at hand, with a disk cache.
//!
//! Why NVRTC at start-up rather than checked-in PTX: needle then builds with no CUDA
//! toolkit at all (CI has none), the code is generated for the exact compute
//! capability of the card it runs on (Hopper gets sm_90 code, not an older target
//! JIT-upgraded), and there is no generated artefact to keep in sync with its source.
//! The cost, a compile of a few hundred milliseconds, is paid once per source version
//! and architecture: the PTX is cached on disk under a key of both.

use std::path::PathBuf;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx};

use crate::KernelError;

/// The CUDA C source of every kernel needle launches: warp_select.cu builds on
/// select.cu's helpers, so it follows it in one module.
pub(crate) const SOURCE: &str = concat!(
    include_str!("../../cuda/select.cu"),
    "\n",
    include_str!("../../cuda/warp_select.cu")
);

/// `warp_select_tile_P` for lists of 32 * P keys, P = 1, 2, 4 .. 32.
const WARP_SELECT: [&str; 6] = [
    "warp_select_tile_1",
    "warp_select_tile_2",
    "warp_select_tile_4",
    "warp_select_tile_8",
    "warp_select_tile_16",
    "warp_select_tile_32",
];

/// The kernels of [`SOURCE`], loaded into one context.
pub(crate) struct Kernels {
    pub select_tile: CudaFunction,
    pub merge_splits: CudaFunction,
    pub rerank_f32: CudaFunction,
    pub prepare_queries: CudaFunction,
    /// `WARP_SELECT`, in that order.
    pub warp_select_tile: Vec<CudaFunction>,
    /// Whether the PTX came from the disk cache (reported in the backend's details).
    pub from_cache: bool,
}

impl Kernels {
    pub(crate) fn load(ctx: &Arc<CudaContext>, cc: (i32, i32)) -> Result<Kernels, KernelError> {
        let (ptx, from_cache) = ptx_for(cc)?;
        let module: Arc<CudaModule> = ctx
            .load_module(ptx)
            .map_err(|e| KernelError::device("loading the kernel module", e))?;
        let function = |name: &'static str| {
            module
                .load_function(name)
                .map_err(|e| KernelError::device(name, e))
        };
        Ok(Kernels {
            select_tile: function("select_tile")?,
            merge_splits: function("merge_splits")?,
            rerank_f32: function("rerank_f32")?,
            prepare_queries: function("prepare_queries")?,
            warp_select_tile: WARP_SELECT
                .iter()
                .map(|name| function(name))
                .collect::<Result<_, _>>()?,
            from_cache,
        })
    }
}

fn compile_options(cc: (i32, i32)) -> Vec<String> {
    vec![
        format!("--gpu-architecture=compute_{}{}", cc.0, cc.1),
        "--std=c++17".to_string(),
    ]
}

/// PTX for compute capability `cc`, from the cache when an entry for this exact
/// source and option set exists, else compiled and stored (best effort: a read-only
/// cache directory only costs the compile next time).
fn ptx_for(cc: (i32, i32)) -> Result<(Ptx, bool), KernelError> {
    let options = compile_options(cc);
    let key = fnv1a(SOURCE.as_bytes(), options.join(" ").as_bytes());
    let path = cache_dir().map(|dir| dir.join(format!("select-{key:016x}-sm{}{}.ptx", cc.0, cc.1)));
    if let Some(path) = &path {
        if let Ok(text) = std::fs::read_to_string(path) {
            return Ok((Ptx::from_src(text), true));
        }
    }
    let ptx = compile(options)?;
    if let Some(path) = &path {
        store(path, &ptx.to_src());
    }
    Ok((ptx, false))
}

fn compile(options: Vec<String>) -> Result<Ptx, KernelError> {
    cudarc::nvrtc::compile_ptx_with_opts(
        SOURCE,
        CompileOptions {
            options,
            name: Some("select.cu".to_string()),
            ..Default::default()
        },
    )
    .map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => KernelError::Device {
            context: "compiling kernels with NVRTC",
            message: log.to_string_lossy().into_owned(),
        },
        other => KernelError::device("compiling kernels with NVRTC", other),
    })
}

fn store(path: &PathBuf, text: &str) {
    if let Some(dir) = path.parent() {
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
    }
    // Write then rename, so a concurrent start never reads half a file.
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// `NEEDLE_KERNEL_CACHE`, else `$XDG_CACHE_HOME/needle/kernels`, else
/// `$HOME/.cache/needle/kernels`.
fn cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("NEEDLE_KERNEL_CACHE") {
        return Some(PathBuf::from(dir));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("needle").join("kernels"))
}

/// 64-bit FNV-1a over the source and the options: a cache key, not a security hash.
fn fnv1a(source: &[u8], options: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &b in source.iter().chain(options) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_changes_with_source_and_architecture() {
        let a = fnv1a(b"kernel", compile_options((9, 0)).join(" ").as_bytes());
        let b = fnv1a(b"kernel", compile_options((8, 0)).join(" ").as_bytes());
        let c = fnv1a(b"kernel2", compile_options((9, 0)).join(" ").as_bytes());
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    /// NVRTC needs no GPU, so wherever libnvrtc loads the kernels' source is
    /// compiled for the architectures needle targets, catching CUDA C errors
    /// before any time on a GPU host is spent.
    #[test]
    fn kernel_source_compiles_where_nvrtc_is_present() {
        // SAFETY: only tries to dlopen libnvrtc.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            eprintln!("skipping: libnvrtc is not on the library path");
            return;
        }
        for cc in [(8, 0), (8, 9), (9, 0)] {
            let ptx =
                compile(compile_options(cc)).unwrap_or_else(|e| panic!("sm_{}{}: {e}", cc.0, cc.1));
            let text = ptx.to_src();
            for name in [
                "select_tile",
                "merge_splits",
                "rerank_f32",
                "prepare_queries",
            ]
            .iter()
            .chain(&WARP_SELECT)
            {
                assert!(text.contains(name), "{name} missing from the PTX");
            }
        }
    }
}
