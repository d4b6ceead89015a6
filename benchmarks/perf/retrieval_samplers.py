"""What each negative sampler costs: CPU milliseconds per training batch of a retrieval board's rows, the sampler's
own share, and the one-off set-up (ESANS's codebooks) and per-epoch work (the hard miner's index).

    python -m benchmarks.perf.retrieval_samplers --data-dir ../shared/data            # retrieval-ml100k, every row
    python -m benchmarks.perf.retrieval_samplers --board retrieval-ml100k --models uns,esans --steps 20

Each row is built with the board's arguments and fitted by a Lightning Trainer for `--warmup + --steps` batches (no
validation); batches after the warm-up are timed. `sampler ms` is the CPU time inside `sample_negatives` (ESANS's
cluster draws, the hard miner's ranking), `step ms` the whole training batch (towers, sampling, interpolation, loss,
backward, Adam), both per batch, single thread; `setup s` is the CPU time from fit start to the first batch
(feature attachment and ESANS's k-means codebooks); `epoch-start ms` the per-epoch hook (the hard miner's item
table). Writes benchmarks/results/perf-retrieval-samplers.md and .json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def measure(board, name: str, data_dir: str | None, warmup: int, steps: int) -> dict:
    import lightning.pytorch as pl
    import torch

    import datamodules  # noqa: F401
    import lightning_modules  # noqa: F401
    from contracts.registry import DATASETS, MODELS

    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    dm = DATASETS.get(board.dataset).cls(data_dir=data_dir, **board.dataset_args)
    dm.prepare_data()
    dm.setup("fit")
    base, _, variant = name.partition("@")
    model = MODELS.get(base).build(**dm.model_kwargs(), **board.models.get(name, {}))
    sampler_cpu, step_cpu, epoch_cpu, marks = [], [], [], {}
    sample = model.sample_negatives

    def timed_sample(*args, **kwargs):
        start = time.process_time()
        out = sample(*args, **kwargs)
        sampler_cpu.append(time.process_time() - start)
        return out

    model.sample_negatives = timed_sample
    epoch_start = model.on_train_epoch_start

    def timed_epoch_start():
        start = time.process_time()
        epoch_start()
        epoch_cpu.append(time.process_time() - start)

    model.on_train_epoch_start = timed_epoch_start

    class Clock(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            marks.setdefault("first", time.process_time())
            marks["batch"] = time.process_time()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            step_cpu.append(time.process_time() - marks["batch"])

    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=warmup + steps, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, callbacks=[Clock()])
    marks["fit"] = time.process_time()
    trainer.fit(model, datamodule=dm)
    ms = lambda values: round(1000 * statistics.median(values[warmup:]), 2)  # noqa: E731
    return {"model": name, "sampler": model.hparams.sampler, "batch_size": board.dataset_args.get("batch_size"),
            "step_ms": ms(step_cpu), "sampler_ms": ms(sampler_cpu),
            "sampler_share": round(statistics.median(sampler_cpu[warmup:]) / statistics.median(step_cpu[warmup:]), 3),
            "setup_s": round(marks["first"] - marks["fit"], 2),
            "epoch_start_ms": round(1000 * max(epoch_cpu), 1) if epoch_cpu else 0.0, "steps": steps}


def render(result: dict) -> str:
    lines = [f"# Negative sampler cost per batch ({result['board']})", "",
             f"Machine: {result['machine']}, one thread; load average {result['load'][0]:.2f} at the start, "
             f"{result['load'][1]:.2f} at the end (CPU seconds, not wall, so other jobs stretch them little).", "",
             f"`python -m benchmarks.perf.retrieval_samplers {result['argv']}`", "",
             f"Median over {result['steps']} batches after {result['warmup']} warm-up batches, batch "
             f"{result['rows'][0]['batch_size']}.", "",
             "`step over uns` is the whole batch's CPU time minus the uniform row's: every row shares the towers, so it "
             "is what the sampler costs in all (MixGCF's hop mixing and ESANS's interpolation run after "
             "`sample_negatives`, so they appear there and not in `sampler CPU ms`).", "",
             "| row | sampler | step CPU ms | step over uns ms | sampler CPU ms | sampler share | setup CPU s | "
             "epoch-start CPU ms |", "|---|---|---|---|---|---|---|---|"]
    base = next((r["step_ms"] for r in result["rows"] if r["model"] == "uns"), None)
    for r in result["rows"]:
        over = f"{r['step_ms'] - base:+.1f}" if base is not None else "-"
        lines.append(f"| {r['model']} | {r['sampler']} | {r['step_ms']} | {over} | {r['sampler_ms']} | "
                     f"{r['sampler_share']:.1%} | {r['setup_s']} | {r['epoch_start_ms']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import sys

    import torch

    from benchmarks.boards import load_board

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--board", default="retrieval-ml100k")
    parser.add_argument("--models", help="comma-separated rows (default: every row of the board)")
    parser.add_argument("--data-dir", default=os.environ.get("PAPERBOARD_DATA"))
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--out", default=str(RESULTS / "perf-retrieval-samplers.md"), help="'' writes nothing")
    parser.add_argument("--render", action="store_true", help="only re-render --out from its .json")
    args = parser.parse_args(argv)
    if args.render:
        Path(args.out).write_text(render(json.loads(Path(args.out).with_suffix(".json").read_text())))
        return 0
    board = load_board(args.board)
    names = args.models.split(",") if args.models else list(board.models)
    load_start = os.getloadavg()[0]
    rows = []
    for name in names:
        rows.append(measure(board, name, args.data_dir, args.warmup, args.steps))
        print(json.dumps(rows[-1]), flush=True)
    result = {"board": board.name, "rows": rows, "warmup": args.warmup, "steps": args.steps,
              "load": [load_start, os.getloadavg()[0]], "argv": " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": f"{platform.machine()} x{os.cpu_count()} cpus, torch {torch.__version__}"}
    if args.out:
        Path(args.out).write_text(render(result))
        Path(args.out).with_suffix(".json").write_text(json.dumps(result, indent=1))
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
