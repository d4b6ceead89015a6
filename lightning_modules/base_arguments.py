"""Handing a base class its arguments by name: `super().__init__(**base_arguments(Base, locals()))`.

A model restates its base's arguments in its own signature, with its paper's defaults, so that boards and the CLI
can check keys against it; this passes them on by keyword, so no model file depends on the base's argument order.
"""
from __future__ import annotations

import inspect


def base_arguments(base: type, values: dict, **fixed) -> dict:
    """The keyword arguments of `base.__init__` found in `values` (a constructor's `locals()`), then `fixed`: the
    base arguments a model sets itself rather than exposing."""
    names = list(inspect.signature(base.__init__).parameters)[1:]
    return {**{name: values[name] for name in names if name in values}, **fixed}
