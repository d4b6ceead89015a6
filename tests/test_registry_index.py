"""`paperboard list` reads the generated registry index: it must equal what importing every family registers, and
listing and every command's --help must import no family and no torch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.registry_index import build_index, render
from contracts.registry import INDEX_PATH

ROOT = Path(__file__).resolve().parents[1]


def test_index_equals_the_registries():
    assert INDEX_PATH.read_text() == render(build_index()), \
        "contracts/registry_index.json is out of date; regenerate it: python -m benchmarks.registry_index"


def test_list_and_help_import_no_family_and_no_torch():
    script = """
import contextlib, io, sys
from benchmarks.cli import main, make_parser
with contextlib.redirect_stdout(io.StringIO()) as out:
    assert main(["list"]) == 0
    for argv in (["--help"], *([c, "--help"] for c in ("list", "run", "sweep", "board", "reproduce", "claims",
                                                        "export", "import"))):
        try:
            make_parser().parse_args(argv)
        except SystemExit as done:
            assert done.code == 0, argv
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "lightning", "lightning_modules", "datamodules",
                                                              "pandas", "sklearn", "sentence_transformers"))
assert not heavy, heavy
text = out.getvalue()
assert "lightning_modules.seqrec.SASRec" in text and "datamodules.seqrec.MovieLens100K" in text  # the package path
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
