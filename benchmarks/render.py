"""Render a board from run records: protocol first, then mean +- std over seeds, cost columns, the papers'
numbers beside ours with the board's tolerance, and the failed runs. Markdown, CSV or HTML."""
from __future__ import annotations

import html
import math

import pandas as pd

from benchmarks.boards import Board, published_metric
from benchmarks.claims import board_verdicts, rows_not_learned
from benchmarks.records import (best_at_cap, board_rows, epoch_cap, md_table, record_value, stale_rows,
                                still_improving, stopped_by_cap, under_load)


def aggregate(board: Board, records: list[dict]) -> pd.DataFrame:
    """One row per `board_rows` group (model, tuned, settings, data hash): mean and sample std (n-1) of each metric
    over seeds."""
    rows = []
    for (model, tuned, chash, dhash), runs in board_rows(board.name, records).items():
        row = {"model": model, "tuned": tuned, "config": chash, "data": dhash, "seeds": len(runs)}
        if tuned:
            t = runs[0].get("tuning") or {}
            row["budget"] = f"{t.get('trials', '?')} trials"
        for metric in board.metrics:
            values = pd.Series([record_value(r, metric) for r in runs], dtype=float)
            row[f"{metric}"] = values.mean()
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else math.nan
        row["val_" + board.primary_metric] = pd.Series(
            [r["metrics"]["val"].get(board.primary_metric, math.nan) for r in runs]).mean()
        row["params"] = runs[0].get("params")
        row["train_s"] = pd.Series([r.get("train_seconds") for r in runs], dtype=float).mean()
        row["s_per_epoch"] = pd.Series([r.get("train_epoch_seconds") for r in runs], dtype=float).mean()
        row["cpu_s_per_epoch"] = pd.Series([r.get("train_epoch_cpu_seconds") for r in runs], dtype=float).mean()
        row["under_load"] = any(under_load(r) for r in runs)
        row["eval_s"] = pd.Series([r.get("eval_seconds") for r in runs], dtype=float).mean()
        # GPU memory when every seed ran on a GPU, else resident memory: one unit per row
        row["on_gpu"] = all("peak_gpu_mb" in r for r in runs)
        row["peak_mb"] = pd.Series([r.get("peak_gpu_mb") if row["on_gpu"] else r.get("peak_rss_mb") for r in runs],
                                   dtype=float).max()
        row["epochs"] = pd.Series([r.get("best_epoch") for r in runs], dtype=float).mean()
        best_epochs = sorted({int(r["best_epoch"]) for r in runs if r.get("best_epoch") is not None})
        row["best_epochs"] = (str(best_epochs[0]) if len(best_epochs) == 1 else
                              f"{best_epochs[0]}-{best_epochs[-1]}" if best_epochs else "-")
        row["best_at_cap"] = sum(best_at_cap(r) for r in runs)
        row["run_ids"] = ",".join(sorted(r["run_id"][:8] for r in runs))
        # The smallest epoch cap that some seed actually ran into (early-stopped runs never hit theirs).
        row["hit_cap"] = min((epoch_cap(r) for r in runs if stopped_by_cap(r)), default=None)
        row["improving"] = sum(still_improving(board, r) for r in runs)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    ascending = board.direction == "minimize"
    return frame.sort_values(board.primary_metric, ascending=ascending, kind="stable").reset_index(drop=True)


