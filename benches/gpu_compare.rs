//! needle's CUDA backend against the PyTorch baseline, on the GPU host.
//!
//! `benches/gpu/run.sh` runs `baseline.py` first (it writes the data and the torch
//! timings to DIR), then this with `--data DIR`. Prints one row per (precision, Q):
//! needle's median time, torch's, the ratio (torch / needle: above 1 is faster),
//! achieved TFLOP/s against the measured tensor-core rate, for Q = 1 the time of one
//! pass over the shard at the measured copy bandwidth, and recall@k against exact
//! float64 ids. The wgpu backend on the GPU's own Vulkan driver gets the same rows,
//! against torch's strict f32. Without a CUDA device it says so and exits successfully.
//! `--profile f32|tf32|f16` runs three Q = 1 searches and one Q = 1024 search in that
//! precision, untimed, for Nsight Compute and `NEEDLE_CUDA_TRACE=1`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use needle_kernels::cuda::{CudaBackend, CudaShard, TileSelect};
use needle_kernels::wgsl::WgpuBackend;
use needle_kernels::{F32Math, Metric, Shard, Storage};

const K: usize = 10;

struct Baseline {
    device: String,
    torch_version: String,
    n: usize,
    d: usize,
    torch_ms: HashMap<(String, usize), f64>,
    peak_tflops: HashMap<String, f64>,
    bandwidth_gbs: f64,
    reference: Vec<Vec<u32>>,
}

fn read_baseline(dir: &Path) -> Result<Baseline, String> {
    let text = std::fs::read_to_string(dir.join("baseline.txt"))
        .map_err(|e| format!("baseline.txt: {e}"))?;
    let mut b = Baseline {
        device: String::new(),
        torch_version: String::new(),
        n: 0,
        d: 0,
        torch_ms: HashMap::new(),
        peak_tflops: HashMap::new(),
        bandwidth_gbs: 0.0,
        reference: Vec::new(),
    };
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        match f.first().copied() {
            Some("device") => b.device = f.get(1).unwrap_or(&"").replace('_', " "),
            Some("torch_version") => {
                b.torch_version = f[1..].join(" ");
            }
            Some("data") => (b.n, b.d) = (num(1) as usize, num(2) as usize),
            Some("bandwidth_gbs") => b.bandwidth_gbs = num(1),
            Some("peak_tflops") => {
                b.peak_tflops.insert(f[1].to_string(), num(2));
            }
            Some("torch") => {
                b.torch_ms
                    .insert((f[1].to_string(), num(2) as usize), num(3));
            }
            Some("ref") => b
                .reference
                .push(f[2..].iter().filter_map(|v| v.parse().ok()).collect()),
            _ => {}
        }
    }
    if b.n == 0 || b.d == 0 {
        return Err("baseline.txt has no `data` line".into());
    }
    Ok(b)
}

