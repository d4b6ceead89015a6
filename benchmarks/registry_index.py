"""The registry index: every registered model and dataset with its family, import path, one line of description and
(datasets) folder, written to `contracts/registry_index.json` so that `paperboard list` reads it instead of importing
every family (and torch).

    python -m benchmarks.registry_index            # regenerate it after adding or renaming a model or dataset
    python -m benchmarks.registry_index --check    # exit 1 when it is out of date (tests/test_registry_index.py)
"""
from __future__ import annotations

import argparse
import json
import sys

from contracts.atomic import atomic_write_bytes
from contracts.registry import INDEX_PATH


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def describe(entry) -> dict:
    """One index row: a variant's description, else the class's own docstring's first line, else its module's."""
    cls = entry.cls
    doc = (_first_line(entry.doc) or _first_line(cls.__dict__.get("__doc__"))
           or _first_line(sys.modules[cls.__module__].__doc__))
    row = {"name": entry.name, "family": entry.family, "import_path": f"{cls.__module__}.{cls.__qualname__}",
           "doc": doc}
    earlier = getattr(cls, "earlier_behaviour", None)
    if earlier:  # how to read records from before an argument existed (benchmarks.records.stale_arguments)
        row["earlier_behaviour"] = dict(sorted(earlier.items()))
    return row


def build_index() -> dict[str, list[dict]]:
    """What importing every family registers, as the index's rows."""
    import datamodules  # noqa: F401  (fills the registries)
    import lightning_modules  # noqa: F401
    from contracts.registry import DATASETS, MODELS

    return {"models": [describe(e) for e in MODELS.entries()],
            "datasets": [{**describe(e), "folder": getattr(e.cls, "folder", "")} for e in DATASETS.entries()]}


def render(index: dict) -> str:
    return json.dumps(index, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.registry_index", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when the index differs from the registries")
    args = parser.parse_args(argv)
    text = render(build_index())
    current = INDEX_PATH.read_text() if INDEX_PATH.exists() else ""
    if args.check:
        if text != current:
            print(f"{INDEX_PATH} is out of date; regenerate it: python -m benchmarks.registry_index", file=sys.stderr)
            return 1
        return 0
    if text != current:
        atomic_write_bytes(INDEX_PATH, text.encode())
    print(f"wrote {INDEX_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
