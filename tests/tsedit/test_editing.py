"""What each editing method promises, on the synthetic data with a tiny trained backbone."""
from __future__ import annotations

import pytest
import torch

from contracts.batch import tsedit as B
from lightning_modules.tsedit.constraints import project_onto_constraints, segment_stats
from lightning_modules.tsedit.metrics import edit_metrics
from tests.tsedit.conftest import without_constraints


def errors(edited, batch):
    m = edit_metrics(edited, batch, anchor_tol=0.1, segment_tol=0.1)
    anchor = (edited - batch[B.ANCHOR_VALUE]).abs()[batch[B.ANCHOR_CONF] > 0]
    return anchor, m["segment_error"][0]


def only_anchors(batch, conf=None):
    out = dict(batch)
    out[B.SEG_ACTIVE] = torch.zeros_like(batch[B.SEG_ACTIVE])
    if conf is not None:
        out[B.ANCHOR_CONF] = torch.where(batch[B.ANCHOR_CONF] > 0, torch.full_like(batch[B.ANCHOR_CONF], conf), 0.0)
    return out


def only_segments(batch):
    out = dict(batch)
    out[B.ANCHOR_CONF] = torch.zeros_like(batch[B.ANCHOR_CONF])
    return out


def test_confidence_one_anchors_are_met_tightly(make_model, tasks):
    batch = only_anchors(tasks, conf=1.0)
    anchor, _ = errors(make_model("cocktail_edit").edit(batch), batch)
    assert anchor.numel() > 10 and anchor.max().item() < 1e-4


def test_lower_confidence_pulls_less(make_model, tasks):
    model = make_model("cocktail_edit")
    err = {w: errors(model.edit(only_anchors(tasks, conf=w)), only_anchors(tasks, conf=w))[0].mean().item()
           for w in (1.0, 0.5)}
    free = errors(make_model("no_control").edit(only_anchors(tasks, conf=1.0)), only_anchors(tasks, conf=1.0))[0]
    assert err[1.0] < err[0.5] < free.mean().item()


def test_segment_mean_is_met_within_tolerance(make_model, tasks):
    batch = only_segments(tasks)
    batch[B.SEG_WEIGHT] = batch[B.SEG_WEIGHT] / batch[B.SEG_SCALE][:, :, None, None]  # every statistic a mean
    batch[B.SEG_TARGET] = batch[B.SEG_TARGET] / batch[B.SEG_SCALE]
    batch[B.SEG_SCALE] = torch.ones_like(batch[B.SEG_SCALE])
    _, before = errors(make_model("no_control").edit(batch), batch)
    _, after = errors(make_model("cocktail_edit", segment_scale=30.0).edit(batch), batch)
    assert after.mean().item() < 0.1 < before.mean().item()
    assert (after <= 0.1).float().mean().item() >= 0.9


def test_confidence_zero_is_unconditional_sampling(make_model, tasks):
    batch = only_anchors(tasks, conf=0.0)
    cocktail = make_model("cocktail_edit", edit_strength=1.0, eta=0.5)
    plain = make_model("no_control", edit_strength=1.0, eta=0.5)
    g = lambda: torch.Generator().manual_seed(3)
    assert torch.equal(cocktail.edit(batch, g()), plain.edit(batch, g()))


def test_unconstrained_edit_preserves_the_source(make_model, tasks):
    batch = without_constraints(tasks)
    edited = make_model("cocktail_edit", edit_strength=0.2).edit(batch)
    preservation = ((edited - batch[B.X]) ** 2).mean().item()
    assert preservation < 0.05  # data are z-scored: 5 % of the variance
    far = make_model("cocktail_edit", edit_strength=1.0).edit(batch)
    assert preservation < ((far - batch[B.X]) ** 2).mean().item() / 5


def test_overwrite_is_the_projection_of_the_uncontrolled_edit(make_model, tasks):
    g = lambda: torch.Generator().manual_seed(1)
    free = make_model("no_control").edit(tasks, g())
    over = make_model("overwrite").edit(tasks, g())
    expected = project_onto_constraints(free, tasks[B.ANCHOR_VALUE], tasks[B.ANCHOR_CONF], tasks[B.SEG_WEIGHT],
                                        tasks[B.SEG_TARGET], tasks[B.SEG_ACTIVE])
    assert torch.allclose(over, expected)
    anchor, segment = errors(over, tasks)
    assert anchor.max().item() < 1e-4 and segment.max().item() < 1e-4


