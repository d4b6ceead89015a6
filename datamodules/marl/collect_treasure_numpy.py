"""mpe2 `collect_treasure_v1` re-implemented on batched numpy arrays: every env copy and every agent at once.

The package steps each world in per-agent Python (~300-900 env steps/s here); this backend computes the same
physics, pickup/delivery/respawn rules, rewards and observations as array operations over [E, agents, ...], so
the rollout pipeline is limited by the policy instead. It is the `backend="numpy"` of the collect_treasure
datamodule; `tests/marl/test_env.py` checks it against the package step by step (state synchronised from the
package, fixed actions: identical observations, rewards, done flags). The only loop left is over treasures
(pickups are resolved treasure by treasure, first collector in agent order, as the package does).
Source of every constant: mpe2 1.1.1 `collect_treasure/collect_treasure.py` and `_mpe_utils/core.py`
(dt 0.1, damping 0.25, accel 1.5, max speed 1.0, masses 1 / 2.25, sizes 0.05 / 0.075 / 0.025, +5 pickup,
+5 delivery, -5 per overlapping collector pair, -0.1 x distance shaping). Respawned treasures draw their position
and type from this backend's own generator (the package uses its env's np_random), so episodes are statistically,
not bitwise, identical to the package's for the same seed.
Each env copy owns a generator seeded by its episode's seed (as each package env owns its np_random), so an
episode depends on its seed only, not on which other seeds share the batch: 64 test episodes played as 4 batches
of 16 (a run's test) or as one batch of 64 (the cross-play evaluator) are the same episodes.
"""
from __future__ import annotations

import numpy as np

from datamodules.marl.mpe_env import MPEVectorEnv, ScenarioConfig, discrete_force

DT, DAMPING, ACCEL, MAX_SPEED = 0.1, 0.25, 1.5, 1.0
COLLECTOR_SIZE, DEPOSIT_SIZE, TREASURE_SIZE = 0.05, 0.075, 0.025
BOUND = 0.95


