"""Behaviour cloning (Pomerleau 1991; Bain & Sammut 1995): maximum likelihood of the logged actions under the
Gaussian policy. `top_fraction` 1.0 clones the whole log (`bc`); 0.25 clones the episodes in the top quarter by
SDG (`bc@top`, the expert set PAIL's discriminator uses)."""
from __future__ import annotations

import torch

from contracts.batch import imitation as B
from contracts.registry import register_model, register_model_variant
from lightning_modules.imitation.base import ImitationModule


@register_model("bc", family="imitation")
class BehaviourCloning(ImitationModule):
    def __init__(self, state_dim: int, action_dim: int, horizon: int, top_fraction: float = 1.0, window: int = 1,
                 encoder: str = "mlp", hidden_dim: int = 64, d_model: int = 32, num_heads: int = 2,
                 num_layers: int = 2, lr: float = 1e-3):
        super().__init__(state_dim, action_dim, horizon, window, encoder, hidden_dim, d_model, num_heads, num_layers,
                         lr)
        self.save_hyperparameters()

    def learn(self, item: dict) -> dict:
        h = item[B.HISTORY]
        rows = self.expert_rows(h, self.hparams.top_fraction)
        states, actions = h[B.STATES][rows].to(self.device), h[B.ACTIONS][rows].to(self.device)
        loss = -self.log_likelihood(states, actions).mean()
        self.step_optimizer(loss, self.optimizers(), self.parameters())
        return {"nll": loss.detach()}

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
                "hidden_dim": trial.suggest_categorical("hidden_dim", [32, 64, 128])}


register_model_variant("bc@top", BehaviourCloning, "Behaviour cloning on the top 25% of the log by SDG.",
                       top_fraction=0.25)
