"""`paperboard sweep ... --report`: the best trials, parameter importances and the optimisation history (PNG).

The same table, importances and plot are logged to W&B in the study's group `sweep/<board>/<model>`
(job_type "sweep-report") unless W&B is disabled.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

from sweeps.study import DEFAULT_ATTR, SURPLUS_ATTR, SweepPlan, counts


def _seconds(t) -> float:
    if t.datetime_start and t.datetime_complete:
        return (t.datetime_complete - t.datetime_start).total_seconds()
    return math.nan


def summary(study: optuna.Study) -> dict:
    """Counts and time: trial-seconds per state, and the wall span from the first start to the last finish."""
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS_ATTR)]
    c = counts(study)
    done = [t for t in trials if t.datetime_start and t.datetime_complete]
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds() if done else 0.0
    by_state = {s.name.lower(): round(sum(_seconds(t) for t in trials if t.state == s and t.datetime_complete), 1)
                for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    pruned_epochs = [max(t.intermediate_values) + 1 for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
    return {"complete": c.complete, "pruned": c.pruned, "failed": c.failed - sum(bool(t.user_attrs.get(SURPLUS_ATTR))
            for t in study.get_trials(deepcopy=False)), "running": c.running, "waiting": c.waiting,
            "trial_seconds": by_state, "wall_span_seconds": round(span, 1),
            "mean_pruned_epochs": round(sum(pruned_epochs) / len(pruned_epochs), 1) if pruned_epochs else None}


def default_trial(study: optuna.Study):
    """The trial that ran the model's default configuration (the study's first, see enqueue_default), if finished."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.user_attrs.get(DEFAULT_ATTR):
            return t
    return None


def best_trials(study: optuna.Study, k: int = 5):
    import pandas as pd

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    rows = []
    for t in sorted(complete, key=lambda t: t.value, reverse=reverse)[:k]:
        run = t.user_attrs.get("run", {})
        rows.append({"trial": t.number, "value": round(t.value, 5), "best_epoch": run.get("best_epoch"),
                     "seconds": round(_seconds(t), 1), **{k: _short(v) for k, v in t.params.items()}})
    return pd.DataFrame(rows)


def _short(v):
    return float(f"{v:.3g}") if isinstance(v, float) else v


def importances(study: optuna.Study) -> dict[str, float]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2 or not any(t.params for t in complete):
        return {}
    try:
        return {k: round(v, 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError) as err:  # e.g. every trial has the same parameters
        return {"(not computable)": str(err)}


def history_plot(study: optuna.Study, path: Path, title: str) -> Path | None:
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        ax = optuna.visualization.matplotlib.plot_optimization_history(study, target_name="val value")
    ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(ax.figure)
    return path


def report(study: optuna.Study, plan: SweepPlan, out_dir: Path | None = None, log=print) -> dict:
    """Print the study's report, write its history plot; returns what it printed as a dict."""
    out_dir = Path(out_dir) if out_dir else plan.log_dir
    info = summary(study)
    table = best_trials(study)
    imp = importances(study)
    meta = study.user_attrs.get("paperboard", {})
    log(f"\n== sweep report: {plan.study_name} ({_storage_name(plan)}) ==")
    log(f"budget: target {study.user_attrs.get('target_trials', plan.target)} finished trials, <= {plan.max_epochs} "
        f"epochs each; pruner {meta.get('pruner') or 'none'}; sampler {meta.get('sampler')}")
    log(f"trials: {info['complete']} complete, {info['pruned']} pruned (mean {info['mean_pruned_epochs']} epochs), "
        f"{info['failed']} failed, {info['running']} running, {info['waiting']} waiting; "
        f"trial-seconds {info['trial_seconds']}; wall span {info['wall_span_seconds']} s")
    log(f"best trials (val {plan.primary_metric}):")
    log(table.to_string(index=False) if not table.empty else "  (no complete trial)")
    default = default_trial(study)
    if default is not None:
        what = f"val {plan.primary_metric} {default.value:.4f}" if default.value is not None else "pruned"
        best = table["value"].iloc[0] if not table.empty else float("nan")
        log(f"default configuration (trial {default.number}): {what}; best {best:.4f}")
    if imp:
        log("parameter importances (fANOVA): " + ", ".join(f"{k} {v}" for k, v in imp.items()))
    plot = history_plot(study, out_dir / "optimization_history.png", f"{plan.study_name}: val {plan.primary_metric}")
    if plot:
        log(f"optimisation history plot: {plot}")
    _log_wandb(plan, table, imp, plot, info)
    return {"summary": info, "best": table.to_dict("records"), "importances": imp, "plot": str(plot) if plot else None,
            "default": None if default is None else {"trial": default.number, "value": default.value}}


def _storage_name(plan: SweepPlan) -> str:
    from benchmarks.store import redact

    return redact(plan.storage)


def _log_wandb(plan: SweepPlan, table, imp: dict, plot: Path | None, info: dict) -> None:
    from benchmarks.runner import wandb_mode

    mode = wandb_mode()
    if mode == "disabled":
        return
    import wandb

    from benchmarks.runner import paperboard_home
    from benchmarks.store import redacted_argv

    with redacted_argv():  # W&B keeps the command line, which may hold --storage with a password
        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "paperboard"),
                         group=f"sweep/{plan.board_name}/{plan.model}", job_type="sweep-report",
                         name=f"{plan.model}-sweep-report", mode=mode, dir=str(paperboard_home() / "wandb"),
                         reinit="finish_previous",
                         config={"study": plan.study_name, "target": plan.target, "max_epochs": plan.max_epochs,
                                 "pruner": plan.pruner, "sampler": plan.sampler})
    payload = {"best_trials": wandb.Table(dataframe=table)} if not table.empty else {}
    if imp and "(not computable)" not in imp:
        payload["importances"] = wandb.Table(columns=["param", "importance"], data=[[k, v] for k, v in imp.items()])
    if plot:
        payload["optimization_history"] = wandb.Image(str(plot))
    run.log(payload)
    run.summary.update({f"trials/{k}": v for k, v in info.items() if isinstance(v, (int, float))})
    run.finish()
