"""The cross-play evaluator pairs agents as documented: partner in the odd slots, ego in the even ones."""
from __future__ import annotations

import json

import numpy as np
import torch

from benchmarks.marl_crossplay import crossplay_matrix, summarise
from datamodules.marl.rollout import collect_rollout
from lightning_modules.marl.crossplay import MixedTeam, partner_slots


class ConstantPolicy:
    """Always the same action; remembers the team's previous actions like CORD does."""

    def __init__(self, action: int):
        self.action = action
        self.seen_prev = []

    def reset_policy_state(self, num_envs, num_agents):
        return {"prev_action": torch.zeros(num_envs, num_agents, 5)}

    def act(self, obs, t, state, explore):
        self.seen_prev.append(state["prev_action"].argmax(-1).clone())
        return torch.full(obs.shape[:2], self.action, dtype=torch.long), {}, state


class FakeEnv:
    """Returns reward = the number of agents that chose action 1, so a team's return reveals who played where."""

    max_cycles, num_envs = 3, 2

    def __init__(self, num_agents=5):
        self.num_agents = num_agents

    def reset(self, seeds):
        return np.zeros((self.num_envs, self.num_agents, 4), np.float32)

    def step(self, actions):
        rew = np.repeat((actions == 1).sum(-1, keepdims=True), self.num_agents, 1).astype(np.float32)
        done = np.zeros_like(rew, dtype=bool)
        return np.zeros((self.num_envs, self.num_agents, 4), np.float32), rew, done, done


def test_partner_plays_odd_slots():
    assert partner_slots(5).tolist() == [False, True, False, True, False]
    ego, partner = ConstantPolicy(1), ConstantPolicy(2)
    team = MixedTeam(ego, partner)
    rollout = collect_rollout(FakeEnv(5), team, [0, 1], explore=False)
    assert (rollout["actions"][:, :, [0, 2, 4]] == 1).all() and (rollout["actions"][:, :, [1, 3]] == 2).all()
    # both members remember the team's real previous actions (what CORD's controller reads)
    assert ego.seen_prev[1].tolist() == [[1, 2, 1, 2, 1]] * 2 and partner.seen_prev[2].tolist() == [[1, 2, 1, 2, 1]] * 2


def test_matrix_and_summary():
    policies = [ConstantPolicy(1), ConstantPolicy(1), ConstantPolicy(0)]
    matrix = crossplay_matrix(policies, policies, FakeEnv(4), seeds=np.arange(2))
    # 4 agents: ego slots 0, 2; partner slots 1, 3; reward per step = agents playing 1, 3 steps; team mean = same
    expected = np.array([[12, 12, 6], [12, 12, 6], [6, 6, 0]], float)
    np.testing.assert_allclose(matrix, expected)
    per_run = summarise(matrix, ["a", "a", "b"])
    assert per_run[0]["crossplay_return"] == 9.0 and per_run[0]["crossplay_seed_return"] == 12.0
    assert per_run[0]["crossplay_algo_return"] == 6.0 and per_run[0]["generalisation_gap"] == 3.0
    assert per_run[2]["crossplay_return"] == 6.0 and per_run[2]["generalisation_gap"] == -6.0
    assert np.isnan(per_run[2]["crossplay_seed_return"])
    json.dumps(per_run)  # serialisable for the records
