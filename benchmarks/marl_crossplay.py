"""Post-board step for the marl boards: the cross-play matrix of every trained run with every other run.

  python -m benchmarks.marl_crossplay marl-collect-treasure --records benchmarks/results/runs \
      --out benchmarks/results/marl-collect-treasure-crossplay [--episodes N] [--update-records]

It reads the board's finished run records (exported JSON, newest per model/config/seed), loads each run's best
checkpoint from the record's `checkpoint` field, and plays, for every ordered pair (ego A, partner B), greedy
episodes on the board's test seeds with B's agents in the odd slots (`lightning_modules.marl.crossplay`).
M[A, A] is self-play in the same harness: with --episodes equal to the board's eval_episodes (the default) it equals
the run's test/return, since every episode depends on its seed only (tests/marl/test_crossplay_cli.py).
Per run: crossplay_return = mean_{B != A} M[A, B] (also split into other seeds of the same model,
`crossplay_seed_return`, and other models, `crossplay_algo_return`), generalisation_gap = M[A, A] - crossplay_return.
Writes <out>.json (matrix, labels, per-run numbers), <out>.png (run x run matrix and model x model means) and,
with --update-records, adds those numbers to each record's metrics.test so `paperboard board` shows them.
Checkpoints must still exist (they live under PAPERBOARD_HOME/checkpoints of the machine that trained them).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def load_runs(board, records_dir: Path) -> list[tuple[dict, Path]]:
    from benchmarks.records import latest_per_seed

    runs = []
    for path in sorted(records_dir.rglob("*.json")):
        record = json.loads(path.read_text())
        if record.get("board") == board.name and record.get("status") == "ok" and record.get("checkpoint"):
            runs.append((record, path))
    keep = {id(r) for r in latest_per_seed([r for r, _ in runs])}
    runs = [(r, p) for r, p in runs if id(r) in keep]
    return sorted(runs, key=lambda rp: (list(board.models).index(rp[0]["model"]) if rp[0]["model"] in board.models
                                        else 99, rp[0]["seed"]))


def crossplay_matrix(policies: list, env, seeds: np.ndarray) -> np.ndarray:
    """M[i, j] = mean team return of ego i with partner j in the odd slots (one rollout of len(seeds) episodes)."""
    from datamodules.marl.rollout import collect_rollout
    from lightning_modules.marl.crossplay import MixedTeam

    n = len(policies)
    matrix = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            team = policies[i] if i == j else MixedTeam(policies[i], policies[j])
            matrix[i, j] = collect_rollout(env, team, seeds, explore=False)["return"].mean().item()
    return matrix


def summarise(matrix: np.ndarray, models: list[str]) -> list[dict]:
    n = len(models)
    out = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        same = [j for j in others if models[j] == models[i]]
        diff = [j for j in others if models[j] != models[i]]
        xp = float(np.mean(matrix[i, others])) if others else float("nan")
        out.append({"selfplay_return": float(matrix[i, i]), "crossplay_return": xp,
                    "crossplay_seed_return": float(np.mean(matrix[i, same])) if same else float("nan"),
                    "crossplay_algo_return": float(np.mean(matrix[i, diff])) if diff else float("nan"),
                    "generalisation_gap": float(matrix[i, i] - xp)})
    return out


def render_png(matrix: np.ndarray, labels: list[str], models: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(models))
    idx = {m: [i for i, x in enumerate(models) if x == m] for m in names}
    model_matrix = np.array([[np.mean([matrix[i, j] for i in idx[a] for j in idx[b] if i != j] or [np.nan])
                              for b in names] for a in names])
    fig, axes = plt.subplots(1, 2, figsize=(8 + 0.35 * len(labels), 0.3 * len(labels) + 4),
                             gridspec_kw={"width_ratios": [max(len(labels), 1), max(len(names), 1)]})
    for ax, mat, lab, sub in ((axes[0], matrix, labels, "run x run (diagonal = self-play)"),
                              (axes[1], model_matrix, names, "model x model (mean over distinct runs)")):
        im = ax.imshow(mat, cmap="viridis")
        ax.set_xticks(range(len(lab)), lab, rotation=90, fontsize=7)
        ax.set_yticks(range(len(lab)), lab, fontsize=7)
        ax.set_xlabel("partner (odd slots)")
        ax.set_ylabel("ego (even slots)")
        ax.set_title(sub, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="team return")
        if len(lab) <= 12:
            for (a, b), v in np.ndenumerate(mat):
                ax.text(b, a, f"{v:.1f}", ha="center", va="center", fontsize=6, color="w")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(board_name: str, records_dir: Path, out: Path, episodes: int | None = None, update_records: bool = False,
        log=print) -> dict:
    import datamodules  # noqa: F401
    import lightning_modules  # noqa: F401
    from benchmarks.boards import load_board
    from contracts.registry import DATASETS, MODELS
    from datamodules.marl.base import TEST_SEED_BASE
    from lightning_modules.safe_load import file_sha256

    board = load_board(board_name)
    runs = load_runs(board, records_dir)
    if len(runs) < 2:
        raise SystemExit(f"cross-play needs at least 2 finished runs with checkpoints of {board.name} in {records_dir}")
    started = time.perf_counter()
    policies, labels, models = [], [], []
    for record, _ in runs:
        cls = MODELS.get(record["model"]).cls
        # records (and the checkpoints they name) may come from anyone: weights only, and the recorded file only
        if record.get("checkpoint_sha256") and file_sha256(record["checkpoint"]) != record["checkpoint_sha256"]:
            raise SystemExit(f"cross-play: refusing {record['checkpoint']}: its sha256 differs from the one in the "
                             f"record of run {record['run_id'][:8]}")
        module = cls.load_from_checkpoint(record["checkpoint"], map_location="cpu", weights_only=True)
        policies.append(module.eval())
        labels.append(f"{record['model']}/s{record['seed']}")
        models.append(record["model"])
    if episodes is None:  # the board's own test episodes, so the diagonal is each run's test/return
        episodes = int(runs[0][0]["config"]["dataset_args"].get("eval_episodes", 64))
    data_args = {**runs[0][0]["config"]["dataset_args"], "num_envs": episodes, "eval_episodes": episodes}
    datamodule = DATASETS.get(board.dataset).cls(**data_args)
    env = datamodule.make_env("test")
    seeds = TEST_SEED_BASE + np.arange(episodes)
    log(f"cross-play: {len(runs)} runs -> {len(runs) ** 2} pairings x {episodes} episodes")
    with torch.no_grad():
        matrix = crossplay_matrix(policies, env, seeds)
    per_run = summarise(matrix, models)
    result = {"board": board.name, "labels": labels, "run_ids": [r["run_id"] for r, _ in runs], "episodes": episodes,
              "seeds": f"{TEST_SEED_BASE}+[0, {episodes})", "pairing": "partner plays the odd slots",
              "matrix": matrix.tolist(), "per_run": dict(zip(labels, per_run)),
              "seconds": round(time.perf_counter() - started, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    render_png(matrix, labels, models, out.with_suffix(".png"),
               f"{board.name}: cross-play team return ({episodes} test episodes per cell)")
    if update_records:
        for (record, path), numbers in zip(runs, per_run):
            record["metrics"]["test"].update({k: v for k, v in numbers.items() if k != "selfplay_return"})
            record["crossplay"] = {"source": "python -m benchmarks.marl_crossplay", "partners": len(runs) - 1,
                                   "episodes": episodes, "selfplay_return_in_harness": numbers["selfplay_return"],
                                   "matrix_file": out.with_suffix(".json").name}
            path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    log(f"cross-play done in {result['seconds']}s; wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.marl_crossplay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("board")
    parser.add_argument("--records", required=True, help="folder of exported run records (paperboard export)")
    parser.add_argument("--out", help="output prefix (default benchmarks/results/<board>-crossplay)")
    parser.add_argument("--episodes", type=int, default=None, help="default: the board's eval_episodes")
    parser.add_argument("--update-records", action="store_true", help="add the cross-play metrics to the records")
    args = parser.parse_args(argv)
    out = Path(args.out or f"benchmarks/results/{args.board}-crossplay")
    run(args.board, Path(args.records), out, args.episodes, args.update_records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
