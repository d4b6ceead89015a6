"""GAIL (Ho & Ermon 2016, "Generative Adversarial Imitation Learning"): a discriminator D(s, a) separates the
expert set (the top `top_fraction` of the log by SDG, as PAIL's) from the policy's own steps, and the policy is
trained in the true environment (fresh rollouts each step; the standard GAIL setting, and more environment access
than PAIL, which never touches the true environment in training) on the reward -log(1 - D(s, a)) with the clipped
surrogate (the paper uses TRPO)."""
from __future__ import annotations

import torch

from contracts.batch import imitation as B
from contracts.registry import register_model
from lightning_modules.imitation.base import ImitationModule
from lightning_modules.imitation.layers import StepDiscriminator


@register_model("gail", family="imitation")
class GAIL(ImitationModule):
    needs_env_rollouts = True

    def __init__(self, state_dim: int, action_dim: int, horizon: int, top_fraction: float = 0.25,
                 window: int = 1, encoder: str = "mlp", hidden_dim: int = 64, d_model: int = 32,
                 num_heads: int = 2, num_layers: int = 2, lr: float = 1e-3, disc_lr: float = 1e-3,
                 ppo_epochs: int = 4, clip: float = 0.2, gamma: float = 1.0, entropy_coef: float = 0.0):
        super().__init__(state_dim, action_dim, horizon, window, encoder, hidden_dim, d_model, num_heads, num_layers,
                         lr)
        self.save_hyperparameters()
        self.discriminator = StepDiscriminator(state_dim, action_dim, hidden_dim)

    def learn(self, item: dict) -> dict:
        hp, h, ro = self.hparams, item[B.HISTORY], item[B.ROLLOUT]
        opt_pi, opt_d = self.optimizers()
        rows = self.expert_rows(h, hp.top_fraction)
        expert = (h[B.STATES][rows, :-1].to(self.device), h[B.ACTIONS][rows].to(self.device))
        states, actions = ro[B.STATES].to(self.device), ro[B.ACTIONS].to(self.device)
        d_loss = self.discriminator.loss(expert, (states[:, :-1], actions))
        self.step_optimizer(d_loss, opt_d, self.discriminator.parameters())
        reward = self.discriminator.reward(states[:, :-1], actions)
        logs = self.ppo_update(self.windows(states, actions), actions, ro[B.LOGP].to(self.device),
                               self.reward_advantage(reward, hp.gamma), opt_pi, hp.ppo_epochs, hp.clip,
                               hp.entropy_coef)
        return {**logs, "disc_loss": d_loss.detach(), "env_sdg": ro[B.SDG].mean()}

    def configure_optimizers(self):
        return [torch.optim.Adam(self.policy.parameters(), lr=self.hparams.lr),
                torch.optim.Adam(self.discriminator.parameters(), lr=self.hparams.disc_lr)]

    @staticmethod
    def search_space(trial) -> dict:
        return {"lr": trial.suggest_float("lr", 1e-4, 3e-3, log=True),
                "disc_lr": trial.suggest_float("disc_lr", 1e-4, 3e-3, log=True)}
