"""Every registered algorithm (CORD, its ablations and every baseline) beats a uniformly random team on a tiny
scenario within a short budget, and the whole family runs through the Lightning loop (fit -> validate -> test)
with the board's metrics.

Tiny scenario: mpe2 simple_spread with one agent and one landmark, 10-step episodes (reward = minus the distance
to the landmark): 3 epochs x 5 rollouts x 32 envs = 4,800 env steps. Returns are compared on the same 64 greedy
test episodes (fixed seeds) as the random team.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import lightning.pytorch as pl

import datamodules  # noqa: F401
import lightning_modules  # noqa: F401
from contracts.registry import DATASETS, MODELS
from datamodules.marl.base import TEST_SEED_BASE
from datamodules.marl.rollout import RandomPolicy, collect_rollout
from lightning_modules.marl.cord import CORDModule
from lightning_modules.marl.ppo import PPOModule
from lightning_modules.marl.qlearning import QLearningModule
from tests.conftest import fast_trainer

TINY = dict(scenario_args={"N": 1, "max_cycles": 10}, num_envs=32, rollouts_per_epoch=5, eval_episodes=64)
Q_FAST = dict(epsilon_anneal_steps=1500, train_iters=8, target_update_interval=64, lr=1e-3)
FLOOR = "random"  # the uniformly random team: the floor the others are compared with, it learns nothing
LEARNERS = [name for name in MODELS.names(family="marl") if name != FLOOR]


def settings(name: str) -> dict:
    """The short-budget settings of a registered model, by its kind (so a new model is tested when registered)."""
    cls = MODELS.get(name).cls
    if issubclass(cls, PPOModule):
        return dict(lr=2e-3)
    if issubclass(cls, CORDModule):
        return dict(Q_FAST, hidden_dim=32, attention_dim=32)
    if issubclass(cls, QLearningModule):
        return dict(Q_FAST)
    raise AssertionError(f"marl model {name!r} has no short-budget settings in tests/marl/test_learning.py")


def _train_and_compare(name: str, epochs: int = 3):
    pl.seed_everything(0, verbose=False)
    dm = DATASETS.get("mpe-simple-spread").cls(**TINY)
    dm.setup()
    env = type(dm.make_env("test"))(dm.config, 64)
    seeds = TEST_SEED_BASE + np.arange(64)
    random_return = collect_rollout(env, RandomPolicy(), seeds, explore=False)["return"].mean().item()
    model = MODELS.get(name).build(**dm.model_kwargs(), **settings(name))
    fast_trainer(max_epochs=epochs, limit_val_batches=0).fit(model, datamodule=dm)
    trained_return = collect_rollout(env, model, seeds, explore=False)["return"].mean().item()
    return random_return, trained_return, model


def test_vdn_learns_fast():
    random_return, trained_return, model = _train_and_compare("vdn")
    assert int(model.env_steps) == 3 * 5 * 32 * 10
    assert trained_return > random_return + 0.5, (random_return, trained_return)


def test_every_registered_model_is_covered():
    assert {"cord", "cord_reward", "cord_no_rc", "cord_no_rd", "cord_flat", "ippo", "mappo", "vdn", "qmix",
            "roma"} <= set(LEARNERS)
    assert FLOOR in MODELS.names(family="marl")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in LEARNERS if n != "vdn"])
def test_algorithm_beats_random(name):
    random_return, trained_return, _ = _train_and_compare(name)
    assert trained_return > random_return + 0.5, (random_return, trained_return)


def test_random_team_is_the_floor():
    """The registered `random` row plays like a uniformly random team: it does not learn and has nothing to tune."""
    pl.seed_everything(0, verbose=False)
    dm = DATASETS.get("mpe-simple-spread").cls(**TINY)
    dm.setup()
    model = MODELS.get(FLOOR).cls(**dm.model_kwargs())
    before = {k: v.clone() for k, v in model.state_dict().items() if k != "env_steps"}
    trainer = fast_trainer(max_epochs=1, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    assert int(model.env_steps) == 5 * 32 * 10
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items() if k != "rollout_seconds")
    env = type(dm.make_env("test"))(dm.config, 64)
    seeds = TEST_SEED_BASE + np.arange(64)
    ours = collect_rollout(env, model, seeds, explore=False)
    assert torch.bincount(ours["actions"].flatten(), minlength=5).min() > 0.15 * ours["actions"].numel()
    random_return = collect_rollout(env, RandomPolicy(), seeds, explore=False)["return"].mean().item()
    trained_return = ours["return"].mean().item()
    assert abs(trained_return - random_return) < 0.5, (random_return, trained_return)
    assert type(model).search_space(None) == {}


@pytest.mark.parametrize("name", MODELS.names(family="marl"))
def test_registry_smoke(name):
    """Each registered model: one short epoch on collect_treasure (numpy backend), then val and both test sets."""
    pl.seed_everything(0, verbose=False)
    dm = DATASETS.get("mpe-collect-treasure").cls(
        scenario_args={"num_collectors": 2, "num_deposits": 2, "num_treasures": 2, "max_cycles": 5}, backend="numpy",
        num_envs=4, rollouts_per_epoch=2, eval_episodes=4)
    dm.setup()
    cls = MODELS.get(name).cls
    kwargs = {"batch_size": 4, "train_iters": 1} if issubclass(cls, QLearningModule) else {}
    if issubclass(cls, CORDModule):
        kwargs.update(hidden_dim=16, attention_dim=16)
    model = MODELS.get(name).build(**dm.model_kwargs(), **kwargs)
    trainer = fast_trainer(max_epochs=1)
    trainer.fit(model, datamodule=dm)
    assert "val/return" in trainer.callback_metrics
    test = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert {"test/return", "test/return_team_size", "test/env_steps", "test/env_steps_per_s"} <= set(test)
    assert test["test/env_steps"] == 2 * 4 * 5
    assert all(np.isfinite(v) for v in test.values())
    assert callable(type(model).search_space)


def test_a_nan_return_makes_the_mean_return_nan_not_a_good_number():
    from contracts.batch.marl import RETURN
    from lightning_modules.marl.base import MARLModule

    module = MARLModule(obs_dim=2, n_actions=2, num_agents=1, episode_limit=5)
    module.validation_step({RETURN: torch.tensor([10.0, 12.0])}, 0)
    module.validation_step({RETURN: torch.tensor([float("nan"), 11.0])}, 1)
    assert math.isnan(module.val_return.compute().item())
    module.test_step({RETURN: torch.tensor([float("inf"), 11.0])}, 0)
    assert not math.isfinite(module.test_return.compute().item())
