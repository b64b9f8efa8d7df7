"""PyTorch baseline for needle's GPU benchmark, on the same data, in the same run.

Writes the dataset (N x d f32, Q x d f32 queries, raw little-endian) for
`gpu_compare`, then times torch.topk over torch.mm(Q, X.T) for strict f32 (TF32
off), TF32 and f16, measures the card's copy bandwidth and tensor-core rate, and
computes exact float64 top-k ids for a few queries as the recall reference.
Everything goes to DIR/baseline.txt as `key value...` lines.
"""
import argparse
import os
import statistics

import torch


def timed(fn, reps):
    """Median milliseconds of `fn` over `reps` runs after warm-up, by CUDA events."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    n, d, k = args.n, args.d, args.k
    os.makedirs(args.dir, exist_ok=True)
    out = open(os.path.join(args.dir, "baseline.txt"), "w")

    def emit(*fields):
        line = " ".join(str(f) for f in fields)
        print(line, flush=True)
        out.write(line + "\n")

    dev = torch.device("cuda")
    emit("device", torch.cuda.get_device_name(0).replace(" ", "_"))
    emit("torch_version", torch.__version__, "cuda", torch.version.cuda)
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(n, d, device=dev, generator=g)
    q_all = torch.randn(1024, d, device=dev, generator=g)
    x.cpu().numpy().tofile(os.path.join(args.dir, "x.f32"))
    q_all.cpu().numpy().tofile(os.path.join(args.dir, "q.f32"))
    emit("data", n, d)

    # Exact reference ids (float64) for the first 16 queries, inner product.
    ref = torch.topk(torch.mm(q_all[:16].double(), x.double().T), k).indices.cpu().tolist()
    for i, ids in enumerate(ref):
        emit("ref", i, *ids)

    # Device ceilings: copy bandwidth (bytes read + written) and GEMM rates.
    buf = torch.empty(1 << 29, dtype=torch.float32, device=dev)  # 2 GiB
    dst = torch.empty_like(buf)
    ms = timed(lambda: dst.copy_(buf), 10)
    emit("bandwidth_gbs", round(2 * buf.numel() * 4 / ms / 1e6, 1))
    del buf, dst
    for mode, dtype, tf32 in (("f32", torch.float32, False), ("tf32", torch.float32, True), ("f16", torch.float16, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        a = torch.randn(8192, 8192, device=dev, dtype=dtype)
        b = torch.randn(8192, 8192, device=dev, dtype=dtype)
        ms = timed(lambda: torch.mm(a, b), 10)
        emit("peak_tflops", mode, round(2 * 8192**3 / ms / 1e9, 1))
        del a, b

    for mode in ("f32", "tf32", "f16"):
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        xs = x.half() if mode == "f16" else x
        for nq in (1, 64, 1024):
            qs = q_all[:nq].half() if mode == "f16" else q_all[:nq]
            reps = 50 if nq == 1 else 20
            ms = timed(lambda: torch.topk(torch.mm(qs, xs.T), k), reps)
            emit("torch", mode, nq, round(ms, 4))
        del xs
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
