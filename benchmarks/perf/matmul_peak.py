"""This machine's matrix-multiply throughput, the yardstick for a training step's achieved GFLOP/s.

    python -m benchmarks.perf.matmul_peak [--threads 1] [--sizes 512,1024,2048] [--dtype bfloat16]

Times `a @ b` for square float32 (or bfloat16, the yardstick of bf16-mixed steps)
matrices (best of a few repeats after a warm-up, output buffer reused so no page
faults are timed) and reports GFLOP/s = 2 n^3 / seconds; the peak is the best size. Numbers depend on the load: the
load average is printed beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch


def matmul_gflops(n: int, repeats: int = 3, dtype: torch.dtype = torch.float32) -> float:
    """Best-of-`repeats` GFLOP/s of an n x n by n x n product of `dtype` in the current thread setting."""
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=gen).to(dtype) for _ in range(2))
    out = torch.empty(n, n, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: first-touch of the buffers, MKL's dispatch
    inner = max(1, int(2e9 // (2 * n ** 3)))  # ~2 GFLOP per timing, so small sizes are not timer noise
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b, out=out)
        best = min(best, (time.perf_counter() - start) / inner)
    return 2 * n ** 3 / best / 1e9


def measure(threads: int = 1, sizes: tuple[int, ...] = (512, 1024, 2048), dtype: str = "float32") -> dict:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        load = os.getloadavg()
        by_size = {n: round(matmul_gflops(n, dtype=getattr(torch, dtype)), 1) for n in sizes}
    finally:
        torch.set_num_threads(before)
    return {"threads": threads, "dtype": dtype, "gflops_by_size": by_size, "peak_gflops": max(by_size.values()),
            "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()],
            "torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.matmul_peak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", default="512,1024,2048")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    result = measure(args.threads, tuple(int(s) for s in args.sizes.split(",")), args.dtype)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