fn read_f32(path: &Path, len: usize) -> Result<Vec<f32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() != len * 4 {
        return Err(format!(
            "{}: {} bytes, expected {}",
            path.display(),
            bytes.len(),
            len * 4
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn fail(message: &str) -> ! {
    eprintln!("gpu_compare: {message}");
    std::process::exit(1)
}

/// Median milliseconds of `reps` searches of `queries` after three warm-ups; the first
/// failing search ends the measurement with its error.
fn median_ms(shard: &dyn Shard, queries: &[f32], reps: usize) -> Result<f64, String> {
    for _ in 0..3 {
        shard
            .search_batch(queries, K, None)
            .map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        shard
            .search_batch(queries, K, None)
            .map_err(|e| e.to_string())?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// recall@K of `shard` against the baseline's float64 reference ids.
fn recall(shard: &dyn Shard, q: &[f32], base: &Baseline) -> Result<f64, String> {
    let d = base.d;
    let hits = shard
        .search_batch(&q[..base.reference.len().max(1) * d], K, None)
        .map_err(|e| e.to_string())?;
    let (mut found, mut total) = (0usize, 0usize);
    for (h, r) in hits.iter().zip(&base.reference) {
        total += r.len();
        found += r
            .iter()
            .filter(|id| h.iter().any(|hit| hit.row == **id))
            .count();
    }
    Ok(if total > 0 {
        found as f64 / total as f64
    } else {
        f64::NAN
    })
}

/// Appends every row of `x` and times the upload to the device.
fn load(shard: &mut dyn Shard, x: &[f32], d: usize, label: &str) -> Result<(), String> {
    for v in x.chunks_exact(d) {
        shard.append(v).map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    shard.make_resident().map_err(|e| e.to_string())?;
    println!(
        "{label}: upload of {} rows took {:.0} ms",
        x.len() / d,
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// One table row per Q for `shard`, compared with torch's `mode` timings.
fn time_rows(
    shard: &dyn Shard,
    label: &str,
    mode: &str,
    element_bytes: f64,
    q: &[f32],
    base: &Baseline,
    rows: &mut Vec<String>,
) -> Result<(), String> {
    let (n, d) = (base.n, base.d);
    let recall = recall(shard, q, base)?;
    for nq in [1usize, 64, 1024] {
        let reps = if nq == 1 { 50 } else { 20 };
        let ms = median_ms(shard, &q[..nq * d], reps)?;
        let torch = base
            .torch_ms
            .get(&(mode.to_string(), nq))
            .copied()
            .unwrap_or(f64::NAN);
        let tflops = 2.0 * nq as f64 * n as f64 * d as f64 / ms / 1e9;
        let peak = base.peak_tflops.get(mode).copied().unwrap_or(f64::NAN);
        // The copy rate counts bytes read plus written, i.e. total traffic; one pass
        // reads every byte of the shard once at that rate.
        let one_pass_ms = n as f64 * d as f64 * element_bytes / base.bandwidth_gbs / 1e6;
        rows.push(format!(
            "| {label} | {nq} | {ms:.3} | {torch:.3} | {:.2}x | {tflops:.1} | {:.0}% | {} | {recall:.3} |",
            torch / ms,
            100.0 * tflops / peak,
            if nq == 1 { format!("{one_pass_ms:.3} ms ({:.2}x)", ms / one_pass_ms) } else { "-".into() },
        ));
    }
    Ok(())
}

/// The CUDA rows for one precision and tile select, then (block select only) the
/// Q = 1024 tile sweep.
fn measure_cuda(
    backend: &CudaBackend,
    (mode, storage, math, select): (&str, Storage, F32Math, TileSelect),
    x: &[f32],
    q: &[f32],
    base: &Baseline,
    rows: &mut Vec<String>,
    sweeps: &mut Vec<String>,
) -> Result<(), String> {
    let d = base.d;
    let mut shard: CudaShard = backend
        .with_f32_math(math)
        .with_tile_select(select)
        .shard(d, Metric::Dot, storage)
        .map_err(|e| e.to_string())?;
    let label = format!("cuda {mode}, {} select", select.name());
    load(&mut shard, x, d, &label)?;
    let element = if storage == Storage::F16 { 2.0 } else { 4.0 };
    time_rows(&shard, &label, mode, element, q, base, rows)?;
    if select != TileSelect::Block {
        return Ok(());
    }
    // Q = 1024: the GEMM tile against L2 (default twice it), for tuning.
    let l2 = backend.device().l2_bytes();
    for (label, bytes) in [
        ("L2/4", l2 / 4),
        ("L2/2", l2 / 2),
        ("L2", l2),
        ("4xL2", 4 * l2),
    ] {
        shard.set_tile_bytes(Some(bytes));
        let ms = median_ms(&shard, &q[..1024 * d], 10)?;
        sweeps.push(format!(
            "| {mode} | {label} ({:.1} MB) | {ms:.3} |",
            bytes as f64 / 1e6
        ));
    }
    Ok(())
}

/// For Nsight Compute: one Q = 1 and one Q = 1024 search per precision, nothing timed,
/// so `ncu --launch-count` sees each stage of both shapes.
fn profile_cuda(
    backend: &CudaBackend,
    mode: &str,
    x: &[f32],
    q: &[f32],
    d: usize,
) -> Result<(), String> {
    let (precision, select) = match mode.strip_suffix("-warp") {
        Some(precision) => (precision, TileSelect::Warp),
        None => (mode, TileSelect::Block),
    };
    let (storage, math) = match precision {
        "f32" => (Storage::F32, F32Math::Strict),
        "tf32" => (Storage::F32, F32Math::Tf32),
        "f16" => (Storage::F16, F32Math::Tf32),
        other => {
            return Err(format!(
                "--profile takes f32, tf32 or f16, optionally with -warp, not {other}"
            ))
        }
    };
    let mut shard = backend
        .with_f32_math(math)
        .with_tile_select(select)
        .shard(d, Metric::Dot, storage)
        .map_err(|e| e.to_string())?;
    load(&mut shard, x, d, &format!("profile {mode}"))?;
    // Q = 1 three times (the last one warm, for NEEDLE_CUDA_TRACE), then Q = 1024.
    for nq in [1usize, 1, 1, 1024] {
        shard
            .search_batch(&q[..nq * d], K, None)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// wgpu on the GPU's own Vulkan driver against torch's strict f32: f32 storage,
/// then f16 where the adapter has shader-f16 (against torch's f16).
fn measure_wgpu(
    x: &[f32],
    q: &[f32],
    base: &Baseline,
    rows: &mut Vec<String>,
) -> Result<(), String> {
    let backend = WgpuBackend::open().map_err(|e| e.to_string())?;
    println!("wgpu: {}", backend.device().describe());
    for (mode, storage) in [("f32", Storage::F32), ("f16", Storage::F16)] {
        let mut shard = backend
            .shard_stored(base.d, Metric::Dot, storage)
            .map_err(|e| e.to_string())?;
        if shard.storage() != storage {
            println!("wgpu {mode}: the adapter stores it as f32; not measured twice");
            continue;
        }
        let label = format!("wgpu {mode}");
        load(&mut shard, x, base.d, &label)?;
        let element = if storage == Storage::F16 { 2.0 } else { 4.0 };
        time_rows(&shard, &label, mode, element, q, base, rows)?;
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = match args
        .iter()
        .position(|a| a == "--data")
        .and_then(|i| args.get(i + 1))
    {
        Some(d) => PathBuf::from(d),
        None => {
            eprintln!("gpu_compare: run by benches/gpu/run.sh with --data DIR (after baseline.py); skipping");
            return;
        }
    };
    let profile = args
        .iter()
        .position(|a| a == "--profile")
        .map(|i| args.get(i + 1).cloned().unwrap_or_default());
    // The inputs first, so a bad baseline run shows even where CUDA is absent.
    let base = read_baseline(&dir).unwrap_or_else(|e| fail(&e));
    let (n, d) = (base.n, base.d);
    let x = read_f32(&dir.join("x.f32"), n * d).unwrap_or_else(|e| fail(&e));
    let q = read_f32(&dir.join("q.f32"), 1024 * d).unwrap_or_else(|e| fail(&e));
    println!(
        "baseline: {} torch timings, {} reference queries, N = {n}, d = {d}",
        base.torch_ms.len(),
        base.reference.len()
    );
    let backend = match CudaBackend::open() {
        Ok(b) => b,
        Err(e) => {
            println!("gpu_compare: no CUDA device, nothing to measure ({e})");
            return;
        }
    };
    if let Some(mode) = profile {
        if let Err(e) = profile_cuda(&backend, &mode, &x, &q, d) {
            fail(&format!("profile run: {e}"));
        }
        return;
    }
    let device = backend.device();
    println!(
        "machine: {} (compute capability {:?}), host {} CPU threads",
        device.name(),
        device.compute_capability(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "peer: PyTorch {} via baseline.py (torch.topk over torch.mm), same data, same run; device per torch: {}",
        base.torch_version, base.device
    );
    println!(
        "measured ceilings: copy {:.0} GB/s, GEMM {:?} TFLOP/s",
        base.bandwidth_gbs, base.peak_tflops
    );
    println!("N = {n}, d = {d}, k = {K}, metric = inner product");
    let mut rows = Vec::new();
    let mut sweeps = Vec::new();
    let mut failed = false;
    // Each precision on its own: one that fails still leaves the others' figures.
    // Both tile selects side by side (issue 22): the warp select stays behind
    // NEEDLE_CUDA_KERNEL until these rows show it beating the block select.
    for case in [
        ("f32", Storage::F32, F32Math::Strict, TileSelect::Block),
        ("tf32", Storage::F32, F32Math::Tf32, TileSelect::Block),
        ("tf32", Storage::F32, F32Math::Tf32, TileSelect::Warp),
        ("f16", Storage::F16, F32Math::Tf32, TileSelect::Block),
        ("f16", Storage::F16, F32Math::Tf32, TileSelect::Warp),
    ] {
        if let Err(e) = measure_cuda(&backend, case, &x, &q, &base, &mut rows, &mut sweeps) {
            println!("cuda {} {}: FAILED: {e}", case.0, case.3.name());
            failed = true;
        }
    }
    if let Err(e) = measure_wgpu(&x, &q, &base, &mut rows) {
        println!("wgpu f32: not measured: {e}");
    }
    println!("| backend, precision | Q | needle ms | torch ms | torch/needle | TFLOP/s | of GEMM peak | Q=1: one pass at copy bandwidth (needle/pass) | recall@{K} |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!("\nQ = 1024, GEMM output tile size (default: 2xL2, in the table above)");
    println!("| precision | tile | needle ms |");
    println!("|---|---|---|");
    for s in sweeps {
        println!("{s}");
    }
    if failed {
        std::process::exit(1);
    }
}
