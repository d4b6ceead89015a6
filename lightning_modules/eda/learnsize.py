"""Learning-driven physically aware gate sizing (Ye, Xu, Ren, Chen, Yan, Yu, Shi; IEEE TCAD 44(5), 2025).

Stage 1, the gate-sizing-aware timing model: per gate, a path Transformer's critical / intra-path / inter-path
encodings (Eq. 1-2) and a multi-scale layout encoder with scale attention and a gate mask (Eq. 3-5) feed two heads that
predict the gatewise TNS tau(g_v) and WNS omega(g_v) (Eq. 6). It is trained on exact-STA labels of sized variants of
the training circuits with the slack + gradient-matching loss (Eq. 7): the derivative of the predicted tau / omega
with respect to the gate sizes is pushed towards the reference sizer's Delta label / Delta size.
Stage 2, sizing: the timing target T = mu_tau / N sum_v min(0, tau_v) + mu_omega min_v omega_v (Eq. 8, min and
min(0, .) smoothed by log-sum-exp with gamma, Eq. 9) is ascended (the paper writes descent on T; T is a slack) with
Adam over continuous sizes, rounded to library sizes in the forward pass with a straight-through gradient (Eq. 10),
the per-gate steps scaled by a Gumbel-softmax over log |omega_v| with temperature lambda (Eq. 11-12).

Differences from the paper, as flags or stated here: labels and gradient labels come from our exact STA and the
TILOS-style reference sizer (PrimeTime and ICC2 in the paper); the layout trunk is two convolutions (ResNet-50 in the
paper), without BatchNorm (one image per scale); critical paths are traced once per circuit at the mapped sizes; the
gradient match uses d(sum_u tau_u)/d g_v (the model's total derivative) for d tau_v / d g_v; labels are scaled by the
clock period (tau also by the number of endpoints) so circuits of different speed share one model; with
`tau_per_endpoint` (default) the tau head predicts the mean negative slack per endpoint the gate reaches, multiplied
by its reach count (structure, not a label): a gate's TNS is a sum over those endpoints, so the per-endpoint mean has
one scale on the small training circuits and the large held-out ones;
`select_with_sta` checks the rounded sizes with the exact STA every `check_every` steps and keeps the best (the
paper signs off once at the end); `ste=False` (the "w/o STE" ablation) optimises the relaxed sizes without rounding.
"""
from __future__ import annotations

import torch
from torch import nn

from contracts.batch import eda as B
from contracts.registry import register_model, register_model_variant
from lightning_modules.eda.base import SizingModule, repair_budget, soft_min
from lightning_modules.eda.layers import LayoutEncoder, PathEncoder, mlp, r2
from lightning_modules.eda.sizers import _round_and_keep_best, area_penalty, clamp_sizes_

NUM_STATIC_FEATURES = 9  # Circuit.features: 9 columns before the family one-hot


