"""Learning curves from run records: the `val_curve_*` test metrics (contracts.run.CURVE_PREFIX) of every row of a
board, mean and spread over seeds, written as <out>.json and <out>.png. No checkpoint is needed.

    python -m benchmarks.curves dtr-icu-sepsis-rl --curve survival --records benchmarks/results/runs
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from contracts.run import CURVE_PREFIX


def curve_points(record: dict, curve: str = "") -> dict[int, float]:
    """{step: value} of one run's curve `curve` ("" = the unnamed one, `val_curve_<step>`)."""
    prefix = CURVE_PREFIX + (f"{curve}_" if curve else "")
    points = {}
    for key, value in (record.get("metrics", {}).get("test") or {}).items():
        rest = key[len(prefix):] if key.startswith(prefix) else ""
        if rest.isdigit() and value is not None:
            points[int(rest)] = float(value)
    return points


def learning_curves(board_name: str, records: list[dict], out: Path, curve: str = "", xlabel: str = "training steps",
                    ylabel: str | None = None, log=print) -> dict:
    """Per row: the steps every seed reached, the mean, std and per-seed values; the newest finished, untuned run
    per (row, seed) counts."""
    from benchmarks.records import latest_per_seed

    runs = latest_per_seed([r for r in records if r.get("board") == board_name and r.get("status") == "ok"
                            and not r.get("tuned")])
    per_model: dict[str, dict[int, dict[int, float]]] = {}
    for r in runs:
        if points := curve_points(r, curve):
            per_model.setdefault(r["model"], {})[r["seed"]] = points
    name = CURVE_PREFIX + (f"{curve}_" if curve else "") + "<step>"
    if not per_model:
        raise SystemExit(f"no learning curves ({name} test metrics) among the records of {board_name}")
    curves = summarise(per_model)
    write_curves(curves, out, f"{board_name}: learning curves", xlabel, ylabel or f"validation {curve or 'value'}",
                 {"board": board_name, "curve": name, "x": xlabel})
    log(f"learning curves of {len(curves)} rows -> {out.with_suffix('.json')}, {out.with_suffix('.png')}")
    return curves


def summarise(per_model: dict[str, dict[int, dict[int, float]]]) -> dict[str, dict]:
    """{row: {seed: {step: value}}} -> per row the steps every seed reached, mean, std and per-seed values."""
    curves = {}
    for model, per_seed in per_model.items():
        steps = sorted(set.intersection(*(set(p) for p in per_seed.values())))
        values = np.array([[per_seed[s][t] for t in steps] for s in sorted(per_seed)])
        curves[model] = {"steps": steps, "seeds": sorted(per_seed), "mean": values.mean(0).tolist(),
                         "std": (values.std(0, ddof=1) if len(values) > 1 else np.zeros(len(steps))).tolist(),
                         "per_seed": values.tolist()}
    return curves


def write_curves(curves: dict[str, dict], out: Path, title: str, xlabel: str, ylabel: str, meta: dict) -> None:
    """<out>.png (mean +- std per row) and <out>.json (`meta` plus the curves)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab20").colors  # boards have more than tab10's 10 rows
    for i, (model, c) in enumerate(curves.items()):
        x, m, sd = np.array(c["steps"]), np.array(c["mean"]), np.array(c["std"])
        colour = colours[(2 * i) % 20 + (2 * i) // 20]  # the saturated shades first, then the light ones
        ax.plot(x, m, label=f"{model} (n={len(c['seeds'])})", color=colour)
        ax.fill_between(x, m - sd, m + sd, alpha=0.15, color=colour)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}, mean +- std over seeds", fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)
    out.with_suffix(".json").write_text(json.dumps({**meta, "curves": curves}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.store import load_records_dir

    parser = argparse.ArgumentParser(prog="python -m benchmarks.curves", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("board")
    parser.add_argument("--curve", default="", help="the curve's name (val_curve_<name>_<step>); empty: unnamed")
    parser.add_argument("--records", default="benchmarks/results/runs")
    parser.add_argument("--xlabel", default="training steps")
    parser.add_argument("--out", help="default benchmarks/results/<board>-curve[-<name>]")
    args = parser.parse_args(argv)
    out = Path(args.out or f"benchmarks/results/{args.board}-curve" + (f"-{args.curve}" if args.curve else ""))
    learning_curves(args.board, load_records_dir(Path(args.records), args.board), out, args.curve, args.xlabel)
    return 0


if __name__ == "__main__":
    sys.exit(main())
