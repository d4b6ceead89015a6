"""AGD-style differentiable gate sizing (after Pham & Chung, DAC 2023): every gate holds logits over its family's
library sizes; a softmax (temperature annealed) relaxes the choice, and the timing target is ascended through the
timing model with AdamW; the final sizes are the argmax, followed (as in AGD) by a greedy pass from the best solution.

Differences, as flags: the timing model is the exact STA here (AGD trains a timing GNN; `timing_model="exact"`);
the relaxed gate is evaluated at its expected size index (sum_k p_k k) interpolated between the two neighbouring
library cells, not as a mixture of all cells; `greedy_finish` switches the final greedy pass.
"""
from __future__ import annotations

import torch

from contracts.registry import register_model
from lightning_modules.eda.base import SizingModule, repair_budget
from lightning_modules.eda.sizers import _round_and_keep_best, exact_sizing_loss


@register_model("agd", family="eda")
class AGD(SizingModule):
    def __init__(self, num_families: int, signoff: bool = True, iterations: int = 60, lr: float = 0.1,
                 temperature: float = 1.0, final_temperature: float = 0.1, mu_tau: float = 0.5, mu_omega: float = 0.5,
                 gamma: float = 0.01, area_weight: float = 10.0, greedy_finish: bool = True, greedy_iters: int = 20,
                 check_every: int = 5, timing_model: str = "exact"):
        super().__init__(num_families, signoff)
        if timing_model != "exact":
            raise ValueError("only timing_model='exact' is built (AGD's timing GNN is not)")
        self.save_hyperparameters()

    def size(self, circuit) -> torch.Tensor:
        h = self.hparams
        S = int(circuit.max_size.max()) + 1
        k = torch.arange(S, dtype=torch.float64)
        valid = k[None, :] <= circuit.max_size[:, None]
        # start peaked at the mapped size
        logits = torch.where(k[None, :] == circuit.init_size[:, None], 3.0, 0.0).to(torch.float64)
        logits = logits.masked_fill(~valid, -1e9).requires_grad_(True)
        opt = torch.optim.AdamW([logits], lr=h.lr)
        best = _round_and_keep_best(circuit, circuit.init_size.to(torch.float64), None, h.mu_tau, h.mu_omega)
        for it in range(h.iterations):
            tau = h.temperature * (h.final_temperature / h.temperature) ** (it / max(h.iterations - 1, 1))
            p = torch.softmax(logits / tau, -1)
            x = (p * k).sum(-1)
            loss = exact_sizing_loss(circuit, x, h)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if (it + 1) % h.check_every == 0:
                best = _round_and_keep_best(circuit, logits.detach().argmax(-1).to(torch.float64), best, h.mu_tau,
                                            h.mu_omega)
        sizes = best[1]
        if h.greedy_finish:
            sizes = repair_budget(circuit, circuit.greedy(h.greedy_iters, start=sizes))
        return sizes

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 0.02, 0.5, log=True)}
