"""Seqrec training speed, the fast kernels against the reference code in one run, plus full-ranking eval users/s.

    python -m benchmarks.perf.seqrec_speed                     # all shapes and models, writes the results page
    python -m benchmarks.perf.seqrec_speed --models hstu --shapes ml-1m --rounds 2 --out /tmp/x.md
    python -m benchmarks.perf.seqrec_speed --compile --eval-shapes '' --out benchmarks/results/perf-seqrec-compile.md

Training: each (model, shape) runs in a fresh single-model process on random full-length batches of the shape
(every position has a next item: the most expensive batch of that shape), with the model settings of the shape's
board. The process alternates blocks of `--steps` training steps (forward, the model's loss, backward, AdamW) on
the reference code (`lightning_modules.layers.reference_kernels()`, the unfused code the models ran before) and on
the fast kernels, `--rounds` times, so both paths see the same machine load; per path it reports the median per
step of CPU seconds (process time), wall seconds and minor page faults. Sequences per CPU second = batch / CPU s
per step; CPU s per epoch = users / batch x CPU s per step (a real epoch has padded positions and costs less).
Achieved GFLOP/s = useful FLOPs of a step / CPU s per step, against this machine's measured matmul peak at the
same thread count (`benchmarks.perf.matmul_peak`): model FLOPs from `torch.utils.flop_counter` (matrix products;
GRU cells are not counted) plus the loss's own (sampled softmax 6 N (k+1) d, full softmax 6 N V d).

`--compile` also times the fast path after `model.compile()` (`torch.compile` of the module in place, as `paperboard
run --compile` compiles a CTR model; the seqrec step reaches the encoder through `self(...)`): the CPU seconds of this process in
its first steps (compilation; inductor's code-generation workers are other processes, not counted) and its median
step after them, beside the eager fast path's.

Evaluation: users per second of full ranking (the model's history encoding, scores of every item, seen items
filtered, rank of the target) at the ML-1M and Beauty shapes, `--eval-users` users in eval batches of 256.

The machine is shared: the load average before and after each measurement is recorded beside it.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
MODELS = "sasrec,hstu,fuxi_alpha,llama_rec,gpt_rec,gru4rec"
# training shapes: the board whose model settings apply, catalogue, length, batch, training users per epoch
SHAPES = {
    "ml-100k": {"board": "seqrec-ml100k", "num_items": 1682, "max_len": 50, "batch_size": 128, "users": 943,
                "time": True},
    "ml-1m": {"board": "seqrec-ml1m", "num_items": 3706, "max_len": 200, "batch_size": 128, "users": 6040,
              "time": False},
}
EVAL_SHAPES = {
    "ml-1m": {"board": "seqrec-ml1m", "num_items": 3706, "max_len": 200, "batch_size": 256, "time": False},
    "beauty": {"board": "seqrec-beauty", "num_items": 12101, "max_len": 50, "batch_size": 256, "time": True},
}


def build(model_name: str, shape: dict):
    """The model with the board's settings for it (keys the constructor does not know are dropped and returned)."""
    import torch

    import lightning_modules  # noqa: F401
    from benchmarks.boards import load_board
    from contracts.registry import MODELS as REGISTRY

    cls = REGISTRY.get(model_name).cls
    args = dict(load_board(shape["board"]).models.get(model_name, {}))
    args.pop("eval_ks", None)
    known = inspect.signature(cls.__init__).parameters
    dropped = sorted(k for k in args if k not in known)
    torch.manual_seed(0)
    model = cls(num_items=shape["num_items"], max_len=shape["max_len"],
                **{k: v for k, v in args.items() if k in known})
    model.log = lambda *a, **k: None  # no Trainer attached
    return model, dropped


