"""Backbone families, schedules relative to the edit's first step (CPS "late"), and classifier guidance's scale."""
from __future__ import annotations

import pytest
import torch

from contracts.batch import tsedit as B
from lightning_modules.tsedit.base import schedule_weight
from lightning_modules.tsedit.layers import build_denoiser
from lightning_modules.tsedit.metrics import edit_report
from tests.tsedit.test_editing import only_segments


@pytest.mark.parametrize("backbone", ["conv", "transformer", "csdi"])
def test_every_backbone_maps_a_series_to_noise_of_its_shape(backbone):
    net = build_denoiser(backbone, channels=3, window=16, num_classes=3, hidden_dim=16, num_blocks=2, num_heads=2)
    x = torch.randn(4, 3, 16)
    out = net(x, torch.tensor([0, 5, 9, 1]), torch.tensor([0, 1, 2, 3]))  # attribute 3 = the null token
    assert out.shape == x.shape and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_denoiser("unet", 3, 16, 3, 16, 2, 2)


def test_the_transformer_backbone_learns_the_noise_better_than_predicting_zero(synthetic_dm):
    """Epsilon loss after 120 steps well below 1.0, the loss of predicting zero noise (the trivial baseline)."""
    from lightning_modules.tsedit.cocktail_edit import CocktailEdit
    from tests.conftest import fast_trainer
    from tests.tsedit.conftest import BACKBONE

    torch.manual_seed(0)
    model = CocktailEdit(**synthetic_dm.model_kwargs(), **{**BACKBONE, "num_blocks": 1}, backbone="transformer",
                         lr=2e-3, share_backbone=False, loss_every=10)
    fast_trainer(max_steps=120, limit_val_batches=0).fit(model, datamodule=synthetic_dm)
    assert len(model.loss_curve) == 12 and model.backbone_cpu_s > 0
    assert sum(model.loss_curve[-3:]) / 3 < 0.6 < model.loss_curve[0]


def test_schedules_are_relative_to_the_first_step_of_the_edit():
    # an SDEdit edit from t0 = 99 of T = 200: "late" switches on in its second half, not from the start
    assert schedule_weight("late", 99, t_start=99) == 0.0
    assert schedule_weight("late", 60, t_start=99) == 0.0
    assert schedule_weight("late", 49, t_start=99) == 1.0
    assert schedule_weight("linear", 99, t_start=99) == 0.0 and schedule_weight("linear", 0, t_start=99) == 1.0
    assert schedule_weight("constant", 99, t_start=99) == 1.0


def test_cps_late_projects_only_in_the_second_half_of_the_steps_taken(make_model, tasks, monkeypatch):
    import lightning_modules.tsedit.cps as cps_module

    calls = []
    project = cps_module.project_batch
    monkeypatch.setattr(cps_module, "project_batch", lambda x, batch: calls.append(1) or project(x, batch))
    g = lambda: torch.Generator().manual_seed(1)
    exact_model = make_model("cps")
    steps = len(exact_model.timesteps()) - 1
    exact = exact_model.edit(tasks, g())
    exact_calls, calls[:] = len(calls), []
    late = make_model("cps", penalty_schedule="late").edit(tasks, g())
    assert exact_calls == steps + 1  # every step, plus the final projection
    assert 1 < len(calls) <= steps // 2 + 2
    assert not torch.allclose(late, exact, atol=1e-3)  # "late" is no longer "exact"
    assert edit_report(late, {k: v for k, v in tasks.items() if k in B.EDIT_KEYS})["constraint_error"] < 1e-4


def test_classifier_guidance_lowers_segment_error_monotonically_in_its_scale(make_model, tasks):
    batch = only_segments(tasks)
    errors = []
    for scale in (0.0, 1.0, 3.0, 10.0, 30.0):
        edited = make_model("cocktail_edit", segment_scale=scale).edit(batch, torch.Generator().manual_seed(0))
        errors.append(edit_report(edited, {k: v for k, v in batch.items() if k in B.EDIT_KEYS})["segment_rel_error"])
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.3 * errors[0]
