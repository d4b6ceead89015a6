"""The marl family base: reinforcement learning inside Lightning.

The datamodule's datasets yield rollouts (see `contracts.batch.marl` for the format and
`datamodules.marl.base` for the datasets) collected with this very module; a module
  - acts through `reset_policy_state` / `act` (batched over env copies and agents, parameter-shared agents),
  - learns in `learn(rollout)` with manual optimisation (PPO epochs, or replay-buffer Q-learning updates),
  - is evaluated on greedy episodes with fixed seeds: `val/return` (the boards' primary metric, so the runner's
    checkpointing and early stopping work), and in test `test/return` (self-play, training team),
    `test/return_team_size` (team with `eval_team_delta` more agents), `test/env_steps` (training env steps at this
    checkpoint), `test/env_steps_per_s` (rollout pipeline: env steps / seconds spent collecting, policy included), and the
    learning curve as `test/val_curve_<env steps>` (val/return after each training epoch).
Cross-play needs several trained runs and is a post-board step (`benchmarks/marl_crossplay.py`), which adds
`crossplay_return` and `generalisation_gap` to the run records.
The imitation-learning family reuses this base: its module overrides `learn` (and `act`), the rest is shared.
"""
from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import MeanMetric

from contracts.batch import marl as B
from contracts.run import CURVE_PREFIX
from lightning_modules.curves import KeepsLearningCurve


def mlp(sizes: list[int], activation=nn.ReLU, layer_norm_input: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.LayerNorm(sizes[0])] if layer_norm_input else []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class MARLModule(KeepsLearningCurve, pl.LightningModule):
    """Shared acting bookkeeping, env-step counting and evaluation. Subclasses implement `act` and `learn`."""

    def __init__(self, obs_dim: int, n_actions: int, num_agents: int, episode_limit: int, gamma: float = 0.99):
        super().__init__()
        self.automatic_optimization = False
        self.obs_dim, self.n_actions, self.num_agents, self.episode_limit = obs_dim, n_actions, num_agents, episode_limit
        self.gamma = gamma
        # Counters travel with checkpoints, so test reports the env steps of the selected (best) checkpoint.
        self.register_buffer("env_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("rollout_seconds", torch.zeros((), dtype=torch.float64))
        # nan_strategy="disable": a NaN return makes the mean NaN (a diverged run), where the default would drop
        # the episode and average the rest into a good-looking number
        self.val_return = MeanMetric(nan_strategy="disable")
        self.test_return = MeanMetric(nan_strategy="disable")
        self.test_return_team_size = MeanMetric(nan_strategy="disable")
        # (training env steps, val/return) after every training epoch, reported by test as `val_curve_<env steps>`
        self.learning_curve: list[tuple[int, float]] = []

    # ----- acting (the policy protocol of contracts.batch.marl) ------------------------------------------
    def reset_policy_state(self, num_envs: int, num_agents: int):
        return None

    def act(self, obs: torch.Tensor, t: int, state, explore: bool):  # pragma: no cover
        raise NotImplementedError

    # ----- learning ------------------------------------------------------------------------------------------------
    def learn(self, rollout: dict) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def training_step(self, rollout: dict, batch_idx: int):
        self.env_steps += int(rollout[B.ENV_STEPS])
        self.rollout_seconds += float(rollout[B.ROLLOUT_SECONDS])
        logs = self.learn(rollout)
        size = int(rollout[B.RETURN].shape[0])
        self.log("train/return", rollout[B.RETURN].mean(), prog_bar=True, batch_size=size)
        self.log("train/env_steps", self.env_steps.float(), batch_size=size)
        for k, v in logs.items():
            self.log(f"train/{k}", v, batch_size=size)

    def step_optimizer(self, loss: torch.Tensor, optimizer, parameters, max_grad_norm: float | None) -> torch.Tensor:
        optimizer.zero_grad()
        self.manual_backward(loss)
        norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm if max_grad_norm else float("inf"))
        optimizer.step()
        return norm

    # ----- evaluation ----------------------------------------------------------------------------------------------
    def validation_step(self, rollout: dict, batch_idx: int):
        self.val_return.update(rollout[B.RETURN].to(self.device))

    def on_validation_epoch_end(self):
        value = self.val_return.compute()
        if self._trainer is not None and self.trainer.state.fn == "fit" and not self.trainer.sanity_checking:
            self.learning_curve.append((int(self.env_steps), float(value)))
        self.log("val/return", value)
        self.log("val/env_steps", self.env_steps.float())
        self.val_return.reset()

    def test_step(self, rollout: dict, batch_idx: int, dataloader_idx: int = 0):
        metric = self.test_return if dataloader_idx == 0 else self.test_return_team_size
        metric.update(rollout[B.RETURN].to(self.device))

    def on_test_epoch_end(self):
        self.log("test/return", self.test_return.compute())
        if self.test_return_team_size.update_count:
            self.log("test/return_team_size", self.test_return_team_size.compute())
        self.log("test/env_steps", self.env_steps.float())
        seconds = float(self.rollout_seconds)
        if seconds > 0:
            self.log("test/env_steps_per_s", float(self.env_steps) / seconds)
        for steps, value in self.learning_curve:
            self.log(f"test/{CURVE_PREFIX}{steps:09d}", value)
        self.test_return.reset()
        self.test_return_team_size.reset()

    @staticmethod
    def search_space(trial) -> dict:  # pragma: no cover
        raise NotImplementedError
