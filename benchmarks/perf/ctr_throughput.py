"""Throughput of the ctr family: per model, seconds per training epoch and training rows per second (forward, the
model's own loss with its L2 terms, backward, Adam step, over a board's real batches); and the data pipeline's
rows per second and peak memory on a synthetic Criteo-shaped CSV (default 1,000,000 rows, x1 layout: label,
I1-I13, C1-C26), read in chunks, hashed, split 7:2:1, indexed and encoded exactly as `criteo-x1` does it.

    python -m benchmarks.perf.ctr_throughput --data-dir ../shared/data            # models on ctr-adult + pipeline
    python -m benchmarks.perf.ctr_throughput --board ctr-synthetic --models xcrossnet,dcnv2 --skip-pipeline
    python -m benchmarks.perf.ctr_throughput --skip-models --pipeline-rows 1000000 --chunk-rows 250000

Each model and the pipeline run in a fresh subprocess, so each peak RSS is its own. Numbers depend on the machine
(and on its load): quote them with its description, which the report includes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_model(model_name: str, board_name: str, data_dir: str | None, epochs: int) -> dict:
    import torch

    import datamodules  # noqa: F401
    import lightning_modules  # noqa: F401
    from benchmarks.boards import load_board
    from benchmarks.runner import RunSpec, resolve
    from contracts.batch import ctr as B
    import torch.nn.functional as F

    board = load_board(board_name)
    data_cls, data_kwargs, model_cls, model_kwargs = resolve(board, RunSpec(board.name, model_name, 0))
    dm = data_cls(data_dir=data_dir, **data_kwargs)
    dm.prepare_data()
    dm.setup()
    rss_before = _rss_mb()
    torch.manual_seed(0)
    model = model_cls(**{**dm.model_kwargs(), **model_kwargs})
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=model.lr)
    loader = dm.train_dataloader()
    rows = len(dm.train_set)

    def one_epoch() -> float:
        start = time.perf_counter()
        for batch in loader:
            logits = model(batch[B.DENSE], batch[B.SPARSE])
            loss = F.binary_cross_entropy_with_logits(logits, batch[B.LABEL]) + model.regularization()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        return time.perf_counter() - start

    for i, batch in enumerate(loader):  # warm-up: allocator, kernels
        if i == 3:
            break
        model(batch[B.DENSE], batch[B.SPARSE]).sum().backward()
    seconds = [one_epoch() for _ in range(epochs)]
    per_epoch = sorted(seconds)[len(seconds) // 2]
    model.eval()
    eval_start = time.perf_counter()
    with torch.no_grad():
        for batch in dm.val_dataloader():
            model(batch[B.DENSE], batch[B.SPARSE])
    eval_seconds = time.perf_counter() - eval_start
    return {"model": model_name, "board": board_name, "params": sum(p.numel() for p in model.parameters()),
            "train_rows": rows, "batch_size": dm.batch_size, "s_per_epoch": round(per_epoch, 3),
            "train_rows_per_s": round(rows / per_epoch, 1),
            "eval_rows_per_s": round(len(dm.val_set) / eval_seconds, 1),
            "peak_rss_mb": round(_rss_mb(), 1), "rss_growth_mb": round(_rss_mb() - rss_before, 1),
            "threads": torch.get_num_threads()}


def measure_pipeline(rows: int, chunk_rows: int, workdir: str) -> dict:
    """Build criteo-x1 from a generated CSV (generation not timed), then time the whole preprocessing."""
    os.environ["PAPERBOARD_CACHE"] = workdir
    from datamodules.ctr.criteo import CriteoX1

    dm = CriteoX1(data_dir=workdir, standin="synthetic", standin_rows=rows, chunk_rows=chunk_rows)
    generate_start = time.perf_counter()
    csv = dm.standin_path()  # writes the CSV once
    generate_seconds = time.perf_counter() - generate_start
    dm.use_cache = False
    rss_before = _rss_mb()
    start = time.perf_counter()
    arrays = dm.build(dm.frames())
    build_seconds = time.perf_counter() - start
    tensor_start = time.perf_counter()
    dm.arrays = arrays
    dm.setup()
    tensor_seconds = time.perf_counter() - tensor_start
    return {"rows": rows, "chunk_rows": chunk_rows, "csv_mb": round(csv.stat().st_size / 2**20, 1),
            "generate_s": round(generate_seconds, 2), "preprocess_s": round(build_seconds, 2),
            "to_tensors_s": round(tensor_seconds, 2),
            "rows_per_s": round(rows / (build_seconds + tensor_seconds), 1),
            "vocabulary": int(arrays["field_dims"].sum()), "peak_rss_mb": round(_rss_mb(), 1),
            "rss_before_build_mb": round(rss_before, 1)}


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.perf.ctr_throughput", *args], capture_output=True,
                         text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> str:
    import torch

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
            f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--board", default="ctr-adult")
    parser.add_argument("--models", help="comma-separated; default: every model on the board")
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per model (median reported)")
    parser.add_argument("--pipeline-rows", type=int, default=1_000_000)
    parser.add_argument("--chunk-rows", type=int, default=500_000)
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "ctr-perf.md"), help="markdown table ('' for stdout only)")
    parser.add_argument("--child-model")
    parser.add_argument("--child-pipeline", action="store_true")
    parser.add_argument("--workdir")
    args = parser.parse_args(argv)

    if args.child_model:
        print(json.dumps(measure_model(args.child_model, args.board, args.data_dir, args.epochs)))
        return 0
    if args.child_pipeline:
        print(json.dumps(measure_pipeline(args.pipeline_rows, args.chunk_rows, args.workdir)))
        return 0

    from benchmarks.boards import load_board

    load_at_start = os.getloadavg()[0]
    lines = []
    if not args.skip_models:
        models = args.models.split(",") if args.models else list(load_board(args.board).models)
        rows = []
        for name in models:
            child = ["--child-model", name, "--board", args.board, "--epochs", str(args.epochs)]
            if args.data_dir:
                child += ["--data-dir", args.data_dir]
            result = run_child(child)
            print(json.dumps(result), flush=True)
            rows.append({"model": name, **result})
        lines += [f"## Training on board `{args.board}` (plain loop: forward, BCE + L2, backward, Adam)", "",
                  "| model | params | batch | s/epoch | train rows/s | eval rows/s | peak RSS MB |",
                  "|---|---|---|---|---|---|---|"]
        for r in rows:
            if "error" in r:
                lines.append(f"| {r['model']} | error: {r['error'][:80]} | | | | | |")
            else:
                lines.append(f"| {r['model']} | {r['params']:,} | {r['batch_size']} | {r['s_per_epoch']:.2f} | "
                             f"{r['train_rows_per_s']:,.0f} | {r['eval_rows_per_s']:,.0f} | {r['peak_rss_mb']:.0f} |")
        lines.append("")
    if not args.skip_pipeline:
        with tempfile.TemporaryDirectory(prefix="ctr-pipeline-") as workdir:
            result = run_child(["--child-pipeline", "--pipeline-rows", str(args.pipeline_rows), "--chunk-rows",
                                str(args.chunk_rows), "--workdir", workdir])
        print(json.dumps(result), flush=True)
        lines += ["## Data pipeline: synthetic Criteo-shaped CSV, criteo-x1 preprocessing", ""]
        if "error" in result:
            lines.append(f"error: {result['error']}")
        else:
            lines += [f"- {result['rows']:,} rows, {result['csv_mb']} MB CSV, read in chunks of {result['chunk_rows']:,}",
                      f"- preprocessing (parse, hash, split, vocabularies, encode): {result['preprocess_s']} s; "
                      f"to tensors: {result['to_tensors_s']} s; **{result['rows_per_s']:,.0f} rows/s**",
                      f"- peak RSS {result['peak_rss_mb']:.0f} MB (process before the build: "
                      f"{result['rss_before_build_mb']:.0f} MB); vocabulary {result['vocabulary']:,} ids", ""]
    header = [f"# ctr throughput", "", f"Machine: {machine()}.",
              f"Load average (1 min): {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
              f"(other jobs on the machine slow every row alike).", ""]
    text = "\n".join(header + lines)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
