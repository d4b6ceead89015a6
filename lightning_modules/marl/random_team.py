"""A uniformly random team: every agent draws each action uniformly from the action set, in training and in
evaluation alike. The floor every marl board shows: an algorithm that does not beat this row has learned nothing.
It plays through the same rollout datasets and metrics as every other model (env steps are counted, nothing is
learned; its training rollouts only keep the loop identical). Actions come from the global torch generator, which
the runner seeds with the run's seed, so a run is reproducible."""
from __future__ import annotations

import torch

from contracts.registry import register_model
from lightning_modules.marl.base import MARLModule


@register_model("random", family="marl")
class RandomTeam(MARLModule):
    def __init__(self, obs_dim: int, n_actions: int, num_agents: int, episode_limit: int, gamma: float = 0.99):
        super().__init__(obs_dim, n_actions, num_agents, episode_limit, gamma)
        self.save_hyperparameters()
        # DistributedDataParallel refuses a module with nothing to train; this scalar is never used or stepped
        # (as in seqrec's `pop`, so the board shows 1 parameter).
        self.ddp_anchor = torch.nn.Parameter(torch.zeros(1))

    def act(self, obs, t, state, explore):
        actions = torch.randint(0, self.n_actions, obs.shape[:2], device=obs.device)
        return actions, {}, state

    def learn(self, rollout: dict) -> dict:
        return {}

    def configure_optimizers(self):
        return None

    @staticmethod
    def search_space(trial) -> dict:
        return {}  # nothing to tune
