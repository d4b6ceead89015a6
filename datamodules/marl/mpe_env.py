"""Vectorised multi-agent particle worlds (PyPI `mpe2`): several copies of an mpe2 parallel env stepped as one.

`MPEVectorEnv` keeps `num_envs` copies of `mpe2.<scenario>.parallel_env` and exchanges batched numpy arrays:
observations [E, N, obs_dim], rewards [E, N], terminated/truncated [E, N]. The package itself is per-agent Python
(that is its simulator); the wrapper adds no per-agent work beyond stacking each env's dict once per step.

Observations are rewritten into one *canonical layout* shared by every agent and every team size, so that one
parameter-shared network can drive collectors and deposits, and a team trained with N agents can play with N+1:
  collect_treasure: [own pos, vel, holding one-hot (zeros for deposits) | agent type one-hot (collector, deposit)
                     | the `max_others` nearest other agents (rel. pos, vel, deposit-type, holding-type) zero-padded
                     | the `max_landmarks` treasures (rel. pos, type one-hot), alive first by distance]
  simple_spread:    [own vel, pos | `max_landmarks` nearest landmarks (rel. pos) | `max_others` nearest agents]
                    (the package's own `num_*_neighbors` options give the nearest-first, zero-padded slots; the
                    communication slots are dropped: every simple_spread agent is silent, they are always 0).
The package sorts other agents and treasures nearest first, so truncating to the training team's slot count keeps
the nearest ones when a larger team plays. With the training team's sizes the canonical observation holds every
raw value unchanged (tests/marl/test_env.py checks this against the package for fixed actions).

Team reward = mean over agents of the package's per-agent rewards (every algorithm trains on it; the boards report
its undiscounted sum over an episode).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SCENARIOS = ("collect_treasure", "simple_spread")


@dataclass(frozen=True)
class ScenarioConfig:
    """Which mpe2 scenario, its arguments, and the observation slots of the canonical layout."""

    scenario: str
    args: dict = field(default_factory=dict)
    max_others: int | None = None  # None: the training team's count (num_agents - 1)
    max_landmarks: int | None = None

    def make(self, seed_args: dict | None = None):
        args = {**self.args, **(seed_args or {})}
        if self.scenario == "collect_treasure":
            from mpe2 import collect_treasure_v1

            return collect_treasure_v1.parallel_env(**args)
        if self.scenario == "simple_spread":
            from mpe2 import simple_spread_v3

            n = args.get("N", 3)
            if self.others(n) > 0:  # a one-agent world has no neighbour slots
                args.setdefault("num_agent_neighbors", self.others(n))
            args.setdefault("num_landmark_neighbors", self.landmarks(n))
            return simple_spread_v3.parallel_env(**args)
        raise ValueError(f"unknown mpe2 scenario {self.scenario!r}; choose one of {', '.join(SCENARIOS)}")

    def num_agents(self) -> int:
        if self.scenario == "collect_treasure":
            return self.args.get("num_collectors", 6) + self.args.get("num_deposits", 2)
        return self.args.get("N", 3)

    def others(self, n: int | None = None) -> int:
        return self.max_others if self.max_others is not None else self.num_agents() - 1

    def landmarks(self, n: int | None = None) -> int:
        if self.max_landmarks is not None:
            return self.max_landmarks
        if self.scenario == "collect_treasure":
            return self.args.get("num_treasures", 6)
        return self.num_agents()

    def resized(self, delta: int) -> "ScenarioConfig":
        """The same scenario with `delta` more agents (collectors for collect_treasure), same observation slots."""
        key = "num_collectors" if self.scenario == "collect_treasure" else "N"
        default = 6 if self.scenario == "collect_treasure" else 3
        args = {**self.args, key: self.args.get(key, default) + delta}
        return ScenarioConfig(self.scenario, args, self.others(), self.landmarks())


class MPEVectorEnv:
    """`num_envs` copies of one mpe2 parallel env, reset and stepped together (all episodes last max_cycles)."""

    n_actions = 5  # [no_action, left, right, down, up]

    def __init__(self, config: ScenarioConfig, num_envs: int, train_config: ScenarioConfig | None = None):
        if config.args.get("continuous_actions"):
            raise ValueError("the marl family uses discrete actions; drop continuous_actions")
        self.config = config
        self.layout_config = train_config or config  # slot counts come from the training team
        self.num_envs = num_envs
        self.envs = [config.make() for _ in range(num_envs)]
        self.agents = list(self.envs[0].possible_agents)
        self.num_agents = len(self.agents)
        self.max_cycles = int(config.args.get("max_cycles", 25))
        self._prepare_layout()

    # ----- canonical observation layout -------------------------------------------------------------------
    def _prepare_layout(self) -> None:
        cfg, lay = self.config, self.layout_config
        self.max_others, self.max_landmarks = lay.others(), lay.landmarks()
        if cfg.scenario == "collect_treasure":
            k = cfg.args.get("num_deposits", 2)
            self.num_types = k
            self.collector = np.array([a.startswith("collector") for a in self.agents])
            self.self_dim, self.other_dim, self.landmark_dim = 4 + k, 4 + 2 * k, 2 + k
            self.type_dim = 2
            self.num_landmarks_raw = cfg.args.get("num_treasures", 6)
        else:
            self.collector = np.zeros(self.num_agents, dtype=bool)
            self.self_dim, self.other_dim, self.landmark_dim, self.type_dim = 4, 2, 2, 0
            self.num_landmarks_raw = self.max_landmarks  # the package pads to num_landmark_neighbors
        self.obs_dim = (self.self_dim + self.type_dim + self.max_others * self.other_dim
                        + self.max_landmarks * self.landmark_dim)

    def canonical(self, raw: list[np.ndarray]) -> np.ndarray:
        """[E, N, obs_dim] canonical observations from each env's list of per-agent raw observations."""
        E, N = self.num_envs, self.num_agents
        out = np.zeros((E, N, self.obs_dim), dtype=np.float32)
        o_end = self.self_dim + self.type_dim
        if self.config.scenario == "simple_spread":
            obs = np.stack(raw)  # [E, N, 4 + 2L + 2K + 2K]
            L, K = self.max_landmarks, self.max_others
            out[..., :4] = obs[..., :4]
            out[..., o_end + K * 2: o_end + K * 2 + L * 2] = obs[..., 4:4 + 2 * L]  # landmarks after others
            out[..., o_end: o_end + K * 2] = obs[..., 4 + 2 * L: 4 + 2 * L + 2 * K]
            return out
        groups = []
        for mask in (self.collector, ~self.collector):
            idx = np.flatnonzero(mask)
            groups.append(np.stack([np.stack([r[i] for i in idx]) for r in raw]) if idx.size else None)
        return self.canonical_groups(*groups)

    def canonical_groups(self, collector_obs: np.ndarray | None, deposit_obs: np.ndarray | None) -> np.ndarray:
        """collect_treasure: canonical [E, N, D] from the raw observations of the collectors [E, C, dc] and of the
        deposits [E, Dp, dd] (agent order: collectors, then deposits, as in the package)."""
        E, N = self.num_envs, self.num_agents
        out = np.zeros((E, N, self.obs_dim), dtype=np.float32)
        o_end = self.self_dim + self.type_dim
        n_other_raw, T = N - 1, self.num_landmarks_raw
        K, L = min(self.max_others, n_other_raw), min(self.max_landmarks, T)
        for group, obs, mask in ((True, collector_obs, self.collector), (False, deposit_obs, ~self.collector)):
            idx = np.flatnonzero(mask)
            if obs is None or idx.size == 0:
                continue
            own = 4 + (self.num_types if group else 0)
            block = np.zeros((E, idx.size, self.obs_dim), dtype=np.float32)
            block[..., :own] = obs[..., :own]
            block[..., self.self_dim + (0 if group else 1)] = 1.0  # type one-hot: collector | deposit
            others = obs[..., own: own + n_other_raw * self.other_dim].reshape(E, idx.size, n_other_raw, self.other_dim)
            block[..., o_end: o_end + K * self.other_dim] = others[:, :, :K].reshape(E, idx.size, -1)
            start = o_end + self.max_others * self.other_dim
            lm = obs[..., own + n_other_raw * self.other_dim:].reshape(E, idx.size, T, self.landmark_dim)
            block[..., start: start + L * self.landmark_dim] = lm[:, :, :L].reshape(E, idx.size, -1)
            out[:, idx] = block
        return out

    # ----- stepping ---------------------------------------------------------------------------------------
    def reset(self, seeds: list[int] | np.ndarray) -> np.ndarray:
        raw = []
        for env, seed in zip(self.envs, seeds):
            obs, _ = env.reset(seed=int(seed))
            raw.append([obs[a] for a in self.agents])
        return self.canonical(raw)

    def step(self, actions: np.ndarray):
        """actions [E, N] ints -> (obs [E,N,D], rewards [E,N], terminated [E,N], truncated [E,N])."""
        actions = np.asarray(actions)
        raw, rew, term, trunc = [], np.zeros((self.num_envs, self.num_agents), np.float32), \
            np.zeros((self.num_envs, self.num_agents), bool), np.zeros((self.num_envs, self.num_agents), bool)
        for e, env in enumerate(self.envs):
            obs, r, te, tr, _ = env.step(dict(zip(self.agents, actions[e].tolist())))
            raw.append([obs[a] for a in self.agents])
            rew[e] = [r[a] for a in self.agents]
            term[e] = [te[a] for a in self.agents]
            trunc[e] = [tr[a] for a in self.agents]
        return self.canonical(raw), rew, term, trunc

    def close(self) -> None:
        for env in self.envs:
            env.close()


def discrete_force(actions: np.ndarray, scale: float) -> np.ndarray:
    """[E, N, 2] the mpe2 discrete action space (0 no-op, 1/2 -x/+x, 3/4 -y/+y) as a force of size `scale`."""
    force = np.zeros((*actions.shape, 2))
    force[..., 0] = np.where(actions == 1, -1.0, np.where(actions == 2, 1.0, 0.0))
    force[..., 1] = np.where(actions == 3, -1.0, np.where(actions == 4, 1.0, 0.0))
    return force * scale
