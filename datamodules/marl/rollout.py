"""The loop that plays a policy in a vectorised environment and returns the rollout (`contracts.batch.marl`), and
the uniformly random policy that every algorithm must beat."""
from __future__ import annotations

import time

import numpy as np
import torch

from contracts.batch.marl import (ACTIONS, AGENT_REWARD, ENV_STEPS, OBS, RETURN, REWARD, ROLLOUT_SECONDS, TERMINATED,
                                  Policy, VectorEnv)


@torch.no_grad()
def collect_rollout(env: VectorEnv, policy: Policy, seeds, explore: bool, device: torch.device | str = "cpu") -> dict:
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
