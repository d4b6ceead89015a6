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
