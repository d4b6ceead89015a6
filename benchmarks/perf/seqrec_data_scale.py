"""How the seqrec data pipeline scales: seconds and peak memory to preprocess an ML-20M-shaped table.

`python -m benchmarks.perf.seqrec_data_scale [--rows 1000000,10000000,20000000] [--out FILE.md]` generates, for each
size, a synthetic twin of MovieLens-20M's shape and runs the seqrec pipeline on it, each size in a fresh process
so that its peak resident memory is its own. The twin keeps what the pipeline's cost depends on: ML-20M's
interactions per user (138,493 users and 20,000,263 ratings, at least 20 per user, a long tail; users scale with
the row count), a Zipf item popularity over 26,744 items (the catalogue scales with the square root of the row
count), second-resolution timestamps over 1995-2015 with same-second ties, and rows grouped by user but not in
time order within a user (ratings.csv is sorted by user, then movie id), so the time sort does real work.

Measured stages, each with wall and CPU seconds: `sequences` (factorise users and items, one stable sort by
(user, time), drop short users, CSR offsets: `SeqRecDataModule.sequences_from_interactions`) and `windows` (the
leave-one-out splits as left-padded max_len windows of items and timestamps, the content hash and the tensors:
`SeqRecDataModule.setup`). Memory: the process's peak resident set (getrusage ru_maxrss, which includes the
generated input table and the interpreter), and the peak of what the pipeline itself allocated (tracemalloc,
reset after generation). max_len is 200, the HSTU repository's ML-20M setting. Reading a CSV is not measured:
the table is handed over as the flat arrays a loader returns.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ML20M_USERS, ML20M_ROWS, ML20M_ITEMS = 138_493, 20_000_263, 26_744
MIN_PER_USER = 20


def twin(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A synthetic table of ML-20M's shape with `rows` interactions (vectorised, int32 ids, int64 seconds)."""
    rng = np.random.default_rng(seed)
    users = max(1, round(ML20M_USERS * rows / ML20M_ROWS))
    items = max(100, round(ML20M_ITEMS * (rows / ML20M_ROWS) ** 0.5))
    # per-user counts: 20 + a lognormal tail, rescaled so that they sum to `rows` exactly
    tail = rng.lognormal(mean=4.0, sigma=1.2, size=users)
    extra = rows - MIN_PER_USER * users
    lengths = MIN_PER_USER + np.floor(tail / tail.sum() * extra).astype(np.int64)
    lengths[np.argsort(-tail)[: rows - int(lengths.sum())]] += 1
    user = np.repeat(np.arange(1, users + 1, dtype=np.int32), lengths)
    cdf = np.cumsum(1.0 / np.arange(1, items + 1) ** 0.9)
    item = np.searchsorted(cdf, rng.random(rows) * cdf[-1]).astype(np.int32) + 1
    # each user rates over a span of their own; seconds drawn inside it, rounded to minutes for some users (ties)
    start = rng.integers(788_918_400, 1_420_070_400, size=users)  # 1995 .. 2015
    span = rng.integers(60, 3 * 365 * 86_400, size=users)
    time_ = np.repeat(start, lengths) + (rng.random(rows) * np.repeat(span, lengths)).astype(np.int64)
    coarse = np.repeat(rng.random(users) < 0.3, lengths)
    time_[coarse] -= time_[coarse] % 60
    return {"user": user, "item": item, "time": time_}


def measure(rows: int, max_len: int) -> dict:
    """Generate one twin and run the pipeline on it, in this process; returns the measurements."""
    from datamodules.seqrec.base import SeqRecDataModule

    class Twin(SeqRecDataModule):
        registry_name = "ml-20m-twin"

        def _sequences(self):
            return self._arrays

    start = time.perf_counter()
    raw = twin(rows)
    generate_s = time.perf_counter() - start
    dm = Twin(max_len=max_len)
    tracemalloc.start()
    stages = {}
    for name, step in (("sequences", lambda: setattr(dm, "_arrays", dm.sequences_from_interactions(raw))),
                       ("windows", dm.setup)):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        stages[name] = {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(time.process_time() - cpu, 2)}
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"rows": rows, "users": dm.num_users, "items": dm.num_items, "max_len": max_len,
            "train_rows": len(dm.train_set), "generate_s": round(generate_s, 2), **{f"{k}_{m}": v
            for k, s in stages.items() for m, v in s.items()},
            "pipeline_wall_s": round(sum(s["wall_s"] for s in stages.values()), 2),
            "pipeline_cpu_s": round(sum(s["cpu_s"] for s in stages.values()), 2),
            "pipeline_peak_mb": round(traced_peak / 2**20, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "input_mb": round(sum(a.nbytes for a in raw.values()) / 2**20, 1)}


def table(results: list[dict], load: tuple[float, float, float]) -> str:
    lines = ["# seqrec data pipeline at scale (ML-20M-shaped synthetic twins)", "",
             "Generated and measured by `python -m benchmarks.perf.seqrec_data_scale` (see its docstring for the "
             "twin and the stages). One run per size, each in a fresh process; " 
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, load average at the start "
             f"{load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f} (other jobs shared the machine, so wall seconds may be "
             "inflated; CPU seconds are this process's own).", "",
             "| rows | users | items | train rows | sequences s (CPU) | windows s (CPU) | pipeline s (CPU) "
             "| pipeline peak MB (tracemalloc) | input MB | peak RSS MB | under 4 GB |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
    for r in results:
        lines.append(f"| {r['rows']:,} | {r['users']:,} | {r['items']:,} | {r['train_rows']:,} "
                     f"| {r['sequences_wall_s']} ({r['sequences_cpu_s']}) | {r['windows_wall_s']} ({r['windows_cpu_s']}) "
                     f"| {r['pipeline_wall_s']} ({r['pipeline_cpu_s']}) | {r['pipeline_peak_mb']:,} | {r['input_mb']:,} "
                     f"| {r['peak_rss_mb']:,} | {'yes' if r['peak_rss_mb'] < 4096 else 'NO'} |")
    lines += ["", f"max_len {results[0]['max_len']}; windows hold items and timestamps for train, validation and "
              "test (int64, as the models read them). Peak RSS includes the generated input table and the "
              "interpreter; the tracemalloc column is what the pipeline allocated on top of its input."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="1000000,10000000,20000000", help="comma-separated table sizes")
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--out", type=Path, help="write the Markdown table here (and FILE.json beside it)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.rows.split(",")]
    if args.child:
        print(json.dumps(measure(sizes[0], args.max_len)))
        return
    load = os.getloadavg()
    results = []
    for rows in sizes:
        out = subprocess.run([sys.executable, "-m", "benchmarks.perf.seqrec_data_scale", "--child", "--rows",
                              str(rows), "--max-len", str(args.max_len)], capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    text = table(results, load)
    print(text)
    if args.out:
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
