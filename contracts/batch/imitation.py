"""The imitation family's trajectory format and the policy protocol that plays the operation environment.

A trajectory batch is `B` episodes of `T` steps, as a dict of tensors:
  STATES     [B, T+1, S] float  observations (the last one is the observation after step T)
  ACTIONS    [B, T, A]   float  battery set-points in [-1, 1] (fraction of nominal power; > 0 charges)
  SDG        [B]         float  the episode's SDG score (percent; see `datamodules.imitation.env`)
  SDG_RANK   [B]         float  quantile of the episode's SDG among all historical episodes (0 worst, 1 best),
                                so a model picks its expert set (top-q) without seeing the whole log at once
  EMISSIONS, COST, VIOLATIONS [B] float  kg CO2, dollars, and the fraction of steps whose set-point the battery
                                could not follow (state-of-charge or power limits)
Rollouts played in the true environment add REWARD [B, T] (per-step SDG contributions, summing to SDG: only the
oracle and the evaluation may read them) and whatever the policy recorded while acting (LOGP [B, T], ...).

Training items are {HISTORY: trajectory batch} from the historical operators' log, plus ROLLOUT (a fresh
exploring rollout of the module in the true environment) for modules whose `needs_env_rollouts` is true.
Evaluation items are greedy rollouts on fixed windows, with REF_MEAN_SDG / REF_BEST_SDG (scalars): the historical
operators' mean SDG and the best operator's mean SDG on the same windows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

STATES, ACTIONS, REWARD, SDG, SDG_RANK = "states", "actions", "reward", "sdg", "sdg_rank"
EMISSIONS, COST, VIOLATIONS, LOGP = "emissions", "cost", "violations", "logp"
HISTORY, ROLLOUT = "history", "rollout"
REF_MEAN_SDG, REF_BEST_SDG = "ref_mean_sdg", "ref_best_sdg"


class Policy(Protocol):
    """What acts in the operation environment: an imitation model or a historical operator."""

    def reset_policy_state(self, num_envs: int) -> Any:
        """The policy's memory at the start of an episode (its state-action history, or None)."""

    def act(self, obs: "torch.Tensor", t: int, state: Any, explore: bool) -> tuple["torch.Tensor", dict, Any]:
        """obs [E, S] at step t -> (actions [E, A] float, extras {name: [E] tensor}, next state)."""