def random_batch(shape: dict, rows: int, eval_batch: bool = False) -> dict:
    import torch

    from contracts.batch import seqrec as B

    gen = torch.Generator().manual_seed(1)
    length = shape["max_len"]
    ids = torch.randint(1, shape["num_items"] + 1, (rows, length + 1), generator=gen)
    batch = {B.INPUT_IDS: ids[:, :-1]}
    if eval_batch:
        batch[B.TARGET] = ids[:, -1]
    else:
        batch[B.TARGET_IDS] = ids[:, 1:]
    if shape["time"]:
        times = torch.randint(1, 86400 * 30, (rows, length + 1), generator=gen).cumsum(1)
        batch[B.TIMESTAMPS], batch[B.NEXT_TIMESTAMPS] = times[:, :-1], times[:, 1:]
    return batch


def loss_flops(model, positions: int) -> int:
    if model.loss_name == "sampled_softmax":
        return 6 * positions * (model.num_negatives + 1) * model.embed_dim
    if model.loss_name == "ce":
        return 6 * positions * (model.num_items + 1) * model.embed_dim
    return 6 * positions * 2 * model.embed_dim  # bce: a positive and one negative


def measure_train(model_name: str, shape_name: str, steps: int, rounds: int, compile: bool = False) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lightning_modules.layers import reference_kernels

    shape = SHAPES[shape_name]
    model, dropped = build(model_name, shape)
    model.train()
    optimiser = model.configure_optimizers()
    batch = random_batch(shape, shape["batch_size"])

    def step():
        loss = model.training_step(batch, 0)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def block(reference: bool) -> list[tuple[float, float, float]]:
        out = []
        with reference_kernels(reference):
            for _ in range(steps):
                r0, c0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), time.perf_counter()
                step()
                r1 = resource.getrusage(resource.RUSAGE_SELF)
                out.append((time.process_time() - c0, time.perf_counter() - w0, r1.ru_minflt - r0.ru_minflt))
        return out

    load_before = os.getloadavg()
    block(True), block(False)  # warm-up of both paths
    timings = {"reference": [], "fast": []}
    for _ in range(rounds):
        timings["reference"] += block(True)
        timings["fast"] += block(False)
    load_after = os.getloadavg()
    # useful FLOPs: the matrix products of forward + backward as the counter sees them on the fast path (the fast
    # full-softmax kernel's three products included), plus the sampled/bce loss's dot products, which are no matmul
    counter = FlopCounterMode(display=False)
    with counter:
        model.training_step(batch, 0).backward()
    optimiser.zero_grad(set_to_none=True)
    positions = int((batch["target_ids"] != 0).sum())
    flops = counter.get_total_flops() + (loss_flops(model, positions) if model.loss_name != "ce" else 0)
    result = {"model": model_name, "shape": shape_name, "board": shape["board"], "batch_size": shape["batch_size"],
              "max_len": shape["max_len"], "num_items": shape["num_items"], "users_per_epoch": shape["users"],
              "threads": torch.get_num_threads(), "steps_per_path": steps * rounds, "dropped_board_keys": dropped,
              "flops_per_step": flops, "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in load_after]}
    for path, rows in timings.items():
        cpu = statistics.median(r[0] for r in rows)
        wall = statistics.median(r[1] for r in rows)
        result[path] = {"cpu_s_per_step": round(cpu, 4), "wall_s_per_step": round(wall, 4),
                        "minor_faults_per_step": int(statistics.median(r[2] for r in rows)),
                        "seq_per_cpu_s": round(shape["batch_size"] / cpu, 1),
                        "seq_per_wall_s": round(shape["batch_size"] / wall, 1),
                        "cpu_s_per_epoch": round(shape["users"] / shape["batch_size"] * cpu, 1),
                        "gflops_per_cpu_s": round(flops / cpu / 1e9, 2)}
    result["speedup_cpu"] = round(result["reference"]["cpu_s_per_step"] / result["fast"]["cpu_s_per_step"], 2)
    if compile:
        model.compile()
        start = time.process_time()
        block(False)  # compiles forward and backward
        first = time.process_time() - start
        cpu = statistics.median(r[0] for _ in range(rounds) for r in block(False))
        result["compiled"] = {"compile_cpu_s": round(first, 1), "cpu_s_per_step": round(cpu, 4),
                              "seq_per_cpu_s": round(shape["batch_size"] / cpu, 1),
                              "speedup_vs_eager": round(result["fast"]["cpu_s_per_step"] / cpu, 2)}
    return result


def measure_eval(model_name: str, shape_name: str, users: int) -> dict:
    import torch

    from lightning_modules.seqrec.metrics import target_rank

    shape = EVAL_SHAPES[shape_name]
    model, dropped = build(model_name, shape)
    model.eval()
    batch = random_batch(shape, shape["batch_size"], eval_batch=True)
    load_before = os.getloadavg()
    with torch.no_grad():
        scores = model.score_all(batch)  # warm-up
        done, c0, w0 = 0, time.process_time(), time.perf_counter()
        while done < users:
            scores = model.score_all(batch).float()
            target_rank(scores, batch["target"], model.candidate_exclusions(batch, scores.shape[1]))
            done += shape["batch_size"]
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    return {"model": model_name, "shape": shape_name, "num_items": shape["num_items"], "max_len": shape["max_len"],
            "users": done, "users_per_cpu_s": round(done / cpu, 1), "users_per_wall_s": round(done / wall, 1),
            "threads": torch.get_num_threads(), "dropped_board_keys": dropped,
            "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()]}


def _child(args: list[str]) -> dict | None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.perf.seqrec_speed", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{' '.join(args)}: FAILED\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def render(result: dict) -> str:
    peak = result["matmul"]
    lines = ["# Seqrec training speed: fast kernels vs the reference code (one run)", "",
             f"Command: `{result['command']}`. Machine: {result['machine']}, torch {result['torch']}, "
             f"{result['threads']} thread(s) per process (OMP_NUM_THREADS={result['omp_num_threads']}). The machine is "
             f"shared with other jobs: the load average (1-minute) before/after each row is in its last column; CPU "
             f"seconds are less affected by load than wall seconds, but not immune (shared caches and memory).", "",
             f"Matrix-multiply yardstick (`benchmarks.perf.matmul_peak`, float32, {peak['threads']} thread): "
             f"{', '.join(f'{n}: {g} GFLOP/s' for n, g in peak['gflops_by_size'].items())}; peak {peak['peak_gflops']}"
             f" GFLOP/s (load {peak['load_before'][0]} -> {peak['load_after'][0]}).", "",
             "Training: random full-length batches (every position has a next item), board settings of the shape; "
             f"{result['steps']} steps per block, {result['rounds']} alternating rounds per path after one warm-up "
             "block each; medians per step. `ref` = reference code (the models' code before the fast kernels), "
             "`fast` = now. Sequences per CPU second = batch / CPU s per step; CPU s per epoch = users / batch x CPU "
             "s per step; GFLOP/s = useful FLOPs per step / CPU s per step.", "",
             "| shape | model | seq per CPU s ref | fast | speed-up | seq/s wall ref | fast | CPU s/epoch ref | fast | "
             "faults/step ref | fast | GFLOP/s ref | fast | % of matmul peak (fast) | load |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["train"]:
        ref, fast = r["reference"], r["fast"]
        lines.append(f"| {r['shape']} ({r['batch_size']}x{r['max_len']}, {r['num_items']} items) | {r['model']} | "
                     f"{ref['seq_per_cpu_s']} | {fast['seq_per_cpu_s']} | **{r['speedup_cpu']}x** | "
                     f"{ref['seq_per_wall_s']} | {fast['seq_per_wall_s']} | {ref['cpu_s_per_epoch']} | "
                     f"{fast['cpu_s_per_epoch']} | {ref['minor_faults_per_step']:,} | {fast['minor_faults_per_step']:,} | "
                     f"{ref['gflops_per_cpu_s']} | {fast['gflops_per_cpu_s']} | "
                     f"{100 * fast['gflops_per_cpu_s'] / peak['peak_gflops']:.0f}% | "
                     f"{r['load_before'][0]} -> {r['load_after'][0]} |")
    compiled = [r for r in result["train"] if "compiled" in r]
    if compiled:
        lines += ["", "`torch.compile` (default inductor backend) of the fast path: CPU seconds of this process in "
                  f"its first {result['steps']} steps (compilation, without inductor's code-generation worker "
                  "processes), then seq per CPU s of its median step beside the eager fast path's; below 1x, compiling "
                  "slows training down.", "",
                  "| shape | model | first steps CPU s | seq per CPU s eager | compiled | compiled / eager |",
                  "|---|---|---|---|---|---|"]
        for r in compiled:
            c = r["compiled"]
            lines.append(f"| {r['shape']} ({r['batch_size']}x{r['max_len']}) | {r['model']} | {c['compile_cpu_s']} | "
                         f"{r['fast']['seq_per_cpu_s']} | {c['seq_per_cpu_s']} | **{c['speedup_vs_eager']}x** |")
    if result["eval"]:
        lines += ["", f"Full-ranking evaluation ({result['eval_users']} users per row, eval batch 256, random "
                  "full-length histories, seen items filtered, rank of the target among all items); the evaluation "
                  "code is the same on both paths.", "",
                  "| shape | model | users per CPU s | users/s wall | load |", "|---|---|---|---|---|"]
        for r in result["eval"]:
            lines.append(f"| {r['shape']} ({r['max_len']} long, {r['num_items']} items) | {r['model']} | "
                         f"{r['users_per_cpu_s']} | {r['users_per_wall_s']} | {r['load_before'][0]} -> "
                         f"{r['load_after'][0]} |")
    dropped = sorted({f"{r['model']}: {', '.join(r['dropped_board_keys'])}" for r in result["train"] + result["eval"]
                      if r["dropped_board_keys"]})
    if dropped:
        lines += ["", "Board keys this checkout's models do not take (ignored): " + "; ".join(dropped) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.perf.seqrec_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--eval-shapes", default=",".join(EVAL_SHAPES), help="'' for none")
    parser.add_argument("--steps", type=int, default=2, help="training steps per block")
    parser.add_argument("--rounds", type=int, default=3, help="alternating reference/fast blocks per path")
    parser.add_argument("--eval-users", type=int, default=1024)
    parser.add_argument("--compile", action="store_true", help="also time the fast path through torch.compile")
    parser.add_argument("--out", default=str(RESULTS / "perf-seqrec-speed.md"))
    parser.add_argument("--train-one", nargs=2, help=argparse.SUPPRESS)  # internal: MODEL SHAPE in this process
    parser.add_argument("--eval-one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.train_one:
        print(json.dumps(measure_train(*args.train_one, args.steps, args.rounds, args.compile)))
        return 0
    if args.eval_one:
        print(json.dumps(measure_eval(*args.eval_one, args.eval_users)))
        return 0
    import torch

    from benchmarks.perf.matmul_peak import measure as matmul_measure

    result = {"command": "python -m benchmarks.perf.seqrec_speed " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": f"{platform.machine()}, {os.cpu_count()} cpus", "torch": torch.__version__,
              "threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "unset"),
              "steps": args.steps, "rounds": args.rounds, "eval_users": args.eval_users,
              "matmul": matmul_measure(torch.get_num_threads()), "train": [], "eval": []}
    print(f"matmul peak {result['matmul']['peak_gflops']} GFLOP/s", flush=True)
    common = ["--steps", str(args.steps), "--rounds", str(args.rounds), "--eval-users", str(args.eval_users),
              *(["--compile"] if args.compile else [])]
    for shape in [s for s in args.shapes.split(",") if s]:
        for model in args.models.split(","):
            row = _child(["--train-one", model, shape, *common])
            if row:
                result["train"].append(row)
                print(f"train {shape:8s} {model:11s} ref {row['reference']['seq_per_cpu_s']:8.1f} fast "
                      f"{row['fast']['seq_per_cpu_s']:8.1f} seq/CPU s ({row['speedup_cpu']}x), load "
                      f"{row['load_after'][0]}", flush=True)
    for shape in [s for s in args.eval_shapes.split(",") if s]:
        for model in args.models.split(","):
            row = _child(["--eval-one", model, shape, *common])
            if row:
                result["eval"].append(row)
                print(f"eval  {shape:8s} {model:11s} {row['users_per_cpu_s']:8.1f} users/CPU s", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(result))
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
