"""The training loss curves of a tsedit board's shared diffusion backbones, per backbone family, mean and spread over
seeds: <out>.json and <out>.png.

    python -m benchmarks.tsedit_backbone_curves tsedit-etth1 [--records benchmarks/results/runs] [--out PREFIX]

Each backbone is trained once per seed and cached with its loss curve (mean epsilon loss per `loss_every` steps;
lightning_modules/tsedit/base.py). This reads those caches (PAPERBOARD_CACHE, else ~/.cache/paperboard/cache) for the
data hash(es) of the board's finished records, so it runs where the board ran; the board's `backbone_loss_drop`
column carries the same convergence evidence on every machine.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from benchmarks.curves import summarise, write_curves
from datamodules.base import cache_root


def backbone_curves(data_hashes: set[str], root: Path) -> dict[str, dict[int, dict[int, float]]]:
    """{backbone family: {seed: {optimizer step: mean loss}}} of the cached backbones trained on `data_hashes`."""
    per_backbone: dict[str, dict[int, dict[int, float]]] = {}
    for path in sorted(root.glob("*/tsedit-backbones/*.pt")):
        saved = torch.load(path, map_location="cpu", weights_only=False)
        hparams = saved.get("hparams") or {}
        if hparams.get("data_hash") not in data_hashes or not saved.get("loss_curve"):
            continue
        every = int(saved.get("loss_every", 1))
        per_backbone.setdefault(hparams.get("backbone", "?"), {})[int(saved["seed"])] = {
            (i + 1) * every: float(v) for i, v in enumerate(saved["loss_curve"])}
    return per_backbone


def main(argv: list[str] | None = None) -> int:
    from benchmarks.store import load_records_dir

    parser = argparse.ArgumentParser(prog="python -m benchmarks.tsedit_backbone_curves", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("board")
    parser.add_argument("--records", default="benchmarks/results/runs")
    parser.add_argument("--out", help="default benchmarks/results/<board>-backbone-loss")
    args = parser.parse_args(argv)
    records = [r for r in load_records_dir(Path(args.records), args.board) if r.get("status") == "ok"]
    hashes = {r["data_hash"] for r in records if r.get("data_hash")}
    per_backbone = backbone_curves(hashes, cache_root())
    if not per_backbone:
        raise SystemExit(f"no cached backbone of {args.board} under {cache_root()} (data hashes {sorted(hashes)}): "
                         f"run the board here first (paperboard run {args.board})")
    out = Path(args.out or f"benchmarks/results/{args.board}-backbone-loss")
    curves = summarise(per_backbone)
    write_curves(curves, out, f"{args.board}: backbone training loss", "optimizer steps", "mean epsilon loss",
                 {"board": args.board, "data_hashes": sorted(hashes)})
    for name, c in curves.items():
        print(f"{name}: {len(c['seeds'])} seeds, {c['steps'][-1]} steps, loss {c['mean'][0]:.4f} -> {c['mean'][-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
