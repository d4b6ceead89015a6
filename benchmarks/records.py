"""Reading run records: the newest run per seed, what a continuation replaced, epoch caps, whether a run was
still improving or ran under load; and the Markdown table every page uses. Shared by boards, claims and plots."""
from __future__ import annotations

from benchmarks.boards import Board


def epoch_cap(record: dict) -> int | None:
    """The trainer's max_epochs the run was given (the board's, or --max-epochs)."""
    return ((record.get("config") or {}).get("trainer") or {}).get("max_epochs")


def stopped_by_cap(record: dict) -> bool:
    """Whether the run trained every epoch its cap allowed, i.e. early stopping did not end it."""
    cap = epoch_cap(record)
    return bool(cap) and (record.get("epochs") or 0) >= cap


def still_improving(board: Board, record: dict) -> bool:
    """Whether early stopping would have gone on: the run hit its epoch cap with patience left. Boards without
    early stopping train a fixed budget, which their protocol states, so this never flags their runs."""
    patience = board.early_stopping_patience
    return bool(patience) and stopped_by_cap(record) and record.get("best_epoch") is not None \
        and record["epochs"] - 1 - record["best_epoch"] < patience


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


def md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(out)