def published_comparison(board: Board, table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for p in board.published:
        ours = table[table.model == p.model] if not table.empty else table
        tol = board.tolerance.get(p.metric)
        # the metric itself, then every other reading of it the board lists (its last_val/ column)
        for column in [p.metric, *(m for m in board.metrics if m != p.metric and published_metric(m) == p.metric)]:
            value = ours[column].iloc[0] if not ours.empty and column in ours else math.nan
            delta = value - p.value if not math.isnan(value) else math.nan
            within = "n/a" if tol is None or math.isnan(delta) else ("yes" if abs(delta) <= tol else "no")
            rows.append({"model": p.model, "metric": column, "paper": p.value, "ours": value, "delta": delta,
                         "tolerance": tol, "within": within, "source": p.source, "paper protocol": p.protocol})
    return pd.DataFrame(rows)


def _fmt(value, digits=4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


NEEDS_LLM = "needs an LLM"


def needs_llm_rows(board: Board, records: list[dict]) -> list[str]:
    """Rows that ran without the language model they prompt (status needs_llm) and have no finished run."""
    done = {r["model"] for r in records if r["status"] == "ok" and r["board"] == board.name}
    return sorted({r["model"] for r in records if r["status"] == "needs_llm" and r["board"] == board.name} - done)


def render_markdown(board: Board, records: list[dict]) -> str:
    table = aggregate(board, records)
    ok = [r for r in records if r["status"] == "ok"]
    waiting = needs_llm_rows(board, records)
    lines = [f"# {board.name}: {board.title}", ""]
    if board.description:
        lines += [board.description.strip(), ""]
    lines += ["## Protocol", ""]
    lines += [f"- Dataset: `{board.dataset}` {board.dataset_args or ''}".rstrip()]
    lines += [f"- {p}" for p in board.protocol]
    arrow = "higher is better" if board.direction == "maximize" else "lower is better"
    lines += [f"- Primary metric: {board.primary_metric} ({arrow}). Numbers are test metrics, mean ± sample std "
              f"over seeds, at the best validation checkpoint."]
    hashes = sorted({r.get("data_hash") for r in ok if r.get("data_hash")})
    if hashes:
        lines += [f"- Preprocessed data hash: {', '.join(f'`{h}`' for h in hashes)}"
                  + (" (rows with different hashes are NOT comparable)" if len(hashes) > 1 else "")]
    hardware = sorted({f"{r['hardware'].get('gpu', r['hardware'].get('cpu'))} x{r['hardware'].get('cpu_count')} cpus, "
                       f"torch {r['versions']['torch']}, lightning {r['versions']['lightning']}" for r in ok
                       if r.get("hardware") and r.get("versions")})
    if hardware:
        lines += [f"- Hardware and versions: {'; '.join(hardware)}"]
    lines += [""]
    lines += ["## Results", ""]
    if table.empty and not waiting:
        lines += ["No finished runs yet. Run `paperboard run " + board.name + "`.", ""]
    else:
        # rows on different preprocessed data are not comparable, so the page says which data each row saw
        several_data = not table.empty and table.data.nunique() > 1
        header = ["model", "tuned", "seeds", *board.metrics, f"val {board.primary_metric}", "params", "train s",
                  "s/epoch", "CPU s/epoch", "eval s", "peak MB", "best epoch", "config",
                  *(["data"] if several_data else []), "runs"]
        asked = len(board.seeds)
        rows = []
        for _, r in table.iterrows():
            cells = [f"**{r.model}**" if _ == 0 else r.model, r.get("budget") if r.tuned else "default",
                     str(r.seeds) if r.seeds >= asked else f"{r.seeds} of {asked}"]
            for m in board.metrics:
                std = r[f"{m}_std"]
                cells.append(_fmt(r[m]) + ("" if math.isnan(std) else f" ± {std:.4f}"))
            cells += [_fmt(r["val_" + board.primary_metric]), f"{int(r.params):,}" if r.params == r.params else "-",
                      _fmt(r.train_s, 1) + (" (loaded)" if r.under_load else ""), _fmt(r.s_per_epoch, 3),
                      _fmt(r.cpu_s_per_epoch, 3), _fmt(r.eval_s, 2), _fmt(r.peak_mb, 0),
                      r.best_epochs + (" (cap)" if r.best_at_cap else ""), f"`{r.config}`",
                      *([f"`{r.data}`"] if several_data else []), r.run_ids]
            rows.append(cells)
        rows += [[model, "default", f"0 of {asked}", *[NEEDS_LLM] * len(board.metrics),
                  *["-"] * (len(header) - 3 - len(board.metrics))] for model in waiting]
        lines += [md_table(header, rows), ""]
        if waiting:
            lines += [f"Note: {', '.join(waiting)} prompt a language model and ran without one: they read "
                      f"\"{NEEDS_LLM}\". Give one with `paperboard run {board.name} --llm SPEC` (or env "
                      f"PAPERBOARD_LLM; SPEC is hf:/path/to/model or an OpenAI-compatible URL, see the README).", ""]
    if not table.empty:
        short = [f"{r.model} ({r.seeds} of {asked})" for _, r in table.iterrows() if r.seeds < asked]
        if short:
            lines += [f"Note: fewer seeds than the board's {asked}: {', '.join(short)}; claims checked on these rows "
                      f"are inconclusive by rule.", ""]
        if table.under_load.any():
            lines += ["Note: `(loaded)` marks wall times of runs that started or ended with the load average above "
                      "the core count; compare CPU seconds instead.", ""]
        if table.on_gpu.any():
            rest = "; the other rows' peak MB is resident memory" if not table.on_gpu.all() else ""
            lines += [f"Note: ran on a GPU, so their peak MB is GPU memory (the most allocated by torch): "
                      f"{', '.join(table.model[table.on_gpu])}{rest}.", ""]
        board_cap = board.trainer.get("max_epochs")
        capped = [f"{r.model} ({int(r.hit_cap)} of {board_cap})" for _, r in table.iterrows()
                  if board_cap and pd.notna(r.hit_cap) and r.hit_cap < board_cap
                  and pd.notna(r.epochs)]  # a model that does not train (pop) has no best epoch and no cap to hit
        if capped:
            lines += [f"Note: stopped by a smaller epoch cap than the board's, not by early stopping: "
                      f"{', '.join(capped)}; a best epoch near the cap means the model was still improving "
                      f"(`--extend` continues such runs).", ""]
        at_cap = [f"{r.model} (`{r.config}`, {int(r.best_at_cap)} of {r.seeds} seeds)" for _, r in table.iterrows()
                  if r.best_at_cap]
        if at_cap:
            lines += [f"Note: `(cap)` marks rows whose best epoch was the last one their epoch cap allowed, so the "
                      f"model was still improving when training stopped: {', '.join(at_cap)}. Best epochs count "
                      f"from 0.", ""]
        improving = [f"{r.model} (`{r.config}`, {int(r.improving)} of {r.seeds} seeds)" for _, r in table.iterrows()
                     if r.improving]
        if improving:
            lines += [f"Note: still improving when their epoch cap stopped them (early stopping's patience not "
                      f"spent): {', '.join(improving)}; claims on these rows are inconclusive by rule.", ""]
        stale = stale_rows(board, records)
        if stale:
            lines += [f"Note: trained under arguments the board no longer sets (recorded -> board), so claims on "
                      f"these rows are inconclusive by rule; `paperboard run {board.name} --models ROW` trains the "
                      f"current ones: {', '.join(stale)}.", ""]
        not_learned = rows_not_learned(board, records)
        if not_learned:
            lines += [f"Note: not better than the trivial model `{board.trivial_model}` on {board.primary_metric} (the "
                      f"floor a row must clear to count as having learned): {', '.join(not_learned)}; claims on "
                      f"these rows are inconclusive by rule.", ""]
    comparison = published_comparison(board, table)
    if not comparison.empty:
        lines += ["## Published numbers beside ours", ""]
        lines += [md_table(
            ["model", "metric", "paper", "ours", "delta", "tolerance", "within", "source", "paper's protocol"],
            [[c.model, c.metric, _fmt(c.paper), _fmt(c.ours), _fmt(c.delta), _fmt(c.tolerance), c.within, c.source,
              c["paper protocol"]] for _, c in comparison.iterrows()]), ""]
    # a failure that a later finished run of the same model and seed replaced is history, not an open problem
    redone = {(r["model"], r["seed"], r.get("tuned", False)) for r in ok}
    failed = [r for r in records if r["status"] not in ("ok", "needs_llm")
              and (r["model"], r["seed"], r.get("tuned", False)) not in redone]
    if failed:
        lines += ["## Failed runs", ""]
        lines += [f"- {r['model']} seed {r['seed']} ({r['run_id'][:8]}): {str(r.get('error', '')).splitlines()[0][:200]}"
                  for r in failed]
        lines += [""]
    lines += claims_section(board, records)
    lines += [f"_Rendered by `paperboard board {board.name}` from {len(ok)} finished run record(s)._", ""]
    return "\n".join(lines)


def claims_section(board: Board, records: list[dict]) -> list[str]:
    """The verdicts of every paper claim checked on this board (benchmarks/claims.py), computed from `records`."""
    verdicts = board_verdicts(board.name, records)
    if not verdicts:
        return []
    return ["## Claims checked on this board", "",
            md_table(["paper", "claim", "verdict", "why"],
                     [[paper, f"`{v.claim.id}`: {v.claim.text}", f"**{v.verdict}**", v.why] for paper, v in verdicts]),
            "", "Evidence and the rule: [CLAIMS.md](CLAIMS.md).", ""]


def render(board: Board, records: list[dict], fmt: str = "md") -> str:
    if fmt == "md":
        return render_markdown(board, records)
    table = aggregate(board, records)
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "html":
        protocol = "".join(f"<li>{html.escape(p)}</li>" for p in board.protocol)
        return (f"<h1>{html.escape(board.name)}: {html.escape(board.title)}</h1><ul>{protocol}</ul>"
                + table.to_html(index=False, float_format=lambda v: f"{v:.4f}")
                + published_comparison(board, table).to_html(index=False))
    raise ValueError(f"unknown format {fmt!r}; choose md, csv or html")
