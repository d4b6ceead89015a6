"""DCN-V2: Improved Deep & Cross Network (Wang et al., WWW 2021, arXiv 2008.13535).

Eq. 1, the full-rank cross layer: x_{l+1} = x_0 (.) (W_l x_l + b_l) + x_l, on x_0 = the stacked field embeddings.
Fig. 1 gives two ways to combine it with a deep network: `structure="stacked"` (cross net, then MLP) and
`structure="parallel"` (both on x_0, outputs concatenated); `structure="crossnet_only"` is the CrossNet-V2 row of
BARS. The logit is a Linear on the combination. Defaults follow BARS' DCNv2_criteo_x1 tuner_config_04 (parallel,
3 cross layers, MLP 500-500-500, dropout 0.1, embedding regulariser 1e-5). The paper's low-rank mixture of experts
(DCN-Mix, Eq. 2-3) is not implemented.
"""
from __future__ import annotations

import optuna
import torch
from torch import nn

from contracts.registry import register_model
from lightning_modules.ctr.base import CTRModule, common_space, suggest_units
from lightning_modules.ctr.layers import MLP, init_linear

STRUCTURES = ("parallel", "stacked", "crossnet_only")


class CrossNetV2(nn.Module):
    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, dim) for _ in range(num_layers))
        init_linear(self)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class CrossV2AndDeep(nn.Module):
    def __init__(self, dim: int, num_cross_layers: int, hidden_units, dropout: float, batch_norm: bool,
                 structure: str):
        super().__init__()
        if structure not in STRUCTURES:
            raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")
        self.structure = structure
        self.cross = CrossNetV2(dim, num_cross_layers)
        self.deep = MLP(dim, hidden_units, None, dropout, batch_norm) if structure != "crossnet_only" else None
        self.output_dim = {"parallel": dim + (self.deep.output_dim if self.deep else 0),
                           "stacked": self.deep.output_dim if self.deep else dim, "crossnet_only": dim}[structure]

    def forward(self, dense: torch.Tensor, fields: torch.Tensor) -> torch.Tensor:
        x0 = fields.flatten(1)
        if self.structure == "parallel":
            return torch.cat([self.cross(x0), self.deep(x0)], dim=1)
        if self.structure == "stacked":
            return self.deep(self.cross(x0))
        return self.cross(x0)


@register_model("dcnv2", family="ctr")
class DCNv2(CTRModule):
    def __init__(self, field_dims: list[int], num_dense: int, embed_dim: int = 10, num_cross_layers: int = 3,
                 structure: str = "parallel", hidden_units: list[int] = (500, 500, 500), dropout: float = 0.1,
                 batch_norm: bool = False, lr: float = 1e-3, embedding_l2: float = 1e-5, net_l2: float = 0.0,
                 lr_decay_on_plateau: bool = True, embedding_init_std: float = 1e-4):
        super().__init__(field_dims, num_dense, embed_dim, use_linear=False, lr=lr, embedding_l2=embedding_l2,
                         net_l2=net_l2, lr_decay_on_plateau=lr_decay_on_plateau, embedding_init_std=embedding_init_std)
        self.save_hyperparameters()
        self.interaction = CrossV2AndDeep(self.num_fields * embed_dim, num_cross_layers, list(hidden_units), dropout,
                                          batch_norm, structure)
        self.head = nn.Linear(self.interaction.output_dim, 1)
        init_linear(self.head)

    @staticmethod
    def search_space(trial: optuna.Trial) -> dict:
        return {**common_space(trial), "num_cross_layers": trial.suggest_int("num_cross_layers", 1, 5),
                "structure": trial.suggest_categorical("structure", ["parallel", "stacked"]),
                "dropout": trial.suggest_float("dropout", 0.0, 0.3),
                "hidden_units": suggest_units(trial, "hidden_units", ["500-500-500", "400-400", "1000-1000"])}
