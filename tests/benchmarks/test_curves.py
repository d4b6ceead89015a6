"""Learning curves read back from run records: named and unnamed curves kept apart, seeds aligned on the steps
they all reached, the newest run per seed."""
import json

import pytest

from benchmarks.curves import curve_points, learning_curves


def record(seed, test, created="2026-01-01", model="cql"):
    return {"run_id": f"{model}-{seed}-{created}", "board": "b", "model": model, "seed": seed, "status": "ok",
            "config_hash": "h", "created_at": created, "metrics": {"test": test}}


def test_named_and_unnamed_curves_are_kept_apart():
    r = record(0, {"val_curve_000000010": 1.0, "val_curve_survival_000000010": 0.7, "val_curve_mrr@3_000000010": 0.4,
                   "survival": 0.8})
    assert curve_points(r) == {10: 1.0}
    assert curve_points(r, "survival") == {10: 0.7} and curve_points(r, "mrr@3") == {10: 0.4}


def test_curves_average_the_steps_every_seed_reached_with_the_newest_run_per_seed(tmp_path):
    runs = [record(0, {"val_curve_survival_000000010": 0.70, "val_curve_survival_000000020": 0.74}),
            record(1, {"val_curve_survival_000000010": 0.72, "val_curve_survival_000000020": 0.78,
                       "val_curve_survival_000000030": 0.79}),
            record(1, {"val_curve_survival_000000010": 0.0}, created="2025-01-01")]  # older run of seed 1: ignored
    curves = learning_curves("b", runs, tmp_path / "c", curve="survival", log=lambda *_: None)
    c = curves["cql"]
    assert c["steps"] == [10, 20] and c["seeds"] == [0, 1]
    assert c["mean"] == pytest.approx([0.71, 0.76])
    written = json.loads((tmp_path / "c.json").read_text())
    assert written["curves"]["cql"]["per_seed"] == [[0.70, 0.74], [0.72, 0.78]] and (tmp_path / "c.png").exists()


def test_no_curve_in_the_records_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no learning curves"):
        learning_curves("b", [record(0, {"survival": 0.8})], tmp_path / "c", curve="survival")


def test_backbone_loss_curves_are_read_from_the_cached_backbones_of_the_board_data(tmp_path):
    import torch

    from benchmarks.tsedit_backbone_curves import backbone_curves

    folder = tmp_path / "ett" / "tsedit-backbones"
    folder.mkdir(parents=True)
    for i, (data_hash, backbone, seed) in enumerate([("d1", "conv", 0), ("d1", "conv", 1), ("other", "conv", 2)]):
        torch.save({"hparams": {"data_hash": data_hash, "backbone": backbone}, "seed": seed, "loss_every": 25,
                    "loss_curve": [1.0 - seed / 10, 0.5]}, folder / f"{i}.pt")
    curves = backbone_curves({"d1"}, tmp_path)
    assert curves == {"conv": {0: {25: 1.0, 50: 0.5}, 1: {25: 0.9, 50: 0.5}}}  # another data hash is another board
