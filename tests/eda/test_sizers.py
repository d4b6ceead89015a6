"""Sizers: only sizes change, the area budget holds, timing improves; the learned timing model learns the planted
timing of held-out circuits better than a constant; the Eq. 8 target and the budget repair."""
from __future__ import annotations

import pytest
import torch

from contracts.registry import MODELS
from datamodules.eda.gatesize import SyntheticGateSizing
from lightning_modules.eda.base import repair_budget, timing_target
from lightning_modules.eda.learnsize import LearnSize
from tests.conftest import fast_trainer

FAST = dict(iterations=15, outer_iterations=6, inner_steps=2, samples=8, max_iters=30, greedy_iters=5,
            size_iterations=15, check_every=3)


@pytest.fixture(scope="module")
def dm():
    data = SyntheticGateSizing(train_circuits=("s0", "s1", "s4"), variants_per_circuit=6, reference_iters=20,
                               num_gates=40)
    data.setup()
    return data


@pytest.mark.parametrize("name", ["tilos", "sta_gradient", "lagrangian", "agd", "random_search"])
def test_exact_sta_sizers_keep_connectivity_respect_the_budget_and_improve_timing(dm, name):
    entry = MODELS.get(name)
    takes = set(entry.cls.__init__.__code__.co_varnames)
    # random search keeps the best of a mixed TNS/WNS target, so a TNS gain holds for some draws only: fix one
    fixed = {k: v for k, v in {**FAST, "seed": 0}.items() if k in takes}
    model = entry.build(**dm.model_kwargs(), **fixed)
    circuit = dm.circuits["s3"]
    sizes = model.size(circuit)
    cells = circuit.graph.cells_of(sizes)
    families = [circuit.graph.lib.family_names[f] for f in circuit.graph.inst_family.tolist()]
    assert all(c.rsplit("__", 1)[1].rsplit("_", 1)[0] == f for c, f in zip(cells, families)), "a gate changed type"
    assert circuit.netlist.to_verilog(cells, circuit.out_pins).count("(") == circuit.netlist.to_verilog(
        None, circuit.out_pins).count("(")
    assert float(circuit.area(sizes.double())) <= circuit.area_budget + 1e-9
    before, after = circuit.evaluate(circuit.init_size), circuit.evaluate(sizes)
    assert after["tns"] > before["tns"], f"{name} did not improve TNS"


def test_repair_budget_steps_down_the_slackest_gates_until_within_budget(dm):
    circuit = dm.circuits["s3"]
    big = circuit.max_size.long()
    assert float(circuit.area(big.double())) > circuit.area_budget
    fixed = repair_budget(circuit, big)
    assert float(circuit.area(fixed.double())) <= circuit.area_budget
    assert (fixed >= circuit.init_size).all() and (fixed <= big).all()


def test_timing_target_tracks_mean_negative_and_worst_slack():
    slack = torch.tensor([-0.3, -0.1, 0.2], dtype=torch.float64)
    value = timing_target(slack, 0.5, 0.5, gamma=1e-4)
    assert float(value) == pytest.approx(0.5 * (-0.4 / 2) + 0.5 * (-0.3), abs=1e-3)


def test_the_timing_model_learns_held_out_slack_better_than_a_constant(dm):
    torch.manual_seed(0)
    model = LearnSize(**dm.model_kwargs(), d_model=16, num_heads=2, num_layers=1, hidden_dim=32, scales=(4, 8),
                      lr=3e-3, size_iterations=20, check_every=4, r2_variants=3)
    trainer = fast_trainer(max_epochs=8, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    circuit = dm.circuits["s2"]
    gen = torch.Generator().manual_seed(0)
    init = circuit.init_size.double()
    sizings = [torch.minimum(init + (torch.rand(init.shape, generator=gen) < 0.3).double(), circuit.max_size)
               for _ in range(3)]
    for k, (p, y) in model.timing_fit(circuit, sizings).items():
        constant = float(((y - y.mean()) ** 2).mean())
        assert float(((p - y) ** 2).mean()) < 0.5 * constant, k
    # sizing through the estimator keeps the budget and improves the held-out circuit
    sizes = model.size(circuit)
    assert float(circuit.area(sizes.double())) <= circuit.area_budget + 1e-9
    assert circuit.evaluate(sizes)["tns"] > circuit.evaluate(circuit.init_size)["tns"]


def test_straight_through_rounding_uses_library_sizes_forward_and_passes_gradients(dm):
    circuit = dm.circuits["s3"]
    x = (circuit.init_size.double() + 0.4).requires_grad_(True)
    used = x + (x.detach().round() - x.detach())
    assert torch.equal(used.detach(), x.detach().round())
    circuit.analyse(used)["tns"].backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
