"""The mpe2 scenarios as rollout datamodules (`mpe-collect-treasure`, `mpe-simple-spread`): each makes vectorised
envs of its scenario (`mpe_env.MPEVectorEnv`, or with `backend: numpy` the batched re-implementations in
`collect_treasure_numpy.py` and `simple_spread_numpy.py`) for training, validation, test and the resized-team test."""
from __future__ import annotations

import json

import numpy as np

from contracts.registry import register_dataset
from datamodules.base import arrays_hash
from datamodules.marl.base import RolloutDataModule
from datamodules.marl.collect_treasure_numpy import BatchedCollectTreasure
from datamodules.marl.mpe_env import MPEVectorEnv, ScenarioConfig
from datamodules.marl.simple_spread_numpy import BatchedSimpleSpread


BACKENDS = {"collect_treasure": ("package", "numpy"), "simple_spread": ("package", "numpy")}
NUMPY_BACKENDS = {"collect_treasure": BatchedCollectTreasure, "simple_spread": BatchedSimpleSpread}


class MPEDataModule(RolloutDataModule):
    """An mpe2 scenario as a rollout "dataset". `scenario_args` pass to the package's `parallel_env`;
    `eval_team_delta` agents (collectors for collect_treasure) are added for the different-team-size test.
    `backend`: "package" steps mpe2's own envs; "numpy" is the batched re-implementation of the scenario
    (`collect_treasure_numpy.py`, `simple_spread_numpy.py`), checked against the package by the tests."""

    scenario = ""
    default_args: dict = {}

    def __init__(self, scenario_args: dict | None = None, eval_team_delta: int = 1, backend: str = "package",
                 num_envs: int = 8,
                 rollouts_per_epoch: int = 10, eval_episodes: int = 32, data_dir: str | None = None,
                 batch_size: int = 1, eval_batch_size: int = 1, num_workers: int = 0):
        super().__init__(num_envs=num_envs, rollouts_per_epoch=rollouts_per_epoch, eval_episodes=eval_episodes,
                         data_dir=data_dir, batch_size=batch_size, eval_batch_size=eval_batch_size)
        self.config = ScenarioConfig(self.scenario, {**self.default_args, **(scenario_args or {})})
        self.eval_team_delta = eval_team_delta
        if backend not in BACKENDS.get(self.scenario, ("package",)):
            raise ValueError(f"backend {backend!r} is not available for {self.scenario}; choose one of "
                             f"{', '.join(BACKENDS.get(self.scenario, ('package',)))}")
        self.backend = backend
        probe = MPEVectorEnv(self.config, 1)
        self.obs_dim, self.num_agents, self.max_cycles = probe.obs_dim, probe.num_agents, probe.max_cycles
        first = probe.reset([0])
        probe.close()
        self.data_hash = arrays_hash({"config": np.frombuffer(json.dumps(
            {"scenario": self.scenario, **self.config.args}, sort_keys=True).encode(), np.uint8), "reset0": first})

    def make_env(self, split: str) -> MPEVectorEnv:
        env_cls = NUMPY_BACKENDS[self.scenario] if self.backend == "numpy" else MPEVectorEnv
        if split == "test_resized":
            return env_cls(self.config.resized(self.eval_team_delta), self.num_envs, train_config=self.config)
        return env_cls(self.config, self.num_envs)

    def model_kwargs(self) -> dict:
        return {"obs_dim": self.obs_dim, "n_actions": MPEVectorEnv.n_actions, "num_agents": self.num_agents,
                "episode_limit": self.max_cycles}

    def describe(self) -> dict:
        return {"data_hash": self.data_hash, "scenario": self.scenario, "scenario_args": self.config.args,
                "num_agents": self.num_agents, "obs_dim": self.obs_dim, "eval_team_delta": self.eval_team_delta,
                "num_envs": self.num_envs, "rollouts_per_epoch": self.rollouts_per_epoch,
                "eval_episodes": self.eval_episodes, "backend": self.backend, "package": "mpe2==1.1.1"}


@register_dataset("mpe-collect-treasure", family="marl")
class CollectTreasure(MPEDataModule):
    """mpe2 `collect_treasure_v1` (MAAC's treasure collection: collectors pick treasures and deliver them to the
    deposit of their type). Default here: 3 collectors, 2 deposits, 3 treasures, 25 steps."""

    scenario = "collect_treasure"
    default_args = {"num_collectors": 3, "num_deposits": 2, "num_treasures": 3, "max_cycles": 25}


@register_dataset("mpe-simple-spread", family="marl")
class SimpleSpread(MPEDataModule):
    """mpe2 `simple_spread_v3` (cooperative navigation: N agents cover N landmarks, avoid collisions)."""

    scenario = "simple_spread"
    default_args = {"N": 3, "local_ratio": 0.5, "max_cycles": 25}
