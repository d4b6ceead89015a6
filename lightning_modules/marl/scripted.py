"""Scripted (hand-written, nothing learned) teams for mpe2 collect_treasure and simple_spread and vmas dispersion: the competent
reference of the generalisation protocol (held-out scripted partners, and the "best" end of the min-max
normalisation).

They read only each agent's own canonical observation (`datamodules.marl.mpe_env`), so a scripted agent can sit in
any slot of a team of any size next to learned agents. collect_treasure:
  - a free collector heads for the alive treasure it is the nearest free collector to (so collectors split the
    treasures and rarely collide); if another free collector is nearer to every visible treasure, the nearest one;
  - a loaded collector heads for the deposit of its treasure's type (visible in the others' slots);
  - a deposit (which cannot see its own type) heads for the nearest loaded collector, else the collectors' centroid.
Moving toward a point: the action whose direction best matches (relative position - `brake` x own velocity), so an
agent slows before it arrives instead of overshooting (the world's damping is 0.25 per step).
simple_spread: each agent heads for the landmark it is relatively nearest to (its distance minus the nearest
visible other agent's distance, smallest first), so agents split the landmarks.
`noise` > 0 replaces that fraction of actions by uniform random ones (a weaker partner).
"""
from __future__ import annotations

import torch

# the five discrete actions of mpe2: no-op, -x, +x, -y, +y
_DIRECTIONS = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])


def move_toward(rel: torch.Tensor, vel: torch.Tensor, brake: float = 0.3, stop_radius: float = 0.0) -> torch.Tensor:
    """[..., 2] relative target position and own velocity -> [...] action in 0..4 (0 when within stop_radius)."""
    want = rel - brake * vel
    action = (want @ _DIRECTIONS.to(rel).T).argmax(-1) + 1
    return torch.where(rel.norm(dim=-1) <= stop_radius, torch.zeros_like(action), action)


