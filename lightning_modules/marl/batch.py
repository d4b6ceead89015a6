"""The marl family's rollout format and the loop that collects it (shared by datamodules and models).

A rollout is `E` complete episodes of `T` steps from `E` env copies (every MPE episode ends by time limit at
`max_cycles`, so episodes are aligned), as a dict of tensors:
  OBS        [E, T+1, N, D] float   canonical observations (the last one is the observation after step T)
  ACTIONS    [E, T, N]      long
  REWARD     [E, T]         float   team reward (mean over agents of the env's per-agent rewards)
  AGENT_REWARD [E, T, N]    float
  TERMINATED [E, T]         float   1 where the env terminated (not on time limit: those bootstrap)
  RETURN     [E]            float   undiscounted team return of each episode
  plus whatever a policy records while acting (log-probabilities, roles, ...), stacked along time: [E, T, ...].

A policy is any object with
  `reset_policy_state(num_envs, num_agents) -> state` and
  `act(obs [E,N,D] tensor, t, state, explore) -> (actions [E,N] long tensor, extras dict of [E,...] tensors, state)`.
Both the training datasets and the cross-play evaluator drive policies only through these two calls.
"""
from __future__ import annotations

import time

import numpy as np
import torch

OBS, ACTIONS, REWARD, AGENT_REWARD, TERMINATED, RETURN = "obs", "actions", "reward", "agent_reward", "terminated", "return"
ENV_STEPS, ROLLOUT_SECONDS = "env_steps", "rollout_seconds"


@torch.no_grad()
def collect_rollout(env, policy, seeds, explore: bool, device: torch.device | str = "cpu") -> dict:
    """Play one episode in each env copy (reset with `seeds`) with `policy`; return the rollout dict.

    The only per-step Python is the env's own stepping; policy calls are batched over envs and agents.
    """
    start = time.perf_counter()
    obs = env.reset(seeds)
    E, N = obs.shape[:2]
    T = env.max_cycles
    obs_buf = np.zeros((E, T + 1, N, obs.shape[-1]), np.float32)
    act_buf = np.zeros((E, T, N), np.int64)
    rew_buf = np.zeros((E, T, N), np.float32)
    term_buf = np.zeros((E, T), np.float32)
    extras: dict[str, list[torch.Tensor]] = {}
    state = policy.reset_policy_state(E, N)
    obs_buf[:, 0] = obs
    for t in range(T):
        actions, step_extras, state = policy.act(torch.as_tensor(obs, device=device), t, state, explore)
        actions_np = actions.cpu().numpy()
        obs, rew, term, trunc = env.step(actions_np)
        obs_buf[:, t + 1], act_buf[:, t], rew_buf[:, t] = obs, actions_np, rew
        term_buf[:, t] = term.all(-1)
        for k, v in step_extras.items():
            extras.setdefault(k, []).append(v.detach().cpu())
    team = rew_buf.mean(-1)
    rollout = {OBS: torch.from_numpy(obs_buf), ACTIONS: torch.from_numpy(act_buf), REWARD: torch.from_numpy(team),
               AGENT_REWARD: torch.from_numpy(rew_buf), TERMINATED: torch.from_numpy(term_buf),
               RETURN: torch.from_numpy(team.sum(-1))}
    rollout.update({k: torch.stack(v, 1) for k, v in extras.items()})
    rollout[ENV_STEPS] = torch.tensor(E * T)
    rollout[ROLLOUT_SECONDS] = torch.tensor(time.perf_counter() - start)
    return rollout


class RandomPolicy:
    """Uniform random actions: the floor every algorithm must beat."""

    def __init__(self, n_actions: int = 5, seed: int = 0):
        self.n_actions = n_actions
        self.generator = torch.Generator().manual_seed(seed)

    def reset_policy_state(self, num_envs: int, num_agents: int):
        return None

    def act(self, obs, t, state, explore):
        return torch.randint(0, self.n_actions, obs.shape[:2], generator=self.generator), {}, state
