"""Mixed teams for cross-play: agents of one trained team ("ego") with some slots played by another ("partner").

Pairing rule (documented on the boards and tested in tests/marl/test_crossplay.py): in a team of N agents
(package order: collector_0.., deposit_0.. for collect_treasure; agent_0.. for simple_spread) the partner plays the
odd slots 1, 3, 5, ... and the ego plays the even slots 0, 2, 4, ... Each policy keeps its own state (roles,
previous actions) and sees the whole team's observations, exactly as in its own training: a CORD partner's
controller assigns roles to all N agents, and only the actions of its own slots are used.
"""
from __future__ import annotations

import torch


def partner_slots(num_agents: int) -> torch.Tensor:
    """[N] bool: True where the partner team plays (odd slots)."""
    return torch.arange(num_agents) % 2 == 1


class MixedTeam:
    """A policy (the rollout protocol of contracts.batch.marl) made of an ego and a partner policy."""

    def __init__(self, ego, partner):
        self.ego, self.partner = ego, partner

    def reset_policy_state(self, num_envs: int, num_agents: int):
        self.slots = partner_slots(num_agents)
        return (self.ego.reset_policy_state(num_envs, num_agents), self.partner.reset_policy_state(num_envs, num_agents))

    def act(self, obs, t, state, explore):
        ego_actions, _, ego_state = self.ego.act(obs, t, state[0], explore)
        partner_actions, _, partner_state = self.partner.act(obs, t, state[1], explore)
        slots = self.slots.to(ego_actions.device)
        actions = torch.where(slots, partner_actions, ego_actions)
        # each policy's memory of "previous actions" is the team's actual previous actions
        return actions, {}, (_with_actions(self.ego, ego_state, actions), _with_actions(self.partner, partner_state, actions))


def _with_actions(policy, state, actions):
    """Policies that remember the previous actions (CORD's controller) learn what the team really did."""
    if isinstance(state, dict) and "prev_action" in state:
        state = {**state, "prev_action": torch.nn.functional.one_hot(actions, state["prev_action"].shape[-1]).float()}
    return state