def test_cps_meets_every_constraint_and_differs_from_post_hoc(make_model, tasks):
    g = lambda: torch.Generator().manual_seed(1)
    cps = make_model("cps").edit(tasks, g())
    anchor, segment = errors(cps, tasks)
    assert anchor.max().item() < 1e-4 and segment.max().item() < 1e-4
    assert not torch.allclose(cps, make_model("overwrite").edit(tasks, g()), atol=1e-3)


def test_repaint_meets_anchors_and_ignores_segments(make_model, tasks):
    anchor, _ = errors(make_model("repaint").edit(tasks), tasks)
    assert anchor.max().item() < 1e-4
    seg_only = only_segments(tasks)
    g = lambda: torch.Generator().manual_seed(2)
    model = make_model("repaint")
    assert torch.equal(model.edit(seg_only, g()), model.edit(without_constraints(tasks), g()))


def test_dps_reduces_constraint_error(make_model, tasks):
    g = lambda: torch.Generator().manual_seed(4)
    free_a, free_s = errors(make_model("no_control").edit(tasks, g()), tasks)
    dps_a, dps_s = errors(make_model("dps").edit(tasks, g()), tasks)
    assert dps_a.mean() < 0.75 * free_a.mean() and dps_s.mean() < 0.5 * free_s.mean()


def test_learned_regressor_predicts_statistics_and_steers(make_model, tasks):
    model = make_model("cocktail_edit_reg", segment_scale=30.0)
    x0, weight = tasks[B.X], tasks[B.SEG_WEIGHT] / tasks[B.SEG_SCALE][:, :, None, None]
    t = torch.full((len(x0),), 10)
    x_t = model.ab(10).sqrt() * x0 + (1 - model.ab(10)).sqrt() * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        err = (model.regressor(x_t, t, weight) - segment_stats(x0, weight))[tasks[B.SEG_ACTIVE] > 0]
    spread = segment_stats(x0, weight)[tasks[B.SEG_ACTIVE] > 0].var()
    assert err.pow(2).mean() < 0.5 * spread  # explains most of the statistics' variance from the noisy series
    batch = only_segments(tasks)
    _, free = errors(make_model("no_control").edit(batch), batch)
    _, guided = errors(model.edit(batch), batch)
    assert guided.mean() < 0.6 * free.mean()


def test_python_api_edits_a_csv_in_its_own_units(make_model, tmp_path):
    import numpy as np
    import pandas as pd

    from lightning_modules.tsedit.api import edit_csv, load_editor

    trained = make_model("cocktail_edit")
    path = tmp_path / "backbone.pt"
    torch.save({"state_dict": trained.state_dict(), "hparams": dict(trained.hparams)}, path)
    model = load_editor(path, "cocktail_edit")
    rng = np.random.default_rng(0)
    L = model.window
    frame = pd.DataFrame({"signal": 100 + 5 * np.sin(np.arange(2 * L) / 3) + rng.normal(0, 0.5, 2 * L),
                          "lagged": 50 + rng.normal(0, 1, 2 * L)})
    frame.to_csv(tmp_path / "my.csv", index=False)
    result = edit_csv(model, tmp_path / "my.csv", anchors=[(10, "signal", 130.0, 1.0), (20, "signal", 90.0, 0.5)],
                      segments=[(16, 26, "lagged", "mean", 55.0)], out_png=tmp_path / "edit.png")
    out, metrics = result.frame, result.metrics
    assert out["signal"].iloc[10] == pytest.approx(130.0, abs=1e-3)
    assert result.figure == tmp_path / "edit.png" and result.figure.stat().st_size > 1000
    # the metrics describe this edit in the CSV's own units: the confidence-1 anchor is reached, the 0.5 one less
    first, second = metrics["anchors"]
    assert first["edited"] == pytest.approx(130.0, abs=1e-3) and first["rel_error"] < 1e-3
    assert second["confidence"] == 0.5 and second["pull"] < first["pull"]
    segment = metrics["segments"][0]
    assert segment["edited"] == pytest.approx(out["lagged"].iloc[16:26].mean(), rel=1e-5)
    assert segment["rel_error"] == pytest.approx(abs(segment["edited"] - 55.0) / abs(55.0 - segment["source"]), abs=1e-5)  # float32 z-units
    assert {"segment_rel_error", "anchor_conf_slope", "boundary_jump", "jump_rate", "preservation_mse"} <= set(metrics)
    with pytest.raises(ValueError, match="unknown channel"):
        edit_csv(model, tmp_path / "my.csv", anchors=[(10, "nope", 1.0, 1.0)])
