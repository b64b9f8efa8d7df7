#!/usr/bin/env python3
"""needle's exact search against faiss-cpu's flat indexes, measured in one run.

Same data for everyone (N=200,000, d=384, 1,000 queries, k=10 by default):
  * faiss IndexFlatIP (vs needle "dot") and IndexFlatL2 (vs needle "euclidean");
  * needle through the library (benches/library_search.rs) and through the HTTP
    batch endpoint of a real `needle serve`;
  * a plain numpy sgemm of the same shapes, as this machine's practical ceiling.
Prints QPS, ratios to faiss, GFLOP/s, recall@k against faiss, single-query latency,
and the machine. Run: `python3 benches/compare_faiss.py` (see benches/RESULTS.md).
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np

try:
    import faiss
except ImportError:
    sys.exit("faiss-cpu is required: pip install -r benches/requirements.txt")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/needle-target")


def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            model = m.group(1).strip() if m else model
    except OSError:
        pass
    blas_env = " ".join(f"{k}={v!r}" for k, v in os.environ.items() if k.startswith("OPENBLAS_"))
    # faiss's bundled OpenBLAS picks its kernel from these: they change faiss's speed 3x.
    return (f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
            f"{', ' + blas_env if blas_env else ', no OPENBLAS_* variables set'}")


def best_of(fn, repeats):
    best = float("inf")
    out = None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def recall(got, want, k):
    hits = sum(len(set(g[:k]) & set(w[:k])) for g, w in zip(got, want))
    return hits / (len(want) * k)


def cargo(*args):
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET)
    subprocess.run(["cargo", *args], cwd=ROOT, env=env, check=True)


def post(url, body):
    """POSTs a dict, or bytes already encoded (so client-side encoding is not timed)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def start_node(data_dir, *extra):
    """Starts `needle serve` on a free port; returns (process, base URL)."""
    proc = subprocess.Popen(
        [os.path.join(TARGET, "release", "needle"), "serve", "--data", data_dir, "--http", "127.0.0.1:0", *extra],
        stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            # Keep draining stderr so the node never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, m.group(1)
    raise RuntimeError("needle did not start")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--single-n", type=int, default=100_000, help="N for the single-query latency run")
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()

    if not args.skip_build:
        cargo("build", "--release", "--bin", "needle")
        cargo("bench", "--no-run", "--bench", "library_search")

    rng = np.random.default_rng(42)
    xb = rng.standard_normal((args.n, args.d), dtype=np.float32)
    xq = rng.standard_normal((args.queries, args.d), dtype=np.float32)
    flops = 2.0 * args.queries * args.n * args.d
    work = tempfile.mkdtemp(prefix="needle-cmp-")
    base_path, q_path = os.path.join(work, "base.npy"), os.path.join(work, "queries.npy")
    np.save(base_path, xb)
    np.save(q_path, xq)

    print(f"machine: {machine()}")
    print(f"data: N={args.n} d={args.d} queries={args.queries} k={args.k} (best of {args.repeats})")
    print(f"faiss {faiss.__version__} threads={faiss.omp_get_max_threads()}, numpy {np.__version__}")

    # The ceiling is measured before and after everything else, best of both, so one
    # slow moment of a shared host does not make it look low.
    t_gemm, _ = best_of(lambda: xq @ xb.T, args.repeats)

    rows = []
    for distance, index_cls in (("dot", faiss.IndexFlatIP), ("euclidean", faiss.IndexFlatL2)):
        index = index_cls(args.d)
        index.add(xb)
        t_faiss, (_, faiss_ids) = best_of(lambda: index.search(xq, args.k), args.repeats)

        out = os.path.join(work, f"lib-{distance}.json")
        env = dict(os.environ, CARGO_TARGET_DIR=TARGET)
        subprocess.run(["cargo", "bench", "-q", "--bench", "library_search", "--",
                        base_path, q_path, distance, str(args.k), str(args.repeats), out],
                       cwd=ROOT, env=env, check=True)
        with open(out) as f:
            lib = json.load(f)
        t_lib = lib["batch_seconds"]
        rows.append((distance, t_faiss, t_lib, recall(lib["ids"], faiss_ids.tolist(), args.k), lib))

    # HTTP: import straight into a data directory, then serve it.
    data_dir = os.path.join(work, "http-data")
    exe = os.path.join(TARGET, "release", "needle")
    subprocess.run([exe, "import", "--collection", "bench", "--data", data_dir, "--create", "dot",
                    "--batch-size", "10000", base_path], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    proc, url = start_node(data_dir)
    try:
        body = json.dumps({"vectors": xq.tolist(), "k": args.k, "include_metadata": False}).encode()
        t_http, resp = best_of(lambda: post(f"{url}/collections/bench/search/batch", body), args.repeats)
        http_ids = [[int(h["id"]) for h in r] for r in resp["results"]]
        index = faiss.IndexFlatIP(args.d)
        index.add(xb)
        t_faiss_ip, (_, ip_ids) = best_of(lambda: index.search(xq, args.k), 1)
        http_recall = recall(http_ids, ip_ids.tolist(), args.k)
        lat = []
        for q in xq[:100]:
            one = json.dumps({"vector": q.tolist(), "k": args.k, "include_metadata": False}).encode()
            t = time.perf_counter()
            post(f"{url}/collections/bench/search", one)
            lat.append(time.perf_counter() - t)
        lat.sort()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    t_gemm = min(t_gemm, best_of(lambda: xq @ xb.T, args.repeats)[0])
    gemm_gflops = flops / t_gemm / 1e9
    print(f"numpy sgemm {args.queries}x{args.d} @ {args.d}x{args.n}: {t_gemm:.3f}s = {gemm_gflops:.1f} GFLOP/s (ceiling)")
    print()
    print(f"{'path':<28}{'QPS':>10}{'vs faiss':>10}{'GFLOP/s':>10}{'% sgemm':>9}{'recall@k':>10}")
    for distance, t_faiss, t_lib, rec, _ in rows:
        fq = args.queries / t_faiss
        print(f"{'faiss Flat' + ('IP' if distance == 'dot' else 'L2'):<28}{fq:>10.1f}{1.0:>10.2f}"
              f"{flops / t_faiss / 1e9:>10.1f}{100 * t_gemm / t_faiss:>8.0f}%{'':>10}")
        print(f"{'needle library ' + distance:<28}{args.queries / t_lib:>10.1f}{t_faiss / t_lib:>10.2f}"
              f"{flops / t_lib / 1e9:>10.1f}{100 * t_gemm / t_lib:>8.0f}%{rec:>10.4f}")
    t_faiss_dot = rows[0][1]
    print(f"{'needle HTTP batch dot':<28}{args.queries / t_http:>10.1f}{t_faiss_dot / t_http:>10.2f}"
          f"{flops / t_http / 1e9:>10.1f}{100 * t_gemm / t_http:>8.0f}%{http_recall:>10.4f}")
    print()
    lib_dot = rows[0][4]
    print(f"single query, N={args.n} d={args.d}: library median {1e3 * lib_dot['single_median_seconds']:.2f} ms, "
          f"p99 {1e3 * lib_dot['single_p99_seconds']:.2f} ms; HTTP median {1e3 * lat[len(lat) // 2]:.2f} ms")
    shutil.rmtree(work, ignore_errors=True)

    if args.single_n and args.single_n != args.n:
        # Latency at the single-query size, through the library.
        xs = xb[: args.single_n]
        work = tempfile.mkdtemp(prefix="needle-cmp-")
        b2, q2 = os.path.join(work, "base.npy"), os.path.join(work, "q.npy")
        np.save(b2, xs)
        np.save(q2, xq[:100])
        out = os.path.join(work, "single.json")
        subprocess.run(["cargo", "bench", "-q", "--bench", "library_search", "--", b2, q2, "dot",
                        str(args.k), "1", out], cwd=ROOT, env=dict(os.environ, CARGO_TARGET_DIR=TARGET), check=True)
        with open(out) as f:
            single = json.load(f)
        index = faiss.IndexFlatIP(args.d)
        index.add(xs)
        lat_f = []
        for q in xq[:100]:
            t = time.perf_counter()
            index.search(q[None, :], args.k)
            lat_f.append(time.perf_counter() - t)
        lat_f.sort()
        print(f"single query, N={args.single_n} d={args.d}: library median "
              f"{1e3 * single['single_median_seconds']:.2f} ms, p99 {1e3 * single['single_p99_seconds']:.2f} ms; "
              f"faiss median {1e3 * lat_f[len(lat_f) // 2]:.2f} ms")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
