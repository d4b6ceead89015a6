"""mpe2 `simple_spread_v3` re-implemented on batched numpy arrays: every env copy and every agent at once.

The package steps each world in per-agent Python, and on the simple_spread board the environment, not the learner,
took most of a run (a random team's run cost 80% of a learning algorithm's). This backend computes the same physics
(action force 5 x direction, pairwise soft contact forces between agents with force 100 and margin 1e-3, damping
0.25, dt 0.1, mass 1, no speed cap), the same rewards (global: minus the sum over landmarks of the nearest agent's
distance; local: -1 per other agent within 0.3; reward = global (1 - local_ratio) + local x local_ratio) and the
same observations (own velocity and position, the nearest landmarks and the nearest other agents, zero-padded, as
the package's `num_*_neighbors` options give them; the always-zero communication slots are dropped, as the
canonical layout of `mpe_env.py` does). No loop over agents, env copies or steps.
Resets draw, per env copy, from a generator seeded by the episode's seed in the package's order (agents, then
landmarks), so an episode depends on its seed only; `tests/marl/test_env.py` checks observations, rewards and dones
against the package step by step and the first observation of a seeded reset exactly.
Source of every constant: mpe2 1.1.1 `simple_spread/simple_spread.py`, `_mpe_utils/core.py`, `_mpe_utils/simple_env.py`.
"""
from __future__ import annotations

import numpy as np

from datamodules.marl.mpe_env import MPEVectorEnv, ScenarioConfig, discrete_force

DT, DAMPING, SENSITIVITY = 0.1, 0.25, 5.0
AGENT_SIZE, CONTACT_FORCE, CONTACT_MARGIN = 0.15, 1e2, 1e-3


class BatchedSimpleSpread(MPEVectorEnv):
    """Same interface and canonical observations as `MPEVectorEnv` over simple_spread, without the package."""

    def __init__(self, config: ScenarioConfig, num_envs: int, train_config: ScenarioConfig | None = None):
        if config.scenario != "simple_spread":
            raise ValueError("this numpy backend implements simple_spread only")
        if config.args.get("curriculum") or config.args.get("terminate_on_success"):
            raise ValueError("the numpy simple_spread has no curriculum or early termination; drop those arguments "
                             "or use backend: package")
        self.config, self.layout_config, self.num_envs = config, train_config or config, num_envs
        self.N = int(config.args.get("N", 3))
        self.local_ratio = float(config.args.get("local_ratio", 0.5))
        self.max_cycles = int(config.args.get("max_cycles", 25))
        self.agents = [f"agent_{i}" for i in range(self.N)]
        self.num_agents = self.N
        self._prepare_layout()
        self.pos = np.zeros((num_envs, self.N, 2))
        self.vel = np.zeros((num_envs, self.N, 2))
        self.landmarks = np.zeros((num_envs, self.N, 2))
        self.steps = 0

    def close(self) -> None:
        pass

    def reset(self, seeds) -> np.ndarray:
        seeds = np.asarray(seeds, dtype=np.int64)
        if seeds.shape != (self.num_envs,):
            raise ValueError(f"reset needs one seed per env copy ({self.num_envs}), got {seeds.shape}")
        draws = np.stack([np.random.default_rng(int(s)).uniform(-1.0, 1.0, (2 * self.N, 2)) for s in seeds])
        self.pos, self.landmarks = draws[:, :self.N].copy(), draws[:, self.N:].copy()
        self.vel = np.zeros_like(self.pos)
        self.steps = 0
        return self.observe()

    def load_state(self, package_envs) -> None:
        """Copy the worlds of mpe2 parallel envs (one per env copy) into this backend (used by the tests)."""
        for e, env in enumerate(package_envs):
            world = env.unwrapped.world
            for i, agent in enumerate(world.agents):
                self.pos[e, i], self.vel[e, i] = agent.state.p_pos, agent.state.p_vel
            for j, lm in enumerate(world.landmarks):
                self.landmarks[e, j] = lm.state.p_pos
            self.steps = env.unwrapped.steps

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions)
        force = discrete_force(actions, SENSITIVITY)
        delta = self.pos[:, :, None] - self.pos[:, None]  # [E, a, b, 2] = p_a - p_b
        dist = np.sqrt(np.sum(np.square(delta), -1))
        penetration = np.logaddexp(0, -(dist - 2 * AGENT_SIZE) / CONTACT_MARGIN) * CONTACT_MARGIN
        off = ~np.eye(self.N, dtype=bool)
        with np.errstate(invalid="ignore", divide="ignore"):
            pair = CONTACT_FORCE * delta / dist[..., None] * penetration[..., None]
        force += np.where(off[None, :, :, None], pair, 0.0).sum(2)  # a receives +f from b, b receives -f (antisymmetric)
        self.pos = self.pos + self.vel * DT
        self.vel = self.vel * (1 - DAMPING) + force * DT  # mass 1, no speed cap
        self.steps += 1
        rewards = self._rewards()
        done = np.full((self.num_envs, self.N), self.steps >= self.max_cycles)
        return self.observe(), rewards.astype(np.float32), np.zeros_like(done), done

    def _rewards(self) -> np.ndarray:
        to_landmark = np.sqrt(np.sum(np.square(self.landmarks[:, None] - self.pos[:, :, None]), -1))  # [E, agent, lm]
        global_reward = -to_landmark.min(1).sum(-1)  # [E]
        dist = np.sqrt(np.sum(np.square(self.pos[:, :, None] - self.pos[:, None]), -1))
        collisions = ((dist < 2 * AGENT_SIZE) & ~np.eye(self.N, dtype=bool)).sum(-1)  # [E, N]
        return global_reward[:, None] * (1 - self.local_ratio) - collisions * self.local_ratio

    def observe(self) -> np.ndarray:
        E, N = self.num_envs, self.N
        K, L = self.max_others, self.max_landmarks
        out = np.zeros((E, N, self.obs_dim), dtype=np.float32)
        out[..., :2], out[..., 2:4] = self.vel, self.pos
        o_end = self.self_dim + self.type_dim
        rel = self.pos[:, None] - self.pos[:, :, None]  # [E, i, j, 2] = p_j - p_i
        dist = np.sqrt(np.sum(np.square(rel), -1))
        dist[:, np.arange(N), np.arange(N)] = np.inf  # self last, then dropped
        k = min(K, N - 1)
        order = np.argsort(dist, axis=-1)[..., :k]
        e_idx, i_idx = np.arange(E)[:, None, None], np.arange(N)[None, :, None]
        out[..., o_end: o_end + 2 * k] = rel[e_idx, i_idx, order].reshape(E, N, -1)
        l_rel = self.landmarks[:, None] - self.pos[:, :, None]  # [E, i, lm, 2]
        l_order = np.argsort(np.sqrt(np.sum(np.square(l_rel), -1)), axis=-1)[..., :min(L, N)]
        start = o_end + 2 * K
        out[..., start: start + 2 * l_order.shape[-1]] = l_rel[e_idx, i_idx, l_order].reshape(E, N, -1)
        return out
