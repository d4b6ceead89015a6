"""Atomic file writes: a temp file in the target's folder, then one rename, so a reader (or a crash) never sees
half a file. Used for downloads, caches of preprocessed arrays, run records and rendered pages."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temp file name beside `path`; when the block ends without an error it becomes `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def save_cache(path: Path, arrays: dict) -> None:
    """Write numpy arrays as .npz atomically, so a crash never leaves half a cache."""
    import numpy as np

    with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz to a name without it
        np.savez(tmp, **arrays)
