"""The oracle row: reinforcement learning with the true reward (the per-step SDG contributions of the environment,
which no imitation model sees), in the true environment, with the family's clipped-surrogate update. A ceiling
for the imitation rows at the same number of updates, not a claim about the best achievable SDG."""
from __future__ import annotations

import torch

from contracts.batch import imitation as B
from contracts.registry import register_model
from lightning_modules.imitation.base import ImitationModule


@register_model("rl_oracle", family="imitation")
class RLOracle(ImitationModule):
    needs_env_rollouts = True

    def __init__(self, state_dim: int, action_dim: int, horizon: int, window: int = 1, encoder: str = "mlp",
                 hidden_dim: int = 64, d_model: int = 32, num_heads: int = 2, num_layers: int = 2,
                 lr: float = 1e-3, ppo_epochs: int = 4, clip: float = 0.2, gamma: float = 1.0,
                 entropy_coef: float = 0.0):
        super().__init__(state_dim, action_dim, horizon, window, encoder, hidden_dim, d_model, num_heads, num_layers,
                         lr)
        self.save_hyperparameters()

    def learn(self, item: dict) -> dict:
        hp, ro = self.hparams, item[B.ROLLOUT]
        states, actions = ro[B.STATES].to(self.device), ro[B.ACTIONS].to(self.device)
        logs = self.ppo_update(self.windows(states, actions), actions, ro[B.LOGP].to(self.device),
                               self.reward_advantage(ro[B.REWARD].to(self.device), hp.gamma), self.optimizers(),
                               hp.ppo_epochs, hp.clip, hp.entropy_coef)
        return {**logs, "env_sdg": ro[B.SDG].mean()}

    def configure_optimizers(self):
        return torch.optim.Adam(self.policy.parameters(), lr=self.hparams.lr)

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True)}
