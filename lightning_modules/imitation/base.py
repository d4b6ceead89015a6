"""The imitation family base: policies that operate the microgrid, trained from a historical log, always evaluated
in the true environment.

The datamodule's training items hold a mini-batch of historical episodes (and, for modules whose
`needs_env_rollouts` is true, a fresh exploring rollout of this module in the true environment); see
`contracts.batch.imitation`. A module
  - acts through `reset_policy_state` / `act` (batched over episodes; the state is the episode's state-action
    history, of which the policy reads the last `window` steps),
  - learns in `learn(item)` with manual optimisation,
  - is evaluated on greedy (mean-action) episodes on every validation / test window: `sdg` (the primary metric),
    `sdg_gain_mean` and `sdg_gain_best` (minus the historical operators' mean SDG, and minus the best operator's
    mean SDG, on the same windows), `emissions` (kg CO2 per episode), `cost` ($ per episode), `violations`
    (fraction of steps whose set-point the battery could not follow).
The clipped-surrogate policy update shared by the modules that roll out a policy (GAIL, the oracle, PAIL) lives
here too.
"""
from __future__ import annotations

import lightning.pytorch as pl
import torch
from torchmetrics import MeanMetric

from contracts.batch import imitation as B
from lightning_modules.imitation.layers import GaussianPolicy, history_windows, normalise, returns_to_go

EVAL_METRICS = ("sdg", "sdg_gain_mean", "sdg_gain_best", "emissions", "cost", "violations")


class ImitationModule(pl.LightningModule):
    needs_env_rollouts = False

    def __init__(self, state_dim: int, action_dim: int, horizon: int, window: int = 1, encoder: str = "mlp",
                 hidden_dim: int = 64, d_model: int = 32, num_heads: int = 2, num_layers: int = 2,
                 lr: float = 1e-3):
        super().__init__()
        self.automatic_optimization = False
        self.state_dim, self.action_dim, self.horizon, self.window = state_dim, action_dim, horizon, window
        self.policy = GaussianPolicy(state_dim, action_dim, window, encoder, hidden_dim, d_model, num_heads,
                                     num_layers)
        # nan_strategy="disable": a diverged policy shows as NaN rather than being averaged away
        self.metrics = torch.nn.ModuleDict({f"{stage}_{name}": MeanMetric(nan_strategy="disable")
                                            for stage in ("val", "test") for name in EVAL_METRICS})

    # ----- acting (contracts.batch.imitation.Policy) -----------------------------------------------------------------
    def reset_policy_state(self, num_envs: int):
        return {"states": [], "actions": []}

    def act(self, obs: torch.Tensor, t: int, state, explore: bool):
        state["states"].append(obs.float())
        past = state["actions"] + [torch.zeros(obs.shape[0], self.action_dim, device=obs.device)]
        tokens = history_windows(torch.stack(state["states"], 1), torch.stack(past, 1), self.window)[:, -1]
        dist = self.policy(tokens)
        actions = (dist.sample() if explore else dist.mean).clamp(-1, 1)
        state["actions"].append(actions)
        return actions, {B.LOGP: dist.log_prob(actions).sum(-1)}, state

    def windows(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Trajectory tensors [B, T(+1), S], [B, T, A] -> the policy's input at every step [B, T, L, S+A]."""
        return history_windows(states[:, : actions.shape[1]], actions, self.window)

    def log_likelihood(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.policy(self.windows(states, actions)).log_prob(actions).sum(-1)  # [B, T]

    # ----- learning --------------------------------------------------------------------------------------------------
    def learn(self, item: dict) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def training_step(self, item: dict, batch_idx: int):
        logs = self.learn(item)
        size = int(item[B.HISTORY][B.SDG].shape[0])
        for k, v in logs.items():
            self.log(f"train/{k}", v, batch_size=size)

    def step_optimizer(self, loss: torch.Tensor, optimizer, parameters, max_grad_norm: float = 1.0) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        torch.nn.utils.clip_grad_norm_(list(parameters), max_grad_norm)
        optimizer.step()

    @staticmethod
    def expert_rows(history: dict, top_fraction: float) -> torch.Tensor:
        """Indices of the batch's episodes in the top `top_fraction` of the whole log by SDG (at least one)."""
        rows = torch.nonzero(history[B.SDG_RANK] >= 1 - top_fraction).squeeze(-1)
        return rows if rows.numel() else history[B.SDG_RANK].argmax().reshape(1)

    @staticmethod
    def reward_advantage(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
        """rewards [B, T] -> standardised advantages: returns-to-go minus their mean at the same step over the batch
        (the episodes share a horizon, so that is a per-step baseline)."""
        ret = returns_to_go(rewards, gamma)
        return normalise(ret - ret.mean(0, keepdim=True)).detach()

    def ppo_update(self, tokens: torch.Tensor, actions: torch.Tensor, old_logp: torch.Tensor,
                   advantages: torch.Tensor, optimizer, epochs: int, clip: float, entropy_coef: float,
                   extra_loss=None) -> dict[str, torch.Tensor]:
        """Clipped-surrogate updates on B episodes: tokens [B, T, L, D], actions [B, T, A], old_logp and
        advantages [B, T]."""
        for _ in range(epochs):
            dist = self.policy(tokens)
            ratio = (dist.log_prob(actions).sum(-1) - old_logp).exp()
            surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages).mean()
            loss = -surrogate - entropy_coef * dist.entropy().sum(-1).mean()
            if extra_loss is not None:
                loss = loss + extra_loss()
            self.step_optimizer(loss, optimizer, self.policy.parameters())
        return {"policy_loss": loss.detach()}

    # ----- evaluation ------------------------------------------------------------------------------------------------
    def _update(self, stage: str, rollout: dict) -> None:
        sdg = rollout[B.SDG].to(self.device)
        values = {"sdg": sdg, "sdg_gain_mean": sdg - rollout[B.REF_MEAN_SDG].to(self.device),
                  "sdg_gain_best": sdg - rollout[B.REF_BEST_SDG].to(self.device),
                  "emissions": rollout[B.EMISSIONS], "cost": rollout[B.COST], "violations": rollout[B.VIOLATIONS]}
        for name, value in values.items():
            self.metrics[f"{stage}_{name}"].update(value.to(self.device))

    def _log(self, stage: str) -> None:
        for name in EVAL_METRICS:
            metric = self.metrics[f"{stage}_{name}"]
            self.log(f"{stage}/{name}", metric.compute())
            metric.reset()

    def validation_step(self, rollout: dict, batch_idx: int):
        self._update("val", rollout)

    def on_validation_epoch_end(self):
        self._log("val")

    def test_step(self, rollout: dict, batch_idx: int):
        self._update("test", rollout)

    def on_test_epoch_end(self):
        self._log("test")
