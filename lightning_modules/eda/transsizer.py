"""A TransSizer-style sizing predictor (after Nath et al., ICCAD 2022): a Transformer encodes the gate features
along each gate's critical path and a head predicts the gate's size directly (a class over library sizes), trained
to reproduce the reference sizer's sizes on the training circuits; at inference one forward pass sizes a held-out
circuit. Differences, as stated: the paper's encoder-decoder (6 + 6 layers, 8 heads) is an encoder of
`num_layers` here and one path per gate replaces its per-path prediction with the smaller-FO4 tie-break; the
supervision is our TILOS-style reference sizer (ICC2's sizes in the paper); `repair_budget` enforces the budget.
"""
from __future__ import annotations

import torch
from torch import nn

from contracts.batch import eda as B
from contracts.registry import register_model
from lightning_modules.eda.base import SizingModule, repair_budget
from lightning_modules.eda.layers import PathEncoder, mlp
from lightning_modules.eda.learnsize import NUM_STATIC_FEATURES

MAX_SIZES = 8  # the largest family has 7 sky130 HD drive strengths


@register_model("transsizer", family="eda")
class TransSizer(SizingModule):
    learns = True

    def __init__(self, num_families: int, signoff: bool = True, d_model: int = 32, num_heads: int = 2,
                 num_layers: int = 2, path_length: int = 32, hidden_dim: int = 64, lr: float = 1e-3):
        super().__init__(num_families, signoff)
        self.save_hyperparameters()
        self.paths = PathEncoder(NUM_STATIC_FEATURES + num_families, d_model, num_heads, num_layers, path_length)
        self.head = mlp(self.paths.out_dim, hidden_dim, MAX_SIZES)
        self._structure: dict[str, tuple] = {}

    def logits(self, circuit) -> torch.Tensor:
        if circuit.name not in self._structure:
            gate_paths, end_paths = circuit.paths(circuit.init_size.to(torch.float64))
            L = self.hparams.path_length
            self._structure[circuit.name] = (gate_paths[:, :L], end_paths[:, :L])
        gate_paths, end_paths = self._structure[circuit.name]
        x = circuit.init_size.to(torch.float64)
        logits = self.head(self.paths(circuit.features(x).float(), gate_paths, end_paths))
        k = torch.arange(MAX_SIZES)
        return logits.masked_fill(k[None, :] > circuit.max_size[:, None], -1e9)

    def learn(self, item: dict) -> dict:
        loss = nn.functional.cross_entropy(self.logits(item[B.CIRCUIT]), item[B.REF_SIZES])
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        nn.utils.clip_grad_norm_(self.parameters(), 1.0)
        opt.step()
        return {"ce": loss.detach()}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def size(self, circuit) -> torch.Tensor:
        with torch.no_grad():
            sizes = torch.maximum(self.logits(circuit).argmax(-1), circuit.init_size)
        return repair_budget(circuit, sizes)

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True)}
