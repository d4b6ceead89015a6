"""The static site: built from run records, loaded by headless Chromium (Debian's `chromium`; .ci/run installs it), its
board table sorted by the page's own script and read back, each number linking to the records it comes from."""
from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from benchmarks.store import record_path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Tables(HTMLParser):
    """Every <table>: its rows as lists of (text, first link href) per cell."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[tuple[str, str | None]]]] = []
        self._cell: list[str] | None = None
        self._href: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._href = [], None
        elif tag == "a" and self._cell is not None and self._href is None:
            self._href = dict(attrs).get("href")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(("".join(self._cell).strip(), self._href))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def record(model, seed, ndcg):
    return {"run_id": f"{model}-{seed}-0123456789", "board": "quickstart", "model": model, "seed": seed,
            "config_hash": f"cfg{model}", "data_hash": "d", "status": "ok", "created_at": f"2026-01-0{seed + 1}",
            "epochs": 12, "best_epoch": 8, "params": 100, "config": {"trainer": {"max_epochs": 30}},
            "metrics": {"test": {"ndcg@10": ndcg, "hr@10": 2 * ndcg, "mrr@10": ndcg / 2}, "val": {"ndcg@10": ndcg}}}


def dom(page: Path, query: str = "") -> str:
    if CHROMIUM is None:
        pytest.skip("no headless Chromium: install Debian's package (apt-get install -y chromium; .ci/run does)")
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--dump-dom", page.resolve().as_uri() + query], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_site_renders_boards_sortable_in_a_browser_with_numbers_linked_to_their_records(tmp_path):
    from benchmarks.site import build_site

    runs = tmp_path / "results" / "runs"
    records = [record("sasrec", s, v) for s, v in enumerate((0.50, 0.52))] + \
              [record("gru4rec", s, v) for s, v in enumerate((0.40, 0.44))] + [record("pop", 0, 0.05)]
    for r in records:
        path = record_path(runs, r)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))
    shutil.copyfile(Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "dtr-icu-sepsis-conformal.png",
                    tmp_path / "results" / "quickstart-curve.png")  # any PNG: a plot named after the board
    site = tmp_path / "site"
    built = build_site(site, results_dir=tmp_path / "results")
    assert built["records"] == 5 and built["pages"] >= 3 and (site / "plots" / "quickstart-curve.png").is_file()

    # the page's own script sorts the results table by NDCG@10, ascending, when the URL asks
    page = dom(site / "boards" / "quickstart.html", "?sort=ndcg@10&dir=asc")
    assert page.index("<h2>Protocol</h2>") < page.index("<h2>Results</h2>")
    parser = Tables()
    parser.feed(page)
    header, *rows = parser.tables[0]
    column = [text for text, _ in header].index("ndcg@10")
    assert [row[0][0] for row in rows] == ["pop", "gru4rec", "sasrec"]
    assert rows[1][column][0] == "0.4200 ± 0.0283" and rows[2][column][0] == "0.5100 ± 0.0141"
    # the number links to the records it is the mean of; the runs column to each run's own record
    linked = json.loads((site / "boards" / rows[2][column][1]).resolve().read_text())
    assert sorted(r["run_id"] for r in linked) == ["sasrec-0-0123456789", "sasrec-1-0123456789"]
    seed_link = rows[2][-1][1]
    assert json.loads((site / "boards" / seed_link).resolve().read_text())["run_id"].startswith("sasrec-")
    assert 'src="../plots/quickstart-curve.png"' in page

    descending = Tables()
    descending.feed(dom(site / "boards" / "quickstart.html", "?sort=ndcg@10&dir=desc"))
    assert [row[0][0] for row in descending.tables[0][1:]] == ["sasrec", "gru4rec", "pop"]
    index = Tables()
    index.feed(dom(site / "index.html"))
    boards = {row[0][0]: row for row in index.tables[0][1:]}
    assert boards["quickstart"][0][1] == "boards/quickstart.html" and boards["quickstart"][4][0] == "5"
    assert "Claims and verdicts" in (site / "claims.html").read_text()
