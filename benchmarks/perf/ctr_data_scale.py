"""The ctr pipeline at Criteo scale: peak memory of out-of-core preprocessing and loading, against the row count.

For each row count (default 1M and 10M) the benchmark writes a synthetic twin of a Criteo_x1 CSV (label, I1-I13
floats, C1-C26 hex strings; `datamodules.ctr.synthetic.criteo_shaped_frame`, generated and written chunk by chunk,
each chunk from its own seed, vocabularies capped at 10,000 values per field), then, in a fresh process:
  1. preprocessing with `criteo-x1 --data.streaming true` (datamodules.ctr.stream): the CSV parsed once in chunks,
     vocabularies and statistics from the training rows, encoded arrays written to .npy files;
  2. one pass over the training split as the trainer reads it (StreamingSplit: blocks of rows, shuffled), no model.
Each phase reports wall and CPU seconds and its own peak RSS (VmHWM, reset between phases). `--in-memory-rows N`
also runs the in-memory build (`dm.build`, every row's arrays in memory at once) at N rows, for contrast.

    python -m benchmarks.perf.ctr_data_scale                      # 1M and 10M rows -> results/perf-ctr-data-scale.md
    python -m benchmarks.perf.ctr_data_scale --rows 200000 --out ''   # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def peak_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5": reset the peak RSS to the current RSS (Linux)
        f.write("5")


def clock():
    return time.perf_counter(), time.process_time()


def since(start) -> tuple[float, float]:
    return round(time.perf_counter() - start[0], 2), round(time.process_time() - start[1], 2)


def generate(path: Path, rows: int, chunk_rows: int, seed: int) -> dict:
    """The twin CSV, chunk by chunk (Arrow's CSV writer; one header)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from datamodules.ctr.synthetic import criteo_shaped_frame

    start, writer = clock(), None
    with open(path, "wb") as sink:
        for c, first in enumerate(range(0, rows, chunk_rows)):
            frame = criteo_shaped_frame(min(chunk_rows, rows - first), seed=seed * 100_003 + c, dense_format="x1")
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema)
            writer.write_table(table)
        writer.close()
    wall, cpu = since(start)
    return {"rows": rows, "csv_mb": round(path.stat().st_size / 2 ** 20, 1), "generate_s": wall, "generate_cpu_s": cpu,
            "generate_peak_mb": round(peak_mb(), 1)}


def measure(csv: Path, rows: int, workdir: Path, chunk_rows: int, batch_size: int, in_memory: bool) -> dict:
    """Preprocess the twin (streaming, or in memory), then one pass over the training split; each phase's peak."""
    os.environ["PAPERBOARD_CACHE"] = str(workdir / "cache")
    import torch

    from contracts.batch import ctr as B
    from datamodules.ctr.criteo import CriteoX1

    dm = CriteoX1(data_dir=str(workdir), standin="synthetic", standin_rows=rows, chunk_rows=chunk_rows,
                  streaming=not in_memory, batch_size=batch_size)
    path = dm.cache_dir / f"standin-x1-{rows}-seed0.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(csv, path)
    assert dm.standin_path() == path
    out = {"rows": rows, "mode": "in memory" if in_memory else "streaming", "chunk_rows": chunk_rows,
           "process_rss_mb": round(rss_mb(), 1)}
    reset_peak()
    start = clock()
    if in_memory:
        dm.use_cache = False
        arrays = dm.build(dm.frames())
        out["vocabulary"] = int(arrays["field_dims"].sum())
    else:
        dm.prepare_data()
        out["vocabulary"] = int(sum(dm.model_kwargs()["field_dims"]))
    out["preprocess_s"], out["preprocess_cpu_s"] = since(start)
    out["preprocess_peak_mb"] = round(peak_mb(), 1)
    out["preprocess_rows_per_cpu_s"] = round(rows / max(out["preprocess_cpu_s"], 1e-9))
    if in_memory:
        return out
    del dm.arrays
    reset_peak()
    start = clock()
    dm.setup()
    seen = 0
    for batch in dm.train_dataloader():
        seen += len(batch[B.LABEL])
    out["train_pass_s"], out["train_pass_cpu_s"] = since(start)
    out["train_pass_peak_mb"] = round(peak_mb(), 1)
    out["train_rows"] = seen
    out["encoded_mb"] = round(sum(f.stat().st_size for f in dm.stream_folder().iterdir()) / 2 ** 20, 1)
    out["torch_threads"] = torch.get_num_threads()
    return out


