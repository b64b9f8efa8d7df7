//! Backend selection as a user sees it: what `/health` and `/metrics` say, a forced
//! backend that cannot run, the wgpu backend serving the same answers as the CPU
//! one through the whole node, and per-collection f16 storage.

use crate::support::{assert_error, node, vectors, Node, BIN};
use needle_kernels::cuda::CudaBackend;
use needle_kernels::wgsl::WgpuBackend;
use serde_json::{json, Value};
use std::process::Command;

#[test]
fn health_says_which_backend_runs_and_why_better_ones_do_not() {
    let (_dir, node) = node();
    let body = node.client().get("/health").1;
    let passed_over: Vec<&str> = body["passed_over"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert!(
                p["reason"].as_str().is_some_and(|r| !r.is_empty()),
                "{body}"
            );
            p["backend"].as_str().unwrap()
        })
        .collect();
    let expected = if CudaBackend::open().is_ok() {
        "cuda"
    } else if WgpuBackend::open().is_ok() {
        "wgpu"
    } else {
        "cpu"
    };
    assert_eq!(body["backend"], expected, "{body}");
    let better: &[&str] = match expected {
        "cuda" => &[],
        "wgpu" => &["cuda"],
        _ => &["cuda", "wgpu"],
    };
    assert_eq!(passed_over, better, "{body}");
    assert!(
        body["device"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    let metrics = node.client().get_text("/metrics").1;
    let info = format!("needle_backend_info{{backend=\"{expected}\"");
    assert!(metrics.contains(&info), "{metrics}");
}

#[test]
fn a_forced_backend_that_cannot_run_is_a_clear_startup_error() {
    let Err(reason) = CudaBackend::open() else {
        eprintln!("skipping: CUDA is available here");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--backend",
            "cuda",
            "--http",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.path().join("data"))
        .env_remove("NEEDLE_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started without CUDA: {stderr}");
    assert!(stderr.contains("backend cuda is not available"), "{stderr}");
    assert!(stderr.contains(&reason.to_string()), "{stderr}");
}

/// A kernel switch that names nothing stops the start-up, even under `auto` on a
/// machine without CUDA, where passing over CUDA would hide the mistake.
#[test]
fn a_misspelt_cuda_kernel_switch_stops_the_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--http", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("data"))
        .env_remove("NEEDLE_CONFIG")
        .env("NEEDLE_CUDA_KERNEL", "fused")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "started with a misspelt switch: {stderr}"
    );
    assert!(stderr.contains("NEEDLE_CUDA_KERNEL"), "{stderr}");
    assert!(stderr.contains("block (the default) or warp"), "{stderr}");
}

#[test]
fn storage_is_chosen_per_collection_and_validated() {
    let (_dir, node) = node();
    let c = node.client();
    let (status, body) = c.post(
        "/collections",
        &json!({"name": "half", "dimensions": 4, "distance": "dot", "storage": "f16"}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["storage"], "f16");
    assert_error(
        &c.post(
            "/collections",
            &json!({"name": "bad", "dimensions": 4, "distance": "dot", "storage": "bf16"}),
        ),
        400,
        "INVALID_STORAGE",
    );
    // The setting survives a restart.
    let node = node.restart();
    assert_eq!(node.client().get("/collections/half").1["storage"], "f16");
}

/// The same writes and searches on a CPU node and a node forced onto wgpu (lavapipe
/// in CI): the JSON answers must be identical, distances included, because wgpu
/// results are re-ranked in f32 exactly as the CPU backend computes them.
#[test]
fn wgpu_node_answers_exactly_like_the_cpu_node() {
    if let Err(e) = WgpuBackend::open_any() {
        assert!(
            std::env::var("NEEDLE_REQUIRE_WGPU").is_err(),
            "NEEDLE_REQUIRE_WGPU=1 but {e}"
        );
        eprintln!("skipping: {e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cpu = Node::start(&dir.path().join("cpu"), &["--backend", "cpu"]);
    let gpu = Node::start(&dir.path().join("wgpu"), &["--backend", "wgpu"]);
    assert_eq!(gpu.client().get("/health").1["backend"], "wgpu");
    let data = vectors(21, 3000, 16);
    let queries = vectors(22, 20, 16);
    let answers = |node: &Node| -> Vec<Value> {
        let c = node.client();
        let mut out = Vec::new();
        for (name, storage) in [("full", "f32"), ("half", "f16")] {
            let (status, body) = c.post(
                "/collections",
                &json!({"name": name, "dimensions": 16, "distance": "cosine", "storage": storage}),
            );
            assert_eq!(status, 201, "{body}");
            let items: Vec<Value> = data
                .iter()
                .enumerate()
                .map(|(i, v)| json!({"id": format!("v{i}"), "vector": v, "metadata": {"even": i % 2 == 0}}))
                .collect();
            for chunk in items.chunks(1000) {
                let path = format!("/collections/{name}/vectors/batch");
                assert_eq!(c.post(&path, &json!({"vectors": chunk})).0, 200);
            }
            for i in (0..3000).step_by(5) {
                c.delete(&format!("/collections/{name}/vectors/v{i}"));
            }
            let path = format!("/collections/{name}/search/batch");
            out.push(c.post(&path, &json!({"vectors": queries, "k": 10})).1);
            out.push(
                c.post(
                    &path,
                    &json!({"vectors": queries, "k": 7, "filter": {"even": true}}),
                )
                .1,
            );
        }
        out
    };
    let expected = answers(&cpu);
    let got = answers(&gpu);
    assert!(
        expected[0]["results"][0]
            .as_array()
            .is_some_and(|r| r.len() == 10),
        "{}",
        expected[0]
    );
    assert_eq!(expected, got);
}

/// With no Vulkan driver at all, a forced wgpu backend is a prompt, clear startup
/// error: never a hang, never an abort.
#[test]
fn wgpu_without_any_adapter_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-icd.json");
    let start = std::time::Instant::now();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--backend",
            "wgpu",
            "--http",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir.path().join("data"))
        .env_remove("NEEDLE_CONFIG")
        .env("VK_DRIVER_FILES", &missing)
        .env("VK_ICD_FILENAMES", &missing)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error exit, not a signal: {stderr}"
    );
    assert!(stderr.contains("backend wgpu is not available"), "{stderr}");
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn gpu_gauges_exist_only_where_nvml_does() {
    let (_dir, node) = node();
    let metrics = node.client().get_text("/metrics").1;
    let has_gauges = metrics.contains("needle_gpu_memory_total_bytes{gpu=\"0\"}");
    assert_eq!(has_gauges, nvml_wrapper::Nvml::init().is_ok(), "{metrics}");
}
