"""Post-board step for the marl boards: the cross-play matrix of every trained run with every other run.

  python -m benchmarks.marl_crossplay marl-collect-treasure --records benchmarks/results/runs \
      --out benchmarks/results/marl-collect-treasure-crossplay [--episodes N] [--partner-fraction F] \
      [--update-records] [--curves-only]

It reads the board's finished run records (exported JSON, newest per model/config/seed), loads each run's best
checkpoint from the record's `checkpoint` field, and plays greedy episodes on the board's test seeds for every
(ego run A, partner B), B in a held-out partner population: every other run of the board (other seeds and other
algorithms; none was seen in A's training) plus the scenario's scripted teams (`lightning_modules.marl.scripted`,
competent and 30%-noisy). B plays a `--partner-fraction` of the slots (default 0.5: the odd slots).
M[A, A] is self-play in the same harness: with --episodes equal to the board's eval_episodes (the default) it equals
the run's test/return, since every episode depends on its seed only (tests/marl/test_crossplay_cli.py).
Normalisation (so that a strong ego does not pass for a good collaborator only by being strong):
  by the partner:  (M[A, B] - R_random) / (S_B - R_random), S_B = B's own self-play; 1 when A = B;
  by the range:    (M[A, B] - R_random) / (R_best - R_random); 0 for a random team with itself,
with R_random a uniformly random team on the same seeds and R_best the best self-play (scripted teams included).
Partners whose self-play does not beat R_random by 10% of the range are left out (nothing to keep).
Per run: zsc_score / zsc_range_score = mean over its held-out partners; per model the same with a two-level
bootstrap 95% interval (ego runs and partners resampled). Raw numbers too: crossplay_return = mean over the other
runs, generalisation_gap = self-play - crossplay_return.
Writes <out>.json (matrices, references, scores), <out>.png (normalised matrix) and, with --update-records, adds
the per-run numbers to each record's metrics.test so `paperboard board` shows them. It also writes the learning
curves (benchmarks/results/<board>-curves.json/png) from the records' val_curve_* metrics (--curves-only: just those).
Checkpoints must still exist (they live under PAPERBOARD_HOME/checkpoints of the machine that trained them).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch


def load_runs(board, records_dir: Path, need_checkpoint: bool = True) -> list[tuple[dict, Path]]:
    from benchmarks.records import latest_per_seed

    runs = []
    for path in sorted(records_dir.rglob("*.json")):
        record = json.loads(path.read_text())
        if record.get("board") == board.name and record.get("status") == "ok" and \
                (record.get("checkpoint") or not need_checkpoint) and record.get("model") in board.models:
            runs.append((record, path))
    keep = {id(r) for r in latest_per_seed([r for r, _ in runs])}
    runs = [(r, p) for r, p in runs if id(r) in keep]
    return sorted(runs, key=lambda rp: (list(board.models).index(rp[0]["model"]) if rp[0]["model"] in board.models
                                        else 99, rp[0]["seed"]))


def crossplay_matrix(egos: list, partners: list, env, seeds: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """M[i, j] = mean team return of ego i with partner j in a `fraction` of the slots (the partner's slots of
    `lightning_modules.marl.crossplay.partner_slots`); a policy that is both ego i and partner j (the same object)
    plays alone: self-play. One rollout of len(seeds) episodes per cell."""
    from datamodules.marl.rollout import collect_rollout
    from lightning_modules.marl.crossplay import MixedTeam

    matrix = np.zeros((len(egos), len(partners)))
    for i, ego in enumerate(egos):
        for j, partner in enumerate(partners):
            team = ego if ego is partner else MixedTeam(ego, partner, fraction)
            matrix[i, j] = collect_rollout(env, team, seeds, explore=False)["return"].mean().item()
    return matrix


def normalise_by_partner(matrix: np.ndarray, partner_selfplay: np.ndarray, random_return: float,
                         min_gain: float) -> np.ndarray:
    """(M[A, B] - R_random) / (S_B - R_random): the share of partner B's own self-play gain over a random team that
    B keeps when ego A fills the other slots. 1 on the diagonal by definition (A = B); NaN for partners whose
    self-play does not beat the random team by `min_gain` (nothing to keep, the ratio would be noise)."""
    gain = np.asarray(partner_selfplay, float) - random_return
    out = (matrix - random_return) / np.where(gain >= min_gain, gain, np.nan)[None, :]
    return out


def normalise_by_range(matrix: np.ndarray, random_return: float, best_return: float) -> np.ndarray:
    """(M - R_random) / (R_best - R_random): 0 for a random team playing with itself, 1 for the best team."""
    if not best_return > random_return:
        raise ValueError(f"the best team ({best_return:.3f}) does not beat the random team ({random_return:.3f}); "
                         "range normalisation needs a competent reference (add a scripted or trained team)")
    return (matrix - random_return) / (best_return - random_return)


def bootstrap_interval(cells: np.ndarray, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0):
    """Mean and percentile interval of a [egos, partners] table (NaN = no such pairing), resampling ego runs and
    partners (two-level bootstrap: both are samples from populations)."""
    cells = np.asarray(cells, float)
    valid = ~np.isnan(cells)
    if not valid.any():
        return float("nan"), (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, cells.shape[0], (n_boot, cells.shape[0]))
    cols = rng.integers(0, cells.shape[1], (n_boot, cells.shape[1]))
    picked = cells[rows[:, :, None], cols[:, None, :]]  # [n_boot, egos, partners]
    with np.errstate(invalid="ignore"):
        flat = picked.reshape(n_boot, -1)
        counts = (~np.isnan(flat)).sum(1)
        means = np.nansum(flat, 1)[counts > 0] / counts[counts > 0]
    alpha = (1 - confidence) / 2
    return float(np.nanmean(cells)), (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def summarise(matrix: np.ndarray, models: list[str]) -> list[dict]:
    """Raw cross-play among the runs (square matrix over runs): self-play, mean with every other run (other seeds of
    the same model and other models), and the gap."""
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


def zero_shot_scores(norm: np.ndarray, models: list[str], held_out: np.ndarray, **boot) -> dict:
    """Per run: mean normalised return over its held-out partners (`held_out[i, j]`); per model: the mean over its
    runs and partners with a bootstrap interval."""
    cells = np.where(held_out, norm, np.nan)
    per_run = [float(np.nanmean(r)) if (~np.isnan(r)).any() else float("nan") for r in cells]
    per_model = {}
    for m in dict.fromkeys(models):
        idx = [i for i, x in enumerate(models) if x == m]
        mean, (lo, hi) = bootstrap_interval(cells[idx], **boot)
        per_model[m] = {"score": mean, "ci95": [lo, hi], "runs": len(idx),
                        "partners": int((~np.isnan(cells[idx])).any(0).sum())}
    return {"per_run": per_run, "per_model": per_model}


def render_png(matrix: np.ndarray, ego_labels: list[str], partner_labels: list[str], models: list[str],
               partner_models: list[str], path: Path, title: str, unit: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = list(dict.fromkeys(models)), list(dict.fromkeys(partner_models))
    ri = {m: [i for i, x in enumerate(models) if x == m] for m in rows}
    ci = {m: [j for j, x in enumerate(partner_models) if x == m] for m in cols}
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN block (no usable partner) stays NaN
        model_matrix = np.array([[np.nanmean([matrix[i, j] for i in ri[a] for j in ci[b]
                                              if ego_labels[i] != partner_labels[j]] or [np.nan]) for b in cols]
                                 for a in rows])
    fig, axes = plt.subplots(1, 2, figsize=(8 + 0.35 * len(partner_labels), 0.3 * len(ego_labels) + 4),
                             gridspec_kw={"width_ratios": [max(len(partner_labels), 1), max(len(cols), 1)]})
    for ax, mat, ylab, xlab, sub in ((axes[0], matrix, ego_labels, partner_labels, "run x partner"),
                                     (axes[1], model_matrix, rows, cols, "model x model (distinct runs)")):
        im = ax.imshow(mat, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(xlab)), xlab, rotation=90, fontsize=7)
        ax.set_yticks(range(len(ylab)), ylab, fontsize=7)
        ax.set_xlabel("partner")
        ax.set_ylabel("ego")
        ax.set_title(sub, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=unit)
        if len(xlab) <= 14:
            for (a, b), v in np.ndenumerate(mat):
                ax.text(b, a, f"{v:.2f}", ha="center", va="center", fontsize=6, color="w")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def scripted_partners(env) -> list[tuple[str, object]]:
    """Hand-written partners where the scenario has them (`lightning_modules.marl.scripted`): competent and noisy."""
    from lightning_modules.marl.scripted import scripted_for

    good = scripted_for(env)
    if good is None:
        return []
    return [("scripted", good), ("scripted_noisy", scripted_for(env, noise=0.3, seed=1))]


def evaluate(policies: list, labels: list[str], models: list[str], env, seeds: np.ndarray, fraction: float = 0.5,
             min_gain_share: float = 0.1, **boot) -> dict:
    """The whole protocol on loaded policies: raw matrix (runs and scripted partners as partners), self-play,
    random and best references, both normalisations and the zero-shot coordination scores."""
    from datamodules.marl.rollout import RandomPolicy, collect_rollout

    extra = scripted_partners(env)
    partners = policies + [p for _, p in extra]
    partner_labels = labels + [name for name, _ in extra]
    partner_models = models + [name for name, _ in extra]
    matrix = crossplay_matrix(policies, partners, env, seeds, fraction)
    scripted_self = [collect_rollout(env, p, seeds, explore=False)["return"].mean().item() for _, p in extra]
    selfplay = np.r_[np.diag(matrix[:, :len(policies)]), scripted_self]
    random_return = collect_rollout(env, RandomPolicy(env.n_actions, seed=0), seeds, explore=False)["return"].mean().item()
    best_return = float(np.max(selfplay))
    min_gain = min_gain_share * (best_return - random_return)
    by_partner = normalise_by_partner(matrix, selfplay, random_return, min_gain)
    by_range = normalise_by_range(matrix, random_return, best_return)
    n = len(policies)
    competent = selfplay - random_return >= min_gain
    held_out = np.ones_like(matrix, dtype=bool)
    held_out[np.arange(n), np.arange(n)] = False  # a run is never its own partner
    held_out &= competent[None, :]
    raw = summarise(matrix[:, :n], models)
    zsc = zero_shot_scores(by_partner, models, held_out, **boot)
    zsc_range = zero_shot_scores(by_range, models, held_out, **boot)
    per_run = []
    for i in range(n):
        numbers = dict(raw[i])
        numbers["zsc_score"], numbers["zsc_range_score"] = zsc["per_run"][i], zsc_range["per_run"][i]
        for name, _ in extra:
            j = partner_labels.index(name)
            numbers[f"{name}_norm_return"] = float(by_partner[i, j])
        per_run.append(numbers)
    return {"partner_labels": partner_labels, "partner_models": partner_models, "matrix": matrix, "selfplay": selfplay,
            "random_return": random_return, "best_return": best_return, "min_partner_gain": min_gain,
            "competent_partners": [partner_labels[j] for j in np.flatnonzero(competent)],
            "by_partner": by_partner, "by_range": by_range, "held_out": held_out, "per_run": per_run,
            "zsc_by_model": zsc["per_model"], "zsc_range_by_model": zsc_range["per_model"]}


def _json(x):
    if isinstance(x, np.ndarray):
        return [[None if isinstance(v, float) and np.isnan(v) else v for v in row] if isinstance(row, list) else
                (None if isinstance(row, float) and np.isnan(row) else row) for row in x.tolist()]
    if isinstance(x, float) and np.isnan(x):
        return None
    return x


def run(board_name: str, records_dir: Path, out: Path, episodes: int | None = None, update_records: bool = False,
        fraction: float = 0.5, log=print) -> dict:
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
        cls = MODELS.for_row(record["model"]).cls
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
    log(f"cross-play: {len(runs)} runs x {len(runs) + len(scripted_partners(env))} partners x {episodes} episodes")
    with torch.no_grad():
        ev = evaluate(policies, labels, models, env, seeds, fraction)
    per_run = ev["per_run"]
    result = {"board": board.name, "labels": labels, "run_ids": [r["run_id"] for r, _ in runs], "episodes": episodes,
              "seeds": f"{TEST_SEED_BASE}+[0, {episodes})", "partner_fraction": fraction,
              "pairing": "partner plays round(f N) evenly spread slots (f = 0.5: the odd slots)",
              "partner_labels": ev["partner_labels"], "selfplay": _json(ev["selfplay"]),
              "random_return": ev["random_return"], "best_return": ev["best_return"],
              "min_partner_gain": ev["min_partner_gain"], "competent_partners": ev["competent_partners"],
              "matrix": _json(ev["matrix"]), "normalised_by_partner": _json(ev["by_partner"]),
              "normalised_by_range": _json(ev["by_range"]),
              "zsc_by_model": ev["zsc_by_model"], "zsc_range_by_model": ev["zsc_range_by_model"],
              "per_run": {k: {m: _json(v) for m, v in d.items()} for k, d in zip(labels, per_run)},
              "seconds": round(time.perf_counter() - started, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    render_png(ev["by_partner"], labels, ev["partner_labels"], models, ev["partner_models"], out.with_suffix(".png"),
               f"{board.name}: cross-play return normalised by the partner's self-play "
               f"(0 = random team, 1 = partner's own team; {episodes} test episodes per cell)", "normalised return")
    if update_records:
        for (record, path), numbers in zip(runs, per_run):
            record["metrics"]["test"].update({k: v for k, v in numbers.items() if k != "selfplay_return"})
            record["crossplay"] = {"source": "python -m benchmarks.marl_crossplay", "partners": len(ev["partner_labels"]) - 1,
                                   "episodes": episodes, "partner_fraction": fraction,
                                   "selfplay_return_in_harness": numbers["selfplay_return"],
                                   "matrix_file": out.with_suffix(".json").name}
            path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    log(f"cross-play done in {result['seconds']}s; wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    for m, z in ev["zsc_by_model"].items():
        log(f"  {m:12s} zero-shot coordination {z['score']:.3f} [{z['ci95'][0]:.3f}, {z['ci95'][1]:.3f}]")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.marl_crossplay", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("board")
    parser.add_argument("--records", required=True, help="folder of exported run records (paperboard export)")
    parser.add_argument("--out", help="output prefix (default benchmarks/results/<board>-crossplay)")
    parser.add_argument("--episodes", type=int, default=None, help="default: the board's eval_episodes")
    parser.add_argument("--partner-fraction", type=float, default=0.5,
                        help="share of the team's slots the partner plays (default 0.5: the odd slots)")
    parser.add_argument("--update-records", action="store_true", help="add the cross-play metrics to the records")
    parser.add_argument("--curves-only", action="store_true",
                        help="only the learning curves (<board>-curves.json/png), from the records alone")
    args = parser.parse_args(argv)
    import datamodules  # noqa: F401
    import lightning_modules  # noqa: F401

    from benchmarks.curves import learning_curves
    from benchmarks.store import load_records_dir

    learning_curves(args.board, load_records_dir(Path(args.records), args.board),
                    Path(f"benchmarks/results/{args.board}-curves"), xlabel="training env steps",
                    ylabel="val return (greedy, fixed seeds)")
    if args.curves_only:
        return 0
    out = Path(args.out or f"benchmarks/results/{args.board}-crossplay")
    run(args.board, Path(args.records), out, args.episodes, args.update_records, args.partner_fraction)
    return 0


if __name__ == "__main__":
    sys.exit(main())
