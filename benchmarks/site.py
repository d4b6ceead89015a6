"""`paperboard site --out site/`: every board, the claims page and the plots as a static HTML site.

Built from run records alone (the committed ones in benchmarks/results/runs by default), so a reader needs nothing
installed: an index of boards, one page per board (protocol first, then the sortable results table, the papers'
numbers beside ours, the claims' verdicts, failed runs and the board's plots), and the claims page. Each number
links to the JSON of the run records it is computed from (`rows/<board>/<n>.json`, the records of that row), and
each row to every run's own record (`runs/<board>/<model>/<file>.json`, as `paperboard export` names them).
"""
from __future__ import annotations

import html
import json
import math
import shutil
import time
from pathlib import Path

from benchmarks.boards import board_names, load_board, load_paper, paper_names
from benchmarks.claims import board_verdicts, paper_verdicts, rows_not_learned
from benchmarks.records import board_rows, stale_rows
from benchmarks.render import aggregate, published_comparison
from benchmarks.store import load_records_dir, record_path
from contracts.atomic import atomic_write_bytes

TEMPLATES = Path(__file__).with_name("site_templates")
RESULTS = Path(__file__).with_name("results")


def _page(title: str, body: str, root: str, record_count: int) -> bytes:
    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
    return env.get_template("page.html").render(title=title, body=Markup(body), root=root,
                                                record_count=record_count).encode()


def esc(value) -> str:
    return html.escape(str(value))


