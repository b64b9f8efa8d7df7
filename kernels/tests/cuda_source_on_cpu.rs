//! needle's CUDA kernels (`kernels/cuda/select.cu` and the warp select of
//! `warp_select.cu`), compiled as C++ and run on the CPU through
//! `kernels/cuda/emulation/cuda_on_cpu.h` (real threads per CUDA thread, a barrier per
//! `__syncthreads`, warp shuffles through per-warp barriers), checked against brute
//! force; and once more under ThreadSanitizer, which reports any shared-memory access
//! that a missing barrier leaves unordered (there the warp select, which has no shared
//! memory, runs only its small cases, as the sanitizer is ~10x slower). This is what tests the kernels' logic on machines without a GPU;
//! the parity tests in `parity.rs` test the whole CUDA path where a GPU exists.

use std::path::{Path, PathBuf};
use std::process::Command;

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cuda")
}

/// Compiles the harness with `flags` and runs it; panics with its output on failure.
fn build_and_run(name: &str, flags: &[&str], env: &[(&str, &str)]) -> String {
    let compiler = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let dir = source_dir();
    let built = Command::new(&compiler)
        .args(["-std=c++20", "-O1", "-g", "-pthread"])
        .args(flags)
        .arg(format!("-I{}", dir.join("emulation").display()))
        .arg(dir.join("emulation").join("harness.cpp"))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| {
            panic!("running {compiler} (a C++20 compiler is needed, as for RocksDB): {e}")
        });
    assert!(
        built.status.success(),
        "compiling the CUDA source for the CPU failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let ran = Command::new(&exe)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout).into_owned();
    assert!(
        ran.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    stdout
}

#[test]
fn cuda_kernels_match_brute_force_on_the_cpu() {
    let out = build_and_run("cuda_on_cpu", &[], &[]);
    assert!(out.contains("all kernels match brute force"), "{out}");
}

#[test]
fn cuda_kernels_have_no_shared_memory_races() {
    let out = build_and_run(
        "cuda_on_cpu_tsan",
        &["-fsanitize=thread"],
        &[
            ("TSAN_OPTIONS", "halt_on_error=1 exitcode=66"),
            ("NEEDLE_EMULATION_QUICK", "1"),
        ],
    );
    assert!(out.contains("all kernels match brute force"), "{out}");
}
