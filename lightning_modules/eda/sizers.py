"""Sizers on the exact analytic STA (no learned model): the baselines of the gate-sizing board.

- `tilos`: greedy sensitivity sizing (Fishburn & Dunlop 1985, TILOS-style), the circuit's reference sizer; it stands
  in for the commercial sizer (ICC2) of the paper and its sizes are the gradient labels' source.
- `sta_gradient`: gradient ascent of the Eq. 8 timing target on the exact, differentiable STA over continuous sizes
  (Adam), rounded to library sizes; the best rounded sizing seen is kept.
- `lagrangian`: Lagrangian-relaxation sizing (after Chen, Chu & Wong 1999): minimise area + sum_e lambda_e x
  arrival_e with one multiplier per endpoint (not per arc: a simplification), multipliers raised by subgradient
  steps on the endpoints' violations.
- `random_search`: random upsizings within the budget, the best by exact STA kept.
All end with `repair_budget`, so every sizing respects the area budget.
"""
from __future__ import annotations

import torch

from contracts.registry import register_model
from lightning_modules.eda.base import SizingModule, repair_budget, timing_target


@register_model("tilos", family="eda")
class TILOS(SizingModule):
    def __init__(self, num_families: int, signoff: bool = True, max_iters: int = 100, fraction: float = 0.05):
        super().__init__(num_families, signoff)
        self.save_hyperparameters()

    def size(self, circuit) -> torch.Tensor:
        return circuit.greedy(self.hparams.max_iters, self.hparams.fraction)

    @staticmethod
    def search_space(trial) -> dict:
        return {"fraction": trial.suggest_float("fraction", 0.01, 0.2, log=True)}


def _round_and_keep_best(circuit, x: torch.Tensor, best: tuple[float, torch.Tensor] | None, mu_tau: float,
                         mu_omega: float):
    """Round continuous sizes to library sizes within the budget; keep them if their exact target is the best."""
    sizes = repair_budget(circuit, x.detach().round().clamp(min=0).long())
    with torch.no_grad():
        r = circuit.analyse(sizes.to(torch.float64))
        value = float(mu_tau * r["tns"] / max(float(r["nve"]), 1.0) + mu_omega * r["wns"])
    return (value, sizes) if best is None or value > best[0] else best


def area_penalty(circuit, x: torch.Tensor, weight: float) -> torch.Tensor:
    """Hinge on the area budget (relative to the mapped area)."""
    return weight * torch.relu(circuit.area(x) - circuit.area_budget) / circuit.initial_area


def exact_sizing_loss(circuit, x: torch.Tensor, h) -> torch.Tensor:
    """Minus the smoothed timing target of the exact STA at sizes x (per clock period), plus the area hinge."""
    r = circuit.analyse(x)
    return -timing_target(r["endpoint_slack"], h.mu_tau, h.mu_omega, h.gamma) / circuit.clock_period \
        + area_penalty(circuit, x, h.area_weight)


@torch.no_grad()
def clamp_sizes_(circuit, x: torch.Tensor, smallest: torch.Tensor | None = None) -> None:
    """Project continuous sizes into [the mapped (or given smallest) size, the family's largest] in place."""
    low = circuit.init_size.to(x.dtype) if smallest is None else smallest
    x.copy_(torch.maximum(torch.minimum(x, circuit.max_size), low))


@register_model("sta_gradient", family="eda")
class STAGradient(SizingModule):
    def __init__(self, num_families: int, signoff: bool = True, iterations: int = 60, lr: float = 0.3,
                 mu_tau: float = 0.5, mu_omega: float = 0.5, gamma: float = 0.01, area_weight: float = 10.0,
                 check_every: int = 5):
        super().__init__(num_families, signoff)
        self.save_hyperparameters()

    def size(self, circuit) -> torch.Tensor:
        h = self.hparams
        x = circuit.init_size.to(torch.float64).clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=h.lr)
        best = _round_and_keep_best(circuit, x, None, h.mu_tau, h.mu_omega)
        for it in range(h.iterations):
            loss = exact_sizing_loss(circuit, x, h)
            opt.zero_grad()
            loss.backward()
            opt.step()
            clamp_sizes_(circuit, x)
            if (it + 1) % h.check_every == 0:
                best = _round_and_keep_best(circuit, x, best, h.mu_tau, h.mu_omega)
        return best[1]

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 0.05, 1.0, log=True)}


@register_model("lagrangian", family="eda")
class LagrangianRelaxation(SizingModule):
    def __init__(self, num_families: int, signoff: bool = True, outer_iterations: int = 15, inner_steps: int = 4,
                 lr: float = 0.3, multiplier_step: float = 5.0, check_every: int = 1):
        super().__init__(num_families, signoff)
        self.save_hyperparameters()

    def size(self, circuit) -> torch.Tensor:
        h = self.hparams
        x = circuit.init_size.to(torch.float64).clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=h.lr)
        E = len(circuit.netlist.po_names)
        lam = torch.full((E,), 1.0 / E, dtype=torch.float64)
        best = _round_and_keep_best(circuit, x, None, 0.5, 0.5)
        period = circuit.clock_period
        for it in range(h.outer_iterations):
            for _ in range(h.inner_steps):
                r = circuit.analyse(x)
                arrival = period - r["endpoint_slack"]
                lagrangian = circuit.area(x) / circuit.initial_area + (lam * arrival).sum() / period \
                    + area_penalty(circuit, x, 10.0)
                opt.zero_grad()
                lagrangian.backward()
                opt.step()
                clamp_sizes_(circuit, x)
            with torch.no_grad():
                slack = circuit.analyse(x)["endpoint_slack"]
                lam = (lam * torch.exp(h.multiplier_step * (-slack / period))).clamp(min=1e-6)
                lam = lam / lam.sum()  # the KKT flow condition at the sink: multipliers sum to one
            if (it + 1) % h.check_every == 0:
                best = _round_and_keep_best(circuit, x, best, 0.5, 0.5)
        return best[1]

    @staticmethod
    def search_space(trial) -> dict:
        return {"multiplier_step": trial.suggest_float("multiplier_step", 0.5, 20.0, log=True)}


@register_model("random_search", family="eda")
class RandomSearch(SizingModule):
    def __init__(self, num_families: int, signoff: bool = True, samples: int = 32, fraction: float = 0.2,
                 seed: int | None = None):
        super().__init__(num_families, signoff)
        self.save_hyperparameters()

    def size(self, circuit) -> torch.Tensor:
        h = self.hparams
        # without a fixed seed the samples follow the run's seed (the global generator the runner seeds)
        gen = torch.Generator().manual_seed(h.seed if h.seed is not None else int(torch.randint(2 ** 62, ()).item()))
        best = _round_and_keep_best(circuit, circuit.init_size.to(torch.float64), None, 0.5, 0.5)
        I = circuit.num_instances
        for _ in range(h.samples):
            pick = torch.rand(I, generator=gen) < h.fraction
            step = torch.randint(1, 3, (I,), generator=gen).to(torch.float64)
            x = torch.where(pick, circuit.init_size + step, circuit.init_size.to(torch.float64))
            best = _round_and_keep_best(circuit, torch.minimum(x, circuit.max_size), best, 0.5, 0.5)
        return best[1]

    @staticmethod
    def search_space(trial) -> dict:
        return {"fraction": trial.suggest_float("fraction", 0.02, 0.5, log=True)}
