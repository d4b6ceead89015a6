"""vmas scenarios (PyPI `vmas`, Bettini et al. 2022: torch-batched 2-D physics) as rollout datamodules.

`vmas-dispersion`: vmas's `dispersion` scenario, the textbook task where a team must differentiate: every agent starts
at the origin with the same observation and the team must split over the food items (a food is eaten once, by the
first agent that reaches it). With `share_reward` every agent gets +1 for each food the team eats, so the return is
the number of foods eaten within `max_cycles` steps; at the board's horizon one agent (or a team that moves as one)
cannot reach them all, a team that splits can.

Identical observations mean that a parameter-shared policy acting greedily moves every agent the same way, so the
agents see their slot index one-hot (`agent_id`, as pymarl/epymarl's `obs_agent_id` does for QMIX, VDN and MAPPO):
splitting the food is then learnable by every algorithm, and it is the role differentiation CORD's roles are meant
to produce. One-hot slots cannot name an agent the training team did not have, so a resized-team test is refused
with agent ids on.

`VMASVectorEnv` follows the marl `VectorEnv` protocol (`contracts.batch.marl`): numpy [E, N, D] observations and
[E, N] rewards; all episodes run `max_cycles` steps (the scenario's own "all eaten" signal is not a termination:
afterwards every reward is 0). Each env copy is reset from its own seed (vmas keeps its own random state, so seeding
it leaves the training RNG alone). Discrete actions: vmas's 9 (x, y) pairs, each in {none, -, +}: index 3 x ax + ay.
"""
from __future__ import annotations

import json

import numpy as np
import torch

from contracts.registry import register_dataset
from datamodules.base import arrays_hash
from datamodules.marl.base import RolloutDataModule


class VMASVectorEnv:
    """`num_envs` copies of one vmas scenario stepped as one batch; observations optionally carry the slot one-hot."""

    def __init__(self, scenario: str, scenario_args: dict, num_envs: int, max_cycles: int, agent_id: bool = True,
                 id_slots: int | None = None, shaping: float = 0.0):
        try:
            import vmas
        except ImportError as err:  # pragma: no cover - the marl extra installs it
            raise ImportError("vmas scenarios need the vmas package: pip install -e '.[marl]'") from err
        if scenario_args.get("continuous_actions"):
            raise ValueError("the marl family uses discrete actions; drop continuous_actions")
        self.scenario, self.args = scenario, dict(scenario_args)
        self.env = vmas.make_env(scenario, num_envs=num_envs, device="cpu", continuous_actions=False, seed=0,
                                 **self.args)
        self.num_envs, self.max_cycles = num_envs, int(max_cycles)
        self.num_agents = len(self.env.agents)
        self.n_actions = int(self.env.action_space[0].n)
        self.agent_id = agent_id
        self.id_slots = self.num_agents if id_slots is None else id_slots
        if agent_id and self.num_agents > self.id_slots:
            raise ValueError(f"{self.num_agents} agents cannot be named by {self.id_slots} agent-id slots: a team "
                             "larger than the training team needs agent_id: false (or eval_team_delta: 0)")
        self.raw_dim = int(self.env.observation_space[0].shape[0])
        self.obs_dim = self.raw_dim + (self.id_slots if agent_id else 0)
        self._ids = np.eye(self.id_slots, dtype=np.float32)[: self.num_agents]
        if shaping and scenario != "dispersion":
            raise ValueError(f"reward shaping is defined for dispersion only, not {scenario}; set shaping: 0")
        self.shaping = float(shaping)
        self._potential = None

    def potential(self) -> np.ndarray:
        """[E] dispersion's coverage potential: minus the sum over uneaten foods of the nearest agent's distance."""
        world = self.env.world
        agents = torch.stack([a.state.pos for a in world.agents], 1)  # [E, N, 2]
        foods = torch.stack([f.state.pos for f in world.landmarks], 1)  # [E, F, 2]
        eaten = torch.stack([f.eaten for f in world.landmarks], 1)  # [E, F]
        nearest = torch.cdist(foods, agents).min(-1).values  # [E, F]
        return -(nearest * ~eaten).sum(-1).numpy()

    def _canonical(self, obs: list[torch.Tensor]) -> np.ndarray:
        out = torch.stack(obs, 1).numpy().astype(np.float32)  # [E, N, raw]
        if not self.agent_id:
            return out
        ids = np.broadcast_to(self._ids, (self.num_envs, *self._ids.shape))
        return np.concatenate([out, ids], -1)

    def reset(self, seeds) -> np.ndarray:
        for e, seed in enumerate(seeds):
            self.env.seed(int(seed))
            self.env.reset_at(e, return_observations=False)
        if self.shaping:
            self._potential = self.potential()
        return self._canonical(self.env.get_from_scenario(get_observations=True, get_rewards=False, get_infos=False,
                                                          get_dones=False)[0])

    def step(self, actions: np.ndarray):
        """actions [E, N] ints -> (obs [E,N,D], rewards [E,N], terminated [E,N], truncated [E,N])."""
        actions = torch.as_tensor(np.asarray(actions), dtype=torch.long)
        obs, rewards, _, _ = self.env.step([actions[:, i] for i in range(self.num_agents)])
        rew = torch.stack(rewards, 1).numpy().astype(np.float32)
        if self.shaping:  # potential differences telescope: a shaped episode's return is foods + w (Phi_T - Phi_0)
            potential = self.potential()
            rew = rew + (self.shaping * (potential - self._potential))[:, None].astype(np.float32)
            self._potential = potential
        never = np.zeros((self.num_envs, self.num_agents), bool)
        return self._canonical(obs), rew, never, never

    def close(self) -> None:
        pass


