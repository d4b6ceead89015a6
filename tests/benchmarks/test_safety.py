"""No code runs from a received file: checkpoints, backbones and caches load as weights only; --extend continues
only a checkpoint under this home's checkpoint folder whose sha256 is the one its run recorded."""
from pathlib import Path

import pytest
import torch

from benchmarks.cli import main
from tests.benchmarks.test_cli import write_board


class _Payload:
    """Pickles to a call that leaves a marker file: loading it with weights_only=False would run it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def plant(path: Path, marker: Path, **content) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "hparams": {"window": 8}, "epoch": 1, "payload": _Payload(marker), **content}, path)
    return path


def test_a_planted_backbone_is_refused_and_its_payload_never_runs(tmp_path):
    from lightning_modules.safe_load import UnsafeFileError
    from lightning_modules.tsedit.api import load_editor

    marker = tmp_path / "ran"
    with pytest.raises(UnsafeFileError, match="refusing to load .*not plain weights"):
        load_editor(plant(tmp_path / "backbone.pt", marker))
    assert not marker.exists()


def test_a_garbled_or_planted_cache_is_deleted_and_rebuilt(tmp_path, capsys):
    from lightning_modules.safe_load import load_cached

    good = tmp_path / "good.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "train_seconds": 1.0}, good)
    assert load_cached(good, required=("state_dict",))["train_seconds"] == 1.0
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:100])
    marker = tmp_path / "ran"
    for path in (truncated, plant(tmp_path / "planted.pt", marker)):
        assert load_cached(path) is None and not path.exists()
        (line,) = capsys.readouterr().out.splitlines()
        assert line.startswith("paperboard: notice:") and "rebuilding" in line
    assert not marker.exists()


@pytest.mark.timeout(300)
def test_extend_refuses_a_foreign_or_altered_checkpoint(tmp_path, capsys):
    from benchmarks.runner import checkpoints_root
    from benchmarks.store import ResultStore

    storage = f"sqlite:///{tmp_path / 'results.db'}"
    board = write_board(tmp_path, models={"sasrec": {"embed_dim": 16, "loss": "ce", "lr": 0.01}},
                        early_stopping_patience=5)
    assert main(["run", board, "--storage", storage, "--quiet"]) == 0
    store = ResultStore(storage)
    (record,) = store.records(board="tiny-seqrec")
    checkpoint = Path(record["checkpoint"])
    assert checkpoint.resolve().is_relative_to(checkpoints_root().resolve())
    from lightning_modules.safe_load import file_sha256

    assert record["checkpoint_sha256"] == file_sha256(checkpoint)
    capsys.readouterr()

    marker = tmp_path / "ran"
    outside = plant(tmp_path / "received" / "best.ckpt", marker)
    altered = plant(checkpoint.parent / "altered.ckpt", marker)
    for path, message in ((outside, "lies outside this store's checkpoint folder"),
                          (altered, "sha256 differs from the recorded one")):
        store.add({**record, "checkpoint": str(path)})  # as `paperboard import` of a crafted record would
        before = [r["run_id"] for r in store.records()]
        assert main(["run", board, "--storage", storage, "--quiet", "--max-epochs", "4", "--extend"]) == 2
        err = capsys.readouterr().err
        assert f"--extend refuses run {record['run_id'][:8]}" in err and message in err, err
        assert "Traceback" not in err and [r["run_id"] for r in store.records()] == before
    assert not marker.exists()
    altered.unlink()
