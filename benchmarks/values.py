"""Command-line values checked up front: `--model.KEY V` and `--data.KEY V` against the constructor's type
annotations, `--trainer.KEY V` against lightning.pytorch.Trainer's, so that a wrong value is one message naming
the key, the value and the expected type before any process starts training, never an error deep inside a run.

Numbers are numbers whatever their spelling: YAML 1.1 reads `1e6`, `1e-3` and `1.0e6` as strings, so
`parse_value` reads any numeric-looking string as a float, and an int parameter takes a float with no fractional
part (`--data.num_users 1e3` is 1000). An int parameter of a model or a datamodule is a size, a count, an index or
a seed: a negative one is refused.
"""
from __future__ import annotations

import json
import math
import re
import types
import typing

import yaml

from benchmarks.boards import ConfigError

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def parse_value(text: str):
    """A command-line value as YAML (`2`, `0.3`, `true`, `[10,20]`), with every numeric spelling a number."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # not YAML (`a: b: c`): the annotation check decides whether a string is fine here
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def describe(hint) -> str:
    """`int`, `float | None`, `one of 'a', 'b'`, `list of int`: the expected type in a user's words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} ({', '.join(describe(a) for a in args)})"
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def conform(value, hint, convert: bool = True):
    """(True, value as `hint` wants it) or (False, None). With `convert`, an integral float becomes an int and a
    number a string where the annotation asks for that; without it only exact kinds pass."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is typing.Any or hint is None:
        return True, value
    if hint is type(None):
        return value is None, None
    if origin in (typing.Union, types.UnionType):
        for exact in (False, True) if convert else (False,):  # an exact member first: 1.0 stays a float
            for member in args:
                ok, out = conform(value, member, convert=exact)
                if ok:
                    return True, out
        return False, None
    if origin is typing.Literal:
        return value in args, value
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, None
        if not args:
            return True, value
        members = [args[0]] * len(value) if origin is list or args[-1] is Ellipsis else list(args)
        if len(members) != len(value):
            return False, None
        out = []
        for item, member in zip(value, members):
            ok, item = conform(item, member, convert)
            if not ok:
                return False, None
            out.append(item)
        return True, out
    if origin is dict or hint is dict:
        return isinstance(value, dict), value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
        if convert and isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return True, int(value)
        return False, None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), value
    if hint is str:
        if isinstance(value, str):
            return True, value
        if convert and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, str(value)
        return False, None
    if isinstance(hint, type):  # a class (a Strategy object...): a command line cannot make one
        return isinstance(value, hint), value
    return True, value  # an annotation we do not know how to check: the constructor decides


def _hints(cls) -> dict:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that does not resolve here: nothing to check against
        return {}


def _is_int(hint) -> bool:
    return hint is int or int in typing.get_args(hint)


def check_values(cls, kwargs: dict, group: str, owner: str, sizes: bool = True) -> dict:
    """`kwargs` with each value converted to what `cls.__init__` annotates; a value that does not fit is one
    ConfigError naming `--group.key`, the value and the expected type. With `sizes`, negative ints are refused.
    Keys the constructor does not take are left to `check_kwargs` (runner), which names the valid ones."""
    hints = _hints(cls)
    out = dict(kwargs)
    for key, value in kwargs.items():
        if key not in hints:
            continue
        ok, converted = conform(value, hints[key])
        if not ok:
            raise ConfigError(f"--{group}.{key} {_show(value)}: {owner}'s {key} takes {describe(hints[key])}")
        if sizes and _is_int(hints[key]) and isinstance(converted, int) and not isinstance(converted, bool) \
                and converted < 0:
            raise ConfigError(f"--{group}.{key} {_show(value)}: {owner}'s {key} takes an integer >= 0 (it is a "
                              f"size, a count or a seed)")
        out[key] = converted
    return out


def check_trainer_values(kwargs: dict) -> dict:
    """Trainer values against Lightning's annotations; an epoch cap must be a whole number >= 1 (Lightning reads
    -1 as "no limit", which would train a board run forever)."""
    import lightning.pytorch as pl

    out = check_values(pl.Trainer, kwargs, "trainer", "lightning.pytorch.Trainer", sizes=False)
    for key, low in (("max_epochs", 1), ("min_epochs", 0)):
        if key in out and out[key] is not None and out[key] < low:
            raise ConfigError(f"--trainer.{key} {_show(kwargs[key])}: a board run takes an integer >= {low} here "
                              f"(Lightning reads -1 as no limit)")
    return out


def check_overrides(board, models: list[str], overrides: dict) -> dict:
    """Every pass-through value of a run or sweep checked and converted: {"data": {...}, "trainer": {...},
    "model": {model: {...}}} (model values per model: one spelling may be an int for one and a float for another).
    Unknown models and keys are left to `resolve`, whose messages list the valid ones."""
    import datamodules  # noqa: F401  (fills the registries)
    import lightning_modules  # noqa: F401
    from contracts.registry import DATASETS, MODELS

    checked = {"data": dict(overrides.get("data") or {}), "trainer": dict(overrides.get("trainer") or {}), "model": {}}
    if board.dataset in DATASETS:
        checked["data"] = check_values(DATASETS.get(board.dataset).cls, checked["data"], "data", board.dataset)
    checked["trainer"] = check_trainer_values(checked["trainer"])
    for model in models:
        args = dict(overrides.get("model") or {})
        known = model in board.models and model.split("@", 1)[0] in MODELS
        checked["model"][model] = check_values(MODELS.for_row(model).cls, args, "model", model) if known else args
    return checked


def _show(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)
