"""Reading run records: the newest run per seed, what a continuation replaced, epoch caps, whether a run was
still improving or ran under load; and the Markdown table every page uses. Shared by boards, claims and plots."""
from __future__ import annotations

import functools
import json
import math

from benchmarks.boards import LAST_VAL, Board


def record_value(record: dict, metric: str) -> float:
    """A test metric of the record (`last_val/NAME`: the last validation's NAME), else a cost field of the record
    (train_epoch_cpu_seconds, params, ...); NaN if absent."""
    metrics = record.get("metrics") or {}
    if metric.startswith(LAST_VAL):
        value = (metrics.get("last_val") or {}).get(metric[len(LAST_VAL):])
    else:
        value = (metrics.get("test") or {}).get(metric, record.get(metric))
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def epoch_cap(record: dict) -> int | None:
    """The trainer's max_epochs the run was given (the board's, or --max-epochs)."""
    return ((record.get("config") or {}).get("trainer") or {}).get("max_epochs")


def stopped_by_cap(record: dict) -> bool:
    """Whether the run trained every epoch its cap allowed, i.e. early stopping did not end it."""
    cap = epoch_cap(record)
    return bool(cap) and (record.get("epochs") or 0) >= cap


@functools.lru_cache(maxsize=None)
def _earlier_behaviour(kind: str, name: str) -> dict:
    """What the registry index says records from before an argument existed ran with, for a model row
    ("name@variant" falls back to "name") or a dataset."""
    from contracts.registry import load_index

    entries = {e["name"]: e for e in load_index()[kind]}
    entry = entries.get(name) or entries.get(name.split("@")[0]) or {}
    return entry.get("earlier_behaviour", {})


ABSENT = "<absent>"


def recorded_arguments(record: dict, keys) -> tuple[dict, dict]:
    """The record's model and dataset arguments for `keys` (model keys, dataset keys), a key the record lacks read as
    the value the code documents for runs from before the argument existed (`earlier_behaviour`), else ABSENT."""
    config = record.get("config") or {}
    out = []
    for kind, name, section, wanted in (("models", record["model"], "model_args", keys[0]),
                                        ("datasets", config.get("dataset", ""), "dataset_args", keys[1])):
        recorded, earlier = config.get(section) or {}, _earlier_behaviour(kind, name)
        out.append({k: recorded[k] if k in recorded else earlier.get(k, ABSENT) for k in wanted})
    return out[0], out[1]


def stale_arguments(board: Board, record: dict) -> list[str]:
    """The arguments the board now sets explicitly for this record's row (its model arguments and the dataset's)
    that the run was not trained with, as "key: recorded -> board", read through `recorded_arguments`. Tuned runs
    carry their sweep's arguments, and a board's `knobs` are varied on purpose, so neither is judged; nor is a
    record that does not say what it was trained with."""
    if record.get("tuned") or record.get("model") not in board.models:
        return []
    config = record.get("config") or {}
    wanted = [{k: v for k, v in (board.models[record["model"]] or {}).items() if k not in board.knobs},
              {k: v for k, v in (board.dataset_args or {}).items() if k not in board.knobs}]
    had = recorded_arguments({**record, "config": {**config, "dataset": board.dataset}}, wanted)
    out = []
    for section, want, got in zip(("model_args", "dataset_args"), wanted, had):
        if section not in config:
            continue
        out += [f"{k}: {got[k]} -> {v}" for k, v in want.items()
                if json.dumps(got[k], sort_keys=True, default=str) != json.dumps(v, sort_keys=True, default=str)]
    return out


def stale_rows(board: Board, records: list[dict]) -> list[str]:
    """Each board row whose runs were trained under arguments the board no longer sets, with its config hashes and
    the arguments (for the pages' note)."""
    out = []
    for (model, _, chash, _), runs in board_rows(board.name, records).items():
        changed = list(dict.fromkeys(a for r in runs for a in stale_arguments(board, r)))
        if changed:
            out.append(f"{model} (`{chash}`: {'; '.join(changed)})")
    return out


def still_improving(board: Board, record: dict) -> bool:
    """Whether early stopping would have gone on: the run hit its epoch cap with patience left. Boards without
    early stopping train a fixed budget, which their protocol states, so this never flags their runs."""
    patience = board.early_stopping_patience
    return bool(patience) and stopped_by_cap(record) and record.get("best_epoch") is not None \
        and record["epochs"] - 1 - record["best_epoch"] < patience


