"""Training throughput and peak memory of the sequential recommenders at ML-1M scale, each through its own
training_step (BERT4Rec's Cloze objective included; `seqrec_throughput.py` times the next-item loss on a board's
real batches instead).

Each model runs in a fresh subprocess (so peak memory is its own): random left-padded batches of ML-1M's shape
(3,706 items, length 200, batch 128, full rows), `--warmup` untimed steps, then `--steps` timed training steps
(forward, the model's own loss, backward, AdamW). Reports training sequences per second and peak memory: on CUDA
`torch.cuda.max_memory_allocated`, on CPU the process's peak resident set (ru_maxrss) and its growth over the
process before the model was built. Models run with their ML-1M board settings (time channels off).

    python -m benchmarks.perf.seqrec_large_models                      # all models, CPU, writes the results table
    python -m benchmarks.perf.seqrec_large_models --models hstu,sasrec --device cuda --steps 50
    python -m benchmarks.perf.seqrec_large_models --models hstu@large,fuxi_alpha@large --out /tmp/large.md  # board rows
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
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
DEFAULT_MODELS = "sasrec,gru4rec,hstu,fuxi_alpha,bert4rec,llama_rec,gpt_rec"


def measure(model_name: str, num_items: int, max_len: int, batch_size: int, steps: int, warmup: int, device: str,
            board: str) -> dict:
    import torch

    import lightning_modules  # noqa: F401
    from benchmarks.boards import load_board
    from contracts.batch import seqrec as B
    from contracts.registry import MODELS

    torch.manual_seed(0)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    entry = MODELS.for_row(model_name)  # a board row such as hstu@large: its registered model, the row's arguments
    args = {**entry.arguments, **load_board(board).models.get(model_name, {})}
    args.pop("eval_ks", None)
    model = entry.cls(num_items=num_items, max_len=max_len, **args).to(device)
    model.train()
    optimiser = model.configure_optimizers()
    ids = torch.randint(1, num_items + 1, (batch_size, max_len + 1), device=device)
    batch = {B.INPUT_IDS: ids[:, :-1], B.TARGET_IDS: ids[:, 1:]}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def step():
        loss = model.training_step(batch, 0)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    model.log = lambda *a, **k: None  # no Trainer attached
    for _ in range(warmup):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    out = {"model": model_name, "sequences_per_s": round(batch_size * steps / seconds, 1),
           "step_ms": round(1000 * seconds / steps, 1), "step_cpu_ms": round(1000 * cpu_seconds / steps, 1),
           "params": sum(p.numel() for p in model.parameters()),
           "batch_size": batch_size, "max_len": max_len, "num_items": num_items, "device": device,
           "torch_threads": torch.get_num_threads(),
           "copies_per_sequence": int(getattr(model, "dupe_factor", 1))}  # BERT4Rec: dupe_factor masked copies per row
    if device.startswith("cuda"):
        out["peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["gpu"] = torch.cuda.get_device_name(0)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["peak_rss_mb"] = round(peak, 1)
        out["peak_mb"] = round(peak - rss_before, 1)  # growth over the imports: model, activations, optimiser
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--board", default="seqrec-ml1m", help="model settings come from this board")
    parser.add_argument("--num-items", type=int, default=3706)
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(RESULTS / "perf-seqrec-large-models.md"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.num_items, args.max_len, args.batch_size, args.steps, args.warmup,
                                 args.device, args.board)))
        return 0
    rows = []
    for name in args.models.split(","):
        cmd = [sys.executable, "-m", "benchmarks.perf.seqrec_large_models", "--one", name, "--board", args.board,
               "--num-items", str(args.num_items), "--max-len", str(args.max_len), "--batch-size",
               str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{name}: FAILED\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{name:12s} {row['sequences_per_s']:9.1f} seq/s  {row['step_ms']:8.1f} ms/step  peak {row['peak_mb']} MB",
              flush=True)
    header = ("| model | train sequences/s | copies per sequence | ms/step | CPU ms/step | peak memory MB | params |\n"
              "|---|---|---|---|---|---|---|\n")
    body = "".join(f"| {r['model']} | {r['sequences_per_s']} | {r['copies_per_sequence']} | {r['step_ms']} | "
                   f"{r['step_cpu_ms']} | {r['peak_mb']} | {r['params']:,} |\n" for r in rows)
    meta = (f"Shape: batch {args.batch_size} x length {args.max_len}, {args.num_items} items, settings of board "
            f"`{args.board}`; {args.steps} timed steps after {args.warmup} warm-up; device {args.device} "
            f"({platform.processor() or platform.machine()}, {os.cpu_count()} cpus, OMP_NUM_THREADS="
            f"{os.environ.get('OMP_NUM_THREADS', 'unset')}). CPU peak memory = growth of the process's peak RSS over "
            f"its imports. Load average at the end: {os.getloadavg()[0]:.1f}. Command: `python -m benchmarks.perf.seqrec_large_models {' '.join(argv or sys.argv[1:])}`.\n")
    text = "# Seqrec training throughput\n\n" + meta + "\n" + header + body
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