class BatchedCollectTreasure(MPEVectorEnv):
    """Same interface and canonical observations as `MPEVectorEnv` over collect_treasure, without the package."""

    def __init__(self, config: ScenarioConfig, num_envs: int, train_config: ScenarioConfig | None = None):
        if config.scenario != "collect_treasure":
            raise ValueError("the numpy backend implements collect_treasure only")
        self.config, self.layout_config, self.num_envs = config, train_config or config, num_envs
        a = config.args
        self.C, self.K, self.T = a.get("num_collectors", 6), a.get("num_deposits", 2), a.get("num_treasures", 6)
        self.max_cycles = int(a.get("max_cycles", 25))
        self.agents = [f"collector_{i}" for i in range(self.C)] + [f"deposit_{i}" for i in range(self.K)]
        self.num_agents = M = self.C + self.K
        self._prepare_layout()
        self.size = np.r_[np.full(self.C, COLLECTOR_SIZE), np.full(self.K, DEPOSIT_SIZE)]
        self.mass = np.r_[np.full(self.C, 1.0), np.full(self.K, 2.25)]
        self.pos = np.zeros((num_envs, M, 2))
        self.vel = np.zeros((num_envs, M, 2))
        self.holding = np.full((num_envs, self.C), -1)
        self.t_pos = np.zeros((num_envs, self.T, 2))
        self.t_type = np.zeros((num_envs, self.T), dtype=np.int64)
        self.t_alive = np.ones((num_envs, self.T), dtype=bool)
        self.steps = 0
        self.rngs = [np.random.default_rng(e) for e in range(num_envs)]

    def close(self) -> None:
        pass

    # ----- state -------------------------------------------------------------------------------------------------
    def reset(self, seeds) -> np.ndarray:
        seeds = np.asarray(seeds, dtype=np.int64)
        if seeds.shape != (self.num_envs,):
            raise ValueError(f"reset needs one seed per env copy ({self.num_envs}), got {seeds.shape}")
        self.rngs = [np.random.default_rng(int(seed)) for seed in seeds]
        E = self.num_envs
        # per copy, in the package's order: agent positions, then treasure types and positions
        self.pos = np.stack([rng.uniform(-1.0, 1.0, (self.num_agents, 2)) for rng in self.rngs])
        self.vel = np.zeros_like(self.pos)
        self.holding = np.full((E, self.C), -1)
        self.t_type = np.stack([rng.integers(0, self.K, self.T) for rng in self.rngs])
        self.t_pos = np.stack([rng.uniform(-BOUND, BOUND, (self.T, 2)) for rng in self.rngs])
        self.t_alive = np.ones((E, self.T), dtype=bool)
        self.steps = 0
        return self.observe()

    def load_state(self, package_envs) -> None:
        """Copy the worlds of mpe2 parallel envs (one per env copy) into this backend (used by the tests)."""
        for e, env in enumerate(package_envs):
            world = env.unwrapped.world
            for m, agent in enumerate(world.agents):
                self.pos[e, m], self.vel[e, m] = agent.state.p_pos, agent.state.p_vel
                if m < self.C:
                    self.holding[e, m] = -1 if agent.holding is None else agent.holding
            for t, lm in enumerate(world.landmarks):
                self.t_pos[e, t], self.t_type[e, t], self.t_alive[e, t] = lm.state.p_pos, lm.type, lm.alive
            self.steps = env.unwrapped.steps

    # ----- dynamics ------------------------------------------------------------------------------------------------
    def step(self, actions: np.ndarray):
        actions = np.asarray(actions)
        E, C = self.num_envs, self.C
        u = discrete_force(actions, ACCEL)
        # World.integrate_state: position with the old velocity, then damping, force / mass, speed cap
        self.pos = self.pos + self.vel * DT
        vel = self.vel * (1 - DAMPING)
        vel = vel + (u / self.mass[None, :, None]) * DT
        speed = np.sqrt(np.square(vel[..., 0]) + np.square(vel[..., 1]))
        capped = speed > MAX_SPEED
        vel = np.where(capped[..., None], vel / np.where(capped, speed, 1.0)[..., None] * MAX_SPEED, vel)
        self.vel = vel
        collecting, depositing = self._post_step()
        rewards = self._rewards(collecting + depositing)
        self.steps += 1
        done = np.full((E, self.num_agents), self.steps >= self.max_cycles)
        return self.observe(), rewards.astype(np.float32), np.zeros_like(done), done

    def _post_step(self):
        """Pickups (treasure by treasure, first free collector in agent order), respawns of treasures that were
        dead at the start of the step, then deliveries; returns the global collecting and deposit rewards [E]."""
        E, C = self.num_envs, self.C
        rows = np.arange(E)
        collecting = np.zeros(E)
        dead_at_start = ~self.t_alive
        for t in range(self.T):
            alive = self.t_alive[:, t]
            delta = self.t_pos[:, t, None] - self.pos[:, :C]
            dist = np.sqrt(np.sum(np.square(delta), -1))  # [E, C]
            candidate = alive[:, None] & (self.holding < 0) & (dist < TREASURE_SIZE + COLLECTOR_SIZE)
            picked = candidate.any(1)
            first = candidate.argmax(1)
            collecting += 5.0 * picked
            e = rows[picked]
            self.holding[e, first[picked]] = self.t_type[picked, t]
            self.t_alive[picked, t] = False
            self.t_pos[picked, t] = -999.0
            for e in np.flatnonzero(dead_at_start[:, t]):  # rare: a treasure picked up on the previous step
                self.t_pos[e, t] = self.rngs[e].uniform(-BOUND, BOUND, 2)
                self.t_type[e, t] = self.rngs[e].integers(0, self.K)
                self.t_alive[e, t] = True
        holding = self.holding >= 0
        deposit_pos = self.pos[rows[:, None], C + np.maximum(self.holding, 0)]  # [E, C, 2] matching deposit
        dist = np.sqrt(np.sum(np.square(self.pos[:, :C] - deposit_pos), -1))
        delivered = holding & (dist < COLLECTOR_SIZE + DEPOSIT_SIZE)
        self.holding[delivered] = -1
        return collecting, 5.0 * delivered.sum(1)

    def _rewards(self, global_reward: np.ndarray) -> np.ndarray:
        E, C, K = self.num_envs, self.C, self.K
        rows = np.arange(E)
        cpos = self.pos[:, :C]
        pair = np.sqrt(np.sum(np.square(cpos[:, :, None] - cpos[:, None]), -1))  # [E, C, C]
        overlap = (pair < 2 * COLLECTOR_SIZE) & ~np.eye(C, dtype=bool)
        reward = np.zeros((E, self.num_agents))
        reward[:, :C] -= 5.0 * overlap.sum(-1)
        to_treasure = np.sqrt(np.sum(np.square(self.t_pos[:, None] - cpos[:, :, None]), -1))  # [E, C, T]
        to_treasure = np.where(self.t_alive[:, None], to_treasure, np.inf)
        nearest = to_treasure.min(-1)
        free = self.holding < 0
        shaping_free = np.where(np.isfinite(nearest), -0.1 * nearest, 0.0)
        deposit_pos = self.pos[rows[:, None], C + np.maximum(self.holding, 0)]
        shaping_held = -0.1 * np.sqrt(np.sum(np.square(deposit_pos - cpos), -1))
        reward[:, :C] += np.where(free, shaping_free, shaping_held)
        dpos = self.pos[:, C:]  # [E, K, 2]
        carrier = self.holding[:, None, :] == np.arange(K)[None, :, None]  # [E, K, C]
        to_carrier = np.sqrt(np.sum(np.square(cpos[:, None] - dpos[:, :, None]), -1))  # [E, K, C]
        nearest_carrier = np.where(carrier, to_carrier, np.inf).min(-1)
        centroid = np.mean(cpos, axis=1)  # [E, 2]
        to_centroid = np.linalg.norm(centroid[:, None] - dpos, axis=-1)
        reward[:, C:] = np.where(carrier.any(-1), -0.1 * nearest_carrier, -0.1 * to_centroid)
        return reward + global_reward[:, None]

    # ----- observations ---------------------------------------------------------------------------------------------
    def raw_observations(self):
        """The package's per-agent observation vectors, batched: (collectors [E, C, dc], deposits [E, K, dd])."""
        E, C, K, M = self.num_envs, self.C, self.K, self.num_agents
        types = np.arange(K)
        holding_1h = (self.holding[..., None] == types).astype(float)  # [E, C, K]
        encoding = np.zeros((E, M, 2 * K))
        encoding[:, C:, :K] = np.eye(K)[None]  # deposit type
        encoding[:, :C, K:] = holding_1h
        rel = self.pos[:, None] - self.pos[:, :, None]  # [E, i, j, 2] = pos_j - pos_i
        dist = np.sqrt(np.sum(np.square(rel), -1))
        dist[:, np.arange(M), np.arange(M)] = np.inf  # self last, then dropped
        order = np.argsort(dist, axis=-1, kind="stable")[..., : M - 1]  # [E, M, M-1]
        e_idx, i_idx = np.arange(E)[:, None, None], np.arange(M)[None, :, None]
        others = np.concatenate([rel[e_idx, i_idx, order], self.vel[e_idx, order], encoding[e_idx, order]], -1)
        t_rel = self.t_pos[:, None] - self.pos[:, :, None]  # [E, M, T, 2]
        t_dist = np.sqrt(np.sum(np.square(t_rel), -1))
        key = np.where(self.t_alive[:, None], t_dist, 1e6)
        t_order = np.argsort(key, axis=-1, kind="stable")
        alive = np.take_along_axis(np.broadcast_to(self.t_alive[:, None], key.shape), t_order, -1)[..., None]
        t_feat = np.concatenate([np.take_along_axis(t_rel, t_order[..., None], 2),
                                 (np.take_along_axis(np.broadcast_to(self.t_type[:, None], key.shape), t_order, -1)[..., None]
                                  == types).astype(float)], -1) * alive
        own = np.concatenate([self.pos, self.vel], -1)
        collector = np.concatenate([own[:, :C], holding_1h, others[:, :C].reshape(E, C, -1), t_feat[:, :C].reshape(E, C, -1)], -1)
        deposit = np.concatenate([own[:, C:], others[:, C:].reshape(E, K, -1), t_feat[:, C:].reshape(E, K, -1)], -1)
        return collector.astype(np.float32), deposit.astype(np.float32)

    def observe(self) -> np.ndarray:
        return self.canonical_groups(*self.raw_observations())