def best_at_cap(record: dict) -> bool:
    """Whether the run's best epoch was the last epoch its cap allowed (epochs count from 0): the model was still
    improving when the cap stopped it, with or without early stopping."""
    cap = epoch_cap(record)
    return bool(cap) and record.get("best_epoch") is not None and stopped_by_cap(record) \
        and record["best_epoch"] >= cap - 1


def under_load(record: dict) -> bool:
    """Whether the run's 1-minute load average exceeded its core count at start or end: its wall times are
    inflated by other work (CPU seconds are not)."""
    cores = (record.get("hardware") or {}).get("cpu_count") or 1
    loads = (record.get("load_avg") or {})
    return any(load and load[0] > cores for load in (loads.get("start"), loads.get("end")))


def superseded_runs(records: list[dict]) -> set[str]:
    """Run ids that a continuation (`paperboard run --extend`) replaced: every run that another run continued, and
    of several continuations of one run all but the one that trained longest."""
    children: dict[str, list[dict]] = {}
    for r in records:
        parent = (r.get("resumed_from") or {}).get("run_id")
        if parent:
            children.setdefault(parent, []).append(r)
    superseded = set(children)
    for kids in children.values():
        longest = max(kids, key=lambda r: (r.get("epochs") or 0, r["created_at"]))
        superseded |= {r["run_id"] for r in kids if r is not longest}
    return superseded


def latest_per_seed(records: list[dict]) -> list[dict]:
    """Of repeated (model, tuned, config, data, seed) runs keep the newest, so a re-run replaces, never doubles;
    a capped run that a later run continued (`paperboard run --extend`) shows only as the continued run."""
    superseded = superseded_runs(records)
    latest: dict[tuple, dict] = {}
    for r in sorted((r for r in records if r["run_id"] not in superseded), key=lambda r: r["created_at"]):
        latest[(r["model"], bool(r.get("tuned")), r["config_hash"], r.get("data_hash"), r["seed"])] = r
    return list(latest.values())


# Trainer arguments that change how long a run may train or what it prints, never what it learns per epoch
NOT_SETTINGS = frozenset({"max_epochs", "enable_progress_bar", "enable_model_summary"})


def settings_key(record: dict) -> str:
    """A run's settings up to its epoch cap (data, model and Trainer arguments other than `NOT_SETTINGS`, the data
    hash, tuned or not): runs with one key differ only in how long they were allowed to train or how they printed."""
    config = record.get("config") or {}
    trainer = {k: v for k, v in (config.get("trainer") or {}).items() if k not in NOT_SETTINGS}
    return json.dumps([config.get("dataset_args"), config.get("model_args"), trainer, record.get("data_hash"),
                       bool(record.get("tuned"))], sort_keys=True, default=str)


def longest_budget_per_seed(records: list[dict]) -> list[dict]:
    """Of one row's runs with the same settings, per seed the one given the largest epoch cap (the newest among
    equals): a run that early stopping ended is the same under any larger cap, so a board re-run with a larger cap
    for the rows its old cap stopped is one row, not two."""
    best: dict[tuple, dict] = {}
    for r in latest_per_seed(records):
        key = (r["model"], settings_key(r), r["seed"])
        if key not in best or (epoch_cap(r) or 0, r["created_at"]) > (epoch_cap(best[key]) or 0, best[key]["created_at"]):
            best[key] = r
    return list(best.values())


def board_rows(board_name: str, records: list[dict]) -> dict[tuple, list[dict]]:
    """The finished runs behind each row of a board, keyed (model, tuned, config hashes, data hash): runs that differ
    only in their epoch cap are one row, each seed at its largest cap (as the claims read them), so a row whose seeds
    were continued to different caps does not split; the key names every config hash among its runs."""
    groups: dict[tuple, list[dict]] = {}
    ok = longest_budget_per_seed([r for r in records if r["status"] == "ok" and r["board"] == board_name])
    for r in ok:
        groups.setdefault((r["model"], bool(r.get("tuned")), settings_key(r), r.get("data_hash")), []).append(r)
    return {(model, tuned, ",".join(sorted({r["config_hash"] for r in runs})), data): runs
            for (model, tuned, _, data), runs in groups.items()}


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(out)
