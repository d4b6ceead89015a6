"""Loading torch files without running code from them.

A checkpoint, backbone or cache is a pickle; `torch.load(weights_only=False)` on a file someone sent you runs any
code planted in it. Everything here loads with `weights_only=True` (tensors, containers, numbers, strings and the
few types allow-listed below), so a planted payload is refused instead of executed. Caches that fail to load
(truncated, garbled, or holding a refused type) are deleted and rebuilt by their owner.
"""
from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path

import torch


class UnsafeFileError(ValueError):
    """A torch file that cannot be loaded safely (a refused type) or at all (truncated, garbled); str() says which."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_load(path: str | Path, map_location="cpu"):
    """`torch.load(path, weights_only=True)`; any failure is one UnsafeFileError naming the file."""
    try:
        return torch.load(Path(path).expanduser(), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" not in str(err):  # no refused type named: a garbled file
            raise UnsafeFileError(f"cannot load {path}: not a torch file (truncated or garbled?)") from err
        detail = _refused_type(str(err))
        raise UnsafeFileError(f"refusing to load {path}: it holds Python objects that are not plain weights "
                              f"({detail}). Only load checkpoints you produced or trust.") from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, KeyError, ValueError) as err:
        detail = (str(err).strip().splitlines() or [""])[0].split(". ")[0]
        raise UnsafeFileError(f"cannot load {path}: {type(err).__name__}: {detail} (truncated or garbled?)") from err


def _refused_type(message: str) -> str:
    """The line of torch's refusal that names the type (its full message is a page of advice)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    named = [line for line in lines if "GLOBAL" in line]
    return (named or lines or ["refused"])[0][:200]


def load_cached(path: Path, map_location="cpu", required: tuple[str, ...] = ()) -> dict | None:
    """A cache file's content, or None when it is absent or unusable; an unusable one is deleted with a one-line
    notice, so that the caller rebuilds it."""
    if not path.exists():
        return None
    try:
        saved = safe_load(path, map_location)
        missing = [k for k in required if not isinstance(saved, dict) or k not in saved]
        if missing:
            raise UnsafeFileError(f"cannot use {path}: it lacks {', '.join(missing)}")
    except UnsafeFileError as err:
        print(f"paperboard: notice: {err}; deleted it and rebuilding", flush=True)
        path.unlink(missing_ok=True)
        return None
    return saved
