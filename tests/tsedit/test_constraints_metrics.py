"""Hand-computed checks of the constraint projection and the editing metrics."""
from __future__ import annotations

import math

import pytest
import torch

from contracts.batch import tsedit as B
from lightning_modules.tsedit.constraints import project_onto_constraints, segment_stats
from lightning_modules.tsedit.metrics import edit_metrics, second_difference, spectral_distance


def one_task(L=8):
    x = torch.zeros(1, 1, L)
    anchor_value = torch.zeros(1, 1, L)
    anchor_conf = torch.zeros(1, 1, L)
    anchor_value[0, 0, 3], anchor_conf[0, 0, 3] = 2.0, 0.5
    seg_weight = torch.zeros(1, 2, 1, L)
    seg_weight[0, 0, 0, :4] = 0.25  # mean over t = 0..3
    seg_weight[0, 1, 0, 4:] = 1.0   # sum over t = 4..7 (inactive below unless switched on)
    return x, anchor_value, anchor_conf, seg_weight


def test_projection_matches_hand_computation():
    x, value, conf, weight = one_task()
    target, active = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])
    z = project_onto_constraints(x, value, conf, weight, target, active)
    # The anchor fixes x[3] = 2 (a quarter of it counts towards the mean); the free points 0..2 share the rest:
    # (3 * a + 2) / 4 = 1  ->  a = 2/3, the minimum-norm change. Points outside the segment do not move.
    assert torch.allclose(z[0, 0, :4], torch.tensor([2 / 3, 2 / 3, 2 / 3, 2.0]))
    assert torch.all(z[0, 0, 4:] == 0)
    assert segment_stats(z, weight)[0, 0].item() == pytest.approx(1.0)


def test_projection_two_segments_and_idempotent():
    x, value, conf, weight = one_task()
    x = torch.randn(1, 1, 8)
    target, active = torch.tensor([[-0.5, 3.0]]), torch.ones(1, 2)
    z = project_onto_constraints(x, value, conf, weight, target, active)
    assert torch.allclose(segment_stats(z, weight), target, atol=1e-5)
    assert z[0, 0, 3].item() == pytest.approx(2.0)
    again = project_onto_constraints(z, value, conf, weight, target, active)
    assert torch.allclose(again, z, atol=1e-5)


def test_edit_metrics_by_hand():
    x, value, conf, weight = one_task()
    conf[0, 0, 6], value[0, 0, 6] = 1.0, -1.0
    edited = torch.zeros(1, 1, 8)
    edited[0, 0, 3] = 1.9  # |err| 0.1 with w 0.5 (met at tol 0.15); anchor at 6 misses by 1 with w 1
    edited[0, 0, 0] = 1.0  # preserved region error
    batch = {B.X: torch.zeros(1, 1, 8), B.ANCHOR_VALUE: value, B.ANCHOR_CONF: conf, B.SEG_WEIGHT: weight,
             B.SEG_TARGET: torch.tensor([[1.0, 2.0]]), B.SEG_SCALE: torch.tensor([[1.0, 4.0]]),
             B.SEG_ACTIVE: torch.tensor([[1.0, 1.0]]), B.EDIT_MASK: torch.zeros(1, 1, 8)}
    batch[B.EDIT_MASK][0, 0, 2:8] = 1
    m = edit_metrics(edited, batch, anchor_tol=0.15, segment_tol=0.1)
    assert m["anchor_error"][0].item() == pytest.approx((0.5 * 0.1 + 1.0 * 1.0) / 1.5)
    # mean over 0..3 = (1 + 1.9)/4 = 0.725 -> |0.725 - 1| = 0.275; sum over 4..7 = 0 -> |0 - 2| / 4 = 0.5
    assert torch.allclose(m["segment_error"][0], torch.tensor([0.275, 0.5]))
    assert m["constraint_met"][0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert m["preservation_mse"][0].item() == pytest.approx(0.5)  # points 0, 1: errors 1 and 0
    assert m["anchor_roughness"][0].tolist() == pytest.approx([abs(0 - 2 * 1.9 + 0), 0.0])


def test_second_difference_and_realism_scores():
    x = torch.tensor([[[0.0, 1.0, 4.0, 9.0]]])
    assert second_difference(x)[0, 0].tolist() == [0.0, 2.0, 2.0, 0.0]
    torch.manual_seed(0)
    real = torch.randn(200, 2, 32)
    assert spectral_distance(real, real) == 0.0
    smooth = torch.cumsum(torch.randn(200, 2, 32), dim=-1)
    assert spectral_distance(real, smooth) > 0.5


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_edit_has_non_finite_errors_and_meets_nothing(bad):
    from lightning_modules.tsedit.base import TSEditModule

    x, value, conf, weight = one_task()
    edited = torch.zeros(1, 1, 8)
    edited[0, 0, 7] = bad  # one point, outside the anchor
    batch = {B.X: torch.zeros(1, 1, 8), B.ANCHOR_VALUE: value, B.ANCHOR_CONF: conf, B.SEG_WEIGHT: weight,
             B.SEG_TARGET: torch.tensor([[0.0, 0.0]]), B.SEG_SCALE: torch.tensor([[1.0, 4.0]]),
             B.SEG_ACTIVE: torch.tensor([[1.0, 1.0]]), B.EDIT_MASK: torch.zeros(1, 1, 8)}
    m = edit_metrics(edited, batch, anchor_tol=0.15, segment_tol=0.1)
    for name in ("anchor_error", "preservation_mse"):
        assert not torch.isfinite(m[name][0]).any(), name
    assert not torch.isfinite(m["segment_error"][0][1])  # the segment over the bad point
    assert m["constraint_met"][0][-1].item() == 0.0
    # the family's aggregation keeps the non-finite value, so a method's mean error is never a good number
    mean = TSEditModule(channels=1, window=8, num_classes=1, hidden_dim=8, num_blocks=1, num_heads=1,
                        diffusion_steps=4, sampling_steps=1, regressor_dim=8).val_metrics["anchor_error"]
    mean.update(torch.tensor([0.0, 0.0]))
    mean.update(m["anchor_error"][0], m["anchor_error"][1])
    assert not math.isfinite(mean.compute().item())
    real = torch.randn(20, 1, 8)
    fake = real.clone()
    fake[3, 0, 2] = bad
    assert math.isnan(spectral_distance(real, fake))