class VMASDataModule(RolloutDataModule):
    """A vmas scenario as a rollout "dataset"; `eval_team_delta` agents (`n_agents`) are added for the resized-team
    test, which needs `agent_id: false`. `train_shaping` > 0 adds that multiple of a potential-based shaping term to
    the training envs' rewards (dispersion: the coverage potential); validation and test report the scenario's own
    reward only, so every board number is foods eaten."""

    scenario = ""
    default_args: dict = {}
    team_key = "n_agents"

    def __init__(self, scenario_args: dict | None = None, max_cycles: int = 25, agent_id: bool = True,
                 train_shaping: float = 0.0, eval_team_delta: int = 0, num_envs: int = 8, rollouts_per_epoch: int = 10, eval_episodes: int = 32,
                 data_dir: str | None = None, batch_size: int = 1, eval_batch_size: int = 1, num_workers: int = 0):
        super().__init__(num_envs=num_envs, rollouts_per_epoch=rollouts_per_epoch, eval_episodes=eval_episodes,
                         data_dir=data_dir, batch_size=batch_size, eval_batch_size=eval_batch_size)
        if agent_id and eval_team_delta:
            raise ValueError("agent-id observations cannot name agents the training team did not have: set "
                             "eval_team_delta: 0, or agent_id: false for a resized-team test")
        self.args = {**self.default_args, **(scenario_args or {})}
        self.max_cycles, self.agent_id, self.eval_team_delta = max_cycles, agent_id, eval_team_delta
        self.train_shaping = train_shaping
        probe = self.make_env("train", num_envs=1)
        self.obs_dim, self.num_agents, self.n_actions = probe.obs_dim, probe.num_agents, probe.n_actions
        first = probe.reset([0])
        self.data_hash = arrays_hash({"config": np.frombuffer(json.dumps(
            {"scenario": self.scenario, **self.args, "max_cycles": max_cycles, "agent_id": agent_id,
             "train_shaping": train_shaping},
            sort_keys=True).encode(), np.uint8), "reset0": first})

    def make_env(self, split: str, num_envs: int | None = None) -> VMASVectorEnv:
        args = dict(self.args)
        if split == "test_resized":
            args[self.team_key] = args[self.team_key] + self.eval_team_delta
        return VMASVectorEnv(self.scenario, args, num_envs or self.num_envs, self.max_cycles, self.agent_id,
                             id_slots=self.args[self.team_key],
                             shaping=self.train_shaping if split == "train" else 0.0)

    def model_kwargs(self) -> dict:
        return {"obs_dim": self.obs_dim, "n_actions": self.n_actions, "num_agents": self.num_agents,
                "episode_limit": self.max_cycles}

    def describe(self) -> dict:
        from importlib.metadata import version

        return {"data_hash": self.data_hash, "scenario": self.scenario, "scenario_args": self.args,
                "max_cycles": self.max_cycles, "agent_id": self.agent_id, "train_shaping": self.train_shaping,
                "num_agents": self.num_agents,
                "obs_dim": self.obs_dim, "n_actions": self.n_actions, "eval_team_delta": self.eval_team_delta,
                "num_envs": self.num_envs, "rollouts_per_epoch": self.rollouts_per_epoch,
                "eval_episodes": self.eval_episodes, "package": f"vmas=={version('vmas')}"}


@register_dataset("vmas-dispersion", family="marl")
class Dispersion(VMASDataModule):
    """vmas `dispersion` with a shared reward: 3 agents start at the origin, 3 foods uniform in [-1, 1]^2."""

    scenario = "dispersion"
    default_args = {"n_agents": 3, "n_food": 3, "share_reward": True, "penalise_by_time": False}