@register_model("learnsize", family="eda")
class LearnSize(SizingModule):
    learns = True
    earlier_behaviour = {"tau_per_endpoint": False}

    def __init__(self, num_families: int, signoff: bool = True, d_model: int = 32, num_heads: int = 2,
                 num_layers: int = 2, path_length: int = 32, scales: tuple[int, ...] = (4, 8, 16),
                 cnn_channels: int = 8, hidden_dim: int = 64, lr: float = 4e-4, grad_weight: float = 1.0,
                 slack_labels: bool = True, grad_labels: bool = True, physical: bool = True, ste: bool = True,
                 gumbel: bool = True, gumbel_temperature: float = 5.0, mu_tau: float = 0.5, mu_omega: float = 0.5,
                 gamma: float = 0.01, size_iterations: int = 60, size_lr: float = 0.3, area_weight: float = 10.0,
                 select_with_sta: bool = True, check_every: int = 10, r2_variants: int = 4, seed: int = 0,
                 tau_per_endpoint: bool = True):
        super().__init__(num_families, signoff)
        if not (slack_labels or grad_labels):
            raise ValueError("at least one of slack_labels and grad_labels must be on")
        self.save_hyperparameters()
        self.paths = PathEncoder(NUM_STATIC_FEATURES + num_families, d_model, num_heads, num_layers, path_length)
        self.layout = LayoutEncoder(scales, cnn_channels) if physical else None
        width = self.paths.out_dim + (cnn_channels if physical else 0)
        self.head_tau, self.head_omega = mlp(width, hidden_dim, 1), mlp(width, hidden_dim, 1)
        self._structure: dict[str, tuple] = {}

    # ----- the timing model (Eq. 1-6) ---------------------------------------------------------------------------
    def structure(self, circuit) -> tuple:
        """Per circuit, once: the critical paths at the mapped sizes, the layout bins, and each gate's share of the
        endpoints it reaches (the tau head's scale)."""
        if circuit.name not in self._structure:
            gate_paths, end_paths = circuit.paths(circuit.init_size.to(torch.float64))
            L = self.hparams.path_length
            reach = circuit.reach()
            self._structure[circuit.name] = (gate_paths[:, :L], end_paths[:, :L],
                                             circuit.bins(max(self.hparams.scales)),
                                             (reach.sum(1) / reach.shape[1]).float())
        return self._structure[circuit.name]

    def scale_of(self, circuit) -> tuple[float, float]:
        """(omega scale, tau scale): the clock period, and the period x the number of endpoints."""
        period = circuit.clock_period
        return period, period * len(circuit.netlist.po_names)

    def forward(self, circuit, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sizes x [I] (float64, may require grad) -> scaled (tau [I], omega [I])."""
        gate_paths, end_paths, bins, reach_share = self.structure(circuit)
        features = circuit.features(x).float()
        parts = [self.paths(features, gate_paths, end_paths)]
        if self.layout is not None:
            images = []
            for s in self.hparams.scales:
                img = circuit.layout(x, s).float()
                images.append(img / img.detach().amax((1, 2), keepdim=True).clamp(min=1e-9))
            parts.append(self.layout(images, bins))
        h = torch.cat(parts, -1)
        tau = self.head_tau(h).squeeze(-1)
        if self.hparams.tau_per_endpoint:  # the head's output is per reachable endpoint; the count is structure
            tau = tau * reach_share
        return tau, self.head_omega(h).squeeze(-1)

    # ----- training (Eq. 7) -------------------------------------------------------------------------------------
    def learn(self, item: dict) -> dict:
        circuit, h = item[B.CIRCUIT], self.hparams
        s_omega, s_tau = self.scale_of(circuit)
        opt = self.optimizers()
        logs = {}
        for v in range(item[B.SIZES].shape[0]):
            x = item[B.SIZES][v].clone().requires_grad_(h.grad_labels and v == 0)
            tau, omega = self(circuit, x)
            loss = torch.zeros(())
            if h.slack_labels:
                slack_loss = (nn.functional.mse_loss(tau, (item[B.TAU][v] / s_tau).float())
                              + nn.functional.mse_loss(omega, (item[B.OMEGA][v] / s_omega).float()))
                loss = loss + slack_loss
                logs["slack_loss"] = slack_loss.detach()
            if h.grad_labels and v == 0:
                mask = item[B.GRAD_MASK]
                d_tau, = torch.autograd.grad(tau.sum(), x, create_graph=True)
                d_omega, = torch.autograd.grad(omega.sum(), x, create_graph=True)
                grad_loss = (((d_tau - item[B.GRAD_TAU] / s_tau)[mask] ** 2).mean()
                             + ((d_omega - item[B.GRAD_OMEGA] / s_omega)[mask] ** 2).mean()).float() \
                    if mask.any() else torch.zeros(())
                loss = loss + h.grad_weight * grad_loss
                logs["grad_loss"] = grad_loss.detach()
            if not loss.requires_grad:  # no label applies to this variant
                continue
            opt.zero_grad()
            self.manual_backward(loss)
            nn.utils.clip_grad_norm_(self.parameters(), 1.0)
            opt.step()
        return logs

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    # ----- sizing (Eq. 8-12) ------------------------------------------------------------------------------------
    def target(self, circuit, tau: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        h = self.hparams
        s_omega, s_tau = self.scale_of(circuit)
        g = h.gamma / s_omega
        neg_tau = -nn.functional.softplus(-tau / g) * g  # smooth min(0, tau)
        n = (tau.detach() < 0).sum().clamp(min=1)
        return h.mu_tau * neg_tau.sum() / n + h.mu_omega * soft_min(omega, g)

    def size(self, circuit) -> torch.Tensor:
        h = self.hparams
        gen = torch.Generator().manual_seed(h.seed)
        init = circuit.init_size.to(torch.float64)
        x = init.clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=h.size_lr)
        best = _round_and_keep_best(circuit, init, None, h.mu_tau, h.mu_omega) if h.select_with_sta else None
        was_training = self.training
        self.eval()
        try:
            for it in range(h.size_iterations):
                x_used = x + (x.detach().round() - x.detach()) if h.ste else x  # Eq. 10: straight-through rounding
                tau, omega = self(circuit, x_used)
                loss = -self.target(circuit, tau, omega).double() + area_penalty(circuit, x_used, h.area_weight)
                opt.zero_grad()
                loss.backward()
                if h.gumbel:  # Eq. 12: per-gate step sizes, larger for gates with worse predicted WNS
                    noise = -torch.log(-torch.log(torch.rand(x.shape, generator=gen, dtype=torch.float64)
                                                  .clamp(1e-12, 1 - 1e-12)))
                    score = (torch.log(omega.detach().double().clamp(max=0).abs() + 1e-6) + noise) / h.gumbel_temperature
                    x.grad *= torch.softmax(score, 0) * x.numel()
                opt.step()
                clamp_sizes_(circuit, x, init)
                if h.select_with_sta and (it + 1) % h.check_every == 0:
                    best = _round_and_keep_best(circuit, x, best, h.mu_tau, h.mu_omega)
        finally:
            self.train(was_training)
        if h.select_with_sta:
            best = _round_and_keep_best(circuit, x, best, h.mu_tau, h.mu_omega)
            return best[1]
        return repair_budget(circuit, x.detach().round().long())

    # ----- timing-model accuracy on held-out circuits -------------------------------------------------------------
    def timing_fit(self, circuit, sizings: list[torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """{"tau" | "omega": (predicted, exact-STA labels)} in ns over the given sizings, concatenated."""
        s_omega, s_tau = self.scale_of(circuit)
        preds, labels = {"tau": [], "omega": []}, {"tau": [], "omega": []}
        with torch.inference_mode(False), torch.no_grad():
            for x in sizings:
                omega, tau = circuit.labels(x)
                p_tau, p_omega = self(circuit, x)
                preds["tau"].append(p_tau.double() * s_tau)
                preds["omega"].append(p_omega.double() * s_omega)
                labels["tau"].append(tau)
                labels["omega"].append(omega)
        return {k: (torch.cat(preds[k]), torch.cat(labels[k])) for k in preds}

    def _score(self, stage: str, item: dict) -> None:
        super()._score(stage, item)
        circuit = item[B.CIRCUIT]
        gen = torch.Generator().manual_seed(1234)
        init = circuit.init_size.to(torch.float64)
        sizings = []  # the mapped sizes, then random upsizings of 30% of the gates
        for v in range(self.hparams.r2_variants):
            pick = torch.rand(init.shape, generator=gen) < 0.3
            sizings.append(torch.minimum(torch.where(pick, init + torch.randint(1, 4, init.shape, generator=gen),
                                                     init), circuit.max_size) if v else init)
        for k, (pred, label) in self.timing_fit(circuit, sizings).items():
            self.metrics_extra(stage, f"r2_{k}", r2(pred, label), circuit.name)
            self.metrics_extra(stage, f"mae_{k}_ps", float((pred - label).abs().mean()) * 1000, circuit.name)

    def metrics_extra(self, stage: str, name: str, value: float, circuit_name: str) -> None:
        self.log(f"{stage}/{name}_{circuit_name}", value, batch_size=1)
        self._extra.setdefault(f"{stage}/{name}", []).append(value)

    def on_validation_epoch_start(self):
        self._extra = {}

    on_test_epoch_start = on_validation_epoch_start

    def _log(self, stage: str) -> None:
        super()._log(stage)
        for key, values in getattr(self, "_extra", {}).items():
            if key.startswith(stage):
                self.log(key, sum(values) / len(values))

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
                "size_lr": trial.suggest_float("size_lr", 0.05, 1.0, log=True)}


register_model_variant("learnsize@no_ste", LearnSize, "Without the straight-through rounding (relaxed sizes).",
                       ste=False)
register_model_variant("learnsize@no_gumbel", LearnSize, "Equal step sizes for all gates (no Gumbel-softmax).",
                       gumbel=False)
register_model_variant("learnsize@no_slack_labels", LearnSize, "Trained without slack labels (gradient labels only).",
                       slack_labels=False)
register_model_variant("learnsize@no_grad_labels", LearnSize, "Trained without gradient labels (slack labels only).",
                       grad_labels=False)
register_model_variant("learnsize@no_physical", LearnSize, "Without the layout (physical) branch.", physical=False)
