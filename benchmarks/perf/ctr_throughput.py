"""Throughput of the ctr family: per model, seconds per training epoch and training rows per second (forward, the
model's own loss with its L2 terms, backward, Adam step, over a board's real batches); and the data pipeline's
rows per second and peak memory on a synthetic Criteo-shaped CSV (default 1,000,000 rows, x1 layout: label,
I1-I13, C1-C26), read in chunks, hashed, split 7:2:1, indexed and encoded exactly as `criteo-x1` does it.

    python -m benchmarks.perf.ctr_throughput --data-dir ../shared/data            # models on ctr-adult + pipeline
    python -m benchmarks.perf.ctr_throughput --board ctr-synthetic --models xcrossnet,dcnv2 --skip-pipeline
    python -m benchmarks.perf.ctr_throughput --skip-models --pipeline-rows 1000000 --chunk-rows 250000
    python -m benchmarks.perf.ctr_throughput --compare deepctr --data-dir ../shared/data --skip-pipeline
    python -m benchmarks.perf.ctr_throughput --compare deepctr --precision bf16-mixed --data-dir ../shared/data \
        --skip-pipeline --out benchmarks/results/ctr-perf-bf16.md

`--compare deepctr` measures each model beside DeepCTR-Torch's model of the same network (benchmarks.perf.
ctr_reference: its own venv, never a project dependency) on the Adult split, at the same batch size (1024) and
threads: training rows/s of each library's own loop (our Lightning Trainer, its `fit`) and of the bare training
step, and the validation AUC both reach after the same epochs (Adam 1e-3, no learning-rate decay); our bare step
again through `torch.compile`; and each bare step's achieved GFLOP/s beside this machine's matrix-product peak.
`--precision bf16-mixed` runs our side as `paperboard run --trainer.precision bf16-mixed` does (Lightning's CPU
autocast to bfloat16: matrix products in bf16, weights, optimiser and reductions in float32) and measures it
against the bfloat16 matrix-product peak; DeepCTR-Torch has no mixed precision, so its side stays float32.

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


def step_loss(model, batch: dict):
    """The bare step's loss: BCE of the model's logits + its L2 terms."""
    import torch.nn.functional as F

    from contracts.batch import ctr as B

    logits = model(batch[B.DENSE], batch[B.SPARSE])
    return F.binary_cross_entropy_with_logits(logits, batch[B.LABEL]) + model.regularization()


def bare_steps(model, optimiser, batches, bf16: bool = False) -> None:
    """One pass of training steps: loss, backward, the optimiser's step; no trainer, logging or metrics. bf16: the
    forward under CPU autocast to bfloat16, as Lightning's `bf16-mixed` precision runs it."""
    import torch

    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = step_loss(model, batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()


def measure_model(model_name: str, board_name: str, data_dir: str | None, epochs: int) -> dict:
    import torch

    import datamodules  # noqa: F401
    import lightning_modules  # noqa: F401
    from benchmarks.boards import load_board
    from benchmarks.runner import RunSpec, resolve
    from contracts.batch import ctr as B

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
        bare_steps(model, optimiser, loader)
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


def measure_lightning(model_name: str, data_dir: str | None, epochs: int, threads: int, batch_size: int,
                      precision: str = "32-true", seed: int = 0) -> dict:
    """Our side of `--compare`: the model in a Lightning Trainer (no validation, logging or checkpoints during the
    timed epochs), seconds per epoch (wall and CPU, median after the first), then the validation AUC; and the
    bare step (forward, loss + L2, backward, Adam) over one epoch."""
    import statistics

    import lightning.pytorch as pl
    import numpy as np
    import torch
    from sklearn.metrics import roc_auc_score

    import lightning_modules  # noqa: F401
    from benchmarks.perf.ctr_reference import OURS_ONLY, REFERENCE
    from contracts.batch import ctr as B
    from contracts.registry import MODELS
    from datamodules.ctr.adult import Adult

    torch.set_num_threads(threads)
    dm = Adult(data_dir=data_dir, batch_size=batch_size)
    dm.prepare_data()
    dm.setup()

    def build():
        pl.seed_everything(seed, verbose=False)
        # the reference's protocol: Adam 1e-3 for every model, no decay on plateau (there is no validation)
        same = REFERENCE[model_name][2] if model_name in REFERENCE else OURS_ONLY[model_name]
        return MODELS.get(model_name).build(**{**dm.model_kwargs(), **same, "lr": 1e-3,
                                     "lr_decay_on_plateau": False})

    class EpochClock(pl.Callback):
        def __init__(self):
            self.wall, self.cpu = [], []

        def on_train_epoch_start(self, trainer, module):
            self._w, self._c = time.perf_counter(), time.process_time()

        def on_train_epoch_end(self, trainer, module):
            self.wall.append(time.perf_counter() - self._w), self.cpu.append(time.process_time() - self._c)

    model, clock = build(), EpochClock()
    bf16 = precision == "bf16-mixed"
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, precision=precision, logger=False,
                         enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[clock])
    trainer.fit(model, train_dataloaders=dm.train_dataloader())
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model(b[B.DENSE], b[B.SPARSE]) for b in dm.val_dataloader()])
    auc = float(roc_auc_score(dm.val_set.tensors[B.LABEL].numpy(), scores.numpy()))

    batches = list(dm.train_dataloader())
    rows = len(dm.train_set)

    def bare_epoch(compiled: bool) -> tuple[float, float]:
        """(wall, CPU) seconds of one epoch of bare steps; compiled: the model compiled in place as `paperboard run
        --compile` does (its backward follows through AOTAutograd), timed on the epoch after the one that compiles."""
        model = build()
        model.train()
        optimiser = model.configure_optimizers()
        optimiser = optimiser["optimizer"] if isinstance(optimiser, dict) else optimiser
        if compiled:
            model.compile()
        for _ in range(2 if compiled else 1):
            w, c = time.perf_counter(), time.process_time()
            bare_steps(model, optimiser, batches, bf16)
        return time.perf_counter() - w, time.process_time() - c

    plain_wall, plain_cpu = bare_epoch(compiled=False)
    compiled_wall, compiled_cpu = bare_epoch(compiled=True)
    steady = slice(1, None) if epochs > 1 else slice(None)
    return {"impl": "paperboard", "model": model_name, "precision": precision, "rows": rows, "epochs": epochs,
            "s_per_epoch": statistics.median(clock.wall[steady]), "cpu_s_per_epoch": statistics.median(clock.cpu[steady]),
            "fit_rows_per_s": rows / statistics.median(clock.wall[steady]), "plain_rows_per_s": rows / plain_wall,
            "plain_cpu_s": plain_cpu, "compiled_rows_per_s": rows / compiled_wall, "compiled_cpu_s": compiled_cpu,
            "train_flops_per_row": train_flops_per_row(build(), batches[0]), "val_auc": auc,
            "params": sum(p.numel() for p in model.parameters()), "threads": torch.get_num_threads()}


