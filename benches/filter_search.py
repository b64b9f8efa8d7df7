#!/usr/bin/env python3
"""Filtered single-query search latency over HTTP: first use of a filter (evaluated on
every row) and repeats (served from the collection's cached, write-maintained mask),
with the unfiltered search in the same run as the peer.

N=500,000 vectors of d=8 with metadata {category, price, tags}; median of 10 repeats.
Run: `python3 benches/filter_search.py` (see benches/RESULTS.md).
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import urllib.request

from compare_faiss import TARGET, cargo, machine, start_node

FILTERS = [
    ("none", None),
    ("equality", {"category": "a"}),
    ("range + $in", {"price": {"$gte": 100, "$lt": 200}, "tags": {"$in": ["x"]}}),
    ("$or", {"$or": [{"category": "a"}, {"price": {"$gt": 990}}]}),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500_000)
    ap.add_argument("--skip-build", action="store_true")
    args = ap.parse_args()
    if not args.skip_build:
        cargo("build", "--release", "--bin", "needle")
    random.seed(1)
    work = tempfile.mkdtemp(prefix="needle-filter-")
    path = os.path.join(work, "rows.jsonl")
    with open(path, "w") as f:
        for i in range(args.n):
            meta = {"category": random.choice("abcd"), "price": random.randint(0, 1000),
                    "tags": ["x", "y"] if i % 2 else ["z"]}
            f.write(json.dumps({"id": str(i), "vector": [random.random() for _ in range(8)], "metadata": meta}) + "\n")
    data = os.path.join(work, "data")
    subprocess.run([os.path.join(TARGET, "release", "needle"), "import", "--collection", "m", "--data", data,
                    "--create", "euclidean", "--batch-size", "10000", path], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc, url = start_node(data)

    def post(body):
        req = urllib.request.Request(f"{url}/collections/m/search", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        t = time.perf_counter()
        urllib.request.urlopen(req, timeout=120).read()
        return time.perf_counter() - t

    print(f"machine: {machine()}")
    print(f"data: N={args.n} d=8, metadata {{category, price, tags}}, k=10")
    print(f"{'filter':<16}{'first ms':>10}{'repeat ms':>11}")
    try:
        for name, flt in FILTERS:
            body = {"vector": [0.5] * 8, "k": 10}
            if flt:
                body["filter"] = flt
            first = post(body)
            repeats = sorted(post(body) for _ in range(10))
            print(f"{name:<16}{1e3 * first:>10.1f}{1e3 * repeats[5]:>11.1f}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
