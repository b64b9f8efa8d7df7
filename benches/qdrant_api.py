#!/usr/bin/env python3
"""What the Qdrant-compatible API costs over the native one: single-query search
latency through both on the same node and collection, in the same run (the native
route is the peer), plus the official qdrant-client on top (its own pydantic
models included).

N=20,000 vectors of d=128 (cosine) with a small payload; 1,000 queries, k=10,
interleaved so both APIs see the same machine state; payloads returned by both.
Run (in the project's venv, after a release build):
  scripts/setup-python.sh && source scripts/env.sh &&
  NEEDLE_BIN=$CARGO_TARGET_DIR/release/needle "$NEEDLE_VENV/bin/python" benches/qdrant_api.py
"""

import argparse
import os
import pathlib
import platform
import re
import statistics
import sys
import tempfile
import time

import httpx
import numpy as np
from qdrant_client import QdrantClient

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests" / "clients"))
from needle_process import NeedleProcess  # noqa: E402


def machine():
    model = "unknown CPU"
    try:
        m = re.search(r"model name\s*:\s*(.*)", pathlib.Path("/proc/cpuinfo").read_text())
        model = m.group(1).strip() if m else model
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def pct(samples, q):
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dims", type=int, default=128)
    ap.add_argument("--queries", type=int, default=1000)
    args = ap.parse_args()
    binary = os.environ["NEEDLE_BIN"]
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((args.n, args.dims)).astype(np.float32)
    queries = rng.standard_normal((args.queries, args.dims)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="needle-qdrant-bench-") as work:
        node = NeedleProcess(binary, ["--data", os.path.join(work, "data")])
        try:
            native = httpx.Client(base_url=node.native_url, timeout=60)
            qdrant = httpx.Client(base_url=node.qdrant_url, timeout=60)
            client = QdrantClient(url=node.qdrant_url, prefer_grpc=False, timeout=60)
            r = native.post("/collections", json={"name": "b", "dimensions": args.dims, "distance": "cosine"})
            r.raise_for_status()
            for start in range(0, args.n, 1000):
                batch = [
                    {"id": str(i), "vector": vectors[i].tolist(), "metadata": {"group": i % 10}}
                    for i in range(start, min(start + 1000, args.n))
                ]
                native.post("/collections/b/vectors/batch", json={"vectors": batch}).raise_for_status()
            times = {"native": [], "qdrant REST": [], "qdrant-client": []}
            for q in queries[:50]:  # warm-up
                native.post("/collections/b/search", json={"vector": q.tolist(), "k": 10})
            for q in queries:
                body = q.tolist()
                t = time.perf_counter()
                a = native.post("/collections/b/search", json={"vector": body, "k": 10}).json()
                times["native"].append(time.perf_counter() - t)
                t = time.perf_counter()
                b = qdrant.post(
                    "/collections/b/points/query", json={"query": body, "limit": 10, "with_payload": True}
                ).json()
                times["qdrant REST"].append(time.perf_counter() - t)
                t = time.perf_counter()
                c = client.query_points("b", query=body, limit=10, with_payload=True).points
                times["qdrant-client"].append(time.perf_counter() - t)
                # The same answer through both, or the timing means nothing.
                assert [h["id"] for h in a["results"]] == [str(p["id"]) for p in b["result"]["points"]]
                assert [str(p.id) for p in c] == [h["id"] for h in a["results"]]
        finally:
            node.stop()
    print(f"machine: {machine()}")
    print(f"qdrant-client {__import__('importlib.metadata').metadata.version('qdrant-client')}, "
          f"N={args.n} d={args.dims} cosine, {args.queries} queries, k=10, payloads returned")
    base = statistics.median(times["native"])
    for name, samples in times.items():
        p50, p99 = statistics.median(samples), pct(samples, 0.99)
        print(f"{name:14s} p50 {p50 * 1e3:7.3f} ms  p99 {p99 * 1e3:7.3f} ms  p50 / native p50 {p50 / base:5.2f}")


if __name__ == "__main__":
    main()
