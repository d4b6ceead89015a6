"""Boards and papers: YAML data files read into strict dataclasses (an unknown key is an error, never ignored).

A board = one dataset configuration + one evaluation protocol + metrics (one primary, with its direction) +
the competing models + seeds + sweep budget + the numbers papers published for it.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

BOARDS_DIR = Path(__file__).parent / "boards"
PAPERS_DIR = Path(__file__).parent / "papers"


class ConfigError(ValueError):
    """A config problem the user must fix; str() names the key or value and the fix."""


LAST_VAL = "last_val/"  # a board column read from the run's last validation instead of its selected epoch's test


def published_metric(column: str) -> str:
    """The metric a board column reads: a `last_val/` column is another reading of the same metric, compared with
    the same published number under the same tolerance."""
    return column[len(LAST_VAL):] if column.startswith(LAST_VAL) else column


@dataclass(frozen=True)
class Published:
    model: str
    metric: str
    value: float
    source: str
    protocol: str = ""  # how the paper's protocol differs from this board's, if it does


@dataclass(frozen=True)
class Board:
    name: str
    family: str
    title: str
    dataset: str
    primary_metric: str
    metrics: list[str]
    models: dict[str, dict]
    direction: str = "maximize"
    dataset_args: dict = field(default_factory=dict)
    protocol: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    trainer: dict = field(default_factory=dict)  # Lightning Trainer kwargs (max_epochs, ...)
    # per-row Trainer kwargs on top of `trainer` (say why in the protocol): e.g. {fdsa: {min_epochs: 40}} keeps
    # early stopping from ending a row that sits on a plateau before it learns; other rows' configs are untouched
    row_trainer: dict[str, dict] = field(default_factory=dict)
    early_stopping_patience: int | None = 10
    sweep: dict = field(default_factory=lambda: {"trials": 40})
    published: list[Published] = field(default_factory=list)
    tolerance: dict[str, float] = field(default_factory=dict)
    papers: list[str] = field(default_factory=list)
    description: str = ""
    trivial_model: str = ""  # the floor every row must beat to count as having learned (pop, random); claims use it
    # arguments its runs set on purpose (`--data.KEY`, `--model.KEY`), as a sensitivity board varies its knob: a run
    # at another value of a knob is not trained under outdated arguments (benchmarks.records.stale_arguments)
    knobs: list[str] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return "max" if self.direction == "maximize" else "min"

    def trainer_for(self, row: str) -> dict:
        """The board's Trainer kwargs for one row: `trainer`, then the row's `row_trainer` entry."""
        return {**self.trainer, **self.row_trainer.get(row, {})}


@dataclass(frozen=True)
class Paper:
    name: str
    title: str
    venue: str
    link: str
    models: list[str]
    boards: list[str]
    authors: str = ""
    notes: str = ""
    claims: list = field(default_factory=list)  # benchmarks.claims.Claim, checked against run records


CLAIM_KINDS = ("beats", "matches", "ordering", "property", "not_testable")


@dataclass(frozen=True)
class Claim:
    id: str
    kind: str
    text: str
    source: str
    board: str = ""
    method: str = ""  # the paper's row (beats, matches, property)
    baselines: list[str] = field(default_factory=list)  # beats: every one must be beaten
    rows: list[str] = field(default_factory=list)  # ordering: expected from worst to best
    metric: str = ""
    direction: str = ""  # default: the board's
    margin: float = 0.0  # beats / ordering: minimum difference in the metric's direction
    value: float | None = None  # matches: the published number (default: the board's); property: the threshold
    tolerance: float | None = None  # matches: default the board's tolerance for the metric
    op: str = ""  # property: "<=" or ">="
    reason: str = ""  # not_testable: why
    caveat: str = ""  # what the board keeps and loses relative to the paper's setting
    tuned: bool = False  # read the tuned rows (`run --tuned`: each model's best sweep configuration)


def strict_fields(cls, data: dict, where: str) -> dict:
    """Check `data` against the dataclass `cls`: unknown keys and missing required keys are errors."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint}; valid keys: {', '.join(fields)}")
    required = [n for n, f in fields.items()
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {', '.join(missing)}")
    return data


def _read_yaml(path: Path) -> dict:
    with open(path) as f:  # libyaml's safe loader where installed: same result, ~5x faster (listing reads every board)
        return yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


def board_from_dict(data: dict, where: str) -> Board:
    data = dict(strict_fields(Board, data, where))
    data["published"] = [Published(**strict_fields(Published, p, f"{where}: published")) for p in data.get("published", [])]
    data["models"] = {name: dict(args or {}) for name, args in data["models"].items()}
    if data.get("direction", "maximize") not in ("maximize", "minimize"):
        raise ConfigError(f"{where}: direction must be 'maximize' or 'minimize'")
    data["row_trainer"] = {row: dict(args or {}) for row, args in (data.get("row_trainer") or {}).items()}
    stray = sorted(set(data["row_trainer"]) - set(data["models"]))
    if stray:
        raise ConfigError(f"{where}: row_trainer names row(s) {', '.join(stray)} that are not among the board's models")
    if any("max_epochs" in args for args in data["row_trainer"].values()):
        raise ConfigError(f"{where}: row_trainer may not set max_epochs: the epoch cap is the board's `trainer`, "
                          f"the same budget for every row")
    if data.get("trivial_model") and data["trivial_model"] not in data["models"]:
        raise ConfigError(f"{where}: trivial_model {data['trivial_model']!r} is not among the board's models")
    if data["primary_metric"] not in data["metrics"]:
        raise ConfigError(f"{where}: primary_metric {data['primary_metric']!r} is not among metrics {data['metrics']}")
    return Board(**data)


def board_names() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.yaml"))


def load_board(name_or_path: str) -> Board:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = BOARDS_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        close = difflib.get_close_matches(name_or_path, board_names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown board {name_or_path!r}.{hint} Known boards: {', '.join(board_names())} "
                          f"(see `paperboard list boards`).")
    board = board_from_dict(_read_yaml(path), str(path))
    builtin = BOARDS_DIR / f"{board.name}.yaml"
    if path.resolve().parent == BOARDS_DIR.resolve():
        if board.name != path.stem:
            raise ConfigError(f"{path}: name {board.name!r} differs from the file name")
    elif builtin.exists() and board_from_dict(_read_yaml(builtin), str(builtin)) != board:
        # a custom board file is keyed by its own name: under a built-in board's name its runs would mix with
        # that board's records and claims
        raise ConfigError(f"{path}: a custom board file keeps the name {board.name!r} of the built-in board but "
                          f"differs from it; give it a name of its own (name: my-{board.name})")
    return board


def paper_names() -> list[str]:
    return sorted(p.stem for p in PAPERS_DIR.glob("*.yaml"))


def load_paper(name: str) -> Paper:
    path = PAPERS_DIR / f"{name}.yaml"
    if not path.exists():
        close = difflib.get_close_matches(name, paper_names(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown paper {name!r}.{hint} Known papers: {', '.join(paper_names())}.")
    data = dict(strict_fields(Paper, _read_yaml(path), str(path)))
    data["claims"] = [claim_from_dict(c, str(path)) for c in data.get("claims") or []]
    ids = [c.id for c in data["claims"]]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{path}: claim ids must be unique; repeated: {sorted({i for i in ids if ids.count(i) > 1})}")
    return Paper(**data)


def claim_from_dict(data: dict, where: str) -> Claim:
    claim = Claim(**strict_fields(Claim, data, where))
    where = f"{where} claim {claim.id!r}"
    if claim.kind not in CLAIM_KINDS:
        raise ConfigError(f"{where}: kind {claim.kind!r} is not one of {', '.join(CLAIM_KINDS)}")
    if claim.kind == "not_testable":
        if not claim.reason:
            raise ConfigError(f"{where}: a not_testable claim needs a reason")
        return claim
    needs = {"beats": ("board", "method", "baselines", "metric"), "matches": ("board", "method", "metric"),
             "ordering": ("board", "rows", "metric"), "property": ("board", "method", "metric", "op", "value")}
    missing = [k for k in needs[claim.kind] if not getattr(claim, k) and getattr(claim, k) != 0]
    if missing:
        raise ConfigError(f"{where}: a {claim.kind} claim needs {', '.join(missing)}")
    if claim.kind == "property" and claim.op not in ("<=", ">="):
        raise ConfigError(f"{where}: op must be '<=' or '>='")
    if claim.direction not in ("", "maximize", "minimize"):
        raise ConfigError(f"{where}: direction must be maximize or minimize")
    board = load_board(claim.board)
    named = [claim.method, *claim.baselines, *claim.rows]
    unknown = [r for r in named if r and r not in board.models]
    if unknown:
        raise ConfigError(f"{where}: row(s) {', '.join(unknown)} are not models of board {board.name} "
                          f"(its models: {', '.join(board.models)})")
    return claim
