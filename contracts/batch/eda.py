"""The eda family's items and the circuit protocol that sizers work on.

Every item is one circuit (batch_size None):
  CIRCUIT   a `Circuit` (below): netlist, placement, library, timing engine, area budget
Training items (for modules that learn a timing model) add sized variants of a training circuit and their labels:
  SIZES     [V, I] float   sizes (the family's size index, 0 = smallest cell) of V variants of the I instances
  OMEGA     [V, I] float   gatewise WNS: the slack of each instance's worst path (ns), exact STA
  TAU       [V, I] float   gatewise TNS: the sum of negative endpoint slacks over endpoints the instance reaches (ns)
  GRAD_OMEGA, GRAD_TAU [I] float  gradient labels (Delta label / Delta size between the mapped sizes and the
                                  reference sizer's sizes), valid where GRAD_MASK [I] bool
  REF_SIZES [I] long        the reference sizer's sizes (a predictor's supervision)
Evaluation items hold CIRCUIT only: a sizer sizes it within its area budget and is scored by exact STA (and OpenSTA
sign-off where installed).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

CIRCUIT, SIZES, OMEGA, TAU = "circuit", "sizes", "omega", "tau"
GRAD_OMEGA, GRAD_TAU, GRAD_MASK, REF_SIZES = "grad_omega", "grad_tau", "grad_mask", "ref_sizes"


class Circuit(Protocol):
    """What a sizer may use. Sizes x [I] are continuous size coordinates (0 .. max_size); integer x are library
    cells. Sizers change sizes only, never connectivity."""

    name: str
    num_instances: int
    init_size: "torch.Tensor"  # [I] long, the mapped (minimum) sizes
    max_size: "torch.Tensor"  # [I] float, the largest size index of each instance's family
    area_budget: float  # the largest total cell area (µm²) a sizing may use

    def analyse(self, x: "torch.Tensor | None" = None) -> dict:
        """Exact STA at sizes x (differentiable in x): arrival, slew, endpoint_slack, wns, tns, nve, area,
        gate_slack, ..."""

    def evaluate(self, sizes: "torch.Tensor") -> dict[str, float]:
        """Integer sizes -> wns, tns, nve, area (exact STA)."""

    def area(self, x: "torch.Tensor") -> "torch.Tensor":
        """Total cell area (µm²) at sizes x."""

    def inst_area(self, x: "torch.Tensor") -> "torch.Tensor":
        """[I] cell areas at sizes x."""

    def greedy(self, max_iters: int = 100, fraction: float = 0.05, start: "torch.Tensor | None" = None) -> "torch.Tensor":
        """The reference sizer (TILOS-style greedy on the exact STA, within the area budget) -> long sizes [I]."""

    def signoff(self, sizes: "torch.Tensor") -> "dict | None":
        """OpenSTA timing of the sized netlist ({endpoint_slack, wns, tns, nve}), None when OpenSTA is absent."""

    def features(self, x: "torch.Tensor") -> "torch.Tensor":
        """Per-instance timing features [I, F] at sizes x (differentiable in x)."""

    def paths(self, x: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """(gate_paths [I, L], endpoint_paths [E, L]): instance ids (-1 padded) of each instance's critical path and
        of each endpoint's critical path at sizes x."""

    def layout(self, x: "torch.Tensor", scale: int) -> "torch.Tensor":
        """[3, scale, scale] layout image at sizes x (vertical / horizontal wire demand, gate density)."""

    def bins(self, scale: int) -> "torch.Tensor":
        """[I] each instance's bin (row-major) at that scale."""
