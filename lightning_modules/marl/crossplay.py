"""Mixed teams for cross-play: agents of one trained team ("ego") with some slots played by another ("partner").

Pairing rule (documented on the boards and tested in tests/marl/test_crossplay.py): in a team of N agents
(package order: collector_0.., deposit_0.. for collect_treasure; agent_0.. for simple_spread) the partner plays a
`fraction` of the slots, spread evenly: slot i is the partner's when floor((i + 1) f) > floor(i f). The default
f = 0.5 gives the odd slots 1, 3, 5, ... (the ego keeps 0, 2, 4, ...); f = 1 gives the partner every slot, f = 0
none. Each policy keeps its own state (roles, previous actions) and sees the whole team's observations, exactly as
in its own training: a CORD partner's controller assigns roles to all N agents, and only the actions of its own
slots are used.
"""
from __future__ import annotations

import math

import torch


def partner_slots(num_agents: int, fraction: float = 0.5) -> torch.Tensor:
    """[N] bool: True where the partner team plays (round(f N) slots, evenly spread; f = 0.5: the odd slots)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"partner fraction is a share of the team's slots; got {fraction}, use a value in [0, 1]")
    i = torch.arange(num_agents, dtype=torch.float64)
    # the small offset keeps floor() exact at f = 0.5 and similar binary fractions
    return torch.floor((i + 1) * fraction + 1e-9) > torch.floor(i * fraction + 1e-9)


class MixedTeam:
    """A policy (the rollout protocol of contracts.batch.marl) made of an ego and a partner policy."""

    def __init__(self, ego, partner, fraction: float = 0.5):
        if math.isnan(fraction):
            raise ValueError("partner fraction is NaN; use a value in [0, 1]")
        self.ego, self.partner, self.fraction = ego, partner, fraction

    def reset_policy_state(self, num_envs: int, num_agents: int):
        self.slots = partner_slots(num_agents, self.fraction)
        return (self.ego.reset_policy_state(num_envs, num_agents), self.partner.reset_policy_state(num_envs, num_agents))

    def act(self, obs, t, state, explore):
        ego_actions, _, ego_state = self.ego.act(obs, t, state[0], explore)
        partner_actions, _, partner_state = self.partner.act(obs, t, state[1], explore)
        slots = self.slots.to(ego_actions.device)
        actions = torch.where(slots, partner_actions.to(ego_actions.device), ego_actions)
        # each policy's memory of "previous actions" is the team's actual previous actions
        return actions, {}, (_with_actions(self.ego, ego_state, actions), _with_actions(self.partner, partner_state, actions))


def _with_actions(policy, state, actions):
    """Policies that remember the previous actions (CORD's controller) learn what the team really did."""
    if isinstance(state, dict) and "prev_action" in state:
        state = {**state, "prev_action": torch.nn.functional.one_hot(actions, state["prev_action"].shape[-1]).float()}
    return state
