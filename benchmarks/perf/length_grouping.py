"""What `length_grouped` buys on short-sequence data: one training epoch and one full-ranking validation pass per
model on a board's real data, with plain batches (every batch `max_len` wide) and with length-grouped, trimmed
batches, side by side in one process.

Training runs each model's own `training_step` (its board settings, AdamW) over every batch of the epoch;
validation scores every user against all items with the history filtered, as the board does. CPU seconds are the
process's (one thread unless `--threads`), beside wall seconds and the 1-minute load average.

    python -m benchmarks.perf.length_grouping                       # seqrec-beauty-attrs, writes the results table
    python -m benchmarks.perf.length_grouping --models sasrec,hstu --board seqrec-beauty
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def epoch_seconds(model, loader, train: bool) -> tuple[float, float, int]:
    """(CPU s, wall s, batches) of one pass: training steps, or full-ranking scoring of every user."""
    import torch

    optimiser = model.configure_optimizers() if train else None
    if isinstance(optimiser, (list, tuple)):
        optimiser = optimiser[0]
    model.train(train)
    cpu, wall, batches = time.process_time(), time.perf_counter(), 0
    for batch in loader:
        if train:
            loss = model.training_step(batch, batches)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        else:
            with torch.no_grad():
                scores = model.score_all(batch)
                scores.masked_fill_(model.candidate_exclusions(batch, scores.shape[1]), float("-inf"))
        batches += 1
    return time.process_time() - cpu, time.perf_counter() - wall, batches


def measure(board_name: str, model_name: str, data_dir: str | None) -> list[dict]:
    import torch

    import datamodules  # noqa: F401
    import lightning_modules  # noqa: F401
    from benchmarks.boards import load_board
    from contracts.registry import DATASETS, MODELS

    board = load_board(board_name)
    rows = []
    for grouped in (False, True):
        dm = DATASETS.get(board.dataset).build(data_dir=data_dir, **{**board.dataset_args, "length_grouped": grouped})
        dm.setup()
        torch.manual_seed(0)
        args = {k: v for k, v in board.models.get(model_name, {}).items() if k != "eval_ks"}
        model = MODELS.get(model_name.split("@")[0]).cls(**dm.model_kwargs(), **args)
        if getattr(model, "side_information", None) is not None and dm.item_features() is not None:
            model.side.attach(dm.item_features())
        model.log = lambda *a, **k: None  # no Trainer attached
        load = os.getloadavg()[0]
        train_cpu, train_wall, train_batches = epoch_seconds(model, dm.train_dataloader(), train=True)
        val_cpu, val_wall, _ = epoch_seconds(model, dm.val_dataloader(), train=False)
        rows.append({"model": model_name, "grouped": grouped, "train_cpu": train_cpu, "train_wall": train_wall,
                     "train_batches": train_batches, "val_cpu": val_cpu, "val_wall": val_wall,
                     "load": f"{load:.2f} -> {os.getloadavg()[0]:.2f}"})
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="seqrec-beauty-attrs")
    parser.add_argument("--models", default="sasrec,sasrec@attrs,fdsa,hstu,fuxi_alpha,heterrec")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="markdown table path (default: results/perf-length-grouping.md)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = [row for name in args.models.split(",") for row in measure(args.board, name, args.data_dir)]
    lines = [
        "# Length-grouped batches: one epoch, plain vs grouped (one run)", "",
        f"Command: `python -m benchmarks.perf.length_grouping --board {args.board} --models {args.models}`. Machine: "
        f"{platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, {args.threads} thread(s). "
        "Plain = every batch `max_len` wide, rows drawn uniformly; grouped = `length_grouped: true` (rows of like "
        "length per batch, leading all-padding columns dropped). Training = one epoch of the model's own "
        "training_step with AdamW; validation = full ranking of every user. CPU seconds are the process's.", "",
        "| model | train CPU s plain | grouped | speed-up | train wall s plain | grouped | val CPU s plain | grouped "
        "| speed-up | load plain | load grouped |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for plain, grouped in zip(rows[::2], rows[1::2]):
        lines.append(
            f"| {plain['model']} | {plain['train_cpu']:.1f} | {grouped['train_cpu']:.1f} | "
            f"**{plain['train_cpu'] / grouped['train_cpu']:.1f}x** | {plain['train_wall']:.1f} | "
            f"{grouped['train_wall']:.1f} | {plain['val_cpu']:.1f} | {grouped['val_cpu']:.1f} | "
            f"{plain['val_cpu'] / grouped['val_cpu']:.1f}x | {plain['load']} | {grouped['load']} |")
    out = Path(args.out) if args.out else RESULTS / "perf-length-grouping.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