def _num(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def table(columns: list[tuple[str, str]], rows: list[list[str]], sortable: bool = True) -> str:
    """`columns` = (key, label); cells are HTML already (use `cell`)."""
    head = "".join(f'<th data-key="{esc(k)}">{esc(label)}</th>' for k, label in columns)
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    return f'<table class="{"sortable" if sortable else ""}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def cell(content: str = "", sort=None, numeric: bool = False) -> str:
    attrs = (f' data-sort="{esc(sort)}"' if sort is not None else "") + (' class="num"' if numeric else "")
    return f"<td{attrs}>{content}</td>"


def verdict_html(verdict: str) -> str:
    return f'<span class="verdict-{esc(verdict.replace(" ", "-"))}">{esc(verdict)}</span>'


def _checked(verdicts_of, what, records: list[dict]):
    """(verdicts, None), or ([], the problem) when a paper's claims do not fit its boards: the page says so and the
    rest of the site is still built."""
    from benchmarks.boards import ConfigError

    try:
        return verdicts_of(what, records), None
    except ConfigError as err:
        if str(err) not in _WARNED:
            import sys

            _WARNED.add(str(err))
            print(f"paperboard site: warning: {err}", file=sys.stderr)
        return [], str(err)


_WARNED: set[str] = set()


def board_page(board, records: list[dict], out: Path, plots: list[str], checked=None) -> str:
    """`checked`: (verdicts, problem) of the board's claims, computed from every record (the caller's, else here)."""
    frame = aggregate(board, records)
    groups = board_rows(board.name, records)
    parts = [f"<p>{esc(board.description.strip())}</p>" if board.description else ""]
    protocol = [f"Dataset: <code>{esc(board.dataset)}</code> {esc(board.dataset_args or '')}"]
    protocol += [esc(p) for p in board.protocol]
    arrow = "higher is better" if board.direction == "maximize" else "lower is better"
    protocol += [f"Primary metric: {esc(board.primary_metric)} ({arrow}); numbers are test metrics, mean ± sample std "
                 f"over seeds, at the best validation checkpoint."]
    parts += ['<h2>Protocol</h2><div class="protocol"><ul>' + "".join(f"<li>{p}</li>" for p in protocol)
              + "</ul></div>", "<h2>Results</h2>"]
    if frame.empty:
        parts.append(f"<p>No finished runs yet: <code>paperboard run {esc(board.name)}</code>.</p>")
    else:
        columns = [("model", "model"), ("tuned", "tuned"), ("seeds", "seeds")]
        columns += [(m, m) for m in board.metrics]
        columns += [("params", "params"), ("train_s", "train s"), ("cpu_s_per_epoch", "CPU s/epoch"),
                    ("best_epoch", "best epoch")]
        several_data = frame.data.nunique() > 1  # rows on different preprocessed data are not comparable
        columns += [("data", "data")] if several_data else []
        columns += [("runs", "runs")]
        rows = []
        for n, row in frame.iterrows():
            runs = groups[(row.model, bool(row.tuned), row.config, row.data)]
            row_json = f"rows/{board.name}/{n}.json"
            atomic_write_bytes(out / row_json, (json.dumps(runs, indent=1, sort_keys=True) + "\n").encode())
            cells = [cell(esc(row.model)), cell(esc(row.get("budget") if row.tuned else "default")),
                     cell(esc(row.seeds), sort=row.seeds, numeric=True)]
            for metric in board.metrics:
                value, std = row[metric], row[f"{metric}_std"]
                text = _num(value) + ("" if math.isnan(std) else f" ± {std:.4f}")
                link = f'<a href="../{esc(row_json)}" title="the run records behind this number">{esc(text)}</a>'
                cells.append(cell(link if text else "", sort="" if math.isnan(value) else f"{value:.6f}", numeric=True))
            params = row.params
            cells += [cell(f"{int(params):,}" if params == params and params is not None else "",
                           sort=params if params == params else "", numeric=True),
                      cell(_num(row.train_s, 1), sort=_num(row.train_s, 3), numeric=True),
                      cell(_num(row.cpu_s_per_epoch, 3), sort=_num(row.cpu_s_per_epoch, 4), numeric=True),
                      cell(esc(row.best_epochs) + (" (cap)" if row.best_at_cap else ""),
                           sort=_num(row.epochs, 1), numeric=True),
                      *([cell(f"<code>{esc(row.data)}</code>", sort=esc(row.data))] if several_data else []),
                      cell(" ".join(f'<a href="../{esc(record_path(Path("runs"), r).as_posix())}">seed {r["seed"]}</a>'
                                    for r in sorted(runs, key=lambda r: r["seed"])))]
            rows.append(cells)
        parts.append(table(columns, rows))
        if frame.best_at_cap.any():
            parts.append('<p class="note">(cap): the best epoch was the last one the epoch cap allowed; the model was '
                         'still improving.</p>')
        stale = stale_rows(board, records)
        if stale:
            parts.append(f'<p class="note">Trained under arguments the board no longer sets (recorded -&gt; board), so '
                         f'claims on them are inconclusive: {esc(", ".join(stale))}.</p>')
        not_learned = rows_not_learned(board, records)
        if not_learned:
            parts.append(f'<p class="note">Not better than the trivial model {esc(board.trivial_model)} on '
                         f'{esc(board.primary_metric)}, so claims on them are inconclusive: '
                         f'{esc(", ".join(not_learned))}.</p>')
    comparison = published_comparison(board, frame)
    if not comparison.empty:
        parts.append("<h2>Published numbers beside ours</h2>")
        parts.append(table([(k, k) for k in ("model", "metric", "paper", "ours", "delta", "tolerance", "within",
                                              "source")],
                           [[cell(esc(c.model)), cell(esc(c.metric)), cell(_num(c.paper), c.paper, True),
                             cell(_num(c.ours), _num(c.ours), True), cell(_num(c.delta), _num(c.delta), True),
                             cell(_num(c.tolerance)), cell(esc(c.within)), cell(esc(c.source))]
                            for _, c in comparison.iterrows()]))
    verdicts, problem = checked or _checked(board_verdicts, board.name, records)
    if problem:
        parts.append(f'<h2>Claims checked on this board</h2><p class="note">cannot be checked: {esc(problem)}</p>')
    if verdicts:
        parts.append("<h2>Claims checked on this board</h2>")
        parts.append(table([("paper", "paper"), ("claim", "claim"), ("verdict", "verdict"), ("why", "why")],
                           [[cell(esc(paper)), cell(f"<code>{esc(v.claim.id)}</code>: {esc(v.claim.text)}"),
                             cell(verdict_html(v.verdict)), cell(esc(v.why))] for paper, v in verdicts]))
    ok_keys = {(r["model"], r["seed"], r.get("tuned", False)) for r in records if r["status"] == "ok"}
    failed = [r for r in records if r["status"] != "ok" and (r["model"], r["seed"], r.get("tuned", False)) not in ok_keys]
    waiting = sorted({r["model"] for r in failed if r["status"] == "needs_llm"})
    failed = [r for r in failed if r["status"] != "needs_llm"]
    if waiting:  # rows that prompt a language model and ran without one are not failures
        parts.append(f"<p>Needs an LLM (ran without a language model; <code>--llm</code>, see the README): "
                     f"{esc(', '.join(waiting))}</p>")
    if failed:
        parts.append("<h2>Failed runs</h2><ul>" + "".join(
            f'<li><a href="../{esc(record_path(Path("runs"), r).as_posix())}">{esc(r["model"])} seed {r["seed"]}</a>: '
            f'{esc(str(r.get("error", "")).splitlines()[0][:200] if r.get("error") else "")}</li>' for r in failed)
            + "</ul>")
    if plots:
        parts.append("<h2>Plots</h2>" + "".join(f'<p><img class="plot" src="../plots/{esc(p)}" alt="{esc(p)}"></p>'
                                                 for p in plots))
    return "\n".join(parts)


def all_verdicts(records: list[dict]) -> dict:
    """{paper name: (paper or None, its verdicts, the problem or None)}: every paper's file read and its claims
    checked once."""
    out = {}
    for name in paper_names():
        paper, problem = _checked(lambda n, _: load_paper(n), name, records)
        verdicts, problem = ([], problem) if problem else _checked(paper_verdicts, paper, records)
        out[name] = (paper, verdicts, problem)
    return out


def claims_page(papers: dict) -> str:
    parts = []
    for name, (paper, verdicts, problem) in papers.items():
        if paper is None:
            parts.append(f'<h2 id="{esc(name)}">{esc(name)}</h2><p class="note">This paper\'s file is not valid: '
                         f'{esc(problem)}</p>')
            continue
        parts.append(f'<h2 id="{esc(name)}">{esc(paper.title)}</h2><p>{esc(paper.venue)} · '
                     f'<a href="{esc(paper.link)}">{esc(paper.link)}</a> · boards: '
                     + ", ".join(f'<a href="boards/{esc(b)}.html">{esc(b)}</a>' for b in paper.boards) + "</p>")
        if problem:
            parts.append(f'<p class="note">Its claims cannot be checked: {esc(problem)}</p>')
            continue
        if not verdicts:
            parts.append("<p>This paper lists no claims.</p>")
            continue
        parts.append(table([("claim", "claim"), ("board", "board"), ("verdict", "verdict"), ("why", "why"),
                            ("evidence", "evidence")],
                           [[cell(f"<code>{esc(v.claim.id)}</code>: {esc(v.claim.text)}"),
                             cell(f'<a href="boards/{esc(v.claim.board)}.html">{esc(v.claim.board)}</a>'),
                             cell(verdict_html(v.verdict)), cell(esc(v.why)),
                             cell("<br>".join(esc(e) for e in v.evidence))] for v in verdicts]))
    return "\n".join(parts)


def build_site(out: Path, records_dir: Path | None = None, results_dir: Path | None = None) -> dict:
    """Write the site under `out` (replacing what an earlier build wrote there); returns {"pages", "seconds", ...}."""
    started = time.perf_counter()
    out, results_dir = Path(out), Path(results_dir or RESULTS)
    records = load_records_dir(Path(records_dir or results_dir / "runs"))
    for sub in ("boards", "rows", "runs", "plots", "static"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "static").mkdir(parents=True, exist_ok=True)
    for name in ("style.css", "sort.js"):
        shutil.copyfile(TEMPLATES / name, out / "static" / name)
    for r in records:
        atomic_write_bytes(out / record_path(out / "runs", r), (json.dumps(r, indent=2, sort_keys=True) + "\n").encode())
    pages, index_rows = 0, []
    papers = all_verdicts(records)
    names = board_names()
    all_plots = sorted(p.name for p in results_dir.glob("*.png"))
    for name in names:
        board = load_board(name)
        mine = [r for r in records if r.get("board") == name]
        # a plot belongs to the board whose name is the longest prefix of its file name
        plots = [p for p in all_plots if max((n for n in names if p.startswith(n + "-") or p == n + ".png"),
                                             key=len, default=None) == name]
        for p in plots:
            (out / "plots").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(results_dir / p, out / "plots" / p)
        checked = ([(paper, v) for paper, (_, verdicts, _) in papers.items() for v in verdicts
                    if v.claim.board == name], None)
        body = board_page(board, mine, out, plots, checked)
        atomic_write_bytes(out / "boards" / f"{name}.html",
                           _page(f"{name}: {board.title}", body, "../", len(mine)))
        pages += 1
        verdicts = checked[0]
        counts = {}
        for _, v in verdicts:
            counts[v.verdict] = counts.get(v.verdict, 0) + 1
        runs = sum(r["status"] == "ok" for r in mine)
        index_rows.append([cell(f'<a href="boards/{esc(name)}.html">{esc(name)}</a>'), cell(esc(board.family)),
                           cell(esc(board.dataset)), cell(esc(board.title)), cell(esc(runs), runs, True),
                           cell(", ".join(f"{verdict_html(k)} {n}" for k, n in sorted(counts.items())))])
    body = ("<p>Every board states its protocol first; every number links to the run records it is computed from. "
            'The verdicts of every paper\'s claims are on the <a href="claims.html">claims page</a>.</p>'
            + table([("board", "board"), ("family", "family"), ("dataset", "dataset"), ("title", "title"),
                     ("runs", "finished runs"), ("claims", "claims")], index_rows))
    atomic_write_bytes(out / "index.html", _page("paperboard leaderboards", body, "", len(records)))
    atomic_write_bytes(out / "claims.html", _page("Claims and verdicts", claims_page(papers), "", len(records)))
    pages += 2
    return {"pages": pages, "records": len(records), "plots": len(list((out / "plots").glob("*.png")))
            if (out / "plots").is_dir() else 0, "seconds": round(time.perf_counter() - started, 2)}