class ScriptedCollectTreasure:
    """A rollout policy (contracts.batch.marl.Policy) for collect_treasure's canonical observations."""

    def __init__(self, num_deposits: int = 2, max_others: int = 4, max_landmarks: int = 3, noise: float = 0.0,
                 brake: float = 0.3, seed: int = 0):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise is a probability of a random action; got {noise}, use a value in [0, 1]")
        self.K, self.max_others, self.max_landmarks = num_deposits, max_others, max_landmarks
        self.noise, self.brake = noise, brake
        self.generator = torch.Generator().manual_seed(seed)
        self.self_dim, self.other_dim, self.landmark_dim = 4 + num_deposits, 4 + 2 * num_deposits, 2 + num_deposits

    @classmethod
    def for_env(cls, env, **kwargs) -> "ScriptedCollectTreasure":
        """Read the layout (deposit types, slot counts) from a collect_treasure vector env."""
        if env.config.scenario != "collect_treasure":
            raise ValueError(f"the scripted team plays collect_treasure only, not {env.config.scenario}")
        return cls(env.num_types, env.max_others, env.max_landmarks, **kwargs)

    def reset_policy_state(self, num_envs: int, num_agents: int):
        return None

    def split(self, obs: torch.Tensor):
        K, o_start = self.K, self.self_dim + 2
        vel, holding = obs[..., 2:4], obs[..., 4:4 + K]
        is_collector = obs[..., self.self_dim] > 0.5
        others = obs[..., o_start: o_start + self.max_others * self.other_dim]
        others = others.reshape(*obs.shape[:-1], self.max_others, self.other_dim)
        l_start = o_start + self.max_others * self.other_dim
        marks = obs[..., l_start: l_start + self.max_landmarks * self.landmark_dim]
        marks = marks.reshape(*obs.shape[:-1], self.max_landmarks, self.landmark_dim)
        return vel, holding, is_collector, others, marks

    def act(self, obs: torch.Tensor, t: int, state, explore: bool):
        obs = obs.float().cpu()
        K = self.K
        vel, holding, is_collector, others, marks = self.split(obs)
        o_rel, o_dep, o_hold = others[..., :2], others[..., 4:4 + K], others[..., 4 + K:4 + 2 * K]
        o_present = others.abs().sum(-1) > 0  # zero-padded slots are absent
        o_is_deposit = o_dep.sum(-1) > 0.5
        o_free_collector = o_present & ~o_is_deposit & (o_hold.sum(-1) < 0.5)
        t_rel, t_alive = marks[..., :2], marks[..., 2:].sum(-1) > 0.5  # dead treasures are zeroed
        big = torch.tensor(1e6)
        # free collector: the treasures it is the nearest free collector to
        my_dist = torch.where(t_alive, t_rel.norm(dim=-1), big)  # [E, N, L]
        other_to_t = (t_rel.unsqueeze(-3) - o_rel.unsqueeze(-2)).norm(dim=-1)  # [E, N, M, L]
        other_to_t = torch.where(o_free_collector.unsqueeze(-1), other_to_t, big)
        mine = my_dist <= other_to_t.min(-2).values
        pick = torch.where(mine & t_alive, my_dist, my_dist + 1e3).argmin(-1)
        free_target = t_rel.gather(-2, pick[..., None, None].expand(*pick.shape, 1, 2)).squeeze(-2)
        any_alive = t_alive.any(-1)
        # loaded collector: the deposit of the held type
        held = holding.argmax(-1)
        match = o_is_deposit & (o_dep.argmax(-1) == held.unsqueeze(-1))
        dep_target = (o_rel * match.unsqueeze(-1)).sum(-2)
        loaded = holding.sum(-1) > 0.5
        # deposit: the nearest loaded collector, else the collectors' centroid
        o_loaded = o_present & ~o_is_deposit & (o_hold.sum(-1) > 0.5)
        carrier_dist = torch.where(o_loaded, o_rel.norm(dim=-1), big)
        carrier = o_rel.gather(-2, carrier_dist.argmin(-1)[..., None, None].expand(*carrier_dist.shape[:-1], 1, 2))
        o_collector = (o_present & ~o_is_deposit).float().unsqueeze(-1)
        centroid = (o_rel * o_collector).sum(-2) / o_collector.sum(-2).clamp(min=1)
        dep_goal = torch.where(o_loaded.any(-1, keepdim=True), carrier.squeeze(-2), centroid)
        goal = torch.where(loaded.unsqueeze(-1), dep_target, free_target)
        goal = torch.where(is_collector.unsqueeze(-1), goal, dep_goal)
        actions = move_toward(goal, vel, self.brake)
        idle = is_collector & ~loaded & ~any_alive
        actions = torch.where(idle, torch.zeros_like(actions), actions)
        if self.noise > 0:
            random = torch.randint(0, 5, actions.shape, generator=self.generator)
            actions = torch.where(torch.rand(actions.shape, generator=self.generator) < self.noise, random, actions)
        return actions, {}, state


class ScriptedSimpleSpread(ScriptedCollectTreasure):
    """A rollout policy for simple_spread's canonical observations (own vel, pos | others | landmarks)."""

    def __init__(self, max_others: int = 2, max_landmarks: int = 3, noise: float = 0.0, brake: float = 0.3,
                 seed: int = 0):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise is a probability of a random action; got {noise}, use a value in [0, 1]")
        self.max_others, self.max_landmarks, self.noise, self.brake = max_others, max_landmarks, noise, brake
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def for_env(cls, env, **kwargs) -> "ScriptedSimpleSpread":
        if env.config.scenario != "simple_spread":
            raise ValueError(f"ScriptedSimpleSpread plays simple_spread only, not {env.config.scenario}")
        return cls(env.max_others, env.max_landmarks, **kwargs)

    def act(self, obs: torch.Tensor, t: int, state, explore: bool):
        obs = obs.float().cpu()
        K, L = self.max_others, self.max_landmarks
        vel = obs[..., :2]
        others = obs[..., 4:4 + 2 * K].reshape(*obs.shape[:-1], K, 2)
        marks = obs[..., 4 + 2 * K:4 + 2 * K + 2 * L].reshape(*obs.shape[:-1], L, 2)
        present = others.abs().sum(-1) > 0
        mine = marks.norm(dim=-1)  # [E, N, L]
        theirs = (marks.unsqueeze(-3) - others.unsqueeze(-2)).norm(dim=-1)  # [E, N, K, L]
        theirs = torch.where(present.unsqueeze(-1), theirs, torch.tensor(1e6)).min(-2).values
        pick = (mine - theirs).argmin(-1)
        goal = marks.gather(-2, pick[..., None, None].expand(*pick.shape, 1, 2)).squeeze(-2)
        actions = move_toward(goal, vel, self.brake)
        if self.noise > 0:
            random = torch.randint(0, 5, actions.shape, generator=self.generator)
            actions = torch.where(torch.rand(actions.shape, generator=self.generator) < self.noise, random, actions)
        return actions, {}, state


