"""Explicit name -> class registries, filled by decorators: `MODELS` (LightningModules, filled by importing
`lightning_modules`), `DATASETS` (LightningDataModules, filled by importing `datamodules`) and `SIMULATORS` (known
environments that models evaluate policies in, filled by the data side that owns them).

A typo in a name fails loudly with the list of valid names, and tests can loop over every entry. The command line
lists models and datasets from `registry_index.json` beside this file, so that listing imports no family (and no
torch); `python -m benchmarks.registry_index` regenerates it, and tests/test_registry_index.py keeps it in sync.
"""
from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generic, TypeVar

T = TypeVar("T")

INDEX_PATH = Path(__file__).with_name("registry_index.json")


class UnknownNameError(KeyError):
    """A registry lookup with a name that is not registered. str() is the full message."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered name: a class, and for a variant the arguments it fixes (a variant is its base class built with
    those arguments, the same thing as a board row `model@variant` with arguments, under a name of its own)."""

    name: str
    family: str
    cls: T
    arguments: dict = field(default_factory=dict, hash=False)
    doc: str = ""

    def build(self, **kwargs):
        """An instance: the class with the variant's arguments, which explicit keyword arguments override."""
        return self.cls(**{**self.arguments, **kwargs})


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, family: str) -> Callable[[T], T]:
        def decorator(cls: T) -> T:
            if name in self._entries and self._entries[name].cls is not cls:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(name, family, cls)
            cls.registry_name = name  # type: ignore[attr-defined]
            cls.family = family  # type: ignore[attr-defined]
            return cls

        return decorator

    def register_variant(self, name: str, base: T, doc: str, **arguments) -> Entry[T]:
        """Register `name` as `base` with `arguments` fixed (an ablation); instances are `base`'s own class."""
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        base_entry = self.get(base.registry_name)  # type: ignore[attr-defined]
        if base_entry.cls is not base:
            raise ValueError(f"{self.kind} variant {name!r}: its base must be a registered class")
        self._entries[name] = Entry(name, base_entry.family, base, dict(arguments), doc)
        return self._entries[name]

    def has(self, name: str) -> bool:
        return name in self._entries

    def for_row(self, row: str) -> Entry[T]:
        """The entry a board row runs: a registered name (variants included) or, for an unregistered
        "name@label" row (an ablation or scaling point set by the board's arguments), registered `name`."""
        return self.get(row if row in self._entries else row.split("@", 1)[0])

    def get(self, name: str) -> Entry[T]:
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {', '.join(sorted(self._entries))}"
                f" (see `paperboard list {self.kind}s`)."
            )
        return self._entries[name]

    def names(self, family: str | None = None) -> list[str]:
        return sorted(n for n, e in self._entries.items() if family is None or e.family == family)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)


MODELS: Registry = Registry("model")
register_model = MODELS.register
register_model_variant = MODELS.register_variant

DATASETS: Registry = Registry("dataset")
register_dataset = DATASETS.register

SIMULATORS: Registry = Registry("simulator")
register_simulator = SIMULATORS.register


def load_index() -> dict[str, list[dict]]:
    """The generated index: {"models": [...], "datasets": [...]}, one dict per entry (name, family, import_path, doc,
    and folder for datasets), sorted by name."""
    return json.loads(INDEX_PATH.read_text())
