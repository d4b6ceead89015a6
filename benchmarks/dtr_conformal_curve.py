"""Post-board step for the dtr boards: SAFER's conformal-selection curve (realised FDR and power over the BH
level alpha, one line per threshold c; paper Figs 3-4) from the board's recorded runs.

  python -m benchmarks.dtr_conformal_curve dtr-icu-sepsis --records benchmarks/results/runs \
      --out benchmarks/results/dtr-icu-sepsis-conformal [--models safer,safer_n,safer_f,safer_u] [--cs 0.1,0.2,0.3]
  python -m benchmarks.dtr_conformal_curve dtr-icu-sepsis --storage sqlite:///results.db --out ...

Every SAFER run records, as test metrics, the mean realised FDR and power of the conformal BH selection over its
repetitions for each alpha of the grid and each c: `curve_fdr_a{alpha}_c{c}`, `curve_power_a{alpha}_c{c}`, and
the share of test points that are nulls (kappa-hat >= c), `curve_null_c{c}` (lightning_modules/dtr/safer.py).
Per model this step keeps the finished records of one configuration (the newest config hash that has curve
metrics, or --config), newest per seed, and plots mean +- std over seeds. Writes <out>.png and <out>.json (the
numbers, run ids, config and data hashes behind the plot). It never makes numbers up: no records, no plot.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

PATTERN = re.compile(r"curve_(fdr|power)_a([0-9.]+)_c([0-9.]+)")


def load_records(board: str, records_dir: Path | None = None, storage: str | None = None) -> list[dict]:
    if storage:
        from benchmarks.store import ResultStore

        return ResultStore(storage).records(board=board, status="ok")
    from benchmarks.store import load_records_dir

    return [r for r in load_records_dir(Path(records_dir), board) if r.get("status") == "ok"]


def select_runs(records: list[dict], model: str, config: str | None = None) -> list[dict]:
    """The newest record per seed of one configuration of `model` that has curve metrics."""
    from benchmarks.records import latest_per_seed

    runs = [r for r in records if r["model"] == model and not r.get("tuned")
            and any(PATTERN.fullmatch(k) for k in r["metrics"].get("test", {}))]
    if config:
        runs = [r for r in runs if r["config_hash"].startswith(config)]
    if not runs:
        return []
    newest = max(runs, key=lambda r: r["created_at"])
    runs = [r for r in runs if (r["config_hash"], r.get("data_hash")) == (newest["config_hash"], newest.get("data_hash"))]
    return sorted(latest_per_seed(runs), key=lambda r: r["seed"])


def curves(runs: list[dict]) -> dict:
    """{(kind, c): {alpha: [value per run]}}, kind in fdr / power; plus ("null", c): {0: [...]}."""
    out: dict = defaultdict(lambda: defaultdict(list))
    for record in runs:
        for name, value in record["metrics"]["test"].items():
            match = PATTERN.fullmatch(name)
            if match:
                out[(match[1], float(match[3]))][float(match[2])].append(value)
            elif name.startswith("curve_null_c"):
                out[("null", float(name[len("curve_null_c"):]))][0.0].append(value)
    return out


def plot(per_model: dict, out: Path, board: str, cs) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(per_model)
    fig, axes = plt.subplots(len(models), 2, figsize=(10, 3.8 * len(models)), squeeze=False)
    for row, model in enumerate(models):
        data, runs = per_model[model]
        for ax, kind in zip(axes[row], ("fdr", "power")):
            for c in cs:
                series = data.get((kind, c))
                if not series:
                    continue
                alphas = sorted(series)
                mean = np.array([np.mean(series[a]) for a in alphas])
                std = np.array([np.std(series[a], ddof=1) if len(series[a]) > 1 else 0.0 for a in alphas])
                null = data.get(("null", c), {}).get(0.0)
                label = f"c = {c:g}" + (f" (nulls {np.mean(null):.0%})" if null else "")
                ax.plot(alphas, mean, marker="o", label=label)
                ax.fill_between(alphas, np.clip(mean - std, 0, 1), np.clip(mean + std, 0, 1), alpha=0.2)
            if kind == "fdr":
                ax.plot([0, 1], [0, 1], "k--", lw=1, label="FDR = alpha")
            ax.set_xlabel("alpha (BH level)")
            ax.set_ylabel(f"realised {'FDR' if kind == 'fdr' else 'power'}")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            seeds = ",".join(str(r["seed"]) for r in runs)
            ax.set_title(f"{model}: seeds {seeds}, config {runs[0]['config_hash'][:10]}", fontsize=9)
    fig.suptitle(f"{board}: conformal selection (conformal p-values + BH); each run's value is its mean over random "
                 f"patient re-splits, shown as mean ± std over seeds", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out.with_suffix(".png"), dpi=120)


def run(board: str, out: Path, models: list[str], records_dir: Path | None = None, storage: str | None = None,
        config: str | None = None, cs=(0.1, 0.2, 0.3)) -> dict:
    records = load_records(board, records_dir, storage)
    per_model, summary = {}, {"board": board, "cs": list(cs), "models": {}}
    for model in models:
        runs = select_runs(records, model, config)
        if not runs:
            continue
        data = curves(runs)
        per_model[model] = (data, runs)
        summary["models"][model] = {
            "runs": [r["run_id"] for r in runs], "seeds": [r["seed"] for r in runs],
            "config_hash": runs[0]["config_hash"], "data_hash": runs[0].get("data_hash"),
            "curves": {f"{kind}_c{c:g}": {f"{a:g}": float(np.mean(v)) for a, v in sorted(series.items())}
                       for (kind, c), series in sorted(data.items()) if kind != "null"},
            "null_share": {f"c{c:g}": float(np.mean(series[0.0])) for (kind, c), series in data.items() if kind == "null"},
        }
    if not per_model:
        source = storage or records_dir
        raise SystemExit(f"no finished runs of {', '.join(models)} with conformal curve metrics on {board} in {source}")
    plot(per_model, out, board, cs)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("board")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--records", type=Path, help="folder of exported run records (paperboard export)")
    source.add_argument("--storage", help="results store URL (as for paperboard run --storage)")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix (.png and .json)")
    parser.add_argument("--models", default="safer", help="comma-separated models, one row each")
    parser.add_argument("--config", help="config hash (prefix) to plot instead of the newest")
    parser.add_argument("--cs", default="0.1,0.2,0.3", help="thresholds c to draw")
    args = parser.parse_args(argv)
    cs = tuple(float(c) for c in args.cs.split(","))
    summary = run(args.board, args.out, args.models.split(","), args.records, args.storage, args.config, cs)
    for model, info in summary["models"].items():
        print(f"{model} seeds {info['seeds']} config {info['config_hash']}", file=sys.stderr)
        for key, series in info["curves"].items():
            print(f"  {key}: " + " ".join(f"a{a}={v:.3f}" for a, v in series.items()))


if __name__ == "__main__":
    main()
