"""Plot SAFER's conformal-selection curve (realised FDR and power over alpha, one line per threshold c) from
exported run records (JSON files written by `paperboard export`), mean +- std over seeds.

    python -m lightning_modules.dtr.conformal_curve benchmarks/results/runs/dtr-icu-sepsis \
        benchmarks/results/dtr-icu-sepsis-conformal.png --model safer

The curves come from the test metrics `curve_fdr_a{alpha}_c{c}` / `curve_power_a{alpha}_c{c}` that SAFER logs
(paper Figs 3-4: FDR stays <= alpha; power grows with alpha and c)."""
from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

PATTERN = re.compile(r"curve_(fdr|power)_a([0-9.]+)_c([0-9.]+)")


def load_curves(records_dir: Path, model: str, board: str | None = None) -> dict:
    """{(kind, c): {alpha: [values over seeds]}} from the newest ok record per seed."""
    latest: dict[int, dict] = {}
    for path in sorted(Path(records_dir).rglob("*.json")):
        record = json.loads(path.read_text())
        if record.get("model") != model or record.get("status") != "ok" or (board and record.get("board") != board):
            continue
        if record["seed"] not in latest or record["created_at"] > latest[record["seed"]]["created_at"]:
            latest[record["seed"]] = record
    curves: dict = defaultdict(lambda: defaultdict(list))
    for record in latest.values():
        for name, value in record["metrics"]["test"].items():
            match = PATTERN.fullmatch(name)
            if match:
                curves[(match[1], float(match[3]))][float(match[2])].append(value)
    return curves, len(latest)


def plot(curves: dict, seeds: int, out: Path, model: str, cs=(0.1, 0.2, 0.3)) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, kind in zip(axes, ("fdr", "power")):
        for c in cs:
            series = curves.get((kind, c))
            if not series:
                continue
            alphas = sorted(series)
            mean = np.array([np.mean(series[a]) for a in alphas])
            std = np.array([np.std(series[a]) for a in alphas])
            ax.plot(alphas, mean, marker="o", label=f"c = {c:g}")
            ax.fill_between(alphas, mean - std, mean + std, alpha=0.2)
        if kind == "fdr":
            ax.plot([0, 1], [0, 1], "k--", lw=1, label="FDR = alpha")
        ax.set_xlabel("alpha (BH level)")
        ax.set_ylabel(f"realised {kind.upper() if kind == 'fdr' else kind}")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{model}: conformal selection (BH, conformal p-values), test patients, mean ± std over {seeds} seeds")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="safer")
    parser.add_argument("--board", default="dtr-icu-sepsis")
    args = parser.parse_args(argv)
    curves, seeds = load_curves(args.records_dir, args.model, args.board)
    if not curves:
        raise SystemExit(f"no finished {args.model} records with conformal curves under {args.records_dir}")
    plot(curves, seeds, args.out, args.model)
    for (kind, c), series in sorted(curves.items()):
        print(kind, f"c={c:g}", " ".join(f"a{a:g}:{np.mean(v):.3f}" for a, v in sorted(series.items())))


if __name__ == "__main__":
    main()
