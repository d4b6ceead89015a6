"""The marl family's rollout format and the policy and environment protocols that collect it.

A rollout is `E` complete episodes of `T` steps from `E` env copies (every MPE episode ends by time limit at
`max_cycles`, so episodes are aligned), as a dict of tensors:
  OBS        [E, T+1, N, D] float   canonical observations (the last one is the observation after step T)
  ACTIONS    [E, T, N]      long
  REWARD     [E, T]         float   team reward (mean over agents of the env's per-agent rewards)
  AGENT_REWARD [E, T, N]    float
  TERMINATED [E, T]         float   1 where the env terminated (not on time limit: those bootstrap)
  RETURN     [E]            float   undiscounted team return of each episode
  plus whatever a policy records while acting (log-probabilities, roles, ...), stacked along time: [E, T, ...].

Models are policies (`Policy`); environments are data (`VectorEnv`, in `datamodules.marl`), and so is the loop that
plays one with the other (`datamodules.marl.rollout.collect_rollout`). Both the training datasets and the cross-play
evaluator drive policies only through the two calls of `Policy`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch

OBS, ACTIONS, REWARD, AGENT_REWARD, TERMINATED, RETURN = "obs", "actions", "reward", "agent_reward", "terminated", "return"
ENV_STEPS, ROLLOUT_SECONDS = "env_steps", "rollout_seconds"


class Policy(Protocol):
    """What acts in a rollout: a marl model, a mixed team of two, a random team."""

    def reset_policy_state(self, num_envs: int, num_agents: int) -> Any:
        """The policy's memory at the start of an episode (None when it has none)."""

    def act(self, obs: "torch.Tensor", t: int, state: Any, explore: bool) -> tuple["torch.Tensor", dict, Any]:
        """obs [E, N, D] at step t -> (actions [E, N] long, extras {name: [E, ...] tensor}, next state)."""


class VectorEnv(Protocol):
    """`num_envs` copies of one environment stepped as one, exchanging batched numpy arrays."""

    num_envs: int
    max_cycles: int

    def reset(self, seeds) -> "np.ndarray":
        """One seed per copy -> observations [E, N, D]."""

    def step(self, actions: "np.ndarray") -> tuple["np.ndarray", "np.ndarray", "np.ndarray", "np.ndarray"]:
        """actions [E, N] -> (observations [E, N, D], rewards [E, N], terminated [E, N], truncated [E, N])."""
