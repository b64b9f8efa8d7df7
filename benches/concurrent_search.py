#!/usr/bin/env python3
"""Concurrent single-query search over HTTP, with search coalescing on and off.

Starts two `needle serve` processes on copies of one data directory (N=100,000,
d=384 by default), one with `--search-coalescing true` and one with `false`, and
drives each with C client threads sending one query per request. Prints QPS and
latency percentiles for both and the ratio, plus the machine. Both runs happen in
this one invocation, alternating, so they share the machine's conditions.
Run: `python3 benches/concurrent_search.py` (needs numpy; see benches/RESULTS.md).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request

import numpy as np

from compare_faiss import TARGET, cargo, machine, start_node


def start(data_dir, coalescing):
    return start_node(data_dir, "--search-coalescing", "true" if coalescing else "false")


def load(url, clients, per_client, bodies):
    latencies = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def worker(c):
        mine = []
        barrier.wait()
        for i in range(per_client):
            body = bodies[(c * per_client + i) % len(bodies)]
            req = urllib.request.Request(f"{url}/collections/bench/search", data=body,
                                         headers={"content-type": "application/json"})
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=120) as r:
                r.read()
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start_t = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start_t
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))]
    return len(latencies) / elapsed, pct(0.5), pct(0.99)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {}
local n = 0
function init(args)
  local f = io.open(args[1], "r")
  for line in f:lines() do n = n + 1; bodies[n] = line end
  f:close()
end
local i = 0
function request()
  i = i % n + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
"""


def load_wrk(url, clients, seconds, bodies_path, script_path):
    """wrk: a C load generator, so the client is not the bottleneck on 2 cores."""
    out = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", script_path,
                          f"{url}/collections/bench/search", "--", bodies_path],
                         check=True, capture_output=True, text=True).stdout
    qps = float(re.search(r"Requests/sec:\s+(\S+)", out).group(1))
    def ms(p):
        v = re.search(rf"\s{p}%\s+(\S+)", out).group(1)
        return float(v[:-2]) / 1e3 if v.endswith("ms") else (float(v[:-2]) / 1e6 if v.endswith("us") else float(v[:-1]))
    return qps, ms(50), ms(99)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=25, help="per client, per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=8, help="per round, with wrk")
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()
    if not args.skip_build:
        cargo("build", "--release", "--bin", "needle")

    rng = np.random.default_rng(7)
    work = tempfile.mkdtemp(prefix="needle-conc-")
    base = os.path.join(work, "base.npy")
    np.save(base, rng.standard_normal((args.n, args.d), dtype=np.float32))
    data = os.path.join(work, "data")
    subprocess.run([os.path.join(TARGET, "release", "needle"), "import", "--collection", "bench", "--data", data,
                    "--create", "dot", "--batch-size", "10000", base], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    other = os.path.join(work, "data-copy")
    shutil.copytree(data, other)
    queries = rng.standard_normal((256, args.d), dtype=np.float32)
    bodies = [json.dumps({"vector": q.tolist(), "k": args.k, "include_metadata": False}).encode() for q in queries]

    use_wrk = shutil.which("wrk") is not None
    bodies_path = os.path.join(work, "bodies.jsonl")
    script_path = os.path.join(work, "post.lua")
    with open(bodies_path, "wb") as f:
        f.write(b"\n".join(bodies) + b"\n")
    with open(script_path, "w") as f:
        f.write(WRK_SCRIPT)
    run_load = ((lambda url: load_wrk(url, args.clients, args.seconds, bodies_path, script_path)) if use_wrk
                else (lambda url: load(url, args.clients, args.requests, bodies)))

    print(f"machine: {machine()}")
    print(f"load generator: {'wrk (1 thread)' if use_wrk else 'python threads (apt-get install wrk for a faster one)'}")
    per_round = f"{args.seconds} s" if use_wrk else f"{args.requests} requests per client"
    print(f"data: N={args.n} d={args.d} k={args.k}; {args.clients} concurrent clients, {per_round} per round, "
          f"{args.rounds} alternating rounds, best round reported")
    nodes = {True: start(data, True), False: start(other, False)}
    best = {True: None, False: None}
    try:
        for url in (nodes[True][1], nodes[False][1]):
            load(url, 2, 3, bodies)  # warm-up
        for _ in range(args.rounds):
            for coalescing in (True, False):
                r = run_load(nodes[coalescing][1])
                if best[coalescing] is None or r[0] > best[coalescing][0]:
                    best[coalescing] = r
        with urllib.request.urlopen(f"{nodes[True][1]}/metrics") as r:
            text = r.read().decode()
        total = {m.group(1): float(m.group(2)) for m in re.finditer(
            r'needle_search_batch_size_(sum|count)\{collection="bench"\} (\S+)', text)}
        mean_batch = total["sum"] / total["count"]
    finally:
        for proc, _ in nodes.values():
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'single-query search':<28}{'QPS':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for coalescing in (False, True):
        qps, p50, p99 = best[coalescing]
        print(f"{'coalescing ' + ('on' if coalescing else 'off'):<28}{qps:>10.1f}{1e3 * p50:>10.2f}{1e3 * p99:>10.2f}")
    print(f"ratio on/off: {best[True][0] / best[False][0]:.2f}x QPS; "
          f"mean engine batch with coalescing: {mean_batch:.1f} queries")


if __name__ == "__main__":
    main()
