"""Can a user trust `--trainer.accelerator gpu --trainer.precision bf16-mixed`? Train the same models at the same
shapes in full precision and in bf16 mixed precision, several seeds each, and check that the test metrics agree
within seed noise; report training throughput beside.

    python -m benchmarks.perf.precision_check                      # CUDA when present, else the CPU path
    python -m benchmarks.perf.precision_check --accelerator gpu --dataset ml-1m --data-dir ../shared/data \
        --models sasrec,hstu,fuxi_alpha,llama_rec,gpt_rec --epochs 20 --seeds 0,1,2

Each (model, precision, seed) is one Lightning `Trainer(accelerator, precision, max_epochs)` fit on the dataset's
training split, then `trainer.test` (the same Trainer flags `paperboard fit --trainer.precision ...` sets), the
model built with the board's arguments for it. Agreement: |mean(bf16) - mean(fp32)| of the primary metric is at
most `--sigmas` standard errors of the difference (seed noise of both sides) plus `--floor` (a difference too
small to matter when both sides agree to the last digit). Without CUDA the script says so and runs bf16 autocast
on the CPU: that checks the numerics of the bf16 path (the fused losses, attention, the metrics), not GPU speed.
Writes `benchmarks/results/perf-precision-<accelerator>.md` and `.json`; exits 1 when a model disagrees.

The check's stdout is its record: a note line, then one JSON line per finished run. `--runs LOG` reuses the runs of
an earlier, perhaps interrupted, check's stdout instead of training them again (so a check cut short on a borrowed
GPU resumes; the new stdout repeats the reused runs, so it is again a whole record), and `--render-only` trains nothing and renders the models whose runs LOG holds in full, naming the
others as not finished.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
PRECISIONS = ("32-true", "bf16-mixed")


def build(board: str, model_name: str, dm):
    import lightning_modules  # noqa: F401
    from benchmarks.boards import load_board
    from contracts.registry import MODELS

    entry = MODELS.get(model_name)
    args = dict(load_board(board).models.get(model_name, {}))
    known = inspect.signature(entry.cls.__init__).parameters
    return entry.build(**dm.model_kwargs(), **{k: v for k, v in args.items() if k in known})


def one_run(board: str, dataset: str, dataset_args: dict, data_dir: str | None, model_name: str, precision: str,
            accelerator: str, seed: int, epochs: int) -> dict:
    import lightning.pytorch as pl
    import torch

    import datamodules  # noqa: F401
    from contracts.registry import DATASETS

    pl.seed_everything(seed, verbose=False)
    dm = DATASETS.get(dataset).cls(**dataset_args, **({"data_dir": data_dir} if data_dir else {}))
    dm.prepare_data()
    dm.setup()
    model = build(board, model_name, dm)
    trainer = pl.Trainer(accelerator=accelerator, devices=1, precision=precision, max_epochs=epochs, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0)
    start, cpu = time.perf_counter(), time.process_time()
    trainer.fit(model, datamodule=dm)
    if accelerator == "gpu":
        torch.cuda.synchronize()
    train_s, train_cpu = time.perf_counter() - start, time.process_time() - cpu
    metrics = trainer.test(model, datamodule=dm, verbose=False)[0]
    rows = len(dm.train_dataloader().dataset) * epochs
    return {"model": model_name, "precision": precision, "seed": seed, "train_s": round(train_s, 2),
            "train_cpu_s": round(train_cpu, 2), "rows_per_s": round(rows / train_s, 1),
            "metrics": {k.removeprefix("test/"): float(v) for k, v in metrics.items()}}


def agreement(fp32: list[float], bf16: list[float], sigmas: float, floor: float) -> dict:
    diff = statistics.mean(bf16) - statistics.mean(fp32)
    var = sum(statistics.variance(v) / len(v) for v in (fp32, bf16) if len(v) > 1)
    bound = sigmas * math.sqrt(var) + floor
    return {"fp32": round(statistics.mean(fp32), 4), "bf16": round(statistics.mean(bf16), 4),
            "diff": round(diff, 4), "bound": round(bound, 4), "agree": abs(diff) <= bound}


NOTE_PREFIX, MACHINE_PREFIX = "precision_check: ", "precision_check: machine "


def read_log(path: str) -> tuple[list[dict], str | None, str | None]:
    """The runs, note and machine that a check printed to stdout (other lines, e.g. Lightning's, are skipped)."""
    runs, note, machine = [], None, None
    for line in Path(path).read_text().splitlines():
        if line.startswith('{"model"'):
            runs.append(json.loads(line))
        elif line.startswith(MACHINE_PREFIX):
            machine = line[len(MACHINE_PREFIX):]
        elif line.startswith(NOTE_PREFIX):
            note = line[len(NOTE_PREFIX):]
    return runs, note, machine


def render(result: dict) -> str:
    unfinished = ", ".join(f"{name} ({count} of {result['runs_per_model']} runs)"
                           for name, count in result.get("unfinished", {}).items())
    unfinished = f" Not finished, so not compared: {unfinished}." if unfinished else ""
    context = f" {result['context']}" if result.get("context") else ""
    lines = [f"# bf16 mixed precision against full precision ({result['accelerator']})", "",
             f"Machine: {result['machine']}. {result['note']}{context}{unfinished}", "",
             f"Dataset `{result['dataset']}` {result['dataset_args']}, models with board `{result['board']}`'s "
             f"arguments, {result['epochs']} epochs, seeds {result['seeds']}, test {result['metric']} "
             f"(agreement: |diff| <= {result['sigmas']} standard errors + {result['floor']}).", "",
             f"`python -m benchmarks.perf.precision_check {result['argv']}`", "",
             f"| model | fp32 {result['metric']} | bf16 {result['metric']} | diff | bound | agree | "
             "fp32 rows/s | bf16 rows/s | fp32 train CPU s | bf16 train CPU s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in result["models"].items():
        lines.append(f"| {name} | {row['fp32']} | {row['bf16']} | {row['diff']:+} | {row['bound']} | "
                     f"{'yes' if row['agree'] else '**no**'} | {row['rows_per_s']['32-true']:,.0f} | "
                     f"{row['rows_per_s']['bf16-mixed']:,.0f} | {row['cpu_s']['32-true']} | "
                     f"{row['cpu_s']['bf16-mixed']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accelerator", default="auto", choices=("auto", "gpu", "cpu"))
    parser.add_argument("--board", default="seqrec-ml100k", help="where each model's arguments come from")
    parser.add_argument("--dataset", default="synthetic-seqrec")
    parser.add_argument("--dataset-args", default='{"num_users": 400, "num_items": 300, "max_len": 20}',
                        help="JSON keyword arguments of the datamodule")
    parser.add_argument("--data-dir")
    parser.add_argument("--models", default="sasrec,hstu,fuxi_alpha,llama_rec,gpt_rec")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--sigmas", type=float, default=3.0)
    parser.add_argument("--floor", type=float, default=0.005)
    parser.add_argument("--out", default=None, help="markdown path ('' writes nothing); default under results/")
    parser.add_argument("--runs", help="stdout of an earlier check on the same arguments: its finished runs are "
                                       "reused, not trained again")
    parser.add_argument("--render-only", action="store_true",
                        help="train nothing: render the models whose runs --runs holds in full")
    parser.add_argument("--context", default="", help="what else ran beside the check (other jobs on the same "
                                                        "device make its speed columns a lower bound)")
    args = parser.parse_args(argv)
    if args.render_only and not args.runs:
        parser.error("--render-only renders an earlier check's runs: give its stdout with --runs LOG")

    import torch

    done, logged_note, logged_machine = read_log(args.runs) if args.runs else ([], None, None)
    machine = (f"{platform.machine()} x{os.cpu_count()} cpus, torch {torch.__version__}, "
               f"load average {os.getloadavg()[0]:.2f}")
    if args.render_only:
        note, machine = logged_note or "", logged_machine or "not recorded in the log"
        accelerator = "gpu" if note.startswith("CUDA device") else "cpu"
    else:
        cuda = torch.cuda.is_available()
        accelerator = args.accelerator if args.accelerator != "auto" else ("gpu" if cuda else "cpu")
        if accelerator == "gpu" and not cuda:
            print("precision_check: --accelerator gpu asked for, but CUDA is not available on this machine",
                  file=sys.stderr)
            return 2
        if cuda:
            note = f"CUDA device: {torch.cuda.get_device_name(0)}."
        else:
            note = ("CUDA is not available here: this is the CPU bf16 autocast path, which checks the numerics of "
                    "bf16 training, not GPU speed. Run it on a CUDA machine for the GPU check.")
        if logged_note is not None and logged_note != note:
            parser.error(f"--runs {args.runs} was recorded on another device ({logged_note!r}); start a new check")
        print(f"{NOTE_PREFIX}{note}")
        print(f"{MACHINE_PREFIX}{machine}", flush=True)
    dataset_args = json.loads(args.dataset_args)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for name in args.models.split(","):
        for precision in PRECISIONS:
            for seed in seeds:
                run = next((r for r in done if (r["model"], r["precision"], r["seed"]) == (name, precision, seed)),
                           None)
                if run is None and not args.render_only:
                    run = one_run(args.board, args.dataset, dataset_args, args.data_dir, name, precision,
                                  accelerator, seed, args.epochs)
                if run is not None and not args.render_only:  # reused runs too: this stdout is a whole record
                    print(json.dumps(run), flush=True)
                if run is not None:
                    runs.append(run)
    models, unfinished, per_model = {}, {}, len(PRECISIONS) * len(seeds)
    for name in args.models.split(","):
        count = sum(r["model"] == name for r in runs)
        if count < per_model:
            unfinished[name] = count
            continue
        mine = {p: [r for r in runs if r["model"] == name and r["precision"] == p] for p in PRECISIONS}
        row = agreement(*[[r["metrics"][args.metric] for r in mine[p]] for p in PRECISIONS], args.sigmas, args.floor)
        row["rows_per_s"] = {p: statistics.median(r["rows_per_s"] for r in mine[p]) for p in PRECISIONS}
        row["cpu_s"] = {p: round(statistics.median(r["train_cpu_s"] for r in mine[p]), 1) for p in PRECISIONS}
        models[name] = row
    result = {"accelerator": accelerator, "note": note, "board": args.board, "dataset": args.dataset,
              "dataset_args": dataset_args, "epochs": args.epochs, "seeds": seeds, "metric": args.metric,
              "sigmas": args.sigmas, "floor": args.floor, "models": models, "runs": runs,
              "argv": " ".join(argv if argv is not None else sys.argv[1:]), "machine": machine,
              "unfinished": unfinished, "runs_per_model": per_model,
              "context": args.context}
    out = args.out if args.out is not None else str(RESULTS / f"perf-precision-{accelerator}.md")
    if out:
        Path(out).write_text(render(result))
        Path(out).with_suffix(".json").write_text(json.dumps(result, indent=1))
    print(render(result))
    return 0 if models and all(row["agree"] for row in models.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
