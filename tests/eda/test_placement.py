"""Placement is the same on every machine: solver noise in the last bits does not move a cell."""
from __future__ import annotations

import numpy as np
import pytest

import datamodules.eda.placement as placement
from datamodules.eda.netlist import Netlist


def _twin_gates() -> Netlist:
    """u0 and u1 read the same inputs and feed the same gate, so the placement's equations put them on one spot."""
    return Netlist("twins", ["a", "b", "n0", "n1", "n2"], np.array([0, 1]), np.array([4]), ["out"],
                   ["u0", "u1", "u2"], ["nand2_1"] * 3, [["A", "B"]] * 3, [[0, 1], [0, 1], [2, 3]],
                   np.array([2, 3, 4]), np.array([1, 1, 2]))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_solver_noise_does_not_reorder_cells_at_equal_positions(monkeypatch, sign):
    netlist, area = _twin_gates(), np.full(3, 3.75)
    exact = placement.place(netlist, area)
    solve = placement.spla.spsolve

    def noisy(L, rhs):  # the last-bit differences another CPU's solver makes, opposite for the two twins
        x = solve(L, rhs)
        return x * (1 + sign * np.array([1e-15, -1e-15, 0.0]))

    monkeypatch.setattr(placement.spla, "spsolve", noisy)
    moved = placement.place(netlist, area)
    np.testing.assert_array_equal(moved.inst_xy, exact.inst_xy)
    np.testing.assert_array_equal(moved.hpwl, exact.hpwl)
