"""Shared fixtures: an isolated paperboard home per test session, W&B off, and the real data folder when present."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("PAPERBOARD_OFFLINE", "1")  # never try a download in tests

SHARED_DATA = Path(os.environ.get("PAPERBOARD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("paperboard-home")
    os.environ["PAPERBOARD_HOME"] = str(home)
    os.environ["PAPERBOARD_CACHE"] = str(home / "cache")
    os.environ["PAPERBOARD_STORAGE"] = f"sqlite:///{home / 'results.db'}"
    yield home


@pytest.fixture
def shared_data() -> Path:
    """The real datasets (../shared/data beside the checkout); tests that need them skip when absent."""
    if not SHARED_DATA.exists():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`-n N --dist loadgroup`) the tests that share the one PostgreSQL test database run on one
    worker, one after another; everything else spreads over the workers."""
    shares_postgres: dict[str, bool] = {}
    for item in items:
        path = str(item.path)
        if path not in shares_postgres:
            shares_postgres[path] = "PAPERBOARD_TEST_POSTGRES_URL" in Path(path).read_text(encoding="utf-8")
        if shares_postgres[path]:
            item.add_marker(pytest.mark.xdist_group("postgres"))


def fast_trainer(**overrides):
    """A CPU Trainer for tests: no logger, no checkpoints, no progress bar."""
    import lightning.pytorch as pl

    kwargs = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False, num_sanity_val_steps=0)
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)
