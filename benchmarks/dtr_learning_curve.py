"""A dtr model's learning curve on a board's data, without early stopping: per epoch its training losses (as the
model logs them, e.g. CQL's TD and conservative terms) and its validation metrics, so that one can see whether the
board's early-stopped runs had converged (RL vs imitation is a real comparison only between converged models).

  python -m benchmarks.dtr_learning_curve dtr-icu-sepsis --model cql --epochs 20 --seed 1 \
      --out benchmarks/results/dtr-icu-sepsis-cql-curve

Uses the board's dataset and model arguments; writes <out>.json (per-epoch values, config) and <out>.png.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning.pytorch as pl


class EpochMetrics(pl.Callback):
    def __init__(self):
        self.rows: list[dict] = []

    def on_validation_epoch_end(self, trainer, module):
        if trainer.sanity_checking:
            return
        row = {"epoch": trainer.current_epoch + 1, "step": trainer.global_step}
        row.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})
        self.rows.append(row)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("board")
    parser.add_argument("--model", required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from benchmarks.runner import RunSpec, load_board, resolve

    board = load_board(args.board)
    data_cls, data_kwargs, build, model_kwargs = resolve(board, RunSpec(board=args.board, model=args.model, seed=args.seed))
    pl.seed_everything(args.seed, workers=True, verbose=False)
    dm = data_cls(data_dir=args.data_dir, **data_kwargs)
    dm.prepare_data()
    dm.setup("fit")
    model = build(**{**dm.model_kwargs(), **model_kwargs})
    curve = EpochMetrics()
    trainer = pl.Trainer(max_epochs=args.epochs, callbacks=[curve], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         accelerator="cpu", devices=1)
    start = time.process_time()
    trainer.fit(model, datamodule=dm)
    summary = {"board": args.board, "model": args.model, "seed": args.seed, "model_args": model_kwargs,
               "data_hash": dm.data_hash, "cpu_seconds": round(time.process_time() - start, 1), "epochs": curve.rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("train/td", "train/conservative", "train/loss", "val/mrr@3", "val/survival") if k in curve.rows[0]]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot([r["epoch"] for r in curve.rows], [r.get(key) for r in curve.rows], marker="o")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{args.board}: {args.model} learning curve (seed {args.seed}, no early stopping)", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=110)
    for r in curve.rows:
        print(r["epoch"], {k: round(v, 4) for k, v in r.items() if k in keys})


if __name__ == "__main__":
    main()