# vmas's nine discrete actions: index 3 * ax + ay, each axis in {none, -, +}; unit directions (0 for none)
_VMAS_DIRECTIONS = torch.nn.functional.normalize(torch.tensor(
    [[x, y] for x in (0.0, -1.0, 1.0) for y in (0.0, -1.0, 1.0)]), dim=-1)


class ScriptedDispersion:
    """A rollout policy for vmas dispersion's observations [pos, vel | per food: rel. pos, eaten | agent id]: agent k
    heads for food k while it is uneaten, then for the nearest uneaten food, and stays put when all are eaten. It
    needs the agent-id slots (without them every agent would pick the same food)."""

    def __init__(self, n_food: int, id_slots: int, noise: float = 0.0, brake: float = 0.3, seed: int = 0):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise is a probability of a random action; got {noise}, use a value in [0, 1]")
        self.n_food, self.id_slots, self.noise, self.brake = n_food, id_slots, noise, brake
        self.generator = torch.Generator().manual_seed(seed)

    @classmethod
    def for_env(cls, env, **kwargs) -> "ScriptedDispersion":
        if env.scenario != "dispersion" or not env.agent_id:
            raise ValueError("ScriptedDispersion plays vmas dispersion with agent_id observations only")
        return cls(env.args.get("n_food", env.args.get("n_agents", 4)), env.id_slots, **kwargs)

    def reset_policy_state(self, num_envs: int, num_agents: int):
        return None

    def act(self, obs: torch.Tensor, t: int, state, explore: bool):
        obs = obs.float().cpu()
        F_ = self.n_food
        vel = obs[..., 2:4]
        food = obs[..., 4:4 + 3 * F_].reshape(*obs.shape[:-1], F_, 3)
        rel, alive = food[..., :2], food[..., 2] < 0.5
        own = obs[..., 4 + 3 * F_:].argmax(-1) % F_  # [E, N] the agent's own food
        dist = torch.where(alive, rel.norm(dim=-1), torch.tensor(1e6))
        own_alive = alive.gather(-1, own.unsqueeze(-1)).squeeze(-1)
        pick = torch.where(own_alive, own, dist.argmin(-1))
        goal = rel.gather(-2, pick[..., None, None].expand(*pick.shape, 1, 2)).squeeze(-2)
        want = goal - self.brake * vel / 10.0  # vmas velocities are per second, dt = 0.1
        actions = (want @ _VMAS_DIRECTIONS[1:].T).argmax(-1) + 1
        actions = torch.where(alive.any(-1), actions, torch.zeros_like(actions))
        if self.noise > 0:
            random = torch.randint(0, 9, actions.shape, generator=self.generator)
            actions = torch.where(torch.rand(actions.shape, generator=self.generator) < self.noise, random, actions)
        return actions, {}, state


def scripted_for(env, **kwargs):
    """The scripted team of the env's scenario, or None where there is none."""
    scenario = getattr(env, "scenario", None) or getattr(getattr(env, "config", None), "scenario", None)
    cls = {"collect_treasure": ScriptedCollectTreasure, "simple_spread": ScriptedSimpleSpread,
           "dispersion": ScriptedDispersion}.get(scenario)
    return None if cls is None else cls.for_env(env, **kwargs)
