"""The knob-sensitivity step: SAFER minus its best baseline per knob, read from records only."""
from benchmarks.dtr_sensitivity import knob_table, summarise


def _record(model, seed, knob, value, created="2026-01-01T00:00:00", board="dtr-icu-sepsis-knob"):
    return {"status": "ok", "tuned": False, "model": model, "seed": seed, "board": board, "created_at": created,
            "run_id": f"{model}-{seed}-{knob}", "config": {"dataset_args": {"unreliable_rate": knob}},
            "metrics": {"test": {"mrr@3": value}}}


def test_safer_minus_best_baseline_per_knob():
    records = [_record("safer", 1, 0.0, 0.40), _record("lstm", 1, 0.0, 0.45), _record("bc_mlp", 1, 0.0, 0.43),
               _record("safer", 1, 1.0, 0.50), _record("lstm", 1, 1.0, 0.44),
               _record("safer", 1, 1.0, 0.10, created="2025-01-01T00:00:00"),  # older record of the same run: ignored
               _record("safer", 1, 0.5, 0.47, board="dtr-icu-sepsis"), _record("safer", 2, 0.5, 0.49, board="dtr-icu-sepsis"),
               _record("lstm", 1, 0.5, 0.46, board="dtr-icu-sepsis"), _record("lstm", 2, 0.5, 0.46, board="dtr-icu-sepsis"),
               _record("safer_f", 1, 0.5, 0.45, board="dtr-icu-sepsis"), _record("safer_f", 2, 0.5, 0.45, board="dtr-icu-sepsis")]
    out = summarise(knob_table(records, "mrr@3"), "mrr@3")["knobs"]
    assert out["0"]["best_baseline"] == "lstm" and abs(out["0"]["safer_minus_best"] + 0.05) < 1e-9
    assert abs(out["1"]["safer_minus_best"] - 0.06) < 1e-9
    assert out["0.5"]["seeds"] == [1, 2] and abs(out["0.5"]["safer_minus_best"] - 0.02) < 1e-9
    assert abs(out["0.5"]["safer_minus_safer_f"] - 0.03) < 1e-9