def child(args: list[str]) -> dict:
    res = subprocess.run([sys.executable, "-m", "benchmarks.perf.ctr_data_scale", *args], capture_output=True,
                         text=True)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated row counts")
    parser.add_argument("--chunk-rows", type=int, default=250_000, help="CSV rows parsed at a time")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--in-memory-rows", type=int, default=1_000_000,
                        help="also run the in-memory build at this row count (0: skip)")
    parser.add_argument("--workdir", help="where the CSVs and encoded arrays go (default: a temporary folder)")
    parser.add_argument("--out", default=str(RESULTS / "perf-ctr-data-scale.md"))
    parser.add_argument("--child-generate")
    parser.add_argument("--child-measure")
    parser.add_argument("--in-memory", action="store_true")
    args = parser.parse_args(argv)

    if args.child_generate:
        print(json.dumps(generate(Path(args.child_generate), int(args.rows), args.chunk_rows, 0)))
        return 0
    if args.child_measure:
        print(json.dumps(measure(Path(args.child_measure), int(args.rows), Path(args.workdir), args.chunk_rows,
                                 args.batch_size, args.in_memory)))
        return 0

    load_start = os.getloadavg()
    base = Path(args.workdir or tempfile.mkdtemp(prefix="ctr-scale-"))
    results = []
    plan = [(int(r), False) for r in args.rows.split(",")]
    if args.in_memory_rows:
        plan.append((args.in_memory_rows, True))
    try:
        for rows, in_memory in plan:
            work = base / f"{rows}-{'memory' if in_memory else 'stream'}"
            work.mkdir(parents=True, exist_ok=True)
            csv = work / "twin.csv"
            gen = child(["--child-generate", str(csv), "--rows", str(rows), "--chunk-rows", str(args.chunk_rows)])
            print(json.dumps(gen), flush=True)
            if "error" in gen:
                results.append({"rows": rows, "in_memory": in_memory, **gen})
                continue
            flags = ["--child-measure", str(csv), "--rows", str(rows), "--workdir", str(work), "--chunk-rows",
                     str(args.chunk_rows), "--batch-size", str(args.batch_size)] + (["--in-memory"] if in_memory else [])
            res = child(flags)
            print(json.dumps(res), flush=True)
            results.append({**gen, **res, "in_memory": in_memory})
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(base, ignore_errors=True)
    load_end = os.getloadavg()

    import torch

    lines = ["# ctr pipeline at Criteo scale: out-of-core preprocessing and loading", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
             f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}. Load average (1/5/15 min): "
             f"{' / '.join(f'{x:.2f}' for x in load_start)} at the start, {' / '.join(f'{x:.2f}' for x in load_end)} "
             "at the end (wall seconds stretch under load; CPU seconds much less).", "",
             "Input: a synthetic twin of a Criteo_x1 CSV (label, 13 numeric, 26 categorical fields; Zipf "
             "vocabularies capped at 10,000 values per field, 5% missing values), generated by the benchmark. "
             f"CSV parsed {args.chunk_rows:,} rows at a time; the training pass reads blocks of 2^20 rows in "
             f"batches of {args.batch_size:,}. Peak RSS is each phase's own high-water mark (VmHWM, reset before "
             "it), in a fresh process whose imports alone hold the 'process' figure.", "",
             "`python -m benchmarks.perf.ctr_data_scale`", "",
             "| rows | mode | CSV MB | preprocess s (CPU s) | rows per CPU s | preprocess peak RSS MB | train pass s "
             "(CPU s) | train pass peak RSS MB | process RSS MB | vocabulary | encoded MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['rows']:,} | {'in memory' if r['in_memory'] else 'streaming'} | error: "
                         f"{r['error'][:120]} |" + " |" * 8)
            continue
        train = (f"{r['train_pass_s']} ({r['train_pass_cpu_s']})" if "train_pass_s" in r else "-")
        lines.append(f"| {r['rows']:,} | {r['mode']} | {r['csv_mb']:,} | {r['preprocess_s']} ({r['preprocess_cpu_s']}) "
                     f"| {r['preprocess_rows_per_cpu_s']:,} | **{r['preprocess_peak_mb']:,.0f}** | {train} | "
                     f"{r.get('train_pass_peak_mb', '-')} | {r['process_rss_mb']:,.0f} | {r['vocabulary']:,} | "
                     f"{r.get('encoded_mb', '-')} |")
    lines += ["", "Generating each CSV (not part of the pipeline): " + "; ".join(
        f"{r['rows']:,} rows {r['generate_s']} s, peak {r['generate_peak_mb']:,.0f} MB" for r in results
        if "generate_s" in r) + ".", ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