def train_flops_per_row(model, batch: dict) -> float:
    """FLOPs of one training step's forward and backward per row (torch's FlopCounterMode: matrix products,
    convolutions and attention; elementwise work is not counted), the numerator of achieved GFLOP/s."""
    from torch.utils.flop_counter import FlopCounterMode

    from contracts.batch import ctr as B

    model.train()
    with FlopCounterMode(display=False) as counter:
        step_loss(model, batch).backward()
    return counter.get_total_flops() / batch[B.LABEL].shape[0]


def compare(models: list[str], data_dir: str | None, epochs: int, threads: int, batch_size: int,
            precision: str = "32-true") -> list[str]:
    """Each model and its DeepCTR-Torch twin, one after the other, each in a fresh process; markdown lines."""
    from benchmarks.perf.ctr_reference import REFERENCE, VERSION, ensure_venv

    try:
        reference_python = str(ensure_venv())
    except RuntimeError as err:
        reference_python, why = None, str(err)
    from benchmarks.perf.matmul_peak import measure as matmul_peak

    bf16 = precision == "bf16-mixed"
    fp32_peak = matmul_peak(threads, (256, 512, 1024))
    ours_peak = matmul_peak(threads, (256, 512, 1024), "bfloat16") if bf16 else fp32_peak

    def yardstick(peak: dict) -> str:
        return (f"{peak['dtype']} matrix product at {threads} thread(s): "
                + ", ".join(f"{n}: {g} GFLOP/s" for n, g in peak["gflops_by_size"].items())
                + f", peak {peak['peak_gflops']} GFLOP/s")

    common = ["--epochs", str(epochs), "--threads", str(threads), "--batch-size", str(batch_size)]
    if data_dir:
        common += ["--data-dir", data_dir]
    yardsticks = (f"for ours the {yardstick(ours_peak)}; for DeepCTR-Torch the {yardstick(fp32_peak)}" if bf16
                  else f"the {yardstick(fp32_peak)}")
    ours_precision = ("ours in bf16-mixed (CPU autocast), DeepCTR-Torch in float32" if bf16 else
                      "both in float32")
    lines = [f"## Side by side with DeepCTR-Torch {VERSION} on `ctr-adult`'s split (batch {batch_size}, "
             f"{threads} thread(s), {epochs} epochs each, Adam 1e-3, {ours_precision})", "",
             "Own loop: our Lightning Trainer vs DeepCTR-Torch's `fit` (median epoch after the first). Bare step: "
             "forward, loss + L2, backward, Adam over one epoch of batches, no loader or trainer. Val AUC after the "
             "same epochs from the same seed (0). Our models run at the arguments `ctr_reference.REFERENCE` gives (xDeepFM's "
             "CIN over the categorical fields only, as DeepCTR-Torch's), so each pair does the same arithmetic in "
             "its interaction layers; the numeric fields still enter our DNNs as embeddings where DeepCTR-Torch "
             "passes raw values.", "",
             "Compiled: our bare step with `torch.compile` of the forward (default inductor backend), timed on the "
             "epoch after the one that compiles. GFLOP/s: the bare step's forward and backward FLOPs (torch's "
             "FlopCounterMode, one batch, times the rows) over its CPU seconds; the yardstick is this machine's "
             f"(`benchmarks.perf.matmul_peak`): {yardsticks}. A step whose GFLOP/s is near the peak has little left to "
             "gain at the same arithmetic.", "",
             "| model | ours rows/s (Trainer) | DeepCTR rows/s (fit) | speed-up | ours CPU s/epoch | DeepCTR CPU s/epoch "
             "| ours bare-step rows/s | DeepCTR bare-step rows/s | bare speed-up | ours compiled rows/s | "
             "ours / DeepCTR GFLOP/s (% of peak) | ours val AUC | DeepCTR val AUC | params ours / DeepCTR |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def gflops(result: dict, peak: dict) -> str:
        value = result["train_flops_per_row"] * result["rows"] / result["plain_cpu_s"] / 1e9
        return f"{value:.1f} ({100 * value / peak['peak_gflops']:.0f}%)"

    for name in models:
        ours = run_child(["--child-lightning", name, *common, "--precision", precision])
        print(json.dumps(ours), flush=True)
        if name not in REFERENCE:
            ref = {"error": "DeepCTR-Torch has no such model"}
        elif reference_python is None:
            ref = {"error": why}
        else:
            ref = run_child(["--model", name, *common], python=reference_python, module="benchmarks.perf.ctr_reference")
        print(json.dumps(ref), flush=True)
        if "error" in ours:
            lines.append(f"| {name} | error: {ours['error'][:100]} |" + " |" * 12)
            continue
        if "error" in ref:
            lines.append(f"| {name} | {ours['fit_rows_per_s']:,.0f} | {ref['error'][:60]} | | {ours['cpu_s_per_epoch']:.2f} "
                         f"| | {ours['plain_rows_per_s']:,.0f} | | | {ours['compiled_rows_per_s']:,.0f} | "
                         f"{gflops(ours, ours_peak)} | {ours['val_auc']:.4f} | | {ours['params']:,} |")
            continue
        lines.append(f"| {name} | {ours['fit_rows_per_s']:,.0f} | {ref['fit_rows_per_s']:,.0f} | "
                     f"**{ours['fit_rows_per_s'] / ref['fit_rows_per_s']:.2f}x** | {ours['cpu_s_per_epoch']:.2f} | "
                     f"{ref['cpu_s_per_epoch']:.2f} | {ours['plain_rows_per_s']:,.0f} | {ref['plain_rows_per_s']:,.0f} | "
                     f"{ours['plain_rows_per_s'] / ref['plain_rows_per_s']:.2f}x | "
                     f"{ours['compiled_rows_per_s']:,.0f} | "
                     f"{gflops(ours, ours_peak)} / {gflops(ref, fp32_peak)} | {ours['val_auc']:.4f} | "
                     f"{ref['val_auc']:.4f} | {ours['params']:,} / {ref['params']:,} |")
    return lines + [""]


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


def run_child(args: list[str], python: str = sys.executable, module: str = "benchmarks.perf.ctr_throughput") -> dict:
    out = subprocess.run([python, "-m", module, *args], capture_output=True, text=True)
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
    parser.add_argument("--compare", choices=["deepctr"], help="measure beside DeepCTR-Torch (instead of the "
                        "plain-loop model table)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"],
                        help="--compare's precision of our side (Lightning's Trainer precision)")
    parser.add_argument("--batch-size", type=int, default=1024, help="--compare's batch size")
    parser.add_argument("--child-model")
    parser.add_argument("--child-lightning")
    parser.add_argument("--child-pipeline", action="store_true")
    parser.add_argument("--workdir")
    args = parser.parse_args(argv)

    if args.child_model:
        print(json.dumps(measure_model(args.child_model, args.board, args.data_dir, args.epochs)))
        return 0
    if args.child_lightning:
        print(json.dumps(measure_lightning(args.child_lightning, args.data_dir, args.epochs, args.threads,
                                           args.batch_size, args.precision)))
        return 0
    if args.child_pipeline:
        print(json.dumps(measure_pipeline(args.pipeline_rows, args.chunk_rows, args.workdir)))
        return 0

    from benchmarks.boards import load_board

    load_at_start = os.getloadavg()[0]
    lines = []
    if args.compare:
        from benchmarks.perf.ctr_reference import OURS_ONLY, REFERENCE

        models = args.models.split(",") if args.models else [*REFERENCE, *OURS_ONLY]
        lines += compare(models, args.data_dir, args.epochs, args.threads, args.batch_size, args.precision)
    elif not args.skip_models:
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
